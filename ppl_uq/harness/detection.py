"""Detection metrics: AUROC (misclassification, OOD, adversarial, and seed 000's balanced variant) and the
FPR at a fixed TPR.

Scores are used raw (never passed through a sigmoid; a monotone map would not change a ranking metric,
but the raw scores are what is reported). Orientation is always explicit:

- ``auroc`` / ``fpr_at_tpr`` take ``higher_is_positive``: whether a higher score points to the positive
  class. Internally a score is negated (exact in floating point) when it is False.
- the task functions take ``higher_means``: ``"uncertain"`` (entropy, mutual information, variance) or
  ``"confident"`` (max probability); ``uncertainty.HIGHER_MEANS[name]`` gives it for each measure. The
  positive class is always the one a detector should flag: misclassified, out-of-distribution or
  adversarial points, so "uncertain" means higher scores point to the positives.

AUROC is ``sklearn.metrics.roc_auc_score``: the probability that a random positive outscores a random
negative, ties counting 1/2. Every function raises ``ValueError`` if a class is empty or a score is NaN/inf.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

HIGHER_MEANS_CHOICES = ("uncertain", "confident")

#: How ``fpr_at_tpr`` reads the ROC curve.
FPR_AT_TPR_CONVENTION = (
    "A point is flagged positive when its (oriented) score is >= a threshold t. The result is the FPR at the "
    "largest threshold t whose TPR is >= the target, i.e. the smallest FPR among thresholds that reach the "
    "target TPR. Thresholds are the distinct observed scores (sklearn.metrics.roc_curve, "
    "drop_intermediate=False); there is no interpolation between ROC points, and tied scores are flagged "
    "together, so the achieved TPR can exceed the target."
)


class BalancedAUROC(NamedTuple):
    """Result of ``balanced_adversarial_auroc``.

    Attributes:
        auroc: AUROC on the balanced subsample (positives = successful adversarial examples).
        num_used: points used from each class (the smaller of the two counts).
        num_clean_available: clean-correct points given.
        num_adversarial_available: successful adversarial points given.
        clean_indices: (num_used,) int64 indices into the clean scores that were used.
        adversarial_indices: (num_used,) int64 indices into the adversarial scores that were used.
    """

    auroc: float
    num_used: int
    num_clean_available: int
    num_adversarial_available: int
    clean_indices: np.ndarray
    adversarial_indices: np.ndarray


def _scores(value: Any, name: str) -> np.ndarray:
    """``value`` as a finite float64 (n,) array with n >= 1, or raise naming ``name``."""
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array of scores, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (n,), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: both classes need at least one point for a detection metric")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(array)))} NaN or infinite score(s)")
    return array


def _orientation(higher_means: Any) -> bool:
    """``higher_is_positive`` for a task whose positives are the points to flag."""
    if higher_means not in HIGHER_MEANS_CHOICES:
        raise ValueError(f"higher_means must be one of {HIGHER_MEANS_CHOICES}, got {higher_means!r}")
    return higher_means == "uncertain"


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _labelled(pos: np.ndarray, neg: np.ndarray, higher_is_positive: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.ones(pos.shape[0], np.int8), np.zeros(neg.shape[0], np.int8)])
    scores = np.concatenate([pos, neg])
    return labels, scores if higher_is_positive else -scores


def informative_groups(first: Any, second: Any) -> bool:
    """Whether an AUROC between two groups of scores means something: both non-empty and the scores not all
    equal (the mutual information or predictive variance of a single draw is 0 everywhere); callers record
    None otherwise."""
    first, second = np.asarray(first), np.asarray(second)
    return len(first) > 0 and len(second) > 0 and float(np.ptp(np.concatenate([first, second]))) > 0


def auroc(scores_positive: Any, scores_negative: Any, *, higher_is_positive: bool = True) -> float:
    """Area under the ROC curve separating positives from negatives by their raw scores.

    Args:
        scores_positive: (n_pos,) finite scores of the positive class.
        scores_negative: (n_neg,) finite scores of the negative class.
        higher_is_positive: True when a higher score points to the positive class.
    Returns:
        float in [0, 1]: P(positive outscores negative) + P(tie)/2 under the orientation, as
        ``sklearn.metrics.roc_auc_score``.
    """
    pos = _scores(scores_positive, "scores_positive")
    neg = _scores(scores_negative, "scores_negative")
    labels, scores = _labelled(pos, neg, _check_flag(higher_is_positive, "higher_is_positive"))
    return float(roc_auc_score(labels, scores))


def misclassification_auroc(score: Any, correct: Any, *, higher_means: str) -> float:
    """AUROC for telling misclassified points (positives) from correct ones (negatives) by ``score`` (N,).

    ``correct`` (N,) is bool or 0/1; ``higher_means`` is ``"uncertain"`` or ``"confident"``. Raises if every
    point is correct or every point is wrong.
    """
    values = _scores(score, "score")
    hits = np.asarray(correct)
    if hits.shape != values.shape:
        raise ValueError(f"correct must have the shape of score {values.shape}, got {hits.shape}")
    if hits.dtype == object or not (np.issubdtype(hits.dtype, np.number) or hits.dtype == np.bool_) or not np.all(
        (hits == 0) | (hits == 1)
    ):
        raise ValueError("correct must hold only True/False (or 0/1) per point")
    hits = hits.astype(bool)
    if hits.all() or not hits.any():
        kind = "misclassified" if hits.all() else "correctly classified"
        raise ValueError(f"correct has no {kind} points: misclassification AUROC needs both kinds")
    return auroc(values[~hits], values[hits], higher_is_positive=_orientation(higher_means))


def ood_auroc(score_in: Any, score_out: Any, *, higher_means: str) -> float:
    """AUROC for telling out-of-distribution points (``score_out``, positives) from in-distribution ones
    (``score_in``, negatives); ``higher_means`` is ``"uncertain"`` or ``"confident"``."""
    orientation = _orientation(higher_means)
    return auroc(_scores(score_out, "score_out"), _scores(score_in, "score_in"), higher_is_positive=orientation)


def adversarial_auroc(score_clean: Any, score_adv: Any, *, higher_means: str) -> float:
    """AUROC for telling adversarial inputs (``score_adv``, positives) from clean ones (``score_clean``,
    negatives); ``higher_means`` is ``"uncertain"`` or ``"confident"``."""
    orientation = _orientation(higher_means)
    return auroc(_scores(score_adv, "score_adv"), _scores(score_clean, "score_clean"), higher_is_positive=orientation)


def balanced_adversarial_auroc(
    score_clean_correct: Any, score_successful_adv: Any, *, rng_key: jax.Array, higher_means: str
) -> BalancedAUROC:
    """Seed 000's balanced adversarial-detection AUROC.

    Clean test points that are correctly classified (negatives) vs successful adversarial examples
    (positives), both subsampled without replacement to the smaller of the two counts, so neither class
    dominates. The subsample is drawn with ``rng_key`` (split once: one key per class).

    Returns:
        ``BalancedAUROC`` with the AUROC, the count used per class, the counts given and the indices used.
    """
    clean = _scores(score_clean_correct, "score_clean_correct")
    adv = _scores(score_successful_adv, "score_successful_adv")
    orientation = _orientation(higher_means)
    num_used = min(clean.shape[0], adv.shape[0])
    key_clean, key_adv = jax.random.split(rng_key)
    clean_idx = np.sort(np.asarray(jax.random.choice(key_clean, clean.shape[0], (num_used,), replace=False)))
    adv_idx = np.sort(np.asarray(jax.random.choice(key_adv, adv.shape[0], (num_used,), replace=False)))
    value = auroc(adv[adv_idx], clean[clean_idx], higher_is_positive=orientation)
    return BalancedAUROC(
        auroc=value,
        num_used=num_used,
        num_clean_available=int(clean.shape[0]),
        num_adversarial_available=int(adv.shape[0]),
        clean_indices=clean_idx.astype(np.int64),
        adversarial_indices=adv_idx.astype(np.int64),
    )


def fpr_at_tpr(
    scores_positive: Any, scores_negative: Any, tpr: float = 0.95, *, higher_is_positive: bool = True
) -> float:
    """False-positive rate at the first ROC point whose true-positive rate reaches ``tpr``.

    Convention (``FPR_AT_TPR_CONVENTION``): flag a point when its oriented score is >= t; return the FPR at
    the largest threshold t with TPR >= ``tpr`` (the smallest FPR reaching the target); thresholds are the
    observed scores from ``sklearn.metrics.roc_curve(drop_intermediate=False)``, no interpolation, tied
    scores flagged together.

    Args:
        scores_positive, scores_negative: (n,) finite raw scores of each class.
        tpr: target true-positive rate in (0, 1].
        higher_is_positive: True when a higher score points to the positive class.
    Returns:
        float in [0, 1].
    """
    pos = _scores(scores_positive, "scores_positive")
    neg = _scores(scores_negative, "scores_negative")
    target = tpr
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)) or not (
        0.0 < target <= 1.0
    ):
        raise ValueError(f"tpr must be a number in (0, 1], got {tpr!r}")
    labels, scores = _labelled(pos, neg, _check_flag(higher_is_positive, "higher_is_positive"))
    fprs, tprs, _ = roc_curve(labels, scores, drop_intermediate=False)
    first = int(np.argmax(tprs >= float(target)))  # tprs ends at 1.0, so some entry qualifies
    return float(fprs[first])


__all__ = [
    "FPR_AT_TPR_CONVENTION",
    "HIGHER_MEANS_CHOICES",
    "BalancedAUROC",
    "adversarial_auroc",
    "auroc",
    "balanced_adversarial_auroc",
    "fpr_at_tpr",
    "misclassification_auroc",
    "ood_auroc",
]
