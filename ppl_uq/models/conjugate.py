"""Two conjugate models whose posterior is known in closed form, for validating backends.

Both are regression models (no ``logits`` site); each comes with ``*_exact_posterior`` returning the
posterior mean and covariance as NumPy float64 arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .handles import PPLHandle


def normal_mean(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    prior_loc: float = 0.0,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Any:
    """``mu ~ N(prior_loc, prior_scale^2)``, ``y_n ~ N(mu, noise_scale^2)``; ``x`` (N, ...) only sets N."""
    mu = ppl.sample("mu", ppl.dist.Normal(prior_loc, prior_scale))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(mu, noise_scale), obs=y)
    return mu


def normal_mean_exact_posterior(
    x: Any, y: Any, *, prior_loc: float = 0.0, prior_scale: float = 1.0, noise_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean (1,), covariance (1, 1)) of ``mu`` given ``y``."""
    y = np.asarray(y, dtype=np.float64)
    precision = 1.0 / prior_scale**2 + y.size / noise_scale**2
    mean = (prior_loc / prior_scale**2 + y.sum() / noise_scale**2) / precision
    return np.array([mean]), np.array([[1.0 / precision]])


def linear_regression(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    prior_scale: float = 1.0,
    noise_scale: float = 1.0,
) -> Any:
    """``w ~ N(0, prior_scale^2 I_D)``, ``y_n ~ N(x_n . w, noise_scale^2)``; ``x`` is (N, D)."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, prior_scale).expand([x.shape[-1]]).to_event(1))
    mean = x @ w
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(mean, noise_scale), obs=y)
    return mean


def linear_regression_exact_posterior(
    x: Any, y: Any, *, prior_scale: float = 1.0, noise_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean (D,), covariance (D, D)) of ``w`` given ``(x, y)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    precision = x.T @ x / noise_scale**2 + np.eye(x.shape[1]) / prior_scale**2
    cov = np.linalg.inv(precision)
    mean = cov @ x.T @ y / noise_scale**2
    return mean, cov


def normal_precision(
    ppl: PPLHandle,
    x: Any,
    y: Any = None,
    *,
    prior_shape: float = 2.0,
    prior_rate: float = 1.0,
) -> Any:
    """``tau ~ Gamma(prior_shape, prior_rate)``, ``y_n ~ N(0, 1 / tau)``; ``x`` (N, ...) only sets N. A
    skewed posterior (Gamma) for validating backends that assume a Gaussian one."""
    tau = ppl.sample("tau", ppl.dist.Gamma(prior_shape, prior_rate))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(0.0, 1.0 / tau**0.5), obs=y)
    return tau


def normal_precision_exact_posterior(
    x: Any, y: Any, *, prior_shape: float = 2.0, prior_rate: float = 1.0
) -> tuple[float, float]:
    """Return the posterior Gamma's (shape, rate) of ``tau`` given ``y``: (a + N/2, b + sum y^2 / 2)."""
    y = np.asarray(y, dtype=np.float64)
    return prior_shape + 0.5 * y.size, prior_rate + 0.5 * float(np.sum(y**2))
