"""Gates: whether a posterior can be trusted, read from its diagnostics and its optimiser's record.

A failed gate is a short sentence; an empty list means the posterior passed. The harness writes these
into its records and the reports show them beside the numbers, so a failure is never hidden.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: R-hat above this, or any divergence, fails an MCMC result's gate.
RHAT_GATE = 1.01


def mcmc_gate_flags(diagnostics: Mapping[str, Any]) -> list[str]:
    """Return the failed gates of an MCMC result (empty when it passes): R-hat > 1.01, divergences > 0,
    and R-hat that could not be computed (a single chain), which cannot pass the gate either."""
    flags = []
    rhat = diagnostics.get("rhat_max")
    if rhat is None or not math.isfinite(rhat):
        flags.append("R-hat not computed (one chain)")
    elif rhat > RHAT_GATE:
        flags.append(f"R-hat {rhat:.3f} > {RHAT_GATE}")
    divergences = diagnostics.get("divergences") or 0
    if divergences > 0:
        flags.append(f"{divergences} divergences")
    return flags


#: PSIS k-hat above this: the importance weights p/q have too heavy a tail for the approximation q to be
#: trusted (Vehtari et al., "Pareto smoothed importance sampling").
PARETO_K_GATE = 0.7


def convergence_flags(info: Mapping[str, Any]) -> list[str]:
    """Return the failed optimiser gates recorded in a Posterior's ``info`` (empty when it passes): L-BFGS
    fits that stopped before the gradient tolerance (an ensemble's members, or Laplace's MAP), a loss
    still falling or that never left its start (``info["convergence_reason"]`` says which), and a
    degenerate optimum (``info["degenerate"]``, e.g. a scale driven to its boundary)."""
    flags = []
    if info.get("all_converged") is False:
        flags.append(f"{info['num_members'] - info['num_converged']} of {info['num_members']} L-BFGS fits not converged")
    elif info.get("map_converged") is False:
        norm = info.get("map_grad_norm")
        flags.append("MAP not converged" + (f" (gradient norm {norm:.3g})" if isinstance(norm, float) else ""))
    elif "all_converged" not in info and info.get("converged") is False:
        reason = info.get("convergence_reason")
        if isinstance(reason, str) and reason:
            flags.append(reason)
        else:
            drift = info.get("loss_drift")
            flags.append("loss still falling at the end" + (f" (drift {drift:.3g})" if isinstance(drift, float) else ""))
    if isinstance(info.get("degenerate"), str) and info["degenerate"]:
        flags.append(info["degenerate"])
    return flags


def posterior_gate_flags(model: Any) -> list[str]:
    """Failed gates of a Posterior (MCMC diagnostics, optimiser convergence, PSIS k-hat above 0.7, an
    ensemble whose members are all the same point); [] for a plain callable."""
    flags: list[str] = []
    if getattr(model, "is_mcmc", False):
        flags += mcmc_gate_flags(model.diagnostics())
    if hasattr(model, "info"):
        flags += convergence_flags(model.info)
    if getattr(model, "kind", None) in ("variational", "ensemble", "optimisation"):
        diagnostics = model.diagnostics()
        k_hat = diagnostics.get("pareto_k")
        if k_hat is not None and math.isfinite(k_hat) and k_hat > PARETO_K_GATE:
            flags.append(f"Pareto k-hat {k_hat:.2f} > {PARETO_K_GATE}")
        members = diagnostics.get("num_members", 0)
        if members > 1 and diagnostics.get("distinct_members") == 1:
            flags.append(f"all {members} ensemble members are the same point")
    return flags
