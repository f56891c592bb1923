"""How well a backend recovers a posterior whose moments are known (a conjugate model's closed form, or a
long NUTS run): the error of every coordinate's mean and sd in units of the reference posterior sd, with
the backend's k-hat and cost."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np

from ..posterior import Posterior
from .sbc import coordinates


class RecoveryRow(NamedTuple):
    """One backend on one model: ``mean_error`` max over coordinates of |mean - reference mean| / reference
    sd; ``sd_error`` max of |sd / reference sd - 1| (NaN for a point estimate); ``pareto_k`` (NaN when the
    backend has no density); ``seconds`` fit time; ``grad_evals`` where known (NaN otherwise); ``flags`` the
    failed gates."""

    backend: str
    mean_error: float
    sd_error: float
    pareto_k: float
    seconds: float
    grad_evals: float
    flags: list[str]


def recovery_row(posterior: Posterior, reference_mean: Mapping[str, Any], reference_sd: Mapping[str, Any]) -> RecoveryRow:
    """Compare ``posterior``'s latent draws with reference moments (site -> array of the site's shape)."""
    from ..gates import posterior_gate_flags

    draws = {name: posterior.flat_draws()[name] for name in reference_mean}
    per_coordinate = coordinates(draws, leading=1)
    means, sds = coordinates(dict(reference_mean)), coordinates(dict(reference_sd))
    mean_error = max(abs(float(np.mean(per_coordinate[c])) - float(means[c])) / float(sds[c]) for c in means)
    sd_error = float("nan") if posterior.num_samples < 2 else max(
        abs(float(np.std(per_coordinate[c])) / float(sds[c]) - 1.0) for c in means)
    cost = posterior.cost
    evals = cost.get("grad_evals", cost.get("grad_evals_sampling", float("nan")))
    return RecoveryRow(posterior.method, mean_error, sd_error, float(posterior.diagnostics().get("pareto_k", float("nan"))),
                       float(cost.get("fit_seconds", float("nan"))), float(evals), posterior_gate_flags(posterior))
