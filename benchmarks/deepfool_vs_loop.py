"""Batched DeepFool (``ppl_uq.harness.attacks.deepfool``: jitted, vmapped steps over the points still running)
vs per-point loops.

Three implementations of the same attack on the same model and points:

- ours: ``deepfool(posterior, x, y)``, the public call end to end (incl. its final scoring through
  ``finish``): a Python loop over iterations around one jitted step vmapped over the points not yet
  fooled (the active set padded to a power of two >= 8, at most ``batch_size``); at batch sizes 128 (the
  default), 32 and 512;
- jax-loop: a naive port, a Python loop over points and iterations around one jitted per-point step
  (value, Jacobian by ``jax.jacrev``, step), with the stop test read back to Python each iteration;
- torch-loop: eager PyTorch in the style of the original implementation (Moosavi-Dezfooli et al.'s
  ``deepfool.py``): per point, per iteration, one ``backward`` per class for the gradients, at
  ``--torch-threads`` (default 1, the faster for one point at a time) and at 2 threads; and
  torch-jacobian, the same loop with ``torch.autograd.functional.jacobian(vectorize=True)`` instead.

The classifier is the harness's: ``f_k(x) = log p_hat(k | x)``, the posterior predictive over all S draws
of a 64-100-100-10 tanh MLP on the digits (the torch side holds copies of the same draws). Models: the
mean-field SVI posterior with S = 20 draws, and the MAP fit (S = 1). The step is the harness's
``|g_l| / ||w_l||^2 * w_l`` (the original adds 1e-4 to the distance; left out everywhere so the
perturbations can be compared), overshoot 0.02, at most 50 iterations, no box.

Measured: points/s for each (ours after a warm-up call per batch size, compile reported separately), the
ratios, and agreement with ours at the default batch size: success per point, iterations, the median
relative difference of the L2 norms, and the fraction of points with the same x_adv.

Timing waits (``--wait-idle``, minutes) until no pytest process runs and the 1-minute load average is
below 1.5, polling every 30 s, then runs anyway; the wait and the load averages are in the JSON.

    python benchmarks/deepfool_vs_loop.py --wait-idle 20            # 497 test points
    python benchmarks/deepfool_vs_loop.py --quick --wait-idle 20    # 60 points
"""

from __future__ import annotations

import os

# Two host devices, as the experiments, the CLI and the tests use (deepfool itself runs on device 0).
from ppl_uq.runs.setup import configure_process  # noqa: E402

configure_process(compilation_cache=False)

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _util import best_seconds, wait_for_quiet_machine, with_threads  # noqa: E402

import ppl_uq  # noqa: E402
from ppl_uq.harness.attacks import deepfool  # noqa: E402
from ppl_uq.harness.predictive import predictive_log_mean  # noqa: E402
from ppl_uq.inference import ConvergenceWarning  # noqa: E402
from ppl_uq.models import mlp_classifier  # noqa: E402

HIDDEN = (100, 100)
OVERSHOOT = 0.02
MAX_ITER = 50
BATCH_SIZE = 128
SWEEP = (32, 512)  # other batch sizes tried for ours
FULL = {"num_points": 497, "svi_steps": 2000, "svi_draws": 20, "map_iter": 300}
QUICK = {"num_points": 60, "svi_steps": 2000, "svi_draws": 20, "map_iter": 300}
RESULTS = Path(__file__).resolve().parent / "results"


def fit_models(rng_key: jax.Array, config: dict) -> tuple[Any, dict[str, Any], dict[str, float]]:
    """Digits (key 0) and ``{"svi-S20": Posterior, "map-S1": Posterior}`` of the 64-100-100-10 MLP."""
    data = ppl_uq.data.load_digits_split(jax.random.key(0))
    model = functools.partial(mlp_classifier, hidden=HIDDEN, num_classes=data.num_classes)
    key_svi, key_map = jax.random.split(rng_key)
    seconds = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        svi = ppl_uq.fit("svi", model, data.train, rng_key=key_svi, num_steps=config["svi_steps"],
                         num_samples=config["svi_draws"])
        seconds["svi"] = time.perf_counter() - start
        start = time.perf_counter()
        map_fit = ppl_uq.fit("map", model, data.train, rng_key=key_map, max_iter=config["map_iter"])
        seconds["map"] = time.perf_counter() - start
    return data, {f"svi-S{svi.num_samples}": svi, f"map-S{map_fit.num_samples}": map_fit}, seconds


# -- the naive JAX port: Python loops around a jitted per-point step ------------------------------
def jax_point_functions(posterior) -> tuple[Callable, ...]:
    """``(predictive, step)``: jitted ``x (D,) -> f (C,)`` and ``(x0, total, k0) -> (x, total, decision)``."""
    log_prob_fn = posterior.log_prob_fn()

    def predictive(x):
        return predictive_log_mean(jax.nn.log_softmax(log_prob_fn(x[None]), axis=-1))[0]

    def step(x0, total, k0):
        x = x0 + (1.0 + OVERSHOOT) * total
        f, grads = predictive(x), jax.jacrev(predictive)(x)
        g, w = f - f[k0], grads - grads[k0]
        w_norm = jnp.linalg.norm(w, axis=1)
        distance = jnp.where(jnp.arange(f.shape[0]) == k0, jnp.inf, jnp.abs(g) / jnp.maximum(w_norm, 1e-30))
        nearest = jnp.argmin(distance)
        total = total + (jnp.abs(g[nearest]) / jnp.maximum(w_norm[nearest] ** 2, 1e-30)) * w[nearest]
        x = x0 + (1.0 + OVERSHOOT) * total
        return x, total, jnp.argmax(predictive(x))

    return jax.jit(predictive), jax.jit(step)


def jax_loop(functions: tuple[Callable, ...], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictive, step = functions
    x_adv, used = np.empty_like(x), np.zeros(x.shape[0], np.int32)
    for n in range(x.shape[0]):
        x0 = jnp.asarray(x[n])
        k0 = int(jnp.argmax(predictive(x0)))
        point, total = x0, jnp.zeros_like(x0)
        for i in range(MAX_ITER):
            point, total, decision = step(x0, total, k0)
            used[n] = i + 1
            if int(decision) != k0:
                break
        x_adv[n] = np.asarray(point)
    return x_adv, used


# -- eager PyTorch, per point ---------------------------------------------------------------------
class TorchPredictive:
    """``f(x (D,)) -> (C,)`` log p_hat over the posterior's S draws of the MLP, as torch tensors."""

    def __init__(self, flat_draws: dict[str, np.ndarray]):
        layers = sum(1 for name in flat_draws if name.startswith("w"))
        self.weights = [torch.from_numpy(np.array(flat_draws[f"w{i}"], np.float32)) for i in range(layers)]
        self.biases = [torch.from_numpy(np.array(flat_draws[f"b{i}"], np.float32)) for i in range(layers)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(1, 1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b[:, None, :], h.expand(w.shape[0], -1, -1) if i == 0 else h, w)
            if i < len(self.weights) - 1:
                h = torch.tanh(h)
        log_p = torch.log_softmax(h[:, 0, :], dim=-1)  # (S, C)
        return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])


def torch_gradients_per_class(f: TorchPredictive, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (C,) and gradients (C, D), one backward per class (the original implementation's way)."""
    x = x.clone().requires_grad_(True)
    values = f(x)
    grads = []
    for k in range(values.shape[0]):
        if x.grad is not None:
            x.grad.zero_()
        values[k].backward(retain_graph=True)
        grads.append(x.grad.clone())
    return values.detach(), torch.stack(grads)


def torch_gradients_jacobian(f: TorchPredictive, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        values = f(x)
    return values, torch.autograd.functional.jacobian(f, x, vectorize=True)


def torch_loop(f: TorchPredictive, x: np.ndarray, gradients: Callable) -> tuple[np.ndarray, np.ndarray]:
    x_adv, used = np.empty_like(x), np.zeros(x.shape[0], np.int32)
    for n in range(x.shape[0]):
        x0 = torch.from_numpy(x[n])
        with torch.no_grad():
            k0 = int(torch.argmax(f(x0)))
        point, total = x0.clone(), torch.zeros_like(x0)
        for i in range(MAX_ITER):
            values, grads = gradients(f, point)
            g, w = values - values[k0], grads - grads[k0]
            w_norm = torch.linalg.vector_norm(w, dim=1)
            distance = torch.abs(g) / torch.clamp(w_norm, min=1e-30)
            distance[k0] = math.inf
            nearest = int(torch.argmin(distance))
            total = total + (torch.abs(g[nearest]) / torch.clamp(w_norm[nearest] ** 2, min=1e-30)) * w[nearest]
            point = x0 + (1.0 + OVERSHOOT) * total
            used[n] = i + 1
            with torch.no_grad():
                if int(torch.argmax(f(point))) != k0:
                    break
        x_adv[n] = point.numpy()
    return x_adv, used


# -- measuring ------------------------------------------------------------------------------------
def decisions(posterior, x: np.ndarray) -> np.ndarray:
    return np.argmax(np.asarray(predictive_log_mean(posterior.log_probs(x))), axis=1)


def compare(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], x: np.ndarray,
            y: np.ndarray, clean: np.ndarray, posterior) -> dict[str, Any]:
    """Agreement of ``other`` with ``reference`` (each (x_adv, iterations)) on the clean-correct points."""
    ok = clean == y
    norms = [np.linalg.norm((adv - x).astype(np.float64), axis=1) for adv, _ in (reference, other)]
    success = [ok & (decisions(posterior, adv) != y) for adv, _ in (reference, other)]
    both = success[0] & success[1]
    relative = np.abs(norms[1][both] - norms[0][both]) / np.maximum(norms[0][both], 1e-12)
    return {
        "success_rate": [float(s[ok].mean()) for s in success],
        "same_success_fraction": float(np.mean(success[0][ok] == success[1][ok])),
        "median_l2_successful": [float(np.median(n[both])) if both.any() else None for n in norms],
        "median_rel_l2_diff": float(np.median(relative)) if both.any() else None,
        "p95_rel_l2_diff": float(np.quantile(relative, 0.95)) if both.any() else None,
        "same_iterations_fraction": float(np.mean(reference[1][ok] == other[1][ok])),
        "fraction_points_same_x_adv_1e-5": float(np.mean(np.max(np.abs(other[0] - reference[0]), axis=1) <= 1e-5)),
        "mean_iterations": [float(reference[1][ok].mean()), float(other[1][ok].mean())],
    }


def bench_model(name: str, posterior, x: np.ndarray, y: np.ndarray, repeats: int, torch_threads: int,
                wait_idle: float) -> dict:
    num_points = x.shape[0]
    batch_sizes = (BATCH_SIZE, *SWEEP)

    def run_ours(batch_size: int):
        return deepfool(posterior, x, y, overshoot=OVERSHOOT, max_iter=MAX_ITER, batch_size=batch_size)

    first_call = {}
    for batch_size in batch_sizes:  # compiles the padded active-set sizes each batch size uses
        start = time.perf_counter()
        run_ours(batch_size)
        first_call[batch_size] = time.perf_counter() - start
    functions = jax_point_functions(posterior)
    start = time.perf_counter()
    jax_loop(functions, x[:1])
    loop_first = time.perf_counter() - start
    f = TorchPredictive(posterior.flat_draws())
    torch.set_num_threads(torch_threads)
    torch_loop(f, x[:1], torch_gradients_per_class)  # warm-up
    torch_loop(f, x[:1], torch_gradients_jacobian)
    headline = f"ours_deepfool_batch_{BATCH_SIZE}"
    runs = {
        **{f"ours_deepfool_batch_{b}": functools.partial(run_ours, b) for b in batch_sizes},
        "jax_per_point_loop": lambda: jax_loop(functions, x),
        "torch_per_class_backward": lambda: torch_loop(f, x, torch_gradients_per_class),
        "torch_jacobian_vectorized": lambda: torch_loop(f, x, torch_gradients_jacobian),
        "torch_per_class_backward_2_threads": functools.partial(with_threads, 2, lambda: torch_loop(
            f, x, torch_gradients_per_class)),
    }
    idle = wait_for_quiet_machine(wait_idle) if wait_idle > 0 else None
    load_timing_start = os.getloadavg()
    times: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for run_name, fn in runs.items():
            seconds, _, outputs[run_name] = best_seconds(fn, 1)
            times[run_name].append(seconds)
    load_timing_end = os.getloadavg()
    rates = {k: num_points / min(v) for k, v in times.items()}
    first = outputs[headline]
    ours = (first.x_adv, first.per_point["iterations"])
    clean = first.clean_prediction
    loops = ("jax_per_point_loop", "torch_per_class_backward", "torch_jacobian_vectorized",
             "torch_per_class_backward_2_threads")
    torch_loops = loops[1:]
    best_torch = max(torch_loops, key=rates.get)
    best_ours = max((f"ours_deepfool_batch_{b}" for b in batch_sizes), key=rates.get)
    others = {**{f"ours_deepfool_batch_{b}": (outputs[f"ours_deepfool_batch_{b}"].x_adv,
                                              outputs[f"ours_deepfool_batch_{b}"].per_point["iterations"])
                 for b in SWEEP},
              **{k: outputs[k] for k in loops}}
    # ours at other batch sizes: other padded shapes compile to other float32 rounding, which the points that
    # hover at the boundary for many iterations amplify (as they do between ours and the loops)
    agreement = {other: compare(ours, result, x, y, clean, posterior) for other, result in others.items()}
    return {
        "num_draws": posterior.num_samples,
        "num_points": num_points,
        "clean_accuracy": first.clean_accuracy,
        "summary_ours": {k: first.summary()[k] for k in ("success_rate", "robust_accuracy", "mean_l2_successful")},
        "ours_first_call_seconds_incl_compile": first_call,
        "ours_compile_seconds_estimate": {b: first_call[b] - min(times[f"ours_deepfool_batch_{b}"])
                                          for b in batch_sizes},
        "jax_loop_first_point_seconds_incl_compile": loop_first,
        "seconds_per_run": times,
        "points_per_second_best_of_repeats": rates,
        "speedup": {
            **{f"ours_over_{k}": rates[headline] / rates[k] for k in loops},
            "ours_over_best_torch": rates[headline] / rates[best_torch],
            "ours_best_batch_over_best_torch": rates[best_ours] / rates[best_torch],
            "ours_best_batch_over_jax_per_point_loop": rates[best_ours] / rates["jax_per_point_loop"],
            "ours": headline, "ours_best_batch": best_ours, "best_torch": best_torch,
        },
        "agreement_with_ours": agreement,
        "iterations_ours": {"mean": float(np.mean(ours[1])), "median": float(np.median(ours[1])),
                            "max": int(np.max(ours[1])), "at_max_iter": int(np.sum(ours[1] >= MAX_ITER)),
                            "total": int(np.sum(ours[1]))},
        "load_average_timing_start": load_timing_start,
        "load_average_timing_end": load_timing_end,
        "wait_for_quiet_machine": idle,
        "label": name,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 points")
    parser.add_argument("--out", default=None, help="JSON path (default results/deepfool_vs_loop[_quick].json)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per implementation; the best is kept")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads (1: the faster for one point)")
    parser.add_argument("--num-points", type=int, default=None, help="override the test points attacked")
    parser.add_argument("--svi-steps", type=int, default=None, help="override the SVI optimisation steps")
    parser.add_argument("--map-iter", type=int, default=None, help="override the MAP L-BFGS iterations")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="minutes to wait, before each model's timing, for no pytest and a 1-minute load below 1.5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = dict(QUICK if args.quick else FULL)
    for name in ("num_points", "svi_steps", "map_iter"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.repeats < 1 or args.torch_threads < 1 or min(config.values()) < 1 or args.wait_idle < 0:
        parser.error("--repeats, --torch-threads, --num-points, --svi-steps and --map-iter must be positive, "
                     "--wait-idle >= 0")
    default_out = RESULTS / ("deepfool_vs_loop_quick.json" if args.quick else "deepfool_vs_loop.json")
    out = Path(args.out) if args.out else default_out
    load_start = os.getloadavg()
    previous_threads = torch.get_num_threads()

    data, models, fit_seconds = fit_models(jax.random.key(args.seed + 1), config)
    x, y = data.test[0][: config["num_points"]], data.test[1][: config["num_points"]]
    try:
        per_model = {name: bench_model(name, posterior, x, y, args.repeats, args.torch_threads, args.wait_idle)
                     for name, posterior in models.items()}
    finally:
        torch.set_num_threads(previous_threads)
    result = {
        "benchmark": "deepfool_vs_loop",
        "config": {**config, "overshoot": OVERSHOOT, "max_iter": MAX_ITER, "bounds": None, "batch_size": BATCH_SIZE,
                   "batch_size_sweep": list(SWEEP), "repeats": args.repeats, "seed": args.seed,
                   "torch_threads": args.torch_threads,
                   "model": f"tanh MLP 64-{'-'.join(map(str, HIDDEN))}-10, N(0,1) prior",
                   "fit_seconds": fit_seconds},
        "models": per_model,
        "target_speedup": 2.0,
        "environment": {
            "jax": jax.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": args.torch_threads,
            "jax_threads": f"XLA CPU default (intra-op pool over {os.cpu_count()} cores)",
            "jax_devices": len(jax.local_devices()), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average_start": load_start, "load_average_end": os.getloadavg(),
            "note": "timings on a shared CPU; each rate is the best of the repeats; load averages are (1, 5, 15) "
                    "min; each model's timing-window load is under models.<name>",
        },
    }
    from ppl_uq.report import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print_table(result)
    print(f"wrote {out}")
    return result


def print_table(result: dict) -> None:
    for name, entry in result["models"].items():
        print(f"DeepFool, {name}: {entry['num_points']} points, S={entry['num_draws']}")
        print(f"{'implementation':<36}{'best s':>10}{'points/s':>12}")
        for impl, rate in entry["points_per_second_best_of_repeats"].items():
            print(f"{impl:<36}{entry['num_points'] / rate:>10.3f}{rate:>12.1f}")
        print(json.dumps({"speedup": entry["speedup"], "agreement": entry["agreement_with_ours"]}, indent=2))


if __name__ == "__main__":
    main()
