"""Comparison tables from result records: markdown and CSV, with gate flags shown, not hidden."""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping, Sequence

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


def convergence_flags(info: Mapping[str, Any]) -> list[str]:
    """Return the failed optimiser gates recorded in a Posterior's ``info`` (empty when it passes):
    L-BFGS fits that stopped before the gradient tolerance, an SVI loss still falling at the end."""
    flags = []
    if info.get("all_converged") is False:
        flags.append(f"{info['num_members'] - info['num_converged']} of {info['num_members']} L-BFGS fits not converged")
    elif "all_converged" not in info and info.get("converged") is False:
        drift = info.get("loss_drift")
        flags.append("loss still falling at the end" + (f" (drift {drift:.3g})" if isinstance(drift, float) else ""))
    return flags


def format_value(value: Any, digits: int = 3) -> str:
    """Numbers to ``digits`` decimals; None / NaN as an em dash; everything else via str()."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(records: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]], digits: int = 3) -> str:
    """A GitHub markdown table of ``records``; ``columns`` are (key, header) pairs."""
    header = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    rows = ["| " + " | ".join(format_value(r.get(k), digits) for k, _ in columns) + " |" for r in records]
    return "\n".join([header, rule, *rows]) + "\n"


def csv_table(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """CSV text of ``records`` with the given ``keys`` as columns (missing values empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(keys), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if record.get(k) is None else record.get(k)) for k in keys})
    return buffer.getvalue()
