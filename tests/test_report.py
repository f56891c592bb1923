"""Report helpers: gates flag what fails (NaN included), tables format what they get, writes are atomic
with the usual file mode, JSON keeps NaN distinguishable from null; the harness figures (reliability grid,
robustness curves, percent heat map, histograms) and the Markdown's wording."""

import json
import math
import os
import stat

import numpy as np
import pytest

from ppl_uq.harness.calibration import ReliabilityData, reliability_data
from ppl_uq.report import (
    atomic_write_json,
    atomic_write_text,
    convergence_flags,
    csv_table,
    format_value,
    markdown_table,
    mcmc_gate_flags,
    nan_flags,
    read_json,
)
from ppl_uq.report.harness_figures import (
    coinciding_curves,
    grid_shape,
    plot_heatmap,
    plot_reliability,
    plot_robustness_curves,
    plot_uncertainty_histograms,
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


def test_tables_show_missing_as_a_dash_and_nan_as_nan():
    records = [{"method": "A", "x": 0.12345, "n": 3}, {"method": "B", "x": None, "n": 4}, {"method": "C", "x": math.nan}]
    table = markdown_table(records, [("method", "method"), ("x", "x"), ("n", "n")])
    assert table.splitlines() == ["| method | x | n |", "|---|---|---|", "| A | 0.123 | 3 |", "| B | — | 4 |", "| C | NaN | — |"]
    assert csv_table(records[:2], ["method", "x"]).splitlines() == ["method,x", "A,0.12345", "B,"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (math.nan, "NaN"), (np.float32("nan"), "NaN"), (math.inf, "inf"), (-math.inf, "-inf"),
     (0.5, "0.500"), (np.float32(0.25), "0.250"), (np.float64(1 / 3), "0.333"), (3, "3"), (np.int64(4), "4"),
     (True, "True"), ("ok", "ok")],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_nan_flags_fail_the_gate_of_a_non_finite_metric():
    record = {"ece": math.nan, "nll": math.inf, "brier": -math.inf, "acc": 0.9, "mce": None, "n": 3,
              "f32": np.float32("nan")}
    assert nan_flags(record, ["acc", "ece", "nll", "brier", "mce", "n", "missing", "f32"]) == [
        "NaN in ece", "inf in nll", "-inf in brier", "NaN in f32"]
    assert nan_flags({"ece": 0.1}, ["ece"]) == []


def test_json_is_strict_and_keeps_nan_distinguishable_from_null(tmp_path):
    payload = {"a": np.arange(3), "b": float("nan"), "c": np.float32(0.5), "d": None,
               "e": [math.inf, -math.inf, np.float64("nan")], "f": np.array([1.0, np.nan])}
    path = atomic_write_json(tmp_path / "r.json", payload)
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": "NaN", "c": 0.5, "d": None,
                                            "e": ["Infinity", "-Infinity", "NaN"], "f": [1.0, "NaN"]}
    back = read_json(path)
    assert math.isnan(back["b"]) and back["d"] is None and back["a"] == [0, 1, 2]
    assert back["e"][:2] == [math.inf, -math.inf] and math.isnan(back["e"][2])
    assert back["f"][0] == 1.0 and math.isnan(back["f"][1])


def test_written_files_get_0644_under_umask_022_not_the_temporary_0600(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ppl_uq.report import atomic_savefig
    from ppl_uq.report.io import current_umask

    previous = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        figure = Figure()
        FigureCanvasAgg(figure)
        paths = [atomic_write_text(tmp_path / "a.md", "x"), atomic_write_json(tmp_path / "b.json", {}),
                 atomic_savefig(tmp_path / "c.png", figure)]
        os.umask(0o077)
        assert current_umask() == 0o077
        private = atomic_write_text(tmp_path / "d.md", "x")
    finally:
        os.umask(previous)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644] * 3
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


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
    from ppl_uq.files import atomic_write

    target = tmp_path / "results.json"
    atomic_write_text(target, "complete")

    def half_then_fail(tmp):
        with open(tmp, "w") as handle:
            handle.write('{"half": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


# -- harness figures ------------------------------------------------------------------------------
def _reliability(count):
    rng = np.random.default_rng(0)
    data = {}
    for i in range(count):
        conf = rng.uniform(0.3, 1.0, 300)
        data[f"method {i}"] = reliability_data(conf, rng.random(300) < conf)
    return data


def test_plot_reliability_writes_a_figure(tmp_path):
    import matplotlib.image

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 300)
    correct = rng.random(300) < conf
    data = {
        "width": reliability_data(conf, correct),
        "mass": reliability_data(conf, correct, num_bins=10, binning="mass"),
        "tiny": reliability_data([0.9, 1.0], [1, 0]),
    }
    path = tmp_path / "reliability.png"
    plot_reliability(path, data, title="test")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]
    with pytest.raises(ValueError, match="data_by_method"):
        plot_reliability(tmp_path / "x.png", {})
    with pytest.raises(TypeError, match="data_by_method"):
        plot_reliability(tmp_path / "x.png", {"a": [1, 2]})
    assert isinstance(data["tiny"], ReliabilityData)


@pytest.mark.parametrize(("count", "shape"), [(1, (1, 1)), (3, (1, 3)), (4, (1, 4)), (5, (2, 3)), (8, (2, 4)), (9, (3, 3)), (10, (3, 4))])
def test_reliability_grid_shape(count, shape):
    assert grid_shape(count) == shape


def test_many_reliability_diagrams_wrap_onto_a_grid(tmp_path):
    import matplotlib.image

    path = tmp_path / "reliability.png"
    plot_reliability(path, _reliability(10), title="ten methods")
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width / height < 1.5  # 3 rows x 4 columns; one 1 x 10 strip was 4320 x 624
    assert width <= 4 * 3.6 * 120 + 1


def test_coinciding_robustness_curves_are_found_and_the_figure_is_written(tmp_path):
    curves = {"a": {"x": [0, 0.1], "y": [0.9, 0.5]}, "b": {"x": [0, 0.1], "y": [0.9, 0.5]},
              "c": {"x": [0, 0.1], "y": [0.8, 0.4]}, "d": {"x": [0, 0.1], "y": [0.9, 0.5]}}
    assert coinciding_curves(curves) == [["a", "b", "d"]]
    assert coinciding_curves({"a": curves["a"], "c": curves["c"]}) == []
    plot_robustness_curves(tmp_path / "curves.png", curves, xlabel="eps", title="t")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_heatmap_colour_bar_reads_in_percent(tmp_path, monkeypatch):
    from ppl_uq.report import harness_figures

    figures = []
    monkeypatch.setattr(harness_figures, "atomic_savefig", lambda path, figure, **kw: figures.append(figure))
    plot_heatmap(tmp_path / "h.png", np.array([[0.25, 1.0], [0.0, 0.5]]), ["r1", "r2"], ["c1", "c2"],
                 title="Transfer: error rate (%)", xlabel="x", ylabel="y")
    heat, bar = figures[0].axes
    assert heat.images[0].get_clim() == (0.0, 100.0)
    assert bar.get_ylabel() == "%"
    assert sorted(t.get_text() for t in heat.texts) == ["0", "100", "25", "50"]


def test_uncertainty_histograms_label_density_and_method(tmp_path, monkeypatch):
    from ppl_uq.report import harness_figures

    figures = []
    monkeypatch.setattr(harness_figures, "atomic_savefig", lambda path, figure, **kw: figures.append(figure))
    rng = np.random.default_rng(0)
    measures = {m: {"entropy": rng.random(50), "max_probability": rng.random(50)} for m in ("map", "svi")}
    plot_uncertainty_histograms(tmp_path / "h.png", measures, {m: rng.random(50) < 0.8 for m in measures}, title="t")
    labels = [ax.get_ylabel() for ax in figures[0].axes]
    assert labels == ["map\ndensity", "density", "svi\ndensity", "density"]


# -- harness Markdown -----------------------------------------------------------------------------
class _Transfer:
    def to_markdown(self):
        return "| transfer |\n|---|\n| 1 |\n"


def _payload(ood_points, ece=0.1):
    auroc = {"misclassification": 0.9, "adversarial_balanced": 0.8, "adversarial_num_used": 10}
    if ood_points:
        auroc.update(ood=0.95, ood_fpr_at_95_tpr=0.2)
    record = {"method": "map", "s_eval": 1, "flags": [], "accuracy": 0.9, "ece": ece, "ece_mass": 0.1, "mce": 0.2,
              "nll": 0.3, "brier": 0.1, "robustness": [{"eps": 0.0, "robust_accuracy": 0.9}],
              "auroc": {"predictive_entropy": auroc},
              "min_distortion": {"deepfool": {"success_rate": 1.0, "mean_l2_successful": 0.5,
                                              "mean_rms_successful": 0.1, "num_points": 5}},
              "deepfool_failures": {"num_successful": 5, "max_probability": 1}}
    settings = {"eps_values": [0.0], "norm": "linf", "steps": 5, "ood_points": ood_points, "detection_attack": "PGD"}
    return {"title": "T", "num_test_points": 10, "num_attack_points": 10, "settings": settings,
            "models": {"map": record}}


def test_harness_markdown_names_papers_and_prints_ood_text_only_with_ood():
    from ppl_uq.report.harness_markdown import harness_markdown

    without = harness_markdown(_payload(None), _Transfer())
    assert "FPR@95%TPR" not in without and "OOD" not in without
    assert "seed 0" not in without
    assert "Däubener & Fischer" in without and "Subramanya et al." in without
    for figure in ("reliability.png", "robustness_curves.png", "uncertainty_histograms.png", "transfer_heatmap.png"):
        assert f"]({figure})" in without
    with_ood = harness_markdown(_payload(100), _Transfer())
    assert "FPR@95%TPR (OOD = positive)" in with_ood and "OOD: positives = OOD inputs" in with_ood


def test_harness_markdown_fails_the_gate_of_a_nan_metric():
    from ppl_uq.report.harness_markdown import harness_markdown

    text = harness_markdown(_payload(None, ece=math.nan), _Transfer())
    assert "| map | 1 | 0.900 | NaN | 0.100 | 0.200 | 0.300 | 0.100 | NaN in ece |" in text
    assert "| 0.100 | ok |" in harness_markdown(_payload(None), _Transfer())
