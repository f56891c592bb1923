"""Transfer of adversarial examples between models: Szegedy et al.'s cross-model table (seed 001), with
Gaussian-noise control rows, and the resampled error as a special case.

Rows are sets of perturbed inputs: the adversarial examples of every attack result (one row per
source), then noise rows, Gaussian noise added to a source's clean inputs (clipped to ``bounds``):

- ``"matched"``: one row per source, noise of standard deviation equal to that source's perturbation,
  ``sd = sqrt(mean over all N points and n input dimensions of (x_adv - x)^2)`` (the root mean square
  about zero, the sd of zero-mean noise of the same energy, so the noise row's expected RMS distortion
  equals the source's; before clipping);
- a number: one row with that fixed sd (Szegedy's 0.1 and 0.3), on the clean inputs of the *first*
  source.

Columns are the scoring models. Entry (row, model) is that model's error rate on the row's inputs,
``1 - accuracy`` over all N points of the row, under the conventions of every attack result: a point is
correct only if the model's decision (argmax of its predictive mean over all its draws) is the true label
on both the clean and the perturbed input, so the model's own clean mistakes count as errors. On the
diagonal (a model scoring the examples made against it: same name in ``results`` and ``models``) the
entry is therefore exactly ``1 - robust_accuracy`` of the attack result. Szegedy's table scores the
perturbed inputs alone; the two differ only by points the scoring model gets wrong when clean and right
when perturbed.

Resampled error: scoring a source's examples on ``posterior.redraw(key)``, an independent posterior made
by the same method, is the diagonal entry with the model swapped for its redraw (the examples were not
made against the redraw's draws). ``resampled_entry(result, redrawn_model)`` returns that entry alone;
it is the decision-based version of ``sphere.resampled_error`` (which averages the wrong-class
probability instead).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from ..predictive import batches, check_point_labels, pad_rows
from ._common import AttackResult, Predictor, as_predictor, check_batch_size, check_bounds, check_positive

CONVENTION = (
    "error = 1 - accuracy over all N points of the row; a point is correct only if the scoring model's decision "
    "(argmax of its predictive mean over all its draws) is the true label on both the clean and the perturbed "
    "input (clean mistakes count as errors); the diagonal equals 1 - the attack's robust accuracy"
)


@dataclasses.dataclass(frozen=True)
class TransferMatrix:
    """Error rates of every scoring model (columns) on every set of perturbed inputs (rows).

    Attributes:
        row_names: (R,) the attack sources (the keys of ``results``), then the noise rows.
        column_names: (M,) the scoring models (the keys of ``models``).
        error: (R, M) error rate, ``1 - accuracy`` (see the module docstring for the convention).
        accuracy: (R, M) accuracy over all N points of the row.
        row_kinds: (R,) ``"adversarial"``, ``"noise-matched"`` or ``"noise"``.
        row_sources: (R,) the source whose clean inputs the row perturbs.
        row_sd: (R,) adversarial rows: the root mean square of x_adv - x over all entries; noise rows: the
            noise's standard deviation (before clipping).
        row_rms_distortion: (R,) mean over the row's points of sqrt(sum (x' - x)^2 / n) as realised (after
            clipping), Szegedy's "Av. distortion" column.
        num_points: (R,) points in each row.
        settings: the noise settings, bounds and the convention.
    """

    row_names: tuple[str, ...]
    column_names: tuple[str, ...]
    error: np.ndarray
    accuracy: np.ndarray
    row_kinds: tuple[str, ...]
    row_sources: tuple[str, ...]
    row_sd: np.ndarray
    row_rms_distortion: np.ndarray
    num_points: np.ndarray
    settings: dict[str, Any]

    def entry(self, row: str, column: str) -> float:
        """The error rate of model ``column`` on row ``row``."""
        return float(self.error[self.row_names.index(row), self.column_names.index(column)])

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-ready)."""
        return {
            "row_names": list(self.row_names),
            "column_names": list(self.column_names),
            "error": self.error.tolist(),
            "accuracy": self.accuracy.tolist(),
            "row_kinds": list(self.row_kinds),
            "row_sources": list(self.row_sources),
            "row_sd": self.row_sd.tolist(),
            "row_rms_distortion": self.row_rms_distortion.tolist(),
            "num_points": self.num_points.tolist(),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TransferMatrix":
        """The matrix that ``to_dict`` wrote (a stored record read back)."""
        return cls(row_names=tuple(data["row_names"]), column_names=tuple(data["column_names"]),
                   error=np.asarray(data["error"], float), accuracy=np.asarray(data["accuracy"], float),
                   row_kinds=tuple(data["row_kinds"]), row_sources=tuple(data["row_sources"]),
                   row_sd=np.asarray(data["row_sd"], float), row_rms_distortion=np.asarray(data["row_rms_distortion"], float),
                   num_points=np.asarray(data["num_points"]), settings=dict(data["settings"]))

    def to_markdown(self, digits: int = 1) -> str:
        """A Markdown table: error rates in percent, one row per example set, plus the average distortion."""
        header = ["examples \\ scored by", *self.column_names, "av. distortion (rms)"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i, name in enumerate(self.row_names):
            cells = [f"{100 * value:.{digits}f} %" for value in self.error[i]]
            lines.append("| " + " | ".join([name, *cells, f"{self.row_rms_distortion[i]:.3f}"]) + " |")
        return "\n".join(lines)


def _decisions(predictor: Predictor, x: np.ndarray, batch_size: int) -> np.ndarray:
    """(N,) argmax of the predictive mean, in the padded chunks ``predictive_log_probs`` uses."""
    compute = predictor.predictive()
    size = min(batch_size, x.shape[0])
    out = np.empty(x.shape[0], np.int64)
    for start, stop in batches(x.shape[0], size):
        out[start:stop] = np.argmax(np.asarray(compute(pad_rows(x[start:stop], size)))[: stop - start], axis=1)
    return out


def _check_results(results: Any) -> dict[str, AttackResult]:
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict {source name: AttackResult}")
    shape = None
    for name, result in results.items():
        if not isinstance(name, str):
            raise TypeError(f"results keys must be strings (source names), got {name!r}")
        if not isinstance(result, AttackResult):
            raise TypeError(f"results[{name!r}] must be an AttackResult, got {type(result).__name__}")
        if result.x.shape != result.x_adv.shape:
            raise ValueError(f"results[{name!r}]: x {result.x.shape} and x_adv {result.x_adv.shape} differ in shape")
        if shape is None:
            shape, first = result.x.shape[1:], name
        elif result.x.shape[1:] != shape:
            raise ValueError(
                f"results[{name!r}] has inputs of shape {result.x.shape[1:]}, results[{first!r}] {shape}: "
                "all sources must share one input shape"
            )
    return dict(results)


def _check_models(models: Any, x: np.ndarray) -> dict[str, Predictor]:
    """``{name: Predictor}`` after checking that every model scores inputs shaped like ``x``."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict {name: Posterior, Predictor or log_prob_fn}")
    checked = {}
    for name, model in models.items():
        if not isinstance(name, str):
            raise TypeError(f"models keys must be strings, got {name!r}")
        try:
            predictor = as_predictor(model, x[:1])
        except (TypeError, ValueError) as err:
            raise ValueError(f"models[{name!r}] cannot score inputs of shape {x.shape[1:]}: {err}") from None
        checked[name] = predictor
    return checked


def _check_noise_sds(noise_sds: Any) -> list[Any]:
    if isinstance(noise_sds, str):
        noise_sds = (noise_sds,)
    try:
        entries = list(noise_sds)
    except TypeError:
        raise ValueError(f"noise_sds must be a sequence of numbers > 0 and/or 'matched', got {noise_sds!r}") from None
    return [entry if entry == "matched" else check_positive("noise_sds entry", entry) for entry in entries]


def _accuracy_points(predictor: Predictor, clean_decision: np.ndarray, x_perturbed: np.ndarray, y: np.ndarray,
                     batch_size: int) -> np.ndarray:
    """(N,) bool: correct on the clean input (given) and on the perturbed one."""
    return (clean_decision == y) & (_decisions(predictor, x_perturbed, batch_size) == y)


def _rms(delta: np.ndarray) -> tuple[float, float]:
    """(root mean square over all entries, mean over points of per-point rms) of ``delta`` (N, ...)."""
    flat = delta.reshape(len(delta), -1).astype(np.float64)
    return float(np.sqrt(np.mean(flat**2))), float(np.mean(np.sqrt(np.mean(flat**2, axis=1))))


def transfer_matrix(
    results: Mapping[str, AttackResult],
    models: Mapping[str, Any],
    *,
    noise_sds: Sequence[float | str] = ("matched",),
    rng_key: jax.Array | None = None,
    bounds: tuple[float, float] | None = None,
    batch_size: int | None = None,
) -> TransferMatrix:
    """Error rate of every model on the adversarial examples of every source, plus noise control rows.

    Args:
        results: ``{source name: AttackResult}``; a source whose name is also a key of ``models`` gives a
            diagonal entry (that model scoring the examples made against it).
        models: ``{name: Posterior, Predictor or callable x (N, ...) -> (S, N, C)}``, the scoring models
            (columns).
        noise_sds: noise rows, each ``"matched"`` (one row per source, sd of its perturbation) or a fixed
            sd > 0 (one row on the first source's clean inputs); ``()`` for none.
        rng_key: JAX key for the noise (required when there are noise rows); row i uses ``fold_in(key, i)``.
        bounds: optional box ``(lo, hi)`` the noisy inputs are clipped to (e.g. ``(0, 1)`` for images).
        batch_size: points scored together; ``None`` scores each source's examples in chunks of that
            attack's own batch size, so the diagonal reproduces the attack's decisions exactly.
    Returns:
        a ``TransferMatrix`` with rows = sources then noise rows, columns = ``models``.
    """
    results = _check_results(results)
    first = next(iter(results.values()))
    scorers = _check_models(models, first.x)
    noise = _check_noise_sds(noise_sds)
    if noise and rng_key is None:
        raise ValueError("rng_key is required when noise_sds asks for noise rows")
    if batch_size is not None:
        batch_size = check_batch_size(batch_size)
    for name, result in results.items():
        for model_name, scorer in scorers.items():
            try:
                check_point_labels(result.y, len(result.y), scorer.num_classes)
            except ValueError as err:
                raise ValueError(f"results[{name!r}] labels do not fit models[{model_name!r}]: {err}") from None
        if bounds is not None:
            check_bounds(bounds, result.x)
    box = None if bounds is None else check_bounds(bounds, first.x)

    # rows: (name, kind, source, perturbed inputs, nominal sd); the clean inputs are the source's
    rows = []
    for name, result in results.items():
        sd, _ = _rms(result.x_adv - result.x)
        rows.append((name, "adversarial", name, result.x_adv, sd))
    for entry in noise:
        targets = list(results.items()) if entry == "matched" else [next(iter(results.items()))]
        for source, result in targets:
            sd = _rms(result.x_adv - result.x)[0] if entry == "matched" else entry
            key = jax.random.fold_in(rng_key, len(rows))
            noisy = result.x + sd * np.asarray(jax.random.normal(key, result.x.shape), result.x.dtype)
            if box is not None:
                noisy = np.clip(noisy, box[0], box[1])
            kind = "noise-matched" if entry == "matched" else "noise"
            label = f"gaussian noise sd={sd:.3g}" + (f" (matched to {source})" if entry == "matched" else "")
            rows.append((label, kind, source, noisy.astype(result.x.dtype), sd))

    clean_decisions: dict[tuple[str, str], np.ndarray] = {}
    accuracy = np.empty((len(rows), len(scorers)))
    for i, (_, _, source, perturbed, _) in enumerate(rows):
        result = results[source]
        size = batch_size if batch_size is not None else int(result.settings.get("batch_size", 1000))
        for j, (model_name, scorer) in enumerate(scorers.items()):
            if (source, model_name) not in clean_decisions:
                clean_decisions[source, model_name] = _decisions(scorer, result.x, size)
            accuracy[i, j] = np.mean(
                _accuracy_points(scorer, clean_decisions[source, model_name], perturbed, result.y, size))

    return TransferMatrix(
        row_names=tuple(row[0] for row in rows),
        column_names=tuple(scorers),
        error=1.0 - accuracy,
        accuracy=accuracy,
        row_kinds=tuple(row[1] for row in rows),
        row_sources=tuple(row[2] for row in rows),
        row_sd=np.array([row[4] for row in rows], np.float64),
        row_rms_distortion=np.array([_rms(row[3] - results[row[2]].x)[1] for row in rows], np.float64),
        num_points=np.array([len(results[row[2]].y) for row in rows]),
        settings={"noise_sds": [str(entry) if entry == "matched" else entry for entry in noise], "bounds": box,
                  "batch_size": batch_size, "convention": CONVENTION},
    )


def resampled_entry(result: AttackResult, redrawn_model: Any, *, batch_size: int | None = None) -> float:
    """The resampled error: the error rate of ``redrawn_model`` (e.g. ``posterior.redraw(key)``, its
    ``Predictor`` or its ``log_prob_fn()``) on ``result``'s adversarial examples, under ``transfer_matrix``'s convention (the
    diagonal entry with the source model swapped for its redraw). Returns a float in [0, 1]."""
    results = _check_results({"source": result})
    scorers = _check_models({"redrawn": redrawn_model}, result.x)
    scorer = scorers["redrawn"]
    check_point_labels(results["source"].y, len(result.y), scorer.num_classes)
    size = check_batch_size(batch_size) if batch_size is not None else int(result.settings.get("batch_size", 1000))
    clean = _decisions(scorer, result.x, size)
    return float(1.0 - np.mean(_accuracy_points(scorer, clean, result.x_adv, result.y, size)))
