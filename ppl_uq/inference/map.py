"""``map``: the maximum a posteriori point, by L-BFGS on the negative log joint in NumPyro's
unconstrained space. The Posterior is a point mass: every site has draws shaped (1, 1, ...).

The loss trace (steps,) starts at the initial point (``init_to_median``); ``info`` says whether the
gradient test passed, and a ``ConvergenceWarning`` is issued when it did not.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ..posterior import Posterior
from ._common import constrain_batch, flat_potential, stopwatch
from ._optim import (
    OPTIMISER_DEFAULTS,
    check_optimiser_options,
    convergence_info,
    find_map,
    trimmed_trace,
)

#: The kind of this backend (``ppl_uq.posterior.KINDS``): a point estimate.
KIND = "optimisation"

DEFAULTS: dict[str, Any] = dict(OPTIMISER_DEFAULTS)


def check_options(options: dict[str, Any]) -> None:
    """Validate ``max_iter`` (int >= 1), ``tol`` (> 0, on the gradient's 2-norm), ``memory_size``."""
    check_optimiser_options(options)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any]) -> Posterior:
    """Find the MAP; return a point-mass Posterior (draws (1, 1, ...), loss trace (steps,))."""
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
              "loss": float(result.loss_trace[-1])},
        observed=(x, y),
    )
