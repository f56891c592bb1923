"""Layer 1: models declared once as functions of a PPL handle, ``model(ppl, x, y=None, **hyper)``."""

from typing import Any, Callable

from .autoencoder import autoencoder_classifier
from .bnn import ACTIVATIONS, bnn_mlp
from .conjugate import (
    linear_regression,
    linear_regression_exact_posterior,
    normal_mean,
    normal_mean_exact_posterior,
    normal_precision,
    normal_precision_exact_posterior,
)
from .handles import PPLHandle, numpyro_handle, pyro_handle
from .logistic import hierarchical_logistic, nonzero_mean_logistic, squared_logistic
from .mlp import mlp_classifier
from .priors import PRIORS, iid_gaussian, matrix_normal, prior_distribution, scale_mixture
from .registry import model_from_identity, model_identity

#: The model zoo by name: a saved posterior of one of these (or of a ``functools.partial`` of one with plain
#: keyword hyper-parameters) rebuilds its model when loaded (``ppl_uq.models.registry``).
MODELS: dict[str, Callable[..., Any]] = {
    "squared_logistic": squared_logistic,
    "hierarchical_logistic": hierarchical_logistic,
    "nonzero_mean_logistic": nonzero_mean_logistic,
    "mlp_classifier": mlp_classifier,
    "bnn_mlp": bnn_mlp,
    "autoencoder_classifier": autoencoder_classifier,
    "normal_mean": normal_mean,
    "linear_regression": linear_regression,
    "normal_precision": normal_precision,
}

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "PPLHandle",
    "PRIORS",
    "autoencoder_classifier",
    "bnn_mlp",
    "hierarchical_logistic",
    "iid_gaussian",
    "linear_regression",
    "linear_regression_exact_posterior",
    "matrix_normal",
    "mlp_classifier",
    "model_from_identity",
    "model_identity",
    "nonzero_mean_logistic",
    "normal_mean",
    "normal_mean_exact_posterior",
    "normal_precision",
    "normal_precision_exact_posterior",
    "numpyro_handle",
    "prior_distribution",
    "pyro_handle",
    "scale_mixture",
    "squared_logistic",
]
