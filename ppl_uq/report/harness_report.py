"""The harness report: the same side-by-side comparison from any set of Posteriors (or log_prob_fn
callables) and data.

``harness_report(models, test, out, rng_key=...)`` scores every model on the test set and writes to ``out``:

- ``harness.md``: calibration table (accuracy, ECE equal-width / equal-mass, MCE, NLL, Brier), robustness
  table (accuracy vs eps for PGD), AUROC table (misclassification, OOD when given, balanced adversarial
  detection) per uncertainty measure, the transfer matrix, corruption curves (images only) and the gate
  flags of each model (MCMC R-hat / divergences, optimisers that did not converge), shown, not hidden;
- ``harness.json``: every number above, with the conventions and settings;
- figures: ``robustness_curves.png``, ``reliability.png``, ``uncertainty_histograms.png``,
  ``transfer_heatmap.png`` and, with ``image_shape``, ``corruption_<name>.png``.

Every file is written atomically. The decision rule everywhere is the argmax of the posterior-predictive
mean over all S_eval draws of that model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from ..harness.attacks import deepfool, lbfgs_attack, min_norm_attack, pgd, sanity_checks
from ..harness.attacks._common import CONVENTIONS, AttackResult, as_predictor
from ..harness.attacks.transfer import transfer_matrix
from ..harness.calibration import calibration_summary, confidence_and_correct, plot_reliability, reliability_data
from ..harness.density import density_confidence, fit_density_confidence, posterior_features, softmax_scaling_demo
from ..harness.detection import (
    balanced_adversarial_auroc,
    fpr_at_tpr,
    misclassification_auroc,
    ood_auroc,
)
from ..harness.predictive import check_point_labels, check_points, predictive_log_probs
from ..harness.robustness import corruption_curve, failure_count
from ..harness.uncertainty import HIGHER_MEANS, MEASURES, uncertainty_measures
from .harness_figures import plot_heatmap, plot_robustness_curves, plot_uncertainty_histograms
from .harness_markdown import harness_markdown
from .io import atomic_write_json, atomic_write_text
from .tables import convergence_flags, mcmc_gate_flags

#: Logit scales of the softmax-pathology table (seed 002, Lemma 3.1).
SCALING_ALPHAS = (1.0, 2.0, 4.0, 8.0, 16.0)


def gate_flags(model: Any) -> list[str]:
    """Failed gates of a Posterior (MCMC diagnostics, optimiser convergence); [] for a plain callable."""
    flags: list[str] = []
    if getattr(model, "is_mcmc", False):
        flags += mcmc_gate_flags(model.diagnostics())
    if hasattr(model, "info"):
        flags += convergence_flags(model.info)
    return flags


def _informative(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether an AUROC between two groups of scores means anything: both groups are non-empty (a model
    may make no mistakes) and the scores are not all equal (mutual information and variance of a single
    draw, S = 1, are 0 everywhere, where the AUROC would be a meaningless 0.5). Otherwise the report
    shows "—"."""
    return len(first) > 0 and len(second) > 0 and np.ptp(np.concatenate([first, second])) > 0


def _check_models(models: Mapping[str, Any], x: np.ndarray) -> dict[str, Any]:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping {name: Posterior or log_prob_fn}")
    for name in models:
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        as_predictor(models[name], x)  # raises a clear error for anything else
    return dict(models)


def _check_eps_values(eps_values: Sequence[float]) -> list[float]:
    values = [float(e) for e in eps_values]
    if not values or any(not np.isfinite(e) or e < 0 for e in values) or values != sorted(values):
        raise ValueError(f"eps_values must be a non-empty increasing sequence of finite numbers >= 0, got {eps_values!r}")
    return values


def harness_report(
    models: Mapping[str, Any],
    test: tuple[Any, Any],
    out: str | Path,
    *,
    rng_key: jax.Array,
    eps_values: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
    detection_eps: float | None = None,
    norm: str = "linf",
    steps: int = 20,
    bounds: tuple[float, float] | None = None,
    ood: Any = None,
    num_attack_points: int | None = None,
    image_shape: tuple[int, ...] | None = None,
    corruptions: Sequence[str] = ("gaussian_noise", "gaussian_blur", "jpeg"),
    num_bins: int = 15,
    title: str = "Inference methods compared",
    batch_size: int = 256,
    attack_results: Mapping[str, AttackResult] | None = None,
    min_distortion_points: int = 0,
    sanity: bool = False,
    train: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Score every model and write the report (see the module docstring).

    Args:
        models: ``{name: Posterior or callable x (N, ...) -> (S, N, C)}``, all on the same inputs.
        test: ``(x (N, ...), y (N,))`` test data.
        out: output directory (created).
        rng_key: JAX key for the attacks' random starts, the noise rows and the balanced subsamples.
        eps_values: increasing budgets for the robustness curves (PGD in ``norm``).
        detection_eps: the budget whose PGD examples feed adversarial detection and the transfer matrix
            (default: the largest of ``eps_values``).
        norm: ``"linf"`` or ``"l2"``.
        steps: PGD steps.
        bounds: optional input box, e.g. ``(0, 1)`` for images.
        ood: optional out-of-distribution inputs (M, ...) for OOD AUROC.
        num_attack_points: attack only the first this many test points (default: all).
        image_shape: (H, W) of one image to add corruption curves (needs ``bounds``).
        corruptions: corruption names (see ``ppl_uq.harness.corruptions.CORRUPTIONS``).
        num_bins: ECE / reliability bins.
        title: the report's heading.
        batch_size: points per attack batch.
        attack_results: optional ``{name: AttackResult}`` (one per model, made against that model) to use
            for adversarial detection and the transfer matrix instead of PGD at ``detection_eps``, e.g. the
            sphere attack's examples (``attack_result_from_examples`` wraps examples made elsewhere).
        min_distortion_points: when > 0, run DeepFool, box-constrained L-BFGS (needs ``bounds``) and the
            min-norm attack on this many test points and report their minimum distortions.
        sanity: run ``sanity_checks`` (eps = 0, unbounded, iterative vs single step, n_grad_samples) at
            ``detection_eps`` on the attacked points and report the failures.
        train: optional ``(x_train, y_train)``: fit each model's density confidence (seed 002) to its
            training features; the corruption curves and the DeepFool failure counts then report it
            beside the max softmax probability.
    Returns:
        the dict written to ``harness.json``.
    """
    x = check_points(test[0], "test x")
    models = _check_models(models, x)
    first = as_predictor(next(iter(models.values())), x)
    y = check_point_labels(test[1], x.shape[0], first.num_classes, name="test y")
    eps_values = _check_eps_values(eps_values)
    detection_eps = eps_values[-1] if detection_eps is None else float(detection_eps)
    if image_shape is not None and bounds is None:
        raise ValueError("image_shape needs bounds (the pixel range the corruptions clip to)")
    x_ood = None if ood is None else check_points(ood, "ood")
    if attack_results is not None and set(attack_results) != set(models):
        raise ValueError(f"attack_results must have one entry per model {sorted(models)}, got {sorted(attack_results)}")
    count = x.shape[0] if num_attack_points is None else min(int(num_attack_points), x.shape[0])
    x_attack, y_attack = x[:count], y[:count]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key_attack, key_transfer, key_balance, key_corrupt = jax.random.split(rng_key, 4)

    records: dict[str, dict[str, Any]] = {}
    reliability, histograms, correctness, curves, detection_results = {}, {}, {}, {}, {}
    for index, (name, model) in enumerate(models.items()):
        predictor = as_predictor(model, x)
        log_predictive = predictive_log_probs(predictor.log_prob_fn, x)
        confidence, correct = confidence_and_correct(log_predictive, y)
        measures = uncertainty_measures(predictor.log_prob_fn, x)
        record: dict[str, Any] = {"method": name, "s_eval": predictor.num_draws, "flags": gate_flags(model)}
        record.update(calibration_summary(log_predictive, y, num_bins=num_bins))
        reliability[name] = reliability_data(confidence, correct, num_bins=num_bins)
        histograms[name], correctness[name] = measures, correct.astype(bool)

        auroc: dict[str, dict[str, Any]] = {m: {} for m in MEASURES}
        hit = correct.astype(bool)
        for measure in MEASURES:
            scores = measures[measure]
            auroc[measure]["misclassification"] = (
                misclassification_auroc(scores, hit, higher_means=HIGHER_MEANS[measure])
                if _informative(scores[hit], scores[~hit]) else None)
        if x_ood is not None:
            ood_measures = uncertainty_measures(predictor.log_prob_fn, x_ood)
            for measure in MEASURES:
                scores_in, scores_out = measures[measure], ood_measures[measure]
                informative = _informative(scores_in, scores_out)
                auroc[measure]["ood"] = (ood_auroc(scores_in, scores_out, higher_means=HIGHER_MEANS[measure])
                                         if informative else None)
                auroc[measure]["ood_fpr_at_95_tpr"] = (
                    fpr_at_tpr(scores_out, scores_in, 0.95, higher_is_positive=HIGHER_MEANS[measure] == "uncertain")
                    if informative else None)

        robustness = []
        for i, eps in enumerate(eps_values):
            result = pgd(predictor, x_attack, y_attack, eps=eps, norm=norm, steps=steps, bounds=bounds,
                         rng_key=jax.random.fold_in(key_attack, 1000 * index + i), batch_size=batch_size)
            robustness.append({"eps": eps, "robust_accuracy": result.robust_accuracy,
                               "success_rate": result.success_rate})
        record["robustness"] = robustness
        curves[name] = {"x": eps_values, "y": [r["robust_accuracy"] for r in robustness]}

        if attack_results is None:
            detection = pgd(predictor, x_attack, y_attack, eps=detection_eps, norm=norm, steps=steps,
                            bounds=bounds, rng_key=jax.random.fold_in(key_attack, 1000 * index + 999),
                            batch_size=batch_size)
            clean_measures = {m: v[:count] for m, v in measures.items()}
        else:
            detection = attack_results[name]
            clean_measures = uncertainty_measures(predictor.log_prob_fn, detection.x)
        detection_results[name] = detection
        record["detection_attack"] = {k: v for k, v in detection.summary().items() if k != "conventions"}
        adv_measures = uncertainty_measures(predictor.log_prob_fn, detection.x_adv)
        for measure in MEASURES:
            clean_scores = clean_measures[measure][detection.clean_correct]
            adv_scores = adv_measures[measure][detection.success]
            if _informative(clean_scores, adv_scores):
                balanced = balanced_adversarial_auroc(clean_scores, adv_scores, rng_key=key_balance,
                                                      higher_means=HIGHER_MEANS[measure])
                auroc[measure]["adversarial_balanced"] = balanced.auroc
                auroc[measure]["adversarial_num_used"] = balanced.num_used
            else:
                auroc[measure]["adversarial_balanced"] = None
                auroc[measure]["adversarial_num_used"] = 0
        record["auroc"] = auroc

        density = None
        if train is not None:
            density = fit_density_confidence(posterior_features(model, train[0]), train[1],
                                             num_classes=predictor.num_classes)
            record["density_cov_scale"] = float(density.cov_scale)
            record["softmax_scaling"] = softmax_scaling_demo(posterior_features(model, x), SCALING_ALPHAS,
                                                             density=density)
        if min_distortion_points > 0:
            record["min_distortion"], fooled = _min_distortion(predictor, x[:min_distortion_points],
                                                               y[:min_distortion_points], bounds, batch_size)
            record["deepfool_failures"] = _confidence_failures(model, fooled, density)
        if sanity:
            record["sanity"] = sanity_checks(predictor, x_attack, y_attack, eps=detection_eps, norm=norm, steps=steps,
                                             bounds=bounds, rng_key=jax.random.fold_in(key_attack, 1000 * index + 998),
                                             batch_size=batch_size)
            record["flags"] = record["flags"] + [f"sanity check failed: {name}" for name in record["sanity"]["failed"]]
        if image_shape is not None:
            record["corruptions"] = {
                corruption: corruption_curve(model, x, y, corruption=corruption, image_shape=image_shape,
                                             rng_key=key_corrupt, bounds=bounds, density=density)
                for corruption in corruptions
            }
        records[name] = record

    transfer = transfer_matrix(detection_results, models, noise_sds=("matched",), rng_key=key_transfer,
                               bounds=bounds)
    payload = {
        "title": title,
        "num_test_points": int(x.shape[0]),
        "num_attack_points": count,
        "settings": {"eps_values": eps_values, "detection_eps": detection_eps, "norm": norm, "steps": steps,
                     "bounds": bounds, "num_bins": num_bins, "ood_points": None if x_ood is None else len(x_ood),
                     "detection_attack": (f"PGD {norm} at eps = {detection_eps:g}" if attack_results is None
                                          else ", ".join(sorted({r.attack for r in attack_results.values()})))},
        "conventions": {**CONVENTIONS, "auroc_orientation": dict(HIGHER_MEANS)},
        "models": records,
        "transfer": transfer.to_dict(),
    }
    _write_figures(out, curves, reliability, histograms, correctness, transfer, records, norm, title)
    atomic_write_text(out / "harness.md", harness_markdown(payload, transfer))
    atomic_write_json(out / "harness.json", payload)
    return payload


def _min_distortion(predictor: Any, x: np.ndarray, y: np.ndarray, bounds: Any, batch_size: int) -> dict[str, Any]:
    """DeepFool, L-BFGS (with a box) and min-norm on ``(x, y)``: success rate and distortions of each."""
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
    """Seed 002's failures: successful DeepFool examples whose confidence exceeds their clean input's,
    by the max softmax probability and (with a density) the density confidence of the predicted class."""
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


def _write_figures(out, curves, reliability, histograms, correctness, transfer, records, norm, title) -> None:
    plot_robustness_curves(out / "robustness_curves.png", curves, xlabel=f"eps ({norm})", title=f"{title}: PGD")
    plot_reliability(out / "reliability.png", reliability, title=f"{title}: reliability")
    plot_uncertainty_histograms(out / "uncertainty_histograms.png", histograms, correctness,
                                title=f"{title}: uncertainty, correct vs wrong")
    plot_heatmap(out / "transfer_heatmap.png", transfer.error, transfer.row_names, transfer.column_names,
                 title="Transfer: error rate (%)", xlabel="scored by", ylabel="examples made against")
    corrupted = [r["corruptions"] for r in records.values() if "corruptions" in r]
    for corruption in corrupted[0] if corrupted else ():
        lines = {}
        for name, record in records.items():
            curve = record["corruptions"][corruption]
            lines[f"{name} accuracy"] = {"x": curve["levels"], "y": curve["measures"]["accuracy"]["values"]}
        plot_robustness_curves(out / f"corruption_{corruption}.png", lines, ylabel="accuracy",
                               xlabel=corrupted[0][corruption]["level_name"], title=f"{title}: {corruption}")
