"""Attacks on a posterior predictive: every one takes a ``Posterior`` (or its ``Predictor``, or a
``log_prob_fn`` callable x -> (S, N, C)) and data, and returns an ``AttackResult`` judged by the decision
over S_eval draws. They share one vocabulary of objectives (``objectives.OBJECTIVES``: ``"exact"``,
``"jensen"``, ``"mean-logits"``, ``"logit-margin"``).

- ``fgsm``, ``pgd`` (L-infinity / L2, EOT via ``n_grad_samples``);
- ``sphere`` (Bekasov & Murray; ``sphere_attack`` returns its own ``SphereAttackResult`` with the paper's
  adversarial and resampled errors);
- ``deepfool`` (batched), ``lbfgs_attack`` (Szegedy's box-constrained minimum distortion),
  ``min_norm_attack`` (seed 004's gradient-descent minimum-norm attack);
- ``transfer_matrix`` (cross-model table with Gaussian-noise control rows), ``resampled_entry``;
- ``sanity_checks`` / ``with_sanity`` (eps = 0 identity, unbounded attack, iterative vs single step,
  robust accuracy vs n_grad_samples).
"""

from ._common import CONVENTIONS, AttackResult, Predictor, as_predictor, attack_result_from_examples
from .deepfool import deepfool
from .gradient import fgsm, pgd
from .lbfgs import DEFAULT_C_VALUES, lbfgs_attack
from .min_norm import OPTIMIZERS, min_norm_attack
from .objectives import OBJECTIVES, class_log_odds, point_objective
from .sanity import sanity_checks, with_sanity
from .sphere import SphereAttackResult, sphere, sphere_attack
from .transfer import TransferMatrix, resampled_entry, transfer_matrix

__all__ = [
    "CONVENTIONS",
    "DEFAULT_C_VALUES",
    "OBJECTIVES",
    "OPTIMIZERS",
    "AttackResult",
    "Predictor",
    "SphereAttackResult",
    "TransferMatrix",
    "as_predictor",
    "attack_result_from_examples",
    "class_log_odds",
    "deepfool",
    "fgsm",
    "lbfgs_attack",
    "min_norm_attack",
    "pgd",
    "point_objective",
    "resampled_entry",
    "sanity_checks",
    "sphere",
    "sphere_attack",
    "transfer_matrix",
    "with_sanity",
]
