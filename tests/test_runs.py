"""The sweep runner: identity-derived keys, resume, kills at any moment, locks, and dask == in-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from runs_toy import toy_cell, toy_cells

from ppl_uq.runs import (
    Cell,
    CellOutput,
    CellsFailedError,
    RunLockedError,
    RunStore,
    canonical_json,
    cell_key,
    fingerprints,
    run_cells,
)

TESTS = Path(__file__).resolve().parent


def _records(result):
    return {name: stored.record for name, stored in result.cells.items()}


def _on_disk(run_dir: Path) -> dict:
    """name -> (record without pid and hoisted, draws bytes) of every completed cell in ``run_dir``."""
    with RunStore(run_dir) as store:
        out = {}
        for name in store.completed():
            cell = store.load(name)
            record = {k: v for k, v in cell.record.items() if k not in ("pid", "hoisted")}
            out[name] = (record, cell.arrays.get("draws", np.zeros(0)).tobytes())
    return out


# -- identity and keys -------------------------------------------------------------------------
def test_canonical_json_is_order_free_and_refuses_what_it_cannot_name():
    assert canonical_json({"b": (1, 2.5), "a": np.float32(0.5)}) == canonical_json({"a": 0.5, "b": [1, 2.5]})
    with pytest.raises(ValueError, match="options.lr"):
        Cell("x", "c", options={"lr": float("nan")})
    with pytest.raises(TypeError, match="function"):
        Cell("x", "c", model={"fn": print})
    with pytest.raises(ValueError, match="directory"):
        Cell("x", "../escape")


def test_key_comes_from_identity_not_position():
    cells = toy_cells(with_summary=False)
    keys = {c.name: np.asarray(jax.random.key_data(cell_key(c))) for c in cells}
    shuffled = list(reversed(cells))
    assert {c.name: np.asarray(jax.random.key_data(cell_key(c))).tolist() for c in shuffled} == \
        {name: value.tolist() for name, value in keys.items()}
    assert len({tuple(v.tolist()) for v in keys.values()}) == len(cells), "two cells share a key"
    renamed = Cell("toy", "renamed", backend="none", options={"scale": 1.0, "which": "a"})
    assert renamed.fingerprint() == cells[0].fingerprint(), "a cell's name is a label, not its identity"
    changed = Cell("toy", "a", backend="none", options={"scale": 2.0, "which": "a"})
    assert changed.fingerprint() != cells[0].fingerprint()


def test_reorder_add_remove_leave_other_cells_unchanged(tmp_path):
    first = run_cells(toy_cells(("a", "b", "c")), toy_cell, tmp_path / "one", progress=False)
    second = run_cells(toy_cells(("d", "c", "a")), toy_cell, tmp_path / "two", progress=False)
    for name in ("a", "c"):
        assert first.cells[name].record["mean"] == second.cells[name].record["mean"]
        assert np.array_equal(first.cells[name].arrays["draws"], second.cells[name].arrays["draws"])
    assert first.cells["summary"].fingerprint != second.cells["summary"].fingerprint  # its inputs changed


def test_cycles_duplicates_and_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="unique"):
        fingerprints([Cell("t", "a"), Cell("t", "a")])
    with pytest.raises(ValueError, match="not cells of this run"):
        fingerprints([Cell("t", "a", inputs=("zz",))])
    with pytest.raises(ValueError, match="cycle"):
        fingerprints([Cell("t", "a", inputs=("b",)), Cell("t", "b", inputs=("a",))])


# -- resume ------------------------------------------------------------------------------------
def test_rerun_skips_matching_cells_and_a_changed_setting_invalidates_exactly_its_cells(tmp_path):
    first = run_cells(toy_cells(), toy_cell, tmp_path, progress=False)
    assert sorted(first.computed) == ["a", "b", "c", "d", "summary"]
    again = run_cells(toy_cells(), toy_cell, tmp_path, progress=False)
    assert again.computed == [] and _records(again) == _records(first)
    cells = toy_cells()
    cells[1] = Cell("toy", "b", backend="none", options={"scale": 3.0, "which": "b"})
    changed = run_cells(cells, toy_cell, tmp_path, progress=False)
    assert changed.computed == ["b", "summary"]  # b, and the cell that reads it
    fresh = run_cells(toy_cells(), toy_cell, tmp_path, progress=False, fresh=True)
    assert sorted(fresh.computed) == ["a", "b", "c", "d", "summary"]


def test_a_tampered_file_invalidates_its_cell(tmp_path):
    run_cells(toy_cells(), toy_cell, tmp_path, progress=False)
    arrays = tmp_path / "cells" / "c" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-10])  # truncated: e.g. the .npz of another run
    again = run_cells(toy_cells(), toy_cell, tmp_path, progress=False)
    assert again.computed == ["c"] or again.computed == ["c", "summary"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "complete"


def test_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        run_cells(toy_cells(("a",)), toy_cell, tmp_path, progress=False)
    finally:
        os.umask(previous)
    for path in (tmp_path / "cells" / "a").iterdir():
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("moment", ["compute:c", "commit:b", "manifest"])
def test_sigkill_at_any_moment_then_rerun_equals_an_uninterrupted_run(tmp_path, moment):
    script = [sys.executable, str(TESTS / "runs_toy.py")]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    reference = tmp_path / "reference"
    assert subprocess.run([*script, str(reference)], env=env, capture_output=True, timeout=300).returncode == 0
    killed = tmp_path / "killed"
    done = subprocess.run([*script, str(killed), "--kill-at", moment], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    survived = set(_on_disk(killed))
    in_flight = {"compute:c": "c", "commit:b": "b", "manifest": None}[moment]
    order = ["a", "b", "c", "d", "summary"]
    expected = set(order[: order.index(in_flight)]) if in_flight else set(order)
    assert survived == expected, f"the kill lost more than the cell in flight ({in_flight}): {survived}"
    rerun = subprocess.run([*script, str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert not survived & set(rerun.stdout.split()[1:]), "a committed cell was recomputed"
    assert _on_disk(killed) == _on_disk(reference)
    assert not [p for p in (killed / "cells").iterdir() if p.name.startswith(".")], "staging or trash left behind"


def test_a_second_run_on_the_same_directory_is_refused(tmp_path):
    with RunStore(tmp_path):
        with pytest.raises(RunLockedError, match="in use by another run"):
            run_cells(toy_cells(("a",)), toy_cell, tmp_path, progress=False)


def _failing(cell, *, rng_key, inputs, log):
    if cell.name == "b":
        raise ZeroDivisionError("boom")
    return toy_cell(cell, rng_key=rng_key, inputs=inputs, log=log)


def test_a_failing_cell_is_reported_and_the_others_are_kept(tmp_path):
    with pytest.raises(CellsFailedError, match="boom") as failed:
        run_cells(toy_cells(("a", "b")), _failing, tmp_path, progress=False)
    assert set(failed.value.failures) == {"b", "summary"}
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "incomplete"
    assert run_cells(toy_cells(("a", "b")), toy_cell, tmp_path, progress=False).computed == ["b", "summary"]


def test_cell_function_must_return_a_cell_output(tmp_path):
    with pytest.raises(CellsFailedError, match="CellOutput"):
        run_cells([Cell("t", "a")], lambda cell, **kw: {"x": 1}, tmp_path, progress=False)
    with pytest.raises(CellsFailedError, match="dtype object"):
        run_cells([Cell("t", "a")], lambda cell, **kw: CellOutput({}, arrays={"o": np.array([{}])}), tmp_path,
                  progress=False)


def test_executor_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        run_cells(toy_cells(("a",)), toy_cell, tmp_path, scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        run_cells(toy_cells(("a",)), toy_cell, tmp_path, workers=0)


# -- dask.distributed --------------------------------------------------------------------------
def test_dask_local_cluster_equals_in_process_and_survives_a_dying_worker(tmp_path, monkeypatch):
    in_process = run_cells(toy_cells(), toy_cell, tmp_path / "inproc", progress=False)
    # Workers inherit the environment: on a worker, cell b kills its process the first time it runs.
    monkeypatch.setenv("TOY_DIE_ONCE", str(tmp_path / "died-once"))
    on_dask = run_cells(toy_cells(), toy_cell, tmp_path / "dask", workers=2, progress=False)
    assert (tmp_path / "died-once").exists(), "the worker never died: the retry was not exercised"
    assert sorted(on_dask.computed) == sorted(in_process.computed)
    for name, stored in in_process.cells.items():
        theirs = on_dask.cells[name]
        own = ("pid", "hoisted")
        assert {k: v for k, v in stored.record.items() if k not in own} == \
            {k: v for k, v in theirs.record.items() if k not in own}, name
        assert stored.fingerprint == theirs.fingerprint
        if "draws" in stored.arrays:
            assert np.array_equal(stored.arrays["draws"], theirs.arrays["draws"]), name
    # The local workers start with WORKER_ENVIRONMENT: closed-over arrays become program arguments (a
    # worker the nanny restarts after the kill starts without it, so not every cell need show it).
    assert any(on_dask.cells[n].record["hoisted"] for n in "abcd")
    assert not in_process.cells["a"].record["hoisted"]
    pids = {on_dask.cells[n].record["pid"] for n in "abcd"}
    assert os.getpid() not in pids, "dask cells ran in the test process"


# -- reports rendered from records ---------------------------------------------------------------
def _report_manifest(names):
    return {"experiment": "toy", "report": {
        "title": "Toy", "intro": "Means of normal draws.",
        "tables": [{"name": "table", "title": "Means", "caption": "one row per cell", "cells": list(names),
                    "columns": [["which", "cell"], ["mean", "mean"], ["gate", "gate"]], "gate_keys": ["mean"]}]}}


def _with_which(cell, **kwargs):
    output = toy_cell(cell, **kwargs)
    output.record["which"] = cell.name
    return output


def test_reports_render_from_records_and_combine_runs_into_mean_and_sd(tmp_path):
    from ppl_uq.report import external_references
    from ppl_uq.report.run_report import render_run, render_runs

    means = []
    for seed in (0, 1, 2):
        cells = [Cell("toy", name, backend="none", options={"scale": 1.0, "which": name}, seed=seed) for name in "ab"]
        result = run_cells(cells, _with_which, tmp_path / f"seed{seed}", manifest=_report_manifest("ab"), progress=False)
        means.append(result.cells["a"].record["mean"])
        page = render_run(tmp_path / f"seed{seed}")
        assert external_references(page.read_text()) == []
    table = (tmp_path / "seed0" / "table.md").read_text()
    assert f"{means[0]:.3f}" in table and "| ok |" in table
    combined = render_runs([tmp_path / f"seed{s}" for s in (0, 1, 2)], tmp_path / "combined")
    expected = f"{np.mean(means):.3f} ± {np.std(means, ddof=1):.3f}"
    assert expected in (tmp_path / "combined" / "report.md").read_text()
    assert combined.name == "report.html"


def test_a_nan_in_a_record_renders_as_nan_and_fails_the_gate(tmp_path):
    from ppl_uq.report.run_report import render_run

    def nan_cell(cell, **kwargs):
        return CellOutput({"which": cell.name, "mean": float("nan"), "flags": []})

    run_cells([Cell("toy", "a")], nan_cell, tmp_path, manifest=_report_manifest("a"), progress=False)
    render_run(tmp_path)
    row = next(line for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| a "))
    assert "NaN" in row and "NaN in mean" in row
