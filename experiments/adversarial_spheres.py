"""Bekasov & Murray, "Bayesian Adversarial Spheres", Table 1 — every inference method on one data set.

    python experiments/adversarial_spheres.py --profile quick
    python experiments/adversarial_spheres.py --profile paper --workers 2

One cell per method: fit the model with the method's backend, score the posterior predictive on
validation points (average confidence, accuracy), attack validation points on their own sphere
(adversarial error = mean p̂(wrong | x*)), score the same x* with an independently redrawn posterior of
the same method (resampled error), and run the common harness on the posterior (calibration, uncertainty,
PGD-L2 robustness, detection of the sphere attack's examples). A last cell reads them all for the transfer
matrix. The run directory holds every cell (record, arrays, posterior) and the rendered report:
``table1.md``, ``table1.csv``, ``results.json``, ``p_wrong_at_attacks.png``, ``harness/`` and the
self-contained ``report.html``. A rerun skips finished cells; ``ppl-uq report RUN_DIR`` re-renders.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from typing import Any, Callable, Sequence

from ppl_uq.runs import Cell, CellOutput
from ppl_uq.runs.cli import add_run_arguments, run_experiment

EXPERIMENT = "spheres"

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
#: The smallest run, for tests (``--tiny``).
TINY = Profile(dim=8, num_train=60, num_val=200, num_draws=20, num_attack=10, num_warmup=30,
               attack_jensen_steps=5, attack_max_steps=15, svi_steps=100)


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
ROWS_BY_KEY = {row.key: row for row in ROWS}
#: The model declarations of the rows, by the name a cell records.
MODEL_KINDS = {"standard": "squared_logistic", "hierarchical": "hierarchical_logistic", "nonzero-mean": "nonzero_mean_logistic"}

#: L2 budgets of the harness's PGD robustness curves (the radii are 1 and 1.3), its points and steps.
HARNESS_EPS = (0.0, 0.05, 0.1, 0.2)
HARNESS_POINTS = 2_000
HARNESS_STEPS = 20


def select_rows(requested: Sequence[str] | None) -> list[Row]:
    """Rows named in ``requested`` (row keys or backend names); when None, every row but Pyro NUTS, which
    runs only when asked for by name (at the paper's scale its fit and redraw take 20+ minutes, longer
    than all other rows together)."""
    if not requested:
        return [r for r in ROWS if r.backend != "pyro-nuts"]
    known = set(ROWS_BY_KEY) | {r.backend for r in ROWS}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise ValueError(f"unknown --backends {unknown}; choose from rows {list(ROWS_BY_KEY)} or backends "
                         f"{sorted({r.backend for r in ROWS})}")
    return [r for r in ROWS if r.key in requested or r.backend in requested]


# -- cells ----------------------------------------------------------------------------------------
def make_cells(rows: Sequence[Row], profile: Profile, seed: int, *, attack_step_size: float, harness: bool) -> list[Cell]:
    """One cell per row (identity: backend, model, options, data, seed, attack and harness settings) and,
    with ``harness``, the ``transfer`` cell that reads them all."""
    data = {"name": "spheres", "dim": profile.dim, "num_train": profile.num_train, "num_val": profile.num_val}
    suite = {"eps_values": list(HARNESS_EPS), "norm": "l2", "steps": HARNESS_STEPS, "points": HARNESS_POINTS,
             "num_attack_points": profile.num_attack} if harness else {}
    attack = {"step_size": attack_step_size, "jensen_steps": profile.attack_jensen_steps,
              "max_steps": profile.attack_max_steps, "num_attack": profile.num_attack}
    cells = [Cell(EXPERIMENT, row.key, backend=row.backend, model={"name": MODEL_KINDS[row.model]},
                  options=row.options(profile), data=data, seed=seed, harness=suite,
                  extra={"attack": attack, "resampled": not row.point_estimate}) for row in rows]
    if harness:
        cells.append(Cell(EXPERIMENT, "transfer", data=data, seed=seed, harness=suite,
                          inputs=tuple(row.key for row in rows)))
    return cells


def spheres_data(cell: Cell) -> Any:
    """The cell's data set (the same for every cell with the same data spec and seed)."""
    import jax

    from ppl_uq.data import make_spheres

    spec = cell.data
    return make_spheres(jax.random.fold_in(jax.random.key(cell.seed), 0), dim=spec["dim"],
                        num_train=spec["num_train"], num_val=spec["num_val"])


def build_model(name: str, data: Any) -> Callable[..., Any]:
    """The model declaration ``name`` bound to the data's feature standardisation."""
    from ppl_uq import models

    return functools.partial(getattr(models, name), **data.model_kwargs)


def spheres_cell(cell: Cell, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """Compute one cell: a method's row, or the transfer matrix across rows."""
    data = spheres_data(cell)
    if cell.name == "transfer":
        return transfer_cell(cell, data, rng_key=rng_key, inputs=inputs, log=log)
    return row_cell(cell, data, rng_key=rng_key, log=log)


def row_cell(cell: Cell, data: Any, *, rng_key: Any, log: Callable[[str], None]) -> CellOutput:
    """Fit, score, attack, resample and (with harness settings) evaluate one method."""
    import warnings

    import jax
    import numpy as np

    import ppl_uq
    from ppl_uq.gates import posterior_gate_flags
    from ppl_uq.harness import Suite, evaluate, evaluate_predictive, resampled_error, sphere_attack
    from ppl_uq.harness.attacks import attack_result_from_examples
    from ppl_uq.inference import ConvergenceWarning

    row = ROWS_BY_KEY[cell.name]
    attack = cell.extra["attack"]
    key_fit, key_redraw, key_harness = jax.random.split(rng_key, 3)
    model = build_model(cell.model["name"], data)
    log(f"fitting ({row.backend}, {dict(cell.options) or 'defaults'})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # recorded in info, shown as a gate
        posterior = ppl_uq.fit(row.backend, model, data.train, rng_key=key_fit, **cell.options)
    record: dict[str, Any] = {"method": row.label, "row": row.key, "backend": row.backend, "model": row.model,
                              "options": posterior.options, "n_draws": posterior.num_samples,
                              "fit_seconds": posterior.cost.get("fit_seconds", float("nan")),
                              # scalars only: info may hold the fitted guide's arrays (MBs as JSON)
                              "info": {k: v for k, v in posterior.info.items()
                                       if isinstance(v, (bool, int, float, str, type(None)))}}
    record["flags"] = posterior_gate_flags(posterior)
    if posterior.is_mcmc:
        diagnostics = posterior.diagnostics()
        record.update(rhat_max=diagnostics["rhat_max"], ess_bulk_min=diagnostics["ess_bulk_min"],
                      divergences=diagnostics["divergences"])
    log(f"fitted in {record['fit_seconds']:.1f}s; scoring {len(data.y_val)} validation points")
    scores = evaluate_predictive(posterior.log_prob_fn(), data.x_val, data.y_val)
    record.update(avg_confidence=scores["avg_confidence"], val_accuracy=scores["accuracy"], val_nll=scores["nll"])

    count = attack["num_attack"]
    x0, y0 = data.x_val[:count], data.y_val[:count]
    log(f"attacking {count} points on their spheres (S={posterior.num_samples})")
    start = time.perf_counter()
    # The attack only needs class differences, so it takes the logits (same attack, skips a log-softmax).
    result = sphere_attack(posterior.logits, x0, y0, step_size=attack["step_size"],
                           jensen_steps=attack["jensen_steps"], max_steps=attack["max_steps"])
    p_wrong = np.asarray(result.p_wrong)
    record.update(adv_error=float(p_wrong.mean()), attack_success=float(np.mean(p_wrong > 0.5)),
                  attack_seconds=time.perf_counter() - start, attack_steps_mean=float(np.mean(result.steps)),
                  attack_radius_drift=float(result.radius_drift), p_wrong_at_attacks=p_wrong.tolist())
    if cell.extra["resampled"]:
        log("redrawing an independent posterior for the resampled error")
        second = posterior.redraw(key_redraw)
        record["resampled_error"] = float(resampled_error(second.log_prob_fn(), result.x_adv, y0))
        record["redraw_fit_seconds"] = second.cost.get("fit_seconds")
    else:
        record["resampled_error"] = None
    paper = PAPER_TABLE1.get(row.key, (None, None, None))
    record.update(paper_avg_confidence=paper[0], paper_adv_error=paper[1], paper_resampled_error=paper[2])
    arrays = {"x_adv": np.asarray(result.x_adv), "target": np.asarray(result.target)}
    if cell.harness:
        log("harness: calibration, uncertainty, PGD-L2 robustness, detection of the sphere attack's examples")
        examples = attack_result_from_examples(posterior, x0, result.x_adv, y0, attack="sphere", target=result.target)
        points = min(cell.harness["points"], len(data.y_val))
        suite = Suite(eps_values=tuple(cell.harness["eps_values"]), norm=cell.harness["norm"],
                      steps=cell.harness["steps"], num_attack_points=cell.harness["num_attack_points"])
        evaluation = evaluate(posterior, (data.x_val[:points], data.y_val[:points]), rng_key=key_harness,
                              suite=suite, attack_result=examples)
        record["harness"] = evaluation.record
        arrays.update({f"harness/{k}": v for k, v in evaluation.arrays.items()})
    return CellOutput(record, arrays, posteriors={"main": posterior})


def transfer_cell(cell: Cell, data: Any, *, rng_key: Any, inputs: dict[str, Any], log: Callable[[str], None]) -> CellOutput:
    """The transfer matrix of every row's sphere-attack examples, scored by every row's posterior."""
    from ppl_uq.harness.evaluate import Evaluation, conventions, detection_result, transfer

    points = min(cell.harness["points"], len(data.y_val))
    test = (data.x_val[:points], data.y_val[:points])
    models, attacks = {}, {}
    for name in cell.inputs:
        stored = inputs[name]
        label = stored.record["method"]
        models[label] = stored.posterior("main", model=build_model(MODEL_KINDS[ROWS_BY_KEY[name].model], data))
        arrays = {k[len("harness/"):]: v for k, v in stored.arrays.items() if k.startswith("harness/")}
        attacks[label] = detection_result(Evaluation(stored.record["harness"], arrays), test)
    log(f"transfer matrix: {len(attacks)} example sets x {len(models)} models")
    settings = {"eps_values": list(HARNESS_EPS), "norm": "l2", "steps": HARNESS_STEPS, "bounds": None,
                "num_bins": 15, "ood_points": None, "detection_attack": "sphere"}
    payload = {"title": f"Adversarial spheres, D={cell.data['dim']}", "settings": settings, "conventions": conventions()}
    return CellOutput({"transfer": transfer(models, attacks, rng_key=rng_key), "payload": payload})


# -- the report -----------------------------------------------------------------------------------
TABLE_COLUMNS = [
    ["method", "method"], ["avg_confidence", "avg. conf. ↑"], ["paper_avg_confidence", "paper"],
    ["adv_error", "adv. err. ↓"], ["paper_adv_error", "paper"], ["resampled_error", "resampled err. ↓"],
    ["paper_resampled_error", "paper"], ["val_accuracy", "val. acc."], ["n_draws", "draws"], ["fit_seconds", "fit s"],
    ["rhat_max", "R-hat max"], ["ess_bulk_min", "min bulk ESS"], ["divergences", "div."], ["gate", "gate"],
]
CSV_KEYS = ["method", "row", "backend", "avg_confidence", "adv_error", "resampled_error", "val_accuracy", "val_nll",
            "attack_success", "n_draws", "fit_seconds", "attack_seconds", "rhat_max", "ess_bulk_min", "divergences",
            "paper_avg_confidence", "paper_adv_error", "paper_resampled_error", "gate"]
GATE_KEYS = ["avg_confidence", "adv_error", "resampled_error", "val_accuracy", "val_nll"]


def report_declaration(rows: Sequence[Row], profile_name: str, profile: Profile, seed: int, attack_step_size: float,
                       *, harness: bool) -> dict[str, Any]:
    """The report's declaration for ``run.json`` (rendered by ``ppl_uq.report.render_run``)."""
    scale = ("the paper's scale" if profile_name == "paper" else
             "a smaller problem than the paper's (D = 500, 1,000 training points): a quick check that every "
             "method runs and shows the paper's pattern, not a reproduction of its numbers; gates may fail "
             "with so few draws or steps")
    intro = (
        f"Profile `{profile_name}` ({scale}): D = {profile.dim}, {profile.num_train} training points, "
        f"{profile.num_val} validation points, {profile.num_attack} attacked points, seed {seed}. "
        f"Attack: projected normalised-gradient ascent on the starting sphere, step {attack_step_size}, "
        f"Jensen bound for {profile.attack_jensen_steps} steps then the exact log p̂(wrong), at most "
        f"{profile.attack_max_steps} steps, early stop after 10 steps without improvement (the paper's step 0.01 "
        "belongs to an update rule lost from its text).\n\n"
        "avg. conf. = mean over validation points of p̂(predicted class); adv. err. = mean p̂(wrong | x\\*) at the "
        "attacked points; resampled err. = the same x\\* scored by an independent second posterior of the same "
        "method. Decisions use the predictive mean over all S draws (S_eval = draws). `paper` columns: Bekasov & "
        "Murray Table 1, D = 500 (its MCMC row is slice sampling; our NUTS and Pyro rows are compared with it). "
        "The gate column names what failed: R-hat > 1.01, divergences > 0, an optimiser that did not converge, "
        "or a NaN metric."
    )
    names = [row.key for row in rows]
    declaration: dict[str, Any] = {
        "title": "Bayesian adversarial spheres — Table 1",
        "intro": intro,
        "tables": [{"name": "table1", "title": f"Table 1 (profile {profile_name}, D = {profile.dim})",
                    "caption": f"Ours beside the paper's numbers (the paper: D = 500). Seed {seed}.",
                    "cells": names, "columns": TABLE_COLUMNS, "csv_keys": CSV_KEYS, "gate_keys": GATE_KEYS}],
        "distributions": [{"file": "p_wrong_at_attacks.png", "key": "p_wrong_at_attacks", "cells": names,
                           "xlabel": "p̂(wrong class | x*) at the attacked points",
                           "title": f"Adversarial spheres, D={profile.dim}: how wrong each posterior is at its attacks"}],
    }
    if harness:
        declaration["harness"] = {"cells": names, "transfer_cell": "transfer"}
    return declaration


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the spheres experiment."""
    parser = argparse.ArgumentParser(prog="adversarial_spheres.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_arguments(parser, experiment=EXPERIMENT)
    parser.add_argument("--backends", nargs="*", default=None,
                        help="rows or backends to run (default: every row but pyro-nuts, which runs only when named). "
                        f"Rows: {', '.join(ROWS_BY_KEY)}")
    parser.add_argument("--attack-step-size", type=float, default=0.05,
                        help="length of each normalised attack step (the paper: 0.01 with its own, lost, update rule)")
    parser.add_argument("--no-harness", action="store_true",
                        help="skip the common harness report (calibration, uncertainty, robustness, transfer)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-only smallest run
    args = parser.parse_args(argv)
    if args.attack_step_size <= 0:
        parser.error("--attack-step-size must be > 0")
    try:
        args.rows = select_rows(args.backends)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment (``python experiments/adversarial_spheres.py`` or ``ppl-uq run spheres``)."""
    args = parse_args(argv)
    profile = TINY if args.tiny else PROFILES[args.profile]
    harness = not args.no_harness
    cells = make_cells(args.rows, profile, args.seed, attack_step_size=args.attack_step_size, harness=harness)
    manifest = {"report": report_declaration(args.rows, "tiny" if args.tiny else args.profile, profile, args.seed,
                                             args.attack_step_size, harness=harness),
                "meta": {"profile": args.profile, "seed": args.seed, "attack_step_size": args.attack_step_size,
                         **dataclasses.asdict(profile)}}
    run_experiment(cells, spheres_cell, args, experiment=EXPERIMENT, manifest=manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
