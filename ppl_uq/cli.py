"""The ``ppl-uq`` command.

    ppl-uq backends                      the inference backends and every option with its default
    ppl-uq run spheres --profile quick   run an experiment script of experiments/ (its own flags follow)
    ppl-uq report RUN_DIR [RUN_DIR ...]  re-render reports from the records on disk (several: mean ± sd)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

#: Experiment names ``ppl-uq run`` knows, and their scripts in the repository's ``experiments/`` folder.
EXPERIMENTS = {"spheres": "adversarial_spheres.py", "digits": "digits_harness.py", "fashion-mnist": "fashion_mnist_bnn.py",
               "szegedy": "szegedy_intriguing.py", "subramanya": "subramanya_density.py",
               "zhang": "zhang_transfer.py",
               "daubener": "daubener_mixtures.py"}


def _version() -> str:
    from ppl_uq import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with the ``backends``, ``run`` and ``report`` subcommands."""
    parser = argparse.ArgumentParser(prog="ppl-uq", description="Compare probabilistic inference methods on the "
                                     "same models, for uncertainty quantification and adversarial robustness.")
    parser.add_argument("--version", action="version", version=f"ppl-uq {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("backends", help="list the inference backends and their options",
                        description="List every inference backend with its kind and its options (with defaults).")
    run = commands.add_parser("run", help="run an experiment (spheres, digits, or a script path)",
                              description="Run an experiment script; arguments after the name go to the script "
                              "(e.g. ppl-uq run spheres --profile quick --workers 2; ppl-uq run spheres --help).",
                              add_help=True)
    run.add_argument("experiment", help=f"one of {sorted(EXPERIMENTS)} or the path of a script")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    report = commands.add_parser("report", help="re-render reports from run directories",
                                 description="Re-render the Markdown, CSV, figures and HTML of run directories from "
                                 "the records on disk, computing nothing. Several directories of one experiment "
                                 "(e.g. seeds) are combined into mean ± sd tables written to --out.")
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--out", type=Path, default=None, help="where a combined report goes (several RUN_DIRs)")
    return parser


def find_experiment(name: str) -> Path:
    """The script of experiment ``name`` (or a path to a script): looked up in ``./experiments`` and in
    the ``experiments/`` folder beside the installed package (a source checkout)."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise SystemExit(f"ppl-uq run: no such script {name}")
        return path
    if name not in EXPERIMENTS:
        raise SystemExit(f"ppl-uq run: unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)} or give a script path")
    places = [Path.cwd() / "experiments", Path(__file__).resolve().parents[1] / "experiments"]
    for folder in places:
        if (folder / EXPERIMENTS[name]).is_file():
            return folder / EXPERIMENTS[name]
    raise SystemExit(f"ppl-uq run: {EXPERIMENTS[name]} not found in {', '.join(map(str, places))}; run it from a "
                     "checkout of the repository")


def _backends() -> int:
    from ppl_uq import backends, default_options
    from ppl_uq.inference import backend_module

    rows = [(name, backend_module(name).KIND, default_options(name)) for name in backends()]
    width = max(len(name) for name, _, _ in rows)
    print(f"{'backend':{width}s}  {'kind':12s}  options (defaults)")
    for name, kind, options in rows:
        text = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "(none)"
        print(f"{name:{width}s}  {kind:12s}  {text}")
    return 0


def _run(experiment: str, args: Sequence[str]) -> int:
    import runpy

    script = find_experiment(experiment)
    saved = sys.argv
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else (print(done.code, file=sys.stderr) or 1)
    finally:
        sys.argv = saved
    return 0


def _report(run_dirs: Sequence[Path], out: Path | None) -> int:
    from ppl_uq.report.run_report import render_run, render_runs

    if len(run_dirs) == 1 and out is None:
        print(f"wrote {render_run(run_dirs[0])}")
    elif out is None:
        raise SystemExit("ppl-uq report: combining several run directories needs --out DIR")
    else:
        print(f"wrote {render_runs(run_dirs, out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ppl-uq COMMAND [ARGS]``; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "backends":
        return _backends()
    if args.command == "run":
        os.environ.setdefault("MPLBACKEND", "Agg")
        return _run(args.experiment, args.args)
    return _report(args.run_dirs, args.out)


if __name__ == "__main__":
    sys.exit(main())
