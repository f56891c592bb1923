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
- ``matrix-normal``: Louizos & Welling's matrix-variate Gaussian per weight matrix, q(W) = MN(M, U, V) with
  diagonal U (r x r) and V (c x c), sampled as W = M + U^1/2 E V^1/2 (``AutoMatrixNormal``); every
  other latent site gets an ``AutoNormal`` factor.

Every scale parameter is a softplus of an unconstrained number (NumPyro's ``softplus_positive``), i.e.
Blundell et al.'s sigma = log(1 + exp(rho)); option ``init_rho`` of the variational backends sets the
starting rho (seed 004 sweeps it over -30 ... -1.5), ``init_scale`` the starting sigma otherwise.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import LowerCholeskyAffine, biject_to
from numpyro.infer import init_to_median
from numpyro.infer.autoguide import AutoGuide, AutoGuideList, AutoMultivariateNormal, AutoNormal

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


class AutoMatrixNormal(AutoNormal):
    """Louizos & Welling's matrix-variate normal guide: every real latent site of rank 2 (r, c) gets
    q(W) = MN(M, diag(a^2), diag(b^2)), i.e. W = M + diag(a) E diag(b) with E ~ N(0, I), so W_ij is
    Normal(M_ij, a_i b_j) independently. Its parameters are ``{site}_auto_loc`` (r, c),
    ``{site}_auto_row_scale`` a (r,) and ``{site}_auto_col_scale`` b (c,), both softplus-constrained and
    starting at sqrt(init_scale) (so every a_i b_j starts at init_scale). Every other latent site is an
    ``AutoNormal`` factor. Sites inside plates are not supported (``ValueError``).

    r + c scale parameters per matrix instead of r c: the covariance is structured (a rank-one pattern of
    variances). KL(q || p) to the priors ``iid_gaussian`` and ``matrix_normal`` has the closed form of
    ``matrix_normal_kl``; ``TraceMeanField_ELBO`` finds it because q is a ``Normal`` site.
    """

    def matrix_sites(self) -> list[str]:
        """Names of the latent sites that get a matrix-normal factor, in model order."""
        return [
            name for name, site in self.prototype_trace.items()
            if site["type"] == "sample" and not site["is_observed"] and self._event_dims[name] == 2
            and jnp.ndim(self._init_locs[name]) == 2 and _base_support(site) is constraints.real
        ]

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        matrices = set(self.matrix_sites())
        result = {}
        for name, site in self.prototype_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if site["cond_indep_stack"]:
                raise ValueError(f"guide 'matrix-normal' does not support latent sites inside plates ({name!r}); use 'meanfield'")
            init_loc = self._init_locs[name]
            event_dim = self._event_dims[name]
            loc = numpyro.param(f"{name}_{self.prefix}_loc", init_loc, event_dim=event_dim)
            if name in matrices:
                start = math.sqrt(self._init_scale)
                rows, cols = jnp.shape(init_loc)
                row = numpyro.param(f"{name}_{self.prefix}_row_scale", jnp.full((rows,), start), constraint=self.scale_constraint,
                                    event_dim=1)
                col = numpyro.param(f"{name}_{self.prefix}_col_scale", jnp.full((cols,), start), constraint=self.scale_constraint,
                                    event_dim=1)
                result[name] = numpyro.sample(name, dist.Normal(loc, row[:, None] * col[None, :]).to_event(2))
                continue
            scale = numpyro.param(f"{name}_{self.prefix}_scale", jnp.full(jnp.shape(init_loc), self._init_scale),
                                  constraint=self.scale_constraint, event_dim=event_dim)
            factor = dist.Normal(loc, scale).to_event(event_dim)
            if _base_support(site) is constraints.real:
                result[name] = numpyro.sample(name, factor)
            else:
                result[name] = numpyro.sample(name, dist.TransformedDistribution(factor, biject_to(site["fn"].support)))
        return result

    def site_scales(self, params: dict[str, Any]) -> dict[str, jax.Array]:
        """The standard deviation of every factor in the unconstrained space, shaped like its site."""
        scales = {}
        for name in self._init_locs:
            row = params.get(f"{name}_{self.prefix}_row_scale")
            if row is not None:
                scales[name] = row[:, None] * params[f"{name}_{self.prefix}_col_scale"][None, :]
            else:
                scales[name] = params[f"{name}_{self.prefix}_scale"]
        return scales

    def sample_posterior(self, rng_key: Any, params: dict[str, Any], *args: Any, sample_shape: tuple = (), **kwargs: Any) -> dict[str, Any]:
        locs = {name: params[f"{name}_{self.prefix}_loc"] for name in self._init_locs}
        scales = self.site_scales(params)
        with handlers.seed(rng_seed=rng_key):
            latent = {name: numpyro.sample(name, dist.Normal(locs[name], scales[name]).expand_by(sample_shape)) for name in locs}
        return self._constrain(latent)

    def quantiles(self, params: dict[str, Any], quantiles: Any) -> dict[str, Any]:
        quantiles = jnp.array(quantiles)
        locs = {name: params[f"{name}_{self.prefix}_loc"] for name in self._init_locs}
        scales = self.site_scales(params)
        latent = {k: dist.Normal(locs[k], scales[k]).icdf(quantiles.reshape((-1,) + (1,) * jnp.ndim(locs[k]))) for k in locs}
        return self._constrain(latent)


def matrix_normal_kl(loc: Any, row_var: Any, col_var: Any, prior_row_var: float, prior_col_var: float) -> jax.Array:
    """KL( MN(M, diag(u), diag(v)) || MN(0, s_r^2 I, s_c^2 I) ) for M (r, c), u = ``row_var`` (r,),
    v = ``col_var`` (c,), s_r^2 = ``prior_row_var``, s_c^2 = ``prior_col_var``; a scalar.

    Louizos & Welling (2016), the form in seed-details section 2:
    1/2 [ (sum_j v_j / s_c^2)(sum_i u_i / s_r^2) + ||M||_F^2 / (s_r^2 s_c^2) - r c
          + c (r log s_r^2 - sum_i log u_i) + r (c log s_c^2 - sum_j log v_j) ].
    """
    loc, row_var, col_var = jnp.asarray(loc), jnp.asarray(row_var), jnp.asarray(col_var)
    rows, cols = loc.shape
    trace_term = (jnp.sum(col_var) / prior_col_var) * (jnp.sum(row_var) / prior_row_var)
    mean_term = jnp.sum(loc**2) / (prior_row_var * prior_col_var)
    log_det = cols * (rows * math.log(prior_row_var) - jnp.sum(jnp.log(row_var))) + rows * (
        cols * math.log(prior_col_var) - jnp.sum(jnp.log(col_var))
    )
    return 0.5 * (trace_term + mean_term - rows * cols + log_det)


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


def _meanfield(nmodel: Callable[..., Any], x: Any, y: Any, init_scale: float, init_loc_fn: Callable[..., Any]) -> AutoGuide:
    return AutoNormal(nmodel, init_loc_fn=init_loc_fn, init_scale=init_scale)


def _fullrank(nmodel: Callable[..., Any], x: Any, y: Any, init_scale: float, init_loc_fn: Callable[..., Any]) -> AutoGuide:
    return AutoMultivariateNormalNoSolve(nmodel, init_loc_fn=init_loc_fn, init_scale=init_scale)


def _hierarchical(nmodel: Callable[..., Any], x: Any, y: Any, init_scale: float, init_loc_fn: Callable[..., Any]) -> AutoGuide:
    return hierarchical_guide(nmodel, x, y, init_scale=init_scale)


def _matrix_normal(nmodel: Callable[..., Any], x: Any, y: Any, init_scale: float, init_loc_fn: Callable[..., Any]) -> AutoGuide:
    return AutoMatrixNormal(nmodel, init_loc_fn=init_loc_fn, init_scale=init_scale)


#: The guide families by name: ``builder(nmodel, x, y, init_scale, init_loc_fn) -> AutoGuide`` (see the module
#: docstring for each).
GUIDES: dict[str, Callable[..., AutoGuide]] = {
    "meanfield": _meanfield,
    "fullrank": _fullrank,
    "hierarchical": _hierarchical,
    "matrix-normal": _matrix_normal,
}


def make_guide(name: str, nmodel: Callable[..., Any], x: Any, y: Any, *, init_scale: float,
               init_loc_fn: Callable[..., Any] | None = None) -> AutoGuide:
    """The autoguide ``name`` (a key of ``GUIDES``) for the NumPyro model ``nmodel(x, y)``.

    ``init_scale`` is the initial standard deviation of every factor (unconstrained space); locations
    start at ``init_loc_fn`` (default: the coordinate-wise median of 15 prior draws; the ``hierarchical``
    guide always starts there).
    """
    if name not in GUIDES:
        raise ValueError(f"unknown guide {name!r}; choose one of {list(GUIDES)}")
    return GUIDES[name](nmodel, x, y, init_scale, init_loc_fn or _INIT_LOC)
