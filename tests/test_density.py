"""Density confidence (seed 002): known answers against float64 SciPy, the fit, validation, features of a
posterior ensemble, and Lemma 3.1 (the softmax scaling pathology)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from ppl_uq.harness.density import (
    DEFAULT_COV_SCALE,
    DensityConfidence,
    density_confidence,
    density_log_posterior,
    fit_density_confidence,
    max_softmax,
    posterior_features,
    softmax_scaling_demo,
)

# A 1-D, 2-class toy: class 0 at {-1, 0, 1} (mean 0, variance 2/3), class 1 at {2, 4} (mean 3, variance 1);
# priors 3/5 and 2/5.
TOY_Z = np.array([[-1.0], [0.0], [1.0], [2.0], [4.0]], np.float32)
TOY_Y = np.array([0, 0, 0, 1, 1])


def reference_log_posterior(points, means, variances, priors, cov_scale):
    """Bayes' rule with scipy.stats.norm in float64 (diagonal: a product of 1-D densities)."""
    points = np.asarray(points, np.float64)
    means, variances = np.asarray(means, np.float64), np.asarray(variances, np.float64)
    joint = np.stack([
        np.log(priors[k]) + stats.norm.logpdf(points, means[k], np.sqrt(cov_scale * variances[k])).sum(axis=1)
        for k in range(len(priors))
    ], axis=1)
    return joint - logsumexp(joint, axis=1, keepdims=True)


@pytest.mark.parametrize("cov_scale", [1.0, 2.5, 0.3])
def test_toy_posterior_matches_hand_computed_bayes_rule(cov_scale):
    density = fit_density_confidence(TOY_Z, TOY_Y, cov_scale=cov_scale)
    np.testing.assert_allclose(density.means, [[0.0], [3.0]], atol=1e-6)
    np.testing.assert_allclose(density.variances, [[2 / 3], [1.0]], rtol=1e-6)
    points = np.array([[-1.0], [1.5], [3.0], [10.0]], np.float32)
    expected = reference_log_posterior(points, [[0.0], [3.0]], [[2 / 3], [1.0]], [0.6, 0.4], cov_scale)
    got = np.asarray(density_log_posterior(density, points))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(density_confidence(density, points), np.exp(expected).max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(density_confidence(density, points, np.array([1, 1, 0, 0])),
                               np.exp(expected[np.arange(4), [1, 1, 0, 0]]), rtol=1e-4, atol=1e-7)


def test_hand_value_at_the_midpoint():
    # z = 1.5, s = 1: log-odds of class 1 = log(0.4/0.6) + log N(1.5; 3, 1) - log N(1.5; 0, 2/3), by hand.
    log_odds = np.log(0.4 / 0.6) + (-0.5 * 1.5**2 - 0.5 * np.log(1.0)) - (-0.5 * 1.5**2 / (2 / 3) - 0.5 * np.log(2 / 3))
    density = fit_density_confidence(TOY_Z, TOY_Y, cov_scale=1.0)
    posterior = np.exp(np.asarray(density_log_posterior(density, np.array([[1.5]], np.float32))))[0]
    np.testing.assert_allclose(posterior[1], 1 / (1 + np.exp(-log_odds)), rtol=1e-5)


def test_multivariate_diagonal_matches_scipy_float64():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(90, 4)) * np.array([1.0, 2.0, 0.5, 3.0]) + np.repeat(np.eye(3, 4) * 3, 30, axis=0)
    labels = np.repeat([0, 1, 2], 30)
    density = fit_density_confidence(features, labels, cov_scale=1.7)
    means = np.stack([features[labels == k].mean(axis=0) for k in range(3)])
    variances = np.stack([features[labels == k].var(axis=0) for k in range(3)])
    np.testing.assert_allclose(density.means, means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(density.variances, variances, rtol=1e-5)
    points = rng.normal(size=(7, 4)) * 3
    joint = np.stack([
        np.log(1 / 3) + stats.multivariate_normal(means[k], np.diag(1.7 * variances[k])).logpdf(points)
        for k in range(3)
    ], axis=1)
    expected = joint - logsumexp(joint, axis=1, keepdims=True)
    got = np.asarray(density_log_posterior(density, points.astype(np.float32)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logsumexp(got, axis=1), 0.0, atol=1e-5)


def test_priors_are_training_class_frequencies():
    labels = np.array([0, 0, 0, 0, 1, 2, 2, 2, 2, 2])
    features = np.arange(10, dtype=np.float32)[:, None] + labels[:, None] * 10
    density = fit_density_confidence(features, labels)
    np.testing.assert_allclose(np.exp(density.log_priors), [0.4, 0.1, 0.5], rtol=1e-6)
    # a class seen once has zero variance: floored at min_var
    assert float(density.variances[1, 0]) == pytest.approx(1e-6)
    assert isinstance(density, DensityConfidence) and density.cov_scale == DEFAULT_COV_SCALE


def test_far_apart_points_at_their_class_means_are_confident():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 50)
    features = centres[labels] + rng.normal(size=(150, 2))
    density = fit_density_confidence(features, labels, cov_scale=1.0)
    confidence = np.asarray(density_confidence(density, np.asarray(density.means)))
    assert np.all(confidence > 0.999)
    assert np.array_equal(np.argmax(np.asarray(density_log_posterior(density, density.means)), axis=1), [0, 1, 2])


def test_absent_class_raises():
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no training point"):
        fit_density_confidence(TOY_Z, np.array([0, 0, 2, 2, 2]))
    with pytest.raises(ValueError, match=r"\[2\]"):
        fit_density_confidence(TOY_Z, TOY_Y, num_classes=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"train_logits": np.array([[np.nan], [0], [1], [2], [4]])}, "NaN"),
        ({"y": np.array([0, 1])}, "shape"),
        ({"y": np.array([0, 0, 0, 1, 5]), "num_classes": 2}, "labels"),
        ({"y": np.array([0, 0.5, 0, 1, 1])}, "non-integer"),
        ({"cov_scale": 0.0}, "cov_scale"),
        ({"cov_scale": float("inf")}, "cov_scale"),
        ({"min_var": -1.0}, "min_var"),
        ({"num_classes": 0}, "num_classes"),
        ({"train_logits": np.zeros((5, 2, 2))}, r"\(N, D\)"),
    ],
)
def test_fit_rejects_bad_input(kwargs, match):
    args = {"train_logits": TOY_Z, "y": TOY_Y, **kwargs}
    with pytest.raises(ValueError, match=match):
        fit_density_confidence(args.pop("train_logits"), args.pop("y"), **args)


def test_scoring_rejects_bad_input():
    density = fit_density_confidence(TOY_Z, TOY_Y)
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        density_log_posterior(density, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        density_confidence(density, np.array([[np.inf]]))
    with pytest.raises(TypeError, match="DensityConfidence"):
        density_confidence({"means": 1}, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="labels"):
        density_confidence(density, np.zeros((2, 1)), np.array([0, 2]))
    with pytest.raises(ValueError, match="shape"):
        density_confidence(density, np.zeros((2, 1)), np.array([0]))


def test_jit_and_grad():
    density = fit_density_confidence(TOY_Z, TOY_Y, cov_scale=2.0)
    points = jnp.array([[-0.5], [2.2]])
    np.testing.assert_allclose(jax.jit(density_log_posterior)(density, points),
                               density_log_posterior(density, points), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(density_confidence)(density, points, jnp.array([0, 1])),
                               density_confidence(density, points, np.array([0, 1])), rtol=1e-6)
    grad = jax.grad(lambda z: jnp.sum(density_confidence(density, z)))(points)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_posterior_features_are_draw_mean_logits(digits_data, digits_mlp):
    x = digits_data.test[0][:50]
    for posterior in digits_mlp.values():
        features = posterior_features(posterior, x, batch_size=16)
        np.testing.assert_allclose(features, np.mean(np.asarray(posterior.logits(x)), axis=0), rtol=1e-5, atol=1e-5)
    ensemble = digits_mlp["deep-ensemble"]
    assert ensemble.num_samples == 4
    # a plain callable's output is averaged as is (here log-probabilities)
    fn = ensemble.log_prob_fn()
    np.testing.assert_allclose(posterior_features(fn, x), np.mean(np.asarray(fn(x)), axis=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="Posterior or a callable"):
        posterior_features(3, x)
    with pytest.raises(ValueError, match=r"\(S, N, C\)"):
        posterior_features(lambda v: v, x)


# -- Lemma 3.1 -------------------------------------------------------------------------------------
def test_lemma_max_softmax_non_decreasing_in_alpha_exactly():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(300, 10)) * rng.uniform(0.1, 5, size=(300, 1))
    ties = np.array([[1.0, 1.0, 0.0, -2.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, -1.0], [2.0, -1.0, -1.0, 2.0]])
    alphas = np.array([1.0, 1.001, 1.1, 1.5, 2.0, 3.0, 10.0, 50.0])
    for z in (logits, ties):
        values = np.stack([max_softmax(alpha * z) for alpha in alphas])
        assert np.all(np.diff(values, axis=0) >= 0)  # exact, no tolerance
        assert softmax_scaling_demo(z, alphas)["softmax_non_decreasing"]
    values = np.stack([max_softmax(alpha * ties) for alpha in alphas])
    assert np.all(values[:, 1] == 0.25)  # all equal: 1/C at every scale
    np.testing.assert_allclose(values[-1], [0.5, 0.25, 1 / 3, 0.5], rtol=1e-12)  # ties share the limit
    # strict rise whenever the row is not constant
    assert np.all(values[-1, [0, 2, 3]] > values[0, [0, 2, 3]])
    # alpha < 1 reverses it
    assert np.all(max_softmax(0.5 * logits) <= max_softmax(logits))


def test_scaling_demo_validates():
    with pytest.raises(ValueError, match="alphas"):
        softmax_scaling_demo(np.zeros((2, 3)), [1.0, -2.0])
    with pytest.raises(ValueError, match="alphas"):
        softmax_scaling_demo(np.zeros((2, 3)), [1.0, np.nan])
    with pytest.raises(ValueError, match="dimension"):
        softmax_scaling_demo(np.zeros(3), [1.0])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        softmax_scaling_demo(np.zeros((1, 2, 3)), [1.0])
    out = softmax_scaling_demo(np.zeros((2, 3)), [1.0, 2.0])
    assert out["mean_density_confidence"] is None and out["mean_max_softmax"] == [pytest.approx(1 / 3)] * 2


def test_density_confidence_does_not_follow_the_scaling_on_digits(digits_data, digits_mlp):
    """Softmax confidence rises with alpha; the density confidence of the same decision falls far."""
    posterior = digits_mlp["map"]
    density = fit_density_confidence(posterior_features(posterior, digits_data.train[0]), digits_data.train[1])
    test_logits = posterior_features(posterior, digits_data.test[0])
    alphas = [1.0, 2.0, 4.0, 8.0, 16.0]
    out = softmax_scaling_demo(test_logits, alphas, density=density)
    softmax, predicted = out["mean_max_softmax"], out["mean_density_confidence_predicted"]
    assert out["softmax_non_decreasing"] and np.all(np.diff(softmax) >= 0)
    assert softmax[-1] > 0.99
    # measured: predicted 0.85, 0.90, 0.30, 0.05, 0.01 (cov_scale 8)
    assert predicted[0] > 0.7 and predicted[-1] < 0.1 and predicted[-2] < predicted[0] / 4
    # the max-over-classes reading moves the other way at large alpha: it does not follow the scaling
    # either way (measured 0.86, 0.92, 0.89, 0.98, 0.99), the density's argmax leaves the network's
    confidence_1 = np.asarray(density_confidence(density, test_logits))
    confidence_4 = np.asarray(density_confidence(density, 4 * test_logits))
    assert 0.2 < np.mean(confidence_4 < confidence_1) < 0.8
