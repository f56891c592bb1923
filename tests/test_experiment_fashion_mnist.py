"""The Fashion-MNIST BNN experiment runs end to end on a tiny profile (1,000 training images, one epoch)
and renders its report from the records; skipped with the reason when the data set is not installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_uq.report import external_references

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fashion_mnist_installed():
    from ppl_uq.data.images import load_fashion_mnist

    try:
        load_fashion_mnist()
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): {exc}")


@pytest.mark.slow  # two minutes on 2 cores
def test_tiny_profile_end_to_end(tmp_path, fashion_mnist_installed):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "ppl_uq.cli", "run", "fashion-mnist", "--profile", "tiny", "--methods", "map",
                           "mc-dropout", "bbb", "--out", str(out)], capture_output=True, text=True, env=env, timeout=900,
                          check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    records = {r["backend"]: r for r in results["records"] if "backend" in r}
    assert set(records) == {"map", "mc-dropout", "svi"}
    for record in records.values():
        assert record["num_train"] == 1000 and record["epochs_run"] == 1
        assert 0.1 < record["accuracy"] <= 1.0  # one epoch on 1,000 images: above chance, not converged
        assert 0.0 <= record["ood_auroc_entropy"] <= 1.0
    assert records["svi"]["n_draws"] == 10 and records["map"]["n_draws"] == 1
    summary = (out / "summary.md").read_text()
    assert "BBB (svi mean-field, scale mixture)" in summary and "OOD AUROC" in summary
    assert external_references((out / "report.html").read_text()) == []
