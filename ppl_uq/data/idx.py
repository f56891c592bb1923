"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped (``.gz``) or raw.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the number of dimensions D), D
big-endian uint32 sizes, then the values in C order, big-endian. MNIST's images are ``0x00000803``
(uint8, 3 dimensions: N, 28, 28) and its labels ``0x00000801`` (uint8, N).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

#: IDX data-type codes and the (big-endian) NumPy dtype each stands for.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The content of an IDX file, decompressed when its name ends in ``.gz``.

    Returns:
        the bytes (the whole decompressed stream, never part of it).
    Raises:
        ValueError: a gzip file that is truncated or corrupt, naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ValueError(f"{path}: the gzip stream is truncated (it ends before its end-of-stream marker)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a valid gzip file ({error})") from None


def parse_idx(data: bytes, *, name: str) -> np.ndarray:
    """Decode the bytes of an IDX file.

    Args:
        data: the whole (decompressed) file.
        name: how to name the file in error messages.
    Returns:
        an array of the header's shape (d_1, ..., d_D) and data type, in native byte order (a fresh, writable
        array).
    Raises:
        ValueError: a bad magic number, an unknown data-type code, or a header whose sizes do not match the
        amount of data (a truncated file or trailing bytes), naming the file and what is wrong.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0:
        raise ValueError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()}: it must start with two zero bytes "
            "(e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    if code not in IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X} {d.name}" for c, d in IDX_DTYPES.items())
        raise ValueError(f"{name}: unknown IDX data type code 0x{code:02X} (allowed: {allowed})")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions; at least 1 is required")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{name}: truncated IDX header: {ndim} dimensions need {header} header bytes, the file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        dims = " x ".join(str(s) for s in shape)
        raise ValueError(
            f"{name}: IDX file {problem}: its header declares {dims} {dtype.name} values = {expected} data bytes, "
            f"but the file holds {actual}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``, else raw).

    Returns:
        the array, shape and dtype as the header declares (e.g. (N, 28, 28) uint8 images or (N,) uint8 labels).
    Raises:
        FileNotFoundError: no such file.
        ValueError: a corrupt or truncated file (see ``parse_idx``), naming the file.
    """
    return parse_idx(read_idx_bytes(path), name=str(path))
