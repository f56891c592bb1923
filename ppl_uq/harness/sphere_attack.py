"""The sphere attack of Bekasov & Murray, "Bayesian Adversarial Spheres", App. B.

For each starting point ``x0`` with label ``y``, projected gradient ascent on the sphere of radius
``||x0||`` maximises the predictive probability of a wrong class ``t`` (``1 - y`` with two classes; with
more, the most probable wrong class at ``x0`` or a given target):

    x <- x + step_size * g / ||g||,   then   x <- x * ||x0|| / ||x||       (re-project)

The normalised-gradient step is our reconstruction: the paper's update formula is lost in the seed text.

Objectives, all from the per-draw log-odds of the target ``m_s = log p_s(t) - log sum_{c != t} p_s(c)``
(differences of log-probabilities, so nothing passes through a sigmoid or saturates in float32):

- a single model (S = 1): the logit margin ``m`` (= ``logit_wrong - logit_true`` for two classes) rather
  than p(t), which saturates in float32 (the "logit trick");
- an ensemble: the Jensen lower bound ``mean_s log p_s(t)`` for the first ``jensen_steps`` iterations,
  then the exact ``log p_hat(t) = logsumexp_s log p_s(t) - log S``, with ``log p_s(t) = log sigmoid(m_s)``
  (exact gradients even where p_s(t) rounds to 1).

The step uses only the gradient's direction, and for the ensemble objectives that direction is computed
from coefficients normalised in log space (see ``_point_objective``): where every draw that matters is
confidently wrong, the gradient's size underflows in float32 (autodiff returns zeros and the attack would
stall) while its direction is still well defined.

Because only class differences enter, ``log_prob_fn`` may equally return unnormalised logits (S, N, C):
``Posterior.logits`` gives the same attack as ``Posterior.log_prob_fn()`` without the per-step
log-softmax (1.2x faster at full size in benchmarks/sphere_attack_vs_torch.py). Reported probabilities are normalised with a
log-softmax, a no-op on log-probabilities.

The best point is kept by the exact objective (the margin for a single model, which orders points as
p(t) does), over every iterate including x0. Early stopping, as in the paper: once the exact objective is
being ascended, stop a point when the best value reached in that phase has not improved by more than ``tol``
for ``patience`` iterations (the paper's threshold is lost; ``tol = 1e-4`` in log space is our documented
default). The clock ignores the Jensen phase, which can lower the exact objective before the exact phase
raises it again. ``max_steps`` caps every point.

Implementation: a per-point ``lax.while_loop`` vmapped over a batch of points and jit-compiled; points go
through in batches of ``batch_size`` to bound memory.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .predictive import (
    DECISION_RULE,
    LogProbFn,
    batches,
    check_batch_size,
    check_point_labels,
    check_points,
    output_shape,
    pad_rows,
    predictive_log_mean,
    predictive_log_probs,
)

OBJECTIVES = ("auto", "logit_margin", "ensemble")


class SphereAttackResult(NamedTuple):
    """What ``sphere_attack`` found.

    Attributes:
        x_adv: (N, D) best points found, each on its starting sphere.
        y: (N,) true labels.
        target: (N,) the wrong class each point was pushed towards.
        p_wrong: (N,) p_hat(target | x_adv), the predictive probability of the wrong class.
        log_predictive: (N, C) log p_hat(c | x_adv) for every class.
        steps: (N,) gradient steps each point used (< max_steps when it stopped early).
        objective_trace: (max_steps + 1,) mean over points of the best exact objective so far (log
            p_hat(target), or the logit margin for a single model) after 0, 1, ... steps; points that
            stopped keep their best value.
        radius_drift: max over points of | ||x_adv|| - ||x0|| |.
        num_draws: S, the ensemble size the objective and the decision average over (S_eval = S).
        settings: the attack's resolved settings (objective, step size, ...) and the decision rule.
    """

    x_adv: np.ndarray
    y: np.ndarray
    target: np.ndarray
    p_wrong: np.ndarray
    log_predictive: np.ndarray
    steps: np.ndarray
    objective_trace: np.ndarray
    radius_drift: float
    num_draws: int
    settings: dict[str, Any]


class _LoopState(NamedTuple):
    step: jax.Array
    x: jax.Array
    best_x: jax.Array
    best_value: jax.Array
    reference: jax.Array
    stall: jax.Array
    done: jax.Array
    trace: jax.Array


def target_log_odds(scores: jax.Array, target: jax.Array) -> jax.Array:
    """Per-draw log-odds of class ``target``: ``scores_t - logsumexp_{c != t} scores_c``, shape (S,).

    ``scores`` (S, C) are log-probabilities or unnormalised logits: a per-draw constant cancels, so both
    give the same value. Its gradient is exact in float32, whereas the gradient of log p_s(t) taken
    through a log-softmax is formed as (1 - p_s(t)) * ... and rounds to 0 once p_s(t) > 1 - 6e-8.
    """
    is_target = jnp.arange(scores.shape[-1]) == target
    own = jnp.sum(jnp.where(is_target, scores, 0.0), axis=-1)
    if scores.shape[-1] == 2:  # the one other class, without a logsumexp
        return own - jnp.sum(jnp.where(is_target, 0.0, scores), axis=-1)
    return own - jax.nn.logsumexp(jnp.where(is_target, -jnp.inf, scores), axis=-1)


def _point_objective(log_prob_fn: LogProbFn, margin: bool):
    """Return ``f(x (D,), target, use_jensen) -> (ascent, value)`` for one point.

    ``value`` is the exact objective that ranks points and drives early stopping: log p_hat(target) =
    logsumexp_s log sigmoid(m_s) - log S, or the logit margin m (S = 1) when ``margin``.

    ``ascent`` is a surrogate whose gradient points along the gradient of the phase's objective; only that
    direction is used (the step is normalised). Both ensemble objectives have gradients
    ``sum_s c_s grad m_s`` with ``c_s > 0``: ``c_s = sigmoid(-m_s) / S`` for the Jensen bound and
    ``c_s = share_s * sigmoid(-m_s)`` for the exact objective, ``share_s = p_s(t) / sum_r p_r(t)``. Where
    every draw that matters is confidently wrong (m_s >~ 90), all c_s underflow in float32 and autodiff
    returns a zero gradient (the attack would stall); here the c_s are normalised in log space first,
    ``ascent = sum_s softmax(log c)_s * m_s`` with ``c`` held fixed, so the direction is exact.
    """

    def objective(x: jax.Array, target: jax.Array, use_jensen: jax.Array):
        log_odds = target_log_odds(log_prob_fn(x[None])[:, 0, :], target)  # (S,)
        if margin:
            return log_odds[0], log_odds[0]
        log_p_target = jax.nn.log_sigmoid(log_odds)  # (S,) log p_s(t), saturation-free
        exact = jax.nn.logsumexp(log_p_target) - math.log(log_odds.shape[0])
        log_p, m = jax.lax.stop_gradient(log_p_target), jax.lax.stop_gradient(log_odds)
        # log sigmoid(-m) = log sigmoid(m) - m; log share = log p - logsumexp(log p) (a constant dropped).
        log_coef = jnp.where(use_jensen, log_p - m, 2.0 * log_p - m)
        return jnp.sum(jax.nn.softmax(log_coef) * log_odds), exact

    return objective


def _project(x: jax.Array, radius: jax.Array) -> jax.Array:
    return x * (radius / jnp.linalg.norm(x))


def _build_batch_attack(log_prob_fn: LogProbFn, margin: bool, settings: dict[str, Any]):
    """Return a jitted ``(x0 (B, D), target (B,)) -> (best_x, log_predictive (B, C), steps, trace)``."""
    objective = _point_objective(log_prob_fn, margin)
    value_and_grad = jax.value_and_grad(objective, has_aux=True)
    step_size = settings["step_size"]
    max_steps = settings["max_steps"]
    jensen_steps = 0 if margin else settings["jensen_steps"]
    patience = settings["patience"]
    tol = settings["tol"]

    def update_best(state: _LoopState, x: jax.Array, value: jax.Array) -> _LoopState:
        better = value > state.best_value
        return state._replace(
            best_x=jnp.where(better, x, state.best_x), best_value=jnp.where(better, value, state.best_value)
        )

    def attack_one(x0: jax.Array, target: jax.Array):
        radius = jnp.linalg.norm(x0)

        def body(state: _LoopState) -> _LoopState:
            use_jensen = state.step < jensen_steps
            (_, value), grad = value_and_grad(state.x, target, use_jensen)
            state = update_best(state, state.x, value)
            # The patience clock runs only once the exact objective is being ascended, and measures
            # improvement over the best value of that phase (the Jensen phase may have lowered it).
            improved = value > state.reference + tol
            stall = jnp.where(improved | use_jensen, 0, state.stall + 1)
            reference = jnp.where(use_jensen, -jnp.inf, jnp.where(improved, value, state.reference))
            grad_norm = jnp.linalg.norm(grad)
            direction = jnp.where(grad_norm > 0, grad / jnp.where(grad_norm > 0, grad_norm, 1.0), 0.0)
            return state._replace(
                step=state.step + 1,
                x=_project(state.x + step_size * direction, radius),
                reference=reference,
                stall=stall,
                done=(stall >= patience) if patience is not None else jnp.asarray(False),
                trace=state.trace.at[state.step].set(state.best_value),
            )

        x0 = _project(x0, radius)
        init = _LoopState(
            step=jnp.asarray(0, jnp.int32),
            x=x0,
            best_x=x0,
            best_value=jnp.asarray(-jnp.inf, jnp.float32),
            reference=jnp.asarray(-jnp.inf, jnp.float32),
            stall=jnp.asarray(0, jnp.int32),
            done=jnp.asarray(False),
            trace=jnp.zeros((max_steps + 1,), jnp.float32),
        )
        state = jax.lax.while_loop(lambda s: (s.step < max_steps) & ~s.done, body, init)
        # Score the point reached by the last step too.
        state = update_best(state, state.x, objective(state.x, target, False)[1])
        trace = jnp.where(jnp.arange(max_steps + 1) < state.step, state.trace, state.best_value)
        log_predictive = predictive_log_mean(jax.nn.log_softmax(log_prob_fn(state.best_x[None])[:, 0, :], axis=-1))
        return state.best_x, log_predictive, state.step, trace

    return jax.jit(jax.vmap(attack_one))


@functools.lru_cache(maxsize=4)
def _cached_batch_attack(log_prob_fn: LogProbFn, margin: bool, settings: tuple):
    """``_build_batch_attack`` memoised on the callable's identity, so repeated attacks with the same
    ``log_prob_fn`` (e.g. in a benchmark) reuse one compiled loop."""
    return _build_batch_attack(log_prob_fn, margin, dict(settings))


def _batch_attack(log_prob_fn: LogProbFn, margin: bool, settings: dict[str, Any]):
    try:
        hash(log_prob_fn)
    except TypeError:
        return _build_batch_attack(log_prob_fn, margin, settings)
    return _cached_batch_attack(log_prob_fn, margin, tuple(sorted(settings.items())))


def _check_settings(step_size, max_steps, jensen_steps, patience, tol, objective) -> dict[str, Any]:
    if not (isinstance(step_size, (int, float)) and not isinstance(step_size, bool) and step_size > 0):
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    for name, value, low in (("max_steps", max_steps, 1), ("jensen_steps", jensen_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if patience is not None and (
        isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1
    ):
        raise ValueError(f"patience must be a positive integer or None (no early stopping), got {patience!r}")
    if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return {
        "step_size": float(step_size),
        "max_steps": int(max_steps),
        "jensen_steps": int(jensen_steps),
        "patience": None if patience is None else int(patience),
        "tol": float(tol),
    }


def _resolve_targets(log_prob_fn, x0, labels, target, num_classes, batch_size) -> np.ndarray:
    """The wrong class per point: ``1 - y`` for two classes, else the given target or the most probable
    wrong class under the predictive mean at ``x0``."""
    if target is not None:
        targets = check_point_labels(target, x0.shape[0], num_classes, name="target")
        if np.any(targets == labels):
            raise ValueError(f"target must differ from y at every point; equal at {int(np.sum(targets == labels))}")
        return targets
    if num_classes == 2:
        return (1 - labels).astype(np.int32)
    log_predictive = predictive_log_probs(log_prob_fn, x0, batch_size=batch_size)
    log_predictive[np.arange(len(labels)), labels] = -np.inf
    return np.argmax(log_predictive, axis=1).astype(np.int32)


def sphere_attack(
    log_prob_fn: LogProbFn,
    x0: Any,
    y: Any,
    *,
    target: Any = None,
    step_size: float = 0.01,
    max_steps: int = 1000,
    jensen_steps: int = 300,
    patience: int | None = 10,
    tol: float = 1e-4,
    objective: str = "auto",
    batch_size: int = 256,
) -> SphereAttackResult:
    """Attack every point on its own sphere; see the module docstring for the algorithm.

    Args:
        log_prob_fn: ``x (n, D) -> (S, n, C)`` per-draw log-probabilities (``Posterior.log_prob_fn()``)
            or logits (``Posterior.logits``, faster), differentiable in x.
        x0: (N, D) finite starting points, none at the origin.
        y: (N,) true labels in [0, C).
        target: optional (N,) wrong classes to push towards (default: ``1 - y`` for C = 2, else the most
            probable wrong class at x0).
        step_size: length of each normalised step (the paper: 0.01; 0.0001 for SVI and sampling ensembles).
        max_steps: cap on gradient steps per point.
        jensen_steps: ensemble objective: iterations on the Jensen bound before switching to the exact one
            (the paper: 300). Ignored for the logit margin.
        patience: stop a point after this many exact-objective iterations without an improvement above
            ``tol``; ``None`` runs every point for exactly ``max_steps`` steps.
        tol: improvement threshold for early stopping, in the objective's (log) units.
        objective: ``"logit_margin"`` (single model), ``"ensemble"`` (Jensen then exact), or ``"auto"``
            (the margin when S = 1, else the ensemble objective).
        batch_size: points attacked together (memory holds about S x batch_size x C values per step).
    Returns:
        a ``SphereAttackResult``.
    """
    settings = _check_settings(step_size, max_steps, jensen_steps, patience, tol, objective)
    batch_size = check_batch_size(batch_size)
    x0 = check_points(x0, "x0")
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (N, D), got {x0.shape}")
    radii = np.linalg.norm(x0.astype(np.float64), axis=1)
    if np.any(radii == 0):
        raise ValueError(f"x0 has {int(np.sum(radii == 0))} point(s) at the origin, which have no sphere to stay on")
    num_draws, num_classes = output_shape(log_prob_fn, x0)
    if num_classes < 2:
        raise ValueError(f"log_prob_fn returns {num_classes} class(es); an attack needs at least 2")
    labels = check_point_labels(y, x0.shape[0], num_classes)
    targets = _resolve_targets(log_prob_fn, x0, labels, target, num_classes, batch_size)
    if objective == "auto":
        objective = "logit_margin" if num_draws == 1 else "ensemble"
    if objective == "logit_margin" and num_draws != 1:
        raise ValueError(f"objective='logit_margin' is for a single model (S = 1); this ensemble has S = {num_draws}")

    run = _batch_attack(log_prob_fn, objective == "logit_margin", settings)
    size = min(batch_size, x0.shape[0])
    num_points = x0.shape[0]
    x_adv = np.empty_like(x0)
    log_predictive = np.empty((num_points, num_classes), np.float32)
    steps = np.empty(num_points, np.int32)
    trace_sum = np.zeros(settings["max_steps"] + 1, np.float64)
    for start, stop in batches(num_points, size):
        count = stop - start
        out = run(pad_rows(x0[start:stop], size), pad_rows(targets[start:stop], size))
        best_x, best_log_predictive, best_steps, trace = (np.asarray(v)[:count] for v in out)
        x_adv[start:stop] = best_x
        log_predictive[start:stop] = best_log_predictive
        steps[start:stop] = best_steps
        trace_sum += trace.astype(np.float64).sum(axis=0)
    if not np.all(np.isfinite(log_predictive)):
        raise FloatingPointError("log_prob_fn returned NaN or inf during the attack")
    drift = np.abs(np.linalg.norm(x_adv.astype(np.float64), axis=1) - radii)
    return SphereAttackResult(
        x_adv=x_adv,
        y=labels,
        target=targets,
        p_wrong=np.exp(log_predictive[np.arange(num_points), targets]),
        log_predictive=log_predictive,
        steps=steps,
        objective_trace=(trace_sum / num_points).astype(np.float32),
        radius_drift=float(drift.max()),
        num_draws=num_draws,
        settings={**settings, "objective": objective, "batch_size": batch_size, "decision_rule": DECISION_RULE},
    )


def adversarial_error(result: SphereAttackResult) -> float:
    """Adv. err.: mean over starting points of p_hat(wrong class | x*), the confidence with which the
    found point is misclassified."""
    return float(np.mean(result.p_wrong))


def robust_accuracy(result: SphereAttackResult) -> float:
    """Fraction of points whose decision at x* (argmax of the predictive mean) is still the true label,
    over all N points."""
    return float(np.mean(np.argmax(result.log_predictive, axis=1) == result.y))


def resampled_error(
    log_prob_fn: LogProbFn, x_adv: Any, y: Any, *, target: Any = None, batch_size: int = 1000
) -> float:
    """Resampled err.: the mean p_hat_2(wrong | x*) under an independent ensemble made by the same method.

    Pass the second ensemble as ``posterior.redraw(key).log_prob_fn()`` and the attack's ``x_adv``.
    The wrong class is ``target`` when given (use ``result.target`` for C > 2); otherwise all wrong classes
    together, ``1 - p_hat_2(y | x*)``, which is ``p_hat_2(1 - y | x*)`` for two classes.
    Returns a float in [0, 1].
    """
    x_adv = check_points(x_adv, "x_adv")
    log_predictive = predictive_log_probs(log_prob_fn, x_adv, batch_size=batch_size)
    num_points, num_classes = log_predictive.shape
    labels = check_point_labels(y, num_points, num_classes)
    if target is not None:
        targets = check_point_labels(target, num_points, num_classes, name="target")
        return float(np.mean(np.exp(log_predictive[np.arange(num_points), targets])))
    log_p_true = log_predictive[np.arange(num_points), labels].astype(np.float64)
    return float(np.mean(-np.expm1(log_p_true)))
