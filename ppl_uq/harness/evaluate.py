"""The harness as a record: ``evaluate`` runs the configured measurements on one model and returns numbers
(JSON-able) and arrays; ``transfer`` crosses several evaluated models. Nothing here draws or writes files:
``ppl_uq.report`` renders what these return, and ``ppl_uq.runs`` stores it.

Measurements (the ``Suite``): accuracy, NLL and calibration (ECE equal-width and equal-mass, MCE, Brier,
reliability data); uncertainty measures and their misclassification AUROC; OOD AUROC and FPR at 95 % TPR
(with ``ood``); PGD robust accuracy vs eps; adversarial detection (balanced AUROC, Däubener & Fischer) on
the PGD examples at ``detection_eps`` or on examples made elsewhere (``attack_result``); minimum
distortion by DeepFool, min-norm and L-BFGS; density confidence and its failure counts (with ``train``,
Subramanya et al.); the softmax-scaling demonstration; corruption curves (with ``image_shape``); the
attack sanity checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from ..data.validate import as_python_scalar
from ..gates import posterior_gate_flags
from .attacks import deepfool, lbfgs_attack, min_norm_attack, pgd, sanity_checks
from .attacks._common import CONVENTIONS, AttackResult, as_predictor
from .attacks.transfer import transfer_matrix
from .calibration import calibration_summary, confidence_and_correct, reliability_data
from .density import density_confidence, fit_density_confidence, posterior_features, softmax_scaling_demo
from .detection import balanced_adversarial_auroc, fpr_at_tpr, informative_groups, misclassification_auroc, ood_auroc
from .predictive import check_point_labels, check_points, predictive_log_probs
from .robustness import corruption_curve, failure_count
from .uncertainty import HIGHER_MEANS, MEASURES, uncertainty_measures

#: Logit scales of the softmax-pathology table (Subramanya et al., Lemma 3.1).
SCALING_ALPHAS = (1.0, 2.0, 4.0, 8.0, 16.0)
NORMS = ("linf", "l2")


@dataclasses.dataclass(frozen=True)
class Suite:
    """The harness settings of an evaluation (all JSON-able, so they can enter a cell's identity).

    Attributes:
        eps_values: increasing budgets of the PGD robustness curve.
        detection_eps: the budget whose PGD examples feed adversarial detection and the transfer matrix
            (default: the largest of ``eps_values``).
        norm: ``"linf"`` or ``"l2"``; steps: PGD steps; bounds: optional input box ``(lo, hi)``.
        num_attack_points: the first this many test points are attacked (default: all).
        image_shape: the images' shape, which turns on the corruption curves (needs ``bounds``).
        corruptions: which corruptions; num_bins: calibration bins; batch_size: points per batch.
        min_distortion_points: DeepFool / min-norm / L-BFGS on this many points (0: off).
        sanity: run the attack sanity checks.
    """

    eps_values: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    detection_eps: float | None = None
    norm: str = "linf"
    steps: int = 20
    bounds: tuple[float, float] | None = None
    num_attack_points: int | None = None
    image_shape: tuple[int, ...] | None = None
    corruptions: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "jpeg")
    num_bins: int = 15
    batch_size: int = 256
    min_distortion_points: int = 0
    sanity: bool = False

    def __post_init__(self) -> None:
        values = [float(e) for e in self.eps_values]
        if not values or any(not np.isfinite(e) or e < 0 for e in values) or values != sorted(values):
            raise ValueError(f"eps_values must be a non-empty increasing sequence of finite numbers >= 0, got {self.eps_values!r}")
        object.__setattr__(self, "eps_values", tuple(values))
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.image_shape is not None and self.bounds is None:
            raise ValueError("image_shape needs bounds (the pixel range the corruptions clip to)")
        for name in ("steps", "num_bins", "batch_size"):
            value = as_python_scalar(getattr(self, name))
            object.__setattr__(self, name, value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("bounds", self.bounds), ("image_shape", self.image_shape)):
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "corruptions", tuple(self.corruptions))

    @property
    def attack_eps(self) -> float:
        """The detection budget: ``detection_eps`` or the largest of ``eps_values``."""
        return self.eps_values[-1] if self.detection_eps is None else float(self.detection_eps)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON types."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


class Evaluation(NamedTuple):
    """What ``evaluate`` returns.

    ``record``: JSON-able numbers (calibration, reliability data, AUROC per measure and task, robustness
    curve, detection-attack summary, minimum distortion, sanity checks, corruptions, gate flags).
    ``arrays``: ``measure/NAME`` (N,) uncertainty on the test points, ``correct`` (N,) bool, and the
    detection attack's ``detection/x_adv`` (n, ...), ``detection/log_predictive_clean`` and
    ``detection/log_predictive_adv`` (n, C), ``detection/loss_trace`` and ``detection/target`` (n,) (-1 for
    an untargeted attack), where n = the attacked points (the first n test points).
    """

    record: dict[str, Any]
    arrays: dict[str, np.ndarray]


def evaluate(
    model: Any,
    test: tuple[Any, Any],
    *,
    rng_key: jax.Array,
    suite: Suite | None = None,
    ood: Any = None,
    train: tuple[Any, Any] | None = None,
    attack_result: AttackResult | None = None,
) -> Evaluation:
    """Run ``suite``'s measurements on one model (see the module docstring).

    Args:
        model: a ``Posterior``, a ``Predictor`` or a callable ``x (N, ...) -> (S, N, C)``.
        test: ``(x (N, ...), y (N,))``.
        rng_key: key for the attacks' random starts, the balanced subsamples and the corruptions.
        suite: the settings (default ``Suite()``).
        ood: optional out-of-distribution inputs (M, ...).
        train: optional ``(x_train, y_train)`` for the density confidence of Subramanya et al.
        attack_result: examples made elsewhere (e.g. the sphere attack) to use for adversarial detection
            instead of PGD at ``suite.attack_eps``.
    Returns:
        an ``Evaluation`` (record, arrays).
    """
    suite = suite or Suite()
    x = check_points(test[0], "test x")
    predictor = as_predictor(model, x)
    y = check_point_labels(test[1], x.shape[0], predictor.num_classes, name="test y")
    x_ood = None if ood is None else check_points(ood, "ood")
    count = x.shape[0] if suite.num_attack_points is None else min(int(suite.num_attack_points), x.shape[0])
    x_attack, y_attack = x[:count], y[:count]
    key_attack, key_balance, key_corrupt, key_sanity = jax.random.split(rng_key, 4)

    log_predictive = predictive_log_probs(predictor, x)
    confidence, correct = confidence_and_correct(log_predictive, y)
    hit = np.asarray(correct, bool)
    measures = {k: np.asarray(v) for k, v in uncertainty_measures(predictor, x).items()}
    record: dict[str, Any] = {"s_eval": predictor.num_draws, "num_test_points": int(x.shape[0]),
                              "num_attack_points": count, "flags": posterior_gate_flags(model)}
    record.update(calibration_summary(log_predictive, y, num_bins=suite.num_bins))
    record["reliability"] = reliability_record(reliability_data(confidence, correct, num_bins=suite.num_bins))
    arrays: dict[str, np.ndarray] = {f"measure/{m}": v for m, v in measures.items()}
    arrays["correct"] = hit

    auroc: dict[str, dict[str, Any]] = {m: {} for m in MEASURES}
    for measure in MEASURES:
        scores = measures[measure]
        auroc[measure]["misclassification"] = (
            misclassification_auroc(scores, hit, higher_means=HIGHER_MEANS[measure])
            if informative_groups(scores[hit], scores[~hit]) else None)
    if x_ood is not None:
        _ood_auroc(auroc, predictor, measures, x_ood)

    record["robustness"] = []
    for eps in suite.eps_values:
        result = pgd(predictor, x_attack, y_attack, eps=eps, norm=suite.norm, steps=suite.steps, bounds=suite.bounds,
                     rng_key=jax.random.fold_in(key_attack, int(round(eps * 1e6))), batch_size=suite.batch_size)
        record["robustness"].append({"eps": eps, "robust_accuracy": result.robust_accuracy,
                                     "success_rate": result.success_rate})

    if attack_result is None:
        detection = pgd(predictor, x_attack, y_attack, eps=suite.attack_eps, norm=suite.norm, steps=suite.steps,
                        bounds=suite.bounds, rng_key=jax.random.fold_in(key_attack, 2**31 - 1),
                        batch_size=suite.batch_size)
        clean_measures = {m: v[:count] for m, v in measures.items()}
    else:
        detection = attack_result
        clean_measures = uncertainty_measures(predictor, detection.x)
    record["detection_attack"] = {k: v for k, v in detection.summary().items() if k != "conventions"}
    arrays.update(_detection_arrays(detection))
    adv_measures = uncertainty_measures(predictor, detection.x_adv)
    for measure in MEASURES:
        clean_scores = np.asarray(clean_measures[measure])[detection.clean_correct]
        adv_scores = np.asarray(adv_measures[measure])[detection.success]
        if informative_groups(clean_scores, adv_scores):
            balanced = balanced_adversarial_auroc(clean_scores, adv_scores, rng_key=key_balance,
                                                  higher_means=HIGHER_MEANS[measure])
            auroc[measure].update(adversarial_balanced=balanced.auroc, adversarial_num_used=balanced.num_used)
        else:
            auroc[measure].update(adversarial_balanced=None, adversarial_num_used=0)
    record["auroc"] = auroc

    density = None
    if train is not None:
        density = fit_density_confidence(posterior_features(model, train[0]), train[1], num_classes=predictor.num_classes)
        record["density_cov_scale"] = float(density.cov_scale)
        record["softmax_scaling"] = softmax_scaling_demo(posterior_features(model, x), SCALING_ALPHAS, density=density)
    if suite.min_distortion_points > 0:
        n = suite.min_distortion_points
        record["min_distortion"], fooled = _min_distortion(predictor, x[:n], y[:n], suite.bounds, suite.batch_size)
        record["deepfool_failures"] = _confidence_failures(model, fooled, density)
    if suite.sanity:
        record["sanity"] = sanity_checks(predictor, x_attack, y_attack, eps=suite.attack_eps, norm=suite.norm,
                                         steps=suite.steps, bounds=suite.bounds, rng_key=key_sanity,
                                         batch_size=suite.batch_size)
        record["flags"] = record["flags"] + [f"sanity check failed: {name}" for name in record["sanity"]["failed"]]
    if suite.image_shape is not None:
        record["corruptions"] = {
            corruption: corruption_curve(model, x, y, corruption=corruption, image_shape=suite.image_shape,
                                         rng_key=key_corrupt, bounds=suite.bounds, density=density)
            for corruption in suite.corruptions
        }
    return Evaluation(record, arrays)


def reliability_record(data: Any) -> dict[str, Any]:
    """A ``ReliabilityData`` as JSON-able lists (masked entries of empty bins become None)."""
    return {field: (value.tolist() if hasattr(value, "tolist") else value) for field, value in data._asdict().items()}


def _ood_auroc(auroc: dict[str, dict[str, Any]], predictor: Any, measures: Mapping[str, np.ndarray], x_ood: np.ndarray) -> None:
    ood_measures = uncertainty_measures(predictor, x_ood)
    for measure in MEASURES:
        scores_in, scores_out = measures[measure], np.asarray(ood_measures[measure])
        informative = informative_groups(scores_in, scores_out)
        auroc[measure]["ood"] = ood_auroc(scores_in, scores_out, higher_means=HIGHER_MEANS[measure]) if informative else None
        auroc[measure]["ood_fpr_at_95_tpr"] = (
            fpr_at_tpr(scores_out, scores_in, 0.95, higher_is_positive=HIGHER_MEANS[measure] == "uncertain")
            if informative else None)


def _detection_arrays(result: AttackResult) -> dict[str, np.ndarray]:
    target = np.full(len(result.y), -1, np.int32) if result.target is None else np.asarray(result.target, np.int32)
    return {"detection/x_adv": np.asarray(result.x_adv), "detection/log_predictive_clean": result.log_predictive_clean,
            "detection/log_predictive_adv": result.log_predictive_adv, "detection/loss_trace": result.loss_trace,
            "detection/target": target}


def detection_result(evaluation: Evaluation, test: tuple[Any, Any]) -> AttackResult:
    """The detection attack's ``AttackResult`` rebuilt from an evaluation's record and arrays (the attacked
    points are the first ``num_attack_points`` of ``test``)."""
    record, arrays = evaluation
    count = record["num_attack_points"]
    summary = record["detection_attack"]
    target = arrays["detection/target"]
    return AttackResult(
        attack=summary["attack"], x=check_points(test[0], "test x")[:count], x_adv=arrays["detection/x_adv"],
        y=np.asarray(test[1], np.int32)[:count], target=None if np.all(target < 0) else target,
        log_predictive_clean=arrays["detection/log_predictive_clean"],
        log_predictive_adv=arrays["detection/log_predictive_adv"], loss_trace=arrays["detection/loss_trace"],
        s_eval=summary["s_eval"], settings=summary.get("settings", {}))


def transfer(
    models: Mapping[str, Any],
    attacks: Mapping[str, AttackResult],
    *,
    rng_key: jax.Array,
    bounds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The transfer matrix (``attacks.transfer_matrix``) of every model's detection examples scored by
    every model, with Gaussian-noise rows of matched sd; returned as its JSON-able dict."""
    return transfer_matrix(dict(attacks), dict(models), noise_sds=("matched",), rng_key=rng_key, bounds=bounds).to_dict()


def _min_distortion(predictor: Any, x: np.ndarray, y: np.ndarray, bounds: Any, batch_size: int) -> tuple[dict[str, Any], AttackResult]:
    """DeepFool, L-BFGS (with a box) and min-norm on ``(x, y)``: success rate and distortions of each, and
    the DeepFool result."""
    results = {"deepfool": deepfool(predictor, x, y, bounds=bounds, batch_size=min(batch_size, 128)),
               "min-norm": min_norm_attack(predictor, x, y, bounds=bounds, batch_size=batch_size)}
    if bounds is not None:
        results["lbfgs"] = lbfgs_attack(predictor, x, y, bounds=bounds)
    out = {}
    for name, result in results.items():
        summary = result.summary()
        out[name] = {key: summary[key] for key in ("success_rate", "mean_l2_successful", "mean_rms_successful",
                                                   "mean_linf_successful", "num_points")}
    return out, results["deepfool"]


def _confidence_failures(model: Any, result: AttackResult, density: Any) -> dict[str, Any]:
    """Subramanya et al.'s failures: successful DeepFool examples whose confidence exceeds their clean
    input's, by max softmax probability and (with a density) density confidence of the predicted class."""
    ok = result.success
    out: dict[str, Any] = {"num_successful": int(ok.sum())}
    if not ok.any():
        return out
    clean = np.exp(np.max(result.log_predictive_clean[ok], axis=1))
    adv = np.exp(np.max(result.log_predictive_adv[ok], axis=1))
    out["max_probability"] = failure_count(clean, adv)
    if density is not None:
        scores = [density_confidence(density, posterior_features(model, inputs[ok]), classes=decision[ok])
                  for inputs, decision in ((result.x, result.clean_prediction), (result.x_adv, result.adv_prediction))]
        out["density_confidence"] = failure_count(np.asarray(scores[0]), np.asarray(scores[1]))
    return out


def conventions() -> dict[str, Any]:
    """The reading conventions every harness record is written under (decision rule, robust accuracy,
    success rate, distortion, AUROC orientation per measure)."""
    return {**CONVENTIONS, "auroc_orientation": dict(HIGHER_MEANS)}


__all__ = ["Evaluation", "SCALING_ALPHAS", "Suite", "conventions", "detection_result", "evaluate",
           "transfer"]

