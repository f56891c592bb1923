"""The spheres prior sweep: the closed-form optimum of the attack on a point estimate, checked against the
sphere itself, and a tiny end-to-end run."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _sweep():
    spec = importlib.util.spec_from_file_location("spheres_prior_sweep", REPO / "experiments" / "spheres_prior_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_closed_form_optimum_is_attained_and_never_beaten_on_the_sphere():
    sweep = _sweep()
    rng = np.random.default_rng(0)
    dim = 6
    w, b = rng.normal(size=(1, dim)), rng.normal(size=1)
    loc, scale = rng.uniform(0.1, 0.3, dim), rng.uniform(0.5, 1.5, dim)
    c, k = sweep.logit_coefficients(w, b, loc, scale)
    radii = (1.0, 1.3)
    best = sweep.closed_form_p_wrong(c, k, np.array([0, 1]), radii)[0]
    z = rng.normal(size=(20000, dim))
    for label, radius in ((0, 1.0), (1, 1.3)):
        x = radius * z / np.linalg.norm(z, axis=1, keepdims=True)
        logit = ((x**2 - loc) / scale) @ w[0] + b[0]
        p_wrong = 1 / (1 + np.exp(-logit)) if label == 0 else 1 / (1 + np.exp(logit))
        assert p_wrong.max() <= best[label] + 1e-12  # no point of the sphere beats it
        axis = np.argmax(c[0]) if label == 0 else np.argmin(c[0])
        corner = np.zeros(dim)
        corner[axis] = radius
        attained = ((corner**2 - loc) / scale) @ w[0] + b[0]
        attained = 1 / (1 + np.exp(-attained)) if label == 0 else 1 / (1 + np.exp(attained))
        np.testing.assert_allclose(attained, best[label], rtol=1e-12)  # ... and the axis point reaches it


def test_tiny_sweep_end_to_end(tmp_path):
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "spheres_prior_sweep.py"), "--profile", "tiny",
                           "--sigmas", "1,10", "--rows", "map,laplace", "--no-study", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((out / "results.json").read_text())["records"]
    assert [(r["sigma"], r["row"]) for r in records] == [(1.0, "map"), (1.0, "laplace"), (10.0, "map"), (10.0, "laplace"),
                                                        (1e4, "map")]
    for record in records:
        # The attack cannot beat the best possible attack (closed form for MAP, per-draw bound for Laplace).
        bound = record.get("closed_form_adv_error", record["per_draw_optimum_mean"])
        assert record["adv_error"] <= bound + 1e-4
    assert "Table 1 per prior sd" in (out / "report.md").read_text()


@pytest.mark.slow  # nine tiny NUTS fits and attacks
def test_tiny_resampled_error_study(tmp_path):
    out = tmp_path / "study"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "spheres_prior_sweep.py"), "--profile", "tiny",
                           "--sigmas", "10", "--rows", "map", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    study = json.loads((out / "results.json").read_text())["study"]
    assert [(r["variant"], r["value"]) for r in study][:3] == [("attack steps", 300), ("attack steps", 1000), ("attack steps", 3000)]
    assert all(0.0 <= r["resampled_error"] <= 1.0 and 0.0 <= r["adv_error"] <= 1.0 for r in study)
    assert "resampled error above the paper" in (out / "report.md").read_text()
