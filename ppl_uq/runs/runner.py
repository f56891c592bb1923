"""The sweep runner: run a list of cells into a run directory, resuming, in-process or on dask.distributed.

``run_cells(cells, cell_fn, run_dir)`` skips every cell already on disk with a matching fingerprint,
computes the rest (a cell after the cells it reads), and commits each as one unit (``store.RunStore``).
Executors: in-process, one cell after another, with progress lines (default); ``workers=N`` starts a local
dask.distributed cluster of N worker processes; ``scheduler=ADDRESS`` uses an existing cluster. Every
executor runs the same ``execute_cell`` with the same identity-derived keys, so the numbers are the same
whichever ran them. A worker that dies mid-cell has its cell retried on another worker by dask's
scheduler (``distributed.scheduler.allowed-failures``); a cell function that raises is reported, the
other cells still finish, and ``CellsFailedError`` lists the failures at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import traceback
import unittest.mock
from pathlib import Path
from typing import Any, Iterable, Mapping

from .cells import Cell, check_cells
from .execute import CellFn, execute_cell
from .store import RunStore, StoredCell


class CellsFailedError(RuntimeError):
    """Some cells raised; ``failures`` maps each name to its traceback. The others were committed."""

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        details = "\n".join(f"--- {name}\n{text}" for name, text in self.failures.items())
        super().__init__(f"{len(self.failures)} cell(s) failed: {sorted(self.failures)}\n{details}")


@dataclasses.dataclass
class RunResult:
    """What ``run_cells`` did: ``cells`` (name -> StoredCell, in the order given), the names it
    ``computed`` and ``reused``, and the wall-clock ``seconds``."""

    run_dir: Path
    cells: dict[str, StoredCell]
    computed: list[str]
    reused: list[str]
    seconds: float


def fingerprints(cells: Iterable[Cell]) -> dict[str, str]:
    """name -> fingerprint for cells in dependency order; a cell's identity holds its inputs' fingerprints."""
    out: dict[str, str] = {}
    for cell in check_cells(cells):
        out[cell.name] = cell.fingerprint({name: out[name] for name in cell.inputs})
    return out


def run_cells(
    cells: Iterable[Cell],
    cell_fn: CellFn,
    run_dir: str | Path,
    *,
    manifest: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> RunResult:
    """Run ``cells`` with ``cell_fn`` into ``run_dir`` and return what is on disk.

    Args:
        cells: the cells (unique names; inputs among them).
        cell_fn: ``cell_fn(cell, *, rng_key, inputs, log) -> CellOutput``, importable or picklable by
            cloudpickle when a dask executor is used.
        run_dir: the run directory (created); locked while the run uses it.
        manifest: extra JSON-able entries for ``run.json`` (the experiment's report declaration, meta).
        scheduler: address of an existing dask.distributed scheduler (``tcp://host:8786``).
        workers: start a local dask cluster of this many worker processes (on 127.0.0.1).
        fresh: recompute every cell even when a matching one is on disk.
        progress: print progress lines to stderr.
    """
    ordered = check_cells(cells)
    if scheduler is not None and workers is not None:
        raise ValueError("give either scheduler (an existing cluster) or workers (a local one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    prints = _Printer(progress)
    start = time.perf_counter()
    prints_fp = fingerprints(ordered)
    with RunStore(run_dir) as store:
        store.write_manifest(_manifest(ordered, prints_fp, manifest, status="running"))
        stored: dict[str, StoredCell] = {}
        for cell in ordered:
            found = None if fresh else store.load(cell.name, prints_fp[cell.name])
            if found is not None:
                stored[cell.name] = found
        reused = [c.name for c in ordered if c.name in stored]
        todo = [c for c in ordered if c.name not in stored]
        prints(f"{len(ordered)} cells: {len(reused)} done in an earlier run with the same settings, {len(todo)} to compute"
               + (f" (reusing {', '.join(reused)})" if reused else ""))
        if scheduler is None and workers is None:
            failures = _run_in_process(todo, cell_fn, store, stored, prints_fp, prints)
        else:
            failures = _run_on_dask(todo, cell_fn, store, stored, prints_fp, prints, scheduler=scheduler, workers=workers)
        status = "complete" if not failures else "incomplete"
        store.write_manifest(_manifest(ordered, prints_fp, manifest, status=status))
    if failures:
        raise CellsFailedError(failures)
    return RunResult(Path(run_dir), {c.name: stored[c.name] for c in ordered}, [c.name for c in todo], reused,
                     time.perf_counter() - start)


def _manifest(cells: list[Cell], prints: Mapping[str, str], extra: Mapping[str, Any] | None, *, status: str) -> dict[str, Any]:
    return {
        **dict(extra or {}),
        "status": status,
        "cells": [{"name": c.name, "fingerprint": prints[c.name], "identity": c.identity(
            {n: prints[n] for n in c.inputs})} for c in cells],
    }


class _Printer:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.start:7.1f}s] {message}", file=sys.stderr, flush=True)


def _skip_reason(cell: Cell, stored: Mapping[str, StoredCell]) -> str | None:
    missing = [name for name in cell.inputs if name not in stored]
    return f"not run: its inputs {missing} failed" if missing else None


def _run_in_process(todo, cell_fn, store, stored, prints_fp, say) -> dict[str, str]:
    failures: dict[str, str] = {}
    for index, cell in enumerate(todo, start=1):
        reason = _skip_reason(cell, stored)
        if reason:
            failures[cell.name] = reason
            continue
        say(f"cell {index}/{len(todo)}: {cell.name}")
        fingerprint = prints_fp[cell.name]
        try:
            files = execute_cell(cell_fn, cell, fingerprint, {n: stored[n] for n in cell.inputs}, echo=say.enabled)
        except Exception:  # a cell's failure is reported at the end; the other cells still run
            failures[cell.name] = traceback.format_exc()
            say(f"{cell.name}: FAILED ({failures[cell.name].strip().splitlines()[-1]})")
            continue
        stored[cell.name] = store.commit(cell.name, fingerprint, cell.identity({n: prints_fp[n] for n in cell.inputs}), files)
    return failures


def _dask_client(scheduler: str | None, workers: int | None) -> Any:
    """A dask.distributed Client on ``scheduler`` or on a new local cluster of ``workers`` processes,
    with ``WorkerSetup`` registered (every worker, also one restarted later, is configured)."""
    from distributed import Client, LocalCluster

    from .setup import WORKER_ENVIRONMENT

    if scheduler is not None:
        client = Client(scheduler)
    else:
        # The workers are spawned here and read WORKER_ENVIRONMENT when they import JAX (a worker restarted
        # later by its nanny starts without it: it compiles more, with the same numbers).
        with unittest.mock.patch.dict(os.environ, WORKER_ENVIRONMENT):  # restored when the block ends
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    client.register_plugin(worker_setup_plugin())
    return client


def worker_setup_plugin(**settings: Any) -> Any:
    """The dask ``WorkerPlugin`` that runs ``configure_process(**settings)`` on every worker."""
    from .dask_plugin import WorkerSetup

    return WorkerSetup(**settings)


def _run_on_dask(todo, cell_fn, store, stored, prints_fp, say, *, scheduler, workers) -> dict[str, str]:
    from distributed import as_completed

    failures: dict[str, str] = {}
    say(f"dask: {'scheduler ' + scheduler if scheduler else f'local cluster of {workers} workers'}")
    client = _dask_client(scheduler, workers)
    try:
        waiting = list(todo)
        running: dict[Any, Cell] = {}
        queue = as_completed()

        def submit_ready() -> None:
            for cell in list(waiting):
                if all(name in stored for name in cell.inputs):
                    inputs = {name: stored[name].file_bytes() for name in cell.inputs}
                    future = client.submit(execute_cell, cell_fn, cell, prints_fp[cell.name], inputs,
                                           key=f"{cell.name}-{prints_fp[cell.name][:16]}", pure=False)
                    running[future] = cell
                    queue.add(future)
                    waiting.remove(cell)
                    say(f"submitted {cell.name}")
                elif any(name in failures for name in cell.inputs):
                    failures[cell.name] = _skip_reason(cell, stored) or "not run"
                    waiting.remove(cell)

        submit_ready()
        for future in queue:
            cell = running.pop(future)
            try:
                files = future.result()
            except Exception:
                failures[cell.name] = traceback.format_exc()
                say(f"{cell.name}: FAILED ({failures[cell.name].strip().splitlines()[-1]})")
            else:
                stored[cell.name] = store.commit(cell.name, prints_fp[cell.name],
                                                 cell.identity({n: prints_fp[n] for n in cell.inputs}), files)
                say(f"{cell.name}: committed ({len(stored)} on disk)")
            submit_ready()
        for cell in waiting:
            failures[cell.name] = _skip_reason(cell, stored) or "not run"
    finally:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and scheduler is None:
            cluster.close()
    return failures
