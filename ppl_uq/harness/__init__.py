"""Layer 3: the harness. Pure JAX functions of a posterior's ``log_prob_fn`` (x (N, D) -> (S, N, C)),
jit-compiled and vmapped; nothing here knows which backend made the draws.

- ``predictive``: the posterior-predictive mean in log space and accuracy / avg. confidence / NLL.
- ``sphere_attack``: the Bekasov & Murray sphere attack, adversarial and resampled error.
"""

from .predictive import (
    DECISION_RULE,
    evaluate_predictive,
    jensen_log_mean,
    predictive_log_mean,
    predictive_log_probs,
)
from .sphere_attack import (
    SphereAttackResult,
    adversarial_error,
    resampled_error,
    robust_accuracy,
    sphere_attack,
)

__all__ = [
    "DECISION_RULE",
    "SphereAttackResult",
    "adversarial_error",
    "evaluate_predictive",
    "jensen_log_mean",
    "predictive_log_mean",
    "predictive_log_probs",
    "resampled_error",
    "robust_accuracy",
    "sphere_attack",
]
