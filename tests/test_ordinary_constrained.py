"""Models written the ordinary NumPyro way (3 of 3): constrained latent sites and other likelihoods, each
with backends of every kind: fitted, summarised and diagnosed."""

import warnings

import jax
import numpy as np
import pytest
from ordinary_models import (
    COUNTS,
    VALUES,
    X,
    negative_binomial_regression,
    simplex_and_correlation,
    student_t_regression,
)

import ppl_uq
from ppl_uq.inference import ConvergenceWarning

#: Constrained latent sites (Dirichlet, LKJ Cholesky, Gamma, HalfCauchy/HalfNormal) and other likelihoods
#: (StudentT, GammaPoisson, a multivariate normal beside a Categorical), each with backends of every kind.
CONSTRAINED = [
    pytest.param("simplex", "nuts", dict(num_warmup=200, num_samples=200, num_chains=2), id="simplex-nuts"),
    # Laplace on the simplex and LKJ factor: ~40 s, nearly all of it NumPyro compiling the model op by op
    # while it looks for a starting point.
    pytest.param("simplex", "laplace", dict(num_samples=200), marks=pytest.mark.slow, id="simplex-laplace"),
    pytest.param("simplex", "svi", dict(num_steps=500, num_samples=200), id="simplex-svi"),
    pytest.param("student-t", "slice", dict(num_warmup=200, num_samples=200, num_chains=2), id="student-t-slice"),
    pytest.param("negative-binomial", "map", {}, id="negative-binomial-map"),
    pytest.param("negative-binomial", "bootstrap", dict(num_members=5), id="negative-binomial-bootstrap"),
]


@pytest.mark.parametrize("name,backend,options", CONSTRAINED)
def test_constrained_sites_and_other_likelihoods_fit_and_summarise(name, backend, options):
    data = {"simplex": (simplex_and_correlation, (X[:, :2], COUNTS % 3)), "student-t": (student_t_regression, (X, VALUES)),
            "negative-binomial": (negative_binomial_regression, (X, COUNTS))}
    model, pair = data[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = ppl_uq.fit(backend, model, pair, rng_key=jax.random.key(0), **options)
    if name == "simplex":
        np.testing.assert_allclose(posterior.draws["weights"].sum(-1), 1.0, atol=1e-5)
        chol = posterior.draws["chol"]
        np.testing.assert_allclose(np.sum(chol**2, axis=-1), 1.0, atol=1e-4)  # rows of a correlation Cholesky
        np.testing.assert_allclose(posterior.draws["correlation"], chol[..., 1, 0], rtol=1e-6)
    summary = posterior.summary()
    assert np.all(np.isfinite(summary["mean"].to_numpy()))
    diagnostics = posterior.diagnostics()
    if posterior.kind == "mcmc":  # the LKJ factor's fixed [0, 0] = 1 has no R-hat: left out, not NaN
        assert np.isfinite(diagnostics["rhat_max"]) and np.isfinite(diagnostics["ess_bulk_min"])
    else:
        assert isinstance(diagnostics["converged"], bool)
