"""Image corruptions of seed 002: Gaussian noise, Gaussian blur and JPEG compression.

Every corruption takes flattened images ``x`` (N, H*W) (or (N, H*W*channels) with
``image_shape = (H, W, channels)``) whose values lie in ``bounds = (lo, hi)``, and returns a float32
array of the same shape, clipped to the bounds. Level 0 of the noise and of the blur is the identity;
JPEG is never exactly the identity (even quality 100 rounds to 8 bits and through the DCT).

``CORRUPTIONS`` is the registry: name -> ``Corruption`` with the level's name, the seed's default
levels and a uniform ``apply(rng_key, x, level, image_shape, bounds)``.
"""

from __future__ import annotations

import io
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from ..data.validate import as_finite_array, check_bounds, check_positive, check_rng_key

BLUR_MODES = ("reflect", "nearest", "mirror", "wrap", "constant")


def _check_bounded(array: np.ndarray, bounds: Any) -> tuple[np.ndarray, tuple[float, float]]:
    """Return ``(array as float32 clipped to the bounds, (lo, hi))``, or raise if ``array`` leaves them."""
    if bounds is None:
        raise ValueError("bounds must be a pair (lo, hi) of numbers: the corruptions clip to the valid range")
    lo, hi = check_bounds(bounds, array)
    return np.clip(array.astype(np.float32), lo, hi), (lo, hi)


def _check_images(x: Any, image_shape: Any, bounds: Any) -> tuple[np.ndarray, tuple[int, ...], tuple[float, float]]:
    """Validate ``x`` (N, prod(image_shape)) inside ``bounds``; return (x float32, shape, (lo, hi))."""
    array = as_finite_array(x, "x", min_ndim=2)
    if array.ndim != 2:
        raise ValueError(f"x must be flattened images (N, H*W), got shape {array.shape}")
    shape = check_image_shape(image_shape, array.shape[1])
    images, box = _check_bounded(array, bounds)
    return images, shape, box


def check_image_shape(image_shape: Any, num_values: int) -> tuple[int, ...]:
    """Return ``image_shape`` as a tuple (H, W) or (H, W, channels) of positive ints whose product is
    ``num_values`` (the length of a flattened image), or raise ``ValueError``."""
    try:
        shape = tuple(int(s) for s in image_shape)
        valid = all(int(s) == s for s in image_shape)
    except (TypeError, ValueError):
        shape, valid = (), False
    if not valid or len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (H, W, channels) of positive integers, got {image_shape!r}")
    if num_values != int(np.prod(shape)):
        raise ValueError(f"x has {num_values} values per row but image_shape {shape} needs {int(np.prod(shape))}")
    return shape


def _check_quality(quality: Any) -> int:
    ok = isinstance(quality, (int, np.integer, float, np.floating)) and not isinstance(quality, bool)
    if not ok or not np.isfinite(quality) or quality != int(quality) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in [1, 100], got {quality!r}")
    return int(quality)


def gaussian_noise(rng_key: jax.Array, x: Any, sd: float, bounds: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Additive Gaussian noise: ``clip(x + sd * eps, lo, hi)``, eps ~ N(0, 1) i.i.d. from ``rng_key``.

    Args:
        rng_key: JAX key for the noise.
        x: (N, ...) inputs inside ``bounds``.
        sd: noise standard deviation (>= 0; 0 returns ``x``), in the units of ``x`` (seed 002: 0 to 1 for
            [0, 1] images).
        bounds: (lo, hi) valid input range; the noisy input is clipped to it.
    Returns:
        float32 array, the shape of ``x``.
    """
    sd = check_positive("sd", sd, allow_zero=True)
    rng_key = check_rng_key(rng_key)
    image, (lo, hi) = _check_bounded(as_finite_array(x, "x", min_ndim=2), bounds)
    if sd == 0:
        return image
    noise = np.asarray(jax.random.normal(rng_key, image.shape, np.float32))
    return np.clip(image + np.float32(sd) * noise, lo, hi).astype(np.float32)


def gaussian_blur(
    x: Any,
    sigma: float,
    image_shape: tuple[int, ...],
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    mode: str = "reflect",
    truncate: float = 4.0,
) -> np.ndarray:
    """Gaussian blur of each image over its two spatial axes (``scipy.ndimage.gaussian_filter``).

    Args:
        x: (N, H*W) (or (N, H*W*channels)) flattened images inside ``bounds``.
        sigma: the kernel's standard deviation in pixels (>= 0; 0 returns ``x``); seed 002: 0 to 2.
        image_shape: (H, W) or (H, W, channels); channels are never mixed.
        bounds: (lo, hi) valid range (the blur is a convex combination, so it stays inside; the clip only
            removes rounding).
        mode: how the image is extended beyond its border, one of ``BLUR_MODES`` (scipy's meaning); the
            default ``"reflect"`` (scipy's default, ``d c b a | a b c d | d c b a``) keeps a constant
            image constant.
        truncate: the kernel is cut at ``truncate * sigma`` pixels (scipy's default 4).
    Returns:
        float32 array (N, H*W), blurred.
    """
    from scipy.ndimage import gaussian_filter

    sigma = check_positive("sigma", sigma, allow_zero=True)
    if mode not in BLUR_MODES:
        raise ValueError(f"mode must be one of {BLUR_MODES}, got {mode!r}")
    truncate = check_positive("truncate", truncate, allow_zero=True)
    images, shape, (lo, hi) = _check_images(x, image_shape, bounds)
    if sigma == 0:
        return images
    stacked = images.reshape((images.shape[0],) + shape).astype(np.float64)
    blurred = gaussian_filter(stacked, sigma=sigma, mode=mode, truncate=truncate, axes=(1, 2))
    return np.clip(blurred.reshape(images.shape), lo, hi).astype(np.float32)


def jpeg(x: Any, quality: int, image_shape: tuple[int, ...], bounds: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """JPEG compression at ``quality`` through Pillow, image by image.

    Each image is mapped linearly from ``bounds`` to 0..255 and rounded to uint8 (this quantisation alone
    moves values by up to ``(hi - lo) / 510``), encoded as a baseline JPEG at ``quality`` (grey-scale for
    (H, W) or (H, W, 1), RGB with Pillow's default chroma subsampling for (H, W, 3)), decoded, and
    mapped back. Quality 100 is close to, but not exactly, the identity.

    Args:
        x: (N, H*W) (or (N, H*W*channels)) flattened images inside ``bounds``.
        quality: an integer in [1, 100] (Pillow's scale; seed 002: 1 to 100, lower is lossier).
        image_shape: (H, W), (H, W, 1) or (H, W, 3).
        bounds: (lo, hi) valid range.
    Returns:
        float32 array (N, H*W), decoded, in ``bounds``.
    """
    from PIL import Image

    quality = _check_quality(quality)
    images, shape, (lo, hi) = _check_images(x, image_shape, bounds)
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, image_shape has {shape[2]}")
    mode = "RGB" if len(shape) == 3 and shape[2] == 3 else "L"
    pixel_shape = shape if mode == "RGB" else shape[:2]
    codes = np.rint((images - lo) / (hi - lo) * 255.0).clip(0, 255).astype(np.uint8)
    out = np.empty(images.shape, np.float32)
    for i, row in enumerate(codes):  # Pillow infers "L" from uint8 (H, W) and "RGB" from (H, W, 3)
        buffer = io.BytesIO()
        Image.fromarray(row.reshape(pixel_shape)).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert(mode), np.float32).reshape(-1)
    return np.clip(out / np.float32(255.0) * np.float32(hi - lo) + np.float32(lo), lo, hi).astype(np.float32)


class Corruption(NamedTuple):
    """A registered corruption.

    Attributes:
        name: registry key.
        level_name: what the level means (``"sd"``, ``"sigma"``, ``"quality"``).
        default_levels: seed 002's sweep, from clean to most corrupted.
        identity_level: the level that returns the input unchanged, or ``None`` (JPEG).
        apply: ``(rng_key, x, level, image_shape, bounds) -> corrupted x`` (the key is ignored when unused).
        check_level: ``level -> level``, raising ``ValueError`` when it is out of range.
    """

    name: str
    level_name: str
    default_levels: tuple[float, ...]
    identity_level: float | None
    apply: Callable[..., np.ndarray]
    check_level: Callable[[Any], Any]


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption(
        name="gaussian_noise",
        level_name="sd",
        default_levels=tuple(round(0.1 * i, 1) for i in range(11)),
        identity_level=0.0,
        apply=lambda rng_key, x, level, image_shape, bounds: gaussian_noise(rng_key, x, level, bounds),
        check_level=lambda level: check_positive("sd", level, allow_zero=True),
    ),
    "gaussian_blur": Corruption(
        name="gaussian_blur",
        level_name="sigma",
        default_levels=tuple(round(0.2 * i, 1) for i in range(11)),
        identity_level=0.0,
        apply=lambda rng_key, x, level, image_shape, bounds: gaussian_blur(x, level, image_shape, bounds=bounds),
        check_level=lambda level: check_positive("sigma", level, allow_zero=True),
    ),
    "jpeg": Corruption(
        name="jpeg",
        level_name="quality",
        default_levels=(100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1),
        identity_level=None,
        apply=lambda rng_key, x, level, image_shape, bounds: jpeg(x, level, image_shape, bounds),
        check_level=_check_quality,
    ),
}


def get_corruption(name: Any) -> Corruption:
    """The registered ``Corruption`` called ``name``; a ``ValueError`` lists the names otherwise."""
    if not isinstance(name, str) or name not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {tuple(CORRUPTIONS)}, got {name!r}")
    return CORRUPTIONS[name]


__all__ = [
    "BLUR_MODES",
    "CORRUPTIONS",
    "Corruption",
    "check_image_shape",
    "gaussian_blur",
    "gaussian_noise",
    "get_corruption",
    "jpeg",
]
