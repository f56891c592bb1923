"""PPL handles: the small surface a model declaration is written against.

A model is ``model(ppl, x, y=None, **hyper)``. ``ppl`` is one of the handles below; it offers the
primitives (``sample``, ``plate``, ``param``, ``deterministic``, ``factor``), the framework's own
distributions module (``dist``) and an array namespace for the math (``xp``: ``jax.numpy`` or
``torch``). Models use only operations both namespaces share (``@``, ``*``, ``xp.stack``,
``xp.zeros_like``, ``xp.tanh``, ``xp.exp``), called positionally.

We wrote a small explicit handle instead of registering a ``pyroapi`` backend: pyroapi's built-in
numpyro route points at modules NumPyro no longer has, and two frozen records of real functions are
easier to read than a dispatch layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable


@dataclass(frozen=True)
class PPLHandle:
    """The primitives of one probabilistic-programming engine."""

    name: str
    sample: Callable[..., Any]
    plate: Callable[..., Any]
    param: Callable[..., Any]
    deterministic: Callable[..., Any]
    factor: Callable[..., Any]
    dist: ModuleType
    xp: ModuleType

    def bind(self, model: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``model`` with this handle filled in: an ordinary NumPyro or Pyro model of (x, y)."""
        return functools.partial(model, self)


@functools.cache
def numpyro_handle() -> PPLHandle:
    """The NumPyro (JAX) handle; the default engine."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    return PPLHandle(
        name="numpyro",
        sample=numpyro.sample,
        plate=numpyro.plate,
        param=numpyro.param,
        deterministic=numpyro.deterministic,
        factor=numpyro.factor,
        dist=dist,
        xp=jnp,
    )


@functools.cache
def pyro_handle() -> PPLHandle:
    """The Pyro (PyTorch) handle. Needs the ``pyro`` extra (``pip install ppl-uq[pyro]``)."""
    try:
        import pyro
        import pyro.distributions as dist
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the Pyro engine needs pyro-ppl and torch: pip install 'ppl-uq[pyro]'"
        ) from exc
    return PPLHandle(
        name="pyro",
        sample=pyro.sample,
        plate=pyro.plate,
        param=pyro.param,
        deterministic=pyro.deterministic,
        factor=pyro.factor,
        dist=dist,
        xp=torch,
    )


def abstract_trace(model: Callable[..., Any], x: Any, y: Any) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Run ``model`` (a declaration ``model(ppl, x, y)``) with the NumPyro handle under ``jax.eval_shape``
    on the full ``(x, y)``: nothing is computed and nothing is sliced.

    Returns ``(trace, shapes, y_sites)``: NumPyro's trace of the run (read its sites' types, distributions
    and supports; their values are abstract), site name -> ``jax.ShapeDtypeStruct`` of every sample and
    deterministic site, and the names of the observed sites whose value is ``y`` itself. Latent sites take
    values from ``init_to_uniform`` rather than from their priors, so models with improper priors
    (``ImproperUniform``) trace too. Errors are the model's own.
    """
    import jax
    from numpyro import handlers
    from numpyro.infer import init_to_uniform

    bound = numpyro_handle().bind(model)
    found: dict[str, Any] = {}

    def run(x_: Any, y_: Any) -> dict[str, Any]:
        seeded = handlers.substitute(handlers.seed(bound, rng_seed=0), substitute_fn=init_to_uniform)
        model_trace = handlers.trace(seeded).get_trace(x_, y_)
        found["trace"] = model_trace
        found["y_sites"] = [name for name, site in model_trace.items()
                            if site["type"] == "sample" and site["is_observed"] and site["value"] is y_]
        return {name: site["value"] for name, site in model_trace.items() if site["type"] in ("sample", "deterministic")}

    shapes = jax.eval_shape(run, x, y)
    return found["trace"], shapes, found["y_sites"]
