"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): a real image data set that
needs no download, used for tests, benchmarks and the harness demonstration."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

#: Height and width of one digits image.
DIGITS_SHAPE = (8, 8)


class ImageData(NamedTuple):
    """A train/test split of flattened images in [0, 1].

    Attributes:
        train: (x (N_train, H*W) float32 in [0, 1], y (N_train,) int32).
        test: (x (N_test, H*W), y (N_test,)).
        image_shape: (H, W) to reshape a row into an image.
        num_classes: C.
    """

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    image_shape: tuple[int, int]
    num_classes: int


def load_digits_split(rng_key: jax.Array, *, num_test: int = 497) -> ImageData:
    """The digits, pixel values scaled from 0..16 to [0, 1], split at random by ``rng_key``.

    Args:
        rng_key: JAX key for the permutation.
        num_test: points held out (1 <= num_test < 1797); default 497 leaves 1,300 for training.
    Returns:
        an ``ImageData``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    if isinstance(num_test, bool) or not isinstance(num_test, (int, np.integer)) or not 1 <= num_test < len(y):
        raise ValueError(f"num_test must be an integer in [1, {len(y) - 1}], got {num_test!r}")
    order = np.asarray(jax.random.permutation(rng_key, len(y)))
    test, train = order[:num_test], order[num_test:]
    return ImageData((x[train], y[train]), (x[test], y[test]), DIGITS_SHAPE, 10)
