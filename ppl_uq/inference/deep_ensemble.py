"""``deep-ensemble``: M MAP fits on the full data from M random starting points.

Starts (option ``init``): ``"uniform"`` (default) draws every coordinate of the flat unconstrained
vector uniformly from (-init_radius, init_radius), as NumPyro's ``init_to_uniform`` does (its radius
is 2); ``"prior"`` draws every latent site from the prior and maps it to the unconstrained space.
On a convex potential every member reaches the MAP; on a non-convex one (an MLP) members land in
different optima (on a small MLP, often symmetric copies of one: permuted or sign-flipped hidden
units, with equal loss). Draws are shaped (1, M, ...); loss traces (M, steps).

With option ``batch_size`` set, the M members train by minibatch Adam instead, vmapped together, each
with its own shuffling (``_minibatch``); the prior is the weight decay (an iid Gaussian prior of scale s
is an L2 penalty of 1/(2 s^2) per weight). ``init`` then also accepts ``"glorot"``: an independent
Glorot-uniform draw per member for every weight matrix, vectors at 0 (the usual network start).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import Predictive
from numpyro.infer.util import unconstrain_fn

from ..posterior import Posterior
from ._common import FlatPotential, constrain_batch, flat_potential, latent_site_names, numpyro_model, stopwatch
from ._degenerate import flag_degenerate
from ._minibatch import (
    ADAM_DEFAULTS,
    MINIBATCH_DEFAULTS,
    LogJoint,
    check_adam_options,
    constrained_draws,
    initial_point,
    minibatch_info,
    train_point_estimates,
)
from ._optim import (
    OPTIMISER_DEFAULTS,
    check_optimiser_options,
    compile_and_run,
    convergence_info,
    ensemble_posterior,
    fit_members,
)
from ._options import check_choice, check_int, check_positive

#: The kind of this backend (``ppl_uq.posterior.KINDS``): one optimum per member.
KIND = "ensemble"

DEFAULTS: dict[str, Any] = {
    **OPTIMISER_DEFAULTS,
    **MINIBATCH_DEFAULTS,
    "learning_rate": ADAM_DEFAULTS["learning_rate"],
    "lr_schedule": ADAM_DEFAULTS["lr_schedule"],
    "num_members": 100,
    "init": "uniform",
    "init_radius": 2.0,
    "member_batch_size": 1,
}


def check_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options, ``num_members`` (M), ``init``, ``init_radius`` (> 0)."""
    check_optimiser_options(options)
    check_int(options, "num_members")
    check_choice(options, "init", ["uniform", "prior", "glorot"])
    check_positive(options, "init_radius")
    check_adam_options(options)
    if options["init"] == "glorot" and options["batch_size"] is None:
        raise ValueError("option init='glorot' needs minibatch training (set batch_size); full-batch members start "
                         "from 'uniform' or 'prior'")


def initial_points(
    rng_key: jax.Array, model: Callable[..., Any], x: Any, y: Any, flat: FlatPotential,
    num_members: int, init: str, radius: float,
) -> jax.Array:
    """Starting points (num_members, P) in the flat unconstrained space (see the module docstring)."""
    size = flat.init.shape[0]
    if init == "uniform":
        return jax.random.uniform(rng_key, (num_members, size), flat.init.dtype, -radius, radius)
    nmodel = numpyro_model(model)
    names = latent_site_names(model, x, y)
    prior = Predictive(nmodel, num_samples=num_members, return_sites=names)(rng_key, x)
    def to_flat(sites: Any) -> jax.Array:
        return ravel_pytree(unconstrain_fn(nmodel, (x, y), {}, sites))[0]

    points = jax.vmap(to_flat)(prior)
    if points.shape != (num_members, size):
        raise RuntimeError(f"prior starts have shape {points.shape}, expected {(num_members, size)}")
    return points


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Fit M MAPs from random starts; return them as draws (1, M, ...) with loss traces (M, steps)
    (per epoch when minibatch)."""
    if options["batch_size"] is not None:
        return _fit_minibatch(model, x, y, rng_key=rng_key, options=options, say=progress or (lambda message: None))
    key_flat, key_init = jax.random.split(rng_key)
    optimiser = {k: options[k] for k in ("max_iter", "tol", "memory_size")}
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        flat = flat_potential(model, x, y, key_flat)
        inits = initial_points(
            key_init, model, x, y, flat, options["num_members"], options["init"], options["init_radius"]
        )
        result = compile_and_run(
            cost,
            lambda z0: fit_members(flat.potential, z0, batch_size=options["member_batch_size"], **optimiser),
            inits,
        )
        draws = constrain_batch(flat, result.params)
    info = convergence_info(result, "deep-ensemble")
    final_losses = np.asarray(result.loss_trace[:, -1])
    info.update(final_loss_min=float(final_losses.min()), final_loss_max=float(final_losses.max()))
    cost["grad_evals"] = float(info["grad_evals"])
    return ensemble_posterior("deep-ensemble", model, draws, options, result, cost, info, x, y, kind=KIND)


def _fit_minibatch(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
                   say: Callable[[str], None]) -> Posterior:
    """M members by minibatch Adam, vmapped (module docstring); loss traces per epoch (M, E)."""

    def starts(joint: LogJoint, key: jax.Array, num_members: int) -> jax.Array:
        keys = jax.random.split(key, num_members)
        if options["init"] == "glorot":
            return jax.vmap(lambda k: initial_point(joint, k, "glorot"))(keys)
        if options["init"] == "uniform":
            radius = options["init_radius"]
            return jax.random.uniform(key, (num_members, joint.init.shape[0]), joint.init.dtype, -radius, radius)
        raise ValueError("minibatch deep-ensemble supports init 'glorot' or 'uniform'")

    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        joint, result = train_point_estimates(model, x, y, rng_key=rng_key, options=options, cost=cost,
                                              num_members=options["num_members"], starts=starts, say=say)
        draws = constrained_draws(joint, result.params)
    info = {**minibatch_info(result, options), **flag_degenerate("deep-ensemble", model, x, y, draws)}
    info.update(num_members=options["num_members"], final_loss_min=float(result.epoch_loss[:, -1].min()),
                final_loss_max=float(result.epoch_loss[:, -1].max()))
    cost["grad_evals"] = float(result.num_steps * options["num_members"])
    return Posterior(method="deep-ensemble", kind=KIND, model=model, draws=draws, options=options,
                     loss_trace=result.epoch_loss, cost=cost, info=info, observed=(x, y))
