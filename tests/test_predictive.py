"""The posterior predictive and its metrics: hand-computed values, batching invariance, log-space
accuracy, and clear errors on bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_uq.harness import evaluate_predictive, jensen_log_mean, predictive_log_mean, predictive_log_probs

# Two draws, four points, three classes: per-draw probabilities chosen by hand.
PROBS = np.array(
    [
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]],
        [[0.5, 0.4, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]],
    ]
)
LABELS = np.array([0, 1, 0, 0])
# Predictive means: [.6 .3 .1], [.2 .7 .1], [.2 .2 .6], [.3 .6 .1] -> decisions 0, 1, 2, 1.
EXPECTED = {
    "accuracy": 2 / 4,
    "avg_confidence": (0.6 + 0.7 + 0.6 + 0.6) / 4,
    "nll": -(np.log(0.6) + np.log(0.7) + np.log(0.2) + np.log(0.3)) / 4,
}


def _table_log_prob_fn(probs):
    """A log_prob_fn that looks its points up by index: x[:, 0] holds the point's row in ``probs``."""
    table = jnp.asarray(np.log(probs), jnp.float32)

    def log_prob_fn(x):
        return table[:, x[:, 0].astype(jnp.int32), :]

    return log_prob_fn


def _index_points(n):
    return np.stack([np.arange(n), np.ones(n)], axis=1).astype(np.float32)


def test_metrics_equal_hand_computed_values():
    result = evaluate_predictive(_table_log_prob_fn(PROBS), _index_points(4), LABELS)
    for name, value in EXPECTED.items():
        assert result[name] == pytest.approx(value, rel=1e-6), name
    assert result["num_draws"] == 2 and result["num_points"] == 4
    assert "argmax" in result["decision_rule"] and "S_eval" in result["decision_rule"]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 100])
def test_batching_gives_the_same_answer(batch_size):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=(5, 23))  # (S, N, C)
    labels = rng.integers(0, 3, size=23)
    log_prob_fn = _table_log_prob_fn(probs)
    whole = evaluate_predictive(log_prob_fn, _index_points(23), labels, batch_size=23)
    chunked = evaluate_predictive(log_prob_fn, _index_points(23), labels, batch_size=batch_size)
    for name in ("accuracy", "avg_confidence", "nll"):
        assert chunked[name] == pytest.approx(whole[name], rel=1e-6, abs=1e-7), name
    mean = probs.mean(axis=0)
    assert whole["nll"] == pytest.approx(-np.mean(np.log(mean[np.arange(23), labels])), rel=1e-5)
    assert whole["accuracy"] == pytest.approx(np.mean(mean.argmax(axis=1) == labels))
    assert whole["avg_confidence"] == pytest.approx(np.mean(mean.max(axis=1)), rel=1e-5)
    np.testing.assert_allclose(
        predictive_log_probs(log_prob_fn, _index_points(23), batch_size=batch_size), np.log(mean), rtol=1e-5
    )


def test_predictive_log_mean_matches_float64_and_stays_in_log_space():
    rng = np.random.default_rng(2)
    log_probs = jax.nn.log_softmax(rng.normal(scale=4.0, size=(1000, 50, 2)), axis=-1)
    naive = np.log(np.mean(np.exp(np.asarray(log_probs, np.float64)), axis=0))
    ours = np.asarray(predictive_log_mean(jnp.asarray(log_probs, jnp.float32)), np.float64)
    np.testing.assert_allclose(ours, naive, rtol=1e-5)
    # Far below float32's smallest positive number: a naive float32 mean would give log(0) = -inf.
    tiny = jnp.full((10, 3, 2), -200.0, jnp.float32)
    np.testing.assert_allclose(np.asarray(predictive_log_mean(tiny)), -200.0, rtol=1e-6)
    assert np.all(np.asarray(jensen_log_mean(log_probs)) <= np.asarray(predictive_log_mean(log_probs)) + 1e-6)


def test_bad_inputs_raise_clear_errors():
    fn = _table_log_prob_fn(PROBS)
    x = _index_points(4)
    bad_x = x.copy()
    bad_x[1, 1] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        evaluate_predictive(fn, bad_x, LABELS)
    with pytest.raises(ValueError, match="x must have at least 2"):
        evaluate_predictive(fn, np.arange(4.0), LABELS)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        evaluate_predictive(fn, x, LABELS[:3])
    with pytest.raises(ValueError, match=r"labels in y must lie in \{0, ..., 2\}"):
        evaluate_predictive(fn, x, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        evaluate_predictive(fn, x, LABELS, batch_size=0)
    with pytest.raises(ValueError, match=r"log_prob_fn must map x"):
        evaluate_predictive(lambda xb: fn(xb)[0], x, LABELS)


def test_ensemble_size_accuracy_matches_hand_counts():
    from ppl_uq.harness import ensemble_size_accuracy

    # 4 draws, 2 points, 2 classes; the labels are class 0 for both points.
    probs = np.array([
        [[0.9, 0.1], [0.4, 0.6]],
        [[0.2, 0.8], [0.45, 0.55]],
        [[0.6, 0.4], [0.3, 0.7]],
        [[0.7, 0.3], [0.9, 0.1]],
    ], np.float32)
    log_probs = np.log(probs)
    x = np.array([[0.0, 0.0], [1.0, 0.0]], np.float32)  # the first coordinate names the point
    y = np.array([0, 0])

    def model(inputs):
        return jnp.asarray(log_probs)[:, inputs[:, 0].astype(jnp.int32)]

    # k = 1: draw accuracies 1/2, 0, 1/2, 1 -> 0.5. k = 2: groups (0, 1) means [.55, .45] right, [.425, .575]
    # wrong; (2, 3) means [.65, .35] right, [.6, .4] right -> 3/4. k = 3: one group (0, 1, 2): [.567, .433]
    # right, [.383, .617] wrong -> 1/2 (draw 3 left out). k = 4: [.6, .4] right, [.5125, .4875] right -> 1.
    got = ensemble_size_accuracy(model, x, y, [1, 2, 3, 4], batch_size=1)
    assert got == pytest.approx({1: 0.5, 2: 0.75, 3: 0.5, 4: 1.0})
    with pytest.raises(ValueError, match="sizes"):
        ensemble_size_accuracy(model, x, y, [5])
