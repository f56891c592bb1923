"""Uncertainty measures from posterior draws: hand-computed values, exact zeros, MI >= 0, agreement with
NumPy's variance, batching, and clear errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_uq.harness.uncertainty import (
    HIGHER_MEANS,
    MEASURES,
    all_measures,
    expected_entropy,
    max_predictive_variance,
    max_probability,
    mutual_information,
    predictive_entropy,
    predictive_variance,
    uncertainty_measures,
)

# Two draws (S=2), three points, three classes. Zeros are exact (log 0 = -inf in the input).
PROBS = np.array(
    [
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.8, 0.2, 0.0]],
        [[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.4, 0.6, 0.0]],
    ]
)
H = lambda *p: -sum(q * math.log(q) for q in p if q > 0)  # noqa: E731
# point 0: p_hat = [.5 .5 0]: H = ln 2; each draw is one-hot: H = 0, so EH = 0 and MI = ln 2;
#          variance over draws: class 0 takes 1 and 0 -> mean .5, var ((.5)^2 + (.5)^2)/2 = .25; same class 1.
# point 1: identical draws [.5 .5 0]: H = EH = ln 2, MI = 0, variance 0.
# point 2: p_hat = [.6 .4 0]: H = -(.6 ln .6 + .4 ln .4) = 0.673012;
#          EH = (H(.8,.2) + H(.4,.6)) / 2 = (0.500402 + 0.673012) / 2 = 0.586707; MI = 0.086305;
#          variance: class 0 takes .8 and .4 -> mean .6, var (.2^2 + .2^2)/2 = .04; class 1 the same.
EXPECTED = {
    "predictive_entropy": [math.log(2), math.log(2), H(0.6, 0.4)],
    "expected_entropy": [0.0, math.log(2), (H(0.8, 0.2) + H(0.4, 0.6)) / 2],
    "mutual_information": [math.log(2), 0.0, H(0.6, 0.4) - (H(0.8, 0.2) + H(0.4, 0.6)) / 2],
    "max_predictive_variance": [0.25, 0.0, 0.04],
    "max_probability": [0.5, 0.5, 0.6],
}
FUNCTIONS = {
    "predictive_entropy": predictive_entropy,
    "expected_entropy": expected_entropy,
    "mutual_information": mutual_information,
    "max_predictive_variance": max_predictive_variance,
    "max_probability": max_probability,
}


def _log(probs):
    with np.errstate(divide="ignore"):
        return np.log(probs).astype(np.float32)


def test_hand_computed_values_with_exact_zeros():
    assert EXPECTED["mutual_information"][2] == pytest.approx(0.086305, abs=1e-6)
    log_probs = jnp.asarray(_log(PROBS))
    for name, fn in FUNCTIONS.items():
        values = np.asarray(jax.jit(fn)(log_probs))
        assert values.shape == (3,), name
        assert not np.isnan(values).any(), name
        np.testing.assert_allclose(values, EXPECTED[name], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(
        predictive_variance(log_probs), [[0.25, 0.25, 0.0], [0.0, 0.0, 0.0], [0.04, 0.04, 0.0]], atol=1e-7
    )
    combined = all_measures(log_probs)
    assert tuple(combined) == MEASURES
    for name in MEASURES:
        np.testing.assert_allclose(combined[name], EXPECTED[name], atol=1e-6, err_msg=name)


def test_one_hot_draws_have_exactly_zero_entropy_and_finite_gradients():
    log_probs = jnp.asarray(_log(np.array([[[1.0, 0.0]], [[1.0, 0.0]]])))
    assert float(expected_entropy(log_probs)[0]) == 0.0
    assert float(predictive_entropy(log_probs)[0]) == 0.0
    # Logits so far apart that p underflows to 0 in float32: value and gradient stay finite.
    logits = jnp.array([[[120.0, -120.0, 0.0]], [[0.0, 120.0, -120.0]]])
    for fn in (predictive_entropy, expected_entropy, mutual_information, max_predictive_variance):
        grad = jax.grad(lambda z, f=fn: jnp.sum(f(z)))(logits)
        assert np.all(np.isfinite(grad)), fn.__name__


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_uniform_entropy_is_log_num_classes(num_classes):
    log_probs = jnp.full((3, 4, num_classes), -math.log(num_classes), jnp.float32)
    np.testing.assert_allclose(predictive_entropy(log_probs), math.log(num_classes), rtol=1e-5)
    np.testing.assert_allclose(expected_entropy(log_probs), math.log(num_classes), rtol=1e-5)
    np.testing.assert_allclose(mutual_information(log_probs), 0.0, atol=1e-6)
    np.testing.assert_allclose(max_probability(log_probs), 1.0 / num_classes, rtol=1e-5)


def test_logits_are_normalised_like_log_probabilities():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 5)).astype(np.float32) * 3
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    for name, fn in FUNCTIONS.items():
        np.testing.assert_allclose(fn(logits + 7.0), fn(log_probs), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("concentration", [0.1, 1.0, 30.0])
def test_mutual_information_is_never_negative(concentration):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(7, concentration), size=(5, 400))
    base = rng.dirichlet(np.ones(7), size=400)
    near_identical = base[None] * (1.0 + 1e-6 * rng.standard_normal((5, 400, 7)))  # renormalised below
    for draws in (probs, near_identical):
        mi = np.asarray(mutual_information(jnp.asarray(_log(draws))))
        assert np.all(mi >= 0.0)
        # float64 reference: H(mean) - mean H, from probabilities
        draws = draws / draws.sum(-1, keepdims=True)
        mean = draws.mean(0)
        ref = -np.sum(mean * np.log(mean), -1) + np.mean(np.sum(draws * np.log(draws), -1), 0)
        np.testing.assert_allclose(mi, np.maximum(ref, 0.0), atol=2e-6)


def test_mutual_information_is_zero_for_identical_draws():
    rng = np.random.default_rng(2)
    one = rng.dirichlet(np.full(10, 0.5), size=300)
    log_probs = jnp.asarray(_log(np.repeat(one[None], 8, axis=0)))
    mi = np.asarray(mutual_information(log_probs))
    assert np.all(mi >= 0.0) and np.max(mi) < 1e-6
    assert np.max(np.asarray(max_predictive_variance(log_probs))) < 1e-12


def test_predictive_variance_matches_numpy_population_variance():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(4, 0.7), size=(9, 50))
    got = np.asarray(predictive_variance(jnp.asarray(_log(probs))))
    assert got.shape == (50, 4)
    np.testing.assert_allclose(got, np.var(probs, axis=0, ddof=0), atol=1e-6)
    got_max = max_predictive_variance(jnp.asarray(_log(probs)))
    np.testing.assert_allclose(got_max, np.var(probs, axis=0).max(-1), atol=1e-6)


def test_one_draw_has_no_epistemic_uncertainty():
    rng = np.random.default_rng(4)
    log_probs = jnp.asarray(_log(rng.dirichlet(np.ones(3), size=(1, 20))))
    np.testing.assert_allclose(mutual_information(log_probs), 0.0, atol=1e-6)
    np.testing.assert_allclose(predictive_variance(log_probs), 0.0, atol=1e-12)
    np.testing.assert_allclose(predictive_entropy(log_probs), expected_entropy(log_probs), atol=1e-6)


def test_orientation_is_declared_for_every_measure():
    assert set(HIGHER_MEANS) == set(MEASURES)
    assert set(HIGHER_MEANS.values()) <= {"uncertain", "confident"}
    assert HIGHER_MEANS["max_probability"] == "confident"
    assert HIGHER_MEANS["predictive_entropy"] == "uncertain"


def _table_log_prob_fn(log_probs):
    """Points are looked up by index: x[:, 0] holds the point's column in ``log_probs`` (S, N, C)."""
    table = jnp.asarray(log_probs)
    return lambda x: table[:, x[:, 0].astype(jnp.int32), :]


def _index_points(n):
    return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 4, 23, 1000])
def test_uncertainty_measures_batches_agree_with_the_array_functions(batch_size):
    rng = np.random.default_rng(5)
    log_probs = _log(rng.dirichlet(np.full(5, 0.5), size=(6, 23)))
    out = uncertainty_measures(_table_log_prob_fn(log_probs), _index_points(23), batch_size=batch_size)
    assert tuple(out) == MEASURES
    for name, fn in FUNCTIONS.items():
        assert out[name].shape == (23,) and out[name].dtype == np.float32
        np.testing.assert_allclose(out[name], fn(log_probs), rtol=1e-5, atol=1e-7, err_msg=name)


def test_uncertainty_measures_raise_on_nan():
    log_probs = _log(np.full((2, 4, 3), 1 / 3))
    log_probs[1, 2, 0] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        uncertainty_measures(_table_log_prob_fn(log_probs), _index_points(4))


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="log_probs"):
        predictive_entropy(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="log_probs"):
        mutual_information(jnp.zeros((2, 0, 3)))
    with pytest.raises(TypeError, match="log_probs"):
        predictive_variance(jnp.zeros((2, 4, 3), jnp.int32))
    fn = _table_log_prob_fn(_log(np.full((2, 4, 3), 1 / 3)))
    with pytest.raises(ValueError, match="batch_size"):
        uncertainty_measures(fn, _index_points(4), batch_size=0)
    with pytest.raises(ValueError, match="x"):
        uncertainty_measures(fn, np.full((4, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="log_prob_fn"):
        uncertainty_measures(lambda x: x, _index_points(4))


def test_max_probability_never_exceeds_one():
    # Near-one-hot draws: float32 logsumexp_s - log S lands an ulp above 0 for some points (1.19e-7 here),
    # so an unclipped exp would give a "confidence" above 1 that the calibration metrics reject.
    rng = np.random.default_rng(6)
    log_probs = jnp.asarray(_log(rng.dirichlet(np.full(3, 0.01), size=(7, 5000))))
    values = np.asarray(max_probability(log_probs))
    assert values.max() <= 1.0 and values.min() >= 1 / 3 - 1e-6
    assert np.asarray(all_measures(log_probs)["max_probability"]).max() <= 1.0
