"""The harness report: the same side-by-side comparison from any set of Posteriors (or log_prob_fn
callables) and data, as a thin composition: ``ppl_uq.harness.evaluate`` each model, cross them with
``ppl_uq.harness.transfer``, store the record (``harness.json`` and ``harness_arrays.npz``), then render it
(``render_harness``), which needs nothing but what was stored.

Written to ``out``:
- ``harness.md`` and ``harness.html`` (self-contained): calibration table (accuracy, ECE equal-width /
  equal-mass, MCE, NLL, Brier), robustness table (accuracy vs eps for PGD), AUROC table
  (misclassification, OOD when given, balanced adversarial detection) per uncertainty measure, the
  transfer matrix, corruption curves (images only) and each model's gate flags, shown, not hidden;
- ``harness.json``: every number, with the conventions and settings; ``harness_arrays.npz``: per-point
  uncertainty measures and correctness (for the histograms);
- figures: ``robustness_curves.png``, ``reliability.png``, ``uncertainty_histograms.png``,
  ``transfer_heatmap.png`` and, with ``image_shape``, ``corruption_<name>.png``.

The decision rule everywhere is the argmax of the posterior-predictive mean over all S_eval draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from ..harness.attacks._common import AttackResult, as_predictor
from ..harness.attacks.transfer import TransferMatrix
from ..harness.calibration import ReliabilityData
from ..harness.evaluate import Evaluation, Suite, conventions, detection_result, evaluate, transfer
from ..harness.predictive import check_points
from ..runs.cells import name_key
from ..runs.store import npz_bytes
from .harness_figures import plot_heatmap, plot_reliability, plot_robustness_curves, plot_uncertainty_histograms
from .harness_markdown import harness_markdown
from .html import write_html_page
from .io import atomic_write, atomic_write_json, atomic_write_text, read_json

ARRAYS_FILE = "harness_arrays.npz"


def _check_models(models: Mapping[str, Any], x: np.ndarray) -> dict[str, Any]:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping {name: Posterior or log_prob_fn}")
    for name in models:
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        as_predictor(models[name], x)  # raises a clear error for anything else
    return dict(models)


def harness_report(
    models: Mapping[str, Any],
    test: tuple[Any, Any],
    out: str | Path,
    *,
    rng_key: jax.Array,
    eps_values: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
    detection_eps: float | None = None,
    norm: str = "linf",
    steps: int = 20,
    bounds: tuple[float, float] | None = None,
    ood: Any = None,
    num_attack_points: int | None = None,
    image_shape: tuple[int, ...] | None = None,
    corruptions: Sequence[str] = ("gaussian_noise", "gaussian_blur", "jpeg"),
    num_bins: int = 15,
    title: str = "Inference methods compared",
    batch_size: int = 256,
    attack_results: Mapping[str, AttackResult] | None = None,
    min_distortion_points: int = 0,
    sanity: bool = False,
    train: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate every model, store the record and render the report (see the module docstring).

    Args:
        models: ``{name: Posterior or callable x (N, ...) -> (S, N, C)}``, all on the same inputs.
        test: ``(x (N, ...), y (N,))`` test data.
        out: output directory (created).
        rng_key: JAX key; each model's evaluation uses ``name_key(rng_key, name)`` (independent of order).
        eps_values, detection_eps, norm, steps, bounds, num_attack_points, image_shape, corruptions,
            num_bins, batch_size, min_distortion_points, sanity: the ``Suite`` (``ppl_uq.harness.Suite``).
        ood: optional out-of-distribution inputs (M, ...) for OOD AUROC.
        title: the report's title.
        attack_results: optional ``{name: AttackResult}`` (one per model) used for adversarial detection
            and the transfer matrix instead of PGD at ``detection_eps``.
        train: optional ``(x_train, y_train)``: each model's density confidence (Subramanya et al.).
    Returns:
        the payload written to ``harness.json``.
    """
    suite = Suite(eps_values=tuple(eps_values), detection_eps=detection_eps, norm=norm, steps=steps, bounds=bounds,
                  num_attack_points=num_attack_points, image_shape=image_shape, corruptions=tuple(corruptions),
                  num_bins=num_bins, batch_size=batch_size, min_distortion_points=min_distortion_points, sanity=sanity)
    x = check_points(test[0], "test x")
    models = _check_models(models, x)
    if attack_results is not None and set(attack_results) != set(models):
        raise ValueError(f"attack_results must have one entry per model {sorted(models)}, got {sorted(attack_results)}")
    key_evaluate, key_transfer = jax.random.split(rng_key)
    evaluations = {
        name: evaluate(model, test, rng_key=name_key(key_evaluate, name), suite=suite, ood=ood, train=train,
                       attack_result=None if attack_results is None else attack_results[name])
        for name, model in models.items()
    }
    matrix = transfer(models, {name: detection_result(ev, test) for name, ev in evaluations.items()},
                      rng_key=key_transfer, bounds=suite.bounds)
    payload = harness_payload(evaluations, matrix, suite, title=title, ood_points=None if ood is None else len(ood))
    store_harness(out, payload, harness_arrays(evaluations))
    render_harness(out)
    return payload


def harness_payload(evaluations: Mapping[str, Evaluation], transfer_record: Mapping[str, Any], suite: Suite, *,
                    title: str, ood_points: int | None) -> dict[str, Any]:
    """The JSON-able report record: title, sizes, settings, conventions, one record per model and the transfer matrix."""
    records = {name: {"method": name, **ev.record} for name, ev in evaluations.items()}
    first = next(iter(records.values()))
    attacks = sorted({r["detection_attack"]["attack"] for r in records.values()})
    detection = (f"PGD {suite.norm} at eps = {suite.attack_eps:g}" if attacks and attacks[0].startswith("pgd")
                 else ", ".join(attacks))
    return {
        "title": title,
        "num_test_points": first["num_test_points"],
        "num_attack_points": first["num_attack_points"],
        "settings": {**suite.to_dict(), "detection_eps": suite.attack_eps, "ood_points": ood_points,
                     "detection_attack": detection},
        "conventions": conventions(),
        "models": records,
        "transfer": dict(transfer_record),
    }


def harness_arrays(evaluations: Mapping[str, Evaluation]) -> dict[str, np.ndarray]:
    """The per-point arrays the figures need: ``METHOD/measure/NAME`` and ``METHOD/correct``."""
    return {f"{name}/{key}": value for name, ev in evaluations.items() for key, value in ev.arrays.items()
            if key.startswith("measure/") or key == "correct"}


def store_harness(out: str | Path, payload: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``harness.json`` and ``harness_arrays.npz`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_json(out / "harness.json", payload)
    data = npz_bytes(arrays)
    atomic_write(out / ARRAYS_FILE, lambda tmp: Path(tmp).write_bytes(data))


def transfer_from_record(record: Mapping[str, Any]) -> TransferMatrix:
    """The ``TransferMatrix`` of its ``to_dict()`` record."""
    arrays = ("error", "accuracy", "row_sd", "row_rms_distortion", "num_points")
    tuples = ("row_names", "column_names", "row_kinds", "row_sources")
    return TransferMatrix(**{k: (np.asarray(v, float) if k in arrays else tuple(v) if k in tuples else dict(v))
                             for k, v in record.items()})


def reliability_from_record(record: Mapping[str, Any]) -> ReliabilityData:
    """The ``ReliabilityData`` of a stored reliability record (None entries masked)."""
    def masked(values: Any) -> np.ma.MaskedArray:
        array = np.array([np.nan if v is None else v for v in values], float)
        return np.ma.masked_invalid(array)

    return ReliabilityData(record["binning"], masked(record["lower"]), masked(record["upper"]),
                           np.asarray(record["counts"], np.int64), masked(record["mean_confidence"]),
                           masked(record["accuracy"]), int(record["num_points"]))


def render_harness(out: str | Path) -> str:
    """Re-render the harness report in ``out`` (figures, ``harness.md``, ``harness.html``) from the stored
    ``harness.json`` and ``harness_arrays.npz``, computing nothing; returns the Markdown."""
    out = Path(out)
    payload = read_json(out / "harness.json")
    with np.load(out / ARRAYS_FILE, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    records = payload["models"]
    transfer_matrix = transfer_from_record(payload["transfer"])
    title, norm = payload["title"], payload["settings"]["norm"]
    curves = {name: {"x": [p["eps"] for p in r["robustness"]], "y": [p["robust_accuracy"] for p in r["robustness"]]}
              for name, r in records.items()}
    plot_robustness_curves(out / "robustness_curves.png", curves, xlabel=f"eps ({norm})", title=f"{title}: PGD")
    plot_reliability(out / "reliability.png", {n: reliability_from_record(r["reliability"]) for n, r in records.items()},
                     title=f"{title}: reliability")
    measures = {n: {key.split("/", 2)[2]: value for key, value in arrays.items() if key.startswith(f"{n}/measure/")}
                for n in records}
    correct = {n: arrays[f"{n}/correct"] for n in records}
    plot_uncertainty_histograms(out / "uncertainty_histograms.png", measures, correct,
                                title=f"{title}: uncertainty, correct vs wrong")
    plot_heatmap(out / "transfer_heatmap.png", transfer_matrix.error, transfer_matrix.row_names,
                 transfer_matrix.column_names, title="Transfer: error rate (%)", xlabel="scored by",
                 ylabel="examples made against")
    _plot_corruptions(out, records, title)
    text = harness_markdown(payload, transfer_matrix)
    atomic_write_text(out / "harness.md", text)
    write_html_page(out / "harness.html", text, base_dir=out, title=title)
    return text


def _plot_corruptions(out: Path, records: Mapping[str, Any], title: str) -> None:
    corrupted = [r["corruptions"] for r in records.values() if "corruptions" in r]
    for corruption in corrupted[0] if corrupted else ():
        lines = {}
        for name, record in records.items():
            curve = record["corruptions"][corruption]
            lines[f"{name} accuracy"] = {"x": curve["levels"], "y": curve["measures"]["accuracy"]["values"]}
        plot_robustness_curves(out / f"corruption_{corruption}.png", lines, ylabel="accuracy",
                               xlabel=corrupted[0][corruption]["level_name"], title=f"{title}: {corruption}")
