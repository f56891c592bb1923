"""The sphere attack: stays on the sphere, reaches a known optimum, stops early, exact objective in
float32 agrees with float64, Jensen bound below the exact objective, errors on bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_uq.harness import (
    adversarial_error,
    jensen_log_mean,
    predictive_log_mean,
    resampled_error,
    robust_accuracy,
    sphere_attack,
)


def squared_ensemble(weights, bias):
    """log_prob_fn of an ensemble of logistic models on squared features: logits [0, x^2 . w_s + b_s].

    ``weights`` (S, D), ``bias`` (S,); returns x (N, D) -> (S, N, 2).
    """
    weights = jnp.asarray(weights, jnp.float32)
    bias = jnp.asarray(bias, jnp.float32)

    def log_prob_fn(x):
        activation = (x * x) @ weights.T + bias  # (N, S)
        logits = jnp.stack([jnp.zeros_like(activation), activation], axis=-1)
        return jax.nn.log_softmax(jnp.moveaxis(logits, 1, 0), axis=-1)

    return log_prob_fn


def naive_log_p_wrong(weights, bias, x, target):
    """log of the mean over draws of p_s(target | x), in float64 numpy, without logsumexp."""
    activation = (np.asarray(x, np.float64) ** 2) @ np.asarray(weights, np.float64).T + bias  # (N, S)
    p_one = 1.0 / (1.0 + np.exp(-activation))
    p_target = np.where(np.asarray(target)[:, None] == 1, p_one, 1.0 - p_one)
    return np.log(p_target.mean(axis=1))


def random_points(seed, n, dim, radii=(1.0, 1.3)):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim))
    y = np.arange(n) % 2
    x = np.where(y == 0, radii[0], radii[1])[:, None] * z / np.linalg.norm(z, axis=1, keepdims=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def ensemble_problem():
    rng = np.random.default_rng(0)
    dim, draws = 12, 64
    weights = (10.0 * (1.0 + 0.5 * rng.normal(size=(draws, dim)))).astype(np.float32)
    bias = (-(1.15**2) * weights.mean(axis=1)).astype(np.float32)  # boundary near radius 1.15
    x0, y = random_points(1, 40, dim)
    return weights, bias, x0, y


@pytest.fixture(scope="module")
def ensemble_result(ensemble_problem):
    weights, bias, x0, y = ensemble_problem
    return sphere_attack(
        squared_ensemble(weights, bias), x0, y, step_size=0.05, max_steps=300, jensen_steps=50, batch_size=16
    )


def test_points_stay_on_their_sphere(ensemble_problem, ensemble_result):
    _, _, x0, _ = ensemble_problem
    radii = np.linalg.norm(x0.astype(np.float64), axis=1)
    np.testing.assert_allclose(np.linalg.norm(ensemble_result.x_adv.astype(np.float64), axis=1), radii, atol=1e-5)
    assert ensemble_result.radius_drift < 1e-5
    assert np.max(np.abs(ensemble_result.x_adv - x0)) > 0.05  # the points did move


def test_exact_objective_matches_float64_naive(ensemble_problem, ensemble_result):
    weights, bias, x0, y = ensemble_problem
    result = ensemble_result
    naive = naive_log_p_wrong(weights, bias, result.x_adv, result.target)
    np.testing.assert_allclose(np.log(result.p_wrong.astype(np.float64)), naive, rtol=1e-5)
    # Same check on predictive_log_mean directly, at the starting points.
    log_probs = squared_ensemble(weights, bias)(jnp.asarray(x0))
    ours = np.asarray(predictive_log_mean(log_probs))[np.arange(len(y)), 1 - y]
    np.testing.assert_allclose(ours, naive_log_p_wrong(weights, bias, x0, 1 - y), rtol=1e-5)


def test_attack_raises_the_wrong_class_probability(ensemble_problem, ensemble_result):
    weights, bias, x0, y = ensemble_problem
    start = np.exp(naive_log_p_wrong(weights, bias, x0, 1 - y))
    assert np.all(ensemble_result.p_wrong >= start - 1e-6)
    assert adversarial_error(ensemble_result) > np.mean(start) + 0.1
    np.testing.assert_array_equal(ensemble_result.target, 1 - y)
    trace = ensemble_result.objective_trace
    assert trace.shape == (301,) and np.all(np.diff(trace) >= -1e-6)  # best-so-far never falls
    assert ensemble_result.num_draws == 64 and ensemble_result.settings["objective"] == "ensemble"
    decided_wrong = np.mean(np.argmax(ensemble_result.log_predictive, axis=1) != y)
    assert robust_accuracy(ensemble_result) == pytest.approx(1.0 - decided_wrong)


@pytest.mark.parametrize("saturation", [30.0, 100.0])
def test_ascent_direction_is_exact_where_draws_saturate(saturation):
    """Where the draws that matter give p_s(wrong) within e^-30 (or e^-100, below float32's range) of 1,
    autodiff of log p_hat through log-softmax outputs loses them; our ascent direction matches float64."""
    from ppl_uq.harness.attacks.sphere import _point_objective

    rng = np.random.default_rng(10)
    dim, draws = 6, 5
    x = rng.normal(size=dim)
    x /= np.linalg.norm(x)
    weights = rng.normal(size=(draws, dim))
    # Draws 0-2 are confidently wrong (activation ~ saturation); draws 3-4 carry little weight.
    weak = -(saturation + 10.0)
    bias = np.array([saturation, saturation + 1.0, saturation - 1.0, weak, weak]) - (x**2) @ weights.T
    log_prob_fn = squared_ensemble(weights, bias)
    activation = (x**2) @ weights.T + bias
    log_p = -np.logaddexp(0.0, -activation)
    log_share = log_p - np.logaddexp.reduce(log_p)  # each draw's weight in log-mean-exp
    log_one_minus_p = -np.logaddexp(0.0, activation)
    for use_jensen, log_coef in ((False, log_share + log_one_minus_p), (True, log_one_minus_p)):
        coef = np.exp(log_coef - log_coef.max())
        expected = (coef[:, None] * 2.0 * x * weights).sum(axis=0)  # up to a positive factor
        objective = _point_objective(log_prob_fn, margin=False)
        grad = jax.grad(lambda z, f=objective, j=use_jensen: f(z, 1, j)[0])(jnp.asarray(x, jnp.float32))
        direction = np.asarray(grad, np.float64) / np.linalg.norm(np.asarray(grad, np.float64))
        np.testing.assert_allclose(direction, expected / np.linalg.norm(expected), atol=1e-5)
    # Negative control: autodiff of the exact objective itself is off by orders of magnitude (e^-30)
    # or exactly zero (e^-100, the attack would stall).
    naive = np.asarray(
        jax.grad(lambda z: jax.nn.logsumexp(log_prob_fn(z[None])[:, 0, 1]))(jnp.asarray(x, jnp.float32)), np.float64
    )
    true_norm = np.linalg.norm((np.exp(log_share + log_one_minus_p)[:, None] * 2.0 * x * weights).sum(axis=0))
    assert np.linalg.norm(naive) < 1e-3 * true_norm or np.linalg.norm(naive) == 0.0


def test_logits_and_log_probabilities_give_the_same_attack(ensemble_problem):
    weights, bias, x0, y = ensemble_problem
    log_prob_fn = squared_ensemble(weights, bias)
    w, b = jnp.asarray(weights), jnp.asarray(bias)

    def logits_fn(x):
        activation = w @ (x * x).T + b[:, None]  # (S, N)
        return jnp.stack([jnp.full_like(activation, 3.0), activation + 3.0], axis=-1)  # shifted logits

    settings = dict(step_size=0.05, max_steps=40, jensen_steps=10, patience=None)
    from_log_probs = sphere_attack(log_prob_fn, x0[:10], y[:10], **settings)
    from_logits = sphere_attack(logits_fn, x0[:10], y[:10], **settings)
    np.testing.assert_allclose(from_logits.log_predictive, from_log_probs.log_predictive, rtol=1e-4, atol=1e-5)


def test_jensen_bound_never_exceeds_exact_objective():
    rng = np.random.default_rng(3)
    weights = rng.normal(scale=3.0, size=(200, 8))
    bias = rng.normal(size=200)
    x, _ = random_points(4, 2000, 8)
    log_probs = squared_ensemble(weights, bias)(jnp.asarray(x))
    gap = np.asarray(predictive_log_mean(log_probs)) - np.asarray(jensen_log_mean(log_probs))
    assert np.all(gap >= -1e-6) and np.mean(gap) > 1e-3


@pytest.fixture(scope="module")
def single_model_result():
    """One model with logits x^2 . w + b: on the sphere of radius r, max a = r^2 max(w) + b and
    min a = r^2 min(w) + b, at the coordinate axes of the largest and smallest weight."""
    weights = np.array([[-1.0, 0.5, 2.0, 1.0, -0.3]], np.float32)
    bias = np.array([0.1], np.float32)
    x0, y = random_points(5, 12, 5)
    result = sphere_attack(squared_ensemble(weights, bias), x0, y, step_size=0.01, max_steps=4000)
    return weights[0], bias[0], x0, y, result


def test_single_model_reaches_the_analytic_optimum(single_model_result):
    weights, bias, x0, y, result = single_model_result
    radius_sq = np.sum(x0.astype(np.float64) ** 2, axis=1)
    activation = (result.x_adv.astype(np.float64) ** 2) @ weights + bias
    # Target 1 (y = 0): maximise a. Target 0 (y = 1): maximise the margin -a.
    found = np.where(y == 0, activation, -activation)
    optimum = np.where(y == 0, radius_sq * weights.max() + bias, -(radius_sq * weights.min() + bias))
    np.testing.assert_allclose(found, optimum, rtol=1e-3)
    axis = np.where(y == 0, np.argmax(weights), np.argmin(weights))
    assert np.all(np.argmax(np.abs(result.x_adv), axis=1) == axis)
    assert result.settings["objective"] == "logit_margin" and result.num_draws == 1


def test_early_stopping_stops(single_model_result):
    *_, result = single_model_result
    assert np.all(result.steps < 4000)
    assert np.all(result.steps >= 10)


def test_no_early_stopping_runs_every_step_and_ensemble_waits_for_the_jensen_phase(ensemble_problem):
    weights, bias, x0, y = ensemble_problem
    fn = squared_ensemble(weights, bias)
    fixed = sphere_attack(fn, x0[:4], y[:4], max_steps=30, patience=None, jensen_steps=10)
    np.testing.assert_array_equal(fixed.steps, 30)
    patient = sphere_attack(fn, x0[:4], y[:4], max_steps=60, patience=1, tol=10.0, jensen_steps=25)
    # With an unreachable tol, each point stops right after the Jensen phase (25 steps), not before it:
    # the first exact-phase iterate sets the reference and the second fails to beat it by tol.
    np.testing.assert_array_equal(patient.steps, 27)


def test_batching_gives_the_same_attack(single_model_result):
    weights, bias, x0, y, result = single_model_result
    other = sphere_attack(
        squared_ensemble(weights[None], bias[None]), x0, y, step_size=0.01, max_steps=4000, batch_size=5
    )
    np.testing.assert_allclose(other.log_predictive, result.log_predictive, rtol=1e-4, atol=1e-4)


def test_resampled_error_scores_with_a_second_ensemble(ensemble_problem, ensemble_result):
    weights, bias, _, y = ensemble_problem
    same = resampled_error(squared_ensemble(weights, bias), ensemble_result.x_adv, y)
    assert same == pytest.approx(adversarial_error(ensemble_result), rel=1e-5)
    other_weights = np.random.default_rng(9).normal(scale=2.0, size=weights.shape)
    second = resampled_error(squared_ensemble(other_weights, bias), ensemble_result.x_adv, y)
    expected = np.exp(naive_log_p_wrong(other_weights, bias, ensemble_result.x_adv, 1 - y)).mean()
    assert second == pytest.approx(expected, rel=1e-5)


def test_many_classes_targets_the_most_probable_wrong_class():
    rng = np.random.default_rng(6)
    weights = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)  # (S, C, D)

    def log_prob_fn(x):
        return jax.nn.log_softmax(jnp.einsum("scd,nd->snc", weights, x * x), axis=-1)

    x0, _ = random_points(7, 6, 6)
    y = np.array([0, 1, 2, 3, 0, 1])
    start = np.exp(np.asarray(predictive_log_mean(log_prob_fn(jnp.asarray(x0)))))
    masked = start.copy()
    masked[np.arange(6), y] = -1.0
    result = sphere_attack(log_prob_fn, x0, y, max_steps=50, jensen_steps=10)
    np.testing.assert_array_equal(result.target, masked.argmax(axis=1))
    assert np.all(result.p_wrong >= start[np.arange(6), result.target] - 1e-6)
    given = sphere_attack(log_prob_fn, x0, y, target=(y + 2) % 4, max_steps=5)
    np.testing.assert_array_equal(given.target, (y + 2) % 4)


def test_bad_inputs_raise_clear_errors(ensemble_problem):
    weights, bias, x0, y = ensemble_problem
    fn = squared_ensemble(weights, bias)
    attack = functools.partial(sphere_attack, fn, max_steps=2)
    bad = x0.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x0 contains 1 NaN"):
        attack(bad, y)
    with pytest.raises(ValueError, match=r"x0 must have shape \(N, D\)"):
        attack(x0[:, :, None], y)
    with pytest.raises(ValueError, match="x0 must have at least 2"):
        attack(x0[0], y)
    zero = x0.copy()
    zero[2] = 0.0
    with pytest.raises(ValueError, match="at the origin"):
        attack(zero, y)
    with pytest.raises(ValueError, match=r"labels in y must lie in \{0, ..., 1\}"):
        attack(x0, np.full(len(y), 2))
    with pytest.raises(ValueError, match=r"y must have shape \(40,\)"):
        attack(x0, y[:-1])
    with pytest.raises(ValueError, match="target must differ from y"):
        attack(x0, y, target=y)
    with pytest.raises(ValueError, match="step_size must be a positive number"):
        attack(x0, y, step_size=0.0)
    with pytest.raises(ValueError, match="patience must be a positive integer or None"):
        attack(x0, y, patience=0)
    with pytest.raises(ValueError, match="objective must be one of"):
        attack(x0, y, objective="probability")
    with pytest.raises(ValueError, match="single model"):
        attack(x0, y, objective="logit_margin")


def test_a_posterior_is_attacked_like_any_log_prob_fn(tiny_spheres):
    """The harness sees a Posterior only through log_prob_fn: attacking it (the model traced through
    NumPyro) equals attacking the same draws written by hand as an ensemble on standardised squared
    features. Draws are built directly (no fit, to keep the test fast)."""
    from ppl_uq import Posterior
    from ppl_uq.harness import evaluate_predictive

    data, model = tiny_spheres
    rng = np.random.default_rng(8)
    num_draws, dim = 30, data.x_train.shape[1]
    w = (5.0 * (1.0 + 0.3 * rng.normal(size=(1, num_draws, dim)))).astype(np.float32)
    b = rng.normal(scale=0.5, size=(1, num_draws)).astype(np.float32)
    posterior = Posterior(method="handmade", model=model, draws={"w": w, "b": b}, options={})
    loc, scale = data.feature_loc, data.feature_scale
    weights = w[0] / scale  # (x^2 - loc)/scale . w + b = x^2 . (w/scale) + b - loc . (w/scale)
    bias = b[0] - weights @ loc
    by_hand = squared_ensemble(weights, bias)
    x0, y = data.x_val[:8], data.y_val[:8]
    settings = dict(step_size=0.01, max_steps=20, jensen_steps=10, patience=None)
    ours = sphere_attack(posterior.log_prob_fn(), x0, y, **settings)
    hand = sphere_attack(by_hand, x0, y, **settings)
    from_logits = sphere_attack(posterior.logits, x0, y, **settings)
    assert ours.num_draws == num_draws
    np.testing.assert_allclose(ours.p_wrong, hand.p_wrong, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(from_logits.p_wrong, ours.p_wrong, rtol=1e-3, atol=1e-6)
    assert np.all(ours.p_wrong > np.exp(naive_log_p_wrong(weights, bias, x0, 1 - y)))
    metrics = evaluate_predictive(posterior.log_prob_fn(), data.x_val, data.y_val, batch_size=128)
    reference = evaluate_predictive(by_hand, data.x_val, data.y_val, batch_size=400)
    assert metrics["nll"] == pytest.approx(reference["nll"], rel=1e-3)
    assert metrics["accuracy"] == pytest.approx(reference["accuracy"])
    assert metrics["accuracy"] > 0.8

