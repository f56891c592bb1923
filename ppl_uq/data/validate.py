"""Checks on data given to the toolkit: clear errors that name the argument and what is allowed."""

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
