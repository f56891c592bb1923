"""The optimisation backends ``map``, ``laplace``, ``bootstrap`` and ``deep-ensemble`` and their shared
L-BFGS minimiser: known answers (conjugate posteriors), statistical checks with Monte Carlo tolerances,
errors, determinism."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_uq.inference as inf
from ppl_uq.data.spheres import make_spheres
from ppl_uq.inference import bootstrap, deep_ensemble, laplace
from ppl_uq.inference._common import flat_potential
from ppl_uq.inference._optim import ConvergenceWarning, fit_members, lbfgs_minimize
from ppl_uq.models.conjugate import (
    linear_regression,
    linear_regression_exact_posterior,
    normal_mean,
)
from ppl_uq.models.logistic import squared_logistic
from ppl_uq.models.mlp import mlp_classifier


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray, np.ndarray]:
    """50 points, 3 correlated features, noise sd 1: a conjugate Gaussian posterior."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.7]])
    y = x @ np.array([1.5, -2.0, 0.5]) + rng.normal(size=50)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture(scope="module")
def spheres():
    return make_spheres(jax.random.key(0), dim=10, num_train=200, num_val=2000)


def predictive_accuracy(posterior, x, y) -> float:
    log_probs = posterior.log_probs(x)
    mean_log_prob = jax.scipy.special.logsumexp(log_probs, axis=0) - np.log(log_probs.shape[0])
    return float(np.mean(np.asarray(mean_log_prob).argmax(-1) == y))


# --- the minimiser ------------------------------------------------------------------------------


def test_minimiser_vmaps_over_starts_and_weights_like_one_at_a_time():
    a = jax.random.normal(jax.random.key(0), (30, 4))

    def fun(z, w):
        return jnp.sum(w * jax.nn.softplus(a @ z)) + 0.5 * jnp.sum((z - 1.0) ** 2)

    inits = jax.random.normal(jax.random.key(1), (5, 4)) * 3
    weights = jax.random.uniform(jax.random.key(2), (5, 30), maxval=2.0)
    options = dict(max_iter=200, tol=1e-5)
    vmapped = jax.jit(jax.vmap(lambda z0, w: lbfgs_minimize(lambda z: fun(z, w), z0, **options)))(inits, weights)
    mapped = jax.jit(lambda z0, w: fit_members(fun, z0, w, **options))(inits, weights)
    solve_alone = jax.jit(lambda z0, w: lbfgs_minimize(lambda z: fun(z, w), z0, **options))
    for m in range(5):
        alone = solve_alone(inits[m], weights[m])
        np.testing.assert_allclose(vmapped.params[m], alone.params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mapped.params[m], alone.params, rtol=1e-5, atol=1e-6)
        assert int(vmapped.num_iter[m]) == int(alone.num_iter)
    assert bool(np.all(vmapped.converged)) and float(np.max(vmapped.grad_norm)) <= 1e-5
    # frozen after convergence: the trace is padded with the final loss
    trace, steps = np.asarray(vmapped.loss_trace), np.asarray(vmapped.num_iter)
    for m in range(5):
        assert np.all(trace[m, steps[m]:] == trace[m, -1])
        assert np.all(np.diff(trace[m, : steps[m] + 1]) <= 1e-5 * abs(trace[m, 0]))  # decreasing


# --- map --------------------------------------------------------------------------------------


def test_map_equals_the_conjugate_posterior_mode(regression):
    x, y = regression
    posterior = inf.fit("map", linear_regression, (x, y), rng_key=jax.random.key(1))
    mode, _ = linear_regression_exact_posterior(x, y)
    assert posterior.draws["w"].shape == (1, 1, 3)
    np.testing.assert_allclose(posterior.draws["w"][0, 0], mode, atol=2e-5)
    assert posterior.info["converged"] and posterior.info["grad_norm"] <= 1e-4
    trace = posterior.loss_trace
    assert trace.ndim == 1 and trace.shape[0] == posterior.info["iterations_max"] + 1
    assert trace[-1] < trace[0]
    assert posterior.cost["fit_seconds"] > 0 and posterior.cost["compile_seconds"] > 0


def test_map_reports_non_convergence(regression):
    with pytest.warns(ConvergenceWarning, match="map: 1 of 1"):
        posterior = inf.fit("map", linear_regression, regression, rng_key=jax.random.key(1), max_iter=1)
    assert not posterior.info["converged"] and posterior.info["grad_norm"] > 1e-4
    assert posterior.loss_trace.shape == (2,)


def test_map_and_bootstrap_classify_small_spheres(spheres):
    model = functools.partial(squared_logistic, **spheres.model_kwargs)
    point = inf.fit("map", model, spheres, rng_key=jax.random.key(2))
    assert point.info["converged"]
    assert predictive_accuracy(point, spheres.x_val, spheres.y_val) >= 0.99
    ensemble = inf.fit("bootstrap", model, spheres, rng_key=jax.random.key(3), num_members=20)
    assert ensemble.draws["w"].shape == (1, 20, 10) and ensemble.info["num_converged"] == 20
    assert predictive_accuracy(ensemble, spheres.x_val, spheres.y_val) >= 0.99


# --- laplace ------------------------------------------------------------------------------------


def test_laplace_is_exact_on_a_gaussian_posterior(regression):
    x, y = regression
    mean, cov = linear_regression_exact_posterior(x, y)
    options = {**laplace.DEFAULTS}
    _, result, gaussian = laplace.fit_gaussian(linear_regression, x, y, rng_key=jax.random.key(0), options=options)
    np.testing.assert_allclose(gaussian.mean, mean, atol=2e-5)
    np.testing.assert_allclose(gaussian.covariance(), cov, rtol=1e-4, atol=1e-7)

    num_samples = 4000
    draws = np.asarray(gaussian.sample(jax.random.key(4), num_samples))
    assert draws.shape == (num_samples, 3)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(num_samples))
    # sd of a sample covariance entry: sqrt((cov_ii cov_jj + cov_ij^2) / S)
    entry_sd = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / num_samples)
    assert np.all(np.abs(np.cov(draws.T) - cov) < 4 * entry_sd)
    assert bool(result.converged)


def test_laplace_backend_draws_and_redraw(regression):
    x, y = regression
    mean, cov = linear_regression_exact_posterior(x, y)
    posterior = inf.fit("laplace", linear_regression, (x, y), rng_key=jax.random.key(5), num_samples=2000)
    again = posterior.redraw(jax.random.key(6))
    first, second = posterior.draws["w"][0], again.draws["w"][0]
    assert first.shape == (2000, 3) and again.method == "laplace" and second.shape == first.shape
    assert posterior.info["jitter"] == 0.0 and posterior.info["map_converged"]
    assert not np.allclose(first, second)
    sd = np.sqrt(np.diag(cov))
    for draws in (first, second):  # both from the exact posterior
        assert np.all(np.abs(draws.mean(0) - mean) < 4 * sd / np.sqrt(2000))
        assert np.all(np.abs(draws.std(0) - sd) < 4 * sd / np.sqrt(2 * 2000))


def _flat_direction_model(ppl, x, y=None):
    """``v`` has an improper flat prior and no likelihood: the Hessian has a zero eigenvalue."""
    mu = ppl.sample("mu", ppl.dist.Normal(0.0, 1.0))
    ppl.sample("v", ppl.dist.ImproperUniform(ppl.dist.constraints.real, (), ()))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(mu, 1.0), obs=y)


def test_laplace_refuses_a_singular_hessian_unless_jitter_is_given():
    # called through the module: the registry's class check samples the (improper) prior
    x = np.zeros((10, 1), np.float32)
    y = np.linspace(-1.0, 1.0, 10, dtype=np.float32) + 0.3
    with pytest.raises(laplace.NotPositiveDefiniteError, match="smallest eigenvalue 0"):
        laplace.fit(_flat_direction_model, x, y, rng_key=jax.random.key(0), options={**laplace.DEFAULTS})
    options = {**laplace.DEFAULTS, "jitter": 1.0, "num_samples": 4000}
    posterior = laplace.fit(_flat_direction_model, x, y, rng_key=jax.random.key(0), options=options)
    assert posterior.info["jitter"] == 1.0 and posterior.info["hessian_min_eigenvalue"] == 0.0
    # v ~ N(v_map, 1 / (0 + jitter)); mu ~ N(., 1 / (11 + jitter))
    assert abs(posterior.draws["v"].var() - 1.0) < 4 * np.sqrt(2 / 4000)
    assert abs(posterior.draws["mu"].var() - 1 / 12) < 4 * (1 / 12) * np.sqrt(2 / 4000)


def test_laplace_hessian_check_on_given_matrices():
    saddle = np.diag([-2.0, 3.0])
    with pytest.raises(laplace.NotPositiveDefiniteError, match=r"smallest eigenvalue -2.*jitter > 0"):
        laplace.laplace_gaussian(saddle, np.zeros(2))
    with pytest.raises(laplace.NotPositiveDefiniteError, match="jitter=1 is not enough"):
        laplace.laplace_gaussian(saddle, np.zeros(2), jitter=1.0)
    gaussian = laplace.laplace_gaussian(saddle, np.zeros(2), jitter=3.0)
    np.testing.assert_allclose(gaussian.covariance(), np.diag([1.0, 1 / 6]), rtol=1e-6)
    with pytest.raises(laplace.NotPositiveDefiniteError, match="NaN"):
        laplace.laplace_gaussian(np.full((2, 2), np.nan), np.zeros(2))


# --- bootstrap ----------------------------------------------------------------------------------


def test_count_weighting_equals_literal_resampling(regression):
    x, y = regression
    flat = flat_potential(linear_regression, x, y, jax.random.key(0))
    weighted = bootstrap.weighted_potential(linear_regression, x, y, flat.unravel)
    z = jnp.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(weighted(z, jnp.ones(50)), flat.potential(z), rtol=1e-6)
    for seed in range(3):
        indices = np.asarray(jax.random.randint(jax.random.key(seed), (50,), 0, 50))
        counts = jnp.asarray(np.bincount(indices, minlength=50), jnp.float32)
        literal = flat_potential(linear_regression, x[indices], y[indices], jax.random.key(0))
        np.testing.assert_allclose(weighted(z, counts), literal.potential(z), rtol=1e-5)
        np.testing.assert_allclose(
            jax.grad(weighted)(z, counts), jax.grad(literal.potential)(z), rtol=1e-4, atol=1e-4
        )


def test_resample_counts_are_multinomial():
    counts = np.asarray(bootstrap.resample_counts(jax.random.key(0), 2000, 30))
    assert counts.shape == (2000, 30) and np.all(counts.sum(1) == 30)
    # each count is Binomial(30, 1/30): mean 1, variance 29/30
    assert abs(counts.mean() - 1.0) < 4 * np.sqrt(29 / 30 / counts.size)
    assert abs(counts.var() - 29 / 30) < 0.05


def test_bootstrap_spread_is_the_standard_error():
    # a very wide prior: each member's MAP is its resample's mean, so the members' sd is the
    # bootstrap standard error sd(y) / sqrt(N) (plug-in sd), not the posterior sd 1 / sqrt(N)
    num_points, num_members = 200, 400
    y = np.asarray(2.0 * jax.random.normal(jax.random.key(0), (num_points,)) + 1.0, np.float32)
    x = np.zeros((num_points, 1), np.float32)
    model = functools.partial(normal_mean, prior_scale=1e3)
    posterior = inf.fit("bootstrap", model, (x, y), rng_key=jax.random.key(1), num_members=num_members)
    means = posterior.draws["mu"][0]
    standard_error = y.std() / np.sqrt(num_points)
    assert abs(means.std() - standard_error) < 4 * standard_error / np.sqrt(2 * num_members)
    assert abs(means.mean() - y.mean()) < 4 * standard_error / np.sqrt(num_members)
    assert posterior.loss_trace.shape[0] == num_members
    assert posterior.sample_stats["converged"].shape == (1, num_members)
    assert posterior.info["warm_start"] and posterior.info["all_converged"]


def test_bootstrap_is_deterministic_given_the_key(regression):
    fit = functools.partial(inf.fit, "bootstrap", linear_regression, regression, num_members=8)
    first, again = fit(rng_key=jax.random.key(7)), fit(rng_key=jax.random.key(7))
    np.testing.assert_array_equal(first.draws["w"], again.draws["w"])
    members = first.draws["w"][0]
    assert np.min(np.linalg.norm(members[:, None] - members[None], axis=-1) + np.eye(8)) > 1e-3  # resamples differ


@pytest.mark.slow
def test_bootstrap_warm_start_does_not_bias_members(spheres):
    # a cold start on the same resamples (same key) reaches the same optima as the warm start
    model = functools.partial(squared_logistic, **spheres.model_kwargs)
    fit = functools.partial(inf.fit, "bootstrap", model, spheres, rng_key=jax.random.key(7), num_members=20)
    warm, cold = fit(), fit(warm_start=False)
    assert not cold.info["warm_start"] and cold.info["iterations_mean"] > warm.info["iterations_mean"]
    scale = np.abs(warm.draws["w"]).max()
    np.testing.assert_allclose(cold.draws["w"], warm.draws["w"], atol=1e-2 * scale)


# --- deep ensemble ------------------------------------------------------------------------------


def test_deep_ensemble_on_a_convex_model_agrees_with_map(regression):
    x, y = regression
    posterior = inf.fit("deep-ensemble", linear_regression, (x, y), rng_key=jax.random.key(3), num_members=6)
    mode, _ = linear_regression_exact_posterior(x, y)
    members = posterior.draws["w"][0]
    assert members.shape == (6, 3) and posterior.info["num_converged"] == 6
    np.testing.assert_allclose(members, np.broadcast_to(mode, members.shape), atol=2e-5)
    assert posterior.loss_trace.shape[0] == 6


def test_deep_ensemble_members_start_apart_and_land_apart_on_an_mlp():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32)  # XOR: non-convex in the weights
    model = functools.partial(mlp_classifier, hidden=(6,))
    options = {**deep_ensemble.DEFAULTS, "num_members": 6}
    flat = flat_potential(model, x, y, jax.random.key(0))
    for init in ["uniform", "prior"]:
        starts = np.asarray(deep_ensemble.initial_points(jax.random.key(1), model, x, y, flat, 6, init, 2.0))
        assert starts.shape == (6, flat.init.shape[0]) and np.all(np.isfinite(starts))
        assert np.min(np.abs(starts[:, None] - starts[None]).sum(-1) + np.eye(6) * 1e9) > 1.0
        again = deep_ensemble.initial_points(jax.random.key(1), model, x, y, flat, 6, init, 2.0)
        np.testing.assert_array_equal(again, starts)
    posterior = deep_ensemble.fit(model, x, y, rng_key=jax.random.key(2), options=options)
    assert posterior.draws["w0"].shape == (1, 6, 2, 6) and posterior.loss_trace.shape[0] == 6
    w0 = posterior.draws["w0"][0].reshape(6, -1)
    pairwise = np.linalg.norm(w0[:, None] - w0[None], axis=-1) + np.eye(6) * 1e9
    assert pairwise.min() > 0.1  # distinct optima (the MLP's symmetries aside, never equal)
    assert posterior.info["num_converged"] == 6


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "options", "message"),
    [
        ("map", {"max_iter": 0}, "'max_iter' must be an integer >= 1"),
        ("map", {"tol": -1.0}, "'tol' must be a finite number > 0"),
        ("map", {"num_samples": 5}, "unknown option"),
        ("laplace", {"jitter": -0.1}, "'jitter' must be a finite number >= 0"),
        ("laplace", {"num_samples": 0}, "'num_samples' must be an integer >= 1"),
        ("bootstrap", {"num_members": 0}, "'num_members' must be an integer >= 1"),
        ("bootstrap", {"warm_start": "yes"}, "'warm_start' must be True or False"),
        ("bootstrap", {"member_batch_size": 0}, "'member_batch_size' must be an integer >= 1"),
        ("deep-ensemble", {"init": "zeros"}, "'init' must be one of"),
        ("deep-ensemble", {"init_radius": 0.0}, "'init_radius' must be a finite number > 0"),
        ("deep-ensemble", {"memory_size": 1.5}, "'memory_size' must be an integer >= 1"),
    ],
)
def test_bad_options_raise_clear_errors(regression, backend, options, message):
    with pytest.raises(ValueError, match=message):
        inf.fit(backend, linear_regression, regression, rng_key=jax.random.key(0), **options)


def test_bootstrap_rejects_observations_outside_a_data_plate():
    def unplated(ppl, x, y=None):
        mu = ppl.sample("mu", ppl.dist.Normal(0.0, 1.0))
        ppl.sample("y", ppl.dist.Normal(mu, 1.0).expand([x.shape[0]]).to_event(1), obs=y)

    x, y = np.zeros((5, 1), np.float32), np.ones(5, np.float32)
    with pytest.raises(ValueError, match="rightmost batch dimension must be the 5 data points"):
        inf.fit("bootstrap", unplated, (x, y), rng_key=jax.random.key(0), num_members=2)


def test_svi_refuses_the_closed_form_kl_with_another_beta():
    from ppl_uq.inference import svi

    options = {**svi.DEFAULTS, "elbo": "meanfield", "beta": 0.1}
    with pytest.raises(ValueError, match="elbo='meanfield'.*needs beta = 1"):
        svi.check_options(options)
    svi.check_options({**options, "elbo": "trace"})  # the beta-ELBO with a Monte Carlo KL is fine
    svi.check_options({**options, "beta": 1.0})
