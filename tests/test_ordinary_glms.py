"""Models written the ordinary NumPyro way, through every backend (2 of 3: a Bernoulli-logit classifier,
logits (N,), on both engines, and a Poisson regression). Each backend fits them, and agrees with NUTS within
the tolerance stated for its kind of approximation."""

import functools

import jax
import numpy as np
import pytest
from ordinary_models import COUNTS, LABELS, OPTIONS, FitCache, X, bernoulli_classifier, check_ordinary_fit

import ppl_uq
from ppl_uq.gates import posterior_gate_flags


@pytest.fixture(scope="module")
def fits():
    """Every backend on the models below, fitted once (lazily) and shared by this module's tests."""
    return FitCache()


@pytest.mark.parametrize("name", ["bernoulli", "poisson"])
@pytest.mark.parametrize("backend", sorted(OPTIONS))
def test_every_backend_fits_the_glms(fits, backend, name):
    check_ordinary_fit(fits(backend, name), name)


def test_the_classification_harness_refuses_a_regression_model(fits):
    from ppl_uq.harness import evaluate_predictive

    posterior = fits("map", "poisson")
    with pytest.raises(ValueError, match="no 'logits' site"):
        evaluate_predictive(posterior.log_prob_fn(), X[:10], COUNTS[:10] % 2)


def _moments(posterior, site):
    draws = posterior.flat_draws()[site].reshape(posterior.num_samples, -1)
    return draws.mean(0), draws.std(0)


#: Per backend: (largest |mean - NUTS mean| in NUTS posterior sds, largest |log(sd / NUTS sd)|) on the two
#: GLMs (4 parameters, N = 150: the posterior is close to Gaussian). MCMC: Monte Carlo error only (4 sigma
#: of a difference of two means with ESS >= 150 is under 0.5 sd; sds agree to 25 %). Laplace and the
#: variational fits: a Gaussian approximation, 0.25 sd and 25 %. MAP: the mode, 0.3 sd from the mean. A
#: bootstrap of 12 members: its mean is a 12-draw average (Monte Carlo sd 0.29 posterior sds: within 4 of
#: them, 1.2 sd), its sd within a factor e^0.85 (the sd of 12 draws has a relative error of 21 %: 4 of
#: them). Deep ensemble: the optimum of a convex problem (0.3 sd). ML mixture: maximum likelihood without
#: the prior, so its centre is the MLE, which the N(0, 1) prior's shrinkage puts 0.6 NUTS sds from the
#: posterior mean here (1 sd). MC dropout: not a posterior approximation of these weights (fit only).
TOLERANCES = {
    "slice": (0.5, 0.25), "pyro-nuts": (0.5, 0.3), "laplace": (0.25, 0.25), "svi": (0.25, 0.25),
    "pyro-svi": (0.3, 0.3), "map": (0.3, None), "bootstrap": (1.2, 0.85), "deep-ensemble": (0.3, None),
    "ml-mixture": (1.0, None),
}


@pytest.mark.parametrize("name", ["bernoulli", "poisson"])
@pytest.mark.parametrize("backend", sorted(TOLERANCES))
def test_backends_agree_with_nuts_on_the_glms(fits, backend, name):
    reference, posterior = fits("nuts", name), fits(backend, name)
    assert reference.diagnostics()["rhat_max"] < 1.02
    mean_tol, sd_tol = TOLERANCES[backend]
    for site in ("w", "b"):
        ref_mean, ref_sd = _moments(reference, site)
        mean, sd = _moments(posterior, site)
        assert np.all(np.abs(mean - ref_mean) / ref_sd < mean_tol), (site, mean, ref_mean, ref_sd)
        if sd_tol is not None:
            assert np.all(np.abs(np.log(sd / ref_sd)) < sd_tol), (site, sd, ref_sd)


def test_point_estimates_of_a_flat_glm_are_not_flagged(fits):
    for backend in ("map", "bootstrap"):
        assert "degenerate" not in fits(backend, "poisson").info


def test_an_ensemble_of_identical_members_is_one_point(fits):
    # Logistic regression is convex: every deep-ensemble member reaches the same optimum.
    posterior = fits("deep-ensemble", "bernoulli")
    diagnostics = posterior.diagnostics()
    assert diagnostics["num_members"] == 4 and diagnostics["distinct_members"] == 1
    assert diagnostics["member_spread"] < 1e-3
    assert "all 4 ensemble members are the same point" in posterior_gate_flags(posterior)
    assert fits("bootstrap", "bernoulli").diagnostics()["distinct_members"] == 12


def test_svi_and_ml_mixture_report_their_own_loss_records(fits):
    svi, mixture = fits("svi", "poisson"), fits("ml-mixture", "poisson")
    assert svi.diagnostics() != mixture.diagnostics()
    for posterior in (svi, mixture):
        assert {"converged", "final_loss", "relative_improvement", "loss_trend_t"} <= set(posterior.diagnostics())


def test_the_bernoulli_classifier_on_the_pyro_engine_keeps_float_labels():
    pytest.importorskip("pyro")
    model = functools.partial(bernoulli_classifier)
    posterior = ppl_uq.fit("pyro-svi", model, (X, LABELS.astype(np.int32)), rng_key=jax.random.key(0), num_steps=300)
    assert posterior.log_probs(X[:3]).shape == (posterior.num_samples, 3, 2)
