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
