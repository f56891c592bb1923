"""Inference methods on one Bayesian MLP for scikit-learn's bundled digits, through the common harness.

    python experiments/digits_harness.py --profile quick

One cell per backend fits a 64-32-10 tanh MLP (``mlp_classifier``) and evaluates it with the whole
harness (``ppl_uq.harness.evaluate``): calibration and reliability, uncertainty for correct vs wrong
predictions, misclassification / OOD / balanced adversarial-detection AUROC, PGD L-infinity robustness,
DeepFool / L-BFGS / min-norm minimum distortions, the density confidence of Subramanya et al. and its
failure counts, corruption curves (noise, blur, JPEG) and the attack sanity checks. A last cell reads
them all for the transfer matrix. The report (``report.html``, ``harness/harness.md`` and figures) is
rendered from the records on disk.

OOD inputs: the test digits with their pixels shuffled (independently per image): the same pixel values
and ink mass, no digit structure. The data ship with scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, Callable, Sequence

from ppl_uq.runs import Cell, CellOutput, transfer_output
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "digits"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run."""

    members: int
    svi_steps: int
    num_draws: int
    num_attack: int
    min_distortion_points: int
    pgd_steps: int


PROFILES = {
    "quick": Profile(members=5, svi_steps=3_000, num_draws=100, num_attack=200, min_distortion_points=50, pgd_steps=20),
    "paper": Profile(members=10, svi_steps=10_000, num_draws=200, num_attack=497, min_distortion_points=200,
                     pgd_steps=40),
}

#: backend name -> (label, options for a profile).
BACKENDS: dict[str, tuple[str, Callable[[Profile], dict[str, Any]]]] = {
    "map": ("MAP", lambda p: {}),
    "laplace": ("Laplace (jitter 0.1)", lambda p: {"jitter": 0.1, "num_samples": p.num_draws}),
    "svi": ("SVI mean-field", lambda p: {"guide": "meanfield", "num_steps": p.svi_steps, "num_samples": p.num_draws}),
    "ml-mixture": ("ML mixture", lambda p: {"guide": "meanfield", "num_steps": p.svi_steps, "num_samples": p.num_draws}),
    "deep-ensemble": ("Deep ensemble", lambda p: {"num_members": p.members}),
}
EPS_VALUES = (0.0, 0.02, 0.05, 0.1, 0.2)
MODEL = {"name": "mlp_classifier", "hidden": [32], "num_classes": 10}


def make_cells(backends: Sequence[str], profile: Profile, seed: int) -> list[Cell]:
    """One cell per backend and the ``transfer`` cell that reads them all."""
    suite = {"eps_values": list(EPS_VALUES), "detection_eps": 0.1, "norm": "linf", "steps": profile.pgd_steps,
             "bounds": [0.0, 1.0], "num_attack_points": profile.num_attack, "image_shape": [8, 8],
             "min_distortion_points": profile.min_distortion_points, "sanity": True, "ood": "shuffled-pixels",
             "density": True}
    data = {"name": "sklearn-digits", "split_key": 0}
    cells = [Cell(EXPERIMENT, name, backend=name, model=MODEL, options=BACKENDS[name][1](profile), data=data,
                  seed=seed, harness=suite, extra={"label": BACKENDS[name][0]}) for name in backends]
    cells.append(Cell(EXPERIMENT, "transfer", data=data, seed=seed, harness=suite, inputs=tuple(backends)))
    return cells


def load_data(cell: Cell) -> Any:
    """The digits split (the same for every seed: ``jax.random.key(split_key)``)."""
    import jax

    from ppl_uq.data import load_digits_split

    return load_digits_split(jax.random.key(cell.data["split_key"]))


def build_model() -> Callable[..., Any]:
    """The 64-32-10 tanh MLP declaration."""
    from ppl_uq.models import mlp_classifier

    return functools.partial(mlp_classifier, hidden=tuple(MODEL["hidden"]), num_classes=MODEL["num_classes"])


def shuffled_pixels(x: Any, rng_key: Any) -> Any:
    """The OOD set: each image's pixels permuted independently."""
    import jax
    import numpy as np

    return np.asarray(jax.random.permutation(rng_key, x, axis=1, independent=True))


def suite_of(cell: Cell) -> Any:
    """The cell's ``Suite``."""
    from ppl_uq.harness import Suite

    keys = ("eps_values", "detection_eps", "norm", "steps", "bounds", "num_attack_points", "image_shape",
            "min_distortion_points", "sanity")
    return Suite(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cell.harness.items() if k in keys})


def digits_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Fit and evaluate one backend, or (the ``transfer`` cell) cross them all."""
    import warnings

    import jax

    import ppl_uq
    from ppl_uq.harness import evaluate
    from ppl_uq.inference import ConvergenceWarning

    data = load_data(cell)
    if cell.name == "transfer":
        return transfer_cell(cell, data, rng_key=rng_key, inputs=inputs, log=log)
    key_fit, key_ood, key_harness = jax.random.split(rng_key, 3)
    log(f"fitting ({cell.backend}, {dict(cell.options) or 'defaults'})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in info, shown as a gate
        posterior = ppl_uq.fit(cell.backend, build_model(), data.train, rng_key=key_fit, **cell.options)
    log(f"{posterior.num_samples} draws in {posterior.cost['fit_seconds']:.1f}s; harness")
    x_test, _ = data.test
    evaluation = evaluate(posterior, data.test, rng_key=key_harness, suite=suite_of(cell),
                          ood=shuffled_pixels(x_test, jax.random.key(cell.seed)), train=data.train)
    record = {"method": cell.extra["label"], "backend": cell.backend, "n_draws": posterior.num_samples,
              "fit_seconds": posterior.cost["fit_seconds"], "options": posterior.options,
              "harness": evaluation.record, "flags": evaluation.record["flags"]}
    for key in ("accuracy", "ece", "nll", "brier"):
        record[key] = evaluation.record[key]
    arrays = {f"harness/{k}": v for k, v in evaluation.arrays.items()}
    return CellOutput(record, arrays, posteriors={"main": posterior})


def transfer_cell(cell: Cell, data: Any, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """The transfer matrix of every backend's PGD examples (eps = detection_eps) scored by every posterior."""
    return transfer_output(cell.inputs, inputs, data.test, suite_of(cell), rng_key=rng_key,
                           title=f"Digits MLP 64-32-10, seed {cell.seed}", ood_points=int(len(data.test[1])), log=log)


def report_declaration(backends: Sequence[str], profile_name: str, seed: int) -> dict[str, Any]:
    """The report's declaration for ``run.json``: a summary table, then the harness report."""
    columns = [["method", "method"], ["n_draws", "draws"], ["accuracy", "acc."], ["ece", "ECE"], ["nll", "NLL"],
               ["brier", "Brier"], ["fit_seconds", "fit s"], ["gate", "gate"]]
    return {
        "title": f"Digits MLP 64-32-10: inference methods through the harness (profile {profile_name})",
        "intro": ("scikit-learn's 8x8 digits in [0, 1]: 1,300 training and 497 test images; OOD = the test images "
                  f"with shuffled pixels. Seed {seed}. The harness report follows the summary."),
        "tables": [{"name": "summary", "title": "Summary", "caption": "Test accuracy and calibration; gates.",
                    "cells": list(backends), "columns": columns, "gate_keys": ["accuracy", "ece", "nll", "brier"]}],
        "harness": {"cells": list(backends), "transfer_cell": "transfer"},
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the digits harness experiment."""
    parser = argparse.ArgumentParser(prog="digits_harness.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS),
                        help="backends to compare")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``python experiments/digits_harness.py`` or ``ppl-uq run digits``)."""
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    manifest = {"report": report_declaration(args.backends, args.profile, args.seed),
                "meta": {"profile": args.profile, "seed": args.seed, **dataclasses.asdict(profile)}}
    run_experiment(make_cells(args.backends, profile, args.seed), digits_cell, args, experiment=EXPERIMENT,
                   manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
