"""Checks on data and scalar arguments given to the toolkit: clear errors that name the argument and what
is allowed. (Backend options, which come as a mapping, are checked in ``ppl_uq.inference._options``.)"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_python_scalar(value: Any) -> Any:
    """A NumPy scalar or a 0-d NumPy/JAX array as the Python int or float it holds (bools stay bools);
    anything else unchanged. So ``np.int64(10)`` and ``jnp.float32(0.1)`` pass the checks below."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic) or (hasattr(value, "shape") and hasattr(value, "dtype") and np.shape(value) == ()):
        scalar = np.asarray(value)[()]
        if isinstance(scalar, np.bool_):
            return bool(scalar)
        if isinstance(scalar, np.integer):
            return int(scalar)
        if isinstance(scalar, np.floating):
            return float(scalar)
    return value


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
    value = as_python_scalar(value)
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


def check_rng_key(rng_key: Any, name: str = "rng_key") -> Any:
    """``rng_key`` if it is one JAX PRNG key (a typed key of shape (), or a raw uint32 key of shape (2,));
    ``ValueError`` saying what was given otherwise (None, a batch of keys, an integer seed)."""
    if rng_key is None:
        raise ValueError(f"{name} is required: pass jax.random.key(seed) (keys are threaded explicitly)")
    import jax

    try:
        array = jax.numpy.asarray(rng_key) if not isinstance(rng_key, jax.Array) else rng_key
    except TypeError:
        raise ValueError(f"{name} must be one JAX PRNG key (jax.random.key(0)), got {type(rng_key).__name__}") from None
    if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
        if array.shape != ():
            raise ValueError(f"{name} must be one key, got a batch of keys of shape {array.shape}; "
                             "pass one of them (keys[0]) or jax.random.key(seed)")
        return array
    if array.shape == (2,) and array.dtype == np.uint32:
        return array
    raise ValueError(f"{name} must be one JAX PRNG key (jax.random.key(0)), got {type(rng_key).__name__} "
                     f"of shape {tuple(array.shape)} and dtype {array.dtype}")
