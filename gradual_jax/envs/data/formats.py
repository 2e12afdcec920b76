"""Parsers for the canonical on-disk dataset formats (numpy only, no I/O policy).

Each function turns one raw archive into ``(x_train, y_train, x_test, y_test)``
with images as uint8 ``[N, H, W, C]`` in upright orientation and labels as
int32 ``[N]``. Where files live, checksums and downloads are the business of
:mod:`gradual_jax.envs.data.sources`; keeping the parsers pure lets tests feed them
tiny hand-made files.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import zipfile
from typing import BinaryIO

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

IDX_LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension
IDX_IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions
_GZIP_SIGNATURE = b"\x1f\x8b"

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


def read_idx(source: str | os.PathLike | BinaryIO) -> np.ndarray:
    """Decode an IDX file (gzipped or not) of uint8 images or labels.

    ``source`` is a path or a binary file object; gzip is detected from the
    content, so the ``.gz`` archives and their unpacked form both work.
    """
    raw = _read_all(source)
    if raw[:2] == _GZIP_SIGNATURE:
        raw = gzip.decompress(raw)
    name = _describe(source)
    if len(raw) < 4:
        raise ValueError(f"{name}: only {len(raw)} bytes, too short for an IDX header; the file is truncated.")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (IDX_LABELS_MAGIC, IDX_IMAGES_MAGIC):
        raise ValueError(
            f"{name}: IDX magic number 0x{magic:08x} is neither 0x{IDX_IMAGES_MAGIC:08x} (uint8 images) "
            f"nor 0x{IDX_LABELS_MAGIC:08x} (uint8 labels); this is not an MNIST-style IDX file or it is corrupt."
        )
    ndim = magic & 0xFF
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise ValueError(f"{name}: header declares {ndim} dimensions but the file ends first; it is truncated.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    actual = len(raw) - header_end
    if actual != expected:
        raise ValueError(
            f"{name}: header shape {shape} needs {expected} bytes of data but the file has {actual}; "
            "it is truncated or corrupt (delete it and fetch it again)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape).copy()


def read_mnist_idx(
    train_images: str | os.PathLike,
    train_labels: str | os.PathLike,
    test_images: str | os.PathLike,
    test_labels: str | os.PathLike,
) -> Arrays:
    """Read the four MNIST IDX files (already upright) into NHWC arrays."""
    x_train, y_train = _pair(read_idx(train_images), read_idx(train_labels), f"{train_images} + {train_labels}")
    x_test, y_test = _pair(read_idx(test_images), read_idx(test_labels), f"{test_images} + {test_labels}")
    return x_train, y_train, x_test, y_test


def read_emnist_zip(path: str | os.PathLike, split: str = "balanced") -> Arrays:
    """Read one EMNIST split from NIST's ``gzip.zip`` without unpacking it to disk.

    EMNIST stores every image transposed (column-major), so H and W are swapped
    here to make the characters upright like MNIST digits.
    """
    arrays = []
    with zipfile.ZipFile(path) as archive:
        for part in ("train", "test"):
            images = _read_zip_idx(archive, f"gzip/emnist-{split}-{part}-images-idx3-ubyte.gz", path)
            labels = _read_zip_idx(archive, f"gzip/emnist-{split}-{part}-labels-idx1-ubyte.gz", path)
            x, y = _pair(images.transpose(0, 2, 1), labels, f"{path} [{split}/{part}]")
            arrays += [x, y]
    return tuple(arrays)  # type: ignore[return-value]


def read_cifar10_tar(path: str | os.PathLike) -> Arrays:
    """Read CIFAR-10 from ``cifar-10-python.tar.gz``, converting CHW rows to NHWC.

    The batches are Python pickles, so only open archives whose md5 was checked.
    """
    with tarfile.open(path, "r:gz") as archive:
        train = [_read_cifar_batch(archive, name, path) for name in CIFAR10_TRAIN_BATCHES]
        x_test, y_test = _read_cifar_batch(archive, CIFAR10_TEST_BATCH, path)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test


def read_mnist_pickle(path: str | os.PathLike) -> Arrays:
    """Read the classic ``mnist.pkl.gz`` ((train, valid, test) of float images in [0, 1)).

    Train and valid are concatenated back into the original 60k MNIST training
    set. Pixels were stored as ``byte / 256``, so multiplying by 256 recovers the
    original bytes exactly; anything else means the file is not that pickle.
    """
    with gzip.open(path, "rb") as f:
        splits = pickle.load(f, encoding="latin1")
    if not (isinstance(splits, (tuple, list)) and len(splits) == 3):
        raise ValueError(f"{path}: expected a (train, valid, test) tuple, got {type(splits).__name__}.")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    x_train = np.concatenate([_unit_floats_to_uint8(x_tr, path), _unit_floats_to_uint8(x_va, path)])
    y_train = np.concatenate([y_tr, y_va]).astype(np.int32)
    return x_train, y_train, _unit_floats_to_uint8(x_te, path), np.asarray(y_te).astype(np.int32)


def _pair(images: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an (images, labels) IDX pair agrees; return NHWC uint8 images and int32 labels."""
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{what}: expected images [N, H, W] and labels [N], got {images.shape} and {labels.shape}.")
    if len(images) != len(labels):
        raise ValueError(f"{what}: {len(images)} images but {len(labels)} labels; the files do not belong together.")
    return np.ascontiguousarray(images[..., None]), labels.astype(np.int32)


def _unit_floats_to_uint8(x: np.ndarray, path: object, block: int = 4096) -> np.ndarray:
    """Invert ``byte / 256`` into uint8 [N, 28, 28, 1], refusing any inexact pixel.

    Scaling by 256 is exact in float32, so a value survives the uint8 round trip
    iff it was a byte (negatives, >= 256, fractions and NaN all fail). Blocks of
    rows keep the temporaries cache-sized, which is much faster than whole-array passes.
    """
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if x.shape[1] != 28 * 28:
        raise ValueError(f"{path}: expected flat 28x28 images [N, 784], got {x.shape}.")
    out = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, len(x), block):
        scaled = x[start : start + block] * np.float32(256)
        with np.errstate(invalid="ignore"):
            as_bytes = scaled.astype(np.uint8)
        if not np.array_equal(as_bytes, scaled):
            raise ValueError(f"{path}: pixels are not exact multiples of 1/256 in [0, 255/256]; not the MNIST pickle.")
        out[start : start + block] = as_bytes
    return out.reshape(-1, 28, 28, 1)


def _read_zip_idx(archive: zipfile.ZipFile, member: str, path: object) -> np.ndarray:
    try:
        with archive.open(member) as f:
            return read_idx(f)
    except KeyError:
        raise ValueError(f"{path}: member {member!r} is missing; is this NIST's EMNIST gzip.zip?") from None


def _read_cifar_batch(archive: tarfile.TarFile, name: str, path: object) -> tuple[np.ndarray, np.ndarray]:
    member = f"{CIFAR10_FOLDER}/{name}"
    try:
        f = archive.extractfile(member)
    except KeyError:
        f = None
    if f is None:
        raise ValueError(f"{path}: member {member!r} is missing; is this cifar-10-python.tar.gz?")
    with f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int32)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path} [{name}]: data {data.shape} / labels {labels.shape} are not [N, 3072] / [N].")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def _read_all(source: str | os.PathLike | BinaryIO) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    return source.read()


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or repr(source)
