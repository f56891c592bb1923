"""The attack benchmarks (``pgd_vs_torch.py``, ``deepfool_vs_loop.py``, ``sphere_attack_vs_torch.py``) run end to end at
tiny sizes, and their implementations agree (no wall-time assertions). Each takes ~30 s
alone (SVI and MAP fits, compiles): marked slow, except the sphere benchmark's, which needs no fit."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their shared benchmarks/_util.py
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    threads = torch.get_num_threads()
    try:
        load_benchmark(name, monkeypatch).main(argv)
    finally:
        torch.set_num_threads(threads)
    return json.loads(Path(argv[argv.index("--out") + 1]).read_text())


@pytest.mark.slow
def test_pgd_benchmark_runs_and_both_sides_agree(tmp_path, monkeypatch):
    out = tmp_path / "pgd.json"
    result = run_main("pgd_vs_torch", ["--quick", "--num-points", "12", "--steps", "3", "--svi-steps", "50",
                                       "--repeats", "1", "--out", str(out)], monkeypatch)
    agreement = result["agreement"]
    assert agreement["forward_max_abs_log_prob_diff"] < 1e-4
    assert agreement["grad_max_rel_err"] < 1e-3
    assert agreement["fgsm"]["fraction_coordinates_equal"] > 0.99
    no_start = agreement["pgd_no_random_start"]
    assert no_start["abs_diff_mean_final_objective"] < 1e-3
    assert no_start["final_trace"]["max_abs_trace_diff"] < 1e-4
    assert no_start["robust_accuracy"]["jax"] == pytest.approx(no_start["robust_accuracy"]["torch"], abs=0.1)
    assert result["config"]["num_draws"] == 100
    assert all(rate > 0 for rate in result["point_steps_per_second_best_of_repeats"].values())


@pytest.mark.slow
def test_deepfool_benchmark_runs_and_implementations_agree(tmp_path, monkeypatch):
    out = tmp_path / "deepfool.json"
    result = run_main("deepfool_vs_loop", ["--quick", "--num-points", "6", "--svi-steps", "50", "--map-iter", "20",
                                           "--repeats", "1", "--out", str(out)], monkeypatch)
    assert set(result["models"]) == {"svi-S20", "map-S1"}
    for entry in result["models"].values():
        for other, agreement in entry["agreement_with_ours"].items():
            assert agreement["same_success_fraction"] >= 5 / 6, other
            if agreement["median_rel_l2_diff"] is not None:
                assert agreement["median_rel_l2_diff"] < 1e-3, other
        assert all(rate > 0 for rate in entry["points_per_second_best_of_repeats"].values())


@pytest.mark.slow
def test_bnn_training_benchmark_runs_and_every_side_learns(tmp_path, monkeypatch):
    pytest.importorskip("pyro")
    from ppl_uq.data.images import load_fashion_mnist

    try:
        load_fashion_mnist()
    except FileNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
    out = tmp_path / "bnn.json"
    result = run_main("bnn_training", ["--quick", "--epochs", "1", "--init-loc", "glorot", "--out", str(out)], monkeypatch)
    assert result["all_learned"]
    losses = [result["sides"][k]["final_loss"] for k in ("ours", "jax-scan", "torch-eager-1t", "pyro-trace", "pyro-jit")]
    assert max(losses) / min(losses) < 1.02  # one objective on every side


@pytest.mark.slow  # torch.compile of two sides: ~35 s
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch.compile's tracer warns about non-leaf .grad reads
def test_sphere_benchmark_runs_and_every_side_agrees(tmp_path, monkeypatch):
    out = tmp_path / "sphere.json"
    result = run_main("sphere_attack_vs_torch", ["--quick", "--repeats", "1", "--out", str(out)], monkeypatch)
    agreement = result["agreement"]
    assert agreement["same_objective"] and agreement["direction_err_jensen"] < 1e-4
    assert max(agreement["radius_drift"].values()) <= 1e-5
    assert set(result["torch"]) == {"torch_eager_autograd", "torch_compile_autograd", "torch_compile_closed_form"}
    assert agreement["direction_err_exact"] < 1e-4
    assert result["matmul_peak"]["peak_gflops"] > 0 and 0 < result["jax"]["fraction_of_peak"] < 1.5
    total, *ops = result["jax"]["per_op_one_call"]
    assert total["ms"] > 0 and total["ms"] + 0.01 >= sum(row["ms"] for row in ops)  # rows rounded to 1 µs
    assert any("dot(" in row["what"] for row in ops)  # the profile sees the attack's matrix products


def test_slice_vs_nuts_z_gate_has_its_stated_false_alarm_rate(monkeypatch):
    bench = load_benchmark("slice_vs_nuts", monkeypatch)
    rng = np.random.default_rng(0)
    # K = 500 coordinates of agreeing samplers: z ~ N(0, 1). 200 repetitions: the gate's 4-sd band and 0.999
    # count quantile give a false-alarm rate well under 1 %.
    alarms = sum(not bench.z_gate(rng.normal(size=500))["z_gate_passed"] for _ in range(200))
    assert alarms <= 2
    # A bias of 0.7 Monte Carlo standard errors in every coordinate: mean z^2 = 1.49, outside 1 +- 0.25.
    assert not bench.z_gate(rng.normal(size=500) + 0.7)["z_gate_passed"]
    # A tenth of the coordinates disagreeing by 5 standard errors: far more |z| > 3 than the limit.
    z = rng.normal(size=500)
    z[:50] += 5.0
    record = bench.z_gate(z)
    assert not record["z_gate_passed"] and record["z_above_3_count"] > record["z_above_3_limit"]
