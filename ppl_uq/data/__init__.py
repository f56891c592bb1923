"""Data: generators and loaders the experiments use, and input validation."""

from .digits import DIGITS_SHAPE, ImageData, load_digits_split
from .idx import read_idx
from .images import (
    DATASETS,
    OOD_SETS,
    ImageDataset,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    load_mnist_as_declared,
    load_notmnist,
    mnist_source,
    mnist_source_of,
    ood_images,
    validation_split,
)
from .spheres import SpheresData, make_spheres, sample_spheres
from .validate import as_finite_array, check_dataset, check_labels

__all__ = [
    "DATASETS",
    "DIGITS_SHAPE",
    "ImageData",
    "ImageDataset",
    "OOD_SETS",
    "load_dataset",
    "load_digits",
    "load_digits_split",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_as_declared",
    "load_notmnist",
    "mnist_source",
    "mnist_source_of",
    "ood_images",
    "read_idx",
    "validation_split",
    "SpheresData",
    "as_finite_array",
    "check_dataset",
    "check_labels",
    "make_spheres",
    "sample_spheres",
]
