"""Report helpers: gates flag what fails, tables format what they get, writes are atomic."""

import json
import math

import numpy as np
import pytest

from ppl_uq.report import (
    atomic_write_json,
    atomic_write_text,
    convergence_flags,
    csv_table,
    markdown_table,
    mcmc_gate_flags,
)


def test_mcmc_gates():
    assert mcmc_gate_flags({"rhat_max": 1.005, "divergences": 0}) == []
    assert mcmc_gate_flags({"rhat_max": 1.02, "divergences": 0}) == ["R-hat 1.020 > 1.01"]
    assert mcmc_gate_flags({"rhat_max": 1.0, "divergences": 3}) == ["3 divergences"]
    assert mcmc_gate_flags({"rhat_max": float("nan"), "divergences": 0}) == ["R-hat not computed (one chain)"]


def test_convergence_gates():
    assert convergence_flags({"all_converged": True, "num_members": 5, "num_converged": 5}) == []
    assert convergence_flags({"all_converged": False, "num_members": 5, "num_converged": 3}) == [
        "2 of 5 L-BFGS fits not converged"
    ]
    assert convergence_flags({"converged": False, "loss_drift": 12.5}) == ["loss still falling at the end (drift 12.5)"]
    assert convergence_flags({"converged": True}) == []
    assert convergence_flags({}) == []


def test_tables_format_missing_values_as_dashes():
    records = [{"method": "A", "x": 0.12345, "n": 3}, {"method": "B", "x": None, "n": 4}, {"method": "C", "x": math.nan}]
    table = markdown_table(records, [("method", "method"), ("x", "x"), ("n", "n")])
    assert table.splitlines() == ["| method | x | n |", "|---|---|---|", "| A | 0.123 | 3 |", "| B | — | 4 |", "| C | — | — |"]
    assert csv_table(records[:2], ["method", "x"]).splitlines() == ["method,x", "A,0.12345", "B,"]


def test_json_is_strict_and_arrays_become_lists(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"a": np.arange(3), "b": float("nan"), "c": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": None, "c": 0.5}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    atomic_write_text(target, "old")

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": Unserialisable()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_a_write_that_fails_midway_never_replaces_the_target(tmp_path):
    from ppl_uq.report.io import _atomic

    target = tmp_path / "results.json"
    atomic_write_text(target, "complete")

    def half_then_fail(tmp):
        with open(tmp, "w") as handle:
            handle.write('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic(target, half_then_fail)
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
