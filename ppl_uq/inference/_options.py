"""Option handling shared by the backends: unknown names and impossible values are clear errors."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..data.validate import as_python_scalar


def resolve_options(backend: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``defaults`` updated by ``given``; raise ``ValueError`` naming any unknown option. NumPy and
    JAX scalars among the given values become the Python numbers they hold (``as_python_scalar``)."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for backend {backend!r}; allowed: {sorted(defaults)}"
        )
    return {**defaults, **{name: as_python_scalar(value) for name, value in given.items()}}


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(options: dict[str, Any], *names: str, minimum: int = 1) -> None:
    """Raise unless every named option is an integer >= ``minimum`` (a NumPy/JAX integer scalar is
    accepted and stored back as a Python int)."""
    for name in names:
        value = as_python_scalar(options[name])
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"option {name!r} must be an integer >= {minimum}, got {_describe(options[name])}")
        if value < minimum:
            raise ValueError(f"option {name!r} must be an integer >= {minimum}, got {value}")
        options[name] = value


def check_positive(options: dict[str, Any], *names: str) -> None:
    """Raise unless every named option is a finite number > 0 (NumPy/JAX scalars accepted, stored as floats
    or ints)."""
    for name in names:
        value = as_python_scalar(options[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
            raise ValueError(f"option {name!r} must be a finite number > 0, got {_describe(options[name])}")
        options[name] = value


def check_unit_interval(options: dict[str, Any], *names: str) -> None:
    """Raise unless every named option lies strictly between 0 and 1 (NumPy/JAX scalars accepted)."""
    for name in names:
        value = as_python_scalar(options[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
            raise ValueError(f"option {name!r} must lie strictly between 0 and 1, got {_describe(options[name])}")
        options[name] = value


def check_choice(options: Mapping[str, Any], name: str, choices: Iterable[str]) -> None:
    """Raise unless ``options[name]`` is one of ``choices``."""
    allowed = sorted(choices)
    if options[name] not in allowed:
        raise ValueError(f"option {name!r} must be one of {allowed}, got {options[name]!r}")
