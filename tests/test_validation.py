"""ppl_uq.validation: ranks, the two uniformity tests and VSBC's symmetry test against known answers; k-hat
in the diagnostics of approximations with a density; SBC's positive and negative controls (slow)."""

import warnings

import jax
import numpy as np
import pytest
from ordinary_models import SCHOOLS_SIGMA, SCHOOLS_Y, eight_schools

import ppl_uq
from ppl_uq.gates import posterior_gate_flags
from ppl_uq.models import linear_regression, normal_mean
from ppl_uq.validation import chi2_pvalue, pareto_k, prior_predictive, ranks_of, recovery_row, sbc
from ppl_uq.validation.sbc import _pointwise_min_p, band_gamma


def test_ranks_count_the_draws_below_the_truth():
    draws = {"a": np.arange(10.0), "b": np.arange(20.0).reshape(10, 2)}
    ranks = ranks_of({"a": np.array(4.5), "b": np.array([-1.0, 100.0])}, draws, num_draws=10)
    assert ranks == {"a": 5, "b[0]": 0, "b[1]": 10}
    thinned = ranks_of({"a": np.array(4.5)}, {"a": np.arange(100.0) / 10}, num_draws=5)  # draws 0, 2.5, 5, 7.4, 9.9
    assert thinned == {"a": 2}
    with pytest.raises(ValueError, match="at least num_draws = 20"):
        ranks_of({"a": np.array(0.0)}, {"a": np.zeros(10)}, num_draws=20)


def test_chi2_and_the_ecdf_band_accept_uniform_ranks_at_their_level():
    # Under uniform ranks each test rejects at its level: count rejections over 400 uniform samples.
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 20, size=(400, 100))
    gamma = band_gamma(100, 19, 0.05, jax.random.key(0))
    outside = np.mean(_pointwise_min_p(samples, 19) < gamma)
    chi2 = np.mean([chi2_pvalue(s, 19, 5) < 0.05 for s in samples])
    # Binomial(400, 0.05): sd 0.011; 4 sd either side.
    assert abs(outside - 0.05) < 0.045 and abs(chi2 - 0.05) < 0.045
    # Over-confident ranks (U-shaped: half at the ends) are rejected by both.
    bad = np.concatenate([rng.integers(0, 20, 60), np.zeros(20, int), np.full(20, 19)])
    assert _pointwise_min_p(bad[None], 19)[0] < gamma and chi2_pvalue(bad, 19, 5) < 1e-4


def test_prior_predictive_draws_latents_and_data():
    theta, y = prior_predictive(normal_mean, np.zeros((7, 1), np.float32), jax.random.key(0))
    assert set(theta) == {"mu"} and y.shape == (7,)
    with pytest.raises(ValueError, match="observed_site 'obs' is not a site"):
        prior_predictive(normal_mean, np.zeros((7, 1), np.float32), jax.random.key(0), observed_site="obs")


def test_sbc_of_a_point_estimate_fails_and_keys_fix_the_ranks():
    # MAP gives one value: every rank is 0 or L, far from uniform, even with 8 simulations (an even split
    # over the two end bins of 10 has chi2 = 32 on 9 degrees of freedom, p = 2e-4).
    x = np.zeros((10, 1), np.float32)
    first = sbc("map", normal_mean, x, rng_key=jax.random.key(1), num_sims=8, num_draws=9)
    assert not first.passed and set(np.unique(first.ranks["mu"])) <= {0, 9}
    again = sbc("map", normal_mean, x, rng_key=jax.random.key(1), num_sims=8, num_draws=9)
    np.testing.assert_array_equal(first.ranks["mu"], again.ranks["mu"])
    with pytest.raises(ValueError, match="num_bins must divide"):
        sbc("map", normal_mean, x, rng_key=jax.random.key(1), num_sims=8, num_draws=9, num_bins=3)


def test_pareto_k_of_known_weights():
    rng = np.random.default_rng(0)
    assert pareto_k(np.zeros(500)) < 0.2  # equal weights: no tail
    assert pareto_k(rng.standard_cauchy(2000) ** 2) > 0.7  # weights with an infinite mean: k-hat near 1
    assert np.isnan(pareto_k(np.full(10, -1.0)))


def test_k_hat_is_in_the_diagnostics_and_gates_of_approximations_with_a_density(correlated_regression):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ppl_uq.inference.ConvergenceWarning)
        meanfield = ppl_uq.fit("svi", linear_regression, correlated_regression, rng_key=jax.random.key(0),
                               guide="meanfield", num_steps=2000)
        laplace = ppl_uq.fit("laplace", linear_regression, correlated_regression, rng_key=jax.random.key(0))
        schools = ppl_uq.fit("laplace", eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y), rng_key=jax.random.key(0))
    # Laplace of a Gaussian posterior is exact: k-hat near 0. Mean-field q on a correlation of -0.9 is too
    # narrow; Laplace on eight schools' funnel has tails far lighter than p's.
    assert laplace.diagnostics()["pareto_k"] < 0.5
    assert meanfield.diagnostics()["pareto_k"] > 0.7
    assert schools.diagnostics()["pareto_k"] > 0.7
    assert any("Pareto k-hat" in flag for flag in posterior_gate_flags(schools))


def test_recovery_row_in_posterior_sd_units(regression_data):
    x, y = regression_data
    mean, cov = ppl_uq.models.linear_regression_exact_posterior(x, y)
    posterior = ppl_uq.fit("laplace", linear_regression, (x, y), rng_key=jax.random.key(0), num_samples=4000)
    row = recovery_row(posterior, {"w": mean}, {"w": np.sqrt(np.diag(cov))})
    # 4000 exact draws: mean error ~ 1/sqrt(4000) = 0.016 sd per coordinate, sd error ~ 0.011.
    assert row.mean_error < 0.07 and row.sd_error < 0.05 and row.pareto_k < 0.5 and row.flags == []


@pytest.mark.slow
def test_sbc_positive_control_nuts_and_slice_on_the_conjugate_model():
    x = np.zeros((10, 1), np.float32)
    for backend in ("nuts", "slice"):
        result = sbc(backend, normal_mean, x, rng_key=jax.random.key(0), num_sims=60, num_draws=19,
                     num_warmup=200, num_samples=400, num_chains=1)
        assert result.passed and result.vsbc_passed, (backend, result.chi2_pvalues, result.ecdf_outside)


@pytest.mark.slow
def test_sbc_negative_control_meanfield_on_a_correlated_posterior():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    x[:, 1] = x[:, 0] + 0.05 * rng.normal(size=20)
    result = sbc("svi", linear_regression, x.astype(np.float32), rng_key=jax.random.key(0), num_sims=40, num_draws=19,
                 guide="meanfield", num_steps=1500, num_samples=200)
    assert not result.passed and set(result.failed) == {"w[0]", "w[1]"}
