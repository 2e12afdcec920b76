"""One run per output folder: an exclusive ``fcntl`` lock held for the whole run.

The lock is a file ``OUT/.lock`` that holds the owner's process id. The operating system
drops the lock when its process ends, however it ends (a kill included), so a stale file never
blocks a later run; a second run that finds the lock held stops at once and names the holder.

In a multi-host run every process holds a lock of its own: process 0 the one above (so a
one-process run and a multi-host one into the same folder exclude each other), process ``i``
``OUT/.lock-<i>`` (so do two multi-host runs, whichever process starts first).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


class FolderInUseError(RuntimeError):
    """Another process is running into the same output folder."""


class FolderError(OSError):
    """The output folder cannot be created or written (a regular file, read-only, ...)."""


def lock_file(process: int) -> str:
    """The lock file's name for the run's process ``process`` (0 in a one-process run)."""
    return LOCK_FILE if process == 0 else f"{LOCK_FILE}-{process}"


@contextlib.contextmanager
def hold(out_dir: Path, process: int = 0) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the run's process ``process`` for the ``with`` block (the
    folder is created if needed)."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / lock_file(process), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise FolderError(err.errno, f"cannot write the output folder {out_dir}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUseError(f"{out_dir} is in use by another run (process {holder}); wait for it to end "
                                   "or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def holder(out_dir: Path) -> str | None:
    """The process id of the run that holds ``out_dir``'s lock now, or None when no run does."""
    try:
        fd = os.open(Path(out_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)
    return None
