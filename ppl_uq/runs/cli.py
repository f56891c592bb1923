"""The command-line options every experiment script shares (profile, seed, output, resume, executors),
and ``run_experiment``, which runs an experiment's cells and renders its report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

#: One vocabulary of profiles across experiments.
PROFILES = ("quick", "paper")


def add_run_arguments(parser: argparse.ArgumentParser, *, experiment: str, profiles: Sequence[str] | None = None) -> None:
    """Add ``--profile --seed --out --fresh --scheduler --workers --quiet`` to ``parser``; ``profiles`` are
    the experiment's profile names (default ``PROFILES``: quick, paper), the first the default."""
    choices = list(profiles) if profiles is not None else list(PROFILES)
    parser.add_argument("--profile", choices=choices, default=choices[0],
                        help="quick: the same tables on a smaller problem, minutes; the others: larger scales")
    parser.add_argument("--seed", type=int, default=0, help="master seed; every cell's key is derived from it and the cell's identity")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"run directory (default: runs/{experiment}-PROFILE-seedSEED)")
    parser.add_argument("--fresh", action="store_true", help="recompute every cell, even those finished before")
    executor = parser.add_mutually_exclusive_group()
    executor.add_argument("--scheduler", metavar="ADDRESS", help="run cells on an existing dask.distributed cluster")
    executor.add_argument("--workers", type=int, metavar="N", help="run cells on a local dask cluster of N worker processes")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run_directory(args: argparse.Namespace, experiment: str) -> Path:
    """``--out``, or ``runs/EXPERIMENT-PROFILE-seedSEED`` (never shared across seeds or profiles)."""
    return args.out if args.out is not None else Path("runs") / f"{experiment}-{args.profile}-seed{args.seed}"


def run_experiment(cells: Sequence[Any], cell_fn: Callable[..., Any], args: argparse.Namespace, *, experiment: str,
                   manifest: Mapping[str, Any]) -> Path:
    """Run ``cells`` into the run directory of ``args`` and render the report; returns the ``report.html`` path."""
    from ..report.run_report import render_run
    from .runner import run_cells
    from .setup import configure_process

    if args.seed < 0:
        raise SystemExit("--seed must be >= 0")
    if args.workers is not None and args.workers < 1:
        raise SystemExit("--workers must be >= 1")
    configure_process()
    out = run_directory(args, experiment)
    run_cells(cells, cell_fn, out, manifest={"experiment": experiment, **manifest}, scheduler=args.scheduler,
              workers=args.workers, fresh=args.fresh, progress=not args.quiet)
    page = render_run(out)
    if not args.quiet:
        print(f"wrote {out}/ (report.md, report.html, tables, figures, cells/)")
    return page
