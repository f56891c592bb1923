"""``ml-mixture``: the maximum-likelihood mixture objective of Däubener & Fischer, on the same guide
families as ``svi`` and the same optimiser loop.

With K reparameterised draws theta_k ~ q (``num_particles``) and KL weight beta (``beta``) it maximises

    L_ML = sum_n log (1/K) sum_k p(y_n | x_n, theta_k) - beta * KL(q || p),

the log-likelihood of the data under the K-component mixture (``logsumexp_k - log K``), where the VI
(beta-ELBO) form of the same objective is

    L_VI = sum_n (1/K) sum_k log p(y_n | x_n, theta_k) - beta * KL(q || p).

The two coincide at K = 1, and L_ML >= L_VI for the same draws (Jensen).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from numpyro.handlers import replay, seed
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import compute_log_probs
from numpyro.util import check_model_guide_match

from ..posterior import Posterior
from ._variational import COMMON_DEFAULTS, check_common_options, fit_variational

#: K = 10 draws per step cost about 2-3x a single-draw step at D = 500, so fewer steps than ``svi``.
#: The kind of this backend (``ppl_uq.posterior.KINDS``): draws from a fitted approximating distribution q.
KIND = "variational"

DEFAULTS: dict[str, Any] = {**COMMON_DEFAULTS, "num_particles": 10, "num_steps": 20_000}


class MixtureELBO(ELBO):
    """The ML-mixture objective (``mixture=True``) or the beta-ELBO (``mixture=False``), as a NumPyro
    ELBO, so ``numpyro.infer.SVI`` optimises it.

    Per draw k (keys split as ``Trace_ELBO`` splits them, so K = 1, beta = 1 reproduces its loss):
    ``ll[k, n]`` is the log-likelihood of datum n, read from the observed sites' ``log_prob`` (each
    must be shaped (N, ...) with the data along the first axis; extra axes are summed, several
    observed sites are added); ``log p(theta_k)`` sums the model's latent sites, ``log q(theta_k)`` the
    guide's sites. KL(q || p) is the Monte Carlo estimate from the same K draws,
    ``(1/K) sum_k [log q(theta_k) - log p(theta_k)]`` (autoguides have no closed form in general).

    ``loss`` returns minus the objective (a scalar to minimise).
    """

    def __init__(self, num_particles: int = 10, beta: float = 1.0, mixture: bool = True) -> None:
        if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
        if not (isinstance(beta, (int, float)) and 0 < beta < float("inf")):
            raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
        super().__init__(num_particles=num_particles)
        self.beta = float(beta)
        self.mixture = bool(mixture)

    def _particle(
        self, rng_key: jax.Array, param_map: dict[str, Any], model: Callable[..., Any], guide: Callable[..., Any],
        args: tuple, kwargs: dict,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """For one draw theta ~ q: per-datum log-likelihoods (N,) (unscaled), per-datum weights (N,) (the
        observed site's scale, e.g. N/B for a minibatch; 1 otherwise) and log q(theta) - log p(theta)."""
        model_seed, guide_seed = jax.random.split(rng_key)
        guide_log_probs, guide_trace = compute_log_probs(seed(guide, guide_seed), args, kwargs, param_map)
        model_log_probs, model_trace = compute_log_probs(
            replay(seed(model, model_seed), guide_trace), args, kwargs, param_map, sum_log_prob=False
        )
        check_model_guide_match(model_trace, guide_trace)
        log_lik = None
        weight = None
        log_prior = jnp.array(0.0)
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            if not site["is_observed"]:
                log_prior = log_prior + jnp.sum(model_log_probs[name])
                continue
            per_datum = site["fn"].log_prob(site["value"])  # unscaled: a minibatch scale is a weight outside the mixture
            if jnp.ndim(per_datum) == 0:
                raise ValueError(
                    f"ml-mixture needs a log-likelihood per datum, but observed site {name!r} gives a "
                    "scalar: observe the data inside a plate"
                )
            per_datum = jnp.sum(jnp.reshape(per_datum, (per_datum.shape[0], -1)), axis=1)
            if log_lik is not None and log_lik.shape != per_datum.shape:
                raise ValueError(f"observed sites disagree on the number of data points: {log_lik.shape} vs {per_datum.shape}")
            log_lik = per_datum if log_lik is None else log_lik + per_datum
            site_weight = jnp.ones_like(per_datum) if site["scale"] is None else jnp.broadcast_to(site["scale"], per_datum.shape)
            weight = site_weight if weight is None else weight
        if log_lik is None:
            raise ValueError("ml-mixture needs observed data: the model has no observed sample site")
        log_q = sum(guide_log_probs.values(), start=jnp.array(0.0))
        return log_lik, weight, log_q - log_prior

    def loss_with_mutable_state(
        self, rng_key: jax.Array, param_map: dict[str, Any], model: Callable[..., Any], guide: Callable[..., Any],
        *args: Any, **kwargs: Any,
    ) -> dict[str, Any]:
        """``{"loss": -objective, "mutable_state": None}``; the objective is described in the class."""

        def particle(key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            return self._particle(key, param_map, model, guide, args, kwargs)

        if self.num_particles == 1:
            log_lik, weight, log_ratio = jax.tree.map(lambda a: a[None], particle(rng_key))
        else:
            log_lik, weight, log_ratio = self.vectorize_particles_fn(particle, jax.random.split(rng_key, self.num_particles))
        weight = weight[0]
        if self.mixture:
            data_term = jnp.sum(weight * (logsumexp(log_lik, axis=0) - jnp.log(self.num_particles)))
        else:
            data_term = jnp.sum(weight * jnp.mean(log_lik, axis=0))
        kl = jnp.mean(log_ratio)
        return {"loss": -(data_term - self.beta * kl), "mutable_state": None}


def check_options(options: dict[str, Any]) -> None:
    """Validate the ML-mixture options (the ``svi`` options; ``num_particles`` is K)."""
    check_common_options(options)


def fit(model: Callable[..., Any], x: np.ndarray, y: np.ndarray, *, rng_key: jax.Array, options: dict[str, Any],
        progress: Callable[[str], None] | None = None) -> Posterior:
    """Maximise L_ML over the guide family ``options["guide"]``; return draws from q (1, S, ...).
    Option ``elbo`` does not apply (the KL is always the Monte Carlo estimate from the K draws)."""
    loss = MixtureELBO(num_particles=options["num_particles"], beta=float(options["beta"]), mixture=True)
    return fit_variational("ml-mixture", model, x, y, rng_key=rng_key, options=options, loss=loss, kind=KIND,
                           say=progress or (lambda message: None))
