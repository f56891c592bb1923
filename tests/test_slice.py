"""The ``slice`` backend: known posteriors within Monte Carlo error, the two evaluation modes, options,
determinism. Tolerances are 4 Monte Carlo standard errors from ArviZ (``mcse`` of the mean and sd)."""

import functools

import arviz as az
import jax
import numpy as np
import pytest

import ppl_uq
from ppl_uq import models
from ppl_uq.inference import _common
from ppl_uq.inference import slice as slice_backend

FAST = {"num_warmup": 150, "num_samples": 400, "num_chains": 2}


def _flat_draws(posterior):
    """(chain, draw, K) array of every latent coordinate, sites in sorted order."""
    parts = [v.reshape(v.shape[:2] + (-1,)) for _, v in sorted(posterior.draws.items())]
    return np.concatenate(parts, axis=-1)


def _mean_sd_mcse(draws):
    """Per coordinate: mean, sd, and ArviZ's Monte Carlo standard errors of both."""
    data = az.convert_to_dataset({"t": draws})
    mcse_mean = az.mcse(data, method="mean")["t"].values
    mcse_sd = az.mcse(data, method="sd")["t"].values
    flat = draws.reshape(-1, draws.shape[-1])
    return flat.mean(0), flat.std(0), mcse_mean, mcse_sd


def _assert_matches_truth(draws, mean, sd):
    est_mean, est_sd, mcse_mean, mcse_sd = _mean_sd_mcse(draws)
    assert np.all(np.abs(est_mean - mean) < 4 * mcse_mean), (est_mean, mean, mcse_mean)
    assert np.all(np.abs(est_sd - sd) < 4 * mcse_sd), (est_sd, sd, mcse_sd)


def _assert_agree(draws_a, draws_b):
    mean_a, sd_a, se_mean_a, se_sd_a = _mean_sd_mcse(draws_a)
    mean_b, sd_b, se_mean_b, se_sd_b = _mean_sd_mcse(draws_b)
    assert np.all(np.abs(mean_a - mean_b) < 4 * np.hypot(se_mean_a, se_mean_b)), (mean_a, mean_b)
    assert np.all(np.abs(sd_a - sd_b) < 4 * np.hypot(se_sd_a, se_sd_b)), (sd_a, sd_b)


def test_normal_mean_matches_the_exact_posterior(regression_data):
    x, y = regression_data
    model = functools.partial(models.normal_mean, prior_scale=2.0)
    posterior = ppl_uq.fit("slice", model, (x, y), rng_key=jax.random.key(0), **FAST)
    mean, cov = models.normal_mean_exact_posterior(x, y, prior_scale=2.0)
    _assert_matches_truth(posterior.draws["mu"][..., None], mean, np.sqrt(np.diag(cov)))
    assert posterior.info["slice_mode"] == "generic"
    assert "logits" in posterior.info["slice_mode_reason"]


@pytest.fixture(scope="module")
def regression_fit(regression_data):
    return ppl_uq.fit("slice", models.linear_regression, regression_data, rng_key=jax.random.key(1), **FAST)


def test_linear_regression_matches_the_exact_posterior(regression_data, regression_fit):
    mean, cov = models.linear_regression_exact_posterior(*regression_data)
    _assert_matches_truth(regression_fit.draws["w"], mean, np.sqrt(np.diag(cov)))


def _precision_model(ppl, x, y=None, *, shape=2.0, rate=1.0):
    """``tau ~ Gamma(shape, rate)``, ``y_n ~ N(0, 1/tau)``: a skewed, positive posterior."""
    tau = ppl.sample("tau", ppl.dist.Gamma(shape, rate))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(0.0, 1.0 / ppl.xp.sqrt(tau)), obs=y)
    return tau


def test_skewed_gamma_posterior_matches_its_closed_form():
    # Gamma(2 + N/2, 1 + sum y^2 / 2) with N = 3: skewness ~1.1, sampled on log(tau); a mirrored or
    # mis-scaled update along the line would show up in the mean or the sd.
    y = np.array([0.3, -1.2, 0.8], np.float32)
    x = np.zeros((3, 1), np.float32)
    posterior = ppl_uq.fit("slice", _precision_model, (x, y), rng_key=jax.random.key(2), **FAST)
    shape, rate = 2.0 + 1.5, 1.0 + 0.5 * float(np.sum(y.astype(np.float64) ** 2))
    _assert_matches_truth(posterior.draws["tau"][..., None], [shape / rate], [np.sqrt(shape) / rate])


@pytest.fixture(scope="module")
def spheres_fit(tiny_spheres):
    data, model = tiny_spheres
    return ppl_uq.fit("slice", model, data.train, rng_key=jax.random.key(4), num_warmup=150, num_samples=400)


def test_linear_predictor_mode_on_squared_logistic_agrees_with_nuts(tiny_spheres, spheres_fit):
    data, model = tiny_spheres
    nuts = ppl_uq.fit("nuts", model, data.train, rng_key=jax.random.key(3), num_warmup=200, num_samples=300)
    ours = spheres_fit
    assert ours.info["slice_mode"] == "linear-predictor", ours.info["slice_mode_reason"]
    _assert_agree(_flat_draws(ours), _flat_draws(nuts))
    assert ours.diagnostics()["rhat_max"] < 1.05
    stats = ours.sample_stats
    assert set(slice_backend.COUNTERS) <= set(stats)
    assert all(v.shape == (2, 400) for v in stats.values())
    assert stats["n_shrink_exhausted"].sum() == 0
    assert ours.cost["grad_evals"] == 0
    assert ours.cost["logdensity_evals"] == ours.cost["logdensity_evals_warmup"] + stats["n_evals"].sum()
    assert 0 < stats["n_overrelaxed"].mean() < ours.info["num_directions"]


def test_generic_mode_gives_the_same_posterior_as_the_linear_predictor(tiny_spheres, spheres_fit):
    data, model = tiny_spheres
    fast = spheres_fit
    options = {"num_warmup": 150, "num_samples": 400, "linear_predictor": False}
    generic = ppl_uq.fit("slice", model, data.train, rng_key=jax.random.key(6), **options)
    assert fast.info["slice_mode"] == "linear-predictor"
    assert generic.info["slice_mode"] == "generic"
    assert "linear_predictor=False" in generic.info["slice_mode_reason"]
    _assert_agree(_flat_draws(fast), _flat_draws(generic))


@pytest.mark.parametrize(
    "name, build",
    [
        ("mlp_classifier", lambda kw: functools.partial(models.mlp_classifier, hidden=(4,))),
        ("hierarchical_logistic", lambda kw: functools.partial(models.hierarchical_logistic, **kw)),
    ],
)
def test_non_affine_models_fall_back_to_the_generic_mode_and_say_why(tiny_spheres, name, build):
    data, _ = tiny_spheres
    x, y = data.train
    model = build(data.model_kwargs)
    flat = _common.flat_potential(model, x, y, jax.random.key(0))
    linear, reason = slice_backend.linear_predictor(model, x, y, flat, jax.random.key(1))
    assert linear is None
    assert "not an affine function" in reason


def test_linear_predictor_reproduces_the_potential(tiny_spheres):
    data, model = tiny_spheres
    x, y = data.train
    flat = _common.flat_potential(model, x, y, jax.random.key(0))
    linear, reason = slice_backend.linear_predictor(model, x, y, flat, jax.random.key(1))
    assert linear is not None, reason
    assert linear.jacobian.shape == (len(y), flat.init.shape[0])  # the constant class-0 logit is dropped
    for seed in range(3):
        z = flat.init + 3.0 * jax.random.normal(jax.random.key(seed), flat.init.shape)
        split = linear.prior(z) + linear.nll(linear.jacobian @ z + linear.offset)
        np.testing.assert_allclose(float(split), float(flat.potential(z)), rtol=1e-5)


def test_generic_mode_runs_the_hierarchical_model(tiny_spheres):
    data, _ = tiny_spheres
    model = functools.partial(models.hierarchical_logistic, **data.model_kwargs)
    posterior = ppl_uq.fit("slice", model, data.train, rng_key=jax.random.key(7), num_warmup=30, num_samples=20)
    assert posterior.info["slice_mode"] == "generic"
    assert posterior.draws["s"].shape == (2, 20) and np.all(posterior.draws["s"] > 0)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"num_samples": -1}, "num_samples"),
        ({"num_warmup": -5}, "num_warmup"),
        ({"width": 0.0}, "width"),
        ({"max_steps_out": 0}, "max_steps_out"),
        ({"overrelax": 1.0}, "overrelax"),
        ({"basis": "full"}, "basis"),
        ({"linear_predictor": "yes"}, "linear_predictor"),
        ({"num_samples": 4, "thinning": 5}, "thinning"),
        ({"widht": 1.0}, "unknown option"),
    ],
)
def test_bad_options_are_clear_errors(regression_data, options, words):
    with pytest.raises(ValueError, match=words):
        ppl_uq.fit("slice", models.linear_regression, regression_data, rng_key=jax.random.key(0), **options)


def test_fixed_key_is_deterministic(regression_data, regression_fit):
    again = ppl_uq.fit("slice", models.linear_regression, regression_data, rng_key=jax.random.key(1), **FAST)
    np.testing.assert_array_equal(again.draws["w"], regression_fit.draws["w"])
    np.testing.assert_array_equal(again.sample_stats["n_evals"], regression_fit.sample_stats["n_evals"])
    assert not np.array_equal(again.draws["w"][0], again.draws["w"][1])  # the chains get their own keys
