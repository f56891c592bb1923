"""Models written the ordinary NumPyro way, through every backend: eight schools (a plate of fixed size,
group-level data as x, a deterministic site), a Bernoulli-logit classifier (logits (N,), on both
engines) and a Poisson regression. Each backend fits them (or says clearly why it cannot), keeps the
deterministic sites per draw, reports the diagnostics of its kind, and agrees with NUTS within the
tolerance stated for its kind of approximation."""

import functools
import warnings

import jax
import numpy as np
import pytest
from ordinary_models import (
    SCHOOLS_SIGMA,
    SCHOOLS_Y,
    bernoulli_classifier,
    eight_schools,
    glm_data,
    negative_binomial_regression,
    poisson_regression,
    simplex_and_correlation,
    student_t_regression,
)

import ppl_uq
from ppl_uq.gates import posterior_gate_flags
from ppl_uq.inference import ConvergenceWarning, model_signature, prepare_data
from ppl_uq.inference._degenerate import DegenerateEstimateWarning

#: Small settings per backend (these models have 4 to 10 parameters).
OPTIONS = {
    "nuts": dict(num_warmup=400, num_samples=500, num_chains=2),
    "slice": dict(num_warmup=300, num_samples=500, num_chains=2),
    "pyro-nuts": dict(num_warmup=150, num_samples=200, num_chains=1),
    "map": {},
    "laplace": dict(num_samples=500),
    "svi": dict(num_steps=3000, num_samples=500),
    "ml-mixture": dict(num_steps=1500, num_samples=500),
    "bootstrap": dict(num_members=12),
    "deep-ensemble": dict(num_members=4),
    "mc-dropout": dict(batch_size=50, dropout_sites=["w"], num_epochs=20, num_samples=50),
    "pyro-svi": dict(num_steps=1500, num_samples=500),
}

X, LABELS, COUNTS, _VALUES = glm_data()
DATA = {
    "schools": (eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y)),
    "bernoulli": (bernoulli_classifier, (X, LABELS)),
    "poisson": (poisson_regression, (X, COUNTS)),
}
#: Latent sites of each model, and its deterministic sites (kept per draw).
LATENT = {"schools": {"mu", "tau", "z"}, "bernoulli": {"w", "b"}, "poisson": {"w", "b"}}
DETERMINISTIC = {"schools": {"theta"}, "bernoulli": set(), "poisson": set()}


def _fit(backend, name, **extra):
    model, data = DATA[name]
    options = {**OPTIONS[backend], **extra}
    if backend == "mc-dropout" and name == "schools":
        options["dropout_sites"] = ["z"]
        options["batch_size"] = 8
    if backend.startswith("pyro"):
        pytest.importorskip("pyro")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DegenerateEstimateWarning)
        return ppl_uq.fit(backend, model, data, rng_key=jax.random.key(3), **options)


@pytest.fixture(scope="module")
def fits():
    """Every backend on every model, fitted once (lazily) and shared by the tests below."""
    cache = {}

    def get(backend, name):
        if (backend, name) not in cache:
            cache[backend, name] = _fit(backend, name)
        return cache[backend, name]

    return get


def test_the_signature_reads_a_fixed_plate_without_slicing_the_data():
    signature = model_signature(eight_schools, SCHOOLS_SIGMA, SCHOOLS_Y)
    assert signature.latent == {"mu": ((), False), "tau": ((), False), "z": ((8,), False)}
    assert signature.deterministic == ("theta",) and signature.num_classes is None
    assert signature.observed == "y" and signature.likelihood == "Normal"
    binary = model_signature(bernoulli_classifier, X, LABELS)
    assert binary.logits_shape == (len(X),) and binary.num_classes == 2


def test_label_dtypes_follow_the_likelihood():
    _, labels = prepare_data(bernoulli_classifier, (X, LABELS.astype(np.int64)))
    assert labels.dtype == np.float32 and set(np.unique(labels)) == {0.0, 1.0}
    _, counts = prepare_data(poisson_regression, (X, COUNTS.astype(np.float64)))
    assert counts.dtype == np.int32 and np.array_equal(counts, COUNTS)
    _, effects = prepare_data(eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y))
    assert effects.dtype == np.float32


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("backend", sorted(OPTIONS))
def test_every_backend_fits_the_ordinary_models(fits, backend, name):
    posterior = fits(backend, name)
    assert set(posterior.draws) == LATENT[name] | DETERMINISTIC[name]
    assert set(posterior.latent_sites) == LATENT[name]
    assert set(posterior.deterministic_sites) == DETERMINISTIC[name]
    if name == "schools":  # the deterministic site, computed per draw from that draw's latent sites
        d = posterior.draws
        np.testing.assert_allclose(d["theta"], d["mu"][..., None] + d["tau"][..., None] * d["z"], rtol=1e-5, atol=1e-5)
    idata = posterior.to_inference_data()
    assert set(idata.posterior.data_vars) == set(posterior.draws)
    summary = posterior.summary()
    assert len(summary) == sum(int(np.prod(v.shape[2:])) for v in posterior.draws.values())
    diagnostics = posterior.diagnostics()
    if posterior.kind == "mcmc":
        assert {"rhat_max", "ess_bulk_min", "ess_tail_min", "divergences"} <= set(diagnostics)
    else:  # no ESS or R-hat where they mean nothing
        assert not {"rhat_max", "ess_bulk_min", "ess_tail_min"} & set(diagnostics)
        assert "converged" in diagnostics
    if posterior.kind == "ensemble":
        assert diagnostics["num_members"] == posterior.num_samples
    if name == "bernoulli":  # two classes from logits (N,)
        log_probs = np.asarray(posterior.log_probs(X[:5]))
        assert log_probs.shape == (posterior.num_samples, 5, 2)
        expected = -np.logaddexp(0.0, -(X[:5] @ posterior.flat_draws()["w"].T + posterior.flat_draws()["b"]).T)
        np.testing.assert_allclose(log_probs[..., 1], expected, rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("backend", ["slice", "pyro-nuts"])
def test_samplers_agree_with_nuts_on_eight_schools(fits, backend):
    reference, posterior = fits("nuts", "schools"), fits(backend, "schools")
    ref = reference.summary()
    ours = posterior.summary()
    for site in ("mu", "theta[0]"):
        se = np.hypot(ref.loc[site, "sd"] / np.sqrt(ref.loc[site, "ess_bulk"]), ours.loc[site, "sd"] / np.sqrt(ours.loc[site, "ess_bulk"]))
        assert abs(ref.loc[site, "mean"] - ours.loc[site, "mean"]) < 4 * se, site
    # tau is heavy-tailed: compare medians within 35 % (its posterior median is about 3).
    assert abs(np.median(posterior.draws["tau"]) / np.median(reference.draws["tau"]) - 1) < 0.35


@pytest.mark.parametrize("backend", ["map", "deep-ensemble", "bootstrap"])
def test_point_estimates_of_a_hierarchical_model_are_flagged_degenerate(backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(DegenerateEstimateWarning, match="latent scale"):
            posterior = ppl_uq.fit(backend, eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y), rng_key=jax.random.key(0),
                                   **OPTIONS[backend])
    assert "tau" in posterior.info["degenerate"]
    assert any(flag.startswith("degenerate") for flag in posterior_gate_flags(posterior))


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


#: Constrained latent sites (Dirichlet, LKJ Cholesky, Gamma, HalfCauchy/HalfNormal) and other likelihoods
#: (StudentT, GammaPoisson, a multivariate normal beside a Categorical), each with backends of every kind.
CONSTRAINED = [
    ("simplex", "nuts", dict(num_warmup=200, num_samples=200, num_chains=2)),
    ("simplex", "laplace", dict(num_samples=200)),
    ("simplex", "svi", dict(num_steps=500, num_samples=200)),
    ("student-t", "slice", dict(num_warmup=200, num_samples=200, num_chains=2)),
    ("negative-binomial", "map", {}),
    ("negative-binomial", "bootstrap", dict(num_members=5)),
]


@pytest.mark.parametrize("name,backend,options", CONSTRAINED, ids=[f"{n}-{b}" for n, b, _ in CONSTRAINED])
def test_constrained_sites_and_other_likelihoods_fit_and_summarise(name, backend, options):
    data = {"simplex": (simplex_and_correlation, (X[:, :2], COUNTS % 3)), "student-t": (student_t_regression, (X, _VALUES)),
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
