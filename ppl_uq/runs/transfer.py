"""The transfer cell an experiment adds after its per-model cells: every model's stored PGD examples
scored by every stored posterior (``ppl_uq.harness.transfer``), with the payload the run report's harness
section reads (title, settings, conventions)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .execute import CellOutput


def transfer_output(names: Sequence[str], inputs: Mapping[str, Any], test: Any, suite: Any, *, rng_key: Any, title: str,
                    ood_points: Any, log: Callable[[str], None]) -> CellOutput:
    """The transfer cell's output from the stored cells ``inputs[name]`` for ``name`` in ``names``.

    Each stored cell must hold a ``"main"`` posterior, a record with ``"method"`` (the label) and
    ``"harness"`` (its harness record), and the harness arrays under ``harness/``; ``test`` is the
    ``(x, y)`` the harness attacked and ``suite`` its ``Suite``. Returns ``CellOutput({"transfer": ...,
    "payload": {"title", "settings", "conventions"}})``; ``ood_points`` goes into the settings as given.
    """
    from ..harness.evaluate import Evaluation, conventions, detection_result, transfer

    models, attacks = {}, {}
    for name in names:
        stored = inputs[name]
        label = stored.record["method"]
        models[label] = stored.posterior("main")
        arrays = {k[len("harness/"):]: v for k, v in stored.arrays.items() if k.startswith("harness/")}
        attacks[label] = detection_result(Evaluation(stored.record["harness"], arrays), test)
    log(f"transfer matrix: {len(attacks)} example sets x {len(models)} models")
    settings = {**suite.to_dict(), "detection_eps": suite.attack_eps, "ood_points": ood_points,
                "detection_attack": f"PGD {suite.norm} at eps = {suite.attack_eps:g}"}
    payload = {"title": title, "settings": settings, "conventions": conventions()}
    return CellOutput({"transfer": transfer(models, attacks, rng_key=rng_key, bounds=suite.bounds), "payload": payload})
