"""Layer 4 helpers: atomic writes, comparison tables and figures, the harness report (``harness_report``:
the side-by-side comparison from any set of Posteriors and data) and self-contained HTML pages of a
report's Markdown (``write_html_page``). Rendering only; every number is computed in ``ppl_uq.harness``."""

from .figures import plot_distributions
from .harness_figures import plot_reliability
from .harness_report import harness_report, render_harness
from .html import external_references, markdown_to_html_page, write_html_page
from .io import atomic_savefig, atomic_write_json, atomic_write_text, read_json
from .tables import (
    RHAT_GATE,
    convergence_flags,
    csv_table,
    format_value,
    markdown_table,
    mcmc_gate_flags,
    nan_flags,
)

__all__ = [
    "RHAT_GATE",
    "atomic_savefig",
    "atomic_write_json",
    "atomic_write_text",
    "convergence_flags",
    "csv_table",
    "external_references",
    "format_value",
    "harness_report",
    "markdown_table",
    "markdown_to_html_page",
    "mcmc_gate_flags",
    "nan_flags",
    "plot_distributions",
    "plot_reliability",
    "render_harness",
    "read_json",
    "write_html_page",
]
