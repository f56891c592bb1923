"""``bootstrap``: B MAP fits, each on the training set resampled with replacement.

Resampling is expressed as multinomial counts instead of B copies of the data (B x N x D floats would
be gigabytes at paper scale): member b draws N indices uniformly with replacement, c_b (N,) counts
how often each point was drawn, and its potential weights every observed site's log-likelihood
term n by c_b[n] (the effect handler ``WeightObserved``). With integer counts this is the same
potential as the literally resampled data set, up to float rounding.

Every member starts from the full-data MAP (a warm start; ``warm_start=False`` starts every member
from the same ``init_to_median`` point instead). Draws are shaped (1, B, ...); the loss traces
(B, steps) are each member's weighted negative log joint.

With option ``batch_size`` set, the members train by minibatch Adam instead (``_minibatch``), vmapped
together from the ``init_loc`` start, each minibatch term weighted by the member's counts (times N/B).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import potential_energy

from ..posterior import Posterior
from ._common import constrain_batch, flat_potential, numpyro_model, stopwatch
from ._degenerate import flag_degenerate
from ._minibatch import (
    ADAM_DEFAULTS,
    MINIBATCH_DEFAULTS,
    WeightObserved,
    check_adam_options,
    constrained_draws,
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
    lbfgs_minimize,
)
from ._options import check_int

#: The kind of this backend (``ppl_uq.posterior.KINDS``): one optimum per member.
KIND = "ensemble"

DEFAULTS: dict[str, Any] = {
    **OPTIMISER_DEFAULTS,
    "num_members": 1000,
    "warm_start": True,
    "member_batch_size": 1,
    **MINIBATCH_DEFAULTS,
    **ADAM_DEFAULTS,
}


def weighted_potential(
    model: Callable[..., Any], x: Any, y: Any, unravel: Callable[[jax.Array], dict[str, jax.Array]]
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Return ``potential(z, weights)``: the negative log joint at flat unconstrained ``z`` (P,) with
    observation n's log-likelihood multiplied by ``weights[n]`` (N,). Pure; vmap it over weights."""
    nmodel = numpyro_model(model)

    def weighted_model(x: Any, y: Any, weights: jax.Array) -> Any:
        with WeightObserved(weights=weights):
            return nmodel(x, y)

    def potential(z: jax.Array, weights: jax.Array) -> jax.Array:
        return potential_energy(weighted_model, (x, y, weights), {}, unravel(z))

    return potential


def resample_counts(rng_key: jax.Array, num_members: int, num_points: int) -> jax.Array:
    """Bootstrap counts (num_members, num_points) float32: row b counts how often each point appears
    among num_points indices drawn uniformly with replacement (each row sums to num_points)."""
    indices = jax.random.randint(rng_key, (num_members, num_points), 0, num_points)
    counts = jax.vmap(lambda row: jnp.bincount(row, length=num_points))(indices)
    return counts.astype(jnp.float32)


def check_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options, ``num_members`` (B), ``member_batch_size``, ``warm_start``."""
    check_optimiser_options(options)
    check_int(options, "num_members")
    if not isinstance(options["warm_start"], bool):
        raise ValueError(f"option 'warm_start' must be True or False, got {options['warm_start']!r}")
    check_adam_options(options)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Fit B bootstrap MAPs; return them as draws (1, B, ...) with loss traces (B, steps) (per epoch
    when minibatch)."""
    if options["batch_size"] is not None:
        return _fit_minibatch(model, x, y, rng_key=rng_key, options=options, say=progress or (lambda message: None))
    key_init, key_resample = jax.random.split(rng_key)
    optimiser = {k: options[k] for k in ("max_iter", "tol", "memory_size")}
    cost: dict[str, float] = {}
    info: dict[str, Any] = {"warm_start": options["warm_start"]}
    full_data_evals = 0
    with stopwatch(cost, "fit_seconds"):
        flat = flat_potential(model, x, y, key_init)
        potential = weighted_potential(model, x, y, flat.unravel)
        jax.eval_shape(potential, flat.init, jnp.ones(x.shape[0], jnp.float32))  # bad models fail here, fast
        start = flat.init
        if options["warm_start"]:
            full = compile_and_run(cost, lambda z0: lbfgs_minimize(flat.potential, z0, **optimiser), flat.init)
            full_info = convergence_info(full, "bootstrap (its full-data MAP warm start)")
            info.update(full_data_map_converged=full_info["all_converged"],
                        full_data_map_grad_norm=full_info["grad_norm_max"])
            full_data_evals = full_info["grad_evals"]
            start = full.params
        counts = resample_counts(key_resample, options["num_members"], x.shape[0])
        inits = jnp.broadcast_to(start, (options["num_members"], start.shape[0]))
        result = compile_and_run(
            cost,
            lambda z0, c: fit_members(potential, z0, c, batch_size=options["member_batch_size"], **optimiser),
            inits,
            counts,
        )
        draws = constrain_batch(flat, result.params)
    members = convergence_info(result, "bootstrap")
    cost["grad_evals"] = float(members["grad_evals"] + full_data_evals)
    return ensemble_posterior("bootstrap", model, draws, options, result, cost, {**info, **members}, x, y, kind=KIND)



def _fit_minibatch(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
                   say: Callable[[str], None]) -> Posterior:
    """B bootstrap members by minibatch Adam on count-weighted minibatches; loss traces per epoch (B, E)."""
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        joint, result = train_point_estimates(model, x, y, rng_key=rng_key, options=options, cost=cost,
                                              num_members=options["num_members"], member_weights=resample_counts, say=say)
        draws = constrained_draws(joint, result.params)
    info = {**minibatch_info(result, options), "num_members": options["num_members"],
            **flag_degenerate("bootstrap", model, x, y, draws)}
    cost["grad_evals"] = float(result.num_steps * options["num_members"])
    return Posterior(method="bootstrap", kind=KIND, model=model, draws=draws, options=options,
                     loss_trace=result.epoch_loss, cost=cost, info=info, observed=(x, y))
