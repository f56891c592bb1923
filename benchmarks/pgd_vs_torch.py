"""PGD L-infinity on a posterior ensemble of an MLP (``ppl_uq.harness.attacks.pgd``) vs the same attack in
eager PyTorch, on two networks (``--network``).

The posterior: mean-field SVI (``ppl_uq.fit("svi", ...)``) of a D-100-100-10 tanh MLP
(``mlp_classifier(hidden=(100, 100))``, N(0, 1) weight prior) with S = 100 draws from q: on scikit-learn's
digits (D = 64, 1,300 training points; the default) or on Fashion-MNIST (D = 784, the network of the
neural-network issue; 5,000 training images, a short fit, since only the attack's cost is measured).
Both sides attack the same test points with the same 100 draws (the torch side holds copies of w0, b0,
w1, ... stacked over draws, runs the first layer as one GEMM against all draws' weights and the others as
batched matmuls), the same objective (the exact posterior predictive,
``-(logsumexp_s log p_s(y | x) - log S)``), the same number of steps, the same step ``eps/steps * 2.5``
along sign(g), a uniform random start in the eps-cube, projection onto the eps-cube and then the box
[0, 1] after every step, and the best iterate kept (what ``pgd`` returns). Each side's timed call ends with
the decisions on the clean and attacked inputs over all S draws (``pgd`` scores them in ``finish``; the
torch side does the same), so both do the same work.

Ours is the public call, ``pgd(posterior, x, y, ...)``, end to end, with two host devices
(``--xla_force_host_platform_device_count=2``, set here before JAX starts, as the experiments, the CLI and
the tests set it): ``pgd`` splits each batch's points over the two devices in one program.

Measured: point·steps/s for ours at batch sizes 64, 128, 256 (the default) and all points (after a
warm-up call; the compile time reported separately) and for eager torch at 2 and 1 threads, their ratios
(best of ``--repeats`` alternating runs), every side's fraction of this machine's float32 matmul peak
measured in the same run (``_util.matmul_peak``) from the FLOPs of a step (4 fan_in fan_out per layer,
draw and point), and where the time goes: forward alone and gradient alone on each side, the scoring
each call ends with, and how many cores each side's matmuls use (XLA's CPU backend runs a batched
matmul, the hidden layers over S draws, on one core per device; torch spreads it over its threads).
Agreement: the forward log-probabilities, the gradient at the clean points, one sign step from the clean
points (FGSM), PGD without random start (same x_adv, objective and loss trace), and robust accuracy with
random starts.

Timing waits (``--wait-idle``, minutes) until no pytest process runs and the 1-minute load average is
below 1.5, polling every 30 s, then runs anyway; the wait and the load averages are in the JSON.

    python benchmarks/pgd_vs_torch.py --wait-idle 20                           # digits: 497 points, 40 steps
    python benchmarks/pgd_vs_torch.py --network fashion-mnist --wait-idle 20   # 512 points, 20 steps
    python benchmarks/pgd_vs_torch.py --quick --wait-idle 20                   # a smaller run
"""

from __future__ import annotations

import os

# Two host devices, as the experiments, the CLI and the tests use (pgd spreads its batches over them).
# No effect when JAX was imported first; the JSON records the device count.
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
from _util import best_seconds, matmul_peak, wait_for_quiet_machine, with_threads, xla_op_profile  # noqa: E402

import ppl_uq  # noqa: E402
from ppl_uq.harness.attacks import fgsm, pgd  # noqa: E402
from ppl_uq.harness.attacks.objectives import batch_objective  # noqa: E402
from ppl_uq.harness.predictive import predictive_log_mean, predictive_log_probs  # noqa: E402
from ppl_uq.inference import ConvergenceWarning  # noqa: E402
from ppl_uq.models import mlp_classifier  # noqa: E402

HIDDEN = (100, 100)
NUM_DRAWS = 100
EPS = 0.1
BOUNDS = (0.0, 1.0)
#: The two networks: scikit-learn's digits (64 inputs, 1,300 training images) and Fashion-MNIST (784
#: inputs; the first ``train_points`` of its 60,000 training images, so the fit stays short; the
#: posterior's quality does not change the attack's cost).
NETWORKS = {
    "digits": {"full": {"num_points": 497, "steps": 40, "svi_steps": 2000},
               "quick": {"num_points": 100, "steps": 10, "svi_steps": 2000}, "train_points": None},
    "fashion-mnist": {"full": {"num_points": 512, "steps": 20, "svi_steps": 1000},
                      "quick": {"num_points": 64, "steps": 5, "svi_steps": 200}, "train_points": 5000},
}
RESULTS = Path(__file__).resolve().parent / "results"


# -- the posterior ------------------------------------------------------------------------------
def load_network_data(network: str):
    """The network's data: ``(train (x, y), test (x, y), num_classes)``, images flattened into [0, 1]."""
    if network == "digits":
        data = ppl_uq.data.load_digits_split(jax.random.key(0))
        return data.train, data.test, data.num_classes
    data = ppl_uq.data.load_fashion_mnist()
    count = NETWORKS[network]["train_points"]
    x, y = data.train
    return (x[:count].reshape(count, -1), y[:count]), (data.test[0].reshape(len(data.test[0]), -1), data.test[1]), \
        data.num_classes


def fit_posterior(rng_key: jax.Array, svi_steps: int, num_draws: int = NUM_DRAWS, network: str = "digits"):
    """The network's data and a mean-field SVI posterior of its D-100-100-10 tanh MLP with ``num_draws``
    draws; returns ``(train, test, posterior, fit seconds)``."""
    train, test, num_classes = load_network_data(network)
    model = functools.partial(mlp_classifier, hidden=HIDDEN, num_classes=num_classes)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        posterior = ppl_uq.fit("svi", model, train, rng_key=rng_key, num_steps=svi_steps, num_samples=num_draws)
    return train, test, posterior, time.perf_counter() - start


def flops_per_point_step(flat_draws: dict[str, np.ndarray]) -> float:
    """FLOPs of one PGD step for one point: every layer's matrix product for every draw, forward and
    backward to the input (2 fan_in fan_out each way); elementwise work left out."""
    layers = sum(1 for name in flat_draws if name.startswith("w"))
    return float(sum(4 * np.prod(flat_draws[f"w{i}"].shape) for i in range(layers)))


# -- eager PyTorch ------------------------------------------------------------------------------
class TorchEnsemble:
    """The posterior's S draws of an MLP as stacked torch tensors: ``log_probs(x (B, D)) -> (S, B, C)``.

    The first layer is one GEMM against all draws' weights side by side (D, S*H); the others are
    ``baddbmm`` over draws (S, B, H_in) @ (S, H_in, H_out).
    """

    def __init__(self, flat_draws: dict[str, np.ndarray]):
        layers = sum(1 for name in flat_draws if name.startswith("w"))
        self.weights = [torch.from_numpy(np.array(flat_draws[f"w{i}"], np.float32)) for i in range(layers)]
        self.biases = [torch.from_numpy(np.array(flat_draws[f"b{i}"], np.float32)) for i in range(layers)]
        w0 = self.weights[0]  # (S, D, H)
        self.num_draws, self.dim, self.first_width = w0.shape
        self.first = w0.permute(1, 0, 2).reshape(self.dim, -1).contiguous()  # (D, S*H)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        h = (x @ self.first).view(x.shape[0], self.num_draws, self.first_width).transpose(0, 1)
        h = torch.tanh(h + self.biases[0][:, None, :])
        for i in range(1, len(self.weights)):
            h = torch.baddbmm(self.biases[i][:, None, :], h, self.weights[i])
            if i < len(self.weights) - 1:
                h = torch.tanh(h)
        return torch.log_softmax(h, dim=-1)

    def objective(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per point (B,): ``-(logsumexp_s log p_s(y | x) - log S)``, to be ascended."""
        log_p = self.log_probs(x)
        chosen = log_p.gather(2, labels.view(1, -1, 1).expand(log_p.shape[0], -1, 1)).squeeze(2)  # (S, B)
        return -(torch.logsumexp(chosen, dim=0) - math.log(log_p.shape[0]))

    @torch.no_grad()
    def decisions(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self.log_probs(x), dim=0).argmax(dim=1)


def torch_pgd(net: TorchEnsemble, x0: np.ndarray, y: np.ndarray, *, eps: float, steps: int, step_size: float,
              random_start: bool, seed: int) -> dict[str, Any]:
    """PGD L-infinity in eager torch, all points in one batch; returns x_adv, decisions and the trace."""
    x0_t = torch.from_numpy(x0)
    labels = torch.from_numpy(y.astype(np.int64))
    lo, hi = BOUNDS
    x = x0_t.clone()
    if random_start:
        generator = torch.Generator().manual_seed(seed)
        x = x + (2.0 * torch.rand(x0_t.shape, generator=generator) - 1.0) * eps
    x = torch.clamp(torch.minimum(torch.maximum(x, x0_t - eps), x0_t + eps), lo, hi)
    best_x, best = x.clone(), torch.full((x.shape[0],), -math.inf)
    trace = []
    for _ in range(steps):
        x.requires_grad_(True)
        value = net.objective(x, labels)
        (grad,) = torch.autograd.grad(value.sum(), x)
        with torch.no_grad():
            value = value.detach()
            better = value > best
            best_x = torch.where(better[:, None], x, best_x)
            best = torch.maximum(best, value)
            x = x.detach() + step_size * torch.sign(grad)
            x = torch.clamp(torch.minimum(torch.maximum(x, x0_t - eps), x0_t + eps), lo, hi)
        trace.append(value.mean())
    with torch.no_grad():
        final = net.objective(x, labels)
        x = torch.where((final > best)[:, None], x, best_x)
        trace.append(final.mean())
        clean, adv = net.decisions(x0_t), net.decisions(x)
    return {"x_adv": x.numpy(), "clean": clean.numpy(), "adv": adv.numpy(), "trace": torch.stack(trace).numpy()}


def robust_accuracy(y: np.ndarray, clean: np.ndarray, adv: np.ndarray) -> float:
    return float(np.mean((clean == y) & (adv == y)))


# -- scoring both sides the same way ------------------------------------------------------------
def exact_objective_float64(flat_draws: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``-(logsumexp_s log p_s(y | x) - log S)`` per point, the MLP evaluated in float64 NumPy."""
    layers = sum(1 for name in flat_draws if name.startswith("w"))
    h = np.broadcast_to(x.astype(np.float64), (flat_draws["w0"].shape[0],) + x.shape)
    for i in range(layers):
        h = h @ flat_draws[f"w{i}"].astype(np.float64) + flat_draws[f"b{i}"].astype(np.float64)[:, None, :]
        if i < layers - 1:
            h = np.tanh(h)
    log_p = h - np.logaddexp.reduce(h, axis=-1, keepdims=True)
    chosen = log_p[:, np.arange(len(y)), y]
    return -(np.logaddexp.reduce(chosen, axis=0) - math.log(chosen.shape[0]))


# -- timing helpers -----------------------------------------------------------------------------
def profile_parts(posterior, net: TorchEnsemble, x: np.ndarray, y: np.ndarray, calls: int) -> dict[str, Any]:
    """Seconds per call of the forward pass alone and of value + input gradient alone, on all points at once
    (ours: what ``pgd`` runs per step, the Posterior's logits, one ``jax.vjp`` of the closed-form cotangent,
    on one device; torch eager at its current thread count), and ours per XLA op (``xla_op_profile``)."""
    logits_fn = posterior.logits_fn()
    objective = batch_objective("exact", targeted=False)

    def value_and_input_grad(x_, y_):  # what pgd computes at every step
        scores, pullback = jax.vjp(logits_fn, x_)
        value, cotangent = objective(scores, y_)
        return pullback(cotangent)[0], value

    forward = jax.jit(logits_fn)
    grad = jax.jit(value_and_input_grad)
    xj, yj = jax.device_put((x, y.astype(np.int32)), jax.local_devices()[0])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def torch_grad():
        xg = xt.clone().requires_grad_(True)
        return torch.autograd.grad(net.objective(xg, yt).sum(), xg)[0]

    def torch_forward():
        with torch.no_grad():
            return net.log_probs(xt)

    parts = {
        "jax_forward": lambda: forward(xj).block_until_ready(),
        "jax_value_and_input_grad": lambda: jax.block_until_ready(grad(xj, yj)),
        "torch_forward": torch_forward,
        "torch_value_and_input_grad": torch_grad,
    }
    out = {}
    for name, fn in parts.items():
        fn()  # warm-up / compile
        out[f"{name}_seconds"] = best_seconds(fn, 2 * calls)[0]  # fastest single call: load spikes excluded
    out["forward_ratio_torch_over_jax"] = out["torch_forward_seconds"] / out["jax_forward_seconds"]
    out["grad_ratio_torch_over_jax"] = (
        out["torch_value_and_input_grad_seconds"] / out["jax_value_and_input_grad_seconds"]
    )
    out["jax_value_and_input_grad_per_op"] = xla_op_profile(
        parts["jax_value_and_input_grad"], grad.lower(xj, yj).compile().as_text())
    out["num_points"] = int(x.shape[0])
    out["torch_threads"] = torch.get_num_threads()
    out["note"] = "one device, all points in one call (pgd splits a batch over the devices)"
    return out


def matmul_threading(num_draws: int, batch: int, width: int, calls: int = 20) -> dict[str, Any]:
    """Milliseconds and CPU-time/wall-time of the network's two kinds of matmul, XLA vs torch (current threads):
    the batched one of a hidden layer, (S, B, H) @ (S, H, H), and a plain GEMM of the same FLOPs,
    (B, H) @ (H, S*H). A CPU/wall ratio near 1 means one core did the work."""
    rng = np.random.default_rng(0)
    h = rng.random((num_draws, batch, width), dtype=np.float32)
    w = rng.random((num_draws, width, width), dtype=np.float32)
    flat = np.ascontiguousarray(w.transpose(1, 0, 2).reshape(width, -1))
    matmul = jax.jit(jnp.matmul)
    cases = {
        "jax_batched": functools.partial(lambda a, b: matmul(a, b).block_until_ready(), jnp.asarray(h), jnp.asarray(w)),
        "jax_plain": functools.partial(lambda a, b: matmul(a, b).block_until_ready(), jnp.asarray(h[0]),
                                       jnp.asarray(flat)),
        "torch_batched": functools.partial(torch.bmm, torch.from_numpy(h), torch.from_numpy(w)),
        "torch_plain": functools.partial(torch.mm, torch.from_numpy(h[0].copy()), torch.from_numpy(flat)),
    }
    out: dict[str, Any] = {"shapes": f"batched ({num_draws}, {batch}, {width}) @ ({num_draws}, {width}, {width}); "
                                     f"plain ({batch}, {width}) @ ({width}, {num_draws * width})",
                           "torch_threads": torch.get_num_threads()}
    for name, fn in cases.items():
        fn()
        cpu, wall = time.process_time(), time.perf_counter()
        fastest = best_seconds(fn, calls)[0]
        out[name] = {"ms": 1e3 * fastest, "cpu_over_wall": (time.process_time() - cpu) / (time.perf_counter() - wall)}
    return out


def finish_overhead(posterior, x: np.ndarray, batch_size: int) -> dict[str, float]:
    """Seconds of the scoring that every attack call ends with (``predictive_log_probs`` on the clean and the
    attacked inputs, as ``finish`` does), against the same computation with its jitted function reused."""
    log_prob_fn = posterior.log_prob_fn()
    predictive_log_probs(posterior, x, batch_size=batch_size)
    start = time.perf_counter()
    for _ in range(2):
        predictive_log_probs(posterior, x, batch_size=batch_size)
    as_called = time.perf_counter() - start
    compute = jax.jit(lambda xb: predictive_log_mean(jax.nn.log_softmax(log_prob_fn(xb), axis=-1)))
    size = min(batch_size, x.shape[0])
    chunks = [x[i: i + size] for i in range(0, x.shape[0] - size + 1, size)] or [x]
    compute(chunks[0]).block_until_ready()
    start = time.perf_counter()
    for _ in range(2):
        for chunk in chunks:
            np.asarray(compute(chunk))
    reused = (time.perf_counter() - start) * x.shape[0] / sum(len(c) for c in chunks)
    return {"seconds_two_calls_as_finish_does": as_called, "seconds_two_calls_jit_reused": reused,
            "note": "the scoring every attack call ends with; equal seconds mean finish adds no recompilation"}


# -- agreement checks ---------------------------------------------------------------------------
def agreement_checks(posterior, net: TorchEnsemble, flat: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                     steps: int, step_size: float, seed: int) -> dict[str, Any]:
    """Forward pass, input gradient, one sign step, and PGD without random start: ours vs torch."""
    key = jax.random.key(seed)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        torch_log_p = net.log_probs(xt).numpy()
    forward_err = float(np.max(np.abs(np.asarray(posterior.log_probs(x)) - torch_log_p)))

    log_prob_fn = posterior.log_prob_fn()

    def total_value(x_):
        log_p = log_prob_fn(x_)
        chosen = jnp.take_along_axis(log_p, jnp.asarray(y)[None, :, None], axis=2)[..., 0]
        return jnp.sum(-(jax.nn.logsumexp(chosen, axis=0) - math.log(log_p.shape[0])))

    jax_grad = np.asarray(jax.grad(total_value)(jnp.asarray(x)), np.float64)
    xg = xt.clone().requires_grad_(True)
    torch_grad = torch.autograd.grad(net.objective(xg, torch.from_numpy(y.astype(np.int64))).sum(), xg)[0]
    torch_grad = torch_grad.numpy().astype(np.float64)
    scale = np.maximum(np.abs(jax_grad).max(axis=1, keepdims=True), 1e-300)
    grad_rel_err = float(np.max(np.abs(jax_grad - torch_grad) / scale))
    zero_grad_points = {"jax": int(np.sum(~np.any(jax_grad != 0, axis=1))),
                        "torch": int(np.sum(~np.any(torch_grad != 0, axis=1)))}

    ours_fgsm = fgsm(posterior, x, y, eps=EPS, bounds=BOUNDS)
    step = torch.clamp(xt + EPS * torch.sign(torch.from_numpy(torch_grad.astype(np.float32))), *BOUNDS)
    fgsm_diff = np.abs(ours_fgsm.x_adv - step.numpy())
    torch_fgsm_accuracy = robust_accuracy(y, net.decisions(xt).numpy(), net.decisions(step).numpy())

    ours_det = pgd(posterior, x, y, eps=EPS, steps=steps, step_size=step_size, random_start=False, rng_key=key,
                   bounds=BOUNDS, objective="exact")
    torch_det = torch_pgd(net, x, y, eps=EPS, steps=steps, step_size=step_size, random_start=False, seed=seed)
    ours_final = exact_objective_float64(flat, ours_det.x_adv, y)
    torch_final = exact_objective_float64(flat, torch_det["x_adv"], y)
    same_point = np.max(np.abs(ours_det.x_adv - torch_det["x_adv"]), axis=1) <= 1e-5
    return {
        "forward_max_abs_log_prob_diff": forward_err,
        "grad_max_rel_err": grad_rel_err,
        "points_with_all_zero_grad": zero_grad_points,
        "fgsm": {
            "fraction_coordinates_equal": float(np.mean(fgsm_diff <= 1e-6)),
            "max_abs_x_diff": float(fgsm_diff.max()),
            "robust_accuracy": {"jax": ours_fgsm.robust_accuracy, "torch": torch_fgsm_accuracy},
        },
        "pgd_no_random_start": {
            "fraction_points_same_x_adv_1e-5": float(np.mean(same_point)),
            "max_abs_x_diff": float(np.max(np.abs(ours_det.x_adv - torch_det["x_adv"]))),
            "mean_final_objective_float64": {"jax": float(ours_final.mean()), "torch": float(torch_final.mean())},
            "abs_diff_mean_final_objective": float(abs(ours_final.mean() - torch_final.mean())),
            "final_trace": {"jax": float(ours_det.loss_trace[-1]), "torch": float(torch_det["trace"][-1]),
                            "max_abs_trace_diff": float(np.max(np.abs(ours_det.loss_trace - torch_det["trace"]))),
                            "note": "pgd's loss_trace (mean over the real points, padding rows excluded) vs the "
                                    "torch mean over points, every iterate"},
            "robust_accuracy": {"jax": ours_det.robust_accuracy,
                                "torch": robust_accuracy(y, torch_det["clean"], torch_det["adv"])},
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and steps (see NETWORKS)")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="digits",
                        help="digits (64-100-100-10) or fashion-mnist (784-100-100-10)")
    parser.add_argument("--out", default=None, help="JSON path (default results/pgd_vs_torch[_quick].json)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side, alternating; the best is kept")
    parser.add_argument("--torch-threads", type=int, default=2, help="headline torch threads (1 is also measured)")
    parser.add_argument("--num-points", type=int, default=None, help="override the test points attacked")
    parser.add_argument("--steps", type=int, default=None, help="override the PGD steps")
    parser.add_argument("--svi-steps", type=int, default=None, help="override the SVI optimisation steps")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="minutes to wait, before timing, for no pytest and a 1-minute load below 1.5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = dict(NETWORKS[args.network]["quick" if args.quick else "full"])
    for name in ("num_points", "steps", "svi_steps"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    if args.repeats < 1 or args.torch_threads < 1 or min(config.values()) < 1 or args.wait_idle < 0:
        parser.error("--repeats, --torch-threads, --num-points, --steps and --svi-steps must be positive, "
                     "--wait-idle >= 0")
    suffix = ("" if args.network == "digits" else "_" + args.network.replace("-", "_")) + ("_quick" if args.quick else "")
    out = Path(args.out) if args.out else RESULTS / f"pgd_vs_torch{suffix}.json"
    load_start = os.getloadavg()

    _, test, posterior, fit_seconds = fit_posterior(jax.random.key(args.seed + 1), config["svi_steps"],
                                                    network=args.network)
    x_all, y_all = test
    x, y = x_all[: config["num_points"]], y_all[: config["num_points"]]
    flat = posterior.flat_draws()
    net = TorchEnsemble(flat)
    steps = config["steps"]
    step_size = 2.5 * EPS / steps
    point_steps = x.shape[0] * steps
    key = jax.random.key(args.seed)
    default_batch = min(256, x.shape[0])  # pgd's default batch_size
    batch_sizes = sorted({min(b, x.shape[0]) for b in (64, 128, 256, x.shape[0])})

    def run_ours(batch_size: int):
        return pgd(posterior, x, y, eps=EPS, steps=steps, rng_key=key, bounds=BOUNDS, objective="exact",
                   batch_size=batch_size)

    def run_torch():
        return torch_pgd(net, x, y, eps=EPS, steps=steps, step_size=step_size, random_start=True, seed=args.seed)

    first_call = {}
    for batch_size in batch_sizes:
        start = time.perf_counter()
        run_ours(batch_size)
        first_call[batch_size] = time.perf_counter() - start
    with_threads(args.torch_threads, run_torch)  # warm-up (allocator, thread pool)
    runs: dict[str, Callable[[], Any]] = {f"jax_pgd_batch_{b}": functools.partial(run_ours, b) for b in batch_sizes}
    for threads in sorted({args.torch_threads, 1}, reverse=True):
        runs[f"torch_{threads}_threads"] = functools.partial(with_threads, threads, run_torch)
    idle = wait_for_quiet_machine(args.wait_idle) if args.wait_idle > 0 else None
    load_timing_start = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds, _, results[name] = best_seconds(fn, 1)
            times[name].append(seconds)
    load_timing_end = os.getloadavg()
    peak = with_threads(args.torch_threads, lambda: matmul_peak(torch_threads=args.torch_threads))
    rates = {name: point_steps / min(values) for name, values in times.items()}
    flops = flops_per_point_step(flat)
    best_jax = max((name for name in rates if name.startswith("jax_pgd")), key=rates.get)
    default_jax = f"jax_pgd_batch_{default_batch}"
    torch_main = f"torch_{args.torch_threads}_threads"
    best_torch = max((name for name in rates if name.startswith("torch")), key=rates.get)

    ours = results[default_jax]
    theirs = results[torch_main]
    calls = 3 if args.quick else 5
    profile = with_threads(args.torch_threads, lambda: profile_parts(posterior, net, x, y, calls=calls))
    profile["pgd_call_seconds_per_step"] = min(times[default_jax]) / steps
    profile["finish_scoring"] = finish_overhead(posterior, x, default_batch)
    profile["matmul_threading"] = with_threads(args.torch_threads,
                                               lambda: matmul_threading(NUM_DRAWS, default_batch, HIDDEN[0]))
    agreement = agreement_checks(posterior, net, flat, x, y, steps, step_size, args.seed)
    agreement["robust_accuracy_random_start"] = {
        "jax": ours.robust_accuracy, "torch": robust_accuracy(y, theirs["clean"], theirs["adv"]),
        "clean_accuracy_jax": ours.clean_accuracy, "clean_accuracy_torch": float(np.mean(theirs["clean"] == y)),
    }
    agreement["mean_final_objective_random_start_float64"] = {
        "jax": float(exact_objective_float64(flat, ours.x_adv, y).mean()),
        "torch": float(exact_objective_float64(flat, theirs["x_adv"], y).mean()),
    }
    gap = abs(agreement["robust_accuracy_random_start"]["jax"] - agreement["robust_accuracy_random_start"]["torch"])
    agreement["robust_accuracy_gap_random_start"] = gap
    agreement["same_result"] = bool(gap <= 0.03 and agreement["grad_max_rel_err"] < 1e-3)

    result = {
        "benchmark": "pgd_vs_torch",
        "config": {**config, "eps": EPS, "step_size": step_size, "bounds": BOUNDS, "norm": "linf",
                   "objective": "exact", "num_draws": posterior.num_samples, "repeats": args.repeats,
                   "seed": args.seed, "network": args.network,
                   "model": f"tanh MLP {x.shape[1]}-{'-'.join(map(str, HIDDEN))}-10, N(0,1) prior",
                   "posterior": f"svi meanfield, {config['svi_steps']} steps, {NUM_DRAWS} draws from q",
                   "svi_fit_seconds": fit_seconds},
        "point_steps": point_steps,
        "seconds_per_run": times,
        "point_steps_per_second_best_of_repeats": rates,
        "matmul_peak": peak,
        "flops_per_point_step": flops,
        "fraction_of_peak": {name: rate * flops / (peak["peak_gflops"] * 1e9) for name, rate in rates.items()},
        "jax": {
            "first_call_seconds_incl_compile": first_call,
            "compile_seconds_estimate": {b: first_call[b] - min(times[f"jax_pgd_batch_{b}"]) for b in batch_sizes},
            "timed_call": "jax_pgd_batch_*: ppl_uq.harness.attacks.pgd(posterior, ..., batch_size=*) end to end, "
                          "incl. its final scoring (finish)",
            "devices": len(jax.local_devices()),
            "batches_per_call": {b: math.ceil(x.shape[0] / b) for b in batch_sizes},
            "threads": f"XLA CPU default (intra-op pool over {os.cpu_count()} cores)",
        },
        "torch": {"mode": "eager, all points in one batch, autograd input gradient, incl. final decisions",
                  "headline_threads": args.torch_threads},
        "speedup": {
            f"jax_default_batch_over_{torch_main}": rates[default_jax] / rates[torch_main],
            "jax_default_batch_over_torch_1_threads": rates[default_jax] / rates["torch_1_threads"],
            f"jax_best_batch_over_{torch_main}": rates[best_jax] / rates[torch_main],
            "jax_best_over_torch_best": rates[best_jax] / rates[best_torch],
            "jax_default_batch": default_jax, "jax_best_batch": best_jax, "torch_best": best_torch,
        },
        "target_speedup": 2.0,
        "profile_all_points_one_call": profile,
        "agreement": agreement,
        "environment": {
            "jax": jax.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads_default": torch.get_num_threads(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "load_average_start": load_start, "load_average_timing_start": load_timing_start,
            "load_average_timing_end": load_timing_end, "load_average_end": os.getloadavg(),
            "wait_for_quiet_machine": idle,
            "note": "timings on a shared CPU; each rate is the best of the repeats; load averages are (1, 5, 15) min",
        },
    }
    from ppl_uq.report import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    print_table(result)
    print(f"wrote {out}")
    return result


def print_table(result: dict) -> None:
    rates = result["point_steps_per_second_best_of_repeats"]
    print(f"PGD L-inf, S={result['config']['num_draws']}, {result['config']['num_points']} points x "
          f"{result['config']['steps']} steps")
    print(f"{'side':<44}{'best s':>10}{'point·steps/s':>16}")
    for name, rate in rates.items():
        print(f"{name:<44}{result['point_steps'] / rate:>10.3f}{rate:>16.0f}")
    print(json.dumps({"speedup": result["speedup"], "profile": result["profile_all_points_one_call"],
                      "agreement": result["agreement"]}, indent=2))


if __name__ == "__main__":
    main()
