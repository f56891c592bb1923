"""Uncertainty measures read from posterior draws: entropies, mutual information, predictive variance.

Every measure is a pure, jit-able JAX function of per-draw log-probabilities ``log_probs`` of shape
(S, N, C) (``Posterior.log_prob_fn()(x)``), computed in log space; nothing passes through a sigmoid.
Inputs are normalised with a log-softmax over classes first (a no-op on log-probabilities, so logits work
too). Entropies are in nats. A probability of exactly 0 (log-probability ``-inf``) contributes
``0 log 0 = 0``: the terms ``-p log p`` are formed from the log-probabilities with a guarded ``where``, so
neither the value nor its gradient is NaN.

With ``p_s = p(. | x, theta_s)`` and the predictive mean ``p_hat = (1/S) sum_s p_s`` (kept in log space,
``logsumexp_s - log S``):

- ``predictive_entropy``  H[p_hat] = -sum_c p_hat(c) log p_hat(c)
- ``expected_entropy``    (1/S) sum_s H[p_s]
- ``mutual_information``  H[p_hat] - (1/S) sum_s H[p_s], clamped at 0 (it is >= 0 by the concavity of H;
  a negative value can only be rounding). It is computed in the equal form (1/S) sum_s KL(p_s || p_hat)
  = (1/S) sum_s sum_c p_s(c) (log p_s(c) - log p_hat(c)), which does not subtract two large entropies:
  for identical draws it is 0 to ~1e-7 even with C = 1000 classes, where the difference of the two float32
  entropies is off by ~2e-6.
- ``predictive_variance`` (N, C): Var_s p_s(c) = (1/S) sum_s (p_s(c) - p_hat(c))^2, the population (1/S)
  variance over draws. Seed 000's eq. 7 lost its symbols in extraction; its text says the expectation is
  "approximated by" the average over draws, i.e. the plug-in Monte Carlo estimate of
  E_q[(p(c | x, theta) - E_q p(c | x, theta))^2], which is this 1/S form (a reconstruction).
- ``max_predictive_variance`` (N,): the maximum of that over classes, as seed 000 reports it.
- ``max_probability`` (N,): max_c p_hat(c), the confidence of the predicted class (higher = MORE confident),
  clipped to at most 1.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .predictive import as_predictor, batches, check_batch_size, check_points, pad_rows

LogProbFn = Callable[[jax.Array], jax.Array]

#: The per-point (N,) measures ``uncertainty_measures`` returns, in a fixed order.
MEASURES = (
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "max_predictive_variance",
    "max_probability",
)

#: What a higher value of each measure means: ``"uncertain"`` or ``"confident"``. Detection functions take
#: this as their ``higher_means`` argument, so scores are oriented explicitly, never guessed.
HIGHER_MEANS = {
    "predictive_entropy": "uncertain",
    "expected_entropy": "uncertain",
    "mutual_information": "uncertain",
    "max_predictive_variance": "uncertain",
    "max_probability": "confident",
}


def _normalised(log_probs: Any) -> jax.Array:
    """``log_softmax`` over classes of an (S, N, C) array, or raise naming ``log_probs``."""
    log_probs = jnp.asarray(log_probs)
    if log_probs.ndim != 3 or 0 in log_probs.shape:
        raise ValueError(f"log_probs must be a non-empty (S, N, C) array of per-draw log-probabilities, got shape "
                         f"{log_probs.shape}")
    if not jnp.issubdtype(log_probs.dtype, jnp.floating):
        raise TypeError(f"log_probs must be a floating-point array, got dtype {log_probs.dtype}")
    if not isinstance(log_probs, jax.core.Tracer):  # a concrete array: check it here (traced: the caller does)
        bad = int(jnp.sum(_invalid(log_probs)))
        if bad:
            raise FloatingPointError(f"log_probs holds {bad} NaN or +inf value(s); a log-probability is finite or -inf")
    return jax.nn.log_softmax(log_probs, axis=-1)


def _invalid(log_probs: jax.Array) -> jax.Array:
    """True where a log-probability is NaN or +inf (-inf, probability 0, is valid)."""
    return jnp.isnan(log_probs) | (log_probs == jnp.inf)


def _entropy_from_log(log_p: jax.Array) -> jax.Array:
    """-sum_c exp(l_c) l_c over the last axis, with a term of exactly 0 where l_c = -inf (p = 0)."""
    present = log_p > -jnp.inf
    safe = jnp.where(present, log_p, 0.0)  # keeps exp(l) * l (and its gradient) finite where p = 0
    return -jnp.sum(jnp.where(present, jnp.exp(safe) * safe, 0.0), axis=-1)


def _log_predictive_mean(normalised: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(normalised, axis=0) - math.log(normalised.shape[0])


def predictive_entropy(log_probs: Any) -> jax.Array:
    """Entropy of the predictive mean, H[p_hat], in nats. ``log_probs`` (S, N, C) -> (N,)."""
    return _entropy_from_log(_log_predictive_mean(_normalised(log_probs)))


def expected_entropy(log_probs: Any) -> jax.Array:
    """Mean over draws of each draw's entropy, (1/S) sum_s H[p_s], in nats. (S, N, C) -> (N,)."""
    return jnp.mean(_entropy_from_log(_normalised(log_probs)), axis=0)


def _mutual_information(normalised: jax.Array, log_mean: jax.Array) -> jax.Array:
    """(1/S) sum_s KL(p_s || p_hat), clamped at 0; a term is exactly 0 where p_s(c) = 0."""
    present = normalised > -jnp.inf
    safe = jnp.where(present, normalised, 0.0)
    gap = jnp.where(present, safe - jnp.where(present, log_mean, 0.0), 0.0)
    kl = jnp.sum(jnp.where(present, jnp.exp(safe) * gap, 0.0), axis=-1)
    return jnp.maximum(jnp.mean(kl, axis=0), 0.0)


def mutual_information(log_probs: Any) -> jax.Array:
    """Predictive minus expected entropy (the epistemic part), clamped at 0, in nats. (S, N, C) -> (N,).

    Computed as (1/S) sum_s KL(p_s || p_hat), the same quantity without cancellation (module docstring).
    """
    normalised = _normalised(log_probs)
    return _mutual_information(normalised, _log_predictive_mean(normalised))


def predictive_variance(log_probs: Any) -> jax.Array:
    """Per class, the population variance over draws of p_s(c), (1/S) sum_s (p_s(c) - p_hat(c))^2.

    ``log_probs`` (S, N, C) -> (N, C). Computed two-pass (the mean is subtracted before squaring).
    """
    return jnp.var(jnp.exp(_normalised(log_probs)), axis=0)


def max_predictive_variance(log_probs: Any) -> jax.Array:
    """The largest per-class predictive variance (seed 000, eq. 7). (S, N, C) -> (N,)."""
    return jnp.max(predictive_variance(log_probs), axis=-1)


def max_probability(log_probs: Any) -> jax.Array:
    """max_c p_hat(c), the predictive probability of the predicted class. (S, N, C) -> (N,).

    Clipped to at most 1 (float32 rounding in ``logsumexp - log S`` can put log p_hat an ulp above 0), so
    it can be passed to the calibration metrics, which require confidences in [0, 1].
    """
    return _max_probability(_log_predictive_mean(_normalised(log_probs)))


def _max_probability(log_mean: jax.Array) -> jax.Array:
    return jnp.minimum(jnp.exp(jnp.max(log_mean, axis=-1)), 1.0)


def all_measures(log_probs: Any) -> dict[str, jax.Array]:
    """Every measure of ``MEASURES`` from one (S, N, C) array, sharing the work. Returns name -> (N,)."""
    normalised = _normalised(log_probs)
    log_mean = _log_predictive_mean(normalised)
    total = _entropy_from_log(log_mean)
    aleatoric = jnp.mean(_entropy_from_log(normalised), axis=0)
    return {
        "predictive_entropy": total,
        "expected_entropy": aleatoric,
        "mutual_information": _mutual_information(normalised, log_mean),
        "max_predictive_variance": jnp.max(jnp.var(jnp.exp(normalised), axis=0), axis=-1),
        "max_probability": _max_probability(log_mean),
    }


def _measures_and_validity(log_probs: jax.Array) -> dict[str, jax.Array]:
    """``all_measures`` plus ``invalid`` (N,): whether any draw's log-probabilities are NaN or +inf there."""
    return {**all_measures(log_probs), "invalid": jnp.any(_invalid(log_probs), axis=(0, 2))}


def uncertainty_measures(log_prob_fn: Any, x: Any, *, batch_size: int = 1000) -> dict[str, np.ndarray]:
    """Every measure of ``MEASURES`` for every point of ``x``, ``batch_size`` points at a time.

    Memory holds (S, batch_size, C) per-draw log-probabilities at once, never (S, N, C).

    Args:
        log_prob_fn: a ``Posterior``, a ``Predictor`` or a callable ``x (n, ...) -> (S, n, C)`` per-draw
            log-probabilities or logits (``Posterior.log_prob_fn()``). The compiled program is kept on the
            Posterior's / Predictor's ``Predictor``; a plain callable compiles afresh each call.
        x: inputs (N, ...), finite.
        batch_size: points per chunk (positive int).
    Returns:
        dict measure name -> float32 NumPy array (N,), in the order of ``MEASURES``.
    Raises:
        FloatingPointError: when log_prob_fn returns NaN or +inf at any point, or any measure is NaN.
    """
    x = check_points(x)
    batch_size = check_batch_size(batch_size)
    predictor = as_predictor(log_prob_fn, x, min_classes=1)  # raises unless it maps x to (S, N, C)
    size = min(batch_size, x.shape[0])
    compute = predictor.reduction(_measures_and_validity)
    out = {name: np.empty(x.shape[0], np.float32) for name in MEASURES}
    invalid = 0
    for start, stop in batches(x.shape[0], size):
        values = compute(pad_rows(x[start:stop], size))
        for name in MEASURES:
            out[name][start:stop] = np.asarray(values[name])[: stop - start]
        invalid += int(np.sum(np.asarray(values["invalid"])[: stop - start]))
    if invalid:
        raise FloatingPointError(
            f"log_prob_fn returned NaN or +inf log-probabilities at {invalid} point(s); no uncertainty measure is "
            "defined there (the posterior's draws or the inputs are broken)")
    for name, values in out.items():
        if np.isnan(values).any():
            raise FloatingPointError(
                f"{name} is NaN at {int(np.isnan(values).sum())} point(s): log_prob_fn returned NaN log-probabilities"
            )
    return out


__all__ = [
    "HIGHER_MEANS",
    "MEASURES",
    "all_measures",
    "expected_entropy",
    "max_predictive_variance",
    "max_probability",
    "mutual_information",
    "predictive_entropy",
    "predictive_variance",
    "uncertainty_measures",
]
