"""``deep-ensemble``: M MAP fits on the full data from M random starting points.

Starts (option ``init``): ``"uniform"`` (default) draws every coordinate of the flat unconstrained
vector uniformly from (-init_radius, init_radius), as NumPyro's ``init_to_uniform`` does (its radius
is 2); ``"prior"`` draws every latent site from the prior and maps it to the unconstrained space.
On a convex potential every member reaches the MAP; on a non-convex one (an MLP) members land in
different optima (on a small MLP, often symmetric copies of one: permuted or sign-flipped hidden
units, with equal loss). Draws are shaped (1, M, ...); loss traces (M, steps).
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
    "num_members": 100,
    "init": "uniform",
    "init_radius": 2.0,
    "member_batch_size": 1,
}


def check_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options, ``num_members`` (M), ``init``, ``init_radius`` (> 0)."""
    check_optimiser_options(options)
    check_int(options, "num_members")
    check_choice(options, "init", ["uniform", "prior"])
    check_positive(options, "init_radius")


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


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any]) -> Posterior:
    """Fit M MAPs from random starts; return them as draws (1, M, ...) with loss traces (M, steps)."""
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
