"""Calibration metrics: ECE (equal-width and equal-mass bins), MCE, NLL, Brier, reliability-diagram data
(drawn by ``ppl_uq.report.harness_figures.plot_reliability``).

Inputs, chosen once:

- binned metrics (ECE, MCE, reliability data) take ``confidence`` (N,) in [0, 1] and ``correct`` (N,)
  (bool or 0/1), so any confidence score can be binned;
- metrics of the whole predictive distribution take ``log_predictive`` (N, C), normalised
  log-probabilities log p_hat(c | x) as ``predictive_log_probs`` returns them (``-inf`` allowed for a
  probability of exactly 0), and integer labels ``y`` (N,). The number of classes C is the array's second
  dimension; nothing is guessed from the labels that happen to appear (no "binary problem" special case).

Everything is computed in float64 NumPy (float32 inputs are converted first, so a float32 confidence of
0.2 is the float64 number 0.2000000030 and is binned as that).

Bin rules (``BINNING_RULES``):

- ``"width"``: B bins with edges e_k = k/B (float64). Bin k holds the confidences in (e_k, e_{k+1}]; the
  first bin is also closed at 0, so bin 0 is [0, 1/B]. The last bin (e_{B-1}, 1] is closed at 1, so a
  confidence of exactly 1.0 lands in bin B-1, never in a phantom bin B. A confidence exactly on an inner
  edge k/B belongs to the bin below it.
- ``"mass"``: the points sorted by confidence with a stable sort (ties keep their input order) and cut by
  ``np.array_split`` into B consecutive groups whose sizes differ by at most one (the first N mod B groups
  are one larger). Tied confidences can therefore straddle two adjacent bins; which points go where is
  decided by their order in the input, so the result is deterministic. With N < B the last B - N bins are
  empty.

ECE = sum_b (n_b / N) |acc_b - conf_b| over non-empty bins (computed as sum_b |sum correct - sum conf| / N);
MCE = max_b |acc_b - conf_b| over non-empty bins. Empty bins are skipped, never NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.special import logsumexp

BINNINGS = ("width", "mass")

BINNING_RULES = {
    "width": "bin k = (k/B, (k+1)/B], the first bin closed at 0 ([0, 1/B]), the last closed at 1",
    "mass": "stable sort by confidence, np.array_split into B groups of near-equal count; ties split by input order",
}

#: Tolerance on |logsumexp_c log_predictive[n, c]| accepted as "normalised" (float32 rounding).
NORMALISATION_TOLERANCE = 1e-3


class ReliabilityData(NamedTuple):
    """Per-bin calibration data (B bins). Empty bins have ``counts == 0``; their entries in
    ``mean_confidence`` and ``accuracy`` (and, for equal-mass bins, ``lower``/``upper``) are masked
    (``numpy.ma``), so they can never be read as numbers; ``.tolist()`` turns them into ``None``.

    Attributes:
        binning: ``"width"`` or ``"mass"``.
        lower: (B,) lower bin edges: k/B for equal-width bins; the smallest member's confidence for
            equal-mass bins.
        upper: (B,) upper bin edges: (k+1)/B, or the largest member's confidence.
        counts: (B,) int64 points per bin (sums to N).
        mean_confidence: (B,) masked float64, mean confidence of the bin's points.
        accuracy: (B,) masked float64, fraction of the bin's points that are correct.
        num_points: N.
    """

    binning: str
    lower: np.ma.MaskedArray
    upper: np.ma.MaskedArray
    counts: np.ndarray
    mean_confidence: np.ma.MaskedArray
    accuracy: np.ma.MaskedArray
    num_points: int

    @property
    def nonempty(self) -> np.ndarray:
        """(B,) bool: the bin holds at least one point."""
        return self.counts > 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready lists, ``None`` for the entries of empty bins."""
        return {
            "binning": self.binning,
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "counts": self.counts.tolist(),
            "mean_confidence": self.mean_confidence.tolist(),
            "accuracy": self.accuracy.tolist(),
            "num_points": self.num_points,
        }


# -- argument checks ------------------------------------------------------------------------------
def _check_num_bins(num_bins: Any) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
    return int(num_bins)


def _check_binning(binning: Any) -> str:
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    return binning


def _numeric_1d(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional array (N,), got shape {array.shape}")
    return array


def check_confidence_correct(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(confidence float64 (N,), correct float64 0/1 (N,))``, or raise naming the argument.

    ``confidence`` must be finite and in [0, 1]; ``correct`` bool or numbers equal to 0 or 1, same length.
    """
    conf = _numeric_1d(confidence, "confidence").astype(np.float64)
    if not np.all(np.isfinite(conf)):
        raise ValueError(f"confidence contains {int(np.sum(~np.isfinite(conf)))} NaN or infinite value(s)")
    if conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError(f"confidence must lie in [0, 1]; found values from {conf.min()!r} to {conf.max()!r}")
    hits = _numeric_1d(correct, "correct")
    if hits.shape != conf.shape:
        raise ValueError(f"correct must have the shape of confidence {conf.shape}, got {hits.shape}")
    hits = hits.astype(np.float64)
    if not np.all((hits == 0.0) | (hits == 1.0)):
        raise ValueError("correct must hold only True/False (or 0/1) per point")
    return conf, hits


def check_log_predictive(log_predictive: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(log_predictive float64 (N, C), y int64 (N,))``, or raise naming the argument.

    ``log_predictive`` must be (N, C) with C >= 1, free of NaN and +inf, each row normalised
    (|logsumexp| <= ``NORMALISATION_TOLERANCE``; pass ``log_softmax(logits)``, not logits). ``y`` must hold
    integers in [0, C) with C taken from ``log_predictive``'s shape.
    """
    log_p = np.asarray(log_predictive)
    if log_p.dtype == object or not np.issubdtype(log_p.dtype, np.floating):
        raise TypeError(f"log_predictive must be a floating-point array (N, C), got dtype {log_p.dtype}")
    if log_p.ndim != 2 or 0 in log_p.shape:
        raise ValueError(f"log_predictive must be a non-empty (N, C) array, got shape {log_p.shape}")
    log_p = log_p.astype(np.float64)
    if np.isnan(log_p).any() or (log_p == np.inf).any():
        raise ValueError("log_predictive contains NaN or +inf; only finite values and -inf (p = 0) are allowed")
    deviation = np.abs(logsumexp(log_p, axis=1))
    if not np.all(deviation <= NORMALISATION_TOLERANCE):
        raise ValueError(
            f"log_predictive rows must be normalised log-probabilities (logsumexp over classes = 0); the largest "
            f"|logsumexp| is {float(np.max(deviation))!r} (pass log_softmax of logits)"
        )
    labels = _numeric_1d(y, "y")
    if labels.shape[0] != log_p.shape[0]:
        raise ValueError(f"y must have shape ({log_p.shape[0]},) to match log_predictive, got {labels.shape}")
    if np.issubdtype(labels.dtype, np.floating) and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise ValueError("y must hold integer class labels")
    labels = labels.astype(np.int64)
    num_classes = log_p.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels in y must lie in {{0, ..., {num_classes - 1}}} (C = {num_classes} from log_predictive's "
            f"shape); found values from {labels.min()} to {labels.max()}"
        )
    return log_p, labels


# -- binning --------------------------------------------------------------------------------------
def _bin_index(conf: np.ndarray, num_bins: int, binning: str) -> np.ndarray:
    """(N,) bin of every point under the rule of ``binning`` (see the module docstring)."""
    if binning == "width":
        inner_edges = np.arange(1, num_bins, dtype=np.float64) / num_bins
        # the number of inner edges strictly below c: c in (e_k, e_{k+1}] -> k; 0 -> 0; 1.0 -> B - 1
        return np.searchsorted(inner_edges, conf, side="left")
    order = np.argsort(conf, kind="stable")
    sizes = [len(part) for part in np.array_split(order, num_bins)]
    index = np.empty(conf.shape[0], np.int64)
    index[order] = np.repeat(np.arange(num_bins), sizes)
    return index


def _bin_sums(conf: np.ndarray, hits: np.ndarray, num_bins: int, binning: str):
    index = _bin_index(conf, num_bins, binning)
    counts = np.bincount(index, minlength=num_bins)
    conf_sums = np.bincount(index, weights=conf, minlength=num_bins)
    hit_sums = np.bincount(index, weights=hits, minlength=num_bins)
    return index, counts, conf_sums, hit_sums


def reliability_data(confidence: Any, correct: Any, *, num_bins: int = 15, binning: str = "width") -> ReliabilityData:
    """Per-bin counts, mean confidence and accuracy (see ``ReliabilityData`` and the bin rules above)."""
    conf, hits = check_confidence_correct(confidence, correct)
    num_bins, binning = _check_num_bins(num_bins), _check_binning(binning)
    index, counts, conf_sums, hit_sums = _bin_sums(conf, hits, num_bins, binning)
    empty = counts == 0
    safe = np.maximum(counts, 1)
    if binning == "width":
        edges = np.arange(num_bins + 1, dtype=np.float64) / num_bins
        lower = np.ma.masked_array(edges[:-1], mask=np.zeros(num_bins, bool))
        upper = np.ma.masked_array(edges[1:], mask=np.zeros(num_bins, bool))
    else:
        low, high = np.ones(num_bins), np.zeros(num_bins)
        np.minimum.at(low, index, conf)
        np.maximum.at(high, index, conf)
        lower, upper = np.ma.masked_array(low, mask=empty), np.ma.masked_array(high, mask=empty)
    return ReliabilityData(
        binning=binning,
        lower=lower,
        upper=upper,
        counts=counts.astype(np.int64),
        mean_confidence=np.ma.masked_array(np.where(empty, 0.0, conf_sums / safe), mask=empty),
        accuracy=np.ma.masked_array(np.where(empty, 0.0, hit_sums / safe), mask=empty),
        num_points=int(conf.shape[0]),
    )


def expected_calibration_error(
    confidence: Any, correct: Any, *, num_bins: int = 15, binning: str = "width"
) -> float:
    """ECE = sum over non-empty bins of (n_b / N) |acc_b - conf_b| (float, in [0, 1]).

    Args:
        confidence: (N,) confidences in [0, 1] (e.g. max_c p_hat(c | x)).
        correct: (N,) bool or 0/1, whether the decision was right.
        num_bins: B, a positive int (N < B is fine: empty bins are skipped).
        binning: ``"width"`` (equal-width bins on [0, 1]) or ``"mass"`` (equal-count bins); see the module
            docstring for the exact edge and tie rules.
    """
    conf, hits = check_confidence_correct(confidence, correct)
    num_bins, binning = _check_num_bins(num_bins), _check_binning(binning)
    _, _, conf_sums, hit_sums = _bin_sums(conf, hits, num_bins, binning)
    return float(np.sum(np.abs(hit_sums - conf_sums)) / conf.shape[0])


def maximum_calibration_error(
    confidence: Any, correct: Any, *, num_bins: int = 15, binning: str = "width"
) -> float:
    """MCE = max over non-empty bins of |acc_b - conf_b| (float, in [0, 1]); arguments as for the ECE."""
    conf, hits = check_confidence_correct(confidence, correct)
    num_bins, binning = _check_num_bins(num_bins), _check_binning(binning)
    _, counts, conf_sums, hit_sums = _bin_sums(conf, hits, num_bins, binning)
    filled = counts > 0
    return float(np.max(np.abs(hit_sums[filled] - conf_sums[filled]) / counts[filled]))


def negative_log_likelihood(log_predictive: Any, y: Any) -> float:
    """Mean over points of -log p_hat(y | x), in nats (float; +inf if a true class has probability 0).

    ``log_predictive`` (N, C) normalised log-probabilities, ``y`` (N,) labels in [0, C).
    """
    log_p, labels = check_log_predictive(log_predictive, y)
    return float(-np.mean(log_p[np.arange(labels.shape[0]), labels]))


def brier_score(log_predictive: Any, y: Any) -> float:
    """Multi-class Brier score: mean over points of sum_c (p_hat(c) - [c == y])^2, in [0, 2] (float).

    This is Brier's original form over all C classes (C from ``log_predictive``'s shape). For C = 2 it is
    twice the binary form ``mean (p(1) - y)^2`` of ``sklearn.metrics.brier_score_loss``.
    """
    log_p, labels = check_log_predictive(log_predictive, y)
    return _brier(np.exp(log_p), labels)


def _brier(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.zeros_like(probs)
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def confidence_and_correct(log_predictive: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence max_c p_hat(c) and correctness of the argmax decision, each float64 (N,).

    Ties between classes go to the lowest index (``argmax``), as ``evaluate_predictive`` decides. A
    confidence is clipped to at most 1.0: a float32 log p_hat can exceed 0 by rounding.
    """
    log_p, labels = check_log_predictive(log_predictive, y)
    return _confidence_correct(log_p, labels)


def _confidence_correct(log_p: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.minimum(np.exp(np.max(log_p, axis=1)), 1.0)
    return confidence, (np.argmax(log_p, axis=1) == labels).astype(np.float64)


def calibration_summary(log_predictive: Any, y: Any, *, num_bins: int = 15) -> dict[str, Any]:
    """The calibration metrics of one predictive distribution.

    Args:
        log_predictive: (N, C) normalised log p_hat(c | x) (``predictive_log_probs``).
        y: (N,) labels in [0, C).
        num_bins: bins for ECE / MCE.
    Returns:
        dict of floats: ``ece`` (equal-width), ``ece_mass`` (equal-mass), ``mce`` (equal-width), ``nll``,
        ``brier`` (multi-class), ``accuracy`` (argmax decision), ``avg_confidence`` (mean max_c p_hat(c));
        and ints ``num_points``, ``num_classes``, ``num_bins``.
    """
    log_p, labels = check_log_predictive(log_predictive, y)
    num_bins = _check_num_bins(num_bins)
    conf, hits = _confidence_correct(log_p, labels)
    return {
        "ece": expected_calibration_error(conf, hits, num_bins=num_bins, binning="width"),
        "ece_mass": expected_calibration_error(conf, hits, num_bins=num_bins, binning="mass"),
        "mce": maximum_calibration_error(conf, hits, num_bins=num_bins, binning="width"),
        "nll": float(-np.mean(log_p[np.arange(labels.shape[0]), labels])),
        "brier": _brier(np.exp(log_p), labels),
        "accuracy": float(np.mean(hits)),
        "avg_confidence": float(np.mean(conf)),
        "num_points": int(labels.shape[0]),
        "num_classes": int(log_p.shape[1]),
        "num_bins": num_bins,
    }


__all__ = [
    "BINNINGS",
    "BINNING_RULES",
    "ReliabilityData",
    "brier_score",
    "calibration_summary",
    "check_confidence_correct",
    "check_log_predictive",
    "confidence_and_correct",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_data",
]
