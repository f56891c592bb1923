"""Detection metrics: AUROC equal to scikit-learn's, hand-computed values with ties, explicit orientation,
the balanced adversarial variant, FPR at 95 % TPR against a brute-force reference, a real posterior, and
clear errors."""

import jax
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ppl_uq.harness.detection import (
    FPR_AT_TPR_CONVENTION,
    BalancedAUROC,
    adversarial_auroc,
    auroc,
    balanced_adversarial_auroc,
    fpr_at_tpr,
    misclassification_auroc,
    ood_auroc,
)


def test_auroc_by_hand_with_a_tie():
    # Positives .8 .5, negatives .5 .2. Pairs (pos, neg): (.8,.5) 1, (.8,.2) 1, (.5,.5) tie 1/2, (.5,.2) 1
    # -> 3.5 / 4 = .875. Reversed orientation: the complement .125 (the tie still counts 1/2).
    assert auroc([0.8, 0.5], [0.5, 0.2]) == pytest.approx(0.875)
    assert auroc([0.8, 0.5], [0.5, 0.2], higher_is_positive=False) == pytest.approx(0.125)
    # All four scores tied: every pair is a tie -> 1/2.
    assert auroc([0.3, 0.3], [0.3, 0.3]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_equals_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.7, 1.0, size=300)
    neg = rng.normal(0.0, 1.0, size=500)
    pos[:50] = np.round(pos[:50], 1)  # ties within and across classes
    neg[:80] = np.round(neg[:80], 1)
    labels = np.r_[np.ones(300), np.zeros(500)]
    scores = np.r_[pos, neg]
    assert auroc(pos, neg) == roc_auc_score(labels, scores)
    assert auroc(pos, neg, higher_is_positive=False) == pytest.approx(1.0 - roc_auc_score(labels, scores), abs=1e-12)
    # and the pair-counting definition
    pairs = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert auroc(pos, neg) == pytest.approx(pairs, abs=1e-12)


def test_misclassification_auroc_orientation():
    # Scores .1 .2 .9 .4, correct T T F F: positives (wrong) .9 .4, negatives (right) .1 .2: all four pairs
    # ranked right -> 1.0 when higher means uncertain; the same scores read as confidence -> 0.0.
    score, correct = np.array([0.1, 0.2, 0.9, 0.4]), np.array([True, True, False, False])
    assert misclassification_auroc(score, correct, higher_means="uncertain") == 1.0
    assert misclassification_auroc(score, correct, higher_means="confident") == 0.0
    # A tie: wrong point at .2 ties a right point: pairs (.9,.1) 1 (.9,.2) 1 (.2,.1) 1 (.2,.2) 1/2 -> 3.5/4.
    assert misclassification_auroc([0.1, 0.2, 0.9, 0.2], [1, 1, 0, 0], higher_means="uncertain") == 0.875


def test_ood_and_adversarial_auroc_put_the_flagged_class_positive():
    # in-distribution entropies .1 .3, OOD .2 .9: pairs (.2,.1) 1 (.2,.3) 0 (.9,.1) 1 (.9,.3) 1 -> 3/4.
    assert ood_auroc([0.1, 0.3], [0.2, 0.9], higher_means="uncertain") == 0.75
    assert adversarial_auroc([0.1, 0.3], [0.2, 0.9], higher_means="uncertain") == 0.75
    # max-probability scores: a confident in-distribution point should score high -> orientation flips.
    assert ood_auroc([0.9, 0.8], [0.5, 0.85], higher_means="confident") == 0.75
    assert adversarial_auroc([0.9, 0.8], [0.5, 0.85], higher_means="confident") == 0.75


def test_balanced_adversarial_auroc_subsamples_to_the_smaller_count():
    rng = np.random.default_rng(3)
    clean = rng.normal(0.0, 1.0, size=40)
    adv = rng.normal(1.0, 1.0, size=13)
    result = balanced_adversarial_auroc(clean, adv, rng_key=jax.random.key(0), higher_means="uncertain")
    assert isinstance(result, BalancedAUROC)
    assert result.num_used == 13 and result.num_clean_available == 40 and result.num_adversarial_available == 13
    assert len(np.unique(result.clean_indices)) == 13 and result.adversarial_indices.tolist() == list(range(13))
    assert result.auroc == auroc(adv[result.adversarial_indices], clean[result.clean_indices])
    again = balanced_adversarial_auroc(clean, adv, rng_key=jax.random.key(0), higher_means="uncertain")
    assert again.auroc == result.auroc and np.array_equal(again.clean_indices, result.clean_indices)
    other = balanced_adversarial_auroc(clean, adv, rng_key=jax.random.key(1), higher_means="uncertain")
    assert not np.array_equal(other.clean_indices, result.clean_indices)
    flipped = balanced_adversarial_auroc(clean, adv, rng_key=jax.random.key(0), higher_means="confident")
    assert flipped.auroc == pytest.approx(1.0 - result.auroc)


def test_balanced_auroc_with_equal_counts_is_the_plain_auroc():
    clean, adv = np.array([0.1, 0.4, 0.3]), np.array([0.2, 0.9, 0.35])
    # pairs (adv, clean): .2>.1 1, .2<.4 0, .2<.3 0; .9 beats all 3; .35>.1, .35<.4, .35>.3 -> 2: total 6/9.
    result = balanced_adversarial_auroc(clean, adv, rng_key=jax.random.key(5), higher_means="uncertain")
    assert result.num_used == 3 and result.auroc == pytest.approx(6 / 9)


def _brute_force_fpr(pos, neg, tpr):
    """FPR at the largest observed threshold t with mean(pos >= t) >= tpr, by scanning every threshold."""
    for t in sorted(set(pos) | set(neg), reverse=True):
        if np.mean(pos >= t) >= tpr:
            return float(np.mean(neg >= t))
    raise AssertionError("unreachable: the smallest threshold flags every positive")


def test_fpr_at_tpr_by_hand():
    pos, neg = [0.9, 0.8, 0.7, 0.6], [0.75, 0.5, 0.3, 0.1]
    # t = .8: TPR 2/4 = .5, FPR 0/4. t = .7: TPR 3/4, FPR 1/4 (.75). t = .6: TPR 1, FPR 1/4.
    assert fpr_at_tpr(pos, neg, 0.5) == 0.0
    assert fpr_at_tpr(pos, neg, 0.75) == 0.25
    assert fpr_at_tpr(pos, neg, 0.95) == 0.25  # 95 % of 4 positives needs all 4 -> t = .6
    assert fpr_at_tpr(pos, neg) == 0.25
    # Reversed orientation: flag when score <= s. TPR 1 needs s >= .9 (the highest positive), which flags
    # every negative -> 1.0. Swapping the classes: positives .75 .5 .3 .1, TPR 3/4 needs s = .5, and no
    # negative (.9 .8 .7 .6) is <= .5 -> 0.0.
    assert fpr_at_tpr(pos, neg, 1.0, higher_is_positive=False) == 1.0
    assert fpr_at_tpr(neg, pos, 0.75, higher_is_positive=False) == 0.0
    # Ties move together: positives .5 .5, negatives .5 .1. Any TPR > 0 needs t = .5: TPR 1, FPR 1/2.
    assert fpr_at_tpr([0.5, 0.5], [0.5, 0.1], 0.5) == 0.5
    assert "largest threshold" in FPR_AT_TPR_CONVENTION and "no interpolation" in FPR_AT_TPR_CONVENTION


@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.95, 1.0])
def test_fpr_at_tpr_matches_a_brute_force_scan(tpr):
    rng = np.random.default_rng(int(tpr * 100))
    pos = np.round(rng.normal(1.0, 1.0, size=120), 1)
    neg = np.round(rng.normal(0.0, 1.0, size=90), 1)
    assert fpr_at_tpr(pos, neg, tpr) == pytest.approx(_brute_force_fpr(pos, neg, tpr), abs=1e-15)
    assert fpr_at_tpr(pos, neg, tpr, higher_is_positive=False) == pytest.approx(
        _brute_force_fpr(-pos, -neg, tpr), abs=1e-15
    )


def test_misclassification_detection_on_a_real_posterior(digits_data, digits_mlp):
    from ppl_uq.harness import predictive_log_probs
    from ppl_uq.harness.uncertainty import HIGHER_MEANS, uncertainty_measures

    x, y = digits_data.test
    log_prob_fn = digits_mlp["deep-ensemble"].log_prob_fn()
    measures = uncertainty_measures(log_prob_fn, x)
    correct = np.argmax(predictive_log_probs(log_prob_fn, x), axis=1) == y
    assert 0 < np.sum(~correct) < len(y)
    by_entropy = misclassification_auroc(measures["predictive_entropy"], correct, higher_means="uncertain")
    assert by_entropy > 0.5
    # max probability read with its own orientation gives a comparable, also better-than-chance, AUROC.
    by_confidence = misclassification_auroc(
        measures["max_probability"], correct, higher_means=HIGHER_MEANS["max_probability"]
    )
    assert by_confidence > 0.5


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: auroc([], [0.1]), ValueError, "scores_positive is empty"),
        (lambda: auroc([0.1], []), ValueError, "scores_negative is empty"),
        (lambda: auroc([0.1, np.nan], [0.2]), ValueError, "scores_positive contains 1 NaN"),
        (lambda: auroc([0.1], [np.inf]), ValueError, "scores_negative contains"),
        (lambda: auroc([[0.1]], [0.2]), ValueError, "one-dimensional"),
        (lambda: auroc(["a"], [0.2]), TypeError, "scores_positive"),
        (lambda: auroc([0.1], [0.2], higher_is_positive="yes"), TypeError, "higher_is_positive"),
        (lambda: misclassification_auroc([0.1, 0.2], [1, 1], higher_means="uncertain"), ValueError, "no misclassified"),
        (lambda: misclassification_auroc([0.1, 0.2], [0, 0], higher_means="uncertain"), ValueError, "no correctly"),
        (lambda: misclassification_auroc([0.1, 0.2], [1, 0, 1], higher_means="uncertain"), ValueError, "shape"),
        (lambda: misclassification_auroc([0.1, 0.2], [1, 2], higher_means="uncertain"), ValueError, "correct"),
        (lambda: misclassification_auroc([0.1, 0.2], [1, 0], higher_means="high"), ValueError, "higher_means"),
        (lambda: ood_auroc([0.1], [np.nan], higher_means="uncertain"), ValueError, "score_out"),
        (lambda: adversarial_auroc([], [0.3], higher_means="uncertain"), ValueError, "score_clean"),
        (
            lambda: balanced_adversarial_auroc([0.1], [], rng_key=jax.random.key(0), higher_means="uncertain"),
            ValueError,
            "score_successful_adv",
        ),
        (lambda: fpr_at_tpr([0.1], [0.2], 0.0), ValueError, "tpr"),
        (lambda: fpr_at_tpr([0.1], [0.2], 1.5), ValueError, "tpr"),
        (lambda: fpr_at_tpr([0.1], [], 0.9), ValueError, "scores_negative"),
        (lambda: fpr_at_tpr([np.nan], [0.2], 0.9), ValueError, "scores_positive"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
