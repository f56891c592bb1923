"""The gradient-descent minimum-norm attack of Zhang & Chen (seed 004), on the posterior predictive:

    r = argmin_r  c * ||r||_2 + loss(x + r),

where ``loss = log p_hat(y | x + r)`` (untargeted: push the true class down) or ``-log p_hat(t | x + r)``
(targeted: pull the target up), the posterior-predictive objective of ``objectives.py`` (its ``value``:
the step sizes of a first-order optimiser depend on the gradient's size, so the direction-only surrogate
is not used; with ``objective="logit-margin"`` the log-probabilities are replaced by the class log-odds,
a Carlini & Wagner-style margin). The paper's c|r| is kept as the plain L2 norm: gradient descent needs no smoothness at
r = 0 (the subgradient 0 is used there). The seed states the loss as "the loss of f on (x + r, y)";
as an attack it must *lower* the model's fit, hence the signs above.

Optimiser: optax ``adam`` (default; its per-coordinate scaling moves even points whose loss gradient
is tiny, i.e. confidently classified ones) or ``sgd`` (plain gradient descent: on an affine model it
moves along the weight difference, straight towards the closest boundary), ``steps`` steps from
r = 0 with ``learning_rate``. With ``bounds``, every iterate is clipped into the box (projected descent).

Every iterate is judged by the decision rule (argmax of the predictive mean over all S_eval draws); per
point the attack keeps the successful iterate (wrong class, or the target) with the smallest ||r||, and
falls back to the final iterate when none succeeded. ``c`` may be one constant or a short sequence (a
small search): each value is run from r = 0, and per point the smallest successful ||r|| over all of
them is kept (fallback: the final iterate of the smallest c).

Loss trace: for each point the objective ``c ||r|| + loss`` at every iterate (t = 0 is r = 0) of the run
whose result it returns; ``loss_trace[t]`` (steps + 1,) is the mean over points. Each batch is one
jit-compiled ``lax.scan``, built once per static settings on the model's ``Predictor`` (c and the
learning rate are arguments), so a search over c compiles once.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..predictive import batches, pad_rows, predictive_log_mean
from ._common import (
    AttackResult,
    Predictor,
    check_batch_size,
    check_bounds,
    check_choice,
    check_inputs,
    check_positive,
    finish,
    per_point,
)
from .objectives import OBJECTIVES, point_objective

OPTIMIZERS = ("adam", "sgd")


def _safe_norm(r: jax.Array) -> jax.Array:
    """L2 norm over every axis but the first, (B, ...) -> (B,), with gradient 0 (not NaN) at r = 0."""
    squared = jnp.sum(jnp.square(r.reshape(r.shape[0], -1)), axis=1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _build_min_norm(predictor: Predictor, *, objective: str, targeted: bool, optimizer: str, steps: int,
                    bounded: bool):
    """A jitted ``(x0, labels, c, learning_rate, lo, hi) -> (x_adv (B, ...), found (B,), trace (steps + 1, B))``,
    built by ``predictor.compiled``."""
    point = point_objective(objective, targeted=targeted)
    log_prob_fn = predictor.log_prob_fn

    def batch_objective(r, x0, labels, c):
        scores = log_prob_fn(x0 + r)  # (S, B, C)
        _, value = jax.vmap(point, in_axes=(1, 0))(scores, labels)  # -log p(y) or log p(target)
        values = c * _safe_norm(r) - value
        decision = jnp.argmax(predictive_log_mean(jax.nn.log_softmax(scores, axis=-1)), axis=-1)
        fooled = decision == labels if targeted else decision != labels
        return jnp.sum(values), (values, fooled)

    grad_fn = jax.grad(batch_objective, has_aux=True)

    def run(x0, labels, c, learning_rate, lo, hi):
        transform = optax.adam(learning_rate) if optimizer == "adam" else optax.sgd(learning_rate)

        def keep_best(r, fooled, best_r, best_norm):
            norm = _safe_norm(r)
            better = fooled & (norm < best_norm)
            return jnp.where(per_point(better, r), r, best_r), jnp.where(better, norm, best_norm)

        def body(carry, _):
            r, state, best_r, best_norm = carry
            grad, (values, fooled) = grad_fn(r, x0, labels, c)
            best_r, best_norm = keep_best(r, fooled, best_r, best_norm)
            updates, state = transform.update(grad, state, r)
            r = optax.apply_updates(r, updates)
            if bounded:
                r = jnp.clip(x0 + r, lo, hi) - x0
            return (r, state, best_r, best_norm), values

        r0 = jnp.zeros_like(x0)
        init = (r0, transform.init(r0), r0, jnp.full((x0.shape[0],), jnp.inf, x0.dtype))
        (r, _, best_r, best_norm), trace = jax.lax.scan(body, init, None, length=steps)
        _, (final_values, fooled) = batch_objective(r, x0, labels, c)
        best_r, best_norm = keep_best(r, fooled, best_r, best_norm)
        found = jnp.isfinite(best_norm)
        x_adv = x0 + jnp.where(per_point(found, r), best_r, r)
        if bounded:
            x_adv = jnp.clip(x_adv, lo, hi)
        return x_adv, found, jnp.concatenate([trace, final_values[None]])

    return jax.jit(run)


def _check_c(c: Any) -> np.ndarray:
    """``c`` (a number >= 0 or a non-empty 1-D sequence of them) as a sorted, de-duplicated float array."""
    values = np.asarray(c, dtype=object)
    if values.ndim > 1 or values.size == 0:
        raise ValueError(f"c must be a number >= 0 or a non-empty 1-D sequence of them, got {c!r}")
    return np.unique([check_positive("c", value, allow_zero=True) for value in values.ravel()])


def min_norm_attack(
    model: Any,
    x: Any,
    y: Any,
    *,
    c: float | Sequence[float] = (0.0, 0.1, 1.0),
    target: Any = None,
    optimizer: str = "adam",
    learning_rate: float = 0.005,
    steps: int = 200,
    objective: str = "exact",
    bounds: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> AttackResult:
    """Zhang & Chen's minimum-norm attack, argmin c ||r|| + loss(x + r) by gradient descent; see the module
    docstring.

    Args:
        model: a ``Posterior``, its ``Predictor`` or a callable ``x (N, ...) -> (S, N, C)`` log-probabilities
            (or logits).
        x: (N, ...) clean inputs, finite (inside ``bounds`` when given).
        y: (N,) true labels in [0, C).
        c: the penalty constant (>= 0), or a sequence of them searched per point.
        target: optional (N,) classes to reach (a targeted attack), each different from y.
        optimizer: ``"adam"`` or ``"sgd"`` (optax).
        learning_rate: the optimiser's step size.
        steps: optimiser steps per value of c.
        objective: ``"exact"`` (posterior predictive), ``"jensen"``, ``"mean-logits"`` or ``"logit-margin"``
            (``objectives.OBJECTIVES``).
        bounds: optional box ``(lo, hi)``; iterates are clipped into it.
        batch_size: points attacked together.
    Returns:
        an ``AttackResult`` (``attack = "min-norm"``) with ``per_point["c"]`` (N,), the c whose run gave the
        returned input, and ``per_point["found"]`` (N,) bool, whether any iterate was judged successful.
    """
    predictor, x, labels, targets = check_inputs(model, x, y, target)
    c_values = _check_c(c)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    learning_rate = check_positive("learning_rate", learning_rate)
    steps = check_positive("steps", steps, integer=True)
    check_choice("objective", objective, OBJECTIVES)
    box = check_bounds(bounds, x)
    batch_size = check_batch_size(batch_size)

    run = predictor.compiled(_build_min_norm, objective=objective, targeted=targets is not None,
                             optimizer=optimizer, steps=steps, bounded=box is not None)
    lo, hi = box if box is not None else (0.0, 0.0)
    goal = labels if targets is None else targets
    size = min(batch_size, x.shape[0])
    x_adv = np.empty_like(x)
    c_used = np.empty(x.shape[0])
    found = np.zeros(x.shape[0], bool)
    trace_sum = np.zeros(steps + 1, np.float64)
    for start, stop in batches(x.shape[0], size):
        count = stop - start
        x0, goal_batch = pad_rows(x[start:stop], size), pad_rows(goal[start:stop], size)
        best_norm = np.full(count, np.inf)
        batch_trace = np.zeros((steps + 1, count))
        for k, c_value in enumerate(c_values):
            out, ok, trace = (np.asarray(a) for a in run(x0, goal_batch, c_value, learning_rate, lo, hi))
            out, ok, trace = out[:count], ok[:count], trace[:, :count].astype(np.float64)
            norm = np.linalg.norm((out - x0[:count]).reshape(count, -1).astype(np.float64), axis=1)
            take = (ok & (norm < best_norm)) | (k == 0)
            x_adv[start:stop][take] = out[take]
            c_used[start:stop][take] = c_value
            batch_trace = np.where(take[None], trace, batch_trace)
            best_norm = np.where(ok & take, norm, best_norm)
            found[start:stop] |= ok
        trace_sum += batch_trace.sum(axis=1)

    settings = {"penalty": "l2", "c": c_values.tolist(), "optimizer": optimizer, "learning_rate": learning_rate,
                "steps": steps, "objective": objective, "bounds": box}
    return finish(predictor, attack="min-norm", x=x, x_adv=x_adv, y=labels, target=targets,
                  loss_trace=trace_sum / x.shape[0], settings=settings, batch_size=batch_size,
                  per_point={"c": c_used, "found": found})
