"""Cells: units of work with an identity, and the keys and fingerprints derived from it.

A cell's identity is everything that determines its numbers: the experiment, the model (name and
hyper-parameters), the backend and its options, the data spec, the seed, the harness settings, and the
fingerprints of the cells it reads (``inputs``). Its fingerprint is the sha256 of the identity's canonical
JSON; its ``rng_key`` folds the first 32 bits of that hash into ``jax.random.key(seed)``. A cell's key
therefore never depends on where it sits in a list: adding, removing or reordering cells leaves every
other cell's numbers unchanged, and changing one setting changes exactly the cells whose identity holds
it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Mapping

#: Cell names become directory names: letters, digits, ``.``, ``_``, ``-`` (and not starting with ``.``).
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


def canonical(value: Any, where: str = "cell") -> Any:
    """``value`` as plain JSON types (dict with str keys, list, str, int, float, bool, None).

    Tuples become lists, NumPy scalars and arrays their Python values. Raises ``TypeError`` naming the
    place of anything else (a function, an object) and ``ValueError`` for NaN or infinite floats, which
    have no canonical JSON.
    """
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {key!r}")
            out[key] = canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return canonical(value.tolist(), where)
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} has no canonical JSON; use a finite number or a string")
        return value
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-able; describe it by name and settings")


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, floats by ``repr``."""
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint_of(value: Any) -> str:
    """sha256 hex digest (64 characters) of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Cell:
    """One unit of work of an experiment.

    Attributes:
        experiment: the experiment's name (``"spheres"``).
        name: unique within a run; the cell's directory name (``[A-Za-z0-9._-]``).
        backend: the inference backend (or ``""`` for a cell that fits nothing, e.g. a transfer matrix).
        model: ``{"name": ..., **hyper-parameters}`` (JSON-able).
        options: the backend's options (JSON-able).
        data: the data spec, e.g. ``{"name": "spheres", "dim": 100, "num_train": 200}``.
        seed: the master seed; the cell's key is derived from it and the identity.
        harness: the harness settings the cell uses (JSON-able).
        inputs: names of the cells whose stored results this cell reads (run before it).
        extra: anything else that changes the cell's numbers (profile sizes, a code version).
    """

    experiment: str
    name: str
    backend: str = ""
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    harness: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"cell name must match {_NAME.pattern} (it names a directory), got {self.name!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"cell {self.name}: seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.name in self.inputs:
            raise ValueError(f"cell {self.name} lists itself among its inputs")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        canonical(self.identity(), f"cell {self.name}")  # fail now, not on a worker

    def identity(self, input_fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The JSON-able identity (the name is a label, not part of it; the inputs enter by fingerprint)."""
        identity = {
            "experiment": self.experiment,
            "backend": self.backend,
            "model": dict(self.model),
            "options": dict(self.options),
            "data": dict(self.data),
            "seed": self.seed,
            "harness": dict(self.harness),
            "extra": dict(self.extra),
        }
        if self.inputs:
            known = input_fingerprints or {}
            identity["inputs"] = {name: known.get(name, "?") for name in sorted(self.inputs)}
        return identity

    def fingerprint(self, input_fingerprints: Mapping[str, str] | None = None) -> str:
        """sha256 of the identity's canonical JSON (64 hex characters)."""
        return fingerprint_of(self.identity(input_fingerprints))


def cell_key(cell: Cell, fingerprint: str | None = None) -> Any:
    """The cell's JAX key: ``fold_in(jax.random.key(cell.seed), first 32 bits of its fingerprint)``."""
    import jax

    digest = fingerprint or cell.fingerprint()
    return jax.random.fold_in(jax.random.key(cell.seed), int(digest[:8], 16))


def name_key(rng_key: Any, name: str) -> Any:
    """``rng_key`` folded with the first 32 bits of sha256(``name``): a sub-key per named thing (a model
    in a report), independent of the order in which the names come."""
    import jax

    return jax.random.fold_in(rng_key, int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16))


def check_cells(cells: Any) -> list[Cell]:
    """Validate a list of cells: unique names, known inputs, no cycles. Returns them in an order where
    every cell comes after its inputs (the given order otherwise)."""
    cells = list(cells)
    if not cells:
        raise ValueError("cells must be a non-empty list of Cell")
    for cell in cells:
        if not isinstance(cell, Cell):
            raise TypeError(f"cells must be Cell objects, got {type(cell).__name__}")
    names = [cell.name for cell in cells]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"cell names must be unique in a run; repeated: {duplicates}")
    by_name = {cell.name: cell for cell in cells}
    for cell in cells:
        missing = sorted(set(cell.inputs) - set(by_name))
        if missing:
            raise ValueError(f"cell {cell.name} reads {missing}, which are not cells of this run")
    ordered: list[Cell] = []
    placed: set[str] = set()
    while len(ordered) < len(cells):
        ready = [c for c in cells if c.name not in placed and set(c.inputs) <= placed]
        if not ready:
            raise ValueError(f"cells' inputs form a cycle among {sorted(set(by_name) - placed)}")
        ordered += ready
        placed |= {c.name for c in ready}
    return ordered
