"""Robustness curves: accuracy and confidence against corruption level (seed 002) or attack budget.

Decision rule: the predicted class is the argmax of the posterior-predictive mean over all S draws
(``predictive.DECISION_RULE``). Measures (``CURVE_MEASURES``), per point:

- ``accuracy``: 1 when the decision is the label;
- ``max_probability``: the predictive mean's probability of the decision (max softmax of the mean);
- ``density_confidence``: max_k p(y = k | z), z the draw-mean logits (``density.posterior_features``);
- ``density_confidence_predicted``: p(y = decision | z), the literal reading of seed 002 (see
  ``density``'s docstring).

Normalisation (seed 002, Figs. 2 and 4: "both confidence measures are scaled such that clean images
correspond to confidence of one"): the reference is always the uncorrupted input ``x`` itself (JPEG at
quality 100 is not the identity). For a confidence measure each image's value at a level is divided by
the same image's clean value and the ratios are averaged over images (``normalised``; every clean image
then scores exactly 1); the ratio of the means is reported as well (``normalised_of_mean``). The max
probability and ``density_confidence`` are >= 1/C, so their ratios stay bounded;
``density_confidence_predicted`` can be near 0 on a clean image the density assigns to another class,
and then one image can dominate the per-image mean: read ``normalised_of_mean`` beside it. Accuracy,
a property of the set, is normalised as accuracy(level) / accuracy(clean).

A seed-002 "failure" is a point whose confidence rises on the distorted or adversarial input compared
with its clean input (a strict rise; ties are not failures).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ..data.validate import as_finite_array, check_bounds
from .corruptions import check_image_shape, get_corruption
from .density import DensityConfidence, density_confidence, posterior_features
from .predictive import (
    DECISION_RULE,
    Predictor,
    as_predictor,
    check_batch_size,
    check_point_labels,
    check_points,
    predictive_log_probs,
)

CURVE_MEASURES = ("accuracy", "max_probability", "density_confidence", "density_confidence_predicted")

CURVE_NORMALISATION = (
    "per image: confidence at the level divided by the same image's confidence on the uncorrupted input, "
    "then averaged over images (Subramanya et al.: clean images score 1); accuracy: accuracy(level) / accuracy(clean)"
)


def _check_confidences(confidence_clean: Any, confidence_perturbed: Any) -> tuple[np.ndarray, np.ndarray]:
    clean = as_finite_array(confidence_clean, "confidence_clean").astype(np.float64)
    perturbed = as_finite_array(confidence_perturbed, "confidence_perturbed").astype(np.float64)
    if clean.ndim != 1 or perturbed.shape != clean.shape:
        raise ValueError(
            "confidence_clean and confidence_perturbed must both have shape (N,); "
            f"got {clean.shape} and {perturbed.shape}"
        )
    return clean, perturbed


def failure_count(confidence_clean: Any, confidence_perturbed: Any) -> int:
    """Seed 002's failures: the number of points whose confidence rises (strictly) on the perturbed input.

    Args:
        confidence_clean: (N,) confidence of each clean input.
        confidence_perturbed: (N,) confidence of the same points after the distortion or attack.
    Returns:
        an int in [0, N].
    """
    clean, perturbed = _check_confidences(confidence_clean, confidence_perturbed)
    return int(np.sum(perturbed > clean))


def failure_fraction(confidence_clean: Any, confidence_perturbed: Any) -> float:
    """``failure_count / N``: the fraction of points whose confidence rises on the perturbed input."""
    clean, perturbed = _check_confidences(confidence_clean, confidence_perturbed)
    return float(np.mean(perturbed > clean))


def _check_measures(measures: Any, density: Any) -> tuple[str, ...]:
    if density is not None and not isinstance(density, DensityConfidence):
        raise TypeError(f"density must be None or a DensityConfidence, got {type(density).__name__}")
    if measures is None:
        measures = CURVE_MEASURES if density is not None else CURVE_MEASURES[:2]
    if isinstance(measures, str):
        measures = (measures,)
    measures = tuple(measures)
    if not measures:
        raise ValueError(f"measures must name at least one of {CURVE_MEASURES}")
    for name in measures:
        if name not in CURVE_MEASURES:
            raise ValueError(f"measures must be drawn from {CURVE_MEASURES}, got {name!r}")
    if len(set(measures)) != len(measures):
        raise ValueError(f"measures must not repeat a name, got {measures}")
    needs_density = [name for name in measures if name.startswith("density")]
    if needs_density and density is None:
        raise ValueError(f"the measure(s) {needs_density} need a fitted density (fit_density_confidence)")
    return measures


def _check_levels(levels: Any, corruption: Any) -> list[Any]:
    if levels is None:
        return list(corruption.default_levels)
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise ValueError(f"levels must be a non-empty sequence of {corruption.level_name} values, got {levels!r}")
    levels = list(np.asarray(levels).tolist()) if isinstance(levels, np.ndarray) else list(levels)
    if not levels:
        raise ValueError(f"levels must be a non-empty sequence of {corruption.level_name} values")
    return [corruption.check_level(level) for level in levels]


def _point_measures(
    predictor: Predictor, model: Any, x: np.ndarray, y: np.ndarray, measures: tuple[str, ...],
    density: DensityConfidence | None, batch_size: int,
) -> dict[str, np.ndarray]:
    """Per point (N,) values of each measure on inputs ``x`` (accuracy as 0/1 correctness)."""
    log_mean = predictive_log_probs(predictor, x, batch_size=batch_size)
    if np.isnan(log_mean).any():
        raise FloatingPointError("the model returned NaN log-probabilities on these inputs")
    out: dict[str, np.ndarray] = {}
    if "accuracy" in measures:
        out["accuracy"] = (np.argmax(log_mean, axis=1) == y).astype(np.float64)
    if "max_probability" in measures:
        out["max_probability"] = np.exp(np.max(log_mean, axis=1).astype(np.float64))
    if "density_confidence" in measures or "density_confidence_predicted" in measures:
        features = posterior_features(model, x, batch_size=batch_size)
        if "density_confidence" in measures:
            out["density_confidence"] = np.asarray(density_confidence(density, features), np.float64)
        if "density_confidence_predicted" in measures:
            decision = np.argmax(log_mean, axis=1)
            out["density_confidence_predicted"] = np.asarray(
                density_confidence(density, features, decision), np.float64
            )
    return out


def corruption_curve(
    model: Any,
    x: Any,
    y: Any,
    *,
    corruption: str,
    image_shape: tuple[int, ...],
    rng_key: jax.Array,
    levels: Any = None,
    measures: Any = None,
    density: DensityConfidence | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Accuracy and confidence of the posterior predictive against the level of a corruption.

    Args:
        model: a ``Posterior``, a ``Predictor`` or a callable ``x (N, ...) -> (S, N, C)`` log-probabilities
            (or logits).
        x: (N, H*W) clean images inside ``bounds``.
        y: (N,) labels in [0, C).
        corruption: a name in ``corruptions.CORRUPTIONS`` (``"gaussian_noise"``, ``"gaussian_blur"``,
            ``"jpeg"``).
        image_shape: (H, W) (or (H, W, channels)) of one image.
        rng_key: JAX key for the noise (the other corruptions ignore it). The same key serves every level
            (common random numbers: each noise level scales one draw), so the curve is smooth in the level
            and each image sees more of the same noise as the level grows.
        levels: the levels to sweep, in the corruption's units; default its seed-002 sweep.
        measures: names from ``CURVE_MEASURES``; default accuracy and max probability, plus both density
            confidences when ``density`` is given.
        density: a ``DensityConfidence`` fitted to the model's training features
            (``fit_density_confidence(posterior_features(model, x_train), y_train)``).
        bounds: (lo, hi) valid pixel range.
        batch_size: points per chunk.
    Returns:
        dict with ``corruption``, ``level_name``, ``levels`` (list), ``measures``: for each measure a dict
        of ``clean`` (value on the uncorrupted x), ``values`` (per level: accuracy, or the mean confidence
        over points), ``normalised`` (per level; see the module docstring; ``None`` entries for accuracy
        when the clean accuracy is 0) and, for confidence measures, ``normalised_of_mean`` and
        ``rise_fraction`` (per level, the fraction of points whose confidence exceeds their clean one:
        ``failure_fraction``); plus ``num_points``, ``s_eval``, ``decision_rule`` and ``normalisation``.
    """
    spec = get_corruption(corruption)
    x = check_points(x)
    if x.ndim != 2:
        raise ValueError(f"x must be flattened images (N, H*W), got shape {x.shape}")
    image_shape = check_image_shape(image_shape, x.shape[1])
    if bounds is None:
        raise ValueError("bounds must be a pair (lo, hi): the corruptions clip to the valid pixel range")
    bounds = check_bounds(bounds, x)
    predictor = as_predictor(model, x)
    labels = check_point_labels(y, x.shape[0], predictor.num_classes)
    measures = _check_measures(measures, density)
    levels = _check_levels(levels, spec)
    batch_size = check_batch_size(batch_size)

    def measure_at(inputs: np.ndarray) -> dict[str, np.ndarray]:
        return _point_measures(predictor, model, inputs, labels, measures, density, batch_size)

    clean = measure_at(x)
    curves: dict[str, dict[str, Any]] = {}
    for name in measures:
        curves[name] = {"clean": float(np.mean(clean[name])), "values": [], "normalised": []}
        if name != "accuracy":
            curves[name].update(normalised_of_mean=[], rise_fraction=[])
    for level in levels:
        corrupted = spec.apply(rng_key, x, level, image_shape, bounds)
        at_level = measure_at(corrupted)
        for name in measures:
            curve, values, reference = curves[name], at_level[name], clean[name]
            mean = float(np.mean(values))
            curve["values"].append(mean)
            if name == "accuracy":
                curve["normalised"].append(None if curve["clean"] == 0 else mean / curve["clean"])
            else:
                curve["normalised"].append(float(np.mean(values / reference)))
                curve["normalised_of_mean"].append(mean / curve["clean"])
                curve["rise_fraction"].append(failure_fraction(reference, values))
    return {
        "corruption": spec.name,
        "level_name": spec.level_name,
        "levels": list(levels),
        "measures": curves,
        "num_points": int(x.shape[0]),
        "s_eval": predictor.num_draws,
        "decision_rule": DECISION_RULE,
        "normalisation": CURVE_NORMALISATION,
    }


def accuracy_vs_eps(
    attack_fn: Callable[..., Any], model: Any, x: Any, y: Any, *, eps_values: Any, **attack_options: Any
) -> dict[str, Any]:
    """A robustness (security) curve: run ``attack_fn`` at each budget and collect its results.

    Args:
        attack_fn: an attack from ``ppl_uq.harness.attacks`` taking ``(model, x, y, *, eps=..., ...)`` and
            returning an ``AttackResult`` (``fgsm``, ``pgd``).
        model, x, y: passed to the attack unchanged.
        eps_values: non-empty 1-D sequence of finite budgets >= 0.
        **attack_options: further keywords for every call (the same ``rng_key`` is reused at each eps,
            so the random starts are common to all budgets).
    Returns:
        dict with ``attack`` (the result's name), ``eps`` (list, as given), ``clean_accuracy`` (at the first
        eps), ``robust_accuracy``, ``success_rate`` (``None`` where no point is clean-correct), ``mean_l2``,
        ``mean_linf``, ``mean_rms`` (means over all N points of the perturbation's size), ``summaries``
        (each result's ``summary()``), and ``non_increasing`` (bool: robust accuracy never rises as eps
        grows, a sanity check after ART's security curve).
    """
    if not callable(attack_fn):
        raise TypeError(f"attack_fn must be callable (e.g. ppl_uq.harness.attacks.pgd), got {attack_fn!r}")
    if "eps" in attack_options:
        raise TypeError("pass the budgets as eps_values, not eps")
    eps = as_finite_array(eps_values, "eps_values").astype(np.float64)
    if eps.ndim != 1 or np.any(eps < 0):
        raise ValueError(f"eps_values must be a 1-D sequence of finite numbers >= 0, got {np.asarray(eps_values)!r}")
    results = [attack_fn(model, x, y, eps=float(value), **attack_options) for value in eps]
    distances = [result.distances for result in results]
    robust = [result.robust_accuracy for result in results]
    order = np.argsort(eps, kind="stable")
    return {
        "attack": results[0].attack,
        "eps": eps.tolist(),
        "clean_accuracy": results[0].clean_accuracy,
        "robust_accuracy": robust,
        "success_rate": [result.success_rate for result in results],
        "mean_l2": [float(np.mean(d["l2"])) for d in distances],
        "mean_linf": [float(np.mean(d["linf"])) for d in distances],
        "mean_rms": [float(np.mean(d["rms"])) for d in distances],
        "summaries": [result.summary() for result in results],
        "non_increasing": bool(np.all(np.diff(np.asarray(robust)[order]) <= 0)),
    }


__all__ = [
    "CURVE_MEASURES",
    "CURVE_NORMALISATION",
    "accuracy_vs_eps",
    "corruption_curve",
    "failure_count",
    "failure_fraction",
]
