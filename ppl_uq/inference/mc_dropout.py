"""``mc-dropout``: Monte Carlo dropout (Gal & Ghahramani 2016) as a posterior over weights.

Training: the MAP objective (the prior is the weight decay: an iid Gaussian prior of scale s is an L2
penalty of 1/(2 s^2) per weight) by minibatch Adam, where the likelihood of every batch sees the weights
with dropout applied. Dropping unit i of a layer's input is zeroing row i of that layer's weight matrix,
so dropout is expressed on the weights themselves: every real latent site of rank 2, shaped
(fan_in, fan_out) as a layer ``h @ W + b`` uses it, gets a row mask m_i ~ Bernoulli(1 - p), rescaled by
1/(1 - p). One mask per weight matrix is drawn per batch (shared by the batch's points); the expected
objective is the same as with one mask per point, only its variance differs, and it needs no help from
the model. The input layer's rows are masked too (input dropout). Option ``dropout_sites`` names the
sites explicitly instead (any real site; its first axis is the one masked: for a linear model's weight
vector w (D,), masking its elements is input dropout).

Posterior: draw s is the trained weights with a fresh set of row masks, W_s = W * m_s / (1 - p) (vectors
and other sites unchanged), so each draw is an ordinary weight draw and the harness needs nothing else.
``redraw(key)`` draws new masks for the same trained weights.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ..posterior import Posterior
from ._common import stopwatch
from ._minibatch import (
    ADAM_DEFAULTS,
    MINIBATCH_DEFAULTS,
    LogJoint,
    check_adam_options,
    constrained_draws,
    is_matrix_site,
    minibatch_info,
    train_point_estimates,
)
from ._options import check_int

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted distribution (the dropout masks).
KIND = "variational"

DEFAULTS: dict[str, Any] = {
    **MINIBATCH_DEFAULTS,
    **ADAM_DEFAULTS,
    "batch_size": 128,
    "init_loc": "glorot",
    "dropout_rate": 0.1,
    "num_samples": 100,
    "dropout_sites": None,
}


def check_options(options: dict[str, Any]) -> None:
    """Validate the minibatch options (``batch_size`` is required), ``dropout_rate`` in (0, 1) and
    ``num_samples`` (int >= 1)."""
    check_adam_options(options)
    if options["batch_size"] is None:
        raise ValueError("mc-dropout trains on minibatches: option 'batch_size' must be an integer >= 1, got None")
    rate = options["dropout_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        raise ValueError(f"option 'dropout_rate' must lie strictly between 0 and 1, got {rate!r}")
    check_int(options, "num_samples")
    sites = options["dropout_sites"]
    if sites is not None and (isinstance(sites, str) or not isinstance(sites, (list, tuple)) or not sites
                              or not all(isinstance(name, str) for name in sites)):
        raise ValueError(f"option 'dropout_sites' must be None or a non-empty list of latent site names, got {sites!r}")


def dropout_sites(shapes: dict[str, tuple[int, ...]], supports: dict[str, Any]) -> list[str]:
    """The latent sites dropout applies to: real matrices (fan_in, fan_out), in model order."""
    return [name for name, shape in shapes.items() if is_matrix_site(shape, supports[name])]


def masked_sites(joint: LogJoint, chosen: list[str] | None) -> list[str]:
    """The sites dropout masks: ``chosen`` (checked: latent sites with a first axis) or, for None, every
    real matrix site; ``ValueError`` when there is none."""
    if chosen is not None:
        unknown = sorted(set(chosen) - set(joint.shapes))
        scalar = sorted(name for name in chosen if name in joint.shapes and not joint.shapes[name])
        if unknown or scalar:
            raise ValueError(f"option 'dropout_sites': {unknown or scalar} are not latent sites with a first axis; "
                             f"the model's latent sites and shapes are {joint.shapes}")
        return list(chosen)
    names = dropout_sites(joint.shapes, joint.supports)
    if not names:
        raise ValueError(
            f"mc-dropout needs weight matrices (real latent sites of rank 2, shaped (fan_in, fan_out)); this "
            f"model's latent sites have shapes {joint.shapes}; name the sites to mask with option dropout_sites"
        )
    return names


def apply_masks(sites: dict[str, jax.Array], names: list[str], rate: float, rng_key: jax.Array) -> dict[str, jax.Array]:
    """``sites`` with each named site's rows (entries along its first axis) multiplied by an independent
    Bernoulli(1 - rate) mask divided by (1 - rate); other sites unchanged. Same shapes as ``sites``."""
    keep = 1.0 - rate
    masked = dict(sites)
    for index, name in enumerate(names):
        weight = sites[name]
        mask_shape = (weight.shape[0],) + (1,) * (weight.ndim - 1)
        mask = jax.random.bernoulli(jax.random.fold_in(rng_key, index), keep, mask_shape)
        masked[name] = weight * mask.astype(weight.dtype) / keep
    return masked


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Train with dropout; return ``num_samples`` masked copies of the trained weights, (1, S, ...)."""
    key_fit, key_draw = jax.random.split(rng_key)
    rate = float(options["dropout_rate"])

    def make_perturb(joint: LogJoint) -> Callable[[dict[str, jax.Array], jax.Array], dict[str, jax.Array]]:
        names = masked_sites(joint, options["dropout_sites"])
        return lambda sites, key: apply_masks(sites, names, rate, key)

    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        joint, result = train_point_estimates(model, x, y, rng_key=key_fit, options=options, cost=cost,
                                              make_perturb=make_perturb, say=progress or (lambda message: None))
        names = masked_sites(joint, options["dropout_sites"])
        trained = {name: value[0, 0] for name, value in constrained_draws(joint, result.params).items()}
    info = {**minibatch_info(result, options), "dropout_sites": list(names), "dropout_rate": rate,
            "trained_weights": {name: np.asarray(value) for name, value in trained.items()}}
    cost["grad_evals"] = float(result.num_steps)

    def draws_for(key: jax.Array) -> dict[str, np.ndarray]:
        keys = jax.random.split(key, options["num_samples"])
        draws = jax.jit(jax.vmap(lambda k: apply_masks(trained, names, rate, k)))(keys)
        return {name: np.asarray(value)[None] for name, value in draws.items()}

    def make_posterior(draws: dict[str, np.ndarray], draw_cost: dict[str, float]) -> Posterior:
        return Posterior(method="mc-dropout", kind=KIND, model=model, draws=draws, options=options,
                         loss_trace=result.epoch_loss[0], cost=draw_cost, info=info, observed=(x, y), redraw_fn=redraw)

    def redraw(key: jax.Array) -> Posterior:
        redraw_cost = dict(cost)
        redraw_cost["sample_seconds"] = 0.0
        with stopwatch(redraw_cost, "sample_seconds"):
            draws = draws_for(key)
        return make_posterior(draws, redraw_cost)

    with stopwatch(cost, "sample_seconds"):
        draws = draws_for(key_draw)
    return make_posterior(draws, cost)
