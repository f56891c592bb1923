"""The adversarial-spheres data of Gilmer et al. (2018), as used by Bekasov & Murray.

Class 0 lies uniformly on the sphere of radius ``radii[0]`` in D dimensions, class 1 on radius
``radii[1]``: ``x = r * z / ||z||`` with ``z ~ N(0, I)``. Classes are balanced (even indices class 0).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class SpheresData(NamedTuple):
    """Training and validation splits plus the feature standardisation of the training set.

    ``x_*`` are float32 (N, D); ``y_*`` int32 (N,) in {0, 1}; ``feature_loc`` and ``feature_scale``
    (D,) are the mean and sd of ``x_train**2`` per feature.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    feature_loc: np.ndarray
    feature_scale: np.ndarray
    radii: tuple[float, float]

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """The training pair ``(x, y)`` that ``ppl_uq.fit`` takes."""
        return self.x_train, self.y_train

    @property
    def model_kwargs(self) -> dict[str, np.ndarray]:
        """Hyper-parameters that put the squared-feature models on this data's standardisation."""
        return {"feature_loc": self.feature_loc, "feature_scale": self.feature_scale}


def sample_spheres(
    rng_key: jax.Array, num_points: int, dim: int, radii: tuple[float, float] = (1.0, 1.3)
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: ``num_points`` balanced points (x float32 (N, D), y int32 (N,))."""
    if num_points < 2 or dim < 2:
        raise ValueError(f"need num_points >= 2 and dim >= 2, got num_points={num_points}, dim={dim}")
    if not (0.0 < radii[0] < radii[1]):
        raise ValueError(f"radii must satisfy 0 < inner < outer, got {radii}")
    z = jax.random.normal(rng_key, (num_points, dim), dtype=jnp.float32)
    y = jnp.arange(num_points, dtype=jnp.int32) % 2
    radius = jnp.where(y == 0, radii[0], radii[1]).astype(jnp.float32)
    x = radius[:, None] * z / jnp.linalg.norm(z, axis=1, keepdims=True)
    return np.asarray(x), np.asarray(y)


def make_spheres(
    rng_key: jax.Array,
    *,
    dim: int = 500,
    num_train: int = 1000,
    num_val: int = 100_000,
    radii: tuple[float, float] = (1.0, 1.3),
) -> SpheresData:
    """Draw training and validation sets from independent keys and standardise on the training set."""
    key_train, key_val = jax.random.split(rng_key)
    x_train, y_train = sample_spheres(key_train, num_train, dim, radii)
    x_val, y_val = sample_spheres(key_val, num_val, dim, radii)
    squared = x_train.astype(np.float64) ** 2
    loc = squared.mean(axis=0)
    scale = squared.std(axis=0)
    if np.any(scale <= 0):
        raise ValueError("a squared feature is constant on the training set; draw more training points")
    return SpheresData(
        x_train, y_train, x_val, y_val, loc.astype(np.float32), scale.astype(np.float32), tuple(radii)
    )
