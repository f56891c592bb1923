"""A toy experiment for the runner's tests: cells whose numbers come only from their keys.

Run as a script, ``python tests/runs_toy.py RUN_DIR [--kill-at MOMENT] [--workers N]``, it runs
``toy_cells()`` into RUN_DIR; ``--kill-at`` SIGKILLs the process at one moment of the run:
``compute:NAME`` (inside cell NAME's function), ``commit:NAME`` (NAME's files and marker are staged, not
yet renamed into place) or ``manifest`` (every cell committed, the final run.json not yet written).
"""

import os
import signal
import sys

import numpy as np

from ppl_uq.runs import Cell, CellOutput


def toy_cells(names=("a", "b", "c", "d"), scale=1.0, with_summary=True):
    """One cell per name plus, optionally, a ``summary`` cell that reads them all."""
    cells = [Cell("toy", name, backend="none", options={"scale": scale, "which": name}) for name in names]
    if with_summary:
        cells.append(Cell("toy", "summary", inputs=tuple(names)))
    return cells


def toy_cell(cell, *, rng_key, inputs, log):
    """Normal draws from the cell's key (record: their mean; arrays: the draws); ``summary`` adds its
    inputs' means. ``TOY_KILL=compute:NAME`` SIGKILLs the process in cell NAME."""
    import jax

    if os.environ.get("TOY_KILL") == f"compute:{cell.name}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("TOY_DIE_ONCE") and cell.name == "b":
        flag = os.environ["TOY_DIE_ONCE"]
        if not os.path.exists(flag):
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-cell, once
    if cell.inputs:
        total = sum(stored.record["mean"] for stored in inputs.values())
        log(f"summing {len(inputs)} inputs")
        return CellOutput({"total": total, "inputs": sorted(inputs)})
    draws = np.asarray(jax.random.normal(rng_key, (50,))) * cell.options["scale"]
    log("drew 50 normals")
    from ppl_uq.runs.setup import constants_hoisted

    hoisted = constants_hoisted()  # what the program does, not what the flag says
    return CellOutput({"mean": float(draws.mean()), "pid": os.getpid(), "hoisted": hoisted}, arrays={"draws": draws})


def _install_kill(moment):
    from ppl_uq.runs import store

    if moment.startswith("compute:"):
        os.environ["TOY_KILL"] = moment
    elif moment.startswith("commit:"):
        name = moment.split(":", 1)[1]
        original = store.RunStore._replace

        def replace(self, staging, target):
            if target.name == name:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, staging, target)

        store.RunStore._replace = replace
    elif moment == "manifest":
        original_manifest = store.RunStore.write_manifest

        def write_manifest(self, manifest):
            if manifest.get("status") == "complete":
                os.kill(os.getpid(), signal.SIGKILL)
            return original_manifest(self, manifest)

        store.RunStore.write_manifest = write_manifest
    else:
        raise SystemExit(f"unknown --kill-at {moment}")


if __name__ == "__main__":
    import argparse

    from ppl_uq.runs import configure_process, run_cells

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at")
    parser.add_argument("--workers", type=int)
    args = parser.parse_args()
    configure_process()
    if args.kill_at:
        _install_kill(args.kill_at)
    result = run_cells(toy_cells(), toy_cell, args.run_dir, workers=args.workers, manifest={"experiment": "toy"})
    print("computed", " ".join(result.computed))
    sys.exit(0)
