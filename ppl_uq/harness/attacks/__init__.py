"""Attacks on a posterior predictive: every one takes a ``Posterior`` (or a ``log_prob_fn`` callable
x -> (S, N, C)) and data, and returns an ``AttackResult`` judged by the decision over S_eval draws."""

from ._common import CONVENTIONS, AttackResult, Predictor, as_predictor
from .deepfool import deepfool
from .gradient import fgsm, pgd, sphere
from .objectives import OBJECTIVES, class_log_odds, point_objective

__all__ = [
    "CONVENTIONS",
    "OBJECTIVES",
    "AttackResult",
    "Predictor",
    "as_predictor",
    "class_log_odds",
    "deepfool",
    "fgsm",
    "pgd",
    "point_objective",
    "sphere",
]
