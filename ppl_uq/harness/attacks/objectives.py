"""Attack objectives on a posterior ensemble, from per-draw scores (k, C) of one point.

Every objective is a function of the per-draw log-odds of one class ``c`` (the true label for an
untargeted attack, the target for a targeted one):

    m_s = z_s[c] - logsumexp_{j != c} z_s[j],      log p_s(c) = log sigmoid(m_s)

which is exact for log-probabilities and for unnormalised logits alike and never saturates in float32.

- ``"exact"``: the posterior predictive, ``log p_hat(c) = logsumexp_s log p_s(c) - log k``;
- ``"jensen"``: its Jensen lower bound ``mean_s log p_s(c)``;
- ``"mean-logits"``: ``log softmax(mean_s z_s)[c]``, the cross-entropy of the averaged logits (what
  attacks on a single "mean network" use);
- ``"logit-margin"``: the log-odds themselves, averaged over draws, ``mean_s m_s``; for one model
  (k = 1) the logit margin (``logit_c - logit_other`` for two classes), the "logit trick" of attacks on a
  single network: unlike log p(c) it keeps growing where p(c) rounds to 1. Its value is a margin, not a
  log-probability (for L-BFGS and min-norm, a Carlini & Wagner-style loss).

Every attack takes these names; the sphere attack's objectives are schedules of them (``sphere.py``).

An untargeted attack ascends ``-log p(y)``; a targeted one ascends ``log p(target)``.

Each objective returns ``(surrogate, value)``: ``value`` is the objective itself; ``surrogate`` has a
gradient with exactly the direction of ``value``'s gradient, but with the per-draw weights normalised in
log space. Where every draw is confident (p_s(c) within 6e-8 of 1, or m_s > 88), the true gradient's
size underflows to 0 in float32 and sign / normalised steps would stall; the surrogate's does not. Only
use the surrogate for direction-only steps (FGSM, PGD); use ``value`` where the gradient's size matters.

Two forms:

- ``point_objective``: one point's scores (k, C) -> (surrogate, value), to be differentiated by autodiff
  (L-BFGS and min-norm differentiate ``value``);
- ``batch_objective``: a batch's scores (k, B, C) -> (value (B,), cotangent (k, B, C)), where the
  cotangent is the surrogate's gradient with respect to the scores, written out in closed form. An
  attack pulls it back through the model with one ``jax.vjp`` (FGSM, PGD, the sphere attack): no
  autodiff through the objective, and no (k, B, C) intermediates beyond the cotangent itself.

Both read the per-draw weights from ``ensemble_terms``, which needs one ``exp`` per draw and point (the
textbook log-space form needs four transcendentals and two more passes over (k, B); on the sphere
attack's (1000, 1000) that was the larger half of a step's time). Class reductions over the last axis are
unrolled into column operations for up to ``UNROLL_CLASSES`` classes: XLA's CPU backend reduces a short
minor axis ~50x slower than it combines columns (11 ms against 0.2 ms for (1000, 1000, 2)).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

OBJECTIVES = ("exact", "jensen", "mean-logits", "logit-margin")

#: Up to this many classes, reductions over classes are unrolled into column operations.
UNROLL_CLASSES = 32

#: (scores (k, C), label ()) -> (surrogate (), value ())
PointObjective = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

#: (scores (k, B, C), labels (B,)) -> (value (B,), cotangent (k, B, C))
BatchObjective = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def class_log_odds_and_gradient(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-odds of class ``label`` and their gradient with respect to the scores.

    ``m = scores[..., label] - logsumexp_{j != label} scores[..., j]``; its gradient is 1 at ``label`` and
    ``-softmax_{j != label}(scores)[j]`` elsewhere (+1 / -1 for two classes).

    Args:
        scores: (..., C) log-probabilities or logits (a per-row constant cancels).
        label: integer class indices, broadcastable to ``scores.shape[:-1]`` (a scalar, or (B,) against
            scores (k, B, C)).
    Returns:
        ``(m, dm)``: ``m`` of shape ``scores.shape[:-1]``, ``dm`` of shape ``scores.shape``.
    """
    num_classes = scores.shape[-1]
    label = jnp.asarray(label)
    if num_classes > UNROLL_CLASSES:
        is_label = jnp.arange(num_classes) == label[..., None]
        own = jnp.sum(jnp.where(is_label, scores, 0.0), axis=-1)
        others = jnp.where(is_label, -jnp.inf, scores)
        log_rest = jax.nn.logsumexp(others, axis=-1)
        share = jnp.exp(others - log_rest[..., None])
        return own - log_rest, jnp.where(is_label, 1.0, -share)
    columns = [scores[..., c] for c in range(num_classes)]
    if num_classes == 2:
        sign = jnp.where(label == 1, 1.0, -1.0)
        difference = columns[1] - columns[0]
        log_odds = sign * difference
        return log_odds, jnp.broadcast_to(jnp.stack([-sign, sign], axis=-1), scores.shape)
    own = sum(jnp.where(label == c, column, 0.0) for c, column in enumerate(columns))
    others = [jnp.where(label == c, -jnp.inf, column) for c, column in enumerate(columns)]
    top = others[0]
    for column in others[1:]:
        top = jnp.maximum(top, column)
    shifted = [jnp.exp(column - top) for column in others]
    total = sum(shifted)
    gradient = [jnp.where(label == c, 1.0, -part / total) for c, part in enumerate(shifted)]
    return own - (top + jnp.log(total)), jnp.stack(gradient, axis=-1)


def class_log_odds(scores: jax.Array, label: jax.Array) -> jax.Array:
    """Log-odds of class ``label`` per row: ``scores[..., label] - logsumexp_{j != label} scores[..., j]``.

    Args:
        scores: (..., C) log-probabilities or logits (a per-row constant cancels).
        label: integer class indices broadcastable to ``scores.shape[:-1]``.
    Returns:
        array of shape ``scores.shape[:-1]``.
    """
    return class_log_odds_and_gradient(scores, label)[0]


class EnsembleTerms(NamedTuple):
    """What the ensemble objectives need from the per-draw log-odds m (k, ...), over the draw axis 0.

    Attributes:
        log_predictive: (...) ``log p_hat(c) = log mean_s sigmoid(m_s)``.
        exact_weight: (k, ...) weights summing to 1 over draws, proportional to ``p_s (1 - p_s)``: the
            gradient of log p_hat is ``sum_s exact_weight_s dm_s`` up to a positive factor.
        jensen_weight: (k, ...) weights summing to 1, proportional to ``1 - p_s``: the same for the Jensen
            bound ``mean_s log p_s``.
    """

    log_predictive: jax.Array
    exact_weight: jax.Array
    jensen_weight: jax.Array


def ensemble_terms(log_odds: jax.Array) -> EnsembleTerms:
    """The exact objective's value and both ensemble objectives' per-draw weights, from one ``exp`` per entry.

    With ``a = min_s |m_s|``, ``r_s = exp(a - |m_s|)`` lies in (0, 1] and ``t_s = r_s e^-a = e^-|m_s|``,
    ``h_s = 1 / (1 + t_s) = sigmoid(|m_s|)`` in [1/2, 1]. Then ``p_s (1 - p_s) = t_s h_s^2``, so the exact
    weights are ``r_s h_s^2`` normalised (the common factor e^-a cancels, so nothing underflows however
    confident every draw is). The Jensen weights ``1 - p_s`` are ``r_s h_s`` normalised when every
    ``m_s > 0``, else ``t_s h_s`` (m_s >= 0) or ``h_s`` (m_s < 0), whose largest entry is >= 1/2. The value is
    ``log sum_s p_s - log k``, or ``max_s m_s + log sum_s r_s h_s - log k`` when every ``m_s < 0`` (then
    ``p_s = e^{m_s} h_s``). Where ``t_s`` underflows it is below 1e-38 against terms of at least 1/2.

    Args:
        log_odds: (k, ...) per-draw log-odds of one class.
    Returns:
        an ``EnsembleTerms``. Not for autodiff (the branches hold -inf); ``point_objective``'s value is.
    """
    num_draws = log_odds.shape[0]
    high, low = jnp.max(log_odds, axis=0), jnp.min(log_odds, axis=0)
    nearest = jnp.min(jnp.abs(log_odds), axis=0)
    ratio = jnp.exp(nearest - jnp.abs(log_odds))
    tail = ratio * jnp.exp(-nearest)
    head = 1.0 / (1.0 + tail)
    positive = log_odds >= 0
    ratio_head = ratio * head
    log_predictive = jnp.where(
        high < 0,
        high + jnp.log(jnp.sum(ratio_head, axis=0)),
        jnp.log(jnp.sum(jnp.where(positive, head, tail * head), axis=0)),
    ) - math.log(num_draws)
    exact = ratio_head * head
    jensen = jnp.where(low > 0, ratio_head, jnp.where(positive, tail * head, head))
    return EnsembleTerms(
        log_predictive=log_predictive,
        exact_weight=exact / jnp.sum(exact, axis=0),
        jensen_weight=jensen / jnp.sum(jensen, axis=0),
    )


def ensemble_cotangent(scores: jax.Array, labels: jax.Array, weight: str) -> tuple[EnsembleTerms, jax.Array]:
    """The ensemble terms of a batch and the cotangent of one ensemble surrogate, ``sum_s w_s m_s``.

    Args:
        scores: (k, B, C) per-draw scores.
        labels: (B,) the class whose log-odds m enter.
        weight: ``"exact"`` or ``"jensen"``, which of ``EnsembleTerms``' weights w to use.
    Returns:
        ``(terms, cotangent)``: the ``EnsembleTerms`` and the surrogate's gradient with respect to the
        scores, (k, B, C) (sign +1: the caller flips it for an untargeted attack).
    """
    log_odds, direction = class_log_odds_and_gradient(scores, labels)
    terms = ensemble_terms(log_odds)
    chosen = terms.exact_weight if weight == "exact" else terms.jensen_weight
    return terms, chosen[..., None] * direction


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def point_objective(objective: str, *, targeted: bool) -> PointObjective:
    """Return ``f(scores (k, C), label) -> (surrogate, value)`` to be *ascended* by an attack.

    ``label`` is the true class (untargeted: value = -log p(label)) or the target (targeted: value =
    log p(label)), with p given by ``objective`` (one of ``OBJECTIVES``; for ``"logit-margin"`` the value
    is -m or m, the mean log-odds). Both are scalars, and ``value`` is differentiable.
    """
    _check_objective(objective)
    sign = 1.0 if targeted else -1.0

    def ensemble(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds = class_log_odds(scores, label)  # (k,)
        log_p = jax.nn.log_sigmoid(log_odds)  # (k,) log p_s(label)
        if objective == "exact":
            value = jax.nn.logsumexp(log_p) - math.log(scores.shape[0])
        else:
            value = jnp.mean(log_p)
        terms = ensemble_terms(jax.lax.stop_gradient(log_odds))
        weight = terms.exact_weight if objective == "exact" else terms.jensen_weight
        return sign * jnp.sum(weight * log_odds), sign * value

    def mean_logits(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds = class_log_odds(jnp.mean(scores, axis=0), label)
        return sign * log_odds, sign * jax.nn.log_sigmoid(log_odds)

    def logit_margin(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        value = sign * jnp.mean(class_log_odds(scores, label))  # exact gradient: no weights to underflow
        return value, value

    return {"mean-logits": mean_logits, "logit-margin": logit_margin}.get(objective, ensemble)


def batch_objective(objective: str, *, targeted: bool) -> BatchObjective:
    """Return ``f(scores (k, B, C), labels (B,)) -> (value (B,), cotangent (k, B, C))`` for a batch.

    ``value`` is ``point_objective``'s value at every point (the exact objective's from
    ``ensemble_terms``, equal to float32 rounding); ``cotangent`` is the gradient of the sum over points
    of ``point_objective``'s surrogate with respect to ``scores``, in closed form. Pull it back through
    the model (``jax.vjp``) to get the surrogate's input gradient. Neither output is for autodiff.
    """
    _check_objective(objective)
    sign = 1.0 if targeted else -1.0

    def ensemble(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        terms, cotangent = ensemble_cotangent(scores, labels, objective)
        if objective == "exact":
            value = terms.log_predictive
        else:
            value = jnp.mean(jax.nn.log_sigmoid(class_log_odds(scores, labels)), axis=0)
        return sign * value, sign * cotangent

    def mean_logits(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds, direction = class_log_odds_and_gradient(jnp.mean(scores, axis=0), labels)
        cotangent = jnp.broadcast_to((sign / scores.shape[0]) * direction, scores.shape)
        return sign * jax.nn.log_sigmoid(log_odds), cotangent

    def logit_margin(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds, direction = class_log_odds_and_gradient(scores, labels)
        return sign * jnp.mean(log_odds, axis=0), (sign / scores.shape[0]) * direction

    return {"mean-logits": mean_logits, "logit-margin": logit_margin}.get(objective, ensemble)
