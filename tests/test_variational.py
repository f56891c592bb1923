"""The variational backends ``svi`` and ``ml-mixture``: known answers on a conjugate model, the guide
families, divergence detection, the ML-mixture objective against NumPyro's Trace_ELBO, options."""

from __future__ import annotations

import functools

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO

import ppl_uq
from ppl_uq.inference._common import numpyro_model
from ppl_uq.inference._guides import make_guide, positive_site_names
from ppl_uq.inference._variational import COMMON_DEFAULTS, InferenceDivergenceError, make_optimizer
from ppl_uq.inference.ml_mixture import MixtureELBO
from ppl_uq.models.conjugate import linear_regression, linear_regression_exact_posterior
from ppl_uq.models.logistic import hierarchical_logistic, squared_logistic


@pytest.fixture(scope="module")
def exact(correlated_regression: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return linear_regression_exact_posterior(*correlated_regression)


@pytest.fixture(scope="module")
def classification() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A small spheres problem (D = 5, N = 40)."""
    data = ppl_uq.data.make_spheres(jax.random.key(3), dim=5, num_train=40, num_val=10)
    return data.x_train, data.y_train, data.model_kwargs


REGRESSION_OPTIONS = dict(num_steps=5000, learning_rate=0.05, num_samples=2000)


@pytest.fixture(scope="module")
def fullrank_fit(correlated_regression: tuple[np.ndarray, np.ndarray]) -> ppl_uq.Posterior:
    return ppl_uq.fit("svi", linear_regression, correlated_regression, rng_key=jax.random.key(0), guide="fullrank", **REGRESSION_OPTIONS)


@pytest.fixture(scope="module")
def meanfield_fit(correlated_regression: tuple[np.ndarray, np.ndarray]) -> ppl_uq.Posterior:
    return ppl_uq.fit("svi", linear_regression, correlated_regression, rng_key=jax.random.key(0), guide="meanfield", **REGRESSION_OPTIONS)


# -- known answers --------------------------------------------------------------------------------
# Tolerances: the fitted q is the final Adam iterate, which jitters around the optimum; over three
# seeds we measured mean errors <= 0.07 posterior sd, sd errors <= 2.3% and correlation errors <= 0.04,
# and allow about three times that. Draw-based checks use 4 Monte Carlo standard errors.


def test_fullrank_recovers_exact_posterior(fullrank_fit: ppl_uq.Posterior, exact: tuple[np.ndarray, np.ndarray]) -> None:
    mean, cov = exact
    sd = np.sqrt(np.diag(cov))
    loc = fullrank_fit.info["params"]["auto_loc"]
    tril = fullrank_fit.info["params"]["auto_scale_tril"]
    cov_q = tril @ tril.T
    sd_q = np.sqrt(np.diag(cov_q))
    np.testing.assert_array_less(np.abs(loc - mean) / sd, 0.2)
    np.testing.assert_allclose(sd_q / sd, 1.0, atol=0.07)
    corr, corr_q = cov / np.outer(sd, sd), cov_q / np.outer(sd_q, sd_q)
    assert corr[0, 1] < -0.8  # the test design has a strong correlation to recover
    np.testing.assert_allclose(corr_q, corr, atol=0.1)
    # the draws are draws from that q
    draws = fullrank_fit.draws["w"][0]
    np.testing.assert_array_less(np.abs(draws.mean(0) - loc), 4 * sd_q / np.sqrt(draws.shape[0]))
    assert fullrank_fit.info["converged"]


def test_meanfield_recovers_mean_and_conditional_precision(meanfield_fit: ppl_uq.Posterior, exact: tuple[np.ndarray, np.ndarray]) -> None:
    """For a Gaussian posterior N(m, inv(P)) the mean-field optimum is N(m_i, 1 / P_ii): the right mean,
    and the conditional (not the marginal) variance."""
    mean, cov = exact
    sd = np.sqrt(np.diag(cov))
    conditional_sd = 1.0 / np.sqrt(np.diag(np.linalg.inv(cov)))
    loc = meanfield_fit.info["params"]["w_auto_loc"]
    scale = meanfield_fit.info["params"]["w_auto_scale"]
    np.testing.assert_array_less(np.abs(loc - mean) / sd, 0.2)
    np.testing.assert_allclose(scale / conditional_sd, 1.0, atol=0.07)
    assert scale[0] < 0.6 * sd[0] and scale[1] < 0.6 * sd[1]  # underestimates the correlated marginals


def test_posterior_shapes_and_redraw(fullrank_fit: ppl_uq.Posterior) -> None:
    assert fullrank_fit.method == "svi"
    assert fullrank_fit.draws["w"].shape == (1, REGRESSION_OPTIONS["num_samples"], 3)
    assert fullrank_fit.loss_trace.shape == (REGRESSION_OPTIONS["num_steps"],)
    assert np.all(np.isfinite(fullrank_fit.loss_trace))
    again = fullrank_fit.redraw(jax.random.key(9))
    assert again.draws["w"].shape == fullrank_fit.draws["w"].shape
    assert not np.allclose(again.draws["w"], fullrank_fit.draws["w"])
    np.testing.assert_array_equal(again.loss_trace, fullrank_fit.loss_trace)  # same fitted q


def test_fit_is_deterministic_given_the_key(correlated_regression: tuple[np.ndarray, np.ndarray], meanfield_fit: ppl_uq.Posterior) -> None:
    same = ppl_uq.fit("svi", linear_regression, correlated_regression, rng_key=jax.random.key(0), guide="meanfield", **REGRESSION_OPTIONS)
    np.testing.assert_array_equal(same.loss_trace, meanfield_fit.loss_trace)
    np.testing.assert_array_equal(same.draws["w"], meanfield_fit.draws["w"])
    other = ppl_uq.fit("svi", linear_regression, correlated_regression, rng_key=jax.random.key(1), guide="meanfield", **REGRESSION_OPTIONS)
    assert not np.array_equal(other.loss_trace, meanfield_fit.loss_trace)


# -- guides ---------------------------------------------------------------------------------------


def test_hierarchical_guide_on_direction_distance_model(classification: tuple) -> None:
    x, y, kwargs = classification
    model = functools.partial(hierarchical_logistic, **kwargs)
    assert positive_site_names(numpyro_model(model), x, y) == ["s"]
    posterior = ppl_uq.fit("svi", model, (x, y), rng_key=jax.random.key(0), guide="hierarchical", num_steps=300, num_samples=50)
    params = posterior.info["params"]
    assert params["fullrank_scale_tril"].shape == (6, 6)  # v (5) and b (1), jointly
    assert params["s_scale_loc"].shape == ()  # s on its own, log-normal
    assert set(posterior.draws) == {"v", "s", "b", "w"} and set(posterior.latent_sites) == {"v", "s", "b"}
    assert posterior.draws["v"].shape == (1, 50, 5)
    assert np.all(posterior.draws["s"] > 0)
    assert posterior.log_probs(x).shape == (50, 40, 2)


def test_hierarchical_guide_rejects_model_without_positive_site(classification: tuple) -> None:
    x, y, kwargs = classification
    model = functools.partial(squared_logistic, **kwargs)
    with pytest.raises(ValueError, match="positive support"):
        ppl_uq.fit("svi", model, (x, y), rng_key=jax.random.key(0), guide="hierarchical", num_steps=10)


def test_divergence_is_an_error(correlated_regression: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(InferenceDivergenceError, match="diverged at step") as info:
        ppl_uq.fit(
            "svi", linear_regression, correlated_regression, rng_key=jax.random.key(0), guide="fullrank",
            num_steps=1000, learning_rate=1e4, lr_schedule="constant", clip_norm=None,
        )
    error = info.value
    assert 1 < error.step < 1000  # stopped at once, not after the full run
    assert error.loss_trace.shape == (error.step,)
    assert np.all(np.isfinite(error.loss_trace[:-1]))


# -- the ML-mixture objective ---------------------------------------------------------------------


def _linear_regression_scaled(x: np.ndarray, y: np.ndarray, *, likelihood_scale: float) -> None:
    """``linear_regression`` with its likelihood multiplied by ``likelihood_scale``."""
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    with handlers.scale(scale=likelihood_scale), numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


def _guide_and_params(model: object, x: np.ndarray, y: np.ndarray, guide_name: str) -> tuple[object, dict]:
    nmodel = numpyro_model(model)
    guide = make_guide(guide_name, nmodel, x, y, init_scale=0.5)
    svi = SVI(nmodel, guide, make_optimizer({**COMMON_DEFAULTS}), Trace_ELBO())
    return nmodel, guide, svi.get_params(svi.init(jax.random.key(11), x, y))


@pytest.mark.parametrize("guide_name", ["fullrank", "meanfield"])
def test_mixture_objective_at_one_particle_is_trace_elbo(classification: tuple, guide_name: str) -> None:
    x, y, kwargs = classification
    nmodel, guide, params = _guide_and_params(functools.partial(squared_logistic, **kwargs), x, y, guide_name)
    for seed in range(3):
        key = jax.random.key(seed)
        reference = Trace_ELBO().loss(key, params, nmodel, guide, x, y)
        for mixture in (True, False):
            value = MixtureELBO(num_particles=1, beta=1.0, mixture=mixture).loss(key, params, nmodel, guide, x, y)
            np.testing.assert_allclose(value, reference, rtol=1e-5)


@pytest.mark.parametrize("num_particles", [1, 3])
def test_beta_elbo_is_scaled_trace_elbo(correlated_regression: tuple[np.ndarray, np.ndarray], num_particles: int) -> None:
    """beta-ELBO = sum log-lik - beta KL = beta * (ELBO of the model with likelihood scaled by 1/beta)."""
    x, y = correlated_regression
    beta = 0.3
    nmodel, guide, params = _guide_and_params(linear_regression, x, y, "fullrank")
    scaled = functools.partial(_linear_regression_scaled, likelihood_scale=1.0 / beta)
    key = jax.random.key(4)
    value = MixtureELBO(num_particles=num_particles, beta=beta, mixture=False).loss(key, params, nmodel, guide, x, y)
    reference = beta * Trace_ELBO(num_particles=num_particles).loss(key, params, scaled, guide, x, y)
    np.testing.assert_allclose(value, reference, rtol=1e-5)


def test_mixture_objective_dominates_elbo_for_the_same_draws(classification: tuple) -> None:
    """Jensen: log (1/K) sum_k p_k >= (1/K) sum_k log p_k, draw for draw, so the ML loss is lower."""
    x, y, kwargs = classification
    nmodel, guide, params = _guide_and_params(functools.partial(squared_logistic, **kwargs), x, y, "fullrank")
    for seed in range(3):
        key = jax.random.key(seed)
        ml = MixtureELBO(num_particles=5, beta=0.5, mixture=True).loss(key, params, nmodel, guide, x, y)
        vi = MixtureELBO(num_particles=5, beta=0.5, mixture=False).loss(key, params, nmodel, guide, x, y)
        assert ml < vi


def test_ml_mixture_backend_fits(classification: tuple) -> None:
    x, y, kwargs = classification
    model = functools.partial(squared_logistic, **kwargs)
    posterior = ppl_uq.fit("ml-mixture", model, (x, y), rng_key=jax.random.key(0), guide="fullrank", num_steps=500, num_samples=30)
    assert posterior.method == "ml-mixture"
    assert posterior.options["num_particles"] == 10
    assert posterior.draws["w"].shape == (1, 30, 5)
    assert posterior.loss_trace[-50:].mean() < posterior.loss_trace[:50].mean()
    assert posterior.cost["grad_evals"] == 500 * 10


# -- options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"guide": "lowrank"}, "option 'guide'"),
        ({"num_steps": 0}, "option 'num_steps'"),
        ({"learning_rate": -0.1}, "option 'learning_rate'"),
        ({"num_particles": 1.5}, "option 'num_particles'"),
        ({"clip_norm": 0.0}, "option 'clip_norm'"),
        ({"warmup_fraction": 1.0}, "option 'warmup_fraction'"),
        ({"end_lr_ratio": 0.0}, "option 'end_lr_ratio'"),
        ({"lr_schedule": "linear"}, "option 'lr_schedule'"),
        ({"beta": float("inf")}, "option 'beta'"),
        ({"lr": 0.1}, "unknown option"),
    ],
)
@pytest.mark.parametrize("backend", ["svi", "ml-mixture"])
def test_bad_options_are_clear_errors(correlated_regression: tuple[np.ndarray, np.ndarray], backend: str, options: dict,
                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ppl_uq.fit(backend, linear_regression, correlated_regression, rng_key=jax.random.key(0), **options)


def test_mixture_elbo_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_particles"):
        MixtureELBO(num_particles=0)
    with pytest.raises(ValueError, match="beta"):
        MixtureELBO(beta=-1.0)
