"""The posterior-predictive distribution and the metrics read from it (accuracy, avg. confidence, NLL).

Everything takes a ``log_prob_fn``: a pure callable ``x (N, D) -> log p(c | x, theta_s)`` of shape
(S, N, C), such as ``Posterior.log_prob_fn()``; nothing here knows which backend made the draws. Its
output is normalised with a log-softmax over classes (a no-op on log-probabilities), so a logits function
such as ``Posterior.logits`` works too.
The predictive mean ``p_hat(c | x) = (1/S) sum_s p(c | x, theta_s)`` is kept in log space
(``logsumexp_s - log S``), so probabilities far below float32's smallest normal number stay exact.

Decision rule (stated in every result): the predicted class is the argmax of the posterior-predictive
mean over all S draws (S_eval = S).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..data.validate import as_finite_array, check_labels

LogProbFn = Callable[[jax.Array], jax.Array]

DECISION_RULE = "argmax of the posterior-predictive mean over all S draws (S_eval = S)"


def predictive_log_mean(log_probs: jax.Array) -> jax.Array:
    """log of the posterior-predictive mean, ``logsumexp_s log_probs[s] - log S``.

    Args:
        log_probs: (S, ...) per-draw log-probabilities, typically (S, N, C).
    Returns:
        array of shape ``log_probs.shape[1:]``, e.g. (N, C).
    """
    log_probs = jnp.asarray(log_probs)
    return jax.nn.logsumexp(log_probs, axis=0) - math.log(log_probs.shape[0])


def jensen_log_mean(log_probs: jax.Array) -> jax.Array:
    """The Jensen lower bound on ``predictive_log_mean``: ``mean_s log_probs[s]``, shape ``log_probs.shape[1:]``."""
    return jnp.mean(jnp.asarray(log_probs), axis=0)


def output_shape(log_prob_fn: LogProbFn, x: np.ndarray) -> tuple[int, int]:
    """Return ``(S, C)`` of ``log_prob_fn`` by tracing it on one point (nothing is computed).

    Raises ``ValueError`` when the callable does not return a 3-D (S, N, C) array.
    """
    shape = jax.eval_shape(log_prob_fn, jax.ShapeDtypeStruct((1,) + x.shape[1:], jnp.float32)).shape
    if len(shape) != 3 or shape[1] != 1:
        raise ValueError(
            f"log_prob_fn must map x (N, ...) to log-probabilities (S, N, C); for N=1 it returned shape {shape}"
        )
    return int(shape[0]), int(shape[2])


def check_points(x: Any, name: str = "x") -> np.ndarray:
    """Return ``x`` as a finite float32 array (N, ...) with N >= 1, or raise naming ``name``."""
    array = as_finite_array(x, name, min_ndim=2)
    return array.astype(np.float32)


def check_point_labels(y: Any, num_points: int, num_classes: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as int32 labels (N,) in [0, C), or raise naming ``name``."""
    labels = as_finite_array(y, name)
    if labels.shape != (num_points,):
        raise ValueError(f"{name} must have shape ({num_points},) to match x, got {labels.shape}")
    try:
        return check_labels(labels, num_classes)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def check_batch_size(batch_size: Any) -> int:
    """Return ``batch_size`` as a positive int, or raise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def batches(num_points: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(num_points)`` in chunks of at most ``batch_size``."""
    return [(start, min(start + batch_size, num_points)) for start in range(0, num_points, batch_size)]


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """Pad ``array`` to ``size`` rows by repeating its first row (keeps one compiled shape per call)."""
    missing = size - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[:1], missing, axis=0)], axis=0)


@functools.lru_cache(maxsize=64)
def _compiled_reduction(log_prob_fn: LogProbFn, reduce: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    return jax.jit(lambda xb: reduce(log_prob_fn(xb)))


def compiled_reduction(log_prob_fn: LogProbFn, reduce: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    """``jax.jit(x -> reduce(log_prob_fn(x)))``, cached on the identity of both callables, so repeated
    scoring with the same model (one ``Posterior.log_prob_fn()`` object) compiles once per batch shape.
    ``reduce`` should be a module-level function; an unhashable callable is compiled afresh."""
    try:
        return _compiled_reduction(log_prob_fn, reduce)
    except TypeError:
        return jax.jit(lambda xb: reduce(log_prob_fn(xb)))


def normalised_predictive_log_mean(scores: jax.Array) -> jax.Array:
    """``predictive_log_mean`` of ``log_softmax(scores)``: (S, n, C) log-probabilities or logits -> (n, C)."""
    return predictive_log_mean(jax.nn.log_softmax(scores, axis=-1))


def compiled_predictive(log_prob_fn: LogProbFn) -> Callable[[jax.Array], jax.Array]:
    """The jitted ``x (n, ...) -> log p_hat (n, C)`` of ``log_prob_fn``, compiled once per model and shape."""
    return compiled_reduction(log_prob_fn, normalised_predictive_log_mean)


def predictive_log_probs(log_prob_fn: LogProbFn, x: Any, *, batch_size: int = 1000) -> np.ndarray:
    """log p_hat(c | x) for every point, computed ``batch_size`` points at a time.

    Memory holds (S, batch_size, C) per-draw log-probabilities at once. Returns a float32 array (N, C).
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    num_draws, num_classes = output_shape(log_prob_fn, x)
    size = min(batch_size, x.shape[0])
    compute = compiled_predictive(log_prob_fn)
    out = np.empty((x.shape[0], num_classes), np.float32)
    for start, stop in batches(x.shape[0], size):
        out[start:stop] = np.asarray(compute(pad_rows(x[start:stop], size)))[: stop - start]
    return out


def _point_metrics(log_mean: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per point: (correct 0/1, confidence of the predicted class, -log p_hat(y | x)); each (N,)."""
    predicted = jnp.argmax(log_mean, axis=-1)
    correct = (predicted == y).astype(jnp.float32)
    confidence = jnp.exp(jnp.max(log_mean, axis=-1))
    nll = -jnp.take_along_axis(log_mean, y[:, None], axis=-1)[:, 0]
    return correct, confidence, nll


def evaluate_predictive(
    log_prob_fn: LogProbFn, x: Any, y: Any, *, batch_size: int = 1000
) -> dict[str, Any]:
    """Accuracy, average confidence and NLL of the posterior predictive on ``(x, y)``.

    Points are processed ``batch_size`` at a time, so memory holds (S, batch_size, C) log-probabilities,
    never (S, N, C): 100,000 points x 1,000 draws fits. Sums are accumulated in float64.

    Args:
        log_prob_fn: ``x (n, ...) -> (S, n, C)`` per-draw log-probabilities (``Posterior.log_prob_fn()``).
        x: inputs (N, ...), finite.
        y: labels (N,), integers in [0, C).
        batch_size: points per chunk.
    Returns:
        dict with ``accuracy`` (fraction whose decision equals y), ``avg_confidence`` (mean over points
        of p_hat(predicted class | x)), ``nll`` (mean of -log p_hat(y | x)), ``num_points`` (N),
        ``num_draws`` (S_eval = S) and ``decision_rule`` (a sentence).
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    num_draws, num_classes = output_shape(log_prob_fn, x)
    labels = check_point_labels(y, x.shape[0], num_classes)
    size = min(batch_size, x.shape[0])

    @jax.jit
    def chunk_sums(xb: jax.Array, yb: jax.Array, valid: jax.Array) -> jax.Array:
        correct, confidence, nll = _point_metrics(normalised_predictive_log_mean(log_prob_fn(xb)), yb)
        return jnp.stack([jnp.sum(v * valid) for v in (correct, confidence, nll)])

    totals = np.zeros(3, np.float64)
    for start, stop in batches(x.shape[0], size):
        valid = (np.arange(size) < stop - start).astype(np.float32)
        sums = chunk_sums(pad_rows(x[start:stop], size), pad_rows(labels[start:stop], size), valid)
        totals += np.asarray(sums, np.float64)
    if not np.all(np.isfinite(totals)):
        raise FloatingPointError("log_prob_fn returned NaN or inf log-probabilities on these inputs")
    accuracy, avg_confidence, nll = totals / x.shape[0]
    return {
        "accuracy": float(accuracy),
        "avg_confidence": float(avg_confidence),
        "nll": float(nll),
        "num_points": int(x.shape[0]),
        "num_draws": num_draws,
        "decision_rule": DECISION_RULE,
    }
