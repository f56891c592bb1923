"""The two engines run the same declarations: equal log densities, agreeing NUTS posteriors."""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyro = pytest.importorskip("pyro")

import ppl_uq  # noqa: E402
from ppl_uq import models  # noqa: E402
from ppl_uq.inference._common import numpyro_model  # noqa: E402
from ppl_uq.inference.pyro_nuts import torch_data, torch_model  # noqa: E402


def _numpyro_log_joint(model, x, y, params):
    from numpyro.infer.util import log_density

    value, _ = log_density(numpyro_model(model), (x, y), {}, params)
    return float(value)


def _pyro_log_joint(model, x, y, params):
    from pyro import poutine

    conditioned = poutine.condition(torch_model(model), {k: torch.tensor(np.array(v)) for k, v in params.items()})
    return float(poutine.trace(conditioned).get_trace(*torch_data(x, y)).log_prob_sum())


def _prior_draw(model, x, y, seed):
    from numpyro import handlers

    from ppl_uq.inference._common import latent_site_names

    trace = handlers.trace(handlers.seed(numpyro_model(model), rng_seed=seed)).get_trace(x, y)
    return {name: np.asarray(trace[name]["value"]) for name in latent_site_names(model, x, y)}


def _cases(tiny_spheres, regression_data):
    data, standard = tiny_spheres
    x, y = data.train
    rx, ry = regression_data
    kw = data.model_kwargs
    return [
        ("squared_logistic", standard, x, y),
        ("hierarchical_logistic", functools.partial(models.hierarchical_logistic, **kw), x, y),
        ("nonzero_mean_logistic", functools.partial(models.nonzero_mean_logistic, **kw), x, y),
        ("mlp_classifier", functools.partial(models.mlp_classifier, hidden=(4,)), x, y),
        ("normal_mean", functools.partial(models.normal_mean, prior_scale=2.0), rx, ry),
        ("linear_regression", models.linear_regression, rx, ry),
    ]


def test_pyro_and_numpyro_handles_give_the_same_log_joint(tiny_spheres, regression_data):
    for name, model, x, y in _cases(tiny_spheres, regression_data):
        for seed in (0, 1):
            params = _prior_draw(model, x, y, seed)
            ours = _numpyro_log_joint(model, x, y, params)
            theirs = _pyro_log_joint(model, x, y, params)
            assert np.isfinite(ours), name
            np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=1e-3, err_msg=name)


def test_log_joint_comparison_detects_a_different_model(tiny_spheres, regression_data):
    """Negative control: changing a hyper-parameter on one side changes the log joint."""
    rx, ry = regression_data
    params = _prior_draw(models.linear_regression, rx, ry, 0)
    ours = _numpyro_log_joint(models.linear_regression, rx, ry, params)
    theirs = _pyro_log_joint(functools.partial(models.linear_regression, noise_scale=1.1), rx, ry, params)
    assert abs(ours - theirs) > 1.0


def test_pyro_nuts_agrees_with_numpyro_nuts(regression_data):
    x, y = regression_data
    options = dict(num_warmup=300, num_samples=600, num_chains=2)
    ours = ppl_uq.fit("nuts", models.linear_regression, (x, y), rng_key=jax.random.key(0), **options)
    theirs = ppl_uq.fit("pyro-nuts", models.linear_regression, (x, y), rng_key=jax.random.key(1), **options)
    assert theirs.draws["w"].shape == (2, 600, 3)
    for posterior in (ours, theirs):
        diag = posterior.diagnostics()
        assert diag["rhat_max"] < 1.05 and diag["divergences"] == 0
    summaries = [p.summary() for p in (ours, theirs)]
    mean = [s["mean"].to_numpy() for s in summaries]
    sd = [s["sd"].to_numpy() for s in summaries]
    ess = [s["ess_bulk"].to_numpy() for s in summaries]
    # Difference of two independent MC estimates: sd of the difference from both ESSs; 4 sigma.
    tolerance = 4 * np.sqrt(sd[0] ** 2 / ess[0] + sd[1] ** 2 / ess[1])
    assert np.all(np.abs(mean[0] - mean[1]) < tolerance)
    # Posterior sds agree to the MC error of an sd estimate (about sd / sqrt(2 ESS)), 4 sigma.
    sd_tolerance = 4 * np.sqrt(sd[0] ** 2 / (2 * ess[0]) + sd[1] ** 2 / (2 * ess[1]))
    assert np.all(np.abs(sd[0] - sd[1]) < sd_tolerance)
