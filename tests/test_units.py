"""Unit inspection: hidden activations recomputed by hand, top inputs of a direction, the unit/random
split and its key, the image-row figure, bad input."""

import jax
import numpy as np
import pytest

from ppl_uq.harness import dense_hidden_activations, inspect_units, top_inputs
from ppl_uq.report.figures import plot_image_rows


def _draws(rng):
    return {"w0": rng.normal(size=(2, 4, 5)), "b0": rng.normal(size=(2, 5)), "w1": rng.normal(size=(2, 5, 3)),
            "b1": rng.normal(size=(2, 3)), "w2": rng.normal(size=(2, 3, 2)), "b2": rng.normal(size=(2, 2))}


def test_hidden_activations_are_the_layers_outputs():
    rng = np.random.default_rng(0)
    draws, x = _draws(rng), rng.normal(size=(6, 4))
    first = np.maximum(x @ draws["w0"][1] + draws["b0"][1], 0.0)
    np.testing.assert_allclose(dense_hidden_activations(draws, x, layer=0, activation="relu", draw=1), first, rtol=1e-12)
    second = np.tanh(np.tanh(x @ draws["w0"][0] + draws["b0"][0]) @ draws["w1"][0] + draws["b1"][0])
    np.testing.assert_allclose(dense_hidden_activations(draws, x, layer=1, activation="tanh"), second, rtol=1e-12)
    with pytest.raises(ValueError, match="hidden layer index in \\[0, 2\\)"):
        dense_hidden_activations(draws, x, layer=2, activation="relu")  # the logits are not a hidden layer
    with pytest.raises(ValueError, match="draw must be an index in \\[0, 2\\)"):
        dense_hidden_activations(draws, x, layer=0, activation="relu", draw=2)
    with pytest.raises(ValueError, match="x must be \\(N, 4\\)"):
        dense_hidden_activations(draws, x[:, :3], layer=0, activation="relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        dense_hidden_activations(draws, x, layer=0, activation="swish")


def test_top_inputs_rank_by_the_projection():
    phi = np.array([[0.0, 1.0], [3.0, 0.0], [1.0, 1.0], [2.0, 2.5]])
    assert top_inputs(phi, np.array([1.0, 0.0]), 2).tolist() == [1, 3]
    assert top_inputs(phi, np.array([0.0, 1.0]), 3).tolist() == [3, 0, 2]
    assert top_inputs(phi, np.array([1.0, 1.0]) / np.sqrt(2), 1).tolist() == [3]
    with pytest.raises(ValueError, match="k must be an integer in \\[1, 4\\]"):
        top_inputs(phi, np.array([1.0, 0.0]), 5)
    with pytest.raises(ValueError, match="direction \\(U,\\)"):
        top_inputs(phi, np.ones(3), 1)


def test_inspect_units_gives_units_then_random_directions_fixed_by_the_key(tmp_path):
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(50, 6))
    out = inspect_units(phi, units=[2, 5], num_random=3, k=4, rng_key=jax.random.key(0))
    assert list(out) == ["unit 2", "unit 5", "random 0", "random 1", "random 2"]
    assert out["unit 2"].tolist() == np.argsort(-phi[:, 2])[:4].tolist()
    again = inspect_units(phi, units=[2, 5], num_random=3, k=4, rng_key=jax.random.key(0))
    assert all(np.array_equal(out[name], again[name]) for name in out)
    other = inspect_units(phi, units=[], num_random=3, k=4, rng_key=jax.random.key(1))
    assert not all(np.array_equal(out[f"random {i}"], other[f"random {i}"]) for i in range(3))
    with pytest.raises(ValueError, match="units must be indices in \\[0, 6\\)"):
        inspect_units(phi, units=[6], num_random=0, k=1, rng_key=jax.random.key(0))
    images = rng.uniform(size=(50, 16))
    path = tmp_path / "units.png"
    plot_image_rows(path, {name: images[idx] for name, idx in out.items()}, image_shape=(4, 4), title="units")
    assert path.stat().st_size > 1000 and list(tmp_path.iterdir()) == [path]
