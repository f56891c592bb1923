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
