"""The harness report from any set of posteriors: files, numbers consistent with the metric functions,
gates shown, bad arguments refused."""

import json

import jax
import numpy as np
import pytest

from ppl_uq.harness import predictive_log_probs
from ppl_uq.harness.attacks import attack_result_from_examples, pgd
from ppl_uq.harness.calibration import calibration_summary
from ppl_uq.report.harness_report import harness_report


@pytest.fixture(scope="module")
def report(digits_mlp, digits_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("harness")
    x, y = digits_data.test[0][:150], digits_data.test[1][:150]
    ood = np.asarray(jax.random.permutation(jax.random.key(5), x[:60], axis=1, independent=True))
    payload = harness_report(digits_mlp, (x, y), out, rng_key=jax.random.key(0), eps_values=(0.0, 0.1),
                             steps=5, bounds=(0.0, 1.0), ood=ood, num_attack_points=80, image_shape=(8, 8),
                             corruptions=("gaussian_noise",), title="digits", min_distortion_points=20,
                             sanity=True, train=digits_data.train)
    return out, payload, x, y


def test_report_writes_every_file_and_no_temporaries(report):
    out, payload, _, _ = report
    names = {p.name for p in out.iterdir()}
    expected = {"harness.md", "harness.json", "robustness_curves.png", "reliability.png",
                "uncertainty_histograms.png", "transfer_heatmap.png", "corruption_gaussian_noise.png"}
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((out / "harness.json").read_text())["title"] == "digits"
    text = (out / "harness.md").read_text()
    for heading in ("## Calibration", "## Robustness", "## AUROC", "## Transfer", "## Corruptions",
                    "## Minimum distortion", "## Sanity checks", "## Softmax scaling"):
        assert heading in text
    assert "L-BFGS fits not converged" in text  # the fixture's capped L-BFGS runs are flagged, not hidden


def test_report_numbers_match_the_metric_functions(report, digits_mlp):
    _, payload, x, y = report
    for name, model in digits_mlp.items():
        record = payload["models"][name]
        direct = calibration_summary(predictive_log_probs(model.log_prob_fn(), x), y)
        assert record["ece"] == pytest.approx(direct["ece"])
        assert record["nll"] == pytest.approx(direct["nll"])
        clean_on_attacked = float(np.mean(np.argmax(predictive_log_probs(model.log_prob_fn(), x[:80]), 1) == y[:80]))
        assert record["robustness"][0]["robust_accuracy"] == pytest.approx(clean_on_attacked)
        assert record["robustness"][1]["robust_accuracy"] < clean_on_attacked
        assert 0.5 < record["auroc"]["predictive_entropy"]["misclassification"] <= 1.0
        assert 0.5 < record["auroc"]["predictive_entropy"]["ood"] <= 1.0
        assert set(record["min_distortion"]) == {"deepfool", "min-norm", "lbfgs"}
        assert record["min_distortion"]["deepfool"]["success_rate"] > 0.9
        assert record["sanity"]["eps_zero_identity"]["passed"]
        failures = record["deepfool_failures"]
        assert 0 <= failures["density_confidence"] <= failures["num_successful"]
        assert 0 <= failures["max_probability"] <= failures["num_successful"]
        assert record["softmax_scaling"]["softmax_non_decreasing"]
        assert 0.0 <= record["auroc"]["max_probability"]["ood_fpr_at_95_tpr"] <= 1.0
        noise = record["corruptions"]["gaussian_noise"]["measures"]
        assert noise["density_confidence_predicted"]["normalised"][0] == pytest.approx(1.0)
    # a single draw has no spread: its mutual information carries no information and is not scored
    assert payload["models"]["map"]["auroc"]["mutual_information"]["misclassification"] is None
    assert payload["models"]["deep-ensemble"]["auroc"]["mutual_information"]["misclassification"] is not None
    transfer = payload["transfer"]
    for i, name in enumerate(transfer["column_names"]):
        row = transfer["row_names"].index(name)
        diagonal = transfer["error"][row][i]
        assert diagonal == pytest.approx(1 - payload["models"][name]["detection_attack"]["robust_accuracy"])


def test_report_takes_examples_made_elsewhere(digits_mlp, digits_data, tmp_path):
    x, y = digits_data.test[0][:40], digits_data.test[1][:40]
    made = {name: pgd(model, x, y, eps=0.2, steps=5, rng_key=jax.random.key(1), bounds=(0.0, 1.0))
            for name, model in digits_mlp.items()}
    wrapped = {name: attack_result_from_examples(digits_mlp[name], x, r.x_adv, y, attack="external")
               for name, r in made.items()}
    for name in made:
        np.testing.assert_array_equal(wrapped[name].success, made[name].success)
    payload = harness_report(digits_mlp, (x, y), tmp_path, rng_key=jax.random.key(0), eps_values=(0.0,), steps=2,
                             bounds=(0.0, 1.0), attack_results=wrapped)
    assert payload["settings"]["detection_attack"] == "external"
    assert "external" in (tmp_path / "harness.md").read_text()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(eps_values=(0.1, 0.0)), "eps_values"),
        (dict(image_shape=(8, 8)), "bounds"),
        (dict(attack_results={}), "attack_results"),
    ],
)
def test_report_refuses_bad_arguments(digits_mlp, digits_data, tmp_path, kwargs, match):
    x, y = digits_data.test[0][:10], digits_data.test[1][:10]
    with pytest.raises(ValueError, match=match):
        harness_report(digits_mlp, (x, y), tmp_path, rng_key=jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match="non-empty mapping"):
        harness_report({}, (x, y), tmp_path, rng_key=jax.random.key(0))
