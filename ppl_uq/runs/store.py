"""The run directory: one directory per cell, committed as one unit, and a lock against a second run.

Layout of a run directory ``RUN``::

    RUN/run.json                  the manifest: experiment, settings, report declaration, cells
    RUN/.lock                     held (flock) by the run that is using the directory
    RUN/cells/NAME/record.json    the cell's record (JSON)
    RUN/cells/NAME/arrays.npz     its arrays (NumPy, no pickle)
    RUN/cells/NAME/posterior-*.nc posteriors the experiment keeps (ArviZ NetCDF)
    RUN/cells/NAME/log.txt        what the cell said while it ran
    RUN/cells/NAME/COMPLETE.json  written last: the fingerprint, the identity and the sha256 of every file

A cell is written into ``cells/.staging-NAME-*`` and renamed into place only once its marker is on disk,
so ``cells/NAME`` is always either a complete cell or absent. A cell counts as done only if its marker's
fingerprint matches and every file it names has the hash it names: files from two different runs can
never be mixed. A process killed at any moment leaves at most staging or trash directories, removed by
the next run.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..files import current_umask, json_text, read_json

MARKER = "COMPLETE.json"
RECORD = "record.json"
ARRAYS = "arrays.npz"
LOG = "log.txt"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock."""


def file_mode() -> int:
    """The mode a new file gets under this process's umask: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_bytes(payload: Any) -> bytes:
    """``ppl_uq.files.json_text(payload)`` as UTF-8 bytes (non-finite floats as "NaN", "Infinity", ...)."""
    return json_text(payload).encode("utf-8")


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    """``arrays`` as the bytes of an ``.npz`` file; object arrays are refused (they would need pickle)."""
    plain = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise TypeError(f"array {name!r} has dtype object; a run stores numeric or string arrays only")
        plain[name] = array
    buffer = io.BytesIO()
    np.savez(buffer, **plain)
    return buffer.getvalue()


class StoredCell:
    """A completed cell read from disk: its ``record`` (dict), ``arrays`` (name -> ndarray, loaded on first
    use), ``fingerprint``, ``identity``, and its saved posteriors (``posterior(name, model=None)``)."""

    def __init__(self, directory: Path, marker: Mapping[str, Any]) -> None:
        self.directory = directory
        self.name = directory.name
        self.fingerprint: str = marker["fingerprint"]
        self.identity: dict[str, Any] = marker["identity"]
        self.files: dict[str, str] = dict(marker["files"])
        self.record: dict[str, Any] = read_json(directory / RECORD)
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """name -> array from ``arrays.npz`` (empty if the cell stored none)."""
        if self._arrays is None:
            path = self.directory / ARRAYS
            if path.exists():
                with np.load(path, allow_pickle=False) as archive:
                    self._arrays = {name: archive[name] for name in archive.files}
            else:
                self._arrays = {}
        return self._arrays

    def posterior_names(self) -> list[str]:
        """Names of the posteriors the cell saved (``posterior-NAME.nc``)."""
        return sorted(f[len("posterior-"):-len(".nc")] for f in self.files if f.startswith("posterior-"))

    def posterior(self, name: str = "main", model: Any = None) -> Any:
        """The saved posterior ``name`` (``ppl_uq.load_posterior``; pass ``model`` for a user's own model)."""
        from ..posterior import load_posterior

        if name not in self.posterior_names():
            raise KeyError(f"cell {self.name} saved no posterior {name!r}; it has {self.posterior_names()}")
        return load_posterior(self.directory / f"posterior-{name}.nc", model=model)

    def file_bytes(self) -> dict[str, bytes]:
        """Every file of the cell, its marker included, as bytes (shipped to a worker that reads it)."""
        return {name: (self.directory / name).read_bytes() for name in [*self.files, MARKER]}


class RunStore:
    """The cells of one run directory. Use as a context manager: entering takes the directory's lock
    (``RunLockedError`` if another process holds it) and removes what a killed run left behind."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir)
        self.cells_dir = self.root / "cells"
        self._lock_handle: Any = None

    # -- lock ---------------------------------------------------------------------------------
    def __enter__(self) -> "RunStore":
        self.cells_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLockedError(
                f"run directory {self.root} is in use by another run (pid {holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        self._remove_leftovers()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def _require_lock(self) -> None:
        if self._lock_handle is None:
            raise RuntimeError("RunStore: write inside `with RunStore(run_dir) as store:` (it holds the lock)")

    def _remove_leftovers(self) -> None:
        for path in self.cells_dir.glob(".*"):
            if path.name.startswith((".staging-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)

    # -- reading ------------------------------------------------------------------------------
    def load(self, name: str, fingerprint: str | None = None) -> StoredCell | None:
        """The completed cell ``name`` if its marker exists, names ``fingerprint`` (when given) and every
        file matches its recorded hash; otherwise None."""
        directory = self.cells_dir / name
        marker_path = directory / MARKER
        if not marker_path.is_file():
            return None
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if fingerprint is not None and marker.get("fingerprint") != fingerprint:
            return None
        for file_name, digest in marker.get("files", {}).items():
            path = directory / file_name
            if not path.is_file() or sha256_bytes(path.read_bytes()) != digest:
                return None
        return StoredCell(directory, marker)

    def completed(self) -> list[str]:
        """Names of the cells on disk with a valid marker, sorted."""
        return sorted(p.name for p in self.cells_dir.iterdir()
                      if not p.name.startswith(".") and self.load(p.name) is not None)

    # -- writing ------------------------------------------------------------------------------
    def commit(self, name: str, fingerprint: str, identity: Mapping[str, Any], files: Mapping[str, bytes]) -> StoredCell:
        """Write the cell's ``files`` (name -> bytes) and its marker, and rename the directory into place.

        The marker (written last) names the fingerprint, the identity and each file's sha256. An existing
        ``cells/NAME`` (an older result) is replaced. Returns the stored cell.
        """
        self._require_lock()
        if MARKER in files:
            raise ValueError(f"a cell may not write its own {MARKER}")
        mode = file_mode()
        staging = self.cells_dir / f".staging-{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        digests = {}
        for file_name, data in files.items():
            _write_synced(staging / file_name, data, mode)
            digests[file_name] = sha256_bytes(data)
        marker = {"name": name, "fingerprint": fingerprint, "identity": identity, "files": digests}
        _write_synced(staging / MARKER, json_bytes(marker), mode)
        self._replace(staging, self.cells_dir / name)
        return StoredCell(self.cells_dir / name, marker)

    def _replace(self, staging: Path, target: Path) -> None:
        """Rename ``staging`` to ``target``; an existing target is moved aside first and then removed."""
        trash = None
        if target.exists():
            trash = self.cells_dir / f".trash-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, trash)
        os.rename(staging, target)
        _fsync_dir(self.cells_dir)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Write ``RUN/run.json`` atomically."""
        self._require_lock()
        path = self.root / "run.json"
        tmp = self.root / f".run.json.{uuid.uuid4().hex[:8]}.tmp"
        _write_synced(tmp, json_bytes(manifest), file_mode())
        os.replace(tmp, path)

    def read_manifest(self) -> dict[str, Any]:
        """``RUN/run.json``; ``FileNotFoundError`` naming the directory when it is not a run."""
        path = self.root / "run.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} is not a run directory (no run.json)")
        return read_json(path)


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, mode)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
