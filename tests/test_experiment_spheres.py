"""The spheres experiment runs end to end in a subprocess (tiny settings), writes every file, resumes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppl_uq.experiments.adversarial_spheres import ROWS, select_rows

REPO = Path(__file__).resolve().parents[1]


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(REPO / "experiments" / "adversarial_spheres.py"), "--tiny", "--out", str(out), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)


def test_tiny_table_end_to_end_and_resume(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("table1.md", "table1.csv", "results.json", "p_wrong_at_attacks.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"
    results = json.loads((tmp_path / "results.json").read_text())
    records = {r["row"]: r for r in results["records"]}
    assert set(records) == {r.key for r in ROWS if r.backend != "pyro-nuts"}
    for key, record in records.items():
        for field in ("method", "avg_confidence", "val_accuracy", "adv_error", "n_draws", "fit_seconds"):
            assert record[field] is not None, (key, field)
        assert 0.5 <= record["avg_confidence"] <= 1.0, key
        assert 0.0 <= record["adv_error"] <= 1.0, key
        assert record["attack_radius_drift"] < 1e-4, key
        assert (record["resampled_error"] is None) == (key == "map"), key
    for key in ("nuts", "slice", "mcmc-nonzero-mean"):
        assert {"rhat_max", "ess_bulk_min", "divergences"} <= set(records[key]), key
    assert records["nuts"]["paper_adv_error"] == 0.558
    table = (tmp_path / "table1.md").read_text()
    assert "MCMC (NUTS)" in table and "paper" in table
    assert "[" in done.stderr and "fitting" in done.stderr  # progress was shown
    harness = json.loads((tmp_path / "harness" / "harness.json").read_text())
    assert set(harness["models"]) == {r["method"] for r in records.values()}
    assert harness["settings"]["detection_attack"] == "sphere"
    for name in ("harness.md", "reliability.png", "robustness_curves.png", "transfer_heatmap.png"):
        assert (tmp_path / "harness" / name).stat().st_size > 0, name
    assert "harness/harness.md" in table

    again = _run(tmp_path, "--backends", "map", "nuts")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reusing") == 2
    rerun = json.loads((tmp_path / "results.json").read_text())
    assert [r["row"] for r in rerun["records"]] == ["map", "nuts"]
    assert rerun["records"][1]["adv_error"] == records["nuts"]["adv_error"]


def test_backend_selection():
    assert [r.key for r in select_rows(["svi"], "quick")] == ["svi-fullrank", "svi-hierarchical"]
    assert "pyro-nuts" not in [r.key for r in select_rows(None, "quick")]
    assert "pyro-nuts" in [r.key for r in select_rows(None, "paper")]
    with pytest.raises(ValueError, match="unknown --backends"):
        select_rows(["hmc"], "quick")
