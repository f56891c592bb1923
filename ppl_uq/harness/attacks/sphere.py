"""The sphere attack of Bekasov & Murray, "Bayesian Adversarial Spheres", App. B.

For each starting point ``x0`` with label ``y``, projected gradient ascent on the sphere of radius
``||x0||`` maximises the predictive probability of a wrong class ``t`` (``1 - y`` with two classes; with
more, the most probable wrong class at ``x0`` or a given target):

    x <- x + step_size * g / ||g||,   then   x <- x * ||x0|| / ||x||       (re-project)

The normalised-gradient step is our reconstruction: the paper's update formula is lost in the seed text.

Objectives: the attack's ``objective`` setting names a schedule of the objectives every attack shares
(``objectives.py``, targeted at t), all from the per-draw log-odds of the target
``m_s = log p_s(t) - log sum_{c != t} p_s(c)`` (differences of log-probabilities, so nothing passes through
a sigmoid or saturates in float32); ``SCHEDULES`` lists them:

- ``"logit_margin"``, a single model (S = 1): ``"logit-margin"``, the margin ``m`` (=
  ``logit_wrong - logit_true`` for two classes) rather than p(t), which saturates in float32 (the "logit
  trick");
- ``"ensemble"``: ``"jensen"``, the lower bound ``mean_s log p_s(t)``, for the first ``jensen_steps``
  iterations, then ``"exact"``, ``log p_hat(t) = logsumexp_s log p_s(t) - log S`` with
  ``log p_s(t) = log sigmoid(m_s)`` (exact gradients even where p_s(t) rounds to 1).

The step uses only the gradient's direction, and for the ensemble objectives that direction is the
shared objectives' surrogate, computed from per-draw weights normalised in log space: where every draw
that matters is confidently wrong, the gradient's size underflows in float32 (autodiff returns zeros and
the attack would stall) while its direction is still well defined.

Because only class differences enter, ``log_prob_fn`` may equally return unnormalised logits (S, N, C):
``Posterior.logits`` gives the same attack as ``Posterior.log_prob_fn()`` without the per-step
log-softmax (a Posterior's ``Predictor`` uses its logits). Reported probabilities are normalised with a
log-softmax, a no-op on log-probabilities.

The best point is kept by the exact objective (the margin for a single model, which orders points as
p(t) does), over every iterate including x0. Early stopping, as in the paper: once the exact objective is
being ascended, stop a point when the best value reached in that phase has not improved by more than ``tol``
for ``patience`` iterations (the paper's threshold is lost; ``tol = 1e-4`` in log space is our documented
default). The clock ignores the Jensen phase, which can lower the exact objective before the exact phase
raises it again. ``max_steps`` caps every point.

Implementation: one jit-compiled loop per batch of ``batch_size`` points, a fixed-length loop for the Jensen
phase and a ``lax.while_loop`` for the exact phase that ends when every point has stopped. Each iteration
is one forward pass of the model on the whole batch and one pullback (``jax.vjp``) of the closed-form
cotangent of the phase's surrogate (``objectives.ensemble_terms``: one ``exp`` per draw and point), so a
model linear in its features does two GEMMs per step, (B, D) x (D, S) and back, and little else
(benchmarks/sphere_attack_vs_torch.py reads the step's speed as a fraction of the machine's matmul
peak). Built once per settings on the model's ``Predictor`` (so attacking one Posterior again compiles
nothing new). Each batch's points are split over the local devices (``point_sharding``): under
``configure_process``'s two host devices a program on one device reached 57k point·steps/s at full size,
split over both 75k.

``sphere_attack`` returns a ``SphereAttackResult`` (the paper's adversarial and resampled errors are read
from it); ``sphere`` runs the same attack and returns the ``AttackResult`` every attack returns.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ...data.validate import as_python_scalar
from ..predictive import (
    DECISION_RULE,
    LogProbFn,
    Predictor,
    as_predictor,
    batches,
    check_batch_size,
    check_point_labels,
    check_points,
    pad_rows,
    predictive_log_mean,
    predictive_log_probs,
)
from ._common import AttackResult, check_inputs, finish, point_sharding
from .objectives import batch_objective, ensemble_cotangent, point_objective

#: Each ``objective`` setting as (objective ascended for the first ``jensen_steps`` iterations, objective
#: ascended after them, which also ranks points and drives early stopping), in the names of
#: ``objectives.OBJECTIVES``. ``"auto"`` is ``"logit_margin"`` when S = 1, else ``"ensemble"``.
SCHEDULES = {"logit_margin": ("logit-margin", "logit-margin"), "ensemble": ("jensen", "exact")}

#: The values ``sphere_attack``'s ``objective`` takes.
SPHERE_OBJECTIVES = ("auto", *SCHEDULES)


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
    step: jax.Array  # () iterations run
    x: jax.Array  # (B, D) current points
    best_x: jax.Array  # (B, D)
    best_value: jax.Array  # (B,) exact objective at best_x
    reference: jax.Array  # (B,) best exact value of the exact phase, for the patience clock
    stall: jax.Array  # (B,) exact-phase iterations without improvement
    done: jax.Array  # (B,) stopped points (their x no longer moves)
    steps: jax.Array  # (B,) gradient steps each point took
    trace: jax.Array  # (max_steps + 1, B) best value after each iteration


def _phase_objectives(margin: bool, jensen: bool):
    """Return ``f(scores (S, B, C), target (B,)) -> (value (B,), cotangent (S, B, C))`` for one phase.

    ``value`` ranks points and drives early stopping (the schedule's second objective: the exact log
    p_hat(target), or the logit margin when ``margin``) in both phases; ``cotangent`` is the gradient,
    with respect to the scores, of the phase's ascent surrogate (the Jensen weights when ``jensen``, else
    the exact ones, of ``objectives.ensemble_terms``; or ``objectives.batch_objective("logit-margin")``):
    pulled back through the model it gives the direction of that objective's input gradient, exact where
    float32 gradients underflow.
    """
    if margin:
        return batch_objective(SCHEDULES["logit_margin"][1], targeted=True)

    first_name, then_name = SCHEDULES["ensemble"]

    def objectives(scores: jax.Array, target: jax.Array):
        terms, cotangent = ensemble_cotangent(scores, target, first_name if jensen else then_name)
        return terms.log_predictive, cotangent

    return objectives


def _point_objective(log_prob_fn: LogProbFn, margin: bool):
    """Return ``f(x (D,), target, use_jensen) -> (ascent, value)`` for one point, both scalars, for
    autodiff: the per-point form of what the attack follows (``point_objective`` of the schedule's
    objectives), kept as the reference the closed-form batch step is tested against."""
    first_name, then_name = SCHEDULES["logit_margin" if margin else "ensemble"]
    then = point_objective(then_name, targeted=True)
    first = None if first_name == then_name else point_objective(first_name, targeted=True)

    def objective(x: jax.Array, target: jax.Array, use_jensen: jax.Array):
        scores = log_prob_fn(x[None])[:, 0, :]  # (S, C)
        ascent, value = then(scores, target)
        if first is not None:
            ascent = jnp.where(use_jensen, first(scores, target)[0], ascent)
        return ascent, value

    return objective


def _project(x: jax.Array, radius: jax.Array) -> jax.Array:
    """Scale each row of ``x`` (B, D) to its radius (B, 1)."""
    return x * (radius / jnp.linalg.norm(x, axis=1, keepdims=True))


def _build_batch_attack(predictor: Predictor, *, margin: bool, step_size: float, max_steps: int,
                        jensen_steps: int, patience: int | None, tol: float) -> Callable[..., Any]:
    """A jitted ``(x0 (B, D), target (B,)) -> (best_x (B, D), log_predictive (B, C), steps (B,),
    trace (max_steps + 1, B))``, built by ``predictor.compiled`` (once per settings).

    One ``lax.while_loop`` over the whole batch: each iteration is one forward pass of the model on all
    B points and one pullback of the closed-form cotangent (``jax.vjp``), so the model's layers see
    (B, D) inputs and its matrix products stay whole GEMMs. Stopped points keep their x and best values;
    the loop ends when every point has stopped or after ``max_steps`` iterations.
    """
    log_prob_fn = predictor.log_prob_fn
    jensen_steps = 0 if margin else min(jensen_steps, max_steps)
    phases = {use_jensen: _phase_objectives(margin, use_jensen) for use_jensen in (True, False)}

    def run(x0: jax.Array, target: jax.Array):
        radius = jnp.linalg.norm(x0, axis=1, keepdims=True)
        x0 = _project(x0, radius)
        num_points = x0.shape[0]

        def body(state: _LoopState, use_jensen: bool) -> _LoopState:
            scores, pullback = jax.vjp(log_prob_fn, state.x)
            value, cotangent = phases[use_jensen](scores, target)
            (grad,) = pullback(cotangent)
            better = value > state.best_value
            best_x = jnp.where(better[:, None], state.x, state.best_x)
            best_value = jnp.where(better, value, state.best_value)
            # The patience clock runs only once the exact objective is being ascended, and measures
            # improvement over the best value of that phase (the Jensen phase may have lowered it).
            active = ~state.done
            if use_jensen:
                stall, reference = state.stall, state.reference
            else:
                improved = value > state.reference + tol
                stall = jnp.where(active, jnp.where(improved, 0, state.stall + 1), state.stall)
                reference = jnp.where(active & improved, value, state.reference)
            grad_norm = jnp.linalg.norm(grad, axis=1, keepdims=True)
            direction = jnp.where(grad_norm > 0, grad / jnp.where(grad_norm > 0, grad_norm, 1.0), 0.0)
            moved = _project(state.x + step_size * direction, radius)
            done = state.done | (stall >= patience) if patience is not None else state.done
            return _LoopState(
                step=state.step + 1,
                x=jnp.where(active[:, None], moved, state.x),
                best_x=best_x,
                best_value=best_value,
                reference=reference,
                stall=stall,
                done=done,
                steps=state.steps + active.astype(jnp.int32),
                trace=jax.lax.dynamic_update_index_in_dim(state.trace, best_value, state.step, 0),
            )

        init = _LoopState(
            step=jnp.asarray(0, jnp.int32),
            x=x0,
            best_x=x0,
            best_value=jnp.full((num_points,), -jnp.inf, jnp.float32),
            reference=jnp.full((num_points,), -jnp.inf, jnp.float32),
            stall=jnp.zeros((num_points,), jnp.int32),
            done=jnp.zeros((num_points,), bool),
            steps=jnp.zeros((num_points,), jnp.int32),
            trace=jnp.zeros((max_steps + 1, num_points), jnp.float32),
        )
        # The Jensen phase runs a fixed number of iterations (no point stops in it); then the exact phase.
        state = jax.lax.fori_loop(0, jensen_steps, lambda _, s: body(s, True), init)
        state = jax.lax.while_loop(lambda s: (s.step < max_steps) & ~jnp.all(s.done), lambda s: body(s, False), state)
        # Score the points reached by the last step too.
        value = phases[False](log_prob_fn(state.x), target)[0]
        better = value > state.best_value
        best_x = jnp.where(better[:, None], state.x, state.best_x)
        best_value = jnp.where(better, value, state.best_value)
        trace = jnp.where((jnp.arange(max_steps + 1) < state.step)[:, None], state.trace, best_value)
        log_predictive = predictive_log_mean(jax.nn.log_softmax(log_prob_fn(best_x), axis=-1))
        return best_x, log_predictive, state.steps, trace

    return jax.jit(run)


def _check_settings(step_size, max_steps, jensen_steps, patience, tol, objective) -> dict[str, Any]:
    step_size, max_steps, jensen_steps, patience, tol = (
        as_python_scalar(value) for value in (step_size, max_steps, jensen_steps, patience, tol))
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
    if objective not in SPHERE_OBJECTIVES:
        raise ValueError(f"objective must be one of {SPHERE_OBJECTIVES}, got {objective!r}")
    return {
        "step_size": float(step_size),
        "max_steps": int(max_steps),
        "jensen_steps": int(jensen_steps),
        "patience": None if patience is None else int(patience),
        "tol": float(tol),
    }


def _resolve_targets(predictor: Predictor, x0: np.ndarray, labels: np.ndarray, target: Any,
                     batch_size: int) -> np.ndarray:
    """The wrong class per point (N,): ``1 - y`` for two classes, else the given target or the most
    probable wrong class under the predictive mean at ``x0``."""
    num_classes = predictor.num_classes
    if target is not None:
        targets = check_point_labels(target, x0.shape[0], num_classes, name="target")
        if np.any(targets == labels):
            raise ValueError(f"target must differ from y at every point; equal at {int(np.sum(targets == labels))}")
        return targets
    if num_classes == 2:
        return (1 - labels).astype(np.int32)
    log_predictive = predictive_log_probs(predictor, x0, batch_size=batch_size)
    log_predictive[np.arange(len(labels)), labels] = -np.inf
    return np.argmax(log_predictive, axis=1).astype(np.int32)


def sphere_attack(
    log_prob_fn: Any,
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
        log_prob_fn: the model: a ``Posterior``, a ``Predictor``, or a callable ``x (n, D) -> (S, n, C)`` of
            per-draw log-probabilities (``Posterior.log_prob_fn()``) or logits (``Posterior.logits``,
            faster), differentiable in x. The compiled attack is kept on the Posterior's / Predictor's
            ``Predictor``; a plain callable compiles afresh on each call.
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
            (the margin when S = 1, else the ensemble objective); see ``SCHEDULES``.
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
    predictor = as_predictor(log_prob_fn, x0)
    num_draws, num_classes = predictor.num_draws, predictor.num_classes
    labels = check_point_labels(y, x0.shape[0], num_classes)
    targets = _resolve_targets(predictor, x0, labels, target, batch_size)
    if objective == "auto":
        objective = "logit_margin" if num_draws == 1 else "ensemble"
    if objective == "logit_margin" and num_draws != 1:
        raise ValueError(f"objective='logit_margin' is for a single model (S = 1); this ensemble has S = {num_draws}")

    run = predictor.compiled(_build_batch_attack, margin=objective == "logit_margin", **settings)
    # Each batch's points are split over the local devices (one core each with two host devices).
    sharding, size = point_sharding(min(batch_size, x0.shape[0]))
    num_points = x0.shape[0]
    x_adv = np.empty_like(x0)
    log_predictive = np.empty((num_points, num_classes), np.float32)
    steps = np.empty(num_points, np.int32)
    trace_sum = np.zeros(settings["max_steps"] + 1, np.float64)
    for start, stop in batches(num_points, size):
        count = stop - start
        points = (pad_rows(x0[start:stop], size), pad_rows(targets[start:stop], size))
        out = run(*(points if sharding is None else jax.device_put(points, sharding)))
        best_x, best_log_predictive, best_steps = (np.asarray(v)[:count] for v in out[:3])
        trace = np.asarray(out[3])[:, :count]
        x_adv[start:stop] = best_x
        log_predictive[start:stop] = best_log_predictive
        steps[start:stop] = best_steps
        trace_sum += trace.astype(np.float64).sum(axis=1)
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
        settings={**settings, "objective": objective, "phases": list(SCHEDULES[objective]), "batch_size": batch_size,
                  "decision_rule": DECISION_RULE},
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
    log_prob_fn: Any, x_adv: Any, y: Any, *, target: Any = None, batch_size: int = 1000
) -> float:
    """Resampled err.: the mean p_hat_2(wrong | x*) under an independent ensemble made by the same method.

    Pass the second ensemble as ``posterior.redraw(key)`` (or its ``log_prob_fn()`` or ``Predictor``) and
    the attack's ``x_adv``.
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


def sphere(model: Any, x: Any, y: Any, **options: Any) -> AttackResult:
    """The sphere attack (``sphere_attack``) as an ``AttackResult``: each point moves on its own sphere
    ||x'|| = ||x||, pushed towards a wrong class (a targeted attack). ``options`` are ``sphere_attack``'s
    (step_size, max_steps, jensen_steps, patience, tol, objective, batch_size). The attack's own scores at
    x' are reused as ``log_predictive_adv``."""
    predictor, x, labels, _ = check_inputs(model, x, y)
    found = sphere_attack(predictor, x, labels, **options)
    return finish(predictor, attack="sphere", x=x, x_adv=found.x_adv, y=labels, target=found.target,
                  loss_trace=found.objective_trace, settings=found.settings,
                  batch_size=found.settings["batch_size"], log_predictive_adv=found.log_predictive)


__all__ = [
    "SCHEDULES",
    "SPHERE_OBJECTIVES",
    "SphereAttackResult",
    "adversarial_error",
    "resampled_error",
    "robust_accuracy",
    "sphere",
    "sphere_attack",
]
