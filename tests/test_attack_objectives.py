"""The attack objectives' closed forms (``ensemble_terms``, ``batch_objective``) against float64
references and against autodiff of ``point_objective``, in every regime of confidence."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_uq.harness.attacks.objectives import (
    OBJECTIVES,
    UNROLL_CLASSES,
    batch_objective,
    class_log_odds_and_gradient,
    ensemble_terms,
    point_objective,
)

# Log-odds regimes: mixed, all confidently right (m << 0), all confidently wrong (m >> 0, p_s rounds to
# 1 in float32), beyond float32's exp range both ways, and ties.
REGIMES = {
    "mixed": lambda rng: rng.normal(scale=4.0, size=(40, 7)),
    "all-negative": lambda rng: -30.0 + rng.normal(scale=5.0, size=(40, 7)),
    "all-positive": lambda rng: 30.0 + rng.normal(scale=5.0, size=(40, 7)),
    "far-negative": lambda rng: -300.0 + rng.normal(scale=50.0, size=(40, 7)),
    "far-positive": lambda rng: 300.0 + rng.normal(scale=50.0, size=(40, 7)),
    "straddling-far": lambda rng: np.concatenate([rng.normal(-200, 20, (20, 7)), rng.normal(200, 20, (20, 7))]),
    "ties": lambda rng: np.zeros((40, 7)),
}


def _reference_terms(log_odds: np.ndarray):
    """float64, from the definitions, in log space throughout."""
    log_p = -np.logaddexp(0.0, -log_odds)  # log sigmoid(m)
    log_q = -np.logaddexp(0.0, log_odds)  # log sigmoid(-m)
    log_predictive = np.logaddexp.reduce(log_p, axis=0) - math.log(log_odds.shape[0])

    def normalise(log_weight):
        return np.exp(log_weight - np.logaddexp.reduce(log_weight, axis=0))

    return log_predictive, normalise(log_p + log_q), normalise(log_q)


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_ensemble_terms_match_float64_in_every_regime(regime):
    log_odds = REGIMES[regime](np.random.default_rng(0)).astype(np.float32)
    terms = ensemble_terms(jnp.asarray(log_odds))
    log_predictive, exact, jensen = _reference_terms(log_odds.astype(np.float64))
    np.testing.assert_allclose(np.asarray(terms.log_predictive), log_predictive, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(terms.exact_weight), exact, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(terms.jensen_weight), jensen, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(terms.exact_weight)))


@pytest.mark.parametrize("num_classes", [2, 3, 10, UNROLL_CLASSES + 3])
def test_class_log_odds_gradient_matches_autodiff(num_classes):
    rng = np.random.default_rng(num_classes)
    scores = jnp.asarray(rng.normal(scale=3.0, size=(5, 6, num_classes)), jnp.float32)
    labels = jnp.asarray(rng.integers(num_classes, size=6), jnp.int32)
    log_odds, gradient = class_log_odds_and_gradient(scores, labels)
    z = np.asarray(scores, np.float64)
    own = np.take_along_axis(z, np.asarray(labels)[None, :, None], axis=-1)[..., 0]
    rest = np.where(np.arange(num_classes) == np.asarray(labels)[:, None], -np.inf, z)
    np.testing.assert_allclose(np.asarray(log_odds), own - np.logaddexp.reduce(rest, axis=-1), rtol=1e-5, atol=1e-5)
    autodiff = jax.grad(lambda s: jnp.sum(class_log_odds_and_gradient(s, labels)[0]))(scores)
    np.testing.assert_allclose(np.asarray(gradient), np.asarray(autodiff), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("targeted", [True, False])
@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("scale", [1.0, 40.0])  # at 40 many draws round p_s(label) to 1 in float32
def test_batch_objective_is_the_point_objective_in_closed_form(objective, targeted, num_classes, scale):
    rng = np.random.default_rng(7)
    scores = jnp.asarray(rng.normal(scale=scale, size=(9, 5, num_classes)), jnp.float32)
    labels = jnp.asarray(rng.integers(num_classes, size=5), jnp.int32)
    value, cotangent = batch_objective(objective, targeted=targeted)(scores, labels)
    point = point_objective(objective, targeted=targeted)
    point_values = jax.vmap(lambda s, y: point(s, y)[1], in_axes=(1, 0))(scores, labels)
    surrogate_grad = jax.grad(lambda s: jnp.sum(jax.vmap(lambda t, y: point(t, y)[0], in_axes=(1, 0))(s, labels)))
    np.testing.assert_allclose(np.asarray(value), np.asarray(point_values), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(np.asarray(cotangent), np.asarray(surrogate_grad(scores)), rtol=1e-5, atol=1e-7)
    assert value.shape == (5,) and cotangent.shape == scores.shape


def test_exact_weights_direction_survives_where_the_float32_gradient_underflows():
    """Every draw confidently wrong (m_s ~ 120): the autodiff gradient of log p_hat underflows to 0 in
    float32; the closed-form cotangent still points the way the float64 gradient does."""
    rng = np.random.default_rng(3)
    scores = np.zeros((6, 1, 2), np.float32)
    scores[:, 0, 1] = 120.0 + rng.normal(scale=3.0, size=6)
    labels = jnp.asarray([1], jnp.int32)
    _, cotangent = batch_objective("exact", targeted=True)(jnp.asarray(scores), labels)
    plain = jax.grad(lambda s: point_objective("exact", targeted=True)(s[:, 0, :], 1)[1])(jnp.asarray(scores))
    assert float(jnp.abs(plain).max()) == 0.0  # the negative control: autodiff stalls
    m = scores[:, 0, 1].astype(np.float64)
    log_weight = -np.logaddexp(0, -m) - np.logaddexp(0, m)
    expected = np.exp(log_weight - log_weight.max())
    got = np.asarray(cotangent)[:, 0, 1].astype(np.float64)
    np.testing.assert_allclose(got / got.sum(), expected / expected.sum(), rtol=1e-5)
