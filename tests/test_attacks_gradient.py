"""FGSM, PGD, DeepFool, the objectives and the sanity checks: analytic answers on affine softmax models,
properties on a real MLP posterior (digits), and the reporting conventions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from affine import affine_model

from ppl_uq.harness.attacks import AttackResult, deepfool, fgsm, pgd, point_objective, sphere
from ppl_uq.harness.attacks.sanity import sanity_checks, with_sanity


@pytest.fixture(scope="module")
def affine2():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(1, 2, 6)).astype(np.float32)
    bias = rng.normal(size=(1, 2)).astype(np.float32)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    y = np.argmax(x @ weights[0].T + bias[0], axis=1)
    return weights, bias, x, y


# -- analytic attacks on affine models -----------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: p(y) rounds to 1 in float32, the gradient underflows
def test_fgsm_linf_is_eps_times_sign_of_weight_difference(affine2, scale):
    weights, bias, x, y = affine2
    model = affine_model(weights * scale, bias * scale)
    result = fgsm(model, x, y, eps=0.25)
    w = weights[0]
    expected = 0.25 * np.sign(w[1 - y] - w[y])  # ascend -log p(y): towards the other class
    np.testing.assert_allclose(result.x_adv - x, expected, atol=1e-6)


def test_fgsm_l2_moves_along_the_weight_difference(affine2):
    weights, bias, x, y = affine2
    result = fgsm(affine_model(weights, bias), x, y, eps=0.5, norm="l2")
    direction = weights[0][1 - y] - weights[0][y]
    expected = 0.5 * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    np.testing.assert_allclose(result.x_adv - x, expected, atol=1e-5)


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_deepfool_reaches_the_closed_form_boundary_in_one_step(num_classes):
    rng = np.random.default_rng(num_classes)
    w = rng.normal(size=(num_classes, 8)).astype(np.float32)
    b = rng.normal(size=num_classes).astype(np.float32)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    z = x @ w.T + b
    y = np.argmax(z, axis=1)
    # distance from x to the nearest boundary of its (convex) decision region, in float64
    zd, wd = z.astype(np.float64), w.astype(np.float64)
    gaps = np.abs(zd - zd[np.arange(40), y][:, None]) / np.linalg.norm(wd[None] - wd[y][:, None], axis=2).clip(1e-300)
    gaps[np.arange(40), y] = np.inf
    closed_form = gaps.min(axis=1)
    result = deepfool(affine_model(w[None], b[None]), x, y, overshoot=0.02)
    np.testing.assert_array_equal(result.per_point["iterations"], 1)
    np.testing.assert_allclose(result.distances["l2"], 1.02 * closed_form, rtol=1e-4)
    assert result.robust_accuracy == 0.0 and result.success_rate == 1.0
    assert result.loss_trace[0] > 0 > result.loss_trace[-1]


# -- objectives ----------------------------------------------------------------------------------------
def _naive_log_predictive(scores, label):
    """float64, straight from the definition: log((1/S) sum_s softmax(scores_s)[label])."""
    scores = np.asarray(scores, np.float64)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.log(p[:, label].mean())


def test_exact_objective_in_float32_matches_float64_naive_sums():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.normal(scale=3.0, size=(50, 4)).astype(np.float32)
        label = int(rng.integers(4))
        _, targeted = point_objective("exact", targeted=True)(jnp.asarray(scores), label)
        _, untargeted = point_objective("exact", targeted=False)(jnp.asarray(scores), label)
        reference = _naive_log_predictive(scores, label)
        assert abs(float(targeted) - reference) < 1e-5 * max(1.0, abs(reference))
        assert float(untargeted) == pytest.approx(-float(targeted))


def test_jensen_bound_and_mean_logits_objectives():
    rng = np.random.default_rng(2)
    scores = rng.normal(scale=2.0, size=(30, 3)).astype(np.float32)
    exact = float(point_objective("exact", targeted=True)(jnp.asarray(scores), 1)[1])
    jensen = float(point_objective("jensen", targeted=True)(jnp.asarray(scores), 1)[1])
    mean_logits = float(point_objective("mean-logits", targeted=True)(jnp.asarray(scores), 1)[1])
    log_softmax = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    assert jensen == pytest.approx(log_softmax[:, 1].mean(), abs=1e-5)
    assert jensen <= exact
    mean = scores.mean(axis=0)
    assert mean_logits == pytest.approx(mean[1] - np.log(np.exp(mean).sum()), abs=1e-5)


@pytest.mark.parametrize("objective", ["exact", "jensen", "mean-logits"])
@pytest.mark.parametrize("scale", [1.0, 60.0])  # at 60 the float32 gradient of the value underflows
def test_surrogate_gradient_has_the_direction_of_the_float64_gradient(objective, scale):
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(7, 3, 5)) * scale
    bias = rng.normal(size=(7, 3))
    x0 = rng.normal(size=5)
    label = int(np.argmax((weights @ x0 + bias).mean(axis=0)))

    def grad_log_p_label(w, z):  # d/dx log p(label) = sum_{c != label} p(c) (w_label - w_c), per row of z
        p = np.exp(z - np.logaddexp.reduce(z, axis=-1, keepdims=True))  # small p(c) keep their digits
        return np.einsum("...c,...cd->...d", p, w[..., [label], :] - w)

    # Analytic float64 gradients of the ascended values (-log p): finite differences cannot resolve them
    # where confident draws make the value's relative change ~1e-22.
    z = weights @ x0 + bias
    if objective == "mean-logits":
        reference = -grad_log_p_label(weights.mean(axis=0), z.mean(axis=0))
    else:
        per_draw = grad_log_p_label(weights, z)  # (S, D)
        log_p = z[:, label] - np.logaddexp.reduce(z, axis=1)
        share = np.exp(log_p - np.logaddexp.reduce(log_p)) if objective == "exact" else np.full(len(z), 1 / len(z))
        reference = -share @ per_draw
    model = affine_model(weights.astype(np.float32), bias.astype(np.float32))
    surrogate = point_objective(objective, targeted=False)
    grad = jax.grad(lambda x: surrogate(model(x[None])[:, 0, :], label)[0])(jnp.asarray(x0, jnp.float32))
    grad = np.asarray(grad, np.float64)
    assert np.linalg.norm(reference) > 0, "the float64 reference must resolve the gradient"
    cosine = grad @ reference / (np.linalg.norm(grad) * np.linalg.norm(reference))
    assert cosine > 1 - 1e-4


# -- properties on a real posterior ---------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_eps_zero_returns_the_input(digits_mlp, digits_data, norm, attack):
    x, y = digits_data.test[0][:40], digits_data.test[1][:40]
    kwargs = dict(eps=0.0, norm=norm, bounds=(0.0, 1.0))
    if attack == "pgd":
        result = pgd(digits_mlp["deep-ensemble"], x, y, rng_key=jax.random.key(0), steps=5, **kwargs)
    else:
        result = fgsm(digits_mlp["deep-ensemble"], x, y, **kwargs)
    np.testing.assert_array_equal(result.x_adv, x)
    assert result.robust_accuracy == result.clean_accuracy


@pytest.mark.parametrize("norm,eps", [("linf", 0.2), ("l2", 1.5)])
def test_pgd_respects_budget_and_box_and_cannot_raise_accuracy(digits_mlp, digits_data, norm, eps):
    x, y = digits_data.test[0][:120], digits_data.test[1][:120]
    result = pgd(digits_mlp["deep-ensemble"], x, y, eps=eps, norm=norm, steps=20, rng_key=jax.random.key(1),
                 bounds=(0.0, 1.0))
    assert result.distances[norm].max() <= eps + 1e-6
    assert result.x_adv.min() >= -1e-6 and result.x_adv.max() <= 1 + 1e-6
    assert result.robust_accuracy <= result.clean_accuracy
    assert result.robust_accuracy < 0.5 * result.clean_accuracy  # a real attack at this budget
    assert result.s_eval == 4
    assert result.loss_trace.shape == (21,) and result.loss_trace[-1] > result.loss_trace[0]
    summary = result.summary()
    assert summary["conventions"]["robust_accuracy"].startswith("fraction of all N points")
    assert summary["settings"]["step_size"] == pytest.approx(2.5 * eps / 20)


def test_eot_on_a_deterministic_model_changes_nothing(digits_mlp, digits_data):
    x, y = digits_data.test[0][:50], digits_data.test[1][:50]
    key = jax.random.key(3)
    full = pgd(digits_mlp["map"], x, y, eps=0.05, steps=10, rng_key=key)
    eot = pgd(digits_mlp["map"], x, y, eps=0.05, steps=10, rng_key=key, n_grad_samples=7)
    # 7 copies of the one draw give the same objective; only float32 rounding of the 7-term sum can flip
    # the sign of a gradient coordinate that is ~0 (1 of 3,200 here), so allow a handful of those.
    assert np.mean(np.abs(eot.x_adv - full.x_adv) < 1e-6) > 0.995
    np.testing.assert_allclose(eot.loss_trace, full.loss_trace, rtol=1e-4)
    np.testing.assert_array_equal(eot.adv_prediction, full.adv_prediction)


def test_posterior_and_its_log_prob_fn_give_the_same_attack(digits_mlp, digits_data):
    x, y = digits_data.test[0][:30], digits_data.test[1][:30]
    posterior = digits_mlp["deep-ensemble"]
    a = pgd(posterior, x, y, eps=0.05, steps=5, rng_key=jax.random.key(4))
    b = pgd(posterior.log_prob_fn(), x, y, eps=0.05, steps=5, rng_key=jax.random.key(4))
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-6)
    # EOT through the posterior's own draw function equals indexing the full output
    c = pgd(posterior, x, y, eps=0.05, steps=5, rng_key=jax.random.key(4), n_grad_samples=2)
    d = pgd(posterior.log_prob_fn(), x, y, eps=0.05, steps=5, rng_key=jax.random.key(4), n_grad_samples=2)
    np.testing.assert_allclose(c.x_adv, d.x_adv, atol=1e-5)


def test_targeted_pgd_reaches_its_targets(digits_mlp, digits_data):
    x, y = digits_data.test[0][:40], digits_data.test[1][:40]
    target = (y + 1) % 10
    result = pgd(digits_mlp["map"], x, y, eps=0.3, steps=40, rng_key=jax.random.key(5), target=target,
                 bounds=(0.0, 1.0))
    assert np.mean(result.adv_prediction == target) > 0.9
    assert result.success_rate > 0.9


def test_deepfool_on_the_mlp_posteriors(digits_mlp, digits_data):
    x, y = digits_data.test[0][:60], digits_data.test[1][:60]
    for name in ("map", "deep-ensemble"):
        result = deepfool(digits_mlp[name], x, y, max_iter=30)
        assert result.success_rate == 1.0, name
        assert np.all(result.per_point["iterations"] <= 10)
        median = float(np.median(result.distances["l2"][result.success]))
        assert 0.05 < median < 3.0, (name, median)  # images have norm ~ 4: small but non-trivial
        boxed = deepfool(digits_mlp[name], x, y, max_iter=30, bounds=(0.0, 1.0))
        assert boxed.success_rate == 1.0, name  # plain clipping left ~18 % unfooled (background at 0)
        assert boxed.x_adv.min() >= 0.0 and boxed.x_adv.max() <= 1.0
        assert np.median(boxed.distances["l2"][boxed.success]) < 1.5 * median


def test_sanity_checks_on_a_deterministic_mlp(digits_mlp, digits_data):
    x, y = digits_data.test[0][:80], digits_data.test[1][:80]
    checks = sanity_checks(digits_mlp["map"], x, y, eps=0.05, rng_key=jax.random.key(6), steps=20,
                           bounds=(0.0, 1.0), n_grad_samples=(1, None))
    assert checks["failed"] == [], checks
    assert checks["eps_zero_identity"]["max_abs_change"] == 0.0
    assert checks["unbounded"]["robust_accuracy"] <= 0.01
    assert checks["n_grad_samples"]["overstatement"] == 0.0  # one draw: every EOT sample is that draw
    result = with_sanity(fgsm(digits_mlp["map"], x, y, eps=0.05), checks)
    assert result.summary()["sanity"]["failed"] == []


def test_sanity_checks_flag_a_masked_attack():
    """A model whose gradient is zero everywhere defeats PGD: the unbounded check must fail."""
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(20, 3)).astype(np.float32)

    def staircase(x):  # piecewise constant in x: autodiff gives zero gradients
        logits = jnp.stack([jnp.floor(x[:, 0] * 4), 4 - jnp.floor(x[:, 0] * 4)], axis=-1)
        return jax.nn.log_softmax(logits, axis=-1)[None]

    y = np.asarray(jnp.argmax(staircase(x)[0], axis=-1))
    checks = sanity_checks(staircase, x, y, eps=0.1, rng_key=jax.random.key(0), steps=5, bounds=(0.0, 1.0),
                           n_grad_samples=(None,))
    assert "unbounded" in checks["failed"]


def test_sphere_attack_joins_the_family(tiny_spheres):
    import ppl_uq
    from ppl_uq.harness import sphere_attack

    data, model = tiny_spheres
    posterior = ppl_uq.fit("map", model, data.train, rng_key=jax.random.key(0))
    x, y = data.x_val[:20], data.y_val[:20]
    result = sphere(posterior, x, y, step_size=0.05, max_steps=200)
    direct = sphere_attack(posterior.log_prob_fn(), x, y, step_size=0.05, max_steps=200)
    np.testing.assert_allclose(result.x_adv, direct.x_adv)
    np.testing.assert_allclose(np.linalg.norm(result.x_adv, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    assert result.attack == "sphere" and result.target is not None


# -- conventions --------------------------------------------------------------------------------------
def _result(clean, adv, y, target=None):
    clean, adv = np.log(np.asarray(clean, np.float32)), np.log(np.asarray(adv, np.float32))
    x = np.zeros((len(y), 2), np.float32)
    return AttackResult("hand", x, x + 0.5, np.asarray(y), target, clean, adv, np.zeros(2), 1, {})


def test_robust_accuracy_and_success_rate_conventions():
    # point 0: correct -> still correct; 1: correct -> fooled; 2: wrong when clean -> "corrected" by the
    # attack (still a failure for robust accuracy); 3: wrong -> wrong.
    clean = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]
    adv = [[0.7, 0.3], [0.4, 0.6], [0.9, 0.1], [0.2, 0.8]]
    result = _result(clean, adv, [0, 0, 0, 0])
    assert result.clean_accuracy == 0.5
    assert result.robust_accuracy == 0.25  # only point 0, over all N = 4
    assert result.success_rate == 0.5  # point 1 of the 2 clean-correct
    np.testing.assert_array_equal(result.success, [False, True, False, False])
    np.testing.assert_allclose(result.distances["rms"], 0.5)
    np.testing.assert_allclose(result.distances["l2"], np.sqrt(0.5))
    nobody = _result([[0.1, 0.9]], [[0.1, 0.9]], [0])
    assert nobody.success_rate is None and nobody.summary()["mean_l2_successful"] is None


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(eps=-0.1), "eps"),
        (dict(eps=0.1, norm="l1"), "norm"),
        (dict(eps=0.1, objective="mean"), "objective"),
        (dict(eps=0.1, n_grad_samples=0), "n_grad_samples"),
        (dict(eps=0.1, bounds=(0.0, 0.5)), "outside bounds"),
        (dict(eps=0.1, bounds=(1.0, 0.0)), "lo < hi"),
        (dict(eps=0.1, steps=0), "steps"),
        (dict(eps=0.1, target=np.zeros(30, int)), "target must differ"),
    ],
)
def test_bad_arguments_raise_clearly(affine2, kwargs, match):
    weights, bias, x, y = affine2
    x = np.clip(x, 0.0, 1.0)
    if "target" in kwargs:
        y = np.zeros(30, int)
    with pytest.raises(ValueError, match=match):
        pgd(affine_model(weights, bias), x, y, rng_key=jax.random.key(0), **kwargs)


def test_fgsm_with_eot_needs_a_key(affine2):
    weights, bias, x, y = affine2
    with pytest.raises(ValueError, match="rng_key"):
        fgsm(affine_model(weights, bias), x, y, eps=0.1, n_grad_samples=2)
    with pytest.raises(ValueError, match="labels"):
        fgsm(affine_model(weights, bias), x, y + 5, eps=0.1)
    with pytest.raises(ValueError, match="NaN"):
        fgsm(affine_model(weights, bias), np.full_like(x, np.nan), y, eps=0.1)


def test_loss_trace_does_not_depend_on_the_batch_size(digits_mlp, digits_data):
    """Padding rows of the last batch must not enter the trace (they did once: 0.0722 vs 0.0775)."""
    x, y = digits_data.test[0][:70], digits_data.test[1][:70]
    traces = [pgd(digits_mlp["map"], x, y, eps=0.05, steps=3, rng_key=jax.random.key(0), random_start=False,
                  batch_size=b).loss_trace for b in (70, 32, 7)]  # 7: padded to a multiple of the devices
    np.testing.assert_allclose(traces[0], traces[1], rtol=1e-5)
    np.testing.assert_allclose(traces[0], traces[2], rtol=1e-5)
    model = digits_mlp["map"].log_prob_fn()
    log_p = np.asarray(jax.nn.log_softmax(model(x)[0], axis=-1), np.float64)
    np.testing.assert_allclose(traces[0][0], -log_p[np.arange(70), y].mean(), rtol=1e-4)


def test_points_split_over_devices_give_the_single_device_answer(digits_mlp, digits_data):
    """pgd splits each batch's points over the local devices; the same program on one device's unsplit
    inputs gives the same examples (the split changes where points run, not what is computed)."""
    from ppl_uq.harness import as_predictor
    from ppl_uq.harness.attacks._common import point_sharding
    from ppl_uq.harness.attacks.gradient import _build_pgd

    sharding, padded = point_sharding(9)
    devices = len(jax.local_devices())
    assert padded % devices == 0 and 9 <= padded < 9 + devices
    assert (sharding is None) == (devices == 1)
    x, y = digits_data.test[0][:40], digits_data.test[1][:40]
    posterior = digits_mlp["deep-ensemble"]
    split = pgd(posterior, x, y, eps=0.05, steps=4, rng_key=jax.random.key(5), batch_size=40)
    run = as_predictor(posterior, x).compiled(_build_pgd, norm="linf", objective="exact", targeted=False, steps=4,
                                              n_grad_samples=None, random_start=True, keep_best=True, bounded=False)
    one_device = jax.device_put((x, y.astype(np.int32)), jax.local_devices()[0])
    whole, _ = run(*one_device, jax.random.fold_in(jax.random.key(5), 0), 0.05, 2.5 * 0.05 / 4, 0.0, 0.0)
    assert np.mean(np.abs(np.asarray(whole) - split.x_adv) < 1e-6) > 0.999
