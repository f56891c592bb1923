"""The transfer matrix (Szegedy's cross-model table): a numpy reference on affine models, the diagonal
as the attacks' own robust accuracy, matched-noise rows, the resampled entry, and the digits MLPs."""

import json

import jax
import numpy as np
import pytest
from affine import affine_model

from ppl_uq.harness.attacks.gradient import pgd
from ppl_uq.harness.attacks.lbfgs import lbfgs_attack
from ppl_uq.harness.attacks.min_norm import min_norm_attack
from ppl_uq.harness.attacks.transfer import TransferMatrix, resampled_entry, transfer_matrix
from ppl_uq.harness.predictive import evaluate_predictive


@pytest.fixture(scope="module")
def affine_setup():
    """Three 3-class affine models in D = 8 (the second close to the first), data labelled by a fourth."""
    rng = np.random.default_rng(11)
    truth = rng.normal(size=(3, 8))
    centre = -0.5 * truth.sum(axis=1)  # the labelling hyperplanes pass through the middle of the box
    params = {"a": (truth + 0.3 * rng.normal(size=(3, 8)), centre)}
    params["b"] = (params["a"][0] + 0.3 * rng.normal(size=(3, 8)), centre + 0.1 * rng.normal(size=3))
    params["c"] = (rng.normal(size=(3, 8)), rng.normal(size=3))
    x = rng.uniform(size=(50, 8)).astype(np.float32)
    y = np.argmax(x @ truth.T + centre, axis=1)
    assert set(y) == {0, 1, 2}
    models = {name: affine_model(w, b) for name, (w, b) in params.items()}
    results = {name: min_norm_attack(models[name], x, y, c=0.0, steps=100, learning_rate=0.01, bounds=(0.0, 1.0))
               for name in ("a", "b")}
    return params, models, results, x, y


def _reference_accuracy(weights, bias, x_clean, x_perturbed, y):
    """float64 numpy: correct on the clean and the perturbed input."""
    decide = lambda points: np.argmax(points.astype(np.float64) @ weights.T + bias, axis=1)  # noqa: E731
    return np.mean((decide(x_clean) == y) & (decide(x_perturbed) == y))


def test_matrix_matches_a_numpy_reference_and_the_diagonal_is_one_minus_robust_accuracy(affine_setup):
    params, models, results, x, y = affine_setup
    matrix = transfer_matrix(results, models, noise_sds=(), bounds=(0.0, 1.0))
    assert matrix.row_names == ("a", "b") and matrix.column_names == ("a", "b", "c")
    for i, source in enumerate(matrix.row_names):
        for j, name in enumerate(matrix.column_names):
            expected = _reference_accuracy(*params[name], x, results[source].x_adv, y)
            assert matrix.accuracy[i, j] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(matrix.error, 1 - matrix.accuracy)
    for source in ("a", "b"):
        assert matrix.entry(source, source) == 1 - results[source].robust_accuracy
        assert matrix.entry(source, source) == 1.0  # min-norm examples fool their own model
    assert matrix.row_kinds == ("adversarial", "adversarial")


def test_unperturbed_examples_score_the_clean_error(digits_mlp, digits_data):
    """x_adv = x (PGD at eps = 0): every entry is the column model's clean error."""
    x, y = digits_data.test[0][:60], digits_data.test[1][:60]
    results = {name: pgd(post, x, y, eps=0.0, rng_key=jax.random.key(0), steps=1) for name, post in digits_mlp.items()}
    matrix = transfer_matrix(results, digits_mlp, noise_sds=())
    for j, name in enumerate(matrix.column_names):
        clean_error = 1 - evaluate_predictive(digits_mlp[name].log_prob_fn(), x, y)["accuracy"]
        np.testing.assert_allclose(matrix.error[:, j], clean_error, atol=1e-12)
    np.testing.assert_array_equal(matrix.row_rms_distortion, 0.0)


def test_noise_rows_have_the_matched_sd_and_depend_only_on_the_key(affine_setup):
    _, models, results, x, _ = affine_setup
    key = jax.random.key(3)
    matrix = transfer_matrix(results, models, noise_sds=("matched", 0.1, 0.3), rng_key=key)
    assert matrix.row_kinds == ("adversarial",) * 2 + ("noise-matched",) * 2 + ("noise",) * 2
    assert matrix.row_sources == ("a", "b", "a", "b", "a", "a")
    for i, source in enumerate(("a", "b")):
        delta = (results[source].x_adv - x).astype(np.float64)
        sd = np.sqrt(np.mean(delta**2))
        assert matrix.row_sd[i] == pytest.approx(sd, rel=1e-12)
        assert matrix.row_sd[2 + i] == pytest.approx(sd, rel=1e-12)
        # unclipped noise: per-point rms = sd * chi_8 / sqrt(8), mean 0.97 sd, sd of the mean over 50 points 3.5 %
        assert matrix.row_rms_distortion[2 + i] == pytest.approx(0.97 * sd, rel=0.12)
        np.testing.assert_allclose(matrix.row_rms_distortion[i], results[source].distances["rms"].mean())
    np.testing.assert_allclose(matrix.row_sd[4:], [0.1, 0.3])
    again = transfer_matrix(results, models, noise_sds=("matched", 0.1, 0.3), rng_key=key)
    np.testing.assert_array_equal(again.error, matrix.error)
    np.testing.assert_array_equal(again.row_rms_distortion, matrix.row_rms_distortion)
    other = transfer_matrix(results, models, noise_sds=("matched", 0.1, 0.3), rng_key=jax.random.key(4))
    assert not np.array_equal(other.row_rms_distortion[2:], matrix.row_rms_distortion[2:])
    np.testing.assert_array_equal(other.error[:2], matrix.error[:2])  # adversarial rows involve no randomness


def test_clipped_noise_stays_in_the_box(affine_setup):
    _, models, results, _, _ = affine_setup
    clipped = transfer_matrix(results, models, noise_sds=(0.5,), rng_key=jax.random.key(0), bounds=(0.0, 1.0))
    free = transfer_matrix(results, models, noise_sds=(0.5,), rng_key=jax.random.key(0))
    assert clipped.row_rms_distortion[-1] < free.row_rms_distortion[-1]  # clipping only removes noise


def test_tables_and_dicts(affine_setup):
    _, models, results, _, _ = affine_setup
    matrix = transfer_matrix(results, models, noise_sds=(0.1,), rng_key=jax.random.key(0))
    assert isinstance(matrix, TransferMatrix)
    as_dict = json.loads(json.dumps(matrix.to_dict()))
    assert as_dict["column_names"] == ["a", "b", "c"] and len(as_dict["error"]) == 3
    assert "clean mistakes count as errors" in as_dict["settings"]["convention"]
    table = matrix.to_markdown()
    lines = table.splitlines()
    assert len(lines) == 2 + 3 and lines[0].startswith("| examples \\ scored by | a | b | c |")
    assert lines[2].startswith("| a | 100.0 % |")


def test_digits_matrix_of_lbfgs_examples(digits_mlp, digits_data):
    """Szegedy's table on the digits: L-BFGS examples against the MAP net and the deep ensemble, each
    scored on both, with matched-noise rows."""
    x, y = digits_data.test[0][:30], digits_data.test[1][:30]
    results = {name: lbfgs_attack(post, x, y) for name, post in digits_mlp.items()}
    matrix = transfer_matrix(results, digits_mlp, noise_sds=("matched", 0.1), rng_key=jax.random.key(0),
                             bounds=(0.0, 1.0))
    print("\n" + matrix.to_markdown())
    for name in digits_mlp:
        assert matrix.entry(name, name) == 1 - results[name].robust_accuracy == 1.0
        # minimum-distortion examples transfer only partly; matched noise barely hurts
        other = next(n for n in digits_mlp if n != name)
        assert matrix.entry(name, other) < 1.0
        assert matrix.entry(f"gaussian noise sd={matrix.row_sd[0 if name == 'map' else 1]:.3g} (matched to {name})",
                            name) < 0.2
    # the resampled entry is the diagonal with the model swapped: scoring on the same model gives it back
    assert resampled_entry(results["map"], digits_mlp["map"]) == matrix.entry("map", "map")
    assert resampled_entry(results["map"], digits_mlp["deep-ensemble"]) == matrix.entry("map", "deep-ensemble")
    assert resampled_entry(results["map"], digits_mlp["deep-ensemble"].log_prob_fn()) == matrix.entry(
        "map", "deep-ensemble")


# -- argument checks -------------------------------------------------------------------------------------------
def test_transfer_rejects_bad_arguments(affine_setup):
    _, models, results, x, y = affine_setup
    with pytest.raises(ValueError, match="results must be a non-empty dict"):
        transfer_matrix({}, models, noise_sds=())
    with pytest.raises(TypeError, match="must be an AttackResult"):
        transfer_matrix({"a": x}, models, noise_sds=())
    with pytest.raises(ValueError, match="models must be a non-empty dict"):
        transfer_matrix(results, {}, noise_sds=())
    wide = affine_model(np.ones((3, 10)), np.zeros(3))
    with pytest.raises(ValueError, match=r"models\['wide'\] cannot score inputs of shape \(8,\)"):
        transfer_matrix(results, {**models, "wide": wide}, noise_sds=())
    other = min_norm_attack(wide, np.zeros((4, 10), np.float32), np.array([0, 1, 2, 0]), c=0.0, steps=2)
    with pytest.raises(ValueError, match="all sources must share one input shape"):
        transfer_matrix({**results, "wide": other}, models, noise_sds=())
    two_classes = affine_model(np.ones((2, 8)), np.zeros(2))
    with pytest.raises(ValueError, match="labels do not fit"):
        transfer_matrix(results, {"two": two_classes}, noise_sds=())
    with pytest.raises(ValueError, match="rng_key is required"):
        transfer_matrix(results, models, noise_sds=("matched",))
    with pytest.raises(ValueError, match="noise_sds entry"):
        transfer_matrix(results, models, noise_sds=("matches",), rng_key=jax.random.key(0))
    with pytest.raises(ValueError, match="noise_sds entry"):
        transfer_matrix(results, models, noise_sds=(-0.1,), rng_key=jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size"):
        transfer_matrix(results, models, noise_sds=(), batch_size=0)
    with pytest.raises(ValueError, match="outside bounds"):
        transfer_matrix(results, models, noise_sds=(), bounds=(0.2, 0.8))
    with pytest.raises(ValueError, match="cannot score"):
        resampled_entry(results["a"], wide)


def test_a_stored_matrix_reads_back_to_the_same_table():
    from ppl_uq.harness.attacks import TransferMatrix

    matrix = TransferMatrix(row_names=("a", "noise sd=0.1"), column_names=("a", "b"), error=np.array([[1.0, 0.25], [0.0, 0.5]]),
                            accuracy=np.array([[0.0, 0.75], [1.0, 0.5]]), row_kinds=("adversarial", "noise"),
                            row_sources=("a", "a"), row_sd=np.array([0.05, 0.1]), row_rms_distortion=np.array([0.06, 0.09]),
                            num_points=np.array([4, 4]), settings={"bounds": [0, 1]})
    again = TransferMatrix.from_dict(json.loads(json.dumps(matrix.to_dict())))
    assert again.to_markdown() == matrix.to_markdown() and again.to_dict() == matrix.to_dict()
    assert again.entry("noise sd=0.1", "b") == 0.5
