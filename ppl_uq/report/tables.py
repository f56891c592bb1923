"""Comparison tables from result records: markdown and CSV, with gate flags shown, not hidden."""

from __future__ import annotations

import csv
import io
import math
import numbers
from typing import Any, Iterable, Mapping, Sequence

from ..gates import RHAT_GATE, convergence_flags, mcmc_gate_flags  # noqa: F401 (re-exported)


def _non_finite_text(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _is_float(value: Any) -> bool:
    """True for Python and NumPy floats (real, not integral, not bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral))


def format_value(value: Any, digits: int = 3) -> str:
    """Return ``value`` as table text: floats to ``digits`` decimals; None (not applicable) as an em dash;
    NaN as "NaN" and infinities as "inf" / "-inf" (a failed computation, never hidden as a dash);
    everything else via str()."""
    if value is None:
        return "—"
    if _is_float(value):
        value = float(value)
        return f"{value:.{digits}f}" if math.isfinite(value) else _non_finite_text(value)
    return str(value)


def nan_flags(record: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """Return a gate flag for every non-finite float among ``record[key]`` for ``keys``, in key order:
    "NaN in ece", "inf in nll", "-inf in ..." (missing keys and None are not flagged); [] when all are finite."""
    flags = []
    for key in keys:
        value = record.get(key)
        if _is_float(value) and not math.isfinite(float(value)):
            flags.append(f"{_non_finite_text(float(value))} in {key}")
    return flags


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
