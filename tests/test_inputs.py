"""Bad input is a clear error that names the argument and what is allowed."""

import functools

import jax
import numpy as np
import pytest

import ppl_uq
from ppl_uq import models
from ppl_uq.data import make_spheres, sample_spheres


def test_spheres_points_lie_on_their_spheres_and_are_balanced():
    x, y = sample_spheres(jax.random.key(3), 200, 30, radii=(1.0, 1.3))
    radius = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(radius[y == 1], 1.3, atol=1e-5)
    assert (y == 0).sum() == (y == 1).sum() == 100
    # Uniform on the sphere: the mean direction is ~0 (each coordinate has sd r / sqrt(D)).
    assert np.abs(x[y == 0].mean(axis=0)).max() < 5 * 1.0 / np.sqrt(30) / np.sqrt(100)


def test_spheres_standardisation_uses_the_training_set():
    data = make_spheres(jax.random.key(0), dim=8, num_train=100, num_val=50)
    phi = (data.x_train.astype(np.float64) ** 2 - data.feature_loc) / data.feature_scale
    np.testing.assert_allclose(phi.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(phi.std(axis=0), 1.0, atol=1e-4)
    other = make_spheres(jax.random.key(1), dim=8, num_train=100, num_val=50)
    assert not np.allclose(data.x_train, other.x_train)


@pytest.mark.parametrize(
    "x_fix, y_fix, match",
    [
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), None, "NaN or infinite"),
        (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), None, "NaN or infinite"),
        (lambda x: x[:-1], None, "disagree on N"),
        (None, lambda y: np.where(np.arange(y.size) == 0, 2, y), r"labels in y must lie in \{0, ..., 1\}"),
        (None, lambda y: np.where(np.arange(y.size) == 0, -1, y), "labels in y"),
        (None, lambda y: y + 0.5, "non-integer"),
        (None, lambda y: y[:, None], "one-dimensional"),
        (lambda x: x.astype(str), None, "numeric"),
    ],
)
def test_bad_data_is_rejected(tiny_spheres, x_fix, y_fix, match):
    data, model = tiny_spheres
    x, y = data.train
    x = x_fix(x) if x_fix else x
    y = y_fix(y) if y_fix else y
    with pytest.raises((ValueError, TypeError), match=match):
        ppl_uq.fit("map", model, (x, y), rng_key=jax.random.key(0))


def test_unknown_backend_lists_the_valid_names(tiny_spheres):
    data, model = tiny_spheres
    with pytest.raises(ValueError, match=r"unknown backend 'hmc'; choose one of \[.*'nuts'.*\]"):
        ppl_uq.fit("hmc", model, data.train, rng_key=jax.random.key(0))


@pytest.mark.parametrize("backend", ["nuts", "slice", "svi", "laplace", "bootstrap"])
def test_unknown_option_lists_the_allowed_ones(tiny_spheres, backend):
    data, model = tiny_spheres
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['num_sample'\].*allowed: \["):
        ppl_uq.fit(backend, model, data.train, rng_key=jax.random.key(0), num_sample=10)


@pytest.mark.parametrize(
    "backend, option, value",
    [("nuts", "num_samples", -5), ("nuts", "num_chains", 0), ("nuts", "target_accept_prob", 1.5), ("slice", "num_samples", 0)],
)
def test_impossible_settings_are_rejected(tiny_spheres, backend, option, value):
    data, model = tiny_spheres
    with pytest.raises(ValueError, match=f"option '{option}'"):
        ppl_uq.fit(backend, model, data.train, rng_key=jax.random.key(0), **{option: value})


def test_rng_key_is_required_and_checked(tiny_spheres):
    data, model = tiny_spheres
    with pytest.raises(ValueError, match="rng_key"):
        ppl_uq.fit("map", model, data.train, rng_key=None)
    with pytest.raises(ValueError, match="rng_key"):
        ppl_uq.fit("map", model, data.train, rng_key=7)


def test_regression_targets_are_not_checked_as_labels(regression_data):
    x, y = regression_data
    from ppl_uq.inference import prepare_data

    _, checked = prepare_data(functools.partial(models.linear_regression), (x, y))
    assert checked.dtype == np.float32
