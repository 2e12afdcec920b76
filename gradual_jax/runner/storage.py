"""Files a fault cannot leave half written, and storage faults in one form.

* :func:`atomic_write` writes through a temporary file in the same folder and renames it over the
  target, so a reader (or a kill) sees the old file or the new one, never a part of either.
* :func:`storage_error` recognises a full disk, an exceeded quota or a read-only file system in
  whatever form a library reports it: an ``OSError`` from Python, or a ``ValueError`` whose text
  carries the status (``RESOURCE_EXHAUSTED: ... No space left on device``) from tensorstore, under
  Orbax's checkpoints. The run maps each to one ``OSError`` and exit status 4.
* :func:`cut_row` finds a CSV table whose last write was cut (a crash mid-write of a file that is
  not written atomically, or a copy cut short), which pandas would read as NaN cells.

This module imports neither JAX nor pandas, so readers such as ``gradual-jax plot`` stay fast.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Storage faults by errno, and the words libraries use for them in messages.
_FAULTS = {
    errno.ENOSPC: ("RESOURCE_EXHAUSTED", os.strerror(errno.ENOSPC)),
    errno.EDQUOT: (os.strerror(errno.EDQUOT),),
    errno.EROFS: (os.strerror(errno.EROFS),),
    errno.EIO: (os.strerror(errno.EIO),),
    errno.EACCES: ("PERMISSION_DENIED", os.strerror(errno.EACCES)),
}


def storage_error(err: BaseException, where: str | Path | None = None) -> OSError | None:
    """``err`` as an ``OSError`` if it (or an exception it was raised from) is a storage fault:
    a full disk, a quota, a read-only file system or an I/O error; None otherwise."""
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in _FAULTS:
            return cause
        text = str(cause)
        for code, words in _FAULTS.items():
            if any(word in text for word in words):
                return OSError(code, os.strerror(code), str(where) if where is not None else None)
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, what it was raised from, and the members of exception groups, each once."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, *getattr(current, "exceptions", ())]


@contextlib.contextmanager
def as_storage_errors(where: str | Path) -> Iterator[None]:
    """Re-raise a storage fault from the block as an ``OSError`` naming ``where``; anything else
    passes unchanged."""
    try:
        yield
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - only storage faults are translated, the rest re-raised
        mapped = storage_error(err, where)
        if mapped is None:
            raise
        raise mapped from err


def readable_mode() -> int:
    """rw-r--r-- under the usual umask: what ``open`` gives a new file (``mkstemp`` gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Make ``path`` by ``write(tmp)`` into a temporary file beside it, then rename: the file is
    either the old one or complete. The temporary keeps ``path``'s suffix, so writers that pick a
    format by it (matplotlib) pick the right one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    tmp = Path(name)
    try:
        os.fchmod(fd, readable_mode())
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """``path`` as a place for a new regular file: refused (ValueError, one line) when it is empty,
    an existing folder, or an existing file that is not a regular one (``/dev/null``, a pipe)."""
    text = str(path)
    if not text.strip():
        raise ValueError(f"{what} is empty; name a file, e.g. {what} results/figure.png")
    target = Path(text)
    if target.is_dir():
        raise ValueError(f"{what} {target} is a folder; name a file in it, e.g. {target / 'figure.png'}")
    if target.exists() and not target.is_file():
        raise ValueError(f"{what} {target} is not a regular file (a device, pipe or socket); name a file")
    return target


def cut_row(path: Path) -> int | None:
    """The 1-based line of ``path`` (a CSV table with a header) that was cut short, or None when
    every line is whole. A cut row has fewer fields than the header, or is the last line and lacks
    its newline (a cut inside the last field leaves the count right but the value wrong). A file
    that is no CSV text at all is not judged here (its reader names what it is)."""
    try:
        with open(path, newline="") as f:
            text = f.read()
        lines = text.splitlines()
        if not lines:
            return None
        header = next(csv.reader([lines[0]]))
        for number, fields in enumerate(csv.reader(lines), start=1):
            if fields and len(fields) != len(header):
                return number
    except (UnicodeDecodeError, csv.Error):
        return None
    return len(lines) if not text.endswith("\n") else None
