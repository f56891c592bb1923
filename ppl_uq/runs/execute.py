"""Running one cell: the function every executor calls, in-process or on a dask worker.

A cell function has the signature ``cell_fn(cell, *, rng_key, inputs, log) -> CellOutput``: ``inputs`` maps
the names in ``cell.inputs`` to their ``StoredCell`` and ``log(message)`` records a progress line. What it
returns is turned into the cell's files here, on the process that computed it, so a worker never writes
into the run directory: the driver commits the bytes it gets back.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .cells import Cell, cell_key
from .store import ARRAYS, LOG, MARKER, RECORD, StoredCell, json_bytes, npz_bytes, read_json


@dataclasses.dataclass
class CellOutput:
    """What a cell function returns.

    Attributes:
        record: JSON-able dict of results (numbers, strings, lists); NaN is kept (and fails report gates).
        arrays: name -> NumPy array, stored in ``arrays.npz`` (numeric or string dtypes, no objects).
        posteriors: name -> ``Posterior`` to keep, stored as ``posterior-NAME.nc`` (ArviZ NetCDF).
    """

    record: dict[str, Any]
    arrays: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    posteriors: Mapping[str, Any] = dataclasses.field(default_factory=dict)


CellFn = Callable[..., CellOutput]


def execute_cell(
    cell_fn: CellFn,
    cell: Cell,
    fingerprint: str,
    inputs: Mapping[str, Any],
    *,
    echo: bool = False,
) -> dict[str, bytes]:
    """Run ``cell_fn`` on ``cell`` and return its files (file name -> bytes), marker excluded.

    ``inputs`` maps each input cell's name to a ``StoredCell`` or to that cell's file bytes (as
    ``StoredCell.file_bytes()`` gives them, for a worker on another machine). ``echo`` also prints each
    log line to stderr (the in-process executor's progress).
    """
    lines: list[str] = []
    start = time.perf_counter()

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - start:7.1f}s] {cell.name}: {message}"
        lines.append(line)
        if echo:
            print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ppl-uq-cell-") as scratch:
        stored = {name: _as_stored(value, Path(scratch) / "inputs" / name) for name, value in inputs.items()}
        output = cell_fn(cell, rng_key=cell_key(cell, fingerprint), inputs=stored, log=log)
        if not isinstance(output, CellOutput):
            raise TypeError(f"cell {cell.name}: the cell function must return a CellOutput, got {type(output).__name__}")
        if not isinstance(output.record, dict):
            raise TypeError(f"cell {cell.name}: CellOutput.record must be a dict")
        files = {RECORD: json_bytes(output.record)}
        if output.arrays:
            files[ARRAYS] = npz_bytes(output.arrays)
        for name, posterior in output.posteriors.items():
            path = Path(scratch) / f"posterior-{name}.nc"
            posterior.save(path)
            files[path.name] = path.read_bytes()
    log(f"done in {time.perf_counter() - start:.1f}s")
    files[LOG] = ("\n".join(lines) + "\n").encode("utf-8")
    return files


def _as_stored(value: Any, directory: Path) -> StoredCell:
    """A ``StoredCell`` as given, or one materialised in ``directory`` from its file bytes."""
    if isinstance(value, StoredCell):
        return value
    directory.mkdir(parents=True)
    for name, data in value.items():
        (directory / name).write_bytes(data)
    return StoredCell(directory, read_json(directory / MARKER))
