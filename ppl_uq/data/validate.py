"""Checks on data and scalar arguments given to the toolkit: clear errors that name the argument and what
is allowed. (Backend options, which come as a mapping, are checked in ``ppl_uq.inference._options``.)"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_finite_array(value: Any, name: str, *, min_ndim: int = 1) -> np.ndarray:
    """Return ``value`` as a NumPy array, or raise if it is non-numeric, too low-rank, empty or non-finite."""
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); all entries must be finite")
    return array


def check_dataset(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a ``(x, y)`` pair: x (N, ...) finite, y (N,) finite. Returns the two arrays."""
    if hasattr(data, "train"):
        data = data.train
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be a pair (x, y) of arrays (or an object with a .train pair)")
    x = as_finite_array(data[0], "x")
    y = as_finite_array(data[1], "y")
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional (N,), got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y disagree on N: x has {x.shape[0]} rows, y has {y.shape[0]}")
    if np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize < 4:  # float16 -> float32; float64 kept
        x = x.astype(np.float32)
    return x, y


def check_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Return ``y`` as int32 class indices, or raise if they are not integers in [0, num_classes)."""
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(y == np.round(y)):
            raise ValueError("y holds non-integer values; class labels must be integers")
    labels = y.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"labels in y must lie in {{0, ..., {num_classes - 1}}} (the model has {num_classes} "
            f"classes); found values from {low} to {high}"
        )
    return labels.astype(np.int32)


def check_bounds(bounds: Any, x: np.ndarray) -> tuple[float, float] | None:
    """``None`` (unbounded) or a pair ``(lo, hi)`` with lo < hi that contains every entry of ``x``."""
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be None or a pair (lo, hi) of numbers, got {bounds!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must satisfy lo < hi, both finite; got {bounds!r}")
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise ValueError(f"x lies outside bounds {bounds!r}: its values range from {x.min()} to {x.max()}")
    return lo, hi


def check_positive(name: str, value: Any, *, allow_zero: bool = False, integer: bool = False) -> Any:
    """Return ``value`` (a float, or an int when ``integer``) if it is > 0 (>= 0 with ``allow_zero``), else raise."""
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {bound}, got {value!r}")
    return int(value) if integer else float(value)


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise naming both."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value
