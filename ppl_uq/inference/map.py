"""``map``: the maximum a posteriori point, by L-BFGS on the negative log joint in NumPyro's
unconstrained space. The Posterior is a point mass: every site has draws shaped (1, 1, ...).

The loss trace (steps,) starts at the initial point (``init_to_median``); ``info`` says whether the
gradient test passed, and a ``ConvergenceWarning`` is issued when it did not.

With option ``batch_size`` set, the MAP is found by Adam on minibatches instead (``_minibatch``: the
likelihood scaled by N/B, reshuffled per epoch, optional early stopping on a held-out split); the loss
trace is then per epoch and ``info["training"]`` is ``"minibatch-adam"``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ..posterior import Posterior
from ._common import constrain_batch, flat_potential, stopwatch
from ._degenerate import flag_degenerate
from ._minibatch import (
    ADAM_DEFAULTS,
    MINIBATCH_DEFAULTS,
    check_adam_options,
    constrained_draws,
    minibatch_info,
    train_point_estimates,
)
from ._optim import (
    OPTIMISER_DEFAULTS,
    check_optimiser_options,
    convergence_info,
    find_map,
    trimmed_trace,
)

#: The kind of this backend (``ppl_uq.posterior.KINDS``): a point estimate.
KIND = "optimisation"

DEFAULTS: dict[str, Any] = {**OPTIMISER_DEFAULTS, **MINIBATCH_DEFAULTS, **ADAM_DEFAULTS}


def check_options(options: dict[str, Any]) -> None:
    """Validate ``max_iter`` (int >= 1), ``tol`` (> 0, on the gradient's 2-norm), ``memory_size``, and
    the minibatch options (``batch_size``, ``num_epochs``, ``validation_fraction``, ``patience``,
    ``learning_rate``, ``init_loc``)."""
    check_optimiser_options(options)
    check_adam_options(options)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Find the MAP; return a point-mass Posterior (draws (1, 1, ...), loss trace (steps,), or per
    epoch when minibatch)."""
    if options["batch_size"] is not None:
        return _fit_minibatch(model, x, y, rng_key=rng_key, options=options, say=progress or (lambda message: None))
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        flat = flat_potential(model, x, y, rng_key)
        result = find_map(cost, flat.potential, flat.init, options)
        draws = constrain_batch(flat, result.params[None])
    info = convergence_info(result, "map")
    cost["grad_evals"] = float(info["grad_evals"])
    return Posterior(
        method="map",
        kind=KIND,
        model=model,
        draws=draws,
        options=options,
        loss_trace=trimmed_trace(result),
        cost=cost,
        info={**info, "converged": info["all_converged"], "grad_norm": info["grad_norm_max"],
              "loss": float(result.loss_trace[-1]), **flag_degenerate("map", model, x, y, draws)},
        observed=(x, y),
    )


def _fit_minibatch(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
                   say: Callable[[str], None]) -> Posterior:
    """The MAP by minibatch Adam (module docstring); loss trace per epoch (E,)."""
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        joint, result = train_point_estimates(model, x, y, rng_key=rng_key, options=options, cost=cost, say=say)
        draws = constrained_draws(joint, result.params)
    info = minibatch_info(result, options)
    cost["grad_evals"] = float(result.num_steps)
    return Posterior(
        method="map", kind=KIND, model=model, draws=draws, options=options, loss_trace=result.epoch_loss[0],
        cost=cost, info={**info, "loss": info["final_loss"], **flag_degenerate("map", model, x, y, draws)}, observed=(x, y),
    )
