"""Sanity checks that come back with an attack's results (after AutoAttack's checks and ART's security
curve), so a reader can tell a strong evaluation from a masked one.

- ``eps_zero_identity``: the attack at eps = 0 returns the input (max |x' - x| must be 0).
- ``unbounded``: the attack with an unlimited budget (the whole box, or ``unbounded_eps``) must drive a
  deterministic model (S = 1) to ~0 % robust accuracy (<= ``UNBOUNDED_MAX_ACCURACY``); for an ensemble the
  value is reported, and flagged the same way.
- ``iterative_vs_single_step``: PGD must do at least as well as FGSM at the same eps (robust accuracy no
  higher, up to ``ITERATIVE_SLACK``).
- ``n_grad_samples``: robust accuracy for each number of gradient draws per step (EOT), the curve that
  exposes gradient masking by stochasticity. ``overstatement`` is how much higher the weakest variant
  leaves robust accuracy than the strongest: an evaluation with that many gradient draws would overstate
  robustness by that much (seed 000: one gradient sample vs many). The check fails when the attack with
  all S draws (the one this harness reports) is weaker than some EOT variant by more than
  ``MASKING_GAP``: then the full objective's gradient is masked and EOT numbers should be reported.

Each check is a dict with its numbers and ``passed`` (bool); ``failed`` lists the names of failed checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from ._common import AttackResult, check_bounds, check_inputs
from .gradient import fgsm, pgd

UNBOUNDED_MAX_ACCURACY = 0.01
ITERATIVE_SLACK = 0.0
MASKING_GAP = 0.05


def sanity_checks(
    model: Any,
    x: Any,
    y: Any,
    *,
    eps: float,
    rng_key: jax.Array,
    norm: str = "linf",
    steps: int = 40,
    bounds: tuple[float, float] | None = None,
    unbounded_eps: float | None = None,
    n_grad_samples: Sequence[int | None] = (1, 10, None),
    objective: str = "exact",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Run the checks above with PGD / FGSM on ``(x, y)``.

    Args:
        model, x, y, norm, steps, objective, batch_size: as for ``pgd``.
        eps: the budget the evaluation reports at.
        rng_key: JAX key (split per check).
        bounds: optional box; the unbounded attack's budget is then the box's width (in L2: times sqrt(n)).
        unbounded_eps: budget for the unbounded check without a box (default: 100 x eps).
        n_grad_samples: EOT draw counts to compare; ``None`` means all S draws.
    Returns:
        dict with one entry per check (see the module docstring) and ``failed`` (list of names).
    """
    predictor, x, labels, _ = check_inputs(model, x, y)
    box = check_bounds(bounds, x)
    keys = jax.random.split(rng_key, 3 + len(n_grad_samples))
    common = dict(norm=norm, objective=objective, bounds=box, batch_size=batch_size)

    zero = pgd(predictor, x, labels, eps=0.0, steps=steps, rng_key=keys[0], **common)
    checks: dict[str, Any] = {
        "eps_zero_identity": {
            "max_abs_change": float(np.max(np.abs(zero.x_adv - x))),
            "passed": bool(np.array_equal(zero.x_adv, x)),
        }
    }

    if box is not None:
        width = box[1] - box[0]
        big = width if norm == "linf" else width * float(np.sqrt(x[0].size))
    else:
        big = 100.0 * eps if unbounded_eps is None else float(unbounded_eps)
    unbounded = pgd(predictor, x, labels, eps=big, steps=max(steps, 100), step_size=big / 20, rng_key=keys[1], **common)
    checks["unbounded"] = {
        "eps": big,
        "robust_accuracy": unbounded.robust_accuracy,
        "deterministic_model": predictor.num_draws == 1,
        "passed": unbounded.robust_accuracy <= UNBOUNDED_MAX_ACCURACY,
    }

    single = fgsm(predictor, x, labels, eps=eps, **common)
    iterative = pgd(predictor, x, labels, eps=eps, steps=steps, rng_key=keys[2], **common)
    checks["iterative_vs_single_step"] = {
        "eps": eps,
        "fgsm_robust_accuracy": single.robust_accuracy,
        "pgd_robust_accuracy": iterative.robust_accuracy,
        "passed": iterative.robust_accuracy <= single.robust_accuracy + ITERATIVE_SLACK,
    }

    curve = []
    for key, count in zip(keys[3:], n_grad_samples, strict=True):
        result = pgd(predictor, x, labels, eps=eps, steps=steps, n_grad_samples=count, rng_key=key, **common)
        curve.append({"n_grad_samples": "all" if count is None else int(count),
                      "robust_accuracy": result.robust_accuracy})
    accuracies = [point["robust_accuracy"] for point in curve]
    full = [point["robust_accuracy"] for point in curve if point["n_grad_samples"] == "all"]
    checks["n_grad_samples"] = {
        "eps": eps,
        "curve": curve,
        "overstatement": max(accuracies) - min(accuracies),
        "full_minus_best": (full[0] - min(accuracies)) if full else None,
        "passed": not full or full[0] - min(accuracies) <= MASKING_GAP,
    }
    checks["failed"] = [name for name, check in checks.items() if not check["passed"]]
    checks["s_eval"] = predictor.num_draws
    return checks


def with_sanity(result: AttackResult, checks: dict[str, Any]) -> AttackResult:
    """A copy of ``result`` carrying ``checks`` (from ``sanity_checks``) in its ``sanity`` field."""
    return dataclasses.replace(result, sanity=dict(checks))
