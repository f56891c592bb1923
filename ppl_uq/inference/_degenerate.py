"""Point estimates that are not posterior summaries: a scale driven to the boundary of its support, and the
joint mode of a hierarchical model.

``map``, ``bootstrap`` and ``deep-ensemble`` return optima of the log joint. On a hierarchical model (a
positive latent scale tau that sets the spread of other latent effects, centred ``z ~ N(mu, tau)`` or
non-centred ``theta = mu + tau * z``) that optimum is degenerate: the joint density grows without bound
as tau -> 0 in the centred form, and in the non-centred form the mode trades tau against the effects and
lands where the posterior has little mass (eight schools: tau = 29 against a posterior median near 3).
``degenerate_point`` finds both from the model's structure and the point, and says so in words; the
backends put the sentence into ``info["degenerate"]`` (a gate, ``ppl_uq.gates``) and warn.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ..models.handles import abstract_trace
from ._common import numpyro_model

#: An unconstrained coordinate beyond this (|u| > 9: a positive site below 1.2e-4 or above 8.1e3 times
#: its unit) is at the boundary of its support.
BOUNDARY_UNCONSTRAINED = 9.0

#: Scale sites larger than this many elements are not checked (a network's weights are not group scales).
MAX_SCALE_SIZE = 100


class DegenerateEstimateWarning(RuntimeWarning):
    """A point estimate (MAP, ensemble member) is degenerate; details in ``Posterior.info["degenerate"]``."""


def _sites(model: Callable[..., Any], x: Any, y: Any, params: Mapping[str, jax.Array]) -> dict[str, Any]:
    from numpyro import handlers

    conditioned = handlers.substitute(handlers.seed(numpyro_model(model), rng_seed=0), data=dict(params))
    return dict(handlers.trace(conditioned).get_trace(x, y))


def _scale_children(model: Callable[..., Any], x: Any, y: Any, point: Mapping[str, jax.Array], scale: str) -> list[str]:
    """The latent or deterministic sites (other than ``logits``) with more than one element whose value or
    prior density moves with the latent site ``scale`` at ``point``."""
    trace = _sites(model, x, y, point)
    latent = [n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"] and n != scale]
    deterministic = [n for n, s in trace.items() if s["type"] == "deterministic" and n != "logits"]

    def outputs(value: jax.Array) -> dict[str, jax.Array]:
        sites = _sites(model, x, y, {**point, scale: value})
        out = {n: jnp.sum(sites[n]["fn"].log_prob(sites[n]["value"])) for n in latent}
        out.update({n: jnp.sum(sites[n]["value"]) for n in deterministic})
        return out

    sensitivity = jax.jacfwd(outputs)(jnp.asarray(point[scale]))
    return [n for n, g in sensitivity.items() if np.size(trace[n]["value"]) > 1 and np.any(np.asarray(g) != 0)]


def degenerate_point(model: Callable[..., Any], x: Any, y: Any, point: Mapping[str, Any]) -> str:
    """A sentence saying why the constrained point ``point`` (site -> array) of ``model`` on ``(x, y)`` is a
    degenerate estimate, or "" when it is not: a latent coordinate at the boundary of its support, or a
    positive latent scale (at most ``MAX_SCALE_SIZE`` elements) that sets the spread of a latent effect with
    several elements (a hierarchical model, whose joint mode is not a posterior summary)."""
    from numpyro.distributions.transforms import biject_to

    point = {name: jnp.asarray(value) for name, value in point.items()}
    trace = _sites(model, x, y, point)
    reasons = []
    for name, site in trace.items():
        if site["type"] != "sample" or site["is_observed"] or site["fn"].support.is_discrete:
            continue
        support = site["fn"].support
        base = _base_constraint(support)
        if type(base).__name__ == "_Real":
            continue
        unconstrained = np.asarray(biject_to(support).inv(point[name]))
        if np.any(np.abs(unconstrained) > BOUNDARY_UNCONSTRAINED):
            reasons.append(f"site {name!r} is at the boundary of its support (value {float(np.min(point[name])):.3g})")
        positive = type(base).__name__ in ("_Positive", "_GreaterThan", "_GreaterThanEq")
        if positive and np.size(point[name]) <= MAX_SCALE_SIZE:
            children = _scale_children(model, x, y, point, name)
            if children:
                reasons.append(
                    f"site {name!r} (= {float(np.mean(point[name])):.3g}) is a latent scale of {children}: the joint "
                    "mode of a hierarchical model is not a posterior summary (it is unbounded or far from the "
                    "posterior's mass; use nuts, slice or a variational backend)")
    return "; ".join(reasons)


def _base_constraint(support: Any) -> Any:
    """The constraint under NumPyro's ``independent`` wrappers."""
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    return support


def _real_base(support: Any) -> bool:
    return type(_base_constraint(support)).__name__ == "_Real"


def _has_constrained_latent(model: Callable[..., Any], x: Any, y: Any) -> bool:
    """Whether any continuous latent site has a support other than the reals (an abstract trace)."""
    model_trace, _, _ = abstract_trace(model, x, y)
    return any(not _real_base(site["fn"].support) and not site["fn"].support.is_discrete
               for site in model_trace.values() if site["type"] == "sample" and not site["is_observed"])


def flag_degenerate(method: str, model: Callable[..., Any], x: Any, y: Any, draws: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{"degenerate": sentence}`` for the first degenerate point among the (1, M, ...) ``draws`` of a point
    estimate or ensemble (warning ``DegenerateEstimateWarning``), else ``{}``. Checks at most 8 members."""
    if not _has_constrained_latent(model, x, y):
        return {}
    members = next(iter(draws.values())).shape[1]
    for index in range(min(members, 8)):
        reason = degenerate_point(model, x, y, {name: value[0, index] for name, value in draws.items()})
        if reason:
            where = "the estimate" if members == 1 else f"member {index} of {members}"
            sentence = f"degenerate: {where}: {reason}"
            warnings.warn(f"{method}: {sentence}", DegenerateEstimateWarning, stacklevel=3)
            return {"degenerate": sentence}
    return {}
