"""First-order attacks with a norm budget: FGSM and PGD in L-infinity and L2 (the sphere attack, another
first-order attack, is in ``sphere.py``).

PGD (Madry et al.) ascends the attack objective (``objectives.py``) from a random start in the
eps-ball, with a step of ``step_size`` along sign(g) (L-infinity) or g / ||g|| (L2), projecting after
every step onto the eps-ball around the clean input and then onto the box ``bounds``. Clipping into the
box never increases |x' - x| per coordinate (the clean input is inside the box), so both constraints
hold together. FGSM is one step of size eps from the clean input, without a random start.

Expectation over transformation (EOT): with ``n_grad_samples = k`` every step draws k fresh posterior
draws (uniformly, with replacement, from the S draws) and follows the gradient of the objective on
those; ``None`` uses all S draws at every step (the full, deterministic objective). The decision that
judges success always averages all S_eval = S draws.

PGD returns, per point, the iterate with the highest objective value seen (on the draws used at that
step); with EOT that value is a k-draw estimate. ``loss_trace[t]`` is the mean over points of the
objective at iterate t (t = 0 is the start).

Points go through in batches of ``batch_size``; each batch is one jit-compiled ``lax.scan``, built once
per static settings on the model's ``Predictor`` (eps and the step size are arguments), so an eps sweep
on one Posterior or Predictor compiles once. A step is one forward pass of the model on the batch and one
pullback (``jax.vjp``) of the objective's closed-form cotangent (``objectives.batch_objective``); each
batch's points are split over the local devices (``point_sharding``).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...data.validate import check_rng_key
from ..predictive import batches, pad_rows
from ._common import (
    AttackResult,
    Predictor,
    check_batch_size,
    check_bounds,
    check_choice,
    check_inputs,
    check_positive,
    finish,
    flat_norm,
    per_point,
    point_sharding,
)
from .objectives import OBJECTIVES, batch_objective

NORMS = ("linf", "l2")


def _direction(grad: jax.Array, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.sign(grad)
    size = per_point(flat_norm(grad), grad)
    return jnp.where(size > 0, grad / jnp.where(size > 0, size, 1.0), 0.0)


def _project(x: jax.Array, x0: jax.Array, eps: jax.Array, norm: str, box: tuple | None) -> jax.Array:
    """Onto the eps-ball around x0, then onto the box (see the module docstring)."""
    delta = x - x0
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        size = per_point(flat_norm(delta), delta)
        delta = delta * jnp.where(size > eps, eps / jnp.where(size > 0, size, 1.0), 1.0)
    x = x0 + delta
    return x if box is None else jnp.clip(x, box[0], box[1])


def _random_start(key: jax.Array, x0: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """A uniform draw from the eps-ball around each point (L-infinity: a cube; L2: a ball)."""
    if norm == "linf":
        return x0 + jax.random.uniform(key, x0.shape, x0.dtype, -1.0, 1.0) * eps
    key_dir, key_rad = jax.random.split(key)
    direction = jax.random.normal(key_dir, x0.shape, x0.dtype)
    direction = direction / per_point(flat_norm(direction), direction)
    dim = int(np.prod(x0.shape[1:]))
    radius = eps * jax.random.uniform(key_rad, (x0.shape[0],), x0.dtype) ** (1.0 / dim)
    return x0 + direction * per_point(radius, x0)


def _build_pgd(
    predictor: Predictor,
    *,
    norm: str,
    objective: str,
    targeted: bool,
    steps: int,
    n_grad_samples: int | None,
    random_start: bool,
    keep_best: bool,
    bounded: bool,
):
    """A jitted ``(x0, labels, key, eps, step_size, lo, hi) -> (x_adv (B, ...), values (steps + 1, B))``
    for a batch, built by ``predictor.compiled`` (once per static settings)."""
    objective_fn = batch_objective(objective, targeted=targeted)
    log_prob_fn, draw_log_prob_fn = predictor.log_prob_fn, predictor.draw_log_prob_fn
    num_draws = predictor.num_draws

    def scores_fn(key: jax.Array):
        """The scores the step follows: all S draws, or k fresh ones (EOT)."""
        if n_grad_samples is None:
            return log_prob_fn
        return functools.partial(draw_log_prob_fn, jax.random.randint(key, (n_grad_samples,), 0, num_draws))

    def grad_and_value(x: jax.Array, labels: jax.Array, key: jax.Array):
        """The surrogate's input gradient (B, ...) (one pullback of the closed-form cotangent) and the
        objective per point (B,)."""
        scores, pullback = jax.vjp(scores_fn(key), x)
        value, cotangent = objective_fn(scores, labels)
        return pullback(cotangent)[0], value

    def run(x0, labels, key, eps, step_size, lo, hi):
        box = (lo, hi) if bounded else None
        key_start, key_steps = jax.random.split(key)
        x = _random_start(key_start, x0, eps, norm) if random_start else x0
        x = _project(x, x0, eps, norm, box)

        def body(carry, key_t):
            x, best_x, best_value = carry
            grad, value = grad_and_value(x, labels, key_t)
            better = value > best_value
            best_x = jnp.where(per_point(better, x), x, best_x)
            best_value = jnp.maximum(value, best_value)
            x = _project(x + step_size * _direction(grad, norm), x0, eps, norm, box)
            return (x, best_x, best_value), value

        init = (x, x, jnp.full((x0.shape[0],), -jnp.inf, x0.dtype))
        keys = jax.random.split(key_steps, steps + 1)
        (x, best_x, best_value), trace = jax.lax.scan(body, init, keys[:steps])
        final_value = objective_fn(scores_fn(keys[steps])(x), labels)[0]
        if keep_best:
            x = jnp.where(per_point(final_value > best_value, x), x, best_x)
        return x, jnp.concatenate([trace, final_value[None]])  # trace: (steps + 1, B) per-point values

    return jax.jit(run)


def _run_batches(predictor: Predictor, x: np.ndarray, labels: np.ndarray, rng_key: jax.Array, static: dict,
                 eps: float, step_size: float, box: tuple | None, batch_size: int):
    """Attack every batch; return ``(x_adv (N, ...), loss_trace (steps + 1,))``, the trace averaged over the
    real points only (padding rows excluded).

    Each batch is one program whose points are split over the local devices (``point_sharding``): with
    two host devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, as the experiments, CLI and
    tests set) each core runs half the points, which matters because XLA runs the batched matrix products
    over draws on one core per device. Every batch is dispatched before any result is read back.
    """
    run = predictor.compiled(_build_pgd, bounded=box is not None, **static)
    lo, hi = box if box is not None else (0.0, 0.0)
    sharding, size = point_sharding(min(batch_size, x.shape[0]))
    pending = []
    for i, (start, stop) in enumerate(batches(x.shape[0], size)):
        points = (pad_rows(x[start:stop], size), pad_rows(labels[start:stop], size))
        if sharding is not None:
            points = jax.device_put(points, sharding)
        pending.append((start, stop, run(*points, jax.random.fold_in(rng_key, i), eps, step_size, lo, hi)))
    x_adv = np.empty_like(x)
    trace_sum = np.zeros(static["steps"] + 1, np.float64)
    for start, stop, (out, values) in pending:
        x_adv[start:stop] = np.asarray(out)[: stop - start]
        trace_sum += np.asarray(values, np.float64)[:, : stop - start].sum(axis=1)
    return x_adv, trace_sum / x.shape[0]


def _check_common(model, x, y, target, eps, norm, objective, n_grad_samples, bounds, batch_size):
    predictor, x, labels, targets = check_inputs(model, x, y, target)
    eps = check_positive("eps", eps, allow_zero=True)
    check_choice("norm", norm, NORMS)
    check_choice("objective", objective, OBJECTIVES)
    if n_grad_samples is not None:
        n_grad_samples = check_positive("n_grad_samples", n_grad_samples, integer=True)
    box = check_bounds(bounds, x)
    return predictor, x, labels, targets, eps, n_grad_samples, box, check_batch_size(batch_size)


def pgd(
    model: Any,
    x: Any,
    y: Any,
    *,
    eps: float,
    rng_key: jax.Array,
    norm: str = "linf",
    steps: int = 40,
    step_size: float | None = None,
    random_start: bool = True,
    objective: str = "exact",
    n_grad_samples: int | None = None,
    target: Any = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int = 128,
) -> AttackResult:
    """Projected gradient descent (Madry et al.) on the posterior predictive.

    Args:
        model: a ``Posterior``, its ``Predictor`` or a callable ``x (N, ...) -> (S, N, C)`` log-probabilities
            (or logits).
        x: (N, ...) clean inputs, finite, inside ``bounds``.
        y: (N,) true labels in [0, C).
        eps: the budget, ||x' - x|| <= eps in the chosen norm (0 returns the input).
        rng_key: JAX key for the random start and the EOT draws.
        norm: ``"linf"`` or ``"l2"``.
        steps: gradient steps.
        step_size: step length (default ``2.5 * eps / steps``, Madry et al.).
        random_start: start from a uniform draw in the eps-ball.
        objective: ``"exact"`` (posterior predictive), ``"jensen"``, ``"mean-logits"`` or ``"logit-margin"``
            (``objectives.OBJECTIVES``).
        n_grad_samples: EOT draws per step; ``None`` uses all S draws.
        target: optional (N,) classes to push towards (a targeted attack), each different from y.
        bounds: optional box ``(lo, hi)`` for valid inputs, e.g. ``(0, 1)`` for images.
        batch_size: points attacked together, split over the local devices (benchmarks/pgd_vs_torch.py
            measures 64 to all points).
    Returns:
        an ``AttackResult`` (``attack = "pgd-<norm>"``).
    """
    predictor, x, labels, targets, eps, n_grad_samples, box, batch_size = _check_common(
        model, x, y, target, eps, norm, objective, n_grad_samples, bounds, batch_size)
    steps = check_positive("steps", steps, integer=True)
    rng_key = check_rng_key(rng_key)
    step_size = 2.5 * eps / steps if step_size is None else check_positive("step_size", step_size, allow_zero=True)
    static = dict(norm=norm, objective=objective, targeted=targets is not None, steps=steps,
                  n_grad_samples=n_grad_samples, random_start=bool(random_start), keep_best=True)
    x_adv, trace = _run_batches(predictor, x, labels if targets is None else targets, rng_key, static,
                                eps, step_size, box, batch_size)
    settings = {**static, "eps": eps, "step_size": step_size, "bounds": box}
    return finish(predictor, attack=f"pgd-{norm}", x=x, x_adv=x_adv, y=labels, target=targets,
                  loss_trace=trace, settings=settings, batch_size=batch_size)


def fgsm(
    model: Any,
    x: Any,
    y: Any,
    *,
    eps: float,
    norm: str = "linf",
    objective: str = "exact",
    n_grad_samples: int | None = None,
    rng_key: jax.Array | None = None,
    target: Any = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int = 128,
) -> AttackResult:
    """The fast gradient sign method (Goodfellow et al.): ``x' = x + eps * sign(g)`` (L-infinity) or
    ``x + eps * g / ||g||`` (L2, "FGM"), then clipped into ``bounds``.

    Arguments as for ``pgd``; ``rng_key`` is needed only with ``n_grad_samples``. Returns an
    ``AttackResult`` (``attack = "fgsm-<norm>"``) with a two-entry loss trace (before, after).
    """
    if rng_key is None:
        if n_grad_samples is not None:
            raise ValueError("rng_key is required when n_grad_samples is set (the EOT draws are random)")
        rng_key = jax.random.key(0)  # unused: no random start and all draws
    rng_key = check_rng_key(rng_key)
    predictor, x, labels, targets, eps, n_grad_samples, box, batch_size = _check_common(
        model, x, y, target, eps, norm, objective, n_grad_samples, bounds, batch_size)
    static = dict(norm=norm, objective=objective, targeted=targets is not None, steps=1,
                  n_grad_samples=n_grad_samples, random_start=False, keep_best=False)
    x_adv, trace = _run_batches(predictor, x, labels if targets is None else targets, rng_key, static,
                                eps, eps, box, batch_size)
    settings = {**static, "eps": eps, "bounds": box}
    return finish(predictor, attack=f"fgsm-{norm}", x=x, x_adv=x_adv, y=labels, target=targets,
                  loss_trace=trace, settings=settings, batch_size=batch_size)

