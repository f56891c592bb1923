"""Laplace curvatures that scale to networks (``_curvature`` and ``laplace``'s option ``hessian``): the
diagonal and last-layer GGN against brute-force Jacobians and Hessians, the prior's curvature, batching,
the draws' variances, and errors.

Tolerances: the curvature checks compare float32 sums over 40 examples computed in different orders
(per-example vjps against dense Jacobians and ``jax.hessian``); their rounding is ~1e-6 relative, so
rtol 1e-4 has margin, while any error in the formula (a missing -p p^T, a wrong factor, a batch
counted twice or dropped) moves entries by far more than 1e-2 relative.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.util import potential_energy

import ppl_uq
from ppl_uq.inference import laplace
from ppl_uq.inference._common import numpyro_model
from ppl_uq.inference._curvature import (
    flat_coordinates,
    ggn_block,
    ggn_diagonal,
    hessian_diagonal,
    likelihood_sites,
    logits_function,
    prior_potential,
    psd_block,
    psd_diagonal,
)
from ppl_uq.models.conjugate import linear_regression
from ppl_uq.models.logistic import hierarchical_logistic
from ppl_uq.models.mlp import mlp_classifier

RTOL = 1e-4

AFFINE = functools.partial(mlp_classifier, hidden=(), num_classes=3)  # softmax regression: logits affine in z
MLP = functools.partial(mlp_classifier, hidden=(5,), num_classes=3)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """40 points in 3 dimensions, 3 classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


def _point(model, x, y):
    """``(unravel, z)``: random unconstrained sites flattened to z (P,) and the inverse map, built
    without ``flat_potential`` (seconds of op-by-op compiling); the identities hold at any point.
    Every site here has real or positive support, whose unconstrained shape is its own."""
    model_trace = handlers.trace(handlers.seed(numpyro_model(model), rng_seed=0)).get_trace(x, y)
    latent = [name for name, site in model_trace.items() if site["type"] == "sample" and not site["is_observed"]]
    keys = jax.random.split(jax.random.key(1), len(latent))
    params = {name: 0.7 * jax.random.normal(key, jnp.shape(model_trace[name]["value"])) for name, key in zip(latent, keys, strict=True)}
    z, unravel = ravel_pytree(params)
    return unravel, z


@pytest.fixture(scope="module")
def points(data):
    """``_point`` of the softmax regression and the MLP."""
    return {"affine": _point(AFFINE, *data), "mlp": _point(MLP, *data)}


def _brute_force(model, unravel, z, x, y):
    """The dense GGN (P, P) from ``jax.jacobian`` of the logits and the Hessian (P, P) of the NLL."""
    logits_fn = logits_function(model)

    def logits_of(v):
        return logits_fn(unravel(v), jnp.asarray(x))

    def nll(v):
        return -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits_of(v)), jnp.asarray(y)[:, None], axis=1))

    @jax.jit  # one compile instead of hundreds of op-by-op ones
    def both(v):
        jacobian = jax.jacobian(logits_of)(v)  # (N, C, P)
        p = jax.nn.softmax(logits_of(v))
        middle = jax.vmap(jnp.diag)(p) - p[:, :, None] * p[:, None, :]
        return jnp.einsum("ncp,ncd,ndq->pq", jacobian, middle, jacobian, precision="highest"), jax.hessian(nll)(v)

    return tuple(np.asarray(matrix) for matrix in both(z))


def _close(actual, expected, rtol=RTOL):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_diagonal_ggn_of_softmax_regression_is_the_exact_hessian_diagonal(data, points):
    x, y = data
    unravel, z = points["affine"]
    ggn, hessian = _brute_force(AFFINE, unravel, z, x, y)
    _close(ggn, hessian)  # the model is affine in z: the GGN is the Hessian of the NLL
    logits_fn = logits_function(AFFINE)
    diagonal = ravel_pytree(ggn_diagonal(logits_fn, unravel(z), x))[0]
    _close(diagonal, np.diag(hessian))
    # the same on the flat vector (any pytree of parameters)
    flat_diagonal = ggn_diagonal(lambda v, xb: logits_fn(unravel(v), xb), z, x, batch_size=16)
    _close(flat_diagonal, np.diag(hessian))


def test_diagonal_ggn_of_an_mlp_is_the_ggn_not_the_hessian(data, points):
    x, y = data
    unravel, z = points["mlp"]
    ggn, hessian = _brute_force(MLP, unravel, z, x, y)
    diagonal = ravel_pytree(ggn_diagonal(logits_function(MLP), unravel(z), x))[0]
    _close(diagonal, np.diag(ggn))
    # ... and the two differ on a network (the tanh layer's second derivatives), so the check above can tell
    assert np.max(np.abs(np.diag(hessian) - np.diag(ggn))) > 1e-2 * np.abs(np.diag(ggn)).max()


def test_batches_give_the_one_batch_answer(data, points):
    x, y = data
    unravel, z = points["mlp"]
    params, logits_fn = unravel(z), logits_function(MLP)
    whole = ravel_pytree(ggn_diagonal(logits_fn, params, x, batch_size=1000))[0]  # one padded batch of 48
    for batch_size in (1, 7, 16):  # 40 batches; 6 with the last padded; 3 with the last padded
        _close(ravel_pytree(ggn_diagonal(logits_fn, params, x, batch_size=batch_size))[0], whole, rtol=1e-5)
    whole_block = ggn_block(logits_fn, params, x, ["w1", "b1"], batch_size=1000)
    _close(ggn_block(logits_fn, params, x, ["w1", "b1"], batch_size=7), whole_block, rtol=1e-5)


def test_last_layer_block_is_the_nll_hessian_there(data, points):
    x, y = data
    unravel, z = points["mlp"]
    params, sites = unravel(z), ["w1", "b1"]
    block = ggn_block(logits_function(MLP), params, x, sites, batch_size=16)
    assert block.shape == (5 * 3 + 3, 5 * 3 + 3)
    ggn, hessian = _brute_force(MLP, unravel, z, x, y)
    index = flat_coordinates(params, sites)
    np.testing.assert_array_equal(z[index], ravel_pytree({name: params[name] for name in sites})[0])
    _close(block, hessian[np.ix_(index, index)])  # the logits are affine in the last layer
    _close(block, ggn[np.ix_(index, index)])


def test_prior_potential_is_the_rest_of_the_joint_and_its_diagonal_is_exact(data):
    x, y = data
    y2 = (y > 0).astype(np.int32)
    model = functools.partial(hierarchical_logistic, prior_scale=2.0)  # HalfNormal scale: a log-Jacobian
    unravel, z = _point(model, x, y2)
    observed = likelihood_sites(model, x, y2)
    assert observed == ("y",)
    prior = prior_potential(model, x, y2, observed)

    @jax.jit
    def parts(v):
        logits = logits_function(model)(unravel(v), jnp.asarray(x))
        nll = -jnp.sum(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(y2)[:, None], axis=1))
        potential = potential_energy(numpyro_model(model), (x, y2), {}, unravel(v))  # what flat_potential minimises
        return nll + prior(unravel(v)), potential, jax.hessian(lambda u: prior(unravel(u)))(v)

    total, potential, hessian = parts(z)
    np.testing.assert_allclose(float(total), float(potential), rtol=1e-5)
    exact = np.diag(np.asarray(hessian))
    _close(ravel_pytree(hessian_diagonal(prior, unravel(z)))[0], exact, rtol=1e-5)


def _correlated_prior_softmax(ppl, x, y=None):
    """Softmax regression whose weights have a correlated Gaussian prior (a dense prior Hessian)."""
    size = x.shape[-1] * 2
    covariance = 0.5 * np.eye(size) + 0.5  # correlation 0.5 between every pair
    w = ppl.sample("w", ppl.dist.MultivariateNormal(np.zeros(size), covariance))
    logits = x @ w.reshape(x.shape[-1], 2)
    ppl.deterministic("logits", logits)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=logits), obs=y)


def test_hessian_diagonal_of_a_prior_coupling_its_coordinates(data):
    x, y = data
    y2 = (y > 0).astype(np.int32)
    unravel, z = _point(_correlated_prior_softmax, x, y2)
    prior = prior_potential(_correlated_prior_softmax, x, y2, ["y"])
    hessian = np.asarray(jax.jit(jax.hessian(lambda v: prior(unravel(v))))(z))
    # the shortcut (H 1) would be wrong here, so this exercises the one-hot route (chunks of 4, last one partial)
    assert not np.allclose(hessian.sum(1), np.diag(hessian), rtol=0.1)
    _close(ravel_pytree(hessian_diagonal(prior, unravel(z), chunk_size=4))[0], np.diag(hessian), rtol=1e-5)


def _cauchy_softmax(ppl, x, y=None):
    """Softmax regression with Cauchy(0, 1) weights: -log p = log(1 + w^2), curvature 2 (1 - w^2) / (1 + w^2)^2."""
    w = ppl.sample("w", ppl.dist.Cauchy(0.0, 1.0).expand([x.shape[-1], 2]).to_event(2))
    logits = x @ w
    ppl.deterministic("logits", logits)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=logits), obs=y)


def test_a_prior_that_is_not_log_concave_is_clipped_and_counted(data):
    x, y = data
    y2 = (y > 0).astype(np.int32)
    unravel = _point(_cauchy_softmax, x, y2)[0]
    z = jnp.array([0.2, -0.5, 1.5, -3.0, 0.9, 2.0], jnp.float32)
    prior = prior_potential(_cauchy_softmax, x, y2, ["y"])
    diagonal = ravel_pytree(hessian_diagonal(prior, unravel(z)))[0]
    _close(diagonal, 2 * (1 - z**2) / (1 + z**2) ** 2, rtol=1e-5)
    clipped, count = psd_diagonal(diagonal)
    assert count == 3 and np.all(np.asarray(clipped) >= 0) and np.all(clipped[np.abs(z) < 1] == diagonal[np.abs(z) < 1])
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    matrix = (rotation * np.array([-2.0, 1.0, 3.0])) @ rotation.T
    fixed, count = psd_block(jnp.asarray(matrix))
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(fixed)), [0.0, 1.0, 3.0], atol=1e-5)
    assert count == 1
    positive = jnp.asarray(rotation @ rotation.T)
    unchanged, count = psd_block(positive)
    assert count == 0 and unchanged is positive


def test_diag_ggn_laplace_draws_have_the_diagonal_variance(data, points):
    x, y = data
    key, num_samples = jax.random.key(3), 2000
    posterior = ppl_uq.fit("laplace", MLP, (x, y), rng_key=key, hessian="diag-ggn", num_samples=num_samples,
                           curvature_batch_size=16)
    assert {name: posterior.draws[name].shape for name in posterior.draws} == {
        "w0": (1, num_samples, 3, 5), "b0": (1, num_samples, 5), "w1": (1, num_samples, 5, 3), "b1": (1, num_samples, 3)}
    info = posterior.info
    assert info["hessian"] == "diag-ggn" and info["prior_clipped"] == 0 and info["curvature_parameters"] == 38
    assert 0 < info["precision_min"] <= info["precision_max"] and "map_converged" in info
    # the same Gaussian again (the fit is deterministic given the key fit() used for it)
    _, result, gaussian = laplace.fit_gaussian(MLP, x, y, rng_key=jax.random.split(key)[0], options=posterior.options)
    assert isinstance(gaussian, laplace.DiagonalGaussian)
    draws = np.asarray(jax.vmap(lambda d: ravel_pytree(d)[0])(posterior.flat_draws()))  # real sites: z itself
    variance, mean = np.asarray(gaussian.variance()), np.asarray(result.params)
    # sample variance / variance has sd sqrt(2 / (S - 1)); sample mean sd sqrt(variance / S); 4.5 sd over 38 coordinates
    assert np.all(np.abs(draws.var(0, ddof=1) / variance - 1) < 4.5 * np.sqrt(2 / (num_samples - 1)))
    assert np.all(np.abs(draws.mean(0) - mean) < 4.5 * np.sqrt(variance / num_samples))
    # prior N(0, 1): the precision is the GGN diagonal plus 1
    ggn = ravel_pytree(ggn_diagonal(logits_function(MLP), points["mlp"][0](result.params), x))[0]
    _close(gaussian.precision, ggn + 1.0, rtol=1e-5)
    again = posterior.redraw(jax.random.key(4))
    assert again.info == info and again.draws["w0"].shape == posterior.draws["w0"].shape
    assert not np.allclose(again.draws["w0"], posterior.draws["w0"])


def test_last_layer_laplace_of_every_site_equals_the_full_laplace(data):
    # softmax regression: the "last layer" is the whole model, the GGN the exact NLL Hessian and the
    # prior Normal, so the block Gaussian is the full Laplace Gaussian
    x, y = data
    options = {**laplace.DEFAULTS, "num_samples": 10}
    _, full_map, full = laplace.fit_gaussian(AFFINE, x, y, rng_key=jax.random.key(0), options=options)
    _, _, block = laplace.fit_gaussian(AFFINE, x, y, rng_key=jax.random.key(0), options={**options, "hessian": "last-layer"})
    assert isinstance(block, laplace.BlockGaussian) and block.sites == ("w0", "b0")
    np.testing.assert_array_equal(block.mean, full_map.params)
    covariance = np.asarray(full.covariance())
    _close(block.block.covariance(), covariance[np.ix_(block.index, block.index)], rtol=1e-3)


def test_last_layer_laplace_draws_move_only_the_last_layer(data):
    x, y = data
    num_samples = 1000
    posterior = ppl_uq.fit("laplace", MLP, (x, y), rng_key=jax.random.key(5), hessian="last-layer",
                           num_samples=num_samples)
    info = posterior.info
    assert info["last_layer_sites"] == ["w1", "b1"] and info["curvature_parameters"] == 18 and info["prior_clipped"] == 0
    for name in ("w0", "b0"):  # held at the MAP
        assert np.all(posterior.draws[name] == posterior.draws[name][:, :1])
    _, _, gaussian = laplace.fit_gaussian(MLP, x, y, rng_key=jax.random.split(jax.random.key(5))[0], options=posterior.options)
    last = np.concatenate([posterior.draws["b1"][0], posterior.draws["w1"][0].reshape(num_samples, -1)], axis=1)
    covariance = np.asarray(gaussian.block.covariance())  # the block's order: b1, then w1 (sorted names)
    sd = np.sqrt(np.diag(covariance))
    entry_sd = np.sqrt((np.outer(sd**2, sd**2) + covariance**2) / num_samples)
    assert np.all(np.abs(np.cov(last.T) - covariance) < 4.5 * entry_sd)


def _wide_classifier(ppl, x, y=None):
    """A classifier with P = 5004 parameters, 5000 of them unused: over the dense limit, cheap to set up."""
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([5004]).to_event(1))
    logits = x @ w[:4].reshape(2, 2)
    ppl.deterministic("logits", logits)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=logits), obs=y)


def test_full_is_refused_beyond_the_dense_limit_before_the_map():
    x = np.ones((4, 2), np.float32)
    y = np.array([0, 1, 0, 1], np.int32)
    with pytest.raises(ValueError, match=r"hessian='full' on a model with 5004 parameters.*0.1 GB.*diag-ggn.*last-layer"):
        ppl_uq.fit("laplace", _wide_classifier, (x, y), rng_key=jax.random.key(0))


def _one_site_classifier(ppl, x, y=None):
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1], 3]).to_event(2))
    ppl.deterministic("logits", x @ w)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(logits=x @ w), obs=y)


def _probs_classifier(ppl, x, y=None):
    w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[-1], 3]).to_event(2))
    ppl.deterministic("logits", x @ w)
    with ppl.plate("data", x.shape[0]):
        ppl.sample("y", ppl.dist.Categorical(probs=jax.nn.softmax(x @ w)), obs=y)


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (MLP, {"hessian": "kfac"}, r"'hessian' must be one of \['diag-ggn', 'full', 'last-layer'\]"),
        (MLP, {"curvature_batch_size": 0}, "'curvature_batch_size' must be an integer >= 1"),
        (MLP, {"last_layer_sites": "w1"}, "'last_layer_sites' must be None"),
        (MLP, {"last_layer_sites": ["w1", "w1"]}, "'last_layer_sites' must be None"),
        (MLP, {"last_layer_sites": []}, "'last_layer_sites' must be None"),
        (MLP, {"hessian": "last-layer", "last_layer_sites": ["w9"]}, r"\['w9'\], not latent sites.*\['w0', 'b0', 'w1', 'b1'\]"),
        (_one_site_classifier, {"hessian": "last-layer"}, r"last two latent sites .* has \['w'\]; pass option last_layer_sites"),
        (_probs_classifier, {"hessian": "diag-ggn"}, "site 'y' is CategoricalProbs"),
    ],
)
def test_bad_curvature_options_raise_clear_errors(data, model, options, message):
    with pytest.raises(ValueError, match=message):
        ppl_uq.fit("laplace", model, data, rng_key=jax.random.key(0), **options)


def test_ggn_curvatures_need_a_classifier(regression_data):
    with pytest.raises(ValueError, match="deterministic site 'logits'"):
        ppl_uq.fit("laplace", linear_regression, regression_data, rng_key=jax.random.key(0), hessian="diag-ggn")


def test_a_diagonal_precision_of_zero_needs_jitter():
    with pytest.raises(laplace.NotPositiveDefiniteError, match="0 at 1 of 3 coordinates.*jitter > 0"):
        laplace.diagonal_gaussian(jnp.array([1.0, 0.0, 2.0]), jnp.zeros(3))
    gaussian = laplace.diagonal_gaussian(jnp.array([1.0, 0.0, 2.0]), jnp.zeros(3), jitter=0.5)
    np.testing.assert_allclose(gaussian.variance(), [1 / 1.5, 2.0, 1 / 2.5])
    with pytest.raises(laplace.NotPositiveDefiniteError, match="NaN"):
        laplace.diagonal_gaussian(jnp.array([1.0, jnp.nan]), jnp.zeros(2))


def test_linearised_predictive_is_exact_for_affine_models_and_linear_in_the_draw():
    """The GLM predictive f(theta*, x) + J(x)(theta - theta*): equal to the model's logits when the logits are
    affine in the parameters, equal to the MAP's at theta = theta*, and linear in theta - theta* otherwise."""
    from ppl_uq.models import mlp_classifier
    from ppl_uq.posterior import Posterior

    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    affine = functools.partial(mlp_classifier, hidden=(), num_classes=3)
    center = {"w0": rng.normal(size=(4, 3)).astype(np.float32), "b0": rng.normal(size=3).astype(np.float32)}
    draws = {k: (v + rng.normal(size=(5,) + v.shape).astype(np.float32))[None] for k, v in center.items()}
    plain = Posterior(method="laplace", model=affine, draws=draws, options={})
    glm = Posterior(method="laplace", model=affine, draws=draws, options={}, info={"linearize_at": center})
    np.testing.assert_allclose(glm.logits(x), plain.logits(x), rtol=1e-5, atol=1e-5)

    mlp = functools.partial(mlp_classifier, hidden=(5,), num_classes=3)
    center = {"w0": rng.normal(size=(4, 5)), "b0": rng.normal(size=5), "w1": rng.normal(size=(5, 3)), "b1": rng.normal(size=3)}
    center = {k: v.astype(np.float32) for k, v in center.items()}
    step = {k: 0.1 * rng.normal(size=v.shape).astype(np.float32) for k, v in center.items()}
    draws = {k: np.stack([center[k], center[k] + step[k], center[k] + 2 * step[k]])[None] for k in center}
    glm = np.asarray(Posterior(method="laplace", model=mlp, draws=draws, options={}, info={"linearize_at": center}).logits(x))
    exact = np.asarray(Posterior(method="laplace", model=mlp, draws=draws, options={}).logits(x))
    np.testing.assert_allclose(glm[0], exact[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(glm[2] - glm[0], 2 * (glm[1] - glm[0]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(glm[2], exact[2], atol=1e-3)  # the network is not linear: the two predictives differ


def test_laplace_linearized_option_records_the_map_and_rejects_unknown_values():
    from ppl_uq.models import mlp_classifier

    rng = np.random.default_rng(8)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = functools.partial(mlp_classifier, hidden=(6,), num_classes=2)
    posterior = ppl_uq.fit("laplace", model, (x, y), rng_key=jax.random.key(0), hessian="diag-ggn", predictive="linearized",
                           num_samples=20, batch_size=40, num_epochs=5, learning_rate=0.01)
    center = posterior.info["linearize_at"]
    assert set(center) == {"w0", "b0", "w1", "b1"} and center["w0"].shape == (4, 6)
    assert posterior.log_probs(x).shape == (20, 120, 2)
    with pytest.raises(ValueError, match="predictive"):
        ppl_uq.fit("laplace", model, (x, y), rng_key=jax.random.key(0), predictive="glm")
