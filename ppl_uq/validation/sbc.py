"""Simulation-based calibration (Talts et al. 2018) and its variational variant VSBC (Yao et al. 2018) for any
backend.

One simulation draws theta* from the prior and y from the likelihood given theta* (on the user's x), fits
the backend to (x, y) and records, for every scalar latent coordinate, the rank of theta* among L draws of
the fitted posterior (the number of draws below it, 0..L). A backend that computes the posterior exactly
gives ranks uniform on {0, ..., L}; an over-confident one U-shaped ranks, a biased one skewed ranks.

Uniformity is tested two ways per coordinate, each at level ``level / P`` (Bonferroni over the P
coordinates, so the verdict's false-alarm rate is at most ``level``):

- chi-squared on the ranks binned into ``num_bins`` equal bins (``scipy.stats.chisquare``);
- the ECDF of the ranks against simultaneous binomial bands (Saeilynoja, Buerkner & Vehtari 2022): the
  pointwise level gamma is calibrated by simulating uniform rank samples of the same size so that a
  uniform sample leaves the band anywhere with probability ``level / P``.

VSBC tests the symmetry Yao et al. derive for unbiased marginals: the probabilities p = rank / L are
compared with 1 - p by a two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``), at level / P.

MCMC draws are thinned to L evenly spaced draws; the minimum bulk ESS per simulation is kept so a reader can
see whether the L draws were near-independent (ESS >= L). Keys are ``fold_in(rng_key, simulation index)``,
so the same key gives the same ranks on any executor: ``client`` (a ``dask.distributed.Client``) runs the
simulations on its workers.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

#: The default number of posterior draws ranks are taken among (ranks 0..99: 100 possible values).
DEFAULT_RANK_DRAWS = 99


class SBCResult(NamedTuple):
    """The outcome of ``sbc``.

    ``backend``; ``ranks`` coordinate name (``"w[0]"``) -> int array (num_sims,) in 0..``num_draws``;
    ``num_draws`` L; ``chi2_pvalues`` and ``vsbc_pvalues`` coordinate -> p-value; ``ecdf_outside``
    coordinate -> whether its ECDF leaves the simultaneous band; ``band_gamma`` the calibrated pointwise
    level; ``level`` the verdict's overall level; ``passed`` (uniformity: no chi-squared p-value below
    level / P and no ECDF outside the band) and ``vsbc_passed`` (symmetry); ``failed`` the coordinates that
    failed either uniformity test; ``ess_min`` (num_sims,) the fits' minimum bulk ESS (NaN for non-MCMC);
    ``seconds`` the wall time; ``num_sims``.
    """

    backend: str
    ranks: dict[str, np.ndarray]
    num_draws: int
    chi2_pvalues: dict[str, float]
    ecdf_outside: dict[str, bool]
    band_gamma: float
    vsbc_pvalues: dict[str, float]
    level: float
    passed: bool
    vsbc_passed: bool
    failed: list[str]
    ess_min: np.ndarray
    seconds: float
    num_sims: int


def prior_predictive(model: Callable[..., Any], x: Any, rng_key: jax.Array,
                     observed_site: str = "y") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One draw of the latent sites and of y from ``model`` on inputs ``x`` (y unobserved). Returns
    ``(theta, y)``: latent site name -> array, and the value of ``observed_site`` (the site that observes y)."""
    from numpyro import handlers

    from ..models.handles import numpyro_handle

    model_trace = handlers.trace(handlers.seed(numpyro_handle().bind(model), rng_key)).get_trace(x, None)
    if observed_site not in model_trace:
        raise ValueError(f"observed_site {observed_site!r} is not a site of the model; it has {list(model_trace)}")
    theta = {name: np.asarray(site["value"]) for name, site in model_trace.items()
             if site["type"] == "sample" and not site["is_observed"] and name != observed_site}
    return theta, np.asarray(model_trace[observed_site]["value"])


def coordinates(values: dict[str, np.ndarray], leading: int = 0) -> dict[str, np.ndarray]:
    """Split every site into scalar coordinates named ``site`` or ``site[i,j]``; the first ``leading`` axes
    (draws) are kept. Returns name -> array of the leading shape."""
    out = {}
    for name, value in values.items():
        value = np.asarray(value)
        shape = value.shape[leading:]
        if not shape:
            out[name] = value
            continue
        for index in np.ndindex(*shape):
            out[f"{name}[{','.join(map(str, index))}]"] = value[(Ellipsis, *index)] if leading else value[index]
    return out


def ranks_of(truth: dict[str, np.ndarray], draws: dict[str, np.ndarray], num_draws: int) -> dict[str, int]:
    """The rank of every scalar coordinate of ``truth`` among ``num_draws`` evenly spaced draws of ``draws``
    (site -> (S, ...), S >= num_draws): the number of draws strictly below it, in 0..num_draws."""
    total = next(iter(draws.values())).shape[0]
    if total < num_draws:
        raise ValueError(f"the posterior has {total} draws; ranks need at least num_draws = {num_draws}")
    chosen = np.linspace(0, total - 1, num_draws).round().astype(int)
    thinned = coordinates({name: value[chosen] for name, value in draws.items()}, leading=1)
    return {name: int(np.sum(thinned[name] < value)) for name, value in coordinates(truth).items()}


def chi2_pvalue(ranks: np.ndarray, num_draws: int, num_bins: int) -> float:
    """p-value of the chi-squared test that ``ranks`` (in 0..num_draws) are uniform, in ``num_bins`` equal
    bins (``num_draws + 1`` must be divisible by ``num_bins``)."""
    from scipy import stats

    counts = np.bincount(np.asarray(ranks) * num_bins // (num_draws + 1), minlength=num_bins)
    return float(stats.chisquare(counts).pvalue)


def _pointwise_min_p(ranks: np.ndarray, num_draws: int) -> np.ndarray:
    """For each sample (rows of ``ranks`` (M, n)), the smallest two-sided binomial tail probability of its
    ECDF over the evaluation points z = k / (L + 1), k = 1..L."""
    from scipy import stats

    num = ranks.shape[1]
    z = np.arange(1, num_draws + 1) / (num_draws + 1)
    counts = np.stack([np.sum(ranks < k, axis=1) for k in range(1, num_draws + 1)], axis=1)  # (M, L)
    lower = stats.binom.cdf(counts, num, z)
    upper = stats.binom.sf(counts - 1, num, z)
    return np.min(2 * np.minimum(lower, upper), axis=1)


def band_gamma(num_sims: int, num_draws: int, level: float, rng_key: jax.Array, num_uniform: int = 2000) -> float:
    """The pointwise level gamma whose binomial bands hold the whole ECDF of ``num_sims`` uniform ranks with
    probability 1 - ``level`` (estimated from ``num_uniform`` simulated uniform samples)."""
    seed = int(jax.random.randint(rng_key, (), 0, 2**31 - 1))
    uniform = np.random.default_rng(seed).integers(0, num_draws + 1, size=(num_uniform, num_sims))
    return float(np.quantile(_pointwise_min_p(uniform, num_draws), level))


def _simulate(backend: str, model: Callable[..., Any], x: Any, rng_key: jax.Array, num_draws: int,
              options: dict[str, Any], observed_site: str = "y") -> tuple[dict[str, int], float]:
    """One simulation: prior draw, fit, ranks. Returns (coordinate -> rank, minimum bulk ESS or NaN)."""
    from ..inference import ConvergenceWarning, fit
    from ..inference._degenerate import DegenerateEstimateWarning

    key_prior, key_fit = jax.random.split(rng_key)
    theta, y = prior_predictive(model, x, key_prior, observed_site)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", DegenerateEstimateWarning)
        posterior = fit(backend, model, (x, y), rng_key=key_fit, **options)
    draws = {name: posterior.flat_draws()[name] for name in posterior.latent_sites}
    if posterior.num_samples < num_draws:  # a point estimate: its one value repeated (ranks 0 or L)
        draws = {name: np.repeat(value, -(-num_draws // posterior.num_samples), axis=0) for name, value in draws.items()}
    ess = posterior.diagnostics().get("ess_bulk_min", float("nan")) if posterior.kind == "mcmc" else float("nan")
    return ranks_of(theta, draws, num_draws), float(ess)


def sbc(backend: str, model: Callable[..., Any], x: Any, *, rng_key: jax.Array, num_sims: int = 100,
        num_draws: int = DEFAULT_RANK_DRAWS, num_bins: int | None = None, level: float = 0.01, client: Any = None,
        observed_site: str = "y", **options: Any) -> SBCResult:
    """Simulation-based calibration of ``backend`` on ``model`` with inputs ``x`` (module docstring).

    Args:
        backend: a ``ppl_uq.fit`` backend name; ``options`` are its options (e.g. ``num_samples``, which
            must give at least ``num_draws`` draws).
        model: a model declaration that samples its data at a site ``y`` when y is None.
        x: the inputs every simulated data set shares.
        rng_key: simulation i uses ``fold_in(rng_key, i)``.
        num_sims: simulated data sets.
        num_draws: L, the posterior draws each rank is taken among.
        num_bins: chi-squared bins (a divisor of L + 1; default the largest of 20, 10, 5, 4, 2 that divides
            L + 1 and leaves at least 5 simulations per bin).
        level: the overall level of each verdict (false alarms at most this often for a calibrated backend).
        client: a ``dask.distributed.Client`` to run the simulations on, or None (in this process).
        observed_site: the name of the site that observes y (sampled from the prior predictive here).
    Returns:
        an ``SBCResult``.
    """
    from ..data.validate import check_positive, check_rng_key

    rng_key = check_rng_key(rng_key)
    num_sims = check_positive("num_sims", num_sims, integer=True)
    num_draws = check_positive("num_draws", num_draws, integer=True)
    level = check_positive("level", level)
    if not level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    if num_bins is None:
        num_bins = next((b for b in (20, 10, 5, 4, 2) if (num_draws + 1) % b == 0 and num_sims >= 5 * b), 1)
    elif (num_draws + 1) % num_bins:
        raise ValueError(f"num_bins must divide num_draws + 1 = {num_draws + 1}, got {num_bins!r}")
    start = time.perf_counter()
    keys = [jax.random.fold_in(rng_key, i) for i in range(num_sims)]
    if client is None:
        outcomes = [_simulate(backend, model, x, key, num_draws, options, observed_site) for key in keys]
    else:
        futures = client.map(_simulate, [backend] * num_sims, [model] * num_sims, [x] * num_sims, keys,
                             [num_draws] * num_sims, [options] * num_sims, [observed_site] * num_sims, pure=False)
        outcomes = client.gather(futures)
    names = list(outcomes[0][0])
    ranks = {name: np.array([outcome[0][name] for outcome in outcomes]) for name in names}
    per_test = level / len(names)
    gamma = band_gamma(num_sims, num_draws, per_test, jax.random.fold_in(rng_key, num_sims))
    chi2 = {name: chi2_pvalue(r, num_draws, num_bins) if num_bins > 1 else float("nan") for name, r in ranks.items()}
    outside = {name: bool(_pointwise_min_p(r[None], num_draws)[0] < gamma) for name, r in ranks.items()}
    vsbc = {name: _symmetry_pvalue(r / num_draws) for name, r in ranks.items()}
    failed = [name for name in names if outside[name] or chi2[name] < per_test]
    return SBCResult(
        backend=backend, ranks=ranks, num_draws=num_draws, chi2_pvalues=chi2, ecdf_outside=outside, band_gamma=gamma,
        vsbc_pvalues=vsbc, level=level, passed=not failed, vsbc_passed=all(p >= per_test for p in vsbc.values()),
        failed=failed, ess_min=np.array([outcome[1] for outcome in outcomes]), seconds=time.perf_counter() - start,
        num_sims=num_sims,
    )


def _symmetry_pvalue(probabilities: np.ndarray) -> float:
    """Two-sample KS p-value of ``probabilities`` against ``1 - probabilities`` (VSBC's symmetry test)."""
    from scipy import stats

    return float(stats.ks_2samp(probabilities, 1.0 - probabilities).pvalue)


def vsbc(backend: str, model: Callable[..., Any], x: Any, *, rng_key: jax.Array, num_sims: int = 100,
         num_draws: int = DEFAULT_RANK_DRAWS, level: float = 0.01, client: Any = None, **options: Any) -> dict[str, Any]:
    """VSBC (Yao et al. 2018) of a variational ``backend``: ``sbc``'s simulations, judged by the symmetry of
    p = Pr_q(theta < theta*) around 1/2. Returns ``passed``, ``pvalues`` (coordinate -> KS p-value),
    ``level`` and ``result`` (the full ``SBCResult``)."""
    result = sbc(backend, model, x, rng_key=rng_key, num_sims=num_sims, num_draws=num_draws, level=level, client=client,
                 **options)
    return {"passed": result.vsbc_passed, "pvalues": result.vsbc_pvalues, "level": level, "result": result}
