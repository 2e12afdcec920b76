"""Image datasets for the gradual-change experiments, as plain numpy arrays.

``load_images`` returns uint8 NHWC images and int32 labels from whichever
local source has them (see :mod:`gradual_jax.envs.data.sources` for the order);
``balanced_subset`` picks the fixed class-balanced training subset and
``normalize`` applies the standard per-channel statistics. No JAX here, so the
data layer stays importable (and testable) without an accelerator stack.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from gradual_jax.envs.data.sources import (
    DATASETS,
    SOURCES,
    ChecksumError,
    DataNotFoundError,
    default_data_dir,
    require_choice,
)
from gradual_jax.envs.data import sources as _sources

__all__ = [
    "DATASETS",
    "SOURCES",
    "NUM_CLASSES",
    "ImageSplits",
    "DataNotFoundError",
    "ChecksumError",
    "default_data_dir",
    "load_images",
    "balanced_subset",
    "normalize",
]

NUM_CLASSES: dict[str, int] = {"mnist": 10, "emnist_balanced": 47, "cifar10": 10}

# Per-channel (mean, std) of pixels scaled to [0, 1]; the customary values for each dataset.
_MNIST_STATS = ((0.1307,), (0.3081,))
_CHANNEL_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": _MNIST_STATS,
    "emnist_balanced": _MNIST_STATS,
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}


@dataclasses.dataclass(frozen=True)
class ImageSplits:
    """Train and test arrays of one dataset, plus where they were loaded from.

    Shapes and dtypes are checked on construction so every source is held to
    the same contract: images uint8 [N, H, W, C], labels int32 [N].
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name} x_{split}: expected uint8 [N, H, W, C], got {x.dtype} {x.shape}.")
            if y.dtype != np.int32 or y.shape != (len(x),):
                raise ValueError(f"{self.name} y_{split}: expected int32 [{len(x)}], got {y.dtype} {y.shape}.")


def load_images(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    download: bool = False,
) -> ImageSplits:
    """Load dataset ``name`` from ``source`` (``"auto"`` picks the first local one).

    ``data_dir`` defaults to :func:`default_data_dir`. Without ``download=True``
    nothing touches the network: missing data raises :class:`DataNotFoundError`
    at once, saying which files to put where.
    """
    require_choice("name", name, DATASETS)
    require_choice("source", source, SOURCES)
    directory = default_data_dir() if data_dir is None else pathlib.Path(data_dir).expanduser()
    used, (x_train, y_train, x_test, y_test) = _sources.load(name, directory, source=source, download=download)
    return ImageSplits(name, used, x_train, y_train, x_test, y_test, NUM_CLASSES[name])


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of every class 0..max(labels).

    A fixed, seeded subset keeps every run of an experiment on the same data
    and gives each class equal weight. Raises if any class is too small.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"labels must be a non-empty 1-D array of non-negative ints, got {labels.dtype} {labels.shape}.")
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}.")
    counts = np.bincount(labels)
    short = np.flatnonzero(counts < per_class)
    if short.size:
        detail = ", ".join(f"class {c} has {counts[c]}" for c in short)
        raise ValueError(f"per_class={per_class} is more than some classes have: {detail}. Lower per_class.")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(len(counts))]
    return np.sort(np.concatenate(picks))


def normalize(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 ``(x / 255 - mean) / std`` with ``name``'s channel stats."""
    require_choice("name", name, DATASETS)
    mean, std = (np.asarray(v, dtype=np.float32) for v in _CHANNEL_STATS[name])
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != mean.size:
        raise ValueError(
            f"normalize({name!r}) expects uint8 [N, H, W, {mean.size}] images, got {x.dtype} {x.shape}."
        )
    return (x.astype(np.float32) / np.float32(255.0) - mean) / std
