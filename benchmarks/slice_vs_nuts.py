"""Slice sampling against NUTS on the adversarial-spheres posterior (``squared_logistic``, prior sd 10).

Fits both backends with 2 chains on the same data and reports, for each, the min and median bulk ESS
per second of ``fit_seconds`` (set-up, compilation, warm-up and sampling), the max R-hat, and how the
two posteriors compare: correlation of posterior means, median ratio of posterior sds, and z-scores of
the mean differences (difference over the combined Monte Carlo standard errors, which is what the
correlation of means is limited by: the posterior means of w differ across coordinates by far less
than the posterior sd). NUTS's own chain-vs-chain correlation of means is printed as the yardstick.

The agreement gate is on the z-scores, not the correlation (unattainable at 2 x 500 draws: it measures the
spread of the true means against Monte Carlo noise, not agreement). When both samplers target the same
posterior, each z is approximately N(0, 1), so over K coordinates mean(z^2) ~ chi^2_K / K (mean 1, sd
sqrt(2 / K)) and the count of |z| > 3 ~ Binomial(K, 0.0027). The gate passes when mean(z^2) lies within
1 +- 4 sqrt(2 / K) and the count of |z| > 3 is at most the Binomial's 0.999 quantile. (The MCSEs are
themselves estimated from the ESS, which widens z's spread a little; 4 sds leave room for that.)

    python benchmarks/slice_vs_nuts.py            # D=500, N=1000 (several minutes)
    python benchmarks/slice_vs_nuts.py --quick    # D=100, N=300
"""

from __future__ import annotations

import numpyro

numpyro.set_host_device_count(2)  # before JAX starts: one CPU device per chain

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import arviz as az  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import ppl_uq  # noqa: E402
from ppl_uq.data.spheres import make_spheres  # noqa: E402
from ppl_uq.models.logistic import squared_logistic  # noqa: E402

SETTINGS = {
    "full": {
        "dim": 500,
        "num_train": 1000,
        "nuts": {"num_warmup": 500, "num_samples": 500},
        "slice": {"num_warmup": 500, "num_samples": 1500},
    },
    "quick": {
        "dim": 100,
        "num_train": 300,
        "nuts": {"num_warmup": 300, "num_samples": 300},
        "slice": {"num_warmup": 300, "num_samples": 600},
    },
}


def coordinates(posterior: ppl_uq.Posterior) -> np.ndarray:
    """(chain, draw, D + 1): the weights and the bias."""
    return np.concatenate([posterior.draws["w"], posterior.draws["b"][..., None]], axis=-1)


def summarise(posterior: ppl_uq.Posterior) -> dict[str, Any]:
    """ESS (bulk, min and median over coordinates), ESS per second of fit time, R-hat, cost."""
    draws = az.convert_to_dataset({"t": coordinates(posterior)})
    ess = az.ess(draws, method="bulk")["t"].values
    seconds = posterior.cost["fit_seconds"]
    return {
        "fit_seconds": seconds,
        "ess_bulk_min": float(ess.min()),
        "ess_bulk_median": float(np.median(ess)),
        "ess_per_second_min": float(ess.min() / seconds),
        "ess_per_second_median": float(np.median(ess) / seconds),
        "rhat_max": float(az.rhat(draws)["t"].values.max()),
        "num_chains": posterior.num_chains,
        "num_draws": posterior.num_draws,
        "cost": posterior.cost,
    }


def compare(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Posterior means and sds of ``ours`` against ``reference`` (both (chain, draw, K))."""
    mean_a, mean_b = ours.mean((0, 1)), reference.mean((0, 1))
    sd_a, sd_b = ours.std((0, 1)), reference.std((0, 1))
    se_a = az.mcse(az.convert_to_dataset({"t": ours}), method="mean")["t"].values
    se_b = az.mcse(az.convert_to_dataset({"t": reference}), method="mean")["t"].values
    z = (mean_a - mean_b) / np.hypot(se_a, se_b)
    return {
        "mean_correlation": float(np.corrcoef(mean_a, mean_b)[0, 1]),
        "sd_ratio_median": float(np.median(sd_a / sd_b)),
        "z_mean_square": float(np.mean(z**2)),
        "z_fraction_above_3": float(np.mean(np.abs(z) > 3)),
        **z_gate(z),
    }


def z_gate(z: np.ndarray) -> dict[str, Any]:
    """The agreement gate on K z-scores (module docstring): mean(z^2) within 1 +- 4 sqrt(2/K), and at most
    the Binomial(K, P(|N(0,1)| > 3)) 0.999 quantile of |z| > 3. Returns the numbers and ``z_gate_passed``."""
    from scipy import stats

    count = z.size
    band = 4.0 * np.sqrt(2.0 / count)
    limit = int(stats.binom.ppf(0.999, count, 2 * stats.norm.sf(3.0)))
    above = int(np.sum(np.abs(z) > 3))
    mean_square = float(np.mean(z**2))
    return {"z_mean_square_band": [1.0 - band, 1.0 + band], "z_above_3_count": above, "z_above_3_limit": limit,
            "z_gate_passed": bool(abs(mean_square - 1.0) <= band and above <= limit)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="D=100, N=300, fewer draws")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "slice_vs_nuts.json"), help="JSON results path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice-warmup", type=int, default=None)
    parser.add_argument("--slice-samples", type=int, default=None)
    args = parser.parse_args()
    setting = SETTINGS["quick" if args.quick else "full"]
    slice_options = dict(setting["slice"])
    if args.slice_warmup is not None:
        slice_options["num_warmup"] = args.slice_warmup
    if args.slice_samples is not None:
        slice_options["num_samples"] = args.slice_samples

    key_data, key_nuts, key_slice = jax.random.split(jax.random.key(args.seed), 3)
    data = make_spheres(key_data, dim=setting["dim"], num_train=setting["num_train"], num_val=2)
    model = functools.partial(squared_logistic, prior_scale=10.0, **data.model_kwargs)

    # Start JAX's runtime on a throwaway problem so neither timed fit pays the one-off start-up.
    tiny = make_spheres(key_data, dim=4, num_train=20, num_val=2)
    tiny_model = functools.partial(squared_logistic, **tiny.model_kwargs)
    for backend in ("nuts", "slice"):
        ppl_uq.fit(backend, tiny_model, tiny.train, rng_key=key_data, num_warmup=5, num_samples=5)

    start = time.perf_counter()
    nuts = ppl_uq.fit("nuts", model, data.train, rng_key=key_nuts, num_chains=2, **setting["nuts"])
    ours = ppl_uq.fit("slice", model, data.train, rng_key=key_slice, num_chains=2, **slice_options)
    results = {
        "setting": {
            "dim": setting["dim"],
            "num_train": setting["num_train"],
            "prior_scale": 10.0,
            "nuts_options": nuts.options,
            "slice_options": ours.options,
            "devices": jax.local_device_count(),
            "cpu_count": os.cpu_count(),
            "note": "wall-clock timings on a shared CPU are noisy",
        },
        "nuts": summarise(nuts),
        "slice": summarise(ours),
        "slice_info": ours.info,
        "slice_vs_nuts": compare(coordinates(ours), coordinates(nuts)),
        "nuts_chain0_vs_chain1": compare(coordinates(nuts)[:1], coordinates(nuts)[1:]),
        "total_seconds": time.perf_counter() - start,
    }
    results["ess_per_second_ratio_min"] = results["slice"]["ess_per_second_min"] / results["nuts"]["ess_per_second_min"]
    results["ess_per_second_ratio_median"] = (
        results["slice"]["ess_per_second_median"] / results["nuts"]["ess_per_second_median"]
    )
    stats = {name: float(np.mean(value)) for name, value in ours.sample_stats.items()}
    results["slice_sample_stats_mean_per_sweep"] = stats

    for name in ("nuts", "slice"):
        r = results[name]
        print(
            f"{name:6s} fit {r['fit_seconds']:6.1f} s  ESS bulk min {r['ess_bulk_min']:7.1f} median "
            f"{r['ess_bulk_median']:7.1f}  ESS/s min {r['ess_per_second_min']:6.2f} median "
            f"{r['ess_per_second_median']:6.2f}  R-hat max {r['rhat_max']:.3f}"
        )
    print(
        f"slice/NUTS ESS/s ratio: min {results['ess_per_second_ratio_min']:.2f}, "
        f"median {results['ess_per_second_ratio_median']:.2f}"
    )
    for label in ("slice_vs_nuts", "nuts_chain0_vs_chain1"):
        c = results[label]
        print(
            f"{label}: mean corr {c['mean_correlation']:.3f}, median sd ratio {c['sd_ratio_median']:.3f}, "
            f"mean z^2 {c['z_mean_square']:.2f} (band {c['z_mean_square_band'][0]:.2f}-{c['z_mean_square_band'][1]:.2f}), "
            f"|z|>3 {c['z_above_3_count']} (limit {c['z_above_3_limit']}): gate {'pass' if c['z_gate_passed'] else 'FAIL'}"
        )
    print(f"slice mode: {ours.info['slice_mode']} ({ours.info['slice_mode_reason']})")
    print("slice per sweep:", {k: round(v, 1) for k, v in stats.items()})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
