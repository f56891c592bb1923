"""L-BFGS minimisation of a flat potential, shared by ``map``, ``laplace``, ``bootstrap`` and
``deep-ensemble``.

``lbfgs_minimize`` runs ``optax.lbfgs`` (with its zoom line search) inside a ``jax.lax.while_loop``. It
is pure, jittable and vmappable: JAX batches a ``while_loop`` by stepping every member until all have
stopped and keeping a stopped member's state unchanged, so each member's result is the one it reaches
alone. Stopping, checked after every iteration:

* converged: the gradient's 2-norm is at most ``tol`` (an absolute tolerance on the potential);
* stalled: the line search returned a zero step (no decrease can be found), not converged;
* the loss became NaN or inf, not converged;
* ``max_iter`` iterations, not converged.

There is no relative-loss-change test on purpose: NumPyro's potential includes the priors'
normalising constants (about 1.6e3 on the spheres model), so in float32 the loss stops changing
while the gradient is still 10x above a sensible tolerance and L-BFGS is still making progress.

``fit_members`` fits many members (different starts, or different data weights). It runs them with
``jax.lax.map``, one member at a time by default, rather than one big ``vmap``: optax's zoom line search
evaluates the objective inside ``lax.cond``, and under ``vmap`` a ``cond`` becomes a ``select`` whose
operands are all broadcast to the batch, including the data the objective closes over (B copies of
an N x D array). Measured on the spheres model (D=500, N=1000, 2 CPU cores): 100 members took 0.6 s
one at a time and 7 s vmapped. ``batch_size`` > 1 (the backends' option ``member_batch_size``) vmaps that many members per step.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._common import stopwatch
from ._options import check_int, check_positive

#: Steps of the zoom line search per iteration (optax's default for ``lbfgs``).
MAX_LINESEARCH_STEPS = 20

#: Options every optimisation backend shares, with their defaults.
OPTIMISER_DEFAULTS: dict[str, Any] = {"max_iter": 1000, "tol": 1e-4, "memory_size": 10}
# tol: on the spheres MAP (D=500, N=1000, float32) tol=1e-3 leaves a Newton step of 0.034 to the optimum
# (|z| = 3.0) and biases warm-started bootstrap members toward the full-data MAP (member spread 0.30
# against 0.33 from a cold start); 1e-4 leaves 0.004 and no bias, for 3 more iterations. float32
# reached 3e-5 there.


class ConvergenceWarning(RuntimeWarning):
    """An optimiser stopped before its gradient test passed (details in ``Posterior.info``)."""


class OptimResult(NamedTuple):
    """The outcome of one minimisation (each field gains a leading member axis when vmapped/mapped).

    ``params`` (P,) the last iterate; ``loss_trace`` (max_iter + 1,) the loss at the start and after
    each iteration, padded with the final loss after the run stopped; ``num_iter`` () iterations run;
    ``converged`` () the gradient test passed; ``grad_norm`` () the final gradient's 2-norm;
    ``num_evals`` () value-and-gradient evaluations (1 at the start + one per line-search step).
    """

    params: jax.Array
    loss_trace: jax.Array
    num_iter: jax.Array
    converged: jax.Array
    grad_norm: jax.Array
    num_evals: jax.Array


class _LoopState(NamedTuple):
    params: jax.Array
    opt_state: Any
    value: jax.Array
    grad: jax.Array
    step: jax.Array
    trace: jax.Array
    stop: jax.Array
    converged: jax.Array
    num_evals: jax.Array


def lbfgs_minimize(
    fun: Callable[[jax.Array], jax.Array],
    init: jax.Array,
    *,
    max_iter: int,
    tol: float,
    memory_size: int = 10,
) -> OptimResult:
    """Minimise ``fun`` (a scalar function of a flat vector (P,)) from ``init`` with L-BFGS.

    Returns an ``OptimResult`` (see its docstring for shapes). Pure and jittable; to fit many members,
    vmap or ``lax.map`` a closure, e.g. ``lambda z0, w: lbfgs_minimize(lambda z: f(z, w), z0, ...)``.

    The value and gradient at each new iterate are read from the line search's state (what
    ``optax.value_and_grad_from_state`` does) and carried in the loop; we do not call that helper,
    because its ``lax.cond`` would evaluate the gradient a second time per iteration under vmap.
    """
    solver = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=MAX_LINESEARCH_STEPS, initial_guess_strategy="one"
        ),
    )
    value, grad = jax.value_and_grad(fun)(init)
    grad_ok = optax.tree.norm(grad) <= tol
    start = _LoopState(
        params=init,
        opt_state=solver.init(init),
        value=value,
        grad=grad,
        step=jnp.asarray(0, jnp.int32),
        trace=jnp.full((max_iter + 1,), value, dtype=value.dtype),
        stop=grad_ok | ~jnp.isfinite(value),
        converged=grad_ok,
        num_evals=jnp.asarray(1, jnp.int32),
    )

    def keep_going(state: _LoopState) -> jax.Array:
        return ~state.stop & (state.step < max_iter)

    def iterate(state: _LoopState) -> _LoopState:
        updates, opt_state = solver.update(
            state.grad, state.opt_state, state.params, value=state.value, grad=state.grad, value_fn=fun
        )
        value = optax.tree.get(opt_state, "value")
        grad = optax.tree.get(opt_state, "grad")
        line_search_steps = optax.tree.get(opt_state, "info").num_linesearch_steps
        grad_ok = optax.tree.norm(grad) <= tol
        stalled = optax.tree.norm(updates) == 0.0
        step = state.step + 1
        return _LoopState(
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            value=value,
            grad=grad,
            step=step,
            trace=state.trace.at[step].set(value),
            stop=grad_ok | stalled | ~jnp.isfinite(value),
            converged=grad_ok,
            num_evals=state.num_evals + jnp.asarray(line_search_steps, jnp.int32),
        )

    final = jax.lax.while_loop(keep_going, iterate, start)
    padded = jnp.where(jnp.arange(max_iter + 1) <= final.step, final.trace, final.value)
    return OptimResult(
        params=final.params,
        loss_trace=padded,
        num_iter=final.step,
        converged=final.converged,
        grad_norm=optax.tree.norm(final.grad),
        num_evals=final.num_evals,
    )


def fit_members(
    fun: Callable[..., jax.Array],
    inits: jax.Array,
    member_args: Any = None,
    *,
    max_iter: int,
    tol: float,
    memory_size: int = 10,
    batch_size: int = 1,
) -> OptimResult:
    """Minimise ``fun`` once per member; return an ``OptimResult`` with a leading member axis (M, ...).

    ``inits`` (M, P) are the starting points. With ``member_args`` (a pytree whose leaves have a
    leading M axis, e.g. bootstrap weights (M, N)) member m minimises ``fun(z, member_args[m])``;
    without it, ``fun(z)``. Members run through ``jax.lax.map`` with ``batch_size`` members vmapped
    per step (see the module docstring for why 1 is the default). Pure and jittable.
    """

    def one_member(carry: tuple[jax.Array, Any]) -> OptimResult:
        init, args = carry
        objective = fun if member_args is None else (lambda z: fun(z, args))
        return lbfgs_minimize(objective, init, max_iter=max_iter, tol=tol, memory_size=memory_size)

    return jax.lax.map(one_member, (inits, member_args), batch_size=batch_size)


def compile_and_run(cost: dict[str, float], fn: Callable[..., Any], *args: Any) -> Any:
    """``jax.jit(fn)(*args)`` with the compile time added to ``cost["compile_seconds"]`` and the run
    time to ``cost["run_seconds"]``; returns the (ready) result."""
    with stopwatch(cost, "compile_seconds"):
        compiled = jax.jit(fn).lower(*args).compile()
    with stopwatch(cost, "run_seconds"):
        return jax.block_until_ready(compiled(*args))


def find_map(cost: dict[str, float], potential: Callable[[jax.Array], jax.Array], init: jax.Array,
             options: dict[str, Any]) -> OptimResult:
    """One L-BFGS fit of ``potential`` from ``init`` with the ``max_iter``/``tol``/``memory_size``
    options (the MAP of ``map`` and ``laplace``); compile and run times go into ``cost``."""
    return compile_and_run(
        cost,
        lambda z0: lbfgs_minimize(
            potential, z0, max_iter=options["max_iter"], tol=options["tol"], memory_size=options["memory_size"]
        ),
        init,
    )


def trimmed_trace(result: OptimResult) -> np.ndarray:
    """The loss trace cut after the longest run: (steps,) for one fit, (members, steps) for many,
    with ``steps = max(num_iter) + 1`` (entry 0 is the starting loss)."""
    steps = int(np.max(np.asarray(result.num_iter))) + 1
    return np.asarray(result.loss_trace)[..., :steps]


def convergence_info(result: OptimResult, method: str, *, stacklevel: int = 3) -> dict[str, Any]:
    """Summarise convergence for ``Posterior.info`` (members converged, iterations, final gradient
    norms, evaluations); issue a ``ConvergenceWarning`` naming ``method`` when any member did not
    converge, so non-convergence is never silent."""
    converged = np.atleast_1d(np.asarray(result.converged))
    num_iter = np.atleast_1d(np.asarray(result.num_iter))
    grad_norm = np.atleast_1d(np.asarray(result.grad_norm))
    info = {
        "num_members": int(converged.size),
        "num_converged": int(converged.sum()),
        "all_converged": bool(converged.all()),
        "iterations_mean": float(num_iter.mean()),
        "iterations_max": int(num_iter.max()),
        "grad_norm_max": float(np.max(grad_norm)),
        "grad_evals": int(np.sum(np.asarray(result.num_evals))),
    }
    if not info["all_converged"]:
        warnings.warn(
            f"{method}: {converged.size - info['num_converged']} of {converged.size} L-BFGS fit(s) "
            f"stopped before the gradient norm reached tol (largest final gradient norm "
            f"{info['grad_norm_max']:.3g}, at most {info['iterations_max']} iterations); raise "
            "max_iter or tol. See Posterior.info and Posterior.loss_trace.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    return info


def ensemble_posterior(method: str, model: Callable[..., Any], draws: dict[str, np.ndarray], options: dict[str, Any],
                       result: OptimResult, cost: dict[str, float], info: dict[str, Any], x: Any, y: Any,
                       kind: str = "ensemble") -> Any:
    """The Posterior of an ensemble of L-BFGS fits (``bootstrap``, ``deep-ensemble``): draws (1, M, ...),
    per-member ``sample_stats`` and loss traces (M, steps); ``kind`` is the calling backend's ``KIND``."""
    from ..posterior import Posterior
    from ._degenerate import flag_degenerate

    info = {**info, **flag_degenerate(method, model, x, y, draws)}
    return Posterior(
        method=method,
        kind=kind,
        model=model,
        draws=draws,
        options=options,
        sample_stats=member_stats(result),
        loss_trace=trimmed_trace(result),
        cost=cost,
        info=info,
        observed=(x, y),
    )


def member_stats(result: OptimResult) -> dict[str, np.ndarray]:
    """Per-member optimiser statistics for ``Posterior.sample_stats``, each shaped (1, members):
    ``converged``, ``num_iter``, ``grad_norm`` and the final ``loss``."""
    return {
        "converged": np.asarray(result.converged)[None],
        "num_iter": np.asarray(result.num_iter)[None],
        "grad_norm": np.asarray(result.grad_norm)[None],
        "loss": np.asarray(result.loss_trace)[:, -1][None],
    }


def check_optimiser_options(options: dict[str, Any]) -> None:
    """Validate ``max_iter``, ``tol`` and ``memory_size`` (and ``member_batch_size`` when present)."""
    check_int(options, "max_iter", "memory_size")
    check_positive(options, "tol")
    if "member_batch_size" in options:
        check_int(options, "member_batch_size")


__all__ = [
    "ConvergenceWarning",
    "MAX_LINESEARCH_STEPS",
    "OPTIMISER_DEFAULTS",
    "OptimResult",
    "check_optimiser_options",
    "compile_and_run",
    "convergence_info",
    "fit_members",
    "lbfgs_minimize",
    "member_stats",
    "trimmed_trace",
]
