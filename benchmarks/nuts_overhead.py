"""Does the toolkit add overhead to NumPyro's NUTS? And how much faster is NumPyro than Pyro?

Runs on the same spheres posterior, one chain each, side by side in one process:
  ours  = ppl_uq.fit("nuts", squared_logistic, ...)        (model declared once via the PPL handle)
  raw   = numpyro.infer.MCMC(NUTS(model written directly in NumPyro))
  pyro  = ppl_uq.fit("pyro-nuts", ...)                     (Pyro NUTS, jit, 1 thread)
and reports min / median bulk ESS per second of wall time (warm-up + sampling, compile included for all)
with the ratios ours/raw (target >= 0.95) and numpyro/pyro.

    python benchmarks/nuts_overhead.py --quick
    python benchmarks/nuts_overhead.py            # D=500, N=1000, 500+500 (Pyro takes ~6 min)
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _util import ess_per_second, write_result
from numpyro.infer import MCMC, NUTS, init_to_median

import ppl_uq
from ppl_uq.data import make_spheres
from ppl_uq.models import squared_logistic


def raw_numpyro_model(x, y=None, *, loc, scale, prior_scale=10.0):
    """The same model written directly against NumPyro (the baseline)."""
    phi = (x * x - loc) / scale
    w = numpyro.sample("w", dist.Normal(0.0, prior_scale).expand([phi.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, prior_scale))
    a = phi @ w + b
    logits = jnp.stack([jnp.zeros_like(a), a], -1)
    numpyro.deterministic("logits", logits)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Categorical(logits=logits), obs=y)


def run_raw(data, num_warmup, num_samples, rng_key):
    model = functools.partial(raw_numpyro_model, loc=data.feature_loc, scale=data.feature_scale)
    mcmc = MCMC(NUTS(model, init_strategy=init_to_median(num_samples=15)), num_warmup=num_warmup,
                num_samples=num_samples, num_chains=1, progress_bar=False)
    start = time.perf_counter()
    mcmc.run(rng_key, *data.train)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    seconds = time.perf_counter() - start
    return {k: np.asarray(samples[k]) for k in ("w", "b")}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="D=100, N=300, 300+300 draws")
    parser.add_argument("--skip-pyro", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of raw and ours (fastest kept)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "nuts_overhead.json")
    args = parser.parse_args()
    dim, num_train, num_warmup, num_samples = (100, 300, 300, 300) if args.quick else (500, 1000, 500, 500)
    data = make_spheres(jax.random.key(0), dim=dim, num_train=num_train, num_val=10)
    model = functools.partial(squared_logistic, **data.model_kwargs)
    options = dict(num_warmup=num_warmup, num_samples=num_samples, num_chains=1)
    results = {}

    # Alternate raw and ours and keep each one's fastest repeat, so neither pays for a one-time warm-up
    # of JAX or for a burst of load from elsewhere on the machine.
    raw_times, our_times = [], []
    for repeat in range(args.repeats):
        raw_draws, seconds = run_raw(data, num_warmup, num_samples, jax.random.key(1))
        raw_times.append(seconds)
        ours = ppl_uq.fit("nuts", model, data.train, rng_key=jax.random.key(1), **options)
        our_times.append(ours.cost["fit_seconds"])
        print(f"repeat {repeat}: raw {raw_times[-1]:.2f}s, ours {our_times[-1]:.2f}s", flush=True)
    results["raw_numpyro"] = ess_per_second(raw_draws, min(raw_times))
    results["ours_nuts"] = ess_per_second(ours.draws, min(our_times))
    results["raw_numpyro"]["all_seconds"] = raw_times
    results["ours_nuts"]["all_seconds"] = our_times
    results["ours_nuts"]["grad_evals_sampling"] = ours.cost["grad_evals_sampling"]

    if not args.skip_pyro:
        theirs = ppl_uq.fit("pyro-nuts", model, data.train, rng_key=jax.random.key(1), **options)
        results["pyro_nuts"] = ess_per_second(theirs.draws, theirs.cost["fit_seconds"])
        print("pyro", results["pyro_nuts"], flush=True)

    ratios = {
        "ours_over_raw_min_ess_per_s": results["ours_nuts"]["min_ess_per_s"] / results["raw_numpyro"]["min_ess_per_s"],
        "ours_over_raw_median_ess_per_s": results["ours_nuts"]["median_ess_per_s"] / results["raw_numpyro"]["median_ess_per_s"],
        "ours_over_raw_seconds": results["ours_nuts"]["seconds"] / results["raw_numpyro"]["seconds"],
    }
    if "pyro_nuts" in results:
        ratios["numpyro_over_pyro_min_ess_per_s"] = results["ours_nuts"]["min_ess_per_s"] / results["pyro_nuts"]["min_ess_per_s"]
        ratios["numpyro_over_pyro_median_ess_per_s"] = results["ours_nuts"]["median_ess_per_s"] / results["pyro_nuts"]["median_ess_per_s"]
    write_result(args.out, {
        "benchmark": "nuts_overhead", "quick": args.quick, "dim": dim, "num_train": num_train,
        "num_warmup": num_warmup, "num_samples": num_samples, "results": results, "ratios": ratios,
        "note": "ours and raw get the same key and the same arithmetic, so they draw the same chain up to "
                "float round-off: their ESS agree and the ratio measures the toolkit's overhead in time",
    })


if __name__ == "__main__":
    main()
