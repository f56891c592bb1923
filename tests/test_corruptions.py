"""Corruptions of seed 002: identities at level 0, noise statistics, blur against SciPy, JPEG round trips,
the registry and argument checks."""

import jax
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ppl_uq.data import load_digits_split
from ppl_uq.harness.corruptions import (
    BLUR_MODES,
    CORRUPTIONS,
    gaussian_blur,
    gaussian_noise,
    get_corruption,
    jpeg,
)


@pytest.fixture(scope="module")
def digits_test():
    data = load_digits_split(jax.random.key(0))
    return data.test[0]


def random_images(n=5, shape=(8, 8), seed=0):
    return np.random.default_rng(seed).uniform(size=(n, int(np.prod(shape)))).astype(np.float32)


# -- identities -------------------------------------------------------------------------------------
def test_level_zero_is_the_identity(digits_test):
    x = digits_test[:20]
    for out in (gaussian_noise(jax.random.key(0), x, 0.0), gaussian_blur(x, 0.0, (8, 8))):
        assert out.dtype == np.float32 and out.shape == x.shape
        np.testing.assert_array_equal(out, x)
    for spec in CORRUPTIONS.values():
        if spec.identity_level is not None:
            np.testing.assert_array_equal(spec.apply(jax.random.key(1), x, spec.identity_level, (8, 8), (0, 1)), x)


# -- noise ------------------------------------------------------------------------------------------
def test_noise_sd_matches_on_mid_grey_images():
    x = np.full((200, 64), 0.5, np.float32)  # 10 sd from both bounds at sd 0.05: no clipping
    sd = 0.05
    delta = (gaussian_noise(jax.random.key(3), x, sd) - x).astype(np.float64).ravel()
    n = delta.size
    # sample sd: relative standard error 1/sqrt(2n) = 0.6 %; allow 4 standard errors
    assert abs(delta.std() / sd - 1) < 4 / np.sqrt(2 * n)
    assert abs(delta.mean()) < 4 * sd / np.sqrt(n)


def test_noise_is_key_driven_and_clipped():
    x = random_images(10)
    a = gaussian_noise(jax.random.key(0), x, 0.3)
    np.testing.assert_array_equal(a, gaussian_noise(jax.random.key(0), x, 0.3))
    assert not np.array_equal(a, gaussian_noise(jax.random.key(1), x, 0.3))
    big = gaussian_noise(jax.random.key(0), x, 5.0)
    assert big.min() >= 0.0 and big.max() <= 1.0 and big.dtype == np.float32
    assert np.mean((big == 0) | (big == 1)) > 0.8
    shifted = gaussian_noise(jax.random.key(0), 2 * x - 1, 0.3, bounds=(-1, 1))
    assert shifted.min() >= -1 and shifted.max() <= 1


# -- blur -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["reflect", "nearest", "constant"])
def test_blur_equals_scipy_on_each_2d_image(mode):
    x = random_images(3, shape=(6, 9))
    out = gaussian_blur(x, 0.8, (6, 9), mode=mode)
    for row, blurred in zip(x, out, strict=True):
        expected = gaussian_filter(row.reshape(6, 9).astype(np.float64), 0.8, mode=mode)
        np.testing.assert_allclose(blurred.reshape(6, 9), expected, rtol=1e-6, atol=1e-7)


def test_blur_never_mixes_images_or_channels():
    x = random_images(2, shape=(5, 5, 3))
    out = gaussian_blur(x, 1.0, (5, 5, 3))
    for row, blurred in zip(x, out, strict=True):
        image = row.reshape(5, 5, 3)
        for c in range(3):
            expected = gaussian_filter(image[:, :, c].astype(np.float64), 1.0)
            np.testing.assert_allclose(blurred.reshape(5, 5, 3)[:, :, c], expected, rtol=1e-6, atol=1e-7)


def test_blur_keeps_a_constant_image_and_the_mean_of_a_periodic_one():
    constant = np.full((2, 64), 0.3, np.float32)
    np.testing.assert_allclose(gaussian_blur(constant, 1.5, (8, 8)), constant, atol=1e-7)
    x = random_images(4)
    wrapped = gaussian_blur(x, 1.2, (8, 8), mode="wrap")  # circular convolution with a normalised kernel
    np.testing.assert_allclose(wrapped.mean(axis=1), x.mean(axis=1), rtol=1e-5)
    assert np.all(wrapped.std(axis=1) < x.std(axis=1))  # smoother


# -- JPEG -------------------------------------------------------------------------------------------
def test_jpeg_round_trip_and_quality_order(digits_test):
    x = digits_test
    errors = {}
    for quality in (100, 75, 25, 1):
        out = jpeg(x, quality, (8, 8))
        assert out.dtype == np.float32 and out.shape == x.shape
        assert out.min() >= 0 and out.max() <= 1
        errors[quality] = float(np.mean(np.abs(out - x)))
    # measured on these 497 images: quality 100 max error 0.0059 (3/255 from uint8 + DCT rounding), mean 0.0006
    assert np.max(np.abs(jpeg(x, 100, (8, 8)) - x)) <= 4 / 255
    assert errors[100] < errors[75] < errors[25] < errors[1]  # measured 0.0006, 0.021, 0.066, 0.131


def test_jpeg_of_uint8_levels_at_100_is_near_exact_and_scales_with_bounds():
    x = np.round(random_images(6) * 255) / 255
    out = jpeg(x, 100, (8, 8))
    assert np.max(np.abs(out - x)) <= 4 / 255
    np.testing.assert_allclose(jpeg(2 * x - 1, 60, (8, 8), bounds=(-1, 1)), 2 * jpeg(x, 60, (8, 8)) - 1, atol=1e-6)


def test_jpeg_rgb():
    x = random_images(2, shape=(16, 16, 3))
    out = jpeg(x, 50, (16, 16, 3))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="1 or 3 channels"):
        jpeg(random_images(1, shape=(4, 4, 2)), 50, (4, 4, 2))


# -- registry and validation -----------------------------------------------------------------------
def test_registry():
    assert set(CORRUPTIONS) == {"gaussian_noise", "gaussian_blur", "jpeg"}
    noise, blur, compression = (CORRUPTIONS[k] for k in ("gaussian_noise", "gaussian_blur", "jpeg"))
    assert noise.level_name == "sd" and noise.default_levels[0] == 0 and noise.default_levels[-1] == 1.0
    assert blur.level_name == "sigma" and blur.default_levels[0] == 0 and blur.default_levels[-1] == 2.0
    assert compression.level_name == "quality" and compression.default_levels[0] == 100
    assert compression.default_levels[-1] == 1 and compression.identity_level is None
    for spec in CORRUPTIONS.values():
        assert spec.name in CORRUPTIONS and all(spec.check_level(v) == v for v in spec.default_levels)
    assert get_corruption("jpeg") is compression
    with pytest.raises(ValueError, match="gaussian_noise"):
        get_corruption("salt-and-pepper")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: gaussian_noise(jax.random.key(0), x, -0.1), "sd"),
        (lambda x: gaussian_noise(jax.random.key(0), x, float("nan")), "sd"),
        (lambda x: gaussian_noise(jax.random.key(0), x + 2, 0.1), "outside bounds"),
        (lambda x: gaussian_noise(jax.random.key(0), x, 0.1, bounds=(1, 0)), "lo < hi"),
        (lambda x: gaussian_blur(x, -1, (8, 8)), "sigma"),
        (lambda x: gaussian_blur(x, 1, (8, 7)), "image_shape"),
        (lambda x: gaussian_blur(x, 1, (8, 8.5)), "image_shape"),
        (lambda x: gaussian_blur(x, 1, (8, 8), mode="mirrored"), "mode"),
        (lambda x: jpeg(x, 0, (8, 8)), "quality"),
        (lambda x: jpeg(x, 101, (8, 8)), "quality"),
        (lambda x: jpeg(x, 50.5, (8, 8)), "quality"),
        (lambda x: jpeg(x, True, (8, 8)), "quality"),
        (lambda x: jpeg(x.reshape(-1), 50, (8, 8)), "dimension"),
        (lambda x: jpeg(np.where(x > 0.5, np.nan, x), 50, (8, 8)), "NaN"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_images(2))


def test_blur_modes_listed():
    assert "reflect" in BLUR_MODES
