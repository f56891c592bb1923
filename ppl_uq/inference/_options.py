"""Option handling shared by the backends: unknown names and impossible values are clear errors."""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def resolve_options(backend: str, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``defaults`` updated by ``given``; raise ``ValueError`` naming any unknown option."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for backend {backend!r}; allowed: {sorted(defaults)}"
        )
    return {**defaults, **given}


def check_int(options: Mapping[str, Any], *names: str, minimum: int = 1) -> None:
    """Raise unless every named option is an integer >= ``minimum``."""
    for name in names:
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"option {name!r} must be an integer >= {minimum}, got {value!r}")


def check_positive(options: Mapping[str, Any], *names: str) -> None:
    """Raise unless every named option is a finite number > 0."""
    for name in names:
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < float("inf")):
            raise ValueError(f"option {name!r} must be a finite number > 0, got {value!r}")


def check_unit_interval(options: Mapping[str, Any], *names: str) -> None:
    """Raise unless every named option lies strictly between 0 and 1."""
    for name in names:
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1):
            raise ValueError(f"option {name!r} must lie strictly between 0 and 1, got {value!r}")


def check_choice(options: Mapping[str, Any], name: str, choices: Iterable[str]) -> None:
    """Raise unless ``options[name]`` is one of ``choices``."""
    allowed = sorted(choices)
    if options[name] not in allowed:
        raise ValueError(f"option {name!r} must be one of {allowed}, got {options[name]!r}")
