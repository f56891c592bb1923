"""The autoencoder-with-softmax model (Szegedy et al.'s AE400-10): sites and shapes, logits and the
reconstruction recomputed by hand, a MAP fit that classifies real digits, the dense-net readers (Lipschitz
bounds, unit inspection) on its code, a saved posterior that reloads, bad hyper-parameters."""

import functools
import warnings

import jax
import numpy as np
import pytest
from numpyro import handlers

import ppl_uq
from ppl_uq.harness import dense_hidden_activations, lipschitz_bounds
from ppl_uq.inference import ConvergenceWarning
from ppl_uq.models import autoencoder_classifier, numpyro_handle


def test_sites_logits_and_reconstruction_are_what_the_docstring_says():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 6)).astype(np.float32)
    model = functools.partial(autoencoder_classifier, code=3, num_classes=4)
    trace = handlers.trace(handlers.seed(lambda *a: model(numpyro_handle(), *a), rng_seed=0)).get_trace(x, np.arange(5) % 4)
    shapes = {name: site["value"].shape for name, site in trace.items() if site["type"] == "sample" and not site["is_observed"]}
    assert shapes == {"w0": (6, 3), "b0": (3,), "w1": (3, 4), "b1": (4,), "decoder_w": (3, 6), "decoder_b": (6,)}
    v = {name: np.asarray(trace[name]["value"], np.float64) for name in shapes}
    hidden = 1.0 / (1.0 + np.exp(-(x @ v["w0"] + v["b0"])))
    np.testing.assert_allclose(trace["logits"]["value"], hidden @ v["w1"] + v["b1"], rtol=1e-5, atol=1e-5)
    expected = 1.0 / (1.0 + np.exp(-(hidden @ v["decoder_w"] + v["decoder_b"])))
    np.testing.assert_allclose(trace["reconstruction"]["fn"].base_dist.loc, expected, rtol=1e-5, atol=1e-5)
    assert trace["reconstruction"]["is_observed"] and trace["y"]["is_observed"]


def test_map_classifies_real_digits_and_the_dense_readers_see_its_code(digits_data, tmp_path):
    x, y = digits_data.train
    model = functools.partial(autoencoder_classifier, code=16, num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = ppl_uq.fit("map", model, (x[:400], y[:400]), rng_key=jax.random.key(0), max_iter=150)
    x_test, y_test = digits_data.test
    accuracy = float(np.mean(np.argmax(np.asarray(posterior.logits(x_test))[0], -1) == y_test))
    assert accuracy > 0.8  # chance is 0.1
    code = dense_hidden_activations(posterior, x_test, layer=0, activation="sigmoid")
    assert code.shape == (len(x_test), 16) and np.all((code > 0) & (code < 1))
    assert list(lipschitz_bounds(posterior, activation="sigmoid")["layers"]) == ["w0", "w1"]
    loaded = ppl_uq.load_posterior(posterior.save(tmp_path / "ae.nc"))
    np.testing.assert_array_equal(np.asarray(loaded.logits(x_test[:5])), np.asarray(posterior.logits(x_test[:5])))


@pytest.mark.parametrize("kwargs,message", [
    ({"code": 0}, "code must be an integer >= 1"),
    ({"num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"activation": "swish"}, "activation must be one of"),
    ({"reconstruction_sd": 0.0}, "reconstruction_sd must be a number > 0"),
])
def test_bad_hyper_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        autoencoder_classifier(numpyro_handle(), np.zeros((2, 3), np.float32), **kwargs)
