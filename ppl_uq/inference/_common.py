"""Pieces every NumPyro-based backend shares: binding the model, its potential in a flat unconstrained
vector, mapping flat vectors back to constrained latent sites, and timing."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import init_to_median
from numpyro.infer.util import constrain_fn, initialize_model

from ..models.handles import abstract_trace, numpyro_handle


def numpyro_model(model: Callable[..., Any]) -> Callable[..., Any]:
    """The model declaration bound to the NumPyro handle: an ordinary NumPyro model of ``(x, y)``."""
    return numpyro_handle().bind(model)


class FlatPotential(NamedTuple):
    """A model's negative log joint as a function of one flat unconstrained vector.

    ``init`` (P,) is the starting point, ``potential(z) -> scalar`` (jittable, data closed over),
    ``unravel(z) -> dict`` gives unconstrained sites, ``constrain(z) -> dict`` constrained latent
    sites (no deterministic sites), ``site_shapes`` the constrained shape of each latent site.
    """

    init: jax.Array
    potential: Callable[[jax.Array], jax.Array]
    unravel: Callable[[jax.Array], dict[str, jax.Array]]
    constrain: Callable[[jax.Array], dict[str, jax.Array]]


def flat_potential(
    model: Callable[..., Any],
    x: Any,
    y: Any,
    rng_key: jax.Array,
    init_strategy: Callable[..., Any] = init_to_median(num_samples=15),
) -> FlatPotential:
    """Build the flat unconstrained potential of ``model`` on data ``(x, y)``."""
    nmodel = numpyro_model(model)
    model_info = initialize(rng_key, nmodel, x, y, init_strategy)
    init_flat, unravel = ravel_pytree(model_info.param_info.z)
    potential_fn = model_info.potential_fn

    def potential(z: jax.Array) -> jax.Array:
        return potential_fn(unravel(z))

    def constrain(z: jax.Array) -> dict[str, jax.Array]:
        return constrain_fn(nmodel, (x, y), {}, unravel(z), return_deterministic=False)

    return FlatPotential(init_flat, potential, unravel, constrain)


def initialize(rng_key: jax.Array, nmodel: Callable[..., Any], x: Any, y: Any, init_strategy: Callable[..., Any]) -> Any:
    """NumPyro's ``initialize_model`` on data ``(x, y)`` (``rng_key`` may be a batch of keys, one per
    chain); its bare "Cannot find valid initial parameters" becomes a ``ValueError`` that says what to check."""
    try:
        return initialize_model(rng_key, nmodel, model_args=(x, y), init_strategy=init_strategy)
    except RuntimeError as exc:
        if "valid initial parameters" not in str(exc):
            raise
        raise ValueError(
            "the model's log density is not finite at any of the starting points tried (draws from the prior "
            "and their median): check that the priors' scales are moderate (a scale of 1e30 overflows float32 "
            "in the likelihood), that y lies in the likelihood's support, and that x holds no extreme values"
        ) from exc


def constrain_batch(flat: FlatPotential, z: jax.Array) -> dict[str, np.ndarray]:
    """Map flat unconstrained vectors (S, P) to constrained draws shaped (1, S, ...)."""
    draws = jax.jit(jax.vmap(flat.constrain))(z)
    return {name: np.asarray(value)[None] for name, value in draws.items()}


@contextmanager
def stopwatch(cost: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall-clock seconds of the ``with`` block to ``cost[key]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        cost[key] = cost.get(key, 0.0) + time.perf_counter() - start


def latent_site_names(model: Callable[..., Any], x: Any, y: Any) -> list[str]:
    """Names of the model's latent (unobserved) sample sites, in model order. Traces the model
    abstractly (``abstract_trace``) on the full data: nothing is computed and nothing is sliced."""
    model_trace, _, _ = abstract_trace(model, x, y)
    return [name for name, site in model_trace.items() if site["type"] == "sample" and not site["is_observed"]]
