"""Inputs found by probing ``fit`` and the harness that gave wrong results silently or unclear errors (issue
8, section 1b). Each now gives a right answer or an error that names the argument and what is allowed."""

import functools
import random
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ordinary_models import (
    bernoulli_classifier,
    discrete_latent,
    glm_data,
    misspelled_logits,
    no_latent_sites,
)

import ppl_uq
from ppl_uq.gates import posterior_gate_flags
from ppl_uq.harness import evaluate_predictive
from ppl_uq.harness.attacks import pgd
from ppl_uq.harness.corruptions import gaussian_noise
from ppl_uq.harness.uncertainty import MEASURES, all_measures, predictive_entropy, uncertainty_measures
from ppl_uq.inference import ConvergenceWarning
from ppl_uq.inference._variational import loss_convergence
from ppl_uq.models import linear_regression, mlp_classifier, squared_logistic

X, LABELS, COUNTS, VALUES = glm_data()


# -- x against the model ------------------------------------------------------------------------------
def test_x_with_an_extra_axis_is_refused_before_fitting(tiny_spheres):
    data, model = tiny_spheres
    x, y = data.train
    with pytest.raises(ValueError, match=r"x of shape \(120, 1, 10\) does not fit the model"):
        ppl_uq.fit("map", model, (x[:, None, :], y), rng_key=jax.random.key(0))


def test_one_dimensional_x_is_refused_by_the_mlp():
    model = functools.partial(mlp_classifier, hidden=(4,), num_classes=2)
    with pytest.raises(ValueError, match=r"'logits' site has shape \(2,\).*x has shape \(150,\)"):
        ppl_uq.fit("map", model, (X[:, 0], LABELS.astype(np.int32)), rng_key=jax.random.key(0))


def test_x_with_the_wrong_feature_count_names_x(tiny_spheres):
    data, model = tiny_spheres  # its feature_loc and feature_scale have 10 entries
    with pytest.raises(ValueError, match=r"cannot run on x of shape \(120, 7\).*rank and feature count"):
        ppl_uq.fit("nuts", model, (data.x_train[:, :7], data.y_train), rng_key=jax.random.key(0))


# -- convergence seen over the whole trace -----------------------------------------------------------
def _trace(shape, seed=0, steps=2000, noise=1.0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return shape(t) + noise * rng.normal(size=steps)


def test_convergence_rule_sees_a_steady_fall_that_two_windows_miss():
    # Falls by 25 over the second half against noise sd 20: adjacent 10 % windows differ by 5 (se 2).
    record = loss_convergence(_trace(lambda t: 1000.0 - 0.025 * t, noise=20.0))
    assert record["loss_drift"] < 3 * record["loss_drift_se"]  # the plateau rule alone would pass it
    assert not record["converged"] and "second half" in record["convergence_reason"]
    assert record["loss_trend_t"] < -3


def test_convergence_rule_sees_a_fit_that_never_left_its_start():
    record = loss_convergence(_trace(lambda t: 0.0 * t + 6.3e7, noise=50.0))
    assert not record["converged"] and "never fell" in record["convergence_reason"]
    assert abs(record["relative_improvement"]) < 1e-5


def test_convergence_rule_passes_a_decayed_and_flat_trace():
    record = loss_convergence(_trace(lambda t: 25.0 + 500.0 * np.exp(-t / 100.0), noise=2.0))
    assert record["converged"] and record["convergence_reason"] == ""
    assert record["relative_improvement"] > 0.5


def test_svi_stopped_early_is_not_called_converged(digits_data):
    model = functools.partial(mlp_classifier, hidden=(16,), num_classes=10)
    x, y = digits_data.train
    posterior = ppl_uq.fit("svi", model, (x[:300], y[:300]), rng_key=jax.random.key(0), num_steps=200, num_samples=10)
    assert posterior.info["converged"] is False and posterior.diagnostics()["converged"] is False
    assert any("falling" in flag for flag in posterior_gate_flags(posterior))


# -- Laplace -------------------------------------------------------------------------------------------
def test_laplace_with_an_unconverged_map_fails_its_gate(regression_data):
    with pytest.warns(ConvergenceWarning):
        posterior = ppl_uq.fit("laplace", linear_regression, regression_data, rng_key=jax.random.key(0), max_iter=2)
    assert posterior.info["converged"] is False
    assert any(flag.startswith("MAP not converged") for flag in posterior_gate_flags(posterior))


def test_laplace_hessian_keeps_its_small_eigenvalues_on_badly_scaled_features(regression_data):
    # Conjugate: the Hessian is X^T X / noise^2 + I / prior^2 at every point. With x scaled by 1e3 its
    # condition number is ~1e7: float32's eigendecomposition gets the smallest eigenvalue wrong by ~1e7 * 6e-8.
    x, y = regression_data
    x = x * 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = ppl_uq.fit("laplace", linear_regression, (x, y), rng_key=jax.random.key(0), num_samples=10)
    exact = np.linalg.eigvalsh(x.astype(np.float64).T @ x + np.eye(3))
    assert posterior.info["hessian_min_eigenvalue"] == pytest.approx(exact[0], rel=1e-4)
    assert posterior.info["hessian_max_eigenvalue"] == pytest.approx(exact[-1], rel=1e-5)


# -- uncertainty of NaN log-probabilities --------------------------------------------------------------
def test_nan_log_probabilities_raise_everywhere():
    log_probs = np.log(np.full((3, 4, 2), 0.5, np.float32))
    log_probs[1, 2, 0] = np.nan
    for measure in (predictive_entropy, all_measures):
        with pytest.raises(FloatingPointError, match="NaN or \\+inf"):
            measure(log_probs)
    with pytest.raises(FloatingPointError, match="at 1 point"):
        uncertainty_measures(lambda x: jnp.asarray(log_probs)[:, : x.shape[0]], np.zeros((4, 1), np.float32))
    zero_probability = np.array([[[0.0, -np.inf]]], np.float32)  # -inf is a valid log-probability (p = 0)
    assert set(all_measures(zero_probability)) == set(MEASURES)


# -- errors that name the argument ---------------------------------------------------------------------
def test_a_model_without_latent_sites_gets_one_error_on_every_backend():
    for backend in ("map", "nuts", "svi", "laplace", "bootstrap"):
        with pytest.raises(ValueError, match="no latent sample sites"):
            ppl_uq.fit(backend, no_latent_sites, (X, VALUES), rng_key=jax.random.key(0))


def test_a_discrete_latent_site_is_refused_by_name():
    with pytest.raises(ValueError, match=r"\['switch'\] are discrete"):
        ppl_uq.fit("slice", discrete_latent, (X, VALUES), rng_key=jax.random.key(0))


def test_a_misspelled_logits_site_fits_with_integer_labels_and_the_harness_says_why():
    labels = COUNTS % 3
    posterior = ppl_uq.fit("map", misspelled_logits, (X, labels), rng_key=jax.random.key(0))
    assert posterior.observed[1].dtype == np.int32  # a Categorical likelihood keeps integer labels
    with pytest.raises(ValueError, match="records no 'logits' site"):
        evaluate_predictive(posterior.log_prob_fn(), X[:5], labels[:5])


def test_keys_that_are_not_one_key_are_refused():
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"batch of keys of shape \(3,\)"):
        ppl_uq.fit("map", bernoulli_classifier, (X, LABELS), rng_key=keys)
    with pytest.raises(ValueError, match="rng_key must be one JAX PRNG key"):
        ppl_uq.fit("map", bernoulli_classifier, (X, LABELS), rng_key=7)


def test_numpy_and_jax_scalars_are_accepted_as_options(regression_data):
    posterior = ppl_uq.fit("svi", linear_regression, regression_data, rng_key=jax.random.key(0),
                           num_steps=np.int64(300), num_samples=jnp.int32(20), learning_rate=np.float32(0.05))
    assert posterior.options["num_steps"] == 300 and type(posterior.options["num_steps"]) is int
    assert posterior.num_samples == 20
    with pytest.raises(ValueError, match=r"option 'num_steps' must be an integer >= 1, got 0"):
        ppl_uq.fit("svi", linear_regression, regression_data, rng_key=jax.random.key(0), num_steps=np.int64(0))


def test_attacks_and_corruptions_without_a_key_say_so(tiny_spheres):
    data, model = tiny_spheres
    posterior = ppl_uq.fit("map", model, data.train, rng_key=jax.random.key(0))
    with pytest.raises(ValueError, match="rng_key is required"):
        pgd(posterior, data.x_val[:4], data.y_val[:4], eps=np.float32(0.1), rng_key=None)
    with pytest.raises(ValueError, match="rng_key is required"):
        gaussian_noise(None, np.zeros((2, 3), np.float32), 0.1)


def test_labels_outside_the_bernoulli_support_are_refused():
    with pytest.raises(ValueError, match=r"outside the support of the likelihood BernoulliLogits.*\[7\.0\]"):
        ppl_uq.fit("slice", bernoulli_classifier, (X, LABELS * 7), rng_key=jax.random.key(0))


def test_a_prior_that_overflows_float32_gets_a_clear_initialisation_error(tiny_spheres):
    data, _ = tiny_spheres
    model = functools.partial(squared_logistic, **{**data.model_kwargs, "prior_scale": 1e30})
    with pytest.raises(ValueError, match="not finite at any of the starting points.*scales are moderate"):
        ppl_uq.fit("slice", model, data.train, rng_key=jax.random.key(0))


# -- reproducibility -----------------------------------------------------------------------------------
def test_nuts_records_its_chain_method_and_repeats_with_it(regression_data):
    options = dict(num_warmup=50, num_samples=20, num_chains=2)
    first = ppl_uq.fit("nuts", linear_regression, regression_data, rng_key=jax.random.key(0), **options)
    method = first.options["chain_method"]
    assert method in ("parallel", "sequential")
    again = ppl_uq.fit("nuts", linear_regression, regression_data, rng_key=jax.random.key(0), **options,
                       chain_method=method)
    np.testing.assert_array_equal(first.draws["w"], again.draws["w"])


def test_pyro_nuts_leaves_the_global_random_states_alone(regression_data):
    pytest.importorskip("pyro")
    import torch

    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.random(), random.random(), float(torch.rand(1)))
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    ppl_uq.fit("pyro-nuts", linear_regression, regression_data, rng_key=jax.random.key(0),
               num_warmup=10, num_samples=10, num_chains=1)
    assert (np.random.random(), random.random(), float(torch.rand(1))) == expected
