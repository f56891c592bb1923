"""Layer 3: the harness. Pure JAX functions of a posterior's ``log_prob_fn`` (x (N, ...) -> (S, N, C)),
jit-compiled and vmapped; nothing here knows which backend made the draws.

- ``predictive``: the posterior-predictive mean in log space and accuracy / avg. confidence / NLL.
- ``attacks``: FGSM, PGD (EOT), sphere, DeepFool, L-BFGS, min-norm, transfer matrix, sanity checks.
- ``uncertainty``: predictive / expected entropy, mutual information, predictive variance, max probability.
- ``calibration``: ECE (equal-width / equal-mass), MCE, NLL, Brier, reliability data (drawn in ``ppl_uq.report``).
- ``detection``: AUROC (misclassification, OOD, adversarial, balanced), FPR at 95 % TPR.
- ``density``: the class-conditional Gaussian density confidence of seed 002, the softmax scaling demo.
- ``corruptions`` / ``robustness``: Gaussian noise, blur, JPEG; corruption curves, failure counts,
  accuracy vs eps.
- ``attacks.sphere``: the Bekasov & Murray sphere attack (``sphere_attack``), adversarial and resampled error.

Every function takes a ``Posterior``, a callable x -> (S, N, C) or a ``Predictor`` (``predictive.py``),
which owns the compiled programs built on the model; a Posterior keeps its own (``as_predictor``).
"""

from .attacks.sphere import (
    SphereAttackResult,
    adversarial_error,
    resampled_error,
    robust_accuracy,
    sphere_attack,
)
from .calibration import (
    BINNING_RULES,
    ReliabilityData,
    brier_score,
    calibration_summary,
    confidence_and_correct,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_data,
)
from .corruptions import CORRUPTIONS, gaussian_blur, gaussian_noise, jpeg
from .density import (
    DEFAULT_COV_SCALE,
    DensityConfidence,
    density_confidence,
    density_log_posterior,
    fit_density_confidence,
    posterior_features,
    softmax_scaling_demo,
)
from .detection import (
    FPR_AT_TPR_CONVENTION,
    adversarial_auroc,
    auroc,
    balanced_adversarial_auroc,
    fpr_at_tpr,
    informative_groups,
    misclassification_auroc,
    ood_auroc,
)
from .evaluate import Evaluation, Suite, evaluate, transfer
from .lipschitz import ACTIVATION_LIPSCHITZ, lipschitz_bounds, spectral_norms
from .predictive import (
    DECISION_RULE,
    Predictor,
    as_predictor,
    ensemble_size_accuracy,
    evaluate_predictive,
    jensen_log_mean,
    predictive_log_mean,
    predictive_log_probs,
)
from .robustness import accuracy_vs_eps, corruption_curve, failure_count, failure_fraction
from .uncertainty import (
    HIGHER_MEANS,
    MEASURES,
    expected_entropy,
    max_predictive_variance,
    max_probability,
    mutual_information,
    predictive_entropy,
    predictive_variance,
    uncertainty_measures,
)
from .units import dense_hidden_activations, inspect_units, top_inputs

__all__ = [
    "dense_hidden_activations",
    "inspect_units",
    "top_inputs",
    "ACTIVATION_LIPSCHITZ",
    "lipschitz_bounds",
    "spectral_norms",
    "Evaluation",
    "Suite",
    "evaluate",
    "transfer",
    "BINNING_RULES",
    "CORRUPTIONS",
    "DECISION_RULE",
    "DEFAULT_COV_SCALE",
    "FPR_AT_TPR_CONVENTION",
    "HIGHER_MEANS",
    "MEASURES",
    "DensityConfidence",
    "Predictor",
    "ReliabilityData",
    "SphereAttackResult",
    "accuracy_vs_eps",
    "adversarial_auroc",
    "adversarial_error",
    "as_predictor",
    "auroc",
    "balanced_adversarial_auroc",
    "brier_score",
    "calibration_summary",
    "confidence_and_correct",
    "corruption_curve",
    "density_confidence",
    "density_log_posterior",
    "ensemble_size_accuracy",
    "evaluate_predictive",
    "expected_calibration_error",
    "expected_entropy",
    "failure_count",
    "failure_fraction",
    "fit_density_confidence",
    "fpr_at_tpr",
    "informative_groups",
    "gaussian_blur",
    "gaussian_noise",
    "jensen_log_mean",
    "jpeg",
    "max_predictive_variance",
    "max_probability",
    "maximum_calibration_error",
    "misclassification_auroc",
    "mutual_information",
    "negative_log_likelihood",
    "ood_auroc",
    "posterior_features",
    "predictive_entropy",
    "predictive_log_mean",
    "predictive_log_probs",
    "predictive_variance",
    "reliability_data",
    "resampled_error",
    "robust_accuracy",
    "softmax_scaling_demo",
    "sphere_attack",
    "uncertainty_measures",
]
