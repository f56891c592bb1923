"""Weight priors for the Bayesian neural networks, as plain dicts, built on either engine.

A prior *spec* is a dict ``{"name": ..., **parameters}`` made by one of the factories below
(``iid_gaussian``, ``scale_mixture``, ``matrix_normal``). Specs are plain values, so a model with a prior
bound by ``functools.partial(bnn_mlp, prior=scale_mixture())`` keeps a storable identity
(``ppl_uq.models.registry``) and a saved posterior of it rebuilds its model when loaded.

``prior_distribution(ppl, spec, shape)`` turns a spec into the engine's distribution over an array of
``shape``: event shape ``shape``, batch shape ``()``, so one ``ppl.sample`` site holds a whole layer.
``PRIORS`` maps each name to its builder, with the same signature.
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Any, Callable, Mapping, Sequence

from .handles import PPLHandle

# --- the factories: validated plain dicts --------------------------------------------------------


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (Python, NumPy or 0-d JAX; not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if shape == () and getattr(dtype, "kind", None) in ("i", "u", "f"):
        return float(value)
    return None


def _positive(value: Any, name: str, where: str) -> float:
    """``value`` as a float; ``ValueError`` naming ``where``'s ``name`` unless a finite real number > 0."""
    number = _real(value)
    if number is None or not (math.isfinite(number) and number > 0):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}")
    return number


def iid_gaussian(scale: float = 1.0) -> dict[str, Any]:
    """Every weight ``~ N(0, scale^2)`` independently.

    Returns ``{"name": "iid_gaussian", "scale": float}``; ``ValueError`` unless ``scale`` is finite and > 0.
    """
    return {"name": "iid_gaussian", "scale": _positive(scale, "scale", "iid_gaussian")}


def scale_mixture(pi: float = 0.5, sigma1: float = math.exp(-1), sigma2: float = math.exp(-7)) -> dict[str, Any]:
    """Every weight ``~ pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2)`` independently (the scale-mixture prior
    of Blundell et al. 2015, "Weight Uncertainty in Neural Networks"; the defaults pi = 0.5,
    sigma1 = e^-1, sigma2 = e^-7 lie in the grid that paper searched). ``pi`` weights the first component.

    Returns ``{"name": "scale_mixture", "pi": float, "sigma1": float, "sigma2": float}``; ``ValueError``
    unless ``0 < pi < 1`` and both sigmas are finite and > 0.
    """
    weight = _real(pi)
    if weight is None or not 0.0 < weight < 1.0:
        raise ValueError(f"scale_mixture: pi must be a number strictly between 0 and 1, got {pi!r}")
    return {
        "name": "scale_mixture",
        "pi": weight,
        "sigma1": _positive(sigma1, "sigma1", "scale_mixture"),
        "sigma2": _positive(sigma2, "sigma2", "scale_mixture"),
    }


def matrix_normal(row_scale: float = 1.0, col_scale: float = 1.0) -> dict[str, Any]:
    """A layer's weight matrix W (fan_in, fan_out) ``~ MN(0, row_scale^2 I_fan_in, col_scale^2 I_fan_out)``
    (the matrix-normal prior of Louizos & Welling 2016, used by Däubener & Fischer).

    With identity row and column covariances, ``vec(W) ~ N(0, col_scale^2 I (x) row_scale^2 I)
    = N(0, (row_scale col_scale)^2 I)``: the entries are iid ``N(0, (row_scale * col_scale)^2)``, and that is
    the density used (it is why the KL of a matrix-normal guide to this prior has a simple closed form).
    Only the product ``row_scale * col_scale`` changes the prior; the split matters to a guide that
    shares the row / column structure. A bias vector under this spec gets the same iid
    ``N(0, (row_scale * col_scale)^2)``.

    Returns ``{"name": "matrix_normal", "row_scale": float, "col_scale": float}``; ``ValueError`` unless
    both are finite and > 0.
    """
    return {
        "name": "matrix_normal",
        "row_scale": _positive(row_scale, "row_scale", "matrix_normal"),
        "col_scale": _positive(col_scale, "col_scale", "matrix_normal"),
    }


#: The spec factories by name (``check_prior`` rebuilds a spec through its factory to validate it).
PRIOR_FACTORIES: dict[str, Callable[..., dict[str, Any]]] = {
    "iid_gaussian": iid_gaussian,
    "scale_mixture": scale_mixture,
    "matrix_normal": matrix_normal,
}


def check_prior(spec: Any, where: str = "prior") -> dict[str, Any]:
    """Validate a prior spec; return it rebuilt by its factory (a new dict, parameters as floats).

    ``ValueError`` naming ``where`` for anything but a dict with a known ``"name"`` and exactly that
    factory's parameters (missing ones take the factory's defaults), with valid values.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ValueError(
            f"{where} must be a prior spec, a dict made by one of {sorted(PRIOR_FACTORIES)} "
            f"(e.g. iid_gaussian(1.0)), got {spec!r}"
        )
    name = spec["name"]
    if name not in PRIOR_FACTORIES:
        raise ValueError(f"{where} names prior {name!r}; known priors: {sorted(PRIOR_FACTORIES)}")
    factory = PRIOR_FACTORIES[name]
    allowed = list(inspect.signature(factory).parameters)
    parameters = {key: value for key, value in spec.items() if key != "name"}
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: prior {name!r} has no parameter(s) {unknown}; its parameters are {allowed}")
    try:
        return factory(**parameters)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


# --- the builders: a spec as the engine's distribution ----------------------------------------------


def _check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints >= 1; ``ValueError`` naming ``shape`` otherwise."""
    sizes = [_integer(size) for size in shape] if isinstance(shape, (tuple, list)) else [None]
    if not all(size is not None and size >= 1 for size in sizes):
        raise ValueError(f"shape must be a tuple of integers >= 1, got {shape!r}")
    return tuple(sizes)


def _integer(value: Any) -> int | None:
    """``value`` as an int if it is an integer (Python or NumPy; not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _checked(spec: Any, name: str, shape: Any) -> tuple[dict[str, Any], tuple[int, ...]]:
    """The validated spec (which must be a ``name`` prior) and shape."""
    spec = check_prior(spec)
    if spec["name"] != name:
        raise ValueError(f"the {name!r} builder got a {spec['name']!r} prior spec; use prior_distribution")
    return spec, _check_shape(shape)


def _iid_normal(ppl: PPLHandle, scale: float, shape: tuple[int, ...]) -> Any:
    """iid ``N(0, scale^2)`` over ``shape``: event shape ``shape``."""
    return ppl.dist.Normal(0.0, scale).expand(shape).to_event(len(shape))


def iid_gaussian_distribution(ppl: PPLHandle, spec: Mapping[str, Any], shape: Sequence[int]) -> Any:
    """The ``iid_gaussian`` prior over an array of ``shape``: ``Normal(0, scale)`` expanded, event shape ``shape``."""
    spec, shape = _checked(spec, "iid_gaussian", shape)
    return _iid_normal(ppl, spec["scale"], shape)


def scale_mixture_distribution(ppl: PPLHandle, spec: Mapping[str, Any], shape: Sequence[int]) -> Any:
    """The ``scale_mixture`` prior over an array of ``shape``, event shape ``shape``: the engine's
    ``MixtureSameFamily(Categorical([pi, 1 - pi]), Normal(0, [sigma1, sigma2]))``, seen through the identity
    ``AffineTransform(0, 1)``, expanded.

    Both engines evaluate the mixture's log density as a logsumexp of the two components' log densities
    plus log weights, so it stays finite where either component's density underflows (|w| = 1e3 against
    sigma2 = e^-7); both can sample it (NumPyro's ``init_to_median`` draws from it).

    The identity transform changes no number (it adds log|1| = 0); it gives the distribution the plain
    support ``real``. torch's ``MixtureSameFamily`` reports its support as a ``MixtureSameFamilyConstraint``,
    for which ``biject_to`` has no transform, so Pyro's NUTS and autoguides would fail on the bare mixture.
    On the NumPyro engine the same density is ``ScaleMixtureNormal`` (one ``logaddexp``; a BBB step 4.2x the
    Gaussian prior's cost through the generic mixture); the cross-engine tests hold the two equal.
    """
    spec, shape = _checked(spec, "scale_mixture", shape)
    if ppl.name == "numpyro":  # the same density, computed leanly (see scale_mixture_numpyro)
        from .scale_mixture_numpyro import ScaleMixtureNormal

        return ScaleMixtureNormal(spec["pi"], spec["sigma1"], spec["sigma2"], shape).to_event(len(shape))
    probs = ppl.xp.asarray([spec["pi"], 1.0 - spec["pi"]])
    scales = ppl.xp.asarray([spec["sigma1"], spec["sigma2"]])
    mixture = ppl.dist.MixtureSameFamily(ppl.dist.Categorical(probs=probs), ppl.dist.Normal(0.0, scales))
    real_mixture = ppl.dist.TransformedDistribution(mixture, ppl.dist.transforms.AffineTransform(0.0, 1.0))
    return real_mixture.expand(shape).to_event(len(shape))


def matrix_normal_distribution(ppl: PPLHandle, spec: Mapping[str, Any], shape: Sequence[int]) -> Any:
    """The ``matrix_normal`` prior over a matrix (r, c) or a vector (n,), event shape ``shape``: iid
    ``Normal(0, row_scale * col_scale)``, which is exactly ``MN(0, row_scale^2 I_r, col_scale^2 I_c)`` on a
    matrix (see ``matrix_normal``) and the documented choice for a bias vector.
    """
    spec, shape = _checked(spec, "matrix_normal", shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"the matrix_normal prior is for a matrix (r, c) or a vector (n,), got shape {shape}")
    return _iid_normal(ppl, spec["row_scale"] * spec["col_scale"], shape)


#: Prior name -> ``builder(ppl, spec, shape) -> distribution`` with event shape ``shape`` and batch shape ().
PRIORS: dict[str, Callable[[PPLHandle, Mapping[str, Any], Sequence[int]], Any]] = {
    "iid_gaussian": iid_gaussian_distribution,
    "scale_mixture": scale_mixture_distribution,
    "matrix_normal": matrix_normal_distribution,
}


def prior_distribution(ppl: PPLHandle, spec: Mapping[str, Any], shape: Sequence[int]) -> Any:
    """The engine's distribution of the prior ``spec`` over an array of ``shape`` (a tuple of ints >= 1;
    ``()`` for a scalar): event shape ``shape``, batch shape ``()``. ``ValueError`` for a bad spec or shape.
    """
    spec = check_prior(spec)
    return PRIORS[spec["name"]](ppl, spec, shape)
