"""Robustness curves on the digits MLPs: normalisation to the clean input, accuracy falling with
corruption, seed 002's failure count, and accuracy-vs-eps security curves with FGSM."""

import jax
import numpy as np
import pytest

from ppl_uq.harness.attacks import fgsm
from ppl_uq.harness.density import fit_density_confidence, posterior_features
from ppl_uq.harness.predictive import evaluate_predictive
from ppl_uq.harness.robustness import CURVE_MEASURES, accuracy_vs_eps, corruption_curve, failure_count, failure_fraction


@pytest.fixture(scope="module")
def map_density(digits_data, digits_mlp):
    x_train, y_train = digits_data.train
    return fit_density_confidence(posterior_features(digits_mlp["map"], x_train), y_train)


# -- failures ---------------------------------------------------------------------------------------
def test_failure_count_hand_examples():
    clean = [0.9, 0.5, 0.7, 0.2]
    perturbed = [0.95, 0.5, 0.6, 0.3]  # rises at 0 and 3; a tie (point 1) is no failure
    assert failure_count(clean, perturbed) == 2
    assert failure_fraction(clean, perturbed) == 0.5
    assert failure_count(clean, clean) == 0
    assert failure_count([0.1], [1.0]) == 1 and failure_fraction([0.1], [1.0]) == 1.0
    assert isinstance(failure_count(clean, perturbed), int)


@pytest.mark.parametrize(
    "clean, perturbed, match",
    [([0.5, 0.6], [0.5], "shape"), ([[0.5]], [[0.5]], "shape"), ([0.5, np.nan], [0.5, 0.5], "NaN"), ([], [], "empty")],
)
def test_failure_count_rejects_bad_input(clean, perturbed, match):
    with pytest.raises(ValueError, match=match):
        failure_count(clean, perturbed)


# -- corruption curves ------------------------------------------------------------------------------
def test_noise_curve_on_digits_map(digits_data, digits_mlp, map_density):
    x, y = digits_data.test
    curve = corruption_curve(digits_mlp["map"], x, y, corruption="gaussian_noise", image_shape=(8, 8),
                             rng_key=jax.random.key(0), levels=[0.0, 0.2, 0.5, 1.0], density=map_density)
    assert curve["levels"] == [0.0, 0.2, 0.5, 1.0] and curve["level_name"] == "sd"
    assert set(curve["measures"]) == set(CURVE_MEASURES) and curve["s_eval"] == 1 and curve["num_points"] == len(y)
    accuracy = curve["measures"]["accuracy"]
    assert accuracy["clean"] == pytest.approx(evaluate_predictive(digits_mlp["map"].log_prob_fn(), x, y)["accuracy"])
    for name, measure in curve["measures"].items():
        # sd 0 is the identity: the clean value, and exactly 1 after normalisation
        assert measure["values"][0] == pytest.approx(measure["clean"], abs=1e-12)
        assert measure["normalised"][0] == pytest.approx(1.0, abs=1e-12)
        if name != "accuracy":
            assert measure["rise_fraction"][0] == 0.0
            assert measure["normalised_of_mean"][0] == pytest.approx(1.0, abs=1e-12)
    # accuracy falls with the noise (measured 0.980, 0.936, 0.660, 0.328); the same noise draw at every level
    acc = np.asarray(accuracy["values"])
    assert np.all(np.diff(acc) <= 0.01) and acc[-1] < acc[0] - 0.4
    # density confidence falls with the noise at the default scale (measured 1, 0.955, 0.857, 0.811)
    density_curve = np.asarray(curve["measures"]["density_confidence"]["normalised"])
    assert np.all(np.diff(density_curve) < 0) and density_curve[-1] < 0.9


def test_jpeg_curve_normalises_to_the_uncorrupted_input(digits_data, digits_mlp):
    x, y = digits_data.test[0][:200], digits_data.test[1][:200]
    curve = corruption_curve(digits_mlp["deep-ensemble"], x, y, corruption="jpeg", image_shape=(8, 8),
                             rng_key=jax.random.key(0), levels=[100, 20, 1], batch_size=64)
    assert curve["s_eval"] == 4 and set(curve["measures"]) == {"accuracy", "max_probability"}
    probability = curve["measures"]["max_probability"]
    # quality 100 is close to, not exactly, the clean input
    assert probability["normalised"][0] == pytest.approx(1.0, abs=0.01)
    assert curve["measures"]["accuracy"]["values"][-1] < curve["measures"]["accuracy"]["clean"]


def test_blur_curve_with_a_plain_callable(digits_data, digits_mlp):
    x, y = digits_data.test[0][:100], digits_data.test[1][:100]
    posterior = digits_mlp["map"]
    from_posterior = corruption_curve(posterior, x, y, corruption="gaussian_blur", image_shape=(8, 8),
                                      rng_key=jax.random.key(0), levels=[0.0, 1.0, 2.0], measures=("accuracy",))
    from_callable = corruption_curve(posterior.log_prob_fn(), x, y, corruption="gaussian_blur", image_shape=(8, 8),
                                     rng_key=jax.random.key(0), levels=[0.0, 1.0, 2.0], measures="accuracy")
    assert from_posterior["measures"] == from_callable["measures"]
    assert from_posterior["measures"]["accuracy"]["normalised"][0] == 1.0
    assert from_posterior["measures"]["accuracy"]["values"][2] < from_posterior["measures"]["accuracy"]["clean"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"corruption": "fog"}, ValueError, "gaussian_noise"),
        ({"levels": []}, ValueError, "non-empty"),
        ({"levels": 0.5}, ValueError, "sequence"),
        ({"levels": [0.1, float("nan")]}, ValueError, "sd"),
        ({"levels": [-0.1]}, ValueError, "sd"),
        ({"corruption": "jpeg", "levels": [0]}, ValueError, "quality"),
        ({"measures": ("density_confidence",)}, ValueError, "fitted density"),
        ({"measures": ("entropy",)}, ValueError, "measures"),
        ({"measures": ()}, ValueError, "at least one"),
        ({"measures": ("accuracy", "accuracy")}, ValueError, "repeat"),
        ({"density": "not a density"}, TypeError, "DensityConfidence"),
        ({"image_shape": (4, 4)}, ValueError, "image_shape"),
        ({"y": np.full(10, 10)}, ValueError, "labels"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"bounds": (0.0, 0.5)}, ValueError, "outside bounds"),
        ({"bounds": None}, ValueError, "bounds"),
    ],
)
def test_corruption_curve_rejects_bad_arguments(digits_data, digits_mlp, kwargs, error, match):
    x, y = digits_data.test[0][:10], digits_data.test[1][:10]
    args = dict(x=x, y=y, corruption="gaussian_noise", image_shape=(8, 8), rng_key=jax.random.key(0),
                levels=[0.0, 0.1])
    args.update(kwargs)
    with pytest.raises(error, match=match):
        corruption_curve(digits_mlp["map"], **args)


# -- accuracy vs eps --------------------------------------------------------------------------------
def test_accuracy_vs_eps_with_fgsm_on_digits_map(digits_data, digits_mlp):
    x, y = digits_data.test
    posterior = digits_mlp["map"]
    curve = accuracy_vs_eps(fgsm, posterior, x, y, eps_values=[0.0, 0.05, 0.3], bounds=(0.0, 1.0))
    clean = evaluate_predictive(posterior.log_prob_fn(), x, y)["accuracy"]
    assert curve["attack"] == "fgsm-linf" and curve["eps"] == [0.0, 0.05, 0.3]
    assert curve["robust_accuracy"][0] == pytest.approx(clean) and curve["clean_accuracy"] == pytest.approx(clean)
    assert curve["success_rate"][0] == 0.0 and curve["mean_l2"][0] == 0.0
    # measured: 0.980, 0.875, 0.000
    assert curve["robust_accuracy"][-1] < 0.1 < clean - 0.5
    assert curve["non_increasing"]
    assert all(linf <= eps + 1e-6 for linf, eps in zip(curve["mean_linf"], curve["eps"], strict=True))
    assert len(curve["summaries"]) == 3 and curve["summaries"][1]["settings"]["eps"] == 0.05


def test_accuracy_vs_eps_rejects_bad_arguments(digits_data, digits_mlp):
    x, y = digits_data.test[0][:5], digits_data.test[1][:5]
    posterior = digits_mlp["map"]
    with pytest.raises(TypeError, match="eps_values"):
        accuracy_vs_eps(fgsm, posterior, x, y, eps_values=[0.1], eps=0.1)
    with pytest.raises(ValueError, match="eps_values"):
        accuracy_vs_eps(fgsm, posterior, x, y, eps_values=[0.1, -0.1])
    with pytest.raises(ValueError, match="empty"):
        accuracy_vs_eps(fgsm, posterior, x, y, eps_values=[])
    with pytest.raises(TypeError, match="callable"):
        accuracy_vs_eps("fgsm", posterior, x, y, eps_values=[0.1])
