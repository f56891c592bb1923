"""Data: generators and loaders the experiments use, and input validation."""

from .spheres import SpheresData, make_spheres, sample_spheres
from .validate import as_finite_array, check_dataset, check_labels

__all__ = [
    "SpheresData",
    "as_finite_array",
    "check_dataset",
    "check_labels",
    "make_spheres",
    "sample_spheres",
]
