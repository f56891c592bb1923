"""Layer 4: validation of every backend the same way. Simulation-based calibration and VSBC (``sbc``),
Pareto-k-hat of approximations with a density (``pareto_k``, also in each such Posterior's diagnostics), and
the recovery table: how well each backend recovers a known posterior (``recovery``)."""

from ..inference._psis import pareto_k
from .recovery import RecoveryRow, recovery_row
from .sbc import DEFAULT_RANK_DRAWS, SBCResult, chi2_pvalue, prior_predictive, ranks_of, sbc, vsbc

__all__ = [
    "DEFAULT_RANK_DRAWS",
    "RecoveryRow",
    "SBCResult",
    "chi2_pvalue",
    "pareto_k",
    "prior_predictive",
    "ranks_of",
    "recovery_row",
    "sbc",
    "vsbc",
]
