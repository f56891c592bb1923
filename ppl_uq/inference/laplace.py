"""``laplace``: a Gaussian at the MAP in NumPyro's unconstrained space, with covariance the inverse
Hessian of the negative log joint there (``jax.hessian`` of the flat potential).

The Hessian is symmetrised and eigendecomposed, H = V diag(lam) V^T; draws are
``z = z_map + V (eps / sqrt(lam + jitter))`` with eps ~ N(0, I), i.e. N(z_map, (H + jitter I)^-1), mapped
to the constrained space site by site. A Hessian that is not positive definite (a saddle point, a
flat direction) raises ``NotPositiveDefiniteError`` naming its smallest eigenvalue, unless option
``jitter`` > 0 (added to the diagonal, reported in ``info``) makes it positive definite.

``redraw`` gives fresh draws from the same Gaussian with a new key (an independent posterior made by
the same method: the MAP and its Hessian are deterministic).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..posterior import Posterior
from ._common import FlatPotential, constrain_batch, flat_potential, stopwatch
from ._optim import (
    OPTIMISER_DEFAULTS,
    OptimResult,
    check_optimiser_options,
    convergence_info,
    find_map,
    trimmed_trace,
)
from ._options import check_int

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted approximating distribution q (the Gaussian at the MAP).
KIND = "variational"

DEFAULTS: dict[str, Any] = {**OPTIMISER_DEFAULTS, "num_samples": 1000, "jitter": 0.0}


class NotPositiveDefiniteError(ValueError):
    """The Hessian at the MAP (plus any jitter) is not positive definite."""


class LaplaceGaussian(NamedTuple):
    """N(mean, (H + jitter I)^-1) in the flat unconstrained space, stored by the eigendecomposition
    of the symmetrised Hessian H = eigvecs diag(eigvals) eigvecs^T: ``mean`` (P,), ``eigvals`` (P,)
    ascending, ``eigvecs`` (P, P) (columns), ``jitter`` ()."""

    mean: jax.Array
    eigvals: jax.Array
    eigvecs: jax.Array
    jitter: float

    def covariance(self) -> jax.Array:
        """The covariance matrix (P, P)."""
        return (self.eigvecs / (self.eigvals + self.jitter)) @ self.eigvecs.T

    def sample(self, rng_key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` draws, shape (num_samples, P)."""
        eps = jax.random.normal(rng_key, (num_samples, self.mean.shape[0]), dtype=self.mean.dtype)
        return self.mean + (eps / jnp.sqrt(self.eigvals + self.jitter)) @ self.eigvecs.T


def check_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options, ``num_samples`` (int >= 1) and ``jitter`` (finite, >= 0)."""
    check_optimiser_options(options)
    check_int(options, "num_samples")
    jitter = options["jitter"]
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (0 <= jitter < math.inf):
        raise ValueError(f"option 'jitter' must be a finite number >= 0, got {jitter!r}")


def laplace_gaussian(hessian: Any, mean: Any, jitter: float = 0.0) -> LaplaceGaussian:
    """The Gaussian N(mean, (hessian + jitter I)^-1); raise ``NotPositiveDefiniteError`` (with the
    smallest eigenvalue) unless ``hessian + jitter I`` is positive definite. ``hessian`` (P, P)."""
    hessian = jnp.asarray(hessian)
    if not bool(jnp.all(jnp.isfinite(hessian))):
        raise NotPositiveDefiniteError("laplace: the Hessian at the MAP contains NaN or inf")
    eigvals, eigvecs = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    smallest, largest = float(eigvals[0]), float(eigvals[-1])
    if not smallest + jitter > 0.0:
        advice = "pass option jitter > 0 (added to the diagonal)" if jitter == 0.0 else f"jitter={jitter:g} is not enough"
        raise NotPositiveDefiniteError(
            "laplace: the Hessian of the negative log joint at the MAP is not positive definite "
            f"(smallest eigenvalue {smallest:.6g}, largest {largest:.6g}): the optimum is a saddle "
            f"point or the posterior is flat in some direction; {advice}: it must exceed {max(-smallest, 0.0):.6g}."
        )
    return LaplaceGaussian(jnp.asarray(mean), eigvals, eigvecs, float(jitter))


def fit_gaussian(
    model: Callable[..., Any], x: Any, y: Any, *, rng_key: jax.Array, options: dict[str, Any],
    cost: dict[str, float] | None = None,
) -> tuple[FlatPotential, OptimResult, LaplaceGaussian]:
    """Find the MAP from ``init_to_median`` and build the Laplace Gaussian there.

    Returns ``(flat, map_result, gaussian)``: the flat potential, the L-BFGS result and the
    Gaussian in the flat unconstrained space; timings are added to ``cost`` when given.
    """
    cost = {} if cost is None else cost
    flat = flat_potential(model, x, y, rng_key)
    result = find_map(cost, flat.potential, flat.init, options)
    with stopwatch(cost, "hessian_seconds"):
        hessian = jax.jit(jax.hessian(flat.potential))(result.params)
        gaussian = laplace_gaussian(hessian, result.params, options["jitter"])
    return flat, result, gaussian


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any]) -> Posterior:
    """Fit the MAP, build the Laplace Gaussian, return ``num_samples`` draws shaped (1, S, ...)."""
    key_init, key_draws = jax.random.split(rng_key)
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        flat, result, gaussian = fit_gaussian(model, x, y, rng_key=key_init, options=options, cost=cost)
    info = convergence_info(result, "laplace (its MAP)")
    cost["grad_evals"] = float(info["grad_evals"])
    info = {
        "map_converged": info["all_converged"],
        "map_iterations": info["iterations_max"],
        "map_grad_norm": info["grad_norm_max"],
        "map_loss": float(result.loss_trace[-1]),
        "jitter": gaussian.jitter,
        "hessian_min_eigenvalue": float(gaussian.eigvals[0]),
        "hessian_max_eigenvalue": float(gaussian.eigvals[-1]),
    }
    base = dict(model=model, options=options, loss_trace=trimmed_trace(result), info=info, observed=(x, y))
    return _draw(flat, gaussian, key_draws, options["num_samples"], cost, base)


def _draw(flat: FlatPotential, gaussian: LaplaceGaussian, rng_key: jax.Array, num_samples: int,
          cost: dict[str, float], base: dict[str, Any]) -> Posterior:
    """The Posterior of ``num_samples`` fresh draws from ``gaussian``; its ``redraw`` draws again."""
    cost = dict(cost)
    with stopwatch(cost, "sample_seconds"):
        draws = constrain_batch(flat, gaussian.sample(rng_key, num_samples))
    return Posterior(
        method="laplace",
        kind=KIND,
        draws=draws,
        cost=cost,
        redraw_fn=lambda key: _draw(flat, gaussian, key, num_samples, {}, base),
        **base,
    )
