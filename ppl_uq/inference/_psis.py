"""Pareto-k-hat of importance weights p/q for approximations with a density (Laplace, SVI guides, the ML
mixture): the shape of a generalised Pareto fit to the weights' upper tail (Vehtari et al., "Pareto smoothed
importance sampling"). Above ``ppl_uq.gates.PARETO_K_GATE`` (0.7) importance-sampling estimates, and the
approximation as a stand-in for the posterior, are unreliable. ArviZ's ``psislw`` does the fit."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: Draws used for k-hat (the first ones of the posterior's draws); k-hat needs a few hundred.
PSIS_DRAWS = 1000


def pareto_k(log_weights: Any) -> float:
    """k-hat of the (S,) log importance weights log p(theta_s, y) - log q(theta_s); NaN when fewer than 20 are
    finite (a weight of -inf is a draw outside the posterior's support; it is kept, as weight 0), and 0 when
    all weights are equal to float precision (q = p: no tail to fit; ArviZ would return inf there)."""
    from ..posterior import import_arviz

    log_weights = np.asarray(log_weights, dtype=np.float64)
    if np.sum(np.isfinite(log_weights)) < 20 or np.any(np.isnan(log_weights)) or np.any(log_weights == np.inf):
        return float("nan")
    finite = log_weights[np.isfinite(log_weights)]
    if finite.size == log_weights.size and np.ptp(finite) <= 1e-9 * max(1.0, float(np.max(np.abs(finite)))):
        return 0.0
    az = import_arviz()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns when k-hat is high: the number says it
        _, k_hat = az.psislw(log_weights)
    return float(k_hat)
