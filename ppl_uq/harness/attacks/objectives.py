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
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

OBJECTIVES = ("exact", "jensen", "mean-logits", "logit-margin")

#: (scores (k, C), label ()) -> (surrogate (), value ())
PointObjective = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def class_log_odds(scores: jax.Array, label: jax.Array) -> jax.Array:
    """Log-odds of class ``label`` per row: ``scores[..., label] - logsumexp_{j != label} scores[..., j]``.

    Args:
        scores: (..., C) log-probabilities or logits (a per-row constant cancels).
        label: integer class index (a scalar).
    Returns:
        array of shape ``scores.shape[:-1]``.
    """
    is_label = jnp.arange(scores.shape[-1]) == label
    own = jnp.sum(jnp.where(is_label, scores, 0.0), axis=-1)
    if scores.shape[-1] == 2:
        return own - jnp.sum(jnp.where(is_label, 0.0, scores), axis=-1)
    return own - jax.nn.logsumexp(jnp.where(is_label, -jnp.inf, scores), axis=-1)


def point_objective(objective: str, *, targeted: bool) -> PointObjective:
    """Return ``f(scores (k, C), label) -> (surrogate, value)`` to be *ascended* by an attack.

    ``label`` is the true class (untargeted: value = -log p(label)) or the target (targeted: value =
    log p(label)), with p given by ``objective`` (one of ``OBJECTIVES``; for ``"logit-margin"`` the value
    is -m or m, the mean log-odds). Both are scalars.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    sign = 1.0 if targeted else -1.0

    def ensemble(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds = class_log_odds(scores, label)  # (k,)
        log_p = jax.nn.log_sigmoid(log_odds)  # (k,) log p_s(label)
        if objective == "exact":
            value = jax.nn.logsumexp(log_p) - math.log(scores.shape[0])
            # d/dx log p_hat = sum_s share_s * sigmoid(-m_s) * dm_s/dx, share_s = p_s / sum_r p_r;
            # log of the weight (up to a constant): 2 log p_s - m_s.
            log_weight = 2.0 * log_p - log_odds
        else:  # jensen: d/dx mean_s log p_s = (1/k) sum_s sigmoid(-m_s) dm_s/dx
            value = jnp.mean(log_p)
            log_weight = log_p - log_odds
        weight = jax.nn.softmax(jax.lax.stop_gradient(log_weight))
        return sign * jnp.sum(weight * log_odds), sign * value

    def mean_logits(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_odds = class_log_odds(jnp.mean(scores, axis=0), label)
        return sign * log_odds, sign * jax.nn.log_sigmoid(log_odds)

    def logit_margin(scores: jax.Array, label: jax.Array) -> tuple[jax.Array, jax.Array]:
        value = sign * jnp.mean(class_log_odds(scores, label))  # exact gradient: no weights to underflow
        return value, value

    return {"mean-logits": mean_logits, "logit-margin": logit_margin}.get(objective, ensemble)
