"""Data: generators and loaders the experiments use, and input validation."""

from .digits import DIGITS_SHAPE, ImageData, load_digits_split
from .spheres import SpheresData, make_spheres, sample_spheres
from .validate import as_finite_array, check_dataset, check_labels

__all__ = [
    "DIGITS_SHAPE",
    "ImageData",
    "load_digits_split",
    "SpheresData",
    "as_finite_array",
    "check_dataset",
    "check_labels",
    "make_spheres",
    "sample_spheres",
]
