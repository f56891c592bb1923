"""The spheres experiment runs end to end in a subprocess (tiny settings), writes every file, resumes,
and re-renders from its records alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from experiment_scripts import load_script

from ppl_uq.report import external_references

REPO = Path(__file__).resolve().parents[1]


def _script():
    return load_script("adversarial_spheres.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "ppl_uq.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900, check=False, cwd=REPO)


def test_three_rows_end_to_end_with_harness_resume_and_rerender(tmp_path):
    # The CI-sized run: the whole pipeline (cells, harness, report, resume, re-render) on three rows.
    out = tmp_path / "run"
    done = _run("run", "spheres", "--tiny", "--out", str(out), "--backends", "map", "nuts", "svi-fullrank")
    assert done.returncode == 0, done.stderr[-3000:]
    records = {r["row"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert list(records) == ["map", "nuts", "svi-fullrank"]
    assert {"rhat_max", "ess_bulk_min", "divergences"} <= set(records["nuts"])
    harness = json.loads((out / "harness" / "harness.json").read_text())
    for record in records.values():
        assert harness["models"][record["method"]]["flags"] == record["flags"], record["method"]
    before = {name: (out / name).read_text() for name in ("table1.md", "report.md", "harness/harness.md")}
    again = _run("run", "spheres", "--tiny", "--out", str(out), "--backends", "map", "nuts", "svi-fullrank")
    assert again.returncode == 0 and "4 done in an earlier run" in again.stderr and "fitting" not in again.stderr
    assert {name: (out / name).read_text() for name in before} == before, "a resumed run's report differs"
    (out / "report.html").unlink()
    rendered = _run("report", str(out))
    assert rendered.returncode == 0 and external_references((out / "report.html").read_text()) == []


@pytest.mark.slow  # every row of the tiny table: ~4 minutes on 2 cores
def test_tiny_table_end_to_end_resume_and_rerender(tmp_path):
    out = tmp_path / "run"
    done = _run("run", "spheres", "--tiny", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("table1.md", "table1.csv", "results.json", "p_wrong_at_attacks.png", "report.html", "run.json"):
        assert (out / name).stat().st_size > 0, name
    assert not [p for p in (out / "cells").iterdir() if p.name.startswith(".")], "staging left behind"
    results = json.loads((out / "results.json").read_text())
    records = {r["row"]: r for r in results["records"]}
    assert set(records) == {r.key for r in _script().ROWS if r.backend != "pyro-nuts"}
    for key, record in records.items():
        for field in ("method", "avg_confidence", "val_accuracy", "adv_error", "n_draws", "fit_seconds"):
            assert record[field] is not None, (key, field)
        assert 0.5 <= record["avg_confidence"] <= 1.0, key
        assert 0.0 <= record["adv_error"] <= 1.0, key
        assert record["attack_radius_drift"] < 1e-4, key
        assert (record["resampled_error"] is None) == (key == "map"), key
        assert (out / "cells" / key / "posterior-main.nc").is_file(), key
    for key in ("nuts", "slice", "mcmc-nonzero-mean"):
        assert {"rhat_max", "ess_bulk_min", "divergences"} <= set(records[key]), key
    assert records["nuts"]["paper_adv_error"] == 0.558
    table = (out / "table1.md").read_text()
    assert "MCMC (NUTS)" in table and "paper" in table
    assert "fitting" in done.stderr  # progress was shown
    harness = json.loads((out / "harness" / "harness.json").read_text())
    assert set(harness["models"]) == {r["method"] for r in records.values()}
    assert harness["settings"]["detection_attack"] == "sphere"
    # the harness report's gates are the table's gates (both read the cells' records)
    for record in records.values():
        assert harness["models"][record["method"]]["flags"] == record["flags"], record["method"]
    for name in ("harness.md", "reliability.png", "robustness_curves.png", "transfer_heatmap.png"):
        assert (out / "harness" / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert external_references(page) == [] and "data:image/png;base64," in page

    before = {name: (out / name).read_text() for name in ("table1.md", "report.md", "harness/harness.md")}
    again = _run("run", "spheres", "--tiny", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "11 done in an earlier run" in again.stderr and "fitting" not in again.stderr
    assert {name: (out / name).read_text() for name in before} == before, "a resumed run's report differs"

    for path in out.glob("*.md"):
        path.unlink()
    (out / "report.html").unlink()
    rendered = _run("report", str(out))
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert {name: (out / name).read_text() for name in before} == before

    subset = _run("run", "spheres", "--tiny", "--out", str(tmp_path / "subset"), "--backends", "map", "nuts", "--no-harness")
    assert subset.returncode == 0, subset.stderr[-3000:]
    rows = json.loads((tmp_path / "subset" / "results.json").read_text())["records"]
    assert [r["row"] for r in rows] == ["map", "nuts"]


def test_backend_selection():
    script = _script()
    assert [r.key for r in script.select_rows(["svi"])] == ["svi-fullrank", "svi-hierarchical"]
    # Pyro NUTS runs only when named, at every profile (the README's paper table leaves it out).
    assert "pyro-nuts" not in [r.key for r in script.select_rows(None)]
    assert [r.key for r in script.select_rows(["pyro-nuts"])] == ["pyro-nuts"]
    with pytest.raises(ValueError, match="unknown --backends"):
        script.select_rows(["hmc"])


def test_cell_keys_do_not_depend_on_the_row_list():
    script = _script()
    profile = script.TINY
    every = {c.name: c.fingerprint() for c in script.make_cells(script.ROWS, profile, 0, attack_step_size=0.05, harness=True)}
    two = script.make_cells([script.ROWS_BY_KEY["nuts"], script.ROWS_BY_KEY["map"]], profile, 0, attack_step_size=0.05,
                            harness=True)
    assert {c.name: c.fingerprint() for c in two if c.name != "transfer"} == {k: every[k] for k in ("nuts", "map")}
    seed1 = script.make_cells(script.ROWS, profile, 1, attack_step_size=0.05, harness=True)
    assert all(c.fingerprint() != every[c.name] for c in seed1), "a seed's cells must not be reused for another seed"
