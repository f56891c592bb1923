"""Naming zoo models, so a saved posterior can rebuild its model in another process.

A model's *identity* is ``{"name": ..., "kwargs": {...}}``: the name of a function in
``ppl_uq.models.MODELS`` and the hyper-parameters bound to it by ``functools.partial``. Only plain values
count as hyper-parameters: ``None``, booleans, numbers, strings, numeric NumPy / JAX arrays, and lists,
tuples and string-keyed dicts of those. Anything else (a user's own function, a partial with positional
arguments, a hyper-parameter that is itself a function) has no identity: it cannot be rebuilt from a name,
so whoever loads its posterior passes the model.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import jax
import numpy as np

_NUMERIC_KINDS = "biuf"


def _registry() -> dict[str, Callable[..., Any]]:
    from . import MODELS  # the package defines MODELS; imported here, at call time, to avoid a cycle

    return MODELS


def registered_name(func: Any) -> str | None:
    """The name under which ``func`` itself is in ``MODELS`` (compared by identity), or None."""
    return next((name for name, model in _registry().items() if model is func), None)


def is_plain_value(value: Any) -> bool:
    """Whether ``value`` can be stored as a hyper-parameter (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return np.dtype(value.dtype).kind in _NUMERIC_KINDS
    if isinstance(value, (list, tuple)):
        return all(is_plain_value(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and is_plain_value(item) for key, item in value.items())
    return False


def model_identity(model: Any) -> dict[str, Any] | None:
    """Return ``{"name": str, "kwargs": dict}`` for a function in ``MODELS`` or a ``functools.partial``
    of one with only plain keyword hyper-parameters; None for any other model.

    ``kwargs`` holds the bound hyper-parameters as given (arrays stay arrays); ``{}`` for a bare function.
    """
    func, args, kwargs = model, (), {}
    if isinstance(model, functools.partial):
        func, args, kwargs = model.func, model.args, dict(model.keywords)
    name = registered_name(func)
    if name is None or args or not all(is_plain_value(value) for value in kwargs.values()):
        return None
    return {"name": name, "kwargs": kwargs}


def model_from_identity(identity: Mapping[str, Any]) -> Callable[..., Any]:
    """The model an identity names: the function ``MODELS[identity["name"]]`` itself when
    ``identity["kwargs"]`` is empty, else ``functools.partial`` of it with those keyword arguments.

    Raises ``ValueError`` (naming the argument) for an identity that is not a dict with a registered
    ``name`` and a dict of ``kwargs``.
    """
    if not isinstance(identity, Mapping) or not isinstance(identity.get("name"), str):
        raise ValueError(f"identity must be a dict {{'name': str, 'kwargs': dict}}, got {identity!r}")
    models = _registry()
    name = identity["name"]
    if name not in models:
        raise ValueError(f"identity names model {name!r}, which is not in ppl_uq.models.MODELS; known: {sorted(models)}")
    kwargs = identity.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"identity['kwargs'] must be a dict of hyper-parameters, got {kwargs!r}")
    return functools.partial(models[name], **kwargs) if kwargs else models[name]


def describe_model(model: Any) -> str:
    """A short human-readable name for any model callable (``module.qualname``, through partials)."""
    func = model.func if isinstance(model, functools.partial) else model
    module = getattr(func, "__module__", None)
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}" if module else name
