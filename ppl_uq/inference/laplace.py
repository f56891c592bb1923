"""``laplace``: a Gaussian at the MAP in NumPyro's unconstrained space, with covariance the inverse
Hessian of the negative log joint there (``jax.hessian`` of the flat potential).

The Hessian is symmetrised and eigendecomposed, H = V diag(lam) V^T; draws are
``z = z_map + V (eps / sqrt(lam + jitter))`` with eps ~ N(0, I), i.e. N(z_map, (H + jitter I)^-1), mapped
to the constrained space site by site. A Hessian that is not positive definite (a saddle point, a
flat direction) raises ``NotPositiveDefiniteError`` naming its smallest eigenvalue, unless option
``jitter`` > 0 (added to the diagonal, reported in ``info``) makes it positive definite.

Option ``hessian`` picks the curvature (the literal dict ``HESSIANS``):

* ``"full"`` (default): the above, exact. Refused above ``MAX_DENSE_PARAMETERS`` unconstrained
  parameters: a network's P x P Hessian does not fit (P = 89,610 for a 784-100-100-10 MLP: 32 GB).
* ``"diag-ggn"``: N(z_map, diag(1 / (g + h + jitter))), g the exact diagonal of the generalised
  Gauss-Newton (GGN) of the Categorical negative log likelihood (``_curvature.ggn_diagonal``, in data
  batches of ``curvature_batch_size``), h the exact diagonal of the Hessian of the rest of the negative
  log joint (priors and log-Jacobians) clipped at 0. Draws ``z = z_map + eps / sqrt(g + h + jitter)``.
* ``"last-layer"``: the sites ``last_layer_sites`` (default: the model's last two latent sites, a
  network's last weight and bias) get the Gaussian with precision their exact GGN block (the exact
  Hessian of the negative log likelihood where the logits are affine in them) plus the prior's exact
  Hessian block (negative eigenvalues clipped at 0) plus ``jitter``; every other coordinate stays at
  the MAP.

The two GGN curvatures need a classifier (``_curvature.likelihood_sites``). ``info`` reports the curvature
(``hessian``), the extreme precisions (``precision_min`` / ``precision_max``: eigenvalues of the precision
before jitter; for ``full`` also under their old names ``hessian_min_eigenvalue`` /
``hessian_max_eigenvalue``), the prior curvature clipped (``prior_clipped``: coordinates or eigenvalues)
and the MAP's convergence. The MAP is one call, ``_find_map``: L-BFGS on the full-data potential.

``redraw`` gives fresh draws from the same Gaussian with a new key (an independent posterior made by
the same method: the MAP and its Hessian are deterministic).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..posterior import Posterior
from ._common import FlatPotential, constrain_batch, flat_potential, latent_site_names, stopwatch
from ._curvature import (
    flat_coordinates,
    ggn_block,
    ggn_diagonal,
    hessian_diagonal,
    likelihood_sites,
    logits_function,
    prior_potential,
    psd_block,
    psd_diagonal,
)
from ._minibatch import (
    ADAM_DEFAULTS,
    MINIBATCH_DEFAULTS,
    batch_objective,
    check_adam_options,
    minibatch_info,
    train_point_estimates,
)
from ._optim import (
    OPTIMISER_DEFAULTS,
    OptimResult,
    check_optimiser_options,
    convergence_info,
    find_map,
    trimmed_trace,
)
from ._options import check_choice, check_int
from ._psis import PSIS_DRAWS, pareto_k

#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted approximating distribution q (the Gaussian at the MAP).
KIND = "variational"

DEFAULTS: dict[str, Any] = {
    **OPTIMISER_DEFAULTS,
    "num_samples": 1000,
    "jitter": 0.0,
    "hessian": "full",
    "curvature_batch_size": 1000,
    "last_layer_sites": None,
    **MINIBATCH_DEFAULTS,
    **ADAM_DEFAULTS,
    "predictive": "sample",
}

#: Option ``predictive``: ``sample`` pushes each weight draw through the network; ``linearized`` through the
#: network linearised at the MAP, f(x; theta*) + J(x)(theta - theta*) (the GLM predictive of Immer et al. 2021;
#: ``Posterior.info["linearize_at"]`` holds theta*, constrained). On a ReLU network with a diagonal curvature the
#: sampled predictive can collapse (Fashion-MNIST, diag-GGN: accuracy 0.33 against the MAP's 0.89) where the
#: linearised one keeps the MAP's predictions on average.
PREDICTIVES: tuple[str, ...] = ("sample", "linearized")

#: The most coordinates a dense precision matrix (``hessian="full"``, a ``last-layer`` block) may have:
#: it takes 4 K^2 bytes (100 MB at 5,000, 32 GB at 90,000) and its eigendecomposition O(K^3) time.
MAX_DENSE_PARAMETERS = 5000


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

    def info(self) -> dict[str, Any]:
        """``jitter`` and the extreme eigenvalues of H (``hessian_min_eigenvalue`` = ``precision_min``, max)."""
        smallest, largest = float(self.eigvals[0]), float(self.eigvals[-1])
        return {"jitter": self.jitter, "hessian_min_eigenvalue": smallest, "hessian_max_eigenvalue": largest,
                "precision_min": smallest, "precision_max": largest}


class DiagonalGaussian(NamedTuple):
    """N(mean, diag(1 / (precision + jitter))) in the flat unconstrained space: ``mean`` (P,),
    ``precision`` (P,) (GGN diagonal plus the prior's, clipped), ``jitter`` (), ``prior_clipped`` the
    number of coordinates whose prior curvature was negative and clipped to 0."""

    mean: jax.Array
    precision: jax.Array
    jitter: float
    prior_clipped: int

    def variance(self) -> jax.Array:
        """The variances (P,)."""
        return 1.0 / (self.precision + self.jitter)

    def sample(self, rng_key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` draws, shape (num_samples, P)."""
        eps = jax.random.normal(rng_key, (num_samples, self.mean.shape[0]), dtype=self.mean.dtype)
        return self.mean + eps / jnp.sqrt(self.precision + self.jitter)

    def info(self) -> dict[str, Any]:
        """``jitter``, ``precision_min`` / ``precision_max`` (before jitter), ``prior_clipped`` and P
        (``curvature_parameters``)."""
        return {"jitter": self.jitter, "precision_min": float(jnp.min(self.precision)),
                "precision_max": float(jnp.max(self.precision)), "prior_clipped": self.prior_clipped,
                "curvature_parameters": int(self.precision.shape[0])}


class BlockGaussian(NamedTuple):
    """The point ``mean`` (P,) with its coordinates ``index`` (K,) (those of ``sites``) drawn from the
    Gaussian ``block`` (on K coordinates, mean ``mean[index]``); ``prior_clipped`` the number of
    negative eigenvalues of the prior's Hessian block clipped to 0."""

    mean: jax.Array
    index: np.ndarray
    block: LaplaceGaussian
    sites: tuple[str, ...]
    prior_clipped: int

    def sample(self, rng_key: jax.Array, num_samples: int) -> jax.Array:
        """``num_samples`` draws, shape (num_samples, P); coordinates outside ``index`` equal ``mean``."""
        base = jnp.broadcast_to(self.mean, (num_samples, self.mean.shape[0]))
        return base.at[:, self.index].set(self.block.sample(rng_key, num_samples))

    def info(self) -> dict[str, Any]:
        """``jitter``, the block's extreme eigenvalues (``precision_min`` / ``precision_max``), the sites
        (``last_layer_sites``), their size and ``prior_clipped``."""
        return {"jitter": self.block.jitter, "precision_min": float(self.block.eigvals[0]),
                "precision_max": float(self.block.eigvals[-1]), "prior_clipped": self.prior_clipped,
                "last_layer_sites": list(self.sites), "curvature_parameters": int(self.index.shape[0])}


Gaussian = LaplaceGaussian | DiagonalGaussian | BlockGaussian


def check_options(options: dict[str, Any]) -> None:
    """Validate the optimiser options, ``num_samples`` (int >= 1), ``jitter`` (finite, >= 0), ``hessian``
    (a key of ``HESSIANS``), ``curvature_batch_size`` (int >= 1) and ``last_layer_sites`` (None or a
    non-empty list of distinct site names)."""
    check_optimiser_options(options)
    check_adam_options(options)
    check_int(options, "num_samples", "curvature_batch_size")
    jitter = options["jitter"]
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (0 <= jitter < math.inf):
        raise ValueError(f"option 'jitter' must be a finite number >= 0, got {jitter!r}")
    check_choice(options, "hessian", HESSIANS)
    check_choice(options, "predictive", PREDICTIVES)
    sites = options["last_layer_sites"]
    if sites is not None and (
        not isinstance(sites, (list, tuple)) or not sites or not all(isinstance(name, str) for name in sites)
        or len(set(sites)) != len(sites)
    ):
        raise ValueError(
            "option 'last_layer_sites' must be None (the model's last two latent sites) or a non-empty list "
            f"of distinct latent site names, got {sites!r}"
        )


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


def diagonal_gaussian(precision: Any, mean: Any, jitter: float = 0.0, prior_clipped: int = 0) -> DiagonalGaussian:
    """The Gaussian N(mean, diag(1 / (precision + jitter))); raise ``NotPositiveDefiniteError`` (with the
    number of coordinates at fault) unless every ``precision + jitter`` is finite and > 0. ``precision`` (P,)."""
    precision = jnp.asarray(precision)
    if not bool(jnp.all(jnp.isfinite(precision))):
        raise NotPositiveDefiniteError("laplace: the diagonal precision at the MAP contains NaN or inf")
    flat = int(jnp.sum(precision + jitter <= 0.0))
    if flat:
        advice = "pass option jitter > 0 (added to the precision)" if jitter == 0.0 else f"jitter={jitter:g} is not enough"
        raise NotPositiveDefiniteError(
            f"laplace: the diagonal precision (GGN plus prior curvature) at the MAP is {float(jnp.min(precision)):.6g} "
            f"at {flat} of {precision.shape[0]} coordinates: neither the data nor the prior constrain them; {advice}."
        )
    return DiagonalGaussian(jnp.asarray(mean), precision, float(jitter), int(prior_clipped))


def _check_dense_size(size: int, what: str) -> None:
    """Raise ``ValueError`` when a dense ``size`` x ``size`` precision is beyond ``MAX_DENSE_PARAMETERS``."""
    if size > MAX_DENSE_PARAMETERS:
        raise ValueError(
            f"laplace: {what} needs a dense {size} x {size} precision matrix ({4 * size * size / 1e9:.2g} GB in "
            f"float32 and an O(K^3) eigendecomposition); the limit is {MAX_DENSE_PARAMETERS} coordinates. Use "
            "hessian='diag-ggn' (the diagonal of the generalised Gauss-Newton) or hessian='last-layer' (a dense "
            "block on the last layer's weight and bias, every other coordinate at the MAP)."
        )


def _full_hessian(model: Callable[..., Any], x: Any, y: Any, flat: FlatPotential,
                  options: dict[str, Any]) -> Callable[[jax.Array], Gaussian]:
    """Check the size, then return ``at_map(z_map) -> LaplaceGaussian``: the exact Hessian by ``jax.hessian``,
    computed and eigendecomposed in float64 (the data stay float32; the Gaussian is stored in float32). In
    float32 the second derivatives of a potential with badly scaled inputs lose most of their digits to
    cancellation, and a dense Hessian of at most ``MAX_DENSE_PARAMETERS`` coordinates is cheap in either."""
    _check_dense_size(int(flat.init.shape[0]), f"hessian='full' on a model with {flat.init.shape[0]} parameters")

    def at_map(mean: jax.Array) -> LaplaceGaussian:
        with jax.enable_x64(True):
            hessian = jax.jit(jax.hessian(flat.potential))(jnp.asarray(mean, jnp.float64))
            wide = laplace_gaussian(hessian, jnp.asarray(mean, jnp.float64), options["jitter"])
            eigvals, eigvecs = np.asarray(wide.eigvals), np.asarray(wide.eigvecs)
        dtype = jnp.asarray(mean).dtype
        return LaplaceGaussian(jnp.asarray(mean), jnp.asarray(eigvals, dtype), jnp.asarray(eigvecs, dtype), wide.jitter)

    return at_map


def _diagonal_ggn(model: Callable[..., Any], x: Any, y: Any, flat: FlatPotential,
                  options: dict[str, Any]) -> Callable[[jax.Array], Gaussian]:
    """Check the model is a classifier, then return ``at_map(z_map) -> DiagonalGaussian``."""
    observed = likelihood_sites(model, x, y)

    def at_map(mean: jax.Array) -> DiagonalGaussian:
        params = flat.unravel(mean)
        ggn = ggn_diagonal(logits_function(model), params, x, batch_size=options["curvature_batch_size"])
        prior = hessian_diagonal(prior_potential(model, x, y, observed), params)
        prior, clipped = psd_diagonal(ravel_pytree(prior)[0])
        return diagonal_gaussian(ravel_pytree(ggn)[0] + prior, mean, options["jitter"], clipped)

    return at_map


def _last_layer(model: Callable[..., Any], x: Any, y: Any, flat: FlatPotential,
                options: dict[str, Any]) -> Callable[[jax.Array], Gaussian]:
    """Check the model and the sites, then return ``at_map(z_map) -> BlockGaussian``."""
    observed = likelihood_sites(model, x, y)
    sites = _last_layer_sites(model, x, y, options["last_layer_sites"])
    index = flat_coordinates(flat.unravel(flat.init), sites)
    _check_dense_size(int(index.shape[0]), f"hessian='last-layer' on sites {list(sites)}")

    def at_map(mean: jax.Array) -> BlockGaussian:
        params = flat.unravel(mean)
        ggn = ggn_block(logits_function(model), params, x, sites, batch_size=options["curvature_batch_size"])
        block, unravel_block = ravel_pytree({name: params[name] for name in sites})
        prior = prior_potential(model, x, y, observed)
        prior_hessian = jax.jit(jax.hessian(lambda u: prior({**params, **unravel_block(u)})))(block)
        prior_hessian, clipped = psd_block(prior_hessian)
        return BlockGaussian(mean, index, laplace_gaussian(ggn + prior_hessian, block, options["jitter"]), sites, clipped)

    return at_map


def _last_layer_sites(model: Callable[..., Any], x: Any, y: Any, given: Any) -> tuple[str, ...]:
    """``given`` checked against the model's latent sites, or by default the last two in model order."""
    latent = latent_site_names(model, x, y)
    if given is None:
        if len(latent) < 2:
            raise ValueError(
                f"hessian='last-layer' takes the model's last two latent sites (its last weight and bias) by "
                f"default, but the model has {latent}; pass option last_layer_sites"
            )
        return tuple(latent[-2:])
    unknown = [name for name in given if name not in latent]
    if unknown:
        raise ValueError(f"option 'last_layer_sites' names {unknown}, not latent sites of the model; they are {latent}")
    return tuple(given)


#: Option ``hessian``: name -> ``prepare(model, x, y, flat, options)``, which checks the model (before the
#: MAP is fitted) and returns ``at_map(z_map) -> Gaussian``.
HESSIANS: dict[str, Callable[..., Callable[[jax.Array], Gaussian]]] = {
    "full": _full_hessian,
    "diag-ggn": _diagonal_ggn,
    "last-layer": _last_layer,
}


def _find_map(flat: FlatPotential, model: Callable[..., Any], x: Any, y: Any, *, rng_key: jax.Array,
              options: dict[str, Any], cost: dict[str, float]) -> OptimResult:
    """The MAP: today one L-BFGS fit of the full-data potential from ``flat.init`` (``find_map``; it uses
    only ``flat`` and ``options``; a minibatch trainer would use ``model``, ``x``, ``y`` and ``rng_key``).
    Returns the ``OptimResult`` (``params`` (P,)); compile and run times go into ``cost``."""
    return find_map(cost, flat.potential, flat.init, options)


def fit_gaussian(
    model: Callable[..., Any], x: Any, y: Any, *, rng_key: jax.Array, options: dict[str, Any],
    cost: dict[str, float] | None = None,
) -> tuple[FlatPotential, OptimResult, Gaussian]:
    """Find the MAP from ``init_to_median`` and build the Laplace Gaussian there with the curvature
    ``options["hessian"]``.

    Returns ``(flat, map_result, gaussian)``: the flat potential, the L-BFGS result and the
    Gaussian in the flat unconstrained space (a ``LaplaceGaussian``, ``DiagonalGaussian`` or
    ``BlockGaussian``, each with ``sample(key, S) -> (S, P)``); timings are added to ``cost`` when given.
    """
    cost = {} if cost is None else cost
    flat = flat_potential(model, x, y, rng_key)
    at_map = HESSIANS[options["hessian"]](model, x, y, flat, options)
    result = _find_map(flat, model, x, y, rng_key=rng_key, options=options, cost=cost)
    with stopwatch(cost, "hessian_seconds"):
        gaussian = at_map(result.params)
    return flat, result, gaussian


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Fit the MAP, build the Laplace Gaussian, return ``num_samples`` draws shaped (1, S, ...)."""
    if options["batch_size"] is not None:
        return _fit_minibatch(model, x, y, rng_key=rng_key, options=options, say=progress or (lambda message: None))
    key_init, key_draws = jax.random.split(rng_key)
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        flat, result, gaussian = fit_gaussian(model, x, y, rng_key=key_init, options=options, cost=cost)
    info = convergence_info(result, "laplace (its MAP)")
    cost["grad_evals"] = float(info["grad_evals"])
    deferred = ({"pareto_k": functools.cache(lambda: _pareto_k(flat, gaussian, key_draws))}
                if isinstance(gaussian, (LaplaceGaussian, DiagonalGaussian)) else {})
    info = {
        "hessian": options["hessian"],
        "converged": info["all_converged"],
        "map_converged": info["all_converged"],
        "map_iterations": info["iterations_max"],
        "map_grad_norm": info["grad_norm_max"],
        "grad_norm": info["grad_norm_max"],
        "map_loss": float(result.loss_trace[-1]),
        **gaussian.info(),
    }
    base = dict(model=model, options=options, loss_trace=trimmed_trace(result), info=info, observed=(x, y),
                deferred_info=deferred)
    return _draw(flat, gaussian, key_draws, options["num_samples"], cost, base)


def _pareto_k(flat: FlatPotential, gaussian: LaplaceGaussian | DiagonalGaussian, rng_key: jax.Array) -> float:
    """k-hat of p/q over ``PSIS_DRAWS`` draws z of the Gaussian q (the full-data fit): log w = -potential(z)
    - log q(z), both in the flat unconstrained space (the potential holds the log-Jacobian)."""
    z = gaussian.sample(jax.random.fold_in(rng_key, 1), PSIS_DRAWS)
    if isinstance(gaussian, LaplaceGaussian):
        precision = gaussian.eigvals + gaussian.jitter
        white = ((z - gaussian.mean) @ gaussian.eigvecs) * jnp.sqrt(precision)
        log_det = jnp.sum(jnp.log(precision))
    else:
        precision = gaussian.precision + gaussian.jitter
        white = (z - gaussian.mean) * jnp.sqrt(precision)
        log_det = jnp.sum(jnp.log(precision))
    log_q = -0.5 * jnp.sum(white**2, axis=1) + 0.5 * log_det - 0.5 * z.shape[1] * jnp.log(2 * jnp.pi)
    log_p = -jax.lax.map(flat.potential, z, batch_size=100)
    return pareto_k(np.asarray(log_p) - np.asarray(log_q))


def _draw(flat: FlatPotential, gaussian: Gaussian, rng_key: jax.Array, num_samples: int,
          cost: dict[str, float], base: dict[str, Any]) -> Posterior:
    """The Posterior of ``num_samples`` fresh draws from ``gaussian``; its ``redraw`` draws again. With option
    ``predictive="linearized"`` its info holds the MAP (constrained) as ``linearize_at``."""
    if base["options"]["predictive"] == "linearized" and "linearize_at" not in base["info"]:
        center = flat.constrain(gaussian.mean)
        base = {**base, "info": {**base["info"], "linearize_at": {k: np.asarray(v) for k, v in center.items()}}}
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


def _fit_minibatch(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
                   say: Callable[[str], None]) -> Posterior:
    """The MAP by minibatch Adam (``_minibatch``, option ``batch_size``), then the curvature ``hessian`` over all
    N points at it. The loss trace is per epoch; ``info`` has the training summary under ``map_*`` names."""
    key_init, key_draws = jax.random.split(rng_key)
    cost: dict[str, float] = {}
    with stopwatch(cost, "fit_seconds"):
        joint, result = train_point_estimates(model, x, y, rng_key=key_init, options=options, cost=cost, say=say)
        full_data = batch_objective(joint, 1.0)
        ones = jnp.ones(x.shape[0], jnp.float32)
        flat = FlatPotential(
            init=joint.init,
            potential=lambda z: full_data(z, x, y, ones, key_init),
            unravel=joint.unravel,
            constrain=lambda z: joint.constrain(z)[0],
        )
        at_map = HESSIANS[options["hessian"]](model, x, y, flat, options)
        with stopwatch(cost, "hessian_seconds"):
            gaussian = at_map(jnp.asarray(result.params[0]))
    training = minibatch_info(result, options)
    cost["grad_evals"] = float(result.num_steps)
    info = {
        "hessian": options["hessian"],
        "converged": training.get("converged", False),
        "map_converged": training.get("converged", False),
        "map_training": training,
        "map_loss": training["final_loss"],
        **gaussian.info(),
    }
    base = dict(model=model, options=options, loss_trace=result.epoch_loss[0], info=info, observed=(x, y))
    return _draw(flat, gaussian, key_draws, options["num_samples"], cost, base)
