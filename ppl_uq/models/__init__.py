"""Layer 1: models declared once as functions of a PPL handle, ``model(ppl, x, y=None, **hyper)``."""

from .conjugate import (
    linear_regression,
    linear_regression_exact_posterior,
    normal_mean,
    normal_mean_exact_posterior,
)
from .handles import PPLHandle, numpyro_handle, pyro_handle
from .logistic import hierarchical_logistic, nonzero_mean_logistic, squared_logistic
from .mlp import mlp_classifier

__all__ = [
    "PPLHandle",
    "hierarchical_logistic",
    "linear_regression",
    "linear_regression_exact_posterior",
    "mlp_classifier",
    "nonzero_mean_logistic",
    "normal_mean",
    "normal_mean_exact_posterior",
    "numpyro_handle",
    "pyro_handle",
    "squared_logistic",
]
