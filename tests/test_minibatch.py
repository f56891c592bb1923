"""Minibatch training: the batch objective is the full potential's unbiased estimate (exact at B = N),
minibatch SVI and MAP reach the conjugate closed form, shuffling and early stopping behave as documented,
MC-dropout draws follow the mask semantics, the matrix-normal guide's KL and variances have their known
values, and SNR pruning prunes exactly the requested fraction."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import distributions as dist
from numpyro.distributions.kl import kl_divergence

import ppl_uq
from ppl_uq.inference._common import flat_potential
from ppl_uq.inference._guides import matrix_normal_kl
from ppl_uq.inference._minibatch import batch_objective, epoch_indices, log_joint, mean_nll
from ppl_uq.inference.mc_dropout import apply_masks
from ppl_uq.inference.pruning import prune_by_snr, snr_keep_masks
from ppl_uq.models import linear_regression, linear_regression_exact_posterior, mlp_classifier


@pytest.fixture(scope="module")
def regression():
    """400 points of a 3-D linear regression with noise 1 and prior scale 1; the exact posterior."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x @ np.array([0.5, -1.0, 2.0]) + rng.normal(size=400)).astype(np.float32)
    mean, cov = linear_regression_exact_posterior(x, y)
    return x, y, mean, cov


def test_batch_objective_at_full_batch_is_the_potential(regression):
    x, y, _, _ = regression
    mlp = functools.partial(mlp_classifier, hidden=(4,), num_classes=3)
    labels = (np.arange(len(y)) % 3).astype(np.int32)
    for model, target in ((linear_regression, y), (mlp, labels)):
        flat = flat_potential(model, x, target, jax.random.key(0))
        joint = log_joint(model, jnp.asarray(x), jnp.asarray(target), jax.random.key(0))
        objective = batch_objective(joint, data_scale=1.0)
        z = flat.init + 0.1
        full = objective(z, x, target, jnp.ones(len(target)), jax.random.key(1))
        np.testing.assert_allclose(full, flat.potential(z), rtol=1e-5)


def test_batch_objective_scales_the_likelihood_not_the_prior(regression):
    x, y, _, _ = regression
    joint = log_joint(linear_regression, jnp.asarray(x), jnp.asarray(y), jax.random.key(0))
    z = jnp.array([0.3, -0.2, 1.0])
    sites, log_det = joint.constrain(z)
    log_prior, log_lik = joint.terms(sites, log_det, x[:40], y[:40])
    estimate = batch_objective(joint, data_scale=10.0)(z, x[:40], y[:40], jnp.ones(40), jax.random.key(0))
    np.testing.assert_allclose(estimate, -(log_prior + 10.0 * jnp.sum(log_lik)), rtol=1e-6)
    assert log_lik.shape == (40,)
    np.testing.assert_allclose(mean_nll(joint, z, x, y, batch=64), -np.mean(joint.terms(sites, log_det, x, y)[1]), rtol=1e-5)


def test_epoch_indices_are_a_fresh_permutation_in_full_batches():
    first = np.asarray(epoch_indices(jax.random.key(0), 103, 10))
    second = np.asarray(epoch_indices(jax.random.key(1), 103, 10))
    assert first.shape == (10, 10)
    assert len(set(first.ravel())) == 100 and set(first.ravel()) <= set(range(103))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, np.asarray(epoch_indices(jax.random.key(0), 103, 10)))


def test_minibatch_svi_reaches_the_conjugate_posterior(regression):
    """Mean-field q on a Gaussian posterior: exact means, sds = 1/sqrt(diag(precision)) (the mean-field
    optimum). Tolerance 0.1 posterior sd: minibatch gradient noise with the decayed schedule leaves far less."""
    x, y, mean, cov = regression
    posterior = ppl_uq.fit("svi", linear_regression, (x, y), rng_key=jax.random.key(0), guide="meanfield", batch_size=40,
                           num_epochs=150, learning_rate=0.05, num_samples=4000)
    sd = np.sqrt(np.diag(cov))
    locs = posterior.info["site_locs"]["w"]
    assert np.all(np.abs(locs - mean) < 0.1 * sd), (locs, mean, sd)
    meanfield_sd = 1.0 / np.sqrt(np.diag(np.linalg.inv(cov)))
    np.testing.assert_allclose(posterior.info["site_scales"]["w"], meanfield_sd, rtol=0.15)
    assert posterior.loss_trace.shape == (150,) and posterior.info["steps"] == 150 * 10


def test_minibatch_map_reaches_the_posterior_mode(regression):
    x, y, mean, cov = regression
    posterior = ppl_uq.fit("map", linear_regression, (x, y), rng_key=jax.random.key(0), batch_size=100, num_epochs=200,
                           learning_rate=0.05)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(posterior.draws["w"][0, 0] - mean) < 0.1 * sd)
    assert posterior.info["training"] == "minibatch-adam" and posterior.loss_trace.shape == (200,)


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    y = (rng.uniform(size=300) < 0.5).astype(np.int32)  # pure noise labels: validation NLL gets worse quickly
    model = functools.partial(mlp_classifier, hidden=(32,), num_classes=2, prior_scale=10.0)
    posterior = ppl_uq.fit("map", model, (x, y), rng_key=jax.random.key(0), batch_size=30, num_epochs=60, learning_rate=0.02,
                           validation_fraction=0.2, patience=3, init_loc="glorot")
    info = posterior.info
    assert info["stopped_early"] and info["converged"] and info["epochs_run"] < 60
    assert info["epochs_run"] == info["best_epoch"][0] + 1 + 3


def test_same_key_same_minibatch_fit_and_keys_matter(regression):
    x, y, _, _ = regression
    fit = functools.partial(ppl_uq.fit, "deep-ensemble", linear_regression, (x, y), batch_size=50, num_epochs=3, num_members=3)
    first, again, other = fit(rng_key=jax.random.key(3)), fit(rng_key=jax.random.key(3)), fit(rng_key=jax.random.key(4))
    np.testing.assert_array_equal(first.draws["w"], again.draws["w"])
    assert not np.allclose(first.draws["w"], other.draws["w"])
    assert first.loss_trace.shape == (3, 3) and first.draws["w"].shape == (1, 3, 3)
    assert len({tuple(row) for row in np.round(first.draws["w"][0], 6)}) == 3  # members differ


def test_mc_dropout_draws_follow_the_mask_semantics():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(256, 30)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = functools.partial(mlp_classifier, hidden=(16,), num_classes=2)
    rate = 0.3
    posterior = ppl_uq.fit("mc-dropout", model, (x, y), rng_key=jax.random.key(0), batch_size=32, num_epochs=5,
                           dropout_rate=rate, num_samples=200)
    trained = posterior.info["trained_weights"]
    assert posterior.info["dropout_sites"] == ["w0", "w1"]
    for name in ("w0", "w1"):
        draws = posterior.draws[name][0]  # (S, fan_in, fan_out)
        kept = np.all(np.isclose(draws, trained[name] / (1 - rate), rtol=1e-6), axis=2)
        dropped = np.all(draws == 0.0, axis=2)
        assert np.all(kept | dropped), "each row is either the trained row / (1 - p) or zero"
        n = dropped.size
        assert abs(dropped.mean() - rate) < 4 * math.sqrt(rate * (1 - rate) / n)
    for name in ("b0", "b1"):
        np.testing.assert_array_equal(posterior.draws[name][0], np.broadcast_to(trained[name], posterior.draws[name][0].shape))
    masked = apply_masks({"w": jnp.ones((1000, 2))}, ["w"], 0.5, jax.random.key(0))["w"]
    assert set(np.unique(np.asarray(masked))) == {0.0, 2.0}


def test_mc_dropout_rejects_bad_options():
    x = np.zeros((10, 3), np.float32)
    y = np.zeros(10, np.int32)
    model = functools.partial(mlp_classifier, hidden=(4,), num_classes=2)
    with pytest.raises(ValueError, match="dropout_rate"):
        ppl_uq.fit("mc-dropout", model, (x, y), rng_key=jax.random.key(0), dropout_rate=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        ppl_uq.fit("mc-dropout", model, (x, y), rng_key=jax.random.key(0), batch_size=None)
    with pytest.raises(ValueError, match="batch_size"):
        ppl_uq.fit("mc-dropout", model, (x, y), rng_key=jax.random.key(0), batch_size=64)
    with pytest.raises(ValueError, match="dropout_sites"):
        ppl_uq.fit("mc-dropout", model, (x, y), rng_key=jax.random.key(0), batch_size=5, dropout_sites=["nope"])
    with pytest.raises(ValueError, match="validation_fraction"):
        ppl_uq.fit("map", model, (x, y), rng_key=jax.random.key(0), batch_size=5, validation_fraction=1.0)


def test_matrix_normal_kl_known_answers():
    rng = np.random.default_rng(3)
    loc = rng.normal(size=(4, 3))
    row_var, col_var = rng.uniform(0.2, 2.0, 4), rng.uniform(0.2, 2.0, 3)
    prior_row, prior_col = 1.5, 0.7
    closed = float(matrix_normal_kl(loc, row_var, col_var, prior_row, prior_col))
    # The same Gaussian written coordinate-wise: vec(W) ~ N(vec M, V (x) U) is diagonal for diagonal U, V.
    q = dist.Normal(jnp.asarray(loc), jnp.sqrt(jnp.outer(row_var, col_var))).to_event(2)
    p = dist.Normal(jnp.zeros((4, 3)), math.sqrt(prior_row * prior_col)).to_event(2)
    np.testing.assert_allclose(closed, float(kl_divergence(q, p)), rtol=1e-5)
    # Monte Carlo: mean of log q - log p over 200,000 draws, within 4 standard errors.
    draws = q.sample(jax.random.key(0), (200_000,))
    ratio = np.asarray(q.log_prob(draws) - p.log_prob(draws), dtype=np.float64)
    assert abs(ratio.mean() - closed) < 4 * ratio.std() / math.sqrt(ratio.size)
    # U = a I, V = b I: the KL between isotropic Gaussians N(M, ab I) and N(0, s I) over rc coordinates.
    a, b, s = 0.5, 0.8, prior_row * prior_col
    iso = float(matrix_normal_kl(loc, np.full(4, a), np.full(3, b), prior_row, prior_col))
    expected = 0.5 * (12 * a * b / s + np.sum(loc**2) / s - 12 + 12 * math.log(s / (a * b)))
    np.testing.assert_allclose(iso, expected, rtol=1e-6)


def test_matrix_normal_guide_has_outer_product_variances():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = functools.partial(mlp_classifier, hidden=(5,), num_classes=2)
    posterior = ppl_uq.fit("svi", model, (x, y), rng_key=jax.random.key(0), guide="matrix-normal", num_steps=300,
                           num_samples=4000, elbo="meanfield")
    params = posterior.info["params"]
    assert params["w0_auto_row_scale"].shape == (6,) and params["w0_auto_col_scale"].shape == (5,)
    scale = np.outer(params["w0_auto_row_scale"], params["w0_auto_col_scale"])
    np.testing.assert_allclose(posterior.info["site_scales"]["w0"], scale, rtol=1e-6)
    sd = posterior.draws["w0"][0].std(axis=0)
    # The sample sd of 4,000 Gaussian draws has relative standard error 1/sqrt(2 * 3999) ~ 1.1 %: 5 % is > 4 se.
    np.testing.assert_allclose(sd, scale, rtol=0.05)
    assert "b0_auto_scale" in params  # vectors get ordinary factors


def test_snr_pruning_prunes_exactly_the_fraction():
    snr = {"a": np.array([[3.0, 1.0], [2.0, 1.0]]), "b": np.array([0.5, 4.0, 1.0])}
    masks, threshold = snr_keep_masks(snr, 3 / 7)
    assert sum((~m).sum() for m in masks.values()) == 3
    # 0.5 first, then the first two of the three 1.0s in position order (sites in name order: a before b)
    np.testing.assert_array_equal(masks["b"], [False, True, True])
    np.testing.assert_array_equal(masks["a"], [[True, False], [True, False]])
    assert threshold == 1.0
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = functools.partial(mlp_classifier, hidden=(5,), num_classes=2)
    posterior = ppl_uq.fit("svi", model, (x, y), rng_key=jax.random.key(0), num_steps=200, num_samples=50)
    total = sum(v.size for v in posterior.info["site_locs"].values())
    for fraction in (0.25, 0.75, 0.98):
        pruned = prune_by_snr(posterior, fraction)
        zeros = sum(int((pruned.draws[n][0, 0] == 0).sum()) for n in posterior.info["site_locs"])
        assert zeros == round(fraction * total) == pruned.info["pruned_count"]
        again = pruned.redraw(jax.random.key(9))
        for name in posterior.info["site_locs"]:
            np.testing.assert_array_equal(again.draws[name][0] == 0, pruned.draws[name][0] == 0)
    with pytest.raises(ValueError, match="fraction"):
        prune_by_snr(posterior, 1.0)
    point = ppl_uq.fit("map", model, (x, y), rng_key=jax.random.key(0))
    with pytest.raises(ValueError, match="Gaussian variational posterior"):
        prune_by_snr(point, 0.5)


def test_truncated_prior_start_has_the_prior_sd_and_stays_within_two_sd():
    """``init_loc="truncated-prior"`` (seed 004's BBB start): every real site from a normal truncated at
    ±2 sd with the site's prior sd. Scale mixture pi = 0.5, sigma1 = e^-1, sigma2 = e^-7: the prior sd is
    sqrt(0.5 e^-2 + 0.5 e^-14) = 0.2601. The 78,400 first-layer entries pin the sd to ~0.3 % (Monte Carlo)."""
    from ppl_uq.inference._minibatch import initial_point, prior_moments
    from ppl_uq.models import bnn_mlp
    from ppl_uq.models.priors import scale_mixture

    x = jnp.zeros((8, 784))
    y = jnp.zeros(8, jnp.int32)
    model = functools.partial(bnn_mlp, widths=(100,), num_classes=10, activation="relu", prior=scale_mixture())
    joint = log_joint(model, x, y, jax.random.key(0))
    prior_sd = math.sqrt(0.5 * math.exp(-2) + 0.5 * math.exp(-14))
    for name in joint.shapes:  # from the distribution's moments: exact
        mean, sd = prior_moments(joint, name, jax.random.key(3))
        np.testing.assert_allclose([float(mean), float(sd)], [0.0, prior_sd], rtol=1e-6, atol=1e-7)
    first_layer = max(joint.shapes, key=lambda n: np.prod(joint.shapes[n]))
    start = joint.unravel(initial_point(joint, jax.random.key(1), "truncated-prior"))
    weights, sd = np.asarray(start[first_layer]), prior_sd
    assert weights.shape == (784, 100)
    assert abs(weights.std() / sd - 1) < 0.02  # the truncated normal's own sd is the prior's
    assert np.abs(weights).max() <= 2 * sd / 0.879596 + 1e-6  # cut at 2 of its scale (scale = sd / 0.8796)
    assert np.abs(weights).max() > 1.9 * sd / 0.879596
    again = joint.unravel(initial_point(joint, jax.random.key(2), "truncated-prior"))[first_layer]
    assert not np.array_equal(weights, np.asarray(again))
    with pytest.raises(ValueError, match="init_loc must be one of"):
        initial_point(joint, jax.random.key(1), "xavier")

    class NoMoments(dist.Normal):  # a prior that only samples: the moments come from 4 draws
        @property
        def mean(self):
            raise NotImplementedError

    no_moments = joint._replace(priors={first_layer: NoMoments(0.5, 2.0).expand((784, 100)).to_event(2)})
    mean, sd = prior_moments(no_moments, first_layer, jax.random.key(4))
    assert abs(float(mean) - 0.5) < 0.02 and abs(float(sd) / 2.0 - 1) < 0.01  # 313,600 draws: se 0.004 and 0.13 %
    assert float(sd) != 2.0  # estimated from draws, not read from the moments
