"""Shared benchmark helpers: ESS summaries, timing, torch threads, waiting for a quiet machine and writing
the JSON result."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def bulk_ess(draws: dict[str, np.ndarray]) -> np.ndarray:
    """Bulk ESS of every scalar coordinate of ``draws`` (site -> (chain, draw, ...)), flattened."""
    from ppl_uq.posterior import import_arviz

    az = import_arviz()
    dataset = az.ess(az.from_dict(posterior=draws), method="bulk")
    return np.concatenate([np.ravel(np.asarray(v)) for v in dataset.data_vars.values()])


def ess_per_second(draws: dict[str, np.ndarray], seconds: float) -> dict[str, float]:
    """Min and median bulk ESS, and the same per second of ``seconds``."""
    ess = bulk_ess(draws)
    return {
        "seconds": seconds,
        "ess_bulk_min": float(ess.min()),
        "ess_bulk_median": float(np.median(ess)),
        "min_ess_per_s": float(ess.min() / seconds),
        "median_ess_per_s": float(np.median(ess) / seconds),
    }


def write_result(path: str | Path, payload: dict[str, Any]) -> None:
    """Print ``payload`` and write it as JSON (atomically) with the machine described."""
    from ppl_uq.report import atomic_write_json

    payload = {**payload, "machine": {"python": sys.version.split()[0], "platform": platform.platform()}}
    atomic_write_json(path, payload)
    print(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")


def best_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """(fastest of ``repeats`` calls, every call's seconds, the last output)."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), times, out


def with_threads(threads: int, fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` with torch limited to ``threads`` intra-op threads; restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(previous)


def wait_for_quiet_machine(max_minutes: float, max_load: float = 1.5, poll_seconds: float = 30.0) -> dict[str, Any]:
    """Wait (at most ``max_minutes``) until no pytest process runs and the 1-minute load average is below
    ``max_load``, polling every ``poll_seconds``; then return what was seen (timing goes ahead either way)."""
    def pytest_running() -> bool:
        found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
        return bool(found.stdout.strip())

    start = time.perf_counter()
    seen = {"load_average_before_wait": os.getloadavg(), "pytest_running_before_wait": pytest_running()}
    quiet = not seen["pytest_running_before_wait"] and seen["load_average_before_wait"][0] < max_load
    while not quiet and time.perf_counter() - start < 60.0 * max_minutes:
        time.sleep(poll_seconds)
        quiet = not pytest_running() and os.getloadavg()[0] < max_load
    return {**seen, "waited_seconds": time.perf_counter() - start, "quiet_when_timing_started": quiet,
            "pytest_running_when_timing_started": pytest_running(),
            "load_average_when_timing_started": os.getloadavg(), "max_wait_minutes": max_minutes,
            "max_load": max_load}


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 5, torch_threads: int | None = None
                ) -> dict[str, Any]:
    """This machine's float32 matrix-multiply peak, measured now: square GEMMs of each size in ``sizes``
    through XLA (a jitted ``jnp.dot``) and through PyTorch (MKL, ``torch_threads`` threads, default its
    current count), best of ``repeats`` each. ``peak_gflops`` is the best of all of them: the honest
    ceiling for an attack whose work is matrix products, against which its ``fraction_of_peak`` is read."""
    import jax
    import jax.numpy as jnp
    import torch

    out: dict[str, Any] = {"sizes": list(sizes), "repeats": repeats, "xla_gflops": {}, "torch_gflops": {}}
    threads = torch_threads or torch.get_num_threads()
    for n in sizes:
        flops = 2.0 * n**3
        a = jnp.asarray(np.random.default_rng(n).standard_normal((n, n)), jnp.float32)
        dot = jax.jit(jnp.dot)
        dot(a, a).block_until_ready()
        seconds, _, _ = best_seconds(functools.partial(_block, dot, a), repeats)
        out["xla_gflops"][n] = flops / seconds / 1e9
        t = torch.from_numpy(np.array(a))
        torch_seconds = with_threads(threads, functools.partial(best_seconds, functools.partial(torch.mm, t, t), repeats))[0]
        out["torch_gflops"][n] = flops / torch_seconds / 1e9
    out["torch_threads"] = threads
    out["peak_gflops"] = max(*out["xla_gflops"].values(), *out["torch_gflops"].values())
    return out


def _block(fn: Callable[..., Any], a: Any) -> Any:
    return fn(a, a).block_until_ready()


def xla_op_profile(fn: Callable[[], Any], hlo_text: str | None = None, top: int = 12) -> list[dict[str, Any]]:
    """Where one call of ``fn`` (a jitted JAX computation, already compiled) spends its time, per XLA op.

    Runs ``fn`` once under ``jax.profiler.trace`` and sums the trace's per-op events (XLA CPU records one
    per executed thunk: a fusion, a dot, a copy). With ``hlo_text`` (``compiled.as_text()``), each fusion is
    labelled with the main operation inside it (a dot's shapes, else its root op). Returns the ``top`` ops
    by total time: ``{"op", "ms", "calls", "what"}``, plus one row ``"(all ops)"`` with the total.
    """
    import gzip
    import re
    import tempfile

    import jax

    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            jax.block_until_ready(fn())
        trace_file = next(Path(folder).rglob("*.trace.json.gz"))
        events = json.loads(gzip.decompress(trace_file.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    # Events that enclose others (the executor, a while loop's thunk around its body, Python frames).
    skip = ("ThunkExecutor", "$", "PjitFunction", "block_until_ready", "np.asarray", "while", "conditional",
            "call", "SlinkyThreadPool")
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or "dur" not in event or name.startswith(skip):
            continue
        totals[name] = totals.get(name, 0.0) + event["dur"] / 1e3
        calls[name] = calls.get(name, 0) + 1
    labels: dict[str, str] = {}
    if hlo_text:
        bodies: dict[str, list[str]] = {}
        current = None
        for line in hlo_text.splitlines():
            header = re.match(r"^%?([\w.\-]+) .*\{$", line)
            if header:
                current = header.group(1)
                bodies[current] = []
            elif current:
                bodies[current].append(line)
        for line in hlo_text.splitlines():
            found = re.search(r"%([\w.\-]+) = (\S+) fusion\(.*calls=%([\w.\-]+)", line)
            if not found:
                continue
            body = bodies.get(found.group(3), [])
            dots = [re.sub(r", metadata=.*", "", b).strip() for b in body if " dot(" in b]
            root = next((b.strip() for b in body if b.strip().startswith("ROOT")), "")
            labels[found.group(1)] = (dots[0] if dots else root)[:160] + f" -> {found.group(2)}"
    total = sum(totals.values())
    rows = [{"op": name, "ms": round(ms, 3), "calls": calls[name], "what": labels.get(name, "")}
            for name, ms in sorted(totals.items(), key=lambda item: -item[1])[:top]]
    return [{"op": "(all ops)", "ms": round(total, 3), "calls": sum(calls.values()), "what": ""}, *rows]
