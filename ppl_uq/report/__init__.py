"""Layer 4 helpers: atomic writes, comparison tables and figures, and the harness report
(``harness_report``: the side-by-side comparison from any set of Posteriors and data)."""

from .figures import plot_distributions
from .harness_report import gate_flags, harness_report
from .io import atomic_savefig, atomic_write_json, atomic_write_text
from .tables import RHAT_GATE, convergence_flags, csv_table, format_value, markdown_table, mcmc_gate_flags

__all__ = [
    "RHAT_GATE",
    "atomic_savefig",
    "atomic_write_json",
    "atomic_write_text",
    "convergence_flags",
    "csv_table",
    "format_value",
    "gate_flags",
    "harness_report",
    "markdown_table",
    "mcmc_gate_flags",
    "plot_distributions",
]
