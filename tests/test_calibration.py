"""Calibration metrics: hand-computed bins (edges, confidence 1.0, ties, N below the bin count, equal-mass
bins), an independent float64 reference loop, NLL / Brier by hand, agreement with evaluate_predictive on a
real posterior, and clear errors (the reliability plot is tested in test_report.py)."""

import math

import numpy as np
import pytest

from ppl_uq.harness import evaluate_predictive, predictive_log_probs
from ppl_uq.harness.calibration import (
    brier_score,
    calibration_summary,
    confidence_and_correct,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_data,
)

# Five points, B = 5 equal-width bins with edges 0, .2, .4, .6, .8, 1:
#   1.0 -> bin 4 (closed at 1), 0.9 -> bin 4, 0.55 -> bin 2, 0.2 -> bin 0 (an edge belongs to the bin
#   below), 0.0 -> bin 0 (closed at 0).
#   bin 0: n=2, conf (.2 + 0)/2 = .1, acc (0 + 1)/2 = .5, gap .4  -> weighted 2/5 * .4  = .16
#   bin 2: n=1, conf .55, acc 1, gap .45                          -> weighted 1/5 * .45 = .09
#   bin 4: n=2, conf (1 + .9)/2 = .95, acc (1 + 0)/2 = .5, gap .45 -> weighted 2/5 * .45 = .18
#   ECE = .16 + .09 + .18 = .43; MCE = .45.
CONF = np.array([1.0, 0.9, 0.55, 0.2, 0.0])
CORRECT = np.array([True, False, True, False, True])


def test_equal_width_bins_by_hand():
    assert expected_calibration_error(CONF, CORRECT, num_bins=5) == pytest.approx(0.43, abs=1e-12)
    assert maximum_calibration_error(CONF, CORRECT, num_bins=5) == pytest.approx(0.45, abs=1e-12)
    data = reliability_data(CONF, CORRECT, num_bins=5)
    assert data.counts.tolist() == [2, 0, 1, 0, 2]
    np.testing.assert_allclose(data.lower, [0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_allclose(data.upper, [0.2, 0.4, 0.6, 0.8, 1.0])
    assert data.mean_confidence.tolist() == pytest.approx([0.1, None, 0.55, None, 0.95])
    assert data.accuracy.tolist() == [0.5, None, 1.0, None, 0.5]
    assert data.nonempty.tolist() == [True, False, True, False, True]
    assert data.as_dict()["accuracy"] == [0.5, None, 1.0, None, 0.5]
    assert data.num_points == 5 and data.binning == "width"


def test_confidence_one_lands_in_the_last_bin():
    # Three points at confidence exactly 1.0, two correct: one bin (the last) with conf 1, acc 2/3:
    # ECE = |2/3 - 1| = 1/3 for every bin count, and no point is lost to a bin B.
    for num_bins in (1, 2, 10, 15):
        data = reliability_data(np.ones(3), [1, 1, 0], num_bins=num_bins)
        assert data.counts[-1] == 3 and data.counts.sum() == 3 and len(data.counts) == num_bins
        assert expected_calibration_error(np.ones(3), [1, 1, 0], num_bins=num_bins) == pytest.approx(1 / 3)
        assert expected_calibration_error(np.ones(3), [1, 1, 0], num_bins=num_bins, binning="mass") == pytest.approx(
            1 / 3
        )


def test_confidences_on_inner_edges_go_to_the_bin_below():
    # B = 4: 0.25 -> bin 0, 0.5 -> bin 1, 0.75 -> bin 2, and one point just above each edge.
    conf = np.array([0.25, 0.5, 0.75, np.nextafter(0.25, 1), np.nextafter(0.5, 1), np.nextafter(0.75, 1)])
    assert reliability_data(conf, np.ones(6), num_bins=4).counts.tolist() == [1, 2, 2, 1]


def test_equal_mass_bins_by_hand():
    # Sorted: .1 .2 .2 | .9 .95 (array_split of 5 into 2 -> sizes 3, 2).
    #   bin 0: conf (.1 + .2 + .2)/3 = .5/3, acc 1/3, gap 1/6 -> weighted 3/5 * 1/6 = .1
    #   bin 1: conf .925, acc 1, gap .075                     -> weighted 2/5 * .075 = .03
    #   ECE = .13, MCE = 1/6.
    conf, correct = np.array([0.9, 0.2, 0.1, 0.95, 0.2]), np.array([1, 1, 0, 1, 0])
    assert expected_calibration_error(conf, correct, num_bins=2, binning="mass") == pytest.approx(0.13)
    assert maximum_calibration_error(conf, correct, num_bins=2, binning="mass") == pytest.approx(1 / 6)
    data = reliability_data(conf, correct, num_bins=2, binning="mass")
    assert data.counts.tolist() == [3, 2]
    assert data.lower.tolist() == [0.1, 0.9] and data.upper.tolist() == [0.2, 0.95]


def test_ties_in_equal_mass_bins_split_by_input_order():
    # Four tied confidences .3, correct [1, 0, 0, 0], B = 2: the stable order keeps input order, so
    # bin 0 = points 0, 1 (acc .5, gap .2) and bin 1 = points 2, 3 (acc 0, gap .3):
    # ECE = .5 * .2 + .5 * .3 = .25. Equal-width bins put all four in one bin: |.25 - .3| = .05.
    conf, correct = np.full(4, 0.3), np.array([1, 0, 0, 0])
    assert expected_calibration_error(conf, correct, num_bins=2, binning="mass") == pytest.approx(0.25)
    assert expected_calibration_error(conf, correct, num_bins=2, binning="width") == pytest.approx(0.05)
    # Deterministic: the same call twice gives the same number.
    assert expected_calibration_error(conf, correct, num_bins=2, binning="mass") == pytest.approx(0.25)


def test_fewer_points_than_bins():
    # N = 3, B = 15: every point is alone in its bin under both rules (.9 -> bin 13, .6 -> bin 8 (edge
    # 9/15 = .6 belongs below), .3 -> bin 4; equal-mass: three bins of one, twelve empty), so
    # ECE = (|1 - .9| + |0 - .6| + |1 - .3|) / 3 = 1.4/3; MCE = .7.
    conf, correct = np.array([0.9, 0.6, 0.3]), np.array([1, 0, 1])
    for binning in ("width", "mass"):
        assert expected_calibration_error(conf, correct, binning=binning) == pytest.approx(1.4 / 3)
        assert maximum_calibration_error(conf, correct, binning=binning) == pytest.approx(0.7)
        data = reliability_data(conf, correct, binning=binning)
        assert data.counts.sum() == 3 and int(np.count_nonzero(data.counts)) == 3
        assert not np.isnan(data.mean_confidence.filled(0.0)).any()
    assert reliability_data(conf, correct).counts.nonzero()[0].tolist() == [4, 8, 13]
    assert reliability_data(conf, correct, binning="mass").counts.tolist() == [1, 1, 1] + [0] * 12


def _reference_ece(conf, correct, num_bins, binning):
    """Straightforward float64 loops, written independently of the library's searchsorted/bincount."""
    n = len(conf)
    members = [[] for _ in range(num_bins)]
    if binning == "width":
        for i in range(n):
            b = 0
            while b < num_bins - 1 and conf[i] > (b + 1) / num_bins:
                b += 1
            members[b].append(i)
    else:
        order = sorted(range(n), key=lambda i: conf[i])  # Python's sort is stable
        base, extra = divmod(n, num_bins)
        start = 0
        for b in range(num_bins):
            size = base + (1 if b < extra else 0)
            members[b] = order[start : start + size]
            start += size
    total = 0.0
    for idx in members:
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            avg = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - avg)
    return total


@pytest.mark.parametrize("binning", ["width", "mass"])
@pytest.mark.parametrize("num_bins", [1, 7, 15])
def test_ece_matches_a_reference_loop_on_random_data(binning, num_bins):
    rng = np.random.default_rng(num_bins)
    conf = rng.beta(4.0, 1.5, size=1500)
    conf[:60] = rng.integers(0, num_bins + 1, size=60) / num_bins  # exactly on edges, including 0 and 1
    conf[60:200] = np.round(conf[60:200], 2)  # many ties
    correct = rng.random(1500) < conf ** 1.3
    expected = _reference_ece(conf.tolist(), correct.astype(float).tolist(), num_bins, binning)
    assert expected_calibration_error(conf, correct, num_bins=num_bins, binning=binning) == pytest.approx(
        expected, abs=1e-12
    )


# Three points, three classes; the labels present are {0} only (C = 3 comes from the shape).
P3 = np.array([[0.5, 0.3, 0.2], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
Y3 = np.array([0, 0, 0])
# NLL = -(ln .5 + ln .8 + ln .2)/3 = (0.693147 + 0.223144 + 1.609438)/3 = 0.841910
# Brier rows: (.5-1)^2 + .3^2 + .2^2 = .38; (.8-1)^2 + .01 + .01 = .06; .2-1 -> .64 + .49 + .01 = 1.14;
#   mean 1.58/3 = 0.526667
# decisions 0, 0, 1 -> accuracy 2/3; confidences .5 .8 .7 -> avg 2/3.
# ECE (15 bins): .5 -> bin 7, .8 -> bin 11 (edge 12/15 = .8 belongs below), .7 -> bin 10, one point each:
#   (|1 - .5| + |1 - .8| + |0 - .7|)/3 = 1.4/3.


def test_nll_brier_and_summary_by_hand_with_a_single_class_present():
    log_p = np.log(P3)
    assert negative_log_likelihood(log_p, Y3) == pytest.approx(0.841910, abs=1e-6)
    assert brier_score(log_p, Y3) == pytest.approx(1.58 / 3, abs=1e-12)
    summary = calibration_summary(log_p, Y3)
    assert summary["nll"] == pytest.approx(0.841910, abs=1e-6)
    assert summary["brier"] == pytest.approx(1.58 / 3)
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["avg_confidence"] == pytest.approx(2 / 3)
    assert summary["ece"] == pytest.approx(1.4 / 3)
    assert summary["ece_mass"] == pytest.approx(1.4 / 3)
    assert summary["mce"] == pytest.approx(0.7)
    assert summary["num_points"] == 3 and summary["num_classes"] == 3 and summary["num_bins"] == 15


def test_two_column_problem_uses_the_multiclass_brier():
    # C = 2 from the shape, only label 1 present. Brier = mean sum_c (p_c - onehot_c)^2:
    # rows [.3 .7] -> .09 + .09 = .18; [.6 .4] -> .36 + .36 = .72; mean .45 (twice the binary form .225).
    log_p = np.log(np.array([[0.3, 0.7], [0.6, 0.4]]))
    assert brier_score(log_p, [1, 1]) == pytest.approx(0.45)
    assert negative_log_likelihood(log_p, [1, 1]) == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2)


def test_zero_probability_entries_and_float32_rounding():
    # -inf is a probability of exactly 0; a float32 log p_hat slightly above 0 gives confidence 1, not > 1.
    log_p = np.array([[0.0, -np.inf], [np.log(0.25), np.log(0.75)]])
    assert brier_score(log_p, [0, 1]) == pytest.approx((0.0 + 2 * 0.0625) / 2)
    assert negative_log_likelihood(log_p, [1, 1]) == math.inf
    conf, correct = confidence_and_correct(np.array([[1e-7, -20.0]], np.float32), [0])
    assert conf.tolist() == [1.0] and correct.tolist() == [1.0]


def test_summary_matches_evaluate_predictive_on_a_real_posterior(digits_data, digits_mlp):
    x, y = digits_data.test
    log_prob_fn = digits_mlp["deep-ensemble"].log_prob_fn()
    summary = calibration_summary(predictive_log_probs(log_prob_fn, x), y)
    reference = evaluate_predictive(log_prob_fn, x, y)
    assert summary["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-12)
    assert summary["nll"] == pytest.approx(reference["nll"], rel=1e-5)
    assert summary["avg_confidence"] == pytest.approx(reference["avg_confidence"], rel=1e-5)
    assert summary["accuracy"] > 0.9
    for name in ("ece", "ece_mass", "mce", "brier"):
        assert 0.0 <= summary[name] <= (2.0 if name == "brier" else 1.0), name
    assert summary["ece"] <= summary["mce"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"confidence": [0.5, 1.2]}, ValueError, "confidence must lie in"),
        ({"confidence": [0.5, -0.1]}, ValueError, "confidence must lie in"),
        ({"confidence": [0.5, np.nan]}, ValueError, "confidence contains"),
        ({"confidence": [[0.5, 0.4]]}, ValueError, "confidence must be a non-empty one-dimensional"),
        ({"confidence": []}, ValueError, "confidence"),
        ({"confidence": ["a", "b"]}, TypeError, "confidence"),
        ({"correct": [1, 0, 1]}, ValueError, "correct must have the shape"),
        ({"correct": [1, 2]}, ValueError, "correct must hold"),
        ({"num_bins": 0}, ValueError, "num_bins"),
        ({"num_bins": 2.0}, ValueError, "num_bins"),
        ({"num_bins": True}, ValueError, "num_bins"),
        ({"binning": "quantile"}, ValueError, "binning must be one of"),
    ],
)
def test_binned_metrics_reject_bad_input(kwargs, error, match):
    args = {"confidence": [0.5, 0.7], "correct": [1, 0], **kwargs}
    confidence, correct = args.pop("confidence"), args.pop("correct")
    for fn in (expected_calibration_error, maximum_calibration_error, reliability_data):
        with pytest.raises(error, match=match):
            fn(confidence, correct, **args)


@pytest.mark.parametrize(
    ("log_p", "y", "error", "match"),
    [
        (np.log(P3), [0, 0], ValueError, "y must have shape"),
        (np.log(P3), [0, 1, 3], ValueError, "labels in y must lie in"),
        (np.log(P3), [0, -1, 2], ValueError, "labels in y must lie in"),
        (np.log(P3), [0.5, 1, 2], ValueError, "integer"),
        (np.log(P3) + 1.0, [0, 1, 2], ValueError, "normalised"),
        (np.full((3, 3), np.nan), [0, 1, 2], ValueError, "NaN"),
        (np.log(P3)[0], [0], ValueError, "log_predictive must be a non-empty"),
        (np.zeros((3, 3), np.int32), [0, 1, 2], TypeError, "log_predictive"),
    ],
)
def test_distribution_metrics_reject_bad_input(log_p, y, error, match):
    for fn in (negative_log_likelihood, brier_score, calibration_summary, confidence_and_correct):
        with pytest.raises(error, match=match):
            fn(log_p, y)
    with pytest.raises(ValueError, match="num_bins"):
        calibration_summary(np.log(P3), Y3, num_bins=-1)
