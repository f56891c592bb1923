"""Lipschitz upper bounds of dense networks: spectral norms against NumPy's matrix 2-norm, the product as a
true bound on the logits' finite-difference ratios, the sigmoid's factor 1/4, per-draw shapes, bad input."""

import numpy as np
import pytest

from ppl_uq.harness import lipschitz_bounds, spectral_norms


def _logits(weights, biases, x, activation):
    h = x
    for layer, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = h @ w + b
        if layer < len(weights) - 1:
            h = np.maximum(h, 0.0) if activation == "relu" else 1.0 / (1.0 + np.exp(-h))
    return h


def _random_net(rng, sizes, num_draws):
    weights = [rng.normal(size=(num_draws, m, n)) / np.sqrt(m) for m, n in zip(sizes[:-1], sizes[1:], strict=True)]
    biases = [rng.normal(size=(num_draws, n)) for n in sizes[1:]]
    return weights, biases


def test_spectral_norms_are_the_matrix_two_norms():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(4, 7, 3))
    np.testing.assert_allclose(spectral_norms(stack), [np.linalg.norm(m, 2) for m in stack], rtol=1e-12)
    assert spectral_norms(np.diag([3.0, -5.0, 1.0])) == pytest.approx(5.0)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_the_product_bounds_every_finite_difference_ratio(activation):
    rng = np.random.default_rng(1)
    weights, biases = _random_net(rng, [6, 8, 5, 3], num_draws=3)
    draws = {f"w{i}": w for i, w in enumerate(weights)} | {f"b{i}": b for i, b in enumerate(biases)}
    bounds = lipschitz_bounds(draws, activation=activation)
    assert set(bounds["layers"]) == {"w0", "w1", "w2"} and bounds["product"].shape == (3,)
    expected = np.prod([spectral_norms(w) for w in weights], axis=0) * (0.25 ** 2 if activation == "sigmoid" else 1.0)
    np.testing.assert_allclose(bounds["product"], expected, rtol=1e-12)
    x = rng.normal(size=(2000, 6))
    x2 = x + 1e-3 * rng.normal(size=x.shape)
    for s in range(3):
        net = ([w[s] for w in weights], [b[s] for b in biases])
        ratio = np.linalg.norm(_logits(*net, x, activation) - _logits(*net, x2, activation), axis=1) / np.linalg.norm(x - x2, axis=1)
        assert ratio.max() <= bounds["product"][s]
        assert ratio.max() > 0.02 * bounds["product"][s]  # a bound of the right size, not an overflow


def test_a_linear_map_attains_its_bound():
    w = np.array([[2.0, 0.0], [0.0, 0.5]])
    bounds = lipschitz_bounds({"w0": w})
    assert bounds["product"].tolist() == [2.0]  # attained along the first axis


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="no dense weight sites"):
        lipschitz_bounds({"theta": np.ones((2, 2))})
    with pytest.raises(ValueError, match="without gaps"):
        lipschitz_bounds({"w0": np.ones((2, 2)), "w2": np.ones((2, 2))})
    with pytest.raises(ValueError, match="activation must be one of"):
        lipschitz_bounds({"w0": np.ones((2, 2))}, activation="softplus")
    with pytest.raises(ValueError, match="NaN or inf"):
        lipschitz_bounds({"w0": np.array([[np.nan, 1.0], [0.0, 1.0]])})
    with pytest.raises(ValueError, match="different numbers of draws"):
        lipschitz_bounds({"w0": np.ones((3, 2, 2)), "w1": np.ones((2, 2, 2))})
    with pytest.raises(ValueError, match=r"\(m, n\) or \(S, m, n\)"):
        spectral_norms(np.ones(3))


def test_a_posterior_gets_one_bound_per_draw_that_holds_on_real_digits(digits_mlp, digits_data):
    ensemble = digits_mlp["deep-ensemble"]
    bounds = lipschitz_bounds(ensemble, activation="tanh")
    assert list(bounds["layers"]) == ["w0", "w1"] and bounds["product"].shape == (ensemble.num_samples,)
    x = np.asarray(digits_data.test[0][:200])
    x2 = x + 1e-2 * np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    logits = np.asarray(ensemble.logits(x)), np.asarray(ensemble.logits(x2))  # (S, N, 10) each
    ratio = np.linalg.norm(logits[0] - logits[1], axis=-1) / np.linalg.norm(x - x2, axis=-1)  # (S, N)
    assert np.all(ratio.max(axis=1) <= bounds["product"] * (1 + 1e-4))  # float32 logits
