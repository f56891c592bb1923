"""Models written the way a NumPyro or Pyro user writes them every day (against the PPL handle), for the
tests of ``fit`` on models outside the toolkit's zoo: a hierarchical model with a plate of fixed size and
group-level data as x, a Bernoulli-logit classifier, count and robust regressions, constrained latent
sites of several shapes, and deliberately broken models."""

import numpy as np

#: Eight schools (Rubin 1981): estimated effects and their standard errors.
SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)
SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)


def eight_schools(ppl, x, y=None):
    """Non-centred eight schools; ``x`` holds the 8 standard errors (group-level data, not a design matrix)."""
    mu = ppl.sample("mu", ppl.dist.Normal(0.0, 5.0))
    tau = ppl.sample("tau", ppl.dist.HalfCauchy(5.0))
    with ppl.plate("schools", 8):
        z = ppl.sample("z", ppl.dist.Normal(0.0, 1.0))
        theta = ppl.deterministic("theta", mu + tau * z)
        ppl.sample("y", ppl.dist.Normal(theta, x), obs=y)


def bernoulli_classifier(ppl, x, y=None):
    """Logistic regression with ``Bernoulli(logits=...)``: its ``logits`` site is (N,), two classes."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    b = ppl.sample("b", ppl.dist.Normal(0.0, 1.0))
    logits = ppl.deterministic("logits", x @ w + b)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Bernoulli(logits=logits), obs=y)


def poisson_regression(ppl, x, y=None):
    """Log-linear Poisson regression of counts."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    b = ppl.sample("b", ppl.dist.Normal(0.0, 1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Poisson(ppl.xp.exp(x @ w + b)), obs=y)


def student_t_regression(ppl, x, y=None):
    """Robust regression: StudentT noise with a Gamma-distributed degrees of freedom and a HalfCauchy scale."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    nu = ppl.sample("nu", ppl.dist.Gamma(2.0, 0.1))
    sigma = ppl.sample("sigma", ppl.dist.HalfCauchy(1.0))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.StudentT(nu, x @ w, sigma), obs=y)


def negative_binomial_regression(ppl, x, y=None):
    """Over-dispersed counts: NegativeBinomial with a Gamma concentration."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1]]).to_event(1))
    concentration = ppl.sample("concentration", ppl.dist.Gamma(2.0, 0.5))
    with ppl.plate("data", x.shape[0]):
        mean = ppl.xp.exp(x @ w + 1.0)
        ppl.sample("y", ppl.dist.GammaPoisson(concentration, concentration / mean), obs=y)


def simplex_and_correlation(ppl, x, y=None):
    """Latent sites of several shapes and constraints: a Dirichlet (3,) simplex, an LKJ Cholesky factor
    (2, 2), a positive scale; x holds the (N, 2) observations' first coordinates, y the class of each row."""
    weights = ppl.sample("weights", ppl.dist.Dirichlet(ppl.xp.ones(3)))
    chol = ppl.sample("chol", ppl.dist.LKJCholesky(2, 2.0))
    scale = ppl.sample("scale", ppl.dist.HalfNormal(2.0))
    ppl.deterministic("correlation", chol[1, 0])
    with ppl.plate("data", x.shape[0]):
        ppl.sample("x_obs", ppl.dist.MultivariateNormal(ppl.xp.zeros(2), scale_tril=scale * chol), obs=x)
        ppl.sample("y", ppl.dist.Categorical(probs=weights), obs=y)


def no_latent_sites(ppl, x, y=None):
    """Every sample site is observed."""
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(0.0, 1.0), obs=y)


def misspelled_logits(ppl, x, y=None):
    """A classifier whose logits site is misspelled ('logit'): fits, but has no class probabilities."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1], 3]).to_event(2))
    logits = ppl.deterministic("logit", x @ w)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=logits), obs=y)


def discrete_latent(ppl, x, y=None):
    """A latent Bernoulli switch: no backend here samples discrete latents."""
    switch = ppl.sample("switch", ppl.dist.Bernoulli(0.5))
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Normal(switch * 1.0, 1.0), obs=y)


def huge_prior(ppl, x, y=None):
    """Logistic regression with a prior sd of 1e30 (float32 overflows at every starting point)."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1e30).expand([x.shape[-1]]).to_event(1))
    logits = ppl.deterministic("logits", x @ w)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Bernoulli(logits=logits), obs=y)


def glm_data(seed: int = 0, num_points: int = 150):
    """Inputs (N, 3) and three responses: Bernoulli labels (float 0/1), Poisson counts, StudentT values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_points, 3)).astype(np.float32)
    w = np.array([1.0, -0.8, 0.4], np.float32)
    labels = (rng.random(num_points) < 1.0 / (1.0 + np.exp(-(x @ w)))).astype(np.float32)
    counts = rng.poisson(np.exp(0.5 * (x @ w) + 0.5)).astype(np.int64)
    values = (x @ w + 0.5 * rng.standard_t(4, size=num_points)).astype(np.float32)
    return x, labels, counts, values


# -- Shared fits of the three everyday models (used by test_ordinary_models.py and test_ordinary_glms.py) --

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

X, LABELS, COUNTS, VALUES = glm_data()
DATA = {
    "schools": (eight_schools, (SCHOOLS_SIGMA, SCHOOLS_Y)),
    "bernoulli": (bernoulli_classifier, (X, LABELS)),
    "poisson": (poisson_regression, (X, COUNTS)),
}
#: Latent sites of each model, and its deterministic sites (kept per draw).
LATENT = {"schools": {"mu", "tau", "z"}, "bernoulli": {"w", "b"}, "poisson": {"w", "b"}}
DETERMINISTIC = {"schools": {"theta"}, "bernoulli": set(), "poisson": set()}


def fit_ordinary(backend: str, name: str):
    """``backend`` (OPTIONS' settings, key 3) on the model ``name`` of DATA, convergence and degeneracy
    warnings silenced (the tests read the flags instead). Returns the Posterior."""
    import warnings

    import jax
    import pytest

    import ppl_uq
    from ppl_uq.inference import ConvergenceWarning
    from ppl_uq.inference._degenerate import DegenerateEstimateWarning

    model, data = DATA[name]
    options = dict(OPTIONS[backend])
    if backend == "mc-dropout" and name == "schools":
        options["dropout_sites"] = ["z"]
        options["batch_size"] = 8
    if backend.startswith("pyro"):
        pytest.importorskip("pyro")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DegenerateEstimateWarning)
        return ppl_uq.fit(backend, model, data, rng_key=jax.random.key(3), **options)


class FitCache:
    """``cache(backend, name)``: fit_ordinary, fitted once per cache (a test module's fixture holds one)."""

    def __init__(self):
        self._fits = {}

    def __call__(self, backend: str, name: str):
        if (backend, name) not in self._fits:
            self._fits[backend, name] = fit_ordinary(backend, name)
        return self._fits[backend, name]


def check_ordinary_fit(posterior, name: str) -> None:
    """The contract every backend meets on an everyday model: latent and deterministic sites (the latter
    recomputed per draw), InferenceData, summary, diagnostics of the backend's kind, two-class log-probs
    for the Bernoulli classifier. Raises AssertionError where one fails."""
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
