"""One contract over every backend: a declared KIND, site names and shapes, InferenceData groups, log_probs
shape and differentiability, redraw independence and determinism under a fixed key."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_uq
from ppl_uq.inference import BACKENDS
from ppl_uq.posterior import KINDS, Posterior

#: Cheap settings per backend for a 10-dimensional spheres model (a contract check, not an accuracy one).
TINY_OPTIONS = {
    "map": {},
    "laplace": {"num_samples": 40},
    "nuts": {"num_warmup": 40, "num_samples": 30, "num_chains": 2},
    "slice": {"num_warmup": 40, "num_samples": 30, "num_chains": 2},
    "svi": {"guide": "fullrank", "num_steps": 200, "num_samples": 40},
    "ml-mixture": {"guide": "meanfield", "num_steps": 200, "num_samples": 40, "num_particles": 3},
    "bootstrap": {"num_members": 12},
    "deep-ensemble": {"num_members": 8},
    "mc-dropout": {"dropout_sites": ["w"], "batch_size": 32, "num_epochs": 3, "num_samples": 20},
    "pyro-nuts": {"num_warmup": 30, "num_samples": 20, "num_chains": 2},
    "pyro-svi": {"num_steps": 200, "num_samples": 40, "learning_rate": 0.05},
}

OPTIMISERS = {"map", "laplace", "svi", "ml-mixture", "bootstrap", "deep-ensemble", "mc-dropout", "pyro-svi"}


def test_every_registered_backend_is_covered():
    assert set(TINY_OPTIONS) == set(ppl_uq.backends())


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_declares_a_valid_kind(backend):
    module = importlib.import_module(BACKENDS[backend])
    assert getattr(module, "KIND", None) in KINDS, f"{BACKENDS[backend]} must declare KIND, one of {KINDS}"


def test_posterior_kind_defaults_to_the_backends_and_is_checked():
    draws = {"w": np.zeros((1, 1, 2))}
    assert Posterior(method="nuts", model=None, draws=draws, options={}).is_mcmc  # a cached row's Posterior
    assert Posterior(method="laplace", model=None, draws=draws, options={}).kind == "variational"
    handmade = Posterior(method="handmade", model=None, draws=draws, options={})
    assert handmade.kind is None and not handmade.is_mcmc
    assert Posterior(method="handmade", model=None, draws=draws, options={}, kind="mcmc").is_mcmc
    with pytest.raises(ValueError, match="kind must be one of"):
        Posterior(method="map", model=None, draws=draws, options={}, kind="sampling")


@pytest.fixture(scope="module")
def fitted(tiny_spheres):
    """Each backend fitted twice with the same key and once redrawn with another."""
    if "pyro-nuts" in TINY_OPTIONS:
        pytest.importorskip("pyro")
    data, model = tiny_spheres
    out = {}
    for backend, options in TINY_OPTIONS.items():
        first = ppl_uq.fit(backend, model, data.train, rng_key=jax.random.key(11), **options)
        again = ppl_uq.fit(backend, model, data.train, rng_key=jax.random.key(11), **options)
        other = first.redraw(jax.random.key(12))
        out[backend] = (first, again, other)
    return out


@pytest.mark.parametrize("backend", sorted(TINY_OPTIONS))
def test_sites_shapes_and_inference_data(fitted, tiny_spheres, backend):
    data, _ = tiny_spheres
    posterior, _, _ = fitted[backend]
    assert posterior.method == backend
    kind = importlib.import_module(BACKENDS[backend]).KIND
    assert posterior.kind == kind and posterior.is_mcmc == (kind == "mcmc")
    assert set(posterior.draws) == {"w", "b"}
    chains, draws = posterior.num_chains, posterior.num_draws
    assert posterior.draws["w"].shape == (chains, draws, data.x_train.shape[1])
    assert posterior.draws["b"].shape == (chains, draws)
    assert posterior.num_samples == chains * draws
    idata = posterior.to_inference_data()
    assert {"posterior", "observed_data"} <= set(idata.groups())
    assert idata.posterior["w"].shape == (chains, draws, data.x_train.shape[1])
    if backend in OPTIMISERS:
        assert "loss_trace" in idata.groups() and np.all(np.isfinite(posterior.loss_trace))
    if posterior.is_mcmc:
        assert len(idata.sample_stats.data_vars) > 0
        if backend in {"nuts", "pyro-nuts"}:
            assert "diverging" in idata.sample_stats
        diagnostics = posterior.diagnostics()
        assert {"rhat_max", "ess_bulk_min", "divergences"} <= set(diagnostics)
    summary = posterior.summary()
    assert len(summary) == data.x_train.shape[1] + 1
    assert posterior.cost["fit_seconds"] > 0


@pytest.mark.parametrize("backend", sorted(TINY_OPTIONS))
def test_log_probs_are_normalised_and_differentiable(fitted, tiny_spheres, backend):
    data, _ = tiny_spheres
    posterior, _, _ = fitted[backend]
    x = data.x_val[:7]
    log_probs = np.asarray(posterior.log_probs(x))
    assert log_probs.shape == (posterior.num_samples, 7, 2)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    # Matches the model's own logits at the first draw, computed by hand.
    w = posterior.draws["w"][0, 0]
    b = posterior.draws["b"][0, 0]
    phi = (x.astype(np.float64) ** 2 - data.feature_loc) / data.feature_scale
    a = phi @ w + b
    np.testing.assert_allclose(log_probs[0, :, 1], -np.logaddexp(0.0, -a), rtol=1e-4, atol=1e-4)
    grad = jax.grad(lambda z: jnp.sum(posterior.log_prob_fn()(z)[:, :, 1]))(jnp.asarray(x))
    assert grad.shape == x.shape and np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)


@pytest.mark.parametrize("backend", sorted(TINY_OPTIONS))
def test_determinism_and_redraw_independence(fitted, backend):
    first, again, other = fitted[backend]
    for site in first.draws:
        np.testing.assert_array_equal(first.draws[site], again.draws[site], err_msg=f"{backend}: same key, different draws")
    assert other.method == backend and other.draws["w"].shape == first.draws["w"].shape
    assert other.kind == first.kind and other.options == first.options
    if backend == "map":
        # A point estimate: an independent refit lands on the same optimum.
        np.testing.assert_allclose(other.draws["w"], first.draws["w"], rtol=1e-3, atol=1e-3)
    else:
        assert not np.allclose(other.draws["w"], first.draws["w"]), f"{backend}: redraw returned the same draws"
