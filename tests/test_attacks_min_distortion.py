"""Minimum-distortion attacks: Szegedy's box-constrained L-BFGS and Zhang & Chen's gradient min-norm
attack. Closed-form distances on affine softmax models, a real MLP posterior (digits), argument checks."""

import numpy as np
import pytest
import scipy.optimize
from affine import affine_model

from ppl_uq.harness.attacks.lbfgs import lbfgs_attack
from ppl_uq.harness.attacks.min_norm import min_norm_attack


@pytest.fixture(scope="module")
def affine2():
    """Two classes in D = 6; the L2 distance of x to the boundary is |z_1 - z_0| / ||w_1 - w_0||."""
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(2, 6)), rng.normal(size=2)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    z = x.astype(np.float64) @ weights.T + bias
    y = np.argmax(z, axis=1)
    closed_form = np.abs(z[:, 1] - z[:, 0]) / np.linalg.norm(weights[1] - weights[0])
    return weights, bias, x, y, closed_form


def _cosine_with_weight_difference(delta, weights, y):
    direction = weights[1 - y] - weights[y]  # towards the other class
    return np.sum(delta * direction, axis=1) / (np.linalg.norm(delta, axis=1) * np.linalg.norm(direction, axis=1))


# -- L-BFGS: known answers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bounds", [None, (-50.0, 50.0)])
def test_lbfgs_finds_the_closed_form_boundary_distance_within_the_c_resolution(affine2, bounds):
    weights, bias, x, y, closed_form = affine2
    result = lbfgs_attack(affine_model(weights, bias), x, y, bounds=bounds)
    assert result.success_rate == 1.0 and result.robust_accuracy == 0.0
    np.testing.assert_array_equal(result.target, 1 - y)
    # Success means crossing the boundary, so the distortion is at least the distance; the largest
    # successful c is within the bracket ratio q of the threshold c*, and the distortion within a factor
    # q of the distance (d log r / d log c = -1 / (1 + |margin| / 2) > -1 for the two-class solution).
    ratio = result.per_point["c_bracket_ratio"]
    assert np.all(ratio <= 10 ** (1 / 2**6) + 1e-9)  # grid ratio 10, 6 bisection steps: 3.7 %
    l2 = result.distances["l2"]
    assert np.all(l2 >= closed_form * (1 - 1e-5))
    assert np.all(l2 <= closed_form * ratio * (1 + 1e-4))
    delta = (result.x_adv - x).astype(np.float64)
    assert np.all(_cosine_with_weight_difference(delta, weights, y) > 1 - 1e-5)  # straight at the boundary
    np.testing.assert_allclose(result.distances["rms"], l2 / np.sqrt(6), rtol=1e-12)


def test_lbfgs_more_refinement_steps_tighten_the_distance(affine2):
    weights, bias, x, y, closed_form = affine2
    coarse = lbfgs_attack(affine_model(weights, bias), x, y, bounds=None, refine_steps=1)
    fine = lbfgs_attack(affine_model(weights, bias), x, y, bounds=None, refine_steps=8)
    coarse_gap = np.max(coarse.distances["l2"] / closed_form - 1)
    fine_gap = np.max(fine.distances["l2"] / closed_form - 1)
    assert 0 <= fine_gap < 0.01 < coarse_gap


def test_lbfgs_three_classes_is_bounded_by_the_exact_distance_to_the_target_region():
    """With three classes the target's region is a polyhedron; its exact L2 distance (a small QP, float64
    SLSQP) is a lower bound the attack can never beat, and it stays within 35 % of it (see lbfgs.py)."""
    rng = np.random.default_rng(3)
    weights, bias = rng.normal(size=(3, 5)), rng.normal(size=3)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    y = np.argmax(x @ weights.T + bias, axis=1)
    target = (y + 1) % 3

    def exact_distance(point, t):
        def margin_over(j):
            return lambda r: (weights[t] - weights[j]) @ (point + r) + bias[t] - bias[j]

        constraints = [{"type": "ineq", "fun": margin_over(j)} for j in range(3) if j != t]
        found = scipy.optimize.minimize(lambda r: r @ r, np.zeros(5), jac=lambda r: 2 * r, method="SLSQP",
                                        constraints=constraints, options={"ftol": 1e-14})
        return np.linalg.norm(found.x)

    reference = np.array([exact_distance(p.astype(np.float64), t) for p, t in zip(x, target, strict=True)])
    result = lbfgs_attack(affine_model(weights, bias), x, y, target=target, bounds=None)
    assert result.success_rate == 1.0
    ratio = result.distances["l2"] / reference
    assert np.all(ratio >= 1 - 1e-4) and np.all(ratio <= 1.35)


def test_lbfgs_with_a_binding_box_stays_inside_it(affine2):
    weights, bias, _, _, _ = affine2
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(30, 6)).astype(np.float32)
    z = x.astype(np.float64) @ (3 * weights).T + 3 * bias
    y = np.argmax(z, axis=1)
    closed_form = np.abs(z[:, 1] - z[:, 0]) / np.linalg.norm(3 * (weights[1] - weights[0]))
    result = lbfgs_attack(affine_model(3 * weights, 3 * bias), x, y, bounds=(0.0, 1.0))
    assert result.x_adv.min() >= -1e-6 and result.x_adv.max() <= 1 + 1e-6
    ok = result.success
    assert ok.sum() >= 5
    # the box only removes candidates: the distortion can only grow, and some points hit the box
    assert np.all(result.distances["l2"][ok] >= closed_form[ok] * (1 - 1e-5))
    assert np.any((result.x_adv[ok] <= 1e-6) | (result.x_adv[ok] >= 1 - 1e-6))


def test_lbfgs_loss_trace_starts_at_the_clean_loss_and_decreases(affine2):
    weights, bias, x, y, _ = affine2
    result = lbfgs_attack(affine_model(weights, bias), x, y, bounds=None)
    trace = result.loss_trace
    clean_loss = -result.log_predictive_clean[np.arange(len(y)), result.target].astype(np.float64)
    np.testing.assert_allclose(trace[0], clean_loss.mean(), rtol=1e-5)  # x' = x: no penalty yet
    assert trace[-1] < trace[0] and np.all(np.isfinite(trace))
    assert result.settings["penalty"] == "squared-l2" and result.s_eval == 1


# -- min-norm: known answers -----------------------------------------------------------------------------------
def test_min_norm_adam_reaches_the_boundary_near_the_closed_form(affine2):
    weights, bias, x, y, closed_form = affine2
    result = min_norm_attack(affine_model(weights, bias), x, y)
    assert result.success_rate == 1.0 and result.target is None
    ratio = result.distances["l2"] / closed_form
    # Adam's steps are not along the weight difference, so it overshoots the L2 distance (measured <= 1.16)
    assert np.all(ratio >= 1 - 1e-5) and np.all(ratio <= 1.25)
    assert result.loss_trace.shape == (201,)
    assert result.loss_trace[-1] < result.loss_trace[0]
    assert np.all(result.per_point["found"])


def test_min_norm_sgd_moves_along_the_weight_difference(affine2):
    weights, bias, x, y, closed_form = affine2
    result = min_norm_attack(affine_model(weights, bias), x, y, c=0.0, optimizer="sgd", learning_rate=0.05)
    delta = (result.x_adv - x).astype(np.float64)
    moved = np.linalg.norm(delta, axis=1) > 0
    assert moved.all()
    assert np.all(_cosine_with_weight_difference(delta, weights, y) > 1 - 1e-5)
    ok = result.success
    assert ok.sum() >= 20  # the most confident points move too slowly for plain gradient descent
    # the first iterate past the boundary: at most one step (lr * ||grad|| <= lr * ||w_1 - w_0||) beyond it
    step = 0.05 * np.linalg.norm(weights[1] - weights[0])
    assert np.all(result.distances["l2"][ok] >= closed_form[ok] * (1 - 1e-5))
    assert np.all(result.distances["l2"][ok] <= closed_form[ok] + step)


def test_min_norm_targeted_and_boxed():
    rng = np.random.default_rng(7)
    weights, bias = rng.normal(size=(3, 6)), rng.normal(size=3)
    x = rng.uniform(size=(20, 6)).astype(np.float32)
    y = np.argmax(x @ weights.T + bias, axis=1)
    target = (y + 1) % 3
    result = min_norm_attack(affine_model(3 * weights, 3 * bias), x, y, target=target, bounds=(0.0, 1.0))
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    np.testing.assert_array_equal(result.adv_prediction[result.success], target[result.success])
    assert result.success.sum() >= 10


# -- the digits MLP --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_points(digits_data):
    x, y = digits_data.test
    return x[:40], y[:40]


def test_lbfgs_on_the_digits_map_reaches_every_target_with_small_distortion(digits_mlp, digits_points):
    x, y = digits_points
    result = lbfgs_attack(digits_mlp["map"], x, y)
    assert result.success_rate == 1.0
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    average_min_distortion = result.distances["rms"][result.success].mean()
    # measured 0.068 (Szegedy et al. on MNIST: 0.058-0.14)
    assert 0.01 < average_min_distortion < 0.12
    assert result.loss_trace[-1] < result.loss_trace[0]


def test_min_norm_on_the_digits_map(digits_mlp, digits_points):
    x, y = digits_points
    result = min_norm_attack(digits_mlp["map"], x, y, bounds=(0.0, 1.0))
    assert result.success_rate >= 0.95
    assert result.distances["rms"][result.success].mean() < 0.15  # measured 0.091 (seed 004: < 0.10)


# -- argument checks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c_values", [(), (1.0, -1.0), (0.0, 1.0), (1.0, np.nan), [[1.0, 2.0]], "abc"])
def test_lbfgs_rejects_bad_c_values(affine2, c_values):
    weights, bias, x, y, _ = affine2
    with pytest.raises(ValueError, match="c_values"):
        lbfgs_attack(affine_model(weights, bias), x, y, c_values=c_values, bounds=None)


def test_attacks_reject_bad_arguments(affine2):
    weights, bias, x, y, _ = affine2
    model = affine_model(weights, bias)
    with pytest.raises(ValueError, match="target must differ from y"):
        lbfgs_attack(model, x, y, target=y, bounds=None)
    with pytest.raises(ValueError, match="target must differ from y"):
        min_norm_attack(model, x, y, target=y)
    with pytest.raises(ValueError, match="objective must be one of"):
        lbfgs_attack(model, x, y, objective="cross-entropy", bounds=None)
    with pytest.raises(ValueError, match="objective must be one of"):
        min_norm_attack(model, x, y, objective="cross-entropy")
    with pytest.raises(ValueError, match="refine_steps"):
        lbfgs_attack(model, x, y, refine_steps=-1, bounds=None)
    with pytest.raises(ValueError, match="max_iter"):
        lbfgs_attack(model, x, y, max_iter=0, bounds=None)
    with pytest.raises(ValueError, match="outside bounds"):
        lbfgs_attack(model, x, y)  # x is N(0, 1), the default box is [0, 1]
    with pytest.raises(ValueError, match="c must be"):
        min_norm_attack(model, x, y, c=-0.1)
    with pytest.raises(ValueError, match="c must be"):
        min_norm_attack(model, x, y, c=[])
    with pytest.raises(ValueError, match="optimizer must be one of"):
        min_norm_attack(model, x, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="steps"):
        min_norm_attack(model, x, y, steps=0)
    with pytest.raises(ValueError, match="y must have shape"):
        min_norm_attack(model, x, y[:-1])
