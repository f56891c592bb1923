"""Bekasov & Murray, "Bayesian Adversarial Spheres", Table 1 — every inference method on one data set.

For each row: fit the model with the row's backend, score the posterior predictive on validation points
(average confidence, accuracy), attack validation points on their own sphere (adversarial error =
mean p̂(wrong | x*)), and score the same x* with an independently redrawn posterior of the same method
(resampled error). Writes ``table1.md``, ``table1.csv``, ``results.json`` and a figure to ``--out``;
each row is also cached in ``cells/ROW.json``, so a rerun with the same settings skips finished rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

#: The paper's Table 1 (avg. confidence, adv. err., resampled err.); None where it has no number.
PAPER_TABLE1: dict[str, tuple[float | None, float | None, float | None]] = {
    "map": (1.000, 0.999, None),
    "laplace": (0.501, 0.499, None),
    "bootstrap": (1.000, 0.961, 0.957),
    "slice": (0.976, 0.558, 0.205),
    "nuts": (0.976, 0.558, 0.205),
    "pyro-nuts": (0.976, 0.558, 0.205),
    "svi-fullrank": (0.991, 0.606, 0.516),
    "svi-hierarchical": (0.978, 0.678, 0.561),
    "mcmc-nonzero-mean": (1.000, 0.341, 0.301),
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes of one run. ``paper`` is the paper's scale; ``quick`` the same shape, smaller."""

    dim: int
    num_train: int
    num_val: int
    num_draws: int
    num_attack: int
    num_warmup: int
    attack_jensen_steps: int
    attack_max_steps: int
    svi_steps: int


PROFILES: dict[str, Profile] = {
    "quick": Profile(dim=100, num_train=200, num_val=5_000, num_draws=200, num_attack=100, num_warmup=300,
                     attack_jensen_steps=300, attack_max_steps=1_000, svi_steps=5_000),
    "paper": Profile(dim=500, num_train=1_000, num_val=100_000, num_draws=1_000, num_attack=1_000, num_warmup=500,
                     attack_jensen_steps=300, attack_max_steps=2_000, svi_steps=20_000),
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One method of the table: a backend, a model and the backend's options for a profile."""

    key: str
    label: str
    backend: str
    model: str
    options: Callable[[Profile], dict[str, Any]]
    point_estimate: bool = False


def _mcmc_options(profile: Profile) -> dict[str, Any]:
    return {"num_warmup": profile.num_warmup, "num_samples": profile.num_draws // 2, "num_chains": 2}


def _slice_options(profile: Profile) -> dict[str, Any]:
    # A sweep costs about half a NUTS iteration here, so slice runs twice the sweeps and keeps every second.
    # (NumPyro counts num_samples before thinning: 2 x num_draws/2 sweeps per chain, num_draws/2 kept.)
    return {**_mcmc_options(profile), "num_samples": profile.num_draws, "thinning": 2}


ROWS: tuple[Row, ...] = (
    Row("map", "MAP", "map", "standard", lambda p: {}, point_estimate=True),
    Row("laplace", "Laplace", "laplace", "standard", lambda p: {"num_samples": p.num_draws}),
    Row("bootstrap", "Bootstrap", "bootstrap", "standard", lambda p: {"num_members": p.num_draws}),
    Row("slice", "MCMC (slice)", "slice", "standard", _slice_options),
    Row("nuts", "MCMC (NUTS)", "nuts", "standard", _mcmc_options),
    Row("pyro-nuts", "MCMC (Pyro NUTS)", "pyro-nuts", "standard",
        lambda p: {"num_warmup": p.num_warmup, "num_samples": p.num_draws, "num_chains": 1}),
    Row("svi-fullrank", "SVI full-rank", "svi", "standard",
        lambda p: {"guide": "fullrank", "num_steps": p.svi_steps, "num_samples": p.num_draws}),
    Row("svi-hierarchical", "Hier. SVI", "svi", "hierarchical",
        lambda p: {"guide": "hierarchical", "num_steps": p.svi_steps, "num_samples": p.num_draws}),
    Row("mcmc-nonzero-mean", "MCMC (non-zero mean)", "slice", "nonzero-mean", _slice_options),
    Row("ml-mixture", "ML mixture (K=10)", "ml-mixture", "standard",
        lambda p: {"guide": "fullrank", "num_steps": p.svi_steps, "num_samples": p.num_draws, "num_particles": 10}),
    Row("deep-ensemble", "Deep ensemble", "deep-ensemble", "standard", lambda p: {"num_members": p.num_draws}),
)


def row_keys() -> list[str]:
    """Row identifiers in table order."""
    return [row.key for row in ROWS]


def select_rows(requested: Sequence[str] | None, profile_name: str) -> list[Row]:
    """Rows named in ``requested`` (row keys or backend names); all rows when None.

    The Pyro NUTS row is left out of ``quick`` unless asked for by name.
    """
    if not requested:
        return [r for r in ROWS if not (profile_name == "quick" and r.backend == "pyro-nuts")]
    known = set(row_keys()) | {r.backend for r in ROWS}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise ValueError(f"unknown --backends {unknown}; choose from rows {row_keys()} or backends {sorted({r.backend for r in ROWS})}")
    return [r for r in ROWS if r.key in requested or r.backend in requested]


def build_model(kind: str, data: Any) -> Callable[..., Any]:
    """The model declaration of a row, bound to the data's feature standardisation."""
    from ppl_uq import models

    declarations = {
        "standard": models.squared_logistic,
        "hierarchical": models.hierarchical_logistic,
        "nonzero-mean": models.nonzero_mean_logistic,
    }
    return functools.partial(declarations[kind], **data.model_kwargs)


class Progress:
    """Timestamped progress lines on stderr."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s] {message}", file=sys.stderr, flush=True)


def save_row_arrays(path: Path, posterior: Any, x_adv: Any, target: Any) -> None:
    """Cache a row's draws and its attack's examples (``.npz``, written atomically) for the harness report."""
    import numpy as np

    from ppl_uq.report.io import _atomic

    arrays = {f"draw/{name}": value for name, value in posterior.draws.items()}
    arrays.update(x_adv=np.asarray(x_adv), target=np.asarray(target))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    _atomic(path, write)


def load_row_arrays(path: Path, row: Row, data: Any) -> tuple[Any, Any, Any]:
    """``(posterior for scoring, x_adv, target)`` from ``save_row_arrays``'s file (no redraw function)."""
    import numpy as np

    from ppl_uq import Posterior

    with np.load(path) as arrays:
        draws = {key.split("/", 1)[1]: arrays[key] for key in arrays.files if key.startswith("draw/")}
        x_adv, target = arrays["x_adv"], arrays["target"]
    return Posterior(method=row.backend, model=build_model(row.model, data), draws=draws, options={}), x_adv, target


def run_row(row: Row, data: Any, profile: Profile, rng_key: Any, attack_step_size: float, say: Progress,
            arrays_path: Path | None = None) -> dict[str, Any]:
    """Fit, score, attack and resample one row; return its result record. With ``arrays_path``, also
    cache the draws and the attack's examples there (``save_row_arrays``)."""
    import jax
    import numpy as np

    import ppl_uq
    from ppl_uq.harness import evaluate_predictive, resampled_error, sphere_attack
    from ppl_uq.report import convergence_flags, mcmc_gate_flags

    key_fit, key_redraw = jax.random.split(rng_key)
    model = build_model(row.model, data)
    options = row.options(profile)
    say(f"{row.key}: fitting ({row.backend}, {options or 'defaults'})")
    posterior = ppl_uq.fit(row.backend, model, data.train, rng_key=key_fit, **options)
    fit_seconds = posterior.cost.get("fit_seconds", float("nan"))
    record: dict[str, Any] = {
        "method": row.label,
        "row": row.key,
        "backend": row.backend,
        "model": row.model,
        "options": posterior.options,
        "n_draws": posterior.num_samples,
        "fit_seconds": fit_seconds,
        "flags": [],
    }
    if posterior.is_mcmc:
        diagnostics = posterior.diagnostics()
        record.update(
            rhat_max=diagnostics["rhat_max"],
            ess_bulk_min=diagnostics["ess_bulk_min"],
            divergences=diagnostics["divergences"],
        )
        record["flags"] += mcmc_gate_flags(diagnostics)
    record["flags"] += convergence_flags(posterior.info)
    say(f"{row.key}: fitted in {fit_seconds:.1f}s; scoring {len(data.y_val)} validation points")
    log_prob_fn = posterior.log_prob_fn()
    scores = evaluate_predictive(log_prob_fn, data.x_val, data.y_val)
    record.update(avg_confidence=scores["avg_confidence"], val_accuracy=scores["accuracy"], val_nll=scores["nll"])

    x0, y0 = data.x_val[: profile.num_attack], data.y_val[: profile.num_attack]
    say(f"{row.key}: attacking {len(y0)} points (S={posterior.num_samples})")
    start = time.perf_counter()
    # The attack only needs class differences, so it takes the logits (same attack, skips a log-softmax).
    attack = sphere_attack(
        posterior.logits, x0, y0, step_size=attack_step_size,
        jensen_steps=profile.attack_jensen_steps, max_steps=profile.attack_max_steps,
    )
    if arrays_path is not None:
        save_row_arrays(arrays_path, posterior, attack.x_adv, attack.target)
    p_wrong = np.asarray(attack.p_wrong)
    record.update(
        adv_error=float(p_wrong.mean()),
        attack_success=float(np.mean(p_wrong > 0.5)),
        attack_seconds=time.perf_counter() - start,
        attack_steps_mean=float(np.mean(attack.steps)),
        attack_radius_drift=float(attack.radius_drift),
        p_wrong_at_attacks=p_wrong.tolist(),
    )
    if row.point_estimate:
        record["resampled_error"] = None
    else:
        say(f"{row.key}: redrawing an independent posterior for the resampled error")
        second = posterior.redraw(key_redraw)
        record["resampled_error"] = float(resampled_error(second.log_prob_fn(), attack.x_adv, y0))
        record["redraw_fit_seconds"] = second.cost.get("fit_seconds")
    paper = PAPER_TABLE1.get(row.key, (None, None, None))
    record.update(paper_avg_confidence=paper[0], paper_adv_error=paper[1], paper_resampled_error=paper[2])
    return record


TABLE_COLUMNS = [
    ("method", "method"),
    ("avg_confidence", "avg. conf. ↑"),
    ("paper_avg_confidence", "paper"),
    ("adv_error", "adv. err. ↓"),
    ("paper_adv_error", "paper"),
    ("resampled_error", "resampled err. ↓"),
    ("paper_resampled_error", "paper"),
    ("val_accuracy", "val. acc."),
    ("n_draws", "draws"),
    ("fit_seconds", "fit s"),
    ("rhat_max", "R-hat max"),
    ("ess_bulk_min", "min bulk ESS"),
    ("divergences", "div."),
    ("gate", "gate"),
]

CSV_KEYS = [
    "method", "row", "backend", "avg_confidence", "adv_error", "resampled_error", "val_accuracy", "val_nll",
    "attack_success", "n_draws", "fit_seconds", "attack_seconds", "rhat_max", "ess_bulk_min", "divergences",
    "paper_avg_confidence", "paper_adv_error", "paper_resampled_error", "gate",
]


def write_report(out: Path, records: list[dict[str, Any]], meta: dict[str, Any], *, harness: bool = False) -> None:
    """Write table1.md, table1.csv, results.json and p_wrong_at_attacks.png into ``out`` (atomically)."""
    from ppl_uq.report import atomic_write_json, atomic_write_text, csv_table, markdown_table, plot_distributions

    for record in records:
        record["gate"] = "; ".join(record["flags"]) if record["flags"] else "ok"
    flagged = [r for r in records if r["flags"]]
    lines = [
        "# Bayesian adversarial spheres — Table 1",
        "",
        f"Profile `{meta['profile']}`: D = {meta['dim']}, {meta['num_train']} training points, "
        f"{meta['num_val']} validation points, {meta['num_attack']} attacked points, seed {meta['seed']}. "
        f"Attack: projected normalised-gradient ascent on the starting sphere, step {meta['attack_step_size']}, "
        f"Jensen bound for {meta['attack_jensen_steps']} steps then the exact log p̂(wrong), at most "
        f"{meta['attack_max_steps']} steps, early stop after 10 steps without improvement "
        "(the paper's step 0.01 belongs to an update rule lost from its text; with our normalised steps, 0.01 "
        "needed ~8,700 steps to converge on the MAP at D = 500 and 0.05 ~1,900, to the same optimum).",
        "",
        "avg. conf. = mean over validation points of p̂(predicted class); adv. err. = mean p̂(wrong | x*) at the "
        "attacked points; resampled err. = the same x* scored by an independent second posterior of the same "
        "method. Decisions use the predictive mean over all S draws (S_eval = draws). `paper` columns: "
        "Bekasov & Murray Table 1 (its MCMC row is slice sampling; our NUTS and Pyro rows are compared with it).",
        "",
        markdown_table(records, TABLE_COLUMNS),
    ]
    if flagged:
        lines += ["**Gate failures** (R-hat > 1.01, divergences > 0, or an optimiser that did not converge): "
                  + ", ".join(f"{r['method']} ({r['gate']})" for r in flagged), ""]
    lines += ["![p(wrong class) at the attacked points](p_wrong_at_attacks.png)", ""]
    if harness:
        lines += ["The common harness report of the same posteriors (calibration, uncertainty measures, PGD "
                  "robustness curves, detection AUROC, the transfer matrix of these attacks across methods) is in "
                  "[harness/harness.md](harness/harness.md).", ""]
    atomic_write_text(out / "table1.md", "\n".join(lines))
    atomic_write_text(out / "table1.csv", csv_table(records, CSV_KEYS))
    atomic_write_json(out / "results.json", {"meta": meta, "records": records})
    plot_distributions(
        out / "p_wrong_at_attacks.png",
        {r["method"]: r["p_wrong_at_attacks"] for r in records},
        xlabel="p̂(wrong class | x*) at the attacked points",
        title=f"Adversarial spheres, D={meta['dim']}: how wrong each posterior is at its attacks",
    )


def _fingerprint(row: Row, profile: Profile, seed: int, step_size: float) -> str:
    fields = [row.key, row.backend, row.model, row.options(profile), dataclasses.asdict(profile), seed, step_size]
    payload = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run(profile_name: str, rows: Sequence[Row], seed: int, out: Path, *, attack_step_size: float = 0.05,
        profile: Profile | None = None, fresh: bool = False, harness: bool = True) -> list[dict[str, Any]]:
    """Run the table for ``rows`` and write the report to ``out`` (with the harness report in
    ``out/harness`` unless ``harness`` is False); return the records."""
    import jax

    from ppl_uq.data import make_spheres
    from ppl_uq.report import atomic_write_json

    profile = profile or PROFILES[profile_name]
    say = Progress()
    say(f"profile {profile_name}: {dataclasses.asdict(profile)}; JAX devices: {jax.local_device_count()}")
    master = jax.random.key(seed)
    data = make_spheres(jax.random.fold_in(master, 0), dim=profile.dim, num_train=profile.num_train, num_val=profile.num_val)
    records = []
    for row in rows:
        cell = out / "cells" / f"{row.key}.json"
        fingerprint = _fingerprint(row, profile, seed, attack_step_size)
        if cell.exists() and not fresh and (cell.with_suffix(".npz").exists() or not harness):
            cached = json.loads(cell.read_text())
            if cached.get("fingerprint") == fingerprint:
                say(f"{row.key}: finished in an earlier run with the same settings; reusing {cell}")
                records.append(cached["record"])
                continue
        row_key = jax.random.fold_in(master, 1 + row_keys().index(row.key))
        record = run_row(row, data, profile, row_key, attack_step_size, say, arrays_path=cell.with_suffix(".npz"))
        atomic_write_json(cell, {"fingerprint": fingerprint, "record": record})
        say(f"{row.key}: avg conf {record['avg_confidence']:.3f}, adv err {record['adv_error']:.3f}, "
            f"resampled {record['resampled_error'] if record['resampled_error'] is None else round(record['resampled_error'], 3)}")
        records.append(record)
    meta = {"profile": profile_name, "seed": seed, "attack_step_size": attack_step_size, **dataclasses.asdict(profile),
            "total_seconds": time.perf_counter() - say.start}
    if harness:
        say("harness report: calibration, uncertainty, PGD robustness, detection AUROC, transfer matrix")
        run_harness(out, rows, data, profile, jax.random.fold_in(master, 10_000), say)
    write_report(out, records, meta, harness=harness)
    say(f"wrote {out / 'table1.md'}, table1.csv, results.json, p_wrong_at_attacks.png"
        + (", harness/" if harness else ""))
    return records


#: L2 budgets of the PGD robustness curves on the spheres (the radii are 1 and 1.3).
HARNESS_EPS = (0.0, 0.05, 0.1, 0.2)
#: Validation points the harness report scores (calibration, uncertainty measures).
HARNESS_POINTS = 2_000


def run_harness(out: Path, rows: Sequence[Row], data: Any, profile: Profile, rng_key: Any, say: Progress) -> None:
    """The common harness report over every row (``ppl_uq.report.harness_report``) into ``out/harness``:
    reliability diagrams, uncertainty histograms, AUROC table, PGD-L2 robustness curves, and the transfer
    matrix of the sphere attack's examples across rows (Gaussian-noise control rows of matched sd)."""
    from ppl_uq.harness.attacks import attack_result_from_examples
    from ppl_uq.report.harness_report import harness_report

    models, attacks = {}, {}
    x0, y0 = data.x_val[: profile.num_attack], data.y_val[: profile.num_attack]
    for row in rows:
        posterior, x_adv, target = load_row_arrays(out / "cells" / f"{row.key}.npz", row, data)
        models[row.label] = posterior
        attacks[row.label] = attack_result_from_examples(posterior, x0, x_adv, y0, attack="sphere", target=target)
    count = min(HARNESS_POINTS, len(data.y_val))
    harness_report(models, (data.x_val[:count], data.y_val[:count]), out / "harness", rng_key=rng_key,
                   eps_values=HARNESS_EPS, norm="l2", steps=20, num_attack_points=profile.num_attack,
                   attack_results=attacks, title=f"Adversarial spheres, D={profile.dim}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the spheres experiment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--backends", nargs="*", default=None,
                        help=f"rows or backends to run (default: all). Rows: {', '.join(row_keys())}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/spheres"))
    parser.add_argument("--attack-step-size", type=float, default=0.05,
                        help="length of each normalised attack step (the paper: 0.01 with its own, lost, update rule)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached rows from earlier runs")
    parser.add_argument("--no-harness", action="store_true",
                        help="skip the common harness report (calibration, uncertainty, robustness, transfer)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-only smallest run
    return parser.parse_args(argv)


TINY = Profile(dim=8, num_train=60, num_val=200, num_draws=20, num_attack=10, num_warmup=30,
               attack_jensen_steps=5, attack_max_steps=15, svi_steps=100)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python experiments/adversarial_spheres.py`` and ``ppl-uq spheres``."""
    args = parse_args(argv)
    if args.attack_step_size <= 0:
        raise SystemExit("--attack-step-size must be > 0")
    rows = select_rows(args.backends, args.profile)
    from ppl_uq.experiments import enable_compilation_cache

    enable_compilation_cache()
    run(args.profile, rows, args.seed, args.out, attack_step_size=args.attack_step_size,
        profile=TINY if args.tiny else None, fresh=args.fresh, harness=not args.no_harness)
    return 0
