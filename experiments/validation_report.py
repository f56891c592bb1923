"""How well does each backend recover the posterior? Every backend on three models whose posterior is known
in closed form, and simulation-based calibration (SBC, with VSBC's symmetry test) where the answer is
interesting.

    python experiments/validation_report.py --out experiments/results/validation            # ~10 min, 2 cores
    python experiments/validation_report.py --out /tmp/v --num-sims 10 --backends nuts,map  # a smoke run

Models (``ppl_uq.models``): ``normal_mean`` (N = 10; Gaussian posterior), ``linear_regression`` on two inputs
with correlation 0.998 (N = 20; a posterior correlation of -0.95 between the weights: mean-field q is too
narrow there), and ``normal_precision`` (N = 3; a Gamma posterior with skewness 1.1). Recovery: per backend,
the largest error of a coordinate's mean and of its sd in units of the exact posterior sd, the Pareto k-hat
(approximations with a density), the fit's seconds and gradient evaluations, and its failed gates. SBC: ranks
of the true parameter among L = 19 draws over ``--num-sims`` simulated data sets; uniformity by chi-squared
and a simultaneous ECDF band, symmetry (VSBC) by Kolmogorov-Smirnov, each at overall level 0.01.

Writes ``results.json`` (every number), ``report.md`` and one ECDF-difference figure per SBC row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

BACKEND_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "nuts": ("nuts", dict(num_warmup=500, num_samples=1000, num_chains=2)),
    "slice": ("slice", dict(num_warmup=500, num_samples=1000, num_chains=2)),
    "pyro-nuts": ("pyro-nuts", dict(num_warmup=300, num_samples=500, num_chains=1)),
    "laplace": ("laplace", dict(num_samples=2000)),
    "svi-meanfield": ("svi", dict(guide="meanfield", num_steps=5000, num_samples=2000)),
    "svi-fullrank": ("svi", dict(guide="fullrank", num_steps=5000, num_samples=2000, learning_rate=0.005)),
    "pyro-svi": ("pyro-svi", dict(num_steps=3000, num_samples=2000)),
    "ml-mixture": ("ml-mixture", dict(num_steps=3000, num_samples=2000)),
    "map": ("map", {}),
    "bootstrap": ("bootstrap", dict(num_members=50)),
    "deep-ensemble": ("deep-ensemble", dict(num_members=10)),
}

#: SBC rows (backend key, model name): the correlated posterior separates mean-field from full-rank q, the
#: skewed one tests the Gaussian approximations; NUTS is the positive control, MAP the negative one.
SBC_ROWS = (("nuts", "correlated"), ("svi-meanfield", "correlated"), ("svi-fullrank", "correlated"),
            ("laplace", "correlated"), ("map", "correlated"), ("nuts", "skewed"), ("laplace", "skewed"))
SBC_OPTIONS = {  # fewer draws per fit: L = 19 ranks need only 19 near-independent ones
    "nuts": dict(num_warmup=300, num_samples=200, num_chains=1),
    "svi-meanfield": dict(guide="meanfield", num_steps=2000, num_samples=200),
    "svi-fullrank": dict(guide="fullrank", num_steps=2000, num_samples=200, learning_rate=0.005),
    "laplace": dict(num_samples=200),
    "map": {},
}


def problems() -> dict[str, dict[str, Any]]:
    """Model name -> model, data (x, y) and the exact posterior's mean and sd per site."""
    from ppl_uq import models

    rng = np.random.default_rng(0)
    x_mean = np.zeros((10, 1), np.float32)
    y_mean = rng.normal(0.7, 1.0, 10).astype(np.float32)
    mean, cov = models.normal_mean_exact_posterior(x_mean, y_mean)
    x_corr = rng.normal(size=(20, 2))
    x_corr[:, 1] = x_corr[:, 0] + 0.05 * rng.normal(size=20)
    x_corr = x_corr.astype(np.float32)
    y_corr = (x_corr @ np.array([1.0, -0.5]) + rng.normal(size=20)).astype(np.float32)
    w_mean, w_cov = models.linear_regression_exact_posterior(x_corr, y_corr)
    x_skew = np.zeros((3, 1), np.float32)
    y_skew = np.array([0.3, -1.2, 0.8], np.float32)
    shape, rate = models.normal_precision_exact_posterior(x_skew, y_skew)
    return {
        "gaussian": dict(model=models.normal_mean, data=(x_mean, y_mean), mean={"mu": mean[0]}, sd={"mu": np.sqrt(cov[0, 0])}),
        "correlated": dict(model=models.linear_regression, data=(x_corr, y_corr), mean={"w": w_mean},
                           sd={"w": np.sqrt(np.diag(w_cov))}, correlation=float(w_cov[0, 1] / np.sqrt(w_cov[0, 0] * w_cov[1, 1]))),
        "skewed": dict(model=models.normal_precision, data=(x_skew, y_skew), mean={"tau": np.array(shape / rate)},
                       sd={"tau": np.array(np.sqrt(shape) / rate)}),
    }


def recovery(backends: list[str]) -> list[dict[str, Any]]:
    """Every backend on every problem: the recovery row as a dict (or the error that stopped the fit)."""
    import ppl_uq
    from ppl_uq.validation import recovery_row

    rows = []
    for name, problem in problems().items():
        for key in backends:
            backend, options = BACKEND_OPTIONS[key]
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    posterior = ppl_uq.fit(backend, problem["model"], problem["data"], rng_key=jax.random.key(0), **options)
                row = recovery_row(posterior, problem["mean"], problem["sd"])._asdict()
                row["backend"] = key
            except Exception as exc:  # reported in the table, never hidden
                row = {"backend": key, "error": f"{type(exc).__name__}: {exc}"}
            row.update(model=name, wall_seconds=time.perf_counter() - start)
            rows.append(row)
            print(f"[recovery] {name:10s} {key:14s} {json.dumps({k: v for k, v in row.items() if k != 'flags'}, default=str)}",
                  file=sys.stderr, flush=True)
    return rows


def calibration(num_sims: int, rows: tuple[tuple[str, str], ...], client: Any) -> list[dict[str, Any]]:
    """SBC of each (backend key, model name) row; returns dicts with the ranks and every test's numbers."""
    from ppl_uq.validation import sbc

    out = []
    all_problems = problems()
    for key, name in rows:
        backend = BACKEND_OPTIONS[key][0]
        problem = all_problems[name]
        result = sbc(backend, problem["model"], problem["data"][0], rng_key=jax.random.key(1), num_sims=num_sims,
                     num_draws=19, client=client, **SBC_OPTIONS[key])
        out.append({"backend": key, "model": name, "passed": result.passed, "vsbc_passed": result.vsbc_passed,
                    "failed": result.failed, "chi2_pvalues": result.chi2_pvalues, "vsbc_pvalues": result.vsbc_pvalues,
                    "ecdf_outside": result.ecdf_outside, "band_gamma": result.band_gamma, "level": result.level,
                    "num_sims": num_sims, "num_draws": result.num_draws, "seconds": result.seconds,
                    "ranks": {c: r.tolist() for c, r in result.ranks.items()},
                    "ess_min_median": float(np.nanmedian(result.ess_min)) if np.any(np.isfinite(result.ess_min)) else None})
        print(f"[sbc] {name:10s} {key:14s} passed={result.passed} vsbc={result.vsbc_passed} failed={result.failed} "
              f"{result.seconds:.0f}s", file=sys.stderr, flush=True)
    return out


def render(results: dict[str, Any], out: Path) -> None:
    """Write ``report.md`` and the ECDF-difference figures from ``results`` (the JSON's content)."""
    import matplotlib.pyplot as plt
    from scipy import stats

    lines = ["# How well does each backend recover the posterior?", "",
             f"Made by `python experiments/validation_report.py --out {out}` ({results['minutes']:.1f} min on this machine).",
             "Errors are in units of the exact posterior sd (largest over coordinates); k-hat is PSIS's Pareto shape "
             "of p/q (> 0.7: unreliable; blank where the backend has no density); flags are the failed gates.",
             f"The correlated model's posterior correlation is {results['correlation']:.3f}.", ""]
    for model in ("gaussian", "correlated", "skewed"):
        lines += [f"## {model}", "", "| backend | mean error (sd) | sd error (rel.) | k-hat | seconds | grad evals | flags |",
                  "|---|---|---|---|---|---|---|"]
        for row in (r for r in results["recovery"] if r["model"] == model):
            if "error" in row:
                lines.append(f"| {row['backend']} | error: {row['error'][:120]} | | | | | |")
                continue
            cells = [f"{row['mean_error']:.3f}", "—" if not np.isfinite(row["sd_error"]) else f"{row['sd_error']:.3f}",
                     "" if not np.isfinite(row["pareto_k"]) else f"{row['pareto_k']:.2f}", f"{row['seconds']:.1f}",
                     "" if not np.isfinite(row["grad_evals"]) else f"{row['grad_evals']:.0f}", "; ".join(row["flags"])]
            lines.append(f"| {row['backend']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Simulation-based calibration", "",
              f"{results['sbc'][0]['num_sims'] if results['sbc'] else 0} simulated data sets per row, ranks among "
              "L = 19 draws; verdicts at overall level 0.01 (Bonferroni over coordinates).", "",
              "| backend | model | SBC (uniform ranks) | failed coordinates | VSBC (symmetric) | min chi² p | seconds | figure |",
              "|---|---|---|---|---|---|---|---|"]
    for row in results["sbc"]:
        figure = f"sbc_{row['backend']}_{row['model']}.png"
        lines.append(f"| {row['backend']} | {row['model']} | {'pass' if row['passed'] else 'FAIL'} | "
                     f"{', '.join(row['failed']) or '—'} | {'pass' if row['vsbc_passed'] else 'FAIL'} | "
                     f"{min(row['chi2_pvalues'].values()):.2g} | {row['seconds']:.0f} | [png]({figure}) |")
        fig, axes = plt.subplots(1, len(row["ranks"]), figsize=(3.2 * len(row["ranks"]), 2.6), squeeze=False)
        num, L = row["num_sims"], row["num_draws"]
        z = np.arange(1, L + 1) / (L + 1)
        lo = stats.binom.ppf(row["band_gamma"] / 2, num, z) / num - z
        hi = stats.binom.ppf(1 - row["band_gamma"] / 2, num, z) / num - z
        for ax, (coordinate, ranks) in zip(axes[0], row["ranks"].items(), strict=True):
            ecdf = np.array([np.mean(np.asarray(ranks) < k) for k in range(1, L + 1)])
            ax.fill_between(z, lo, hi, color="0.85", step="mid", label="simultaneous band")
            ax.plot(z, ecdf - z, drawstyle="steps-mid", color="C3" if coordinate in row["failed"] else "C0")
            ax.set_title(f"{coordinate}", fontsize=9)
            ax.axhline(0, color="0.5", lw=0.5)
        axes[0][0].set_ylabel("ECDF − uniform")
        fig.suptitle(f"SBC: {row['backend']} on {row['model']}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / figure, dpi=90)
        plt.close(fig)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num-sims", type=int, default=40, help="SBC simulations per row (default 40)")
    parser.add_argument("--backends", default=",".join(BACKEND_OPTIONS), help=f"comma-separated, from {list(BACKEND_OPTIONS)}")
    parser.add_argument("--workers", type=int, default=0, help="dask LocalCluster workers for SBC (0: in this process)")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKEND_OPTIONS))
    if unknown:
        parser.error(f"unknown --backends {unknown}; choose from {list(BACKEND_OPTIONS)}")
    from ppl_uq.runs import configure_process

    configure_process()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    client = None
    if args.workers:
        from dask.distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True))
    try:
        results = {"recovery": recovery(backends),
                   "sbc": calibration(args.num_sims, tuple(r for r in SBC_ROWS if r[0] in backends), client),
                   "correlation": problems()["correlated"]["correlation"]}
    finally:
        if client is not None:
            client.close()
    results["minutes"] = (time.perf_counter() - start) / 60
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    render(results, out)
    print(f"wrote {out / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
