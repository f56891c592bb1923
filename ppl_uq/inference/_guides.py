"""Guide families for the variational backends (``svi``, ``ml-mixture``), all NumPyro autoguides.

- ``meanfield``: ``AutoNormal``, an independent Gaussian per latent coordinate (unconstrained space).
- ``fullrank``: ``AutoMultivariateNormal``, one Gaussian with a dense Cholesky factor over all latents
  (log q computed from the noise rather than by a triangular solve; see ``AutoMultivariateNormalNoSolve``).
- ``hierarchical``: the direction x distance guide. A full-rank Gaussian over every latent site except
  the positive "scale" sites (support ``x > 0``, e.g. ``s`` in ``hierarchical_logistic`` where
  ``w = s * v``), which get independent ``AutoNormal`` factors in unconstrained (log) space, i.e.
  log-normal factors. Built with ``AutoGuideList`` and ``handlers.block`` (deterministic sites are hidden from both
  parts, as ``AutoGuideList`` requires); it finds the positive sites
  from the model's trace, so it works for any model that has at least one positive and one other site.
"""

from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import LowerCholeskyAffine
from numpyro.infer import init_to_median
from numpyro.infer.autoguide import AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal

GUIDES: tuple[str, ...] = ("meanfield", "fullrank", "hierarchical")

#: Initial locations: the coordinate-wise median of 15 prior draws (what the NUTS backend starts from).
_INIT_LOC = init_to_median(num_samples=15)


class AutoMultivariateNormalNoSolve(AutoMultivariateNormal):
    """``AutoMultivariateNormal`` whose log q is computed from the standard-normal noise, not by a
    triangular solve.

    q is written as ``loc + scale_tril @ eps`` (a ``TransformedDistribution`` of ``N(0, I)``), so the
    ELBO reads log q = log N(eps; 0, I) - sum(log diag(scale_tril)) from the sample's intermediates.
    That is the same number in exact arithmetic, but it cannot be exploited: with the stock guide on
    the spheres model (D = 500) Adam drives ``scale_tril`` ill-conditioned, ``solve(L, L @ eps)``
    stops returning ``eps`` in float32, and the loss runs to -5e23 (reference-notes.md).
    Draws, medians and quantiles are those of the stock guide.
    """

    def _get_posterior(self) -> dist.Distribution:
        gaussian = super()._get_posterior()
        base = dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)
        return dist.TransformedDistribution(base, LowerCholeskyAffine(gaussian.loc, gaussian.scale_tril))


def _base_support(site: dict[str, Any]) -> Any:
    """The support of a sample site with ``independent(...)`` wrappers removed."""
    support = site["fn"].support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def is_positive_site(site: dict[str, Any]) -> bool:
    """True for a continuous latent sample site whose support is ``x > 0`` (or ``x >= 0``)."""
    if site["type"] != "sample" or site["is_observed"]:
        return False
    support = _base_support(site)
    if getattr(site["fn"], "is_discrete", False) or not isinstance(support, constraints.greater_than):
        return False
    return bool(np.all(np.asarray(support.lower_bound) == 0))


def _model_trace(nmodel: Callable[..., Any], x: Any, y: Any) -> Any:
    return handlers.trace(handlers.seed(nmodel, rng_seed=0)).get_trace(x, y)


def latent_sites(nmodel: Callable[..., Any], x: Any, y: Any) -> dict[str, dict[str, Any]]:
    """The latent sample sites of the NumPyro model ``nmodel(x, y)`` (one prior run), by name."""
    return {
        name: site
        for name, site in _model_trace(nmodel, x, y).items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def positive_site_names(nmodel: Callable[..., Any], x: Any, y: Any) -> list[str]:
    """Names of the latent sites of ``nmodel(x, y)`` with positive support, in model order."""
    return [name for name, site in latent_sites(nmodel, x, y).items() if is_positive_site(site)]


def hierarchical_guide(nmodel: Callable[..., Any], x: Any, y: Any, *, init_scale: float) -> AutoGuideList:
    """Full-rank Gaussian over the non-positive latent sites times log-normal factors for the positive
    ones. ``ValueError`` if the model has no positive latent site, or nothing but positive sites."""
    model_trace = _model_trace(nmodel, x, y)
    sites = {n: v for n, v in model_trace.items() if v["type"] == "sample" and not v["is_observed"]}
    deterministic = [name for name, site in model_trace.items() if site["type"] == "deterministic"]
    positive = [name for name, site in sites.items() if is_positive_site(site)]
    others = [name for name in sites if name not in positive]
    if not positive:
        raise ValueError(
            "guide 'hierarchical' needs a latent site with positive support (a scale, such as 's' in "
            f"hierarchical_logistic); this model's latent sites {sorted(sites)} have none. "
            "Use guide='fullrank' or 'meanfield'."
        )
    if not others:
        raise ValueError(
            f"guide 'hierarchical' needs a latent site besides the positive ones {positive} for its "
            "full-rank part; use guide='meanfield' for this model."
        )
    guide = AutoGuideList(nmodel, init_loc_fn=_INIT_LOC)
    guide.append(
        AutoMultivariateNormalNoSolve(
            handlers.block(nmodel, hide=positive + deterministic), prefix="fullrank", init_loc_fn=_INIT_LOC, init_scale=init_scale
        )
    )
    guide.append(
        AutoNormal(handlers.block(nmodel, expose=positive), prefix="scale", init_loc_fn=_INIT_LOC, init_scale=init_scale)
    )
    return guide


def make_guide(name: str, nmodel: Callable[..., Any], x: Any, y: Any, *, init_scale: float) -> AutoGuide:
    """The autoguide ``name`` (one of ``GUIDES``) for the NumPyro model ``nmodel(x, y)``.

    ``init_scale`` is the initial standard deviation of every factor (unconstrained space); locations
    start at the coordinate-wise median of 15 prior draws.
    """
    if name == "meanfield":
        return AutoNormal(nmodel, init_loc_fn=_INIT_LOC, init_scale=init_scale)
    if name == "fullrank":
        return AutoMultivariateNormalNoSolve(nmodel, init_loc_fn=_INIT_LOC, init_scale=init_scale)
    if name == "hierarchical":
        return hierarchical_guide(nmodel, x, y, init_scale=init_scale)
    raise ValueError(f"unknown guide {name!r}; choose one of {list(GUIDES)}")
