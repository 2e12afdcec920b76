"""Stopping a run cleanly on SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes and ``timeout`` send).

A handler that raises fires wherever the main thread happens to be: inside a callback of XLA's
compiler (where the exception is swallowed, ``Exception ignored in ...``, and the run goes on)
or between an Orbax save and its manifest. So the first signal only records the request, and
the run stops at its next safe point (:meth:`StopRequests.check`: before compiling, between
tasks), where its results and the save in flight are completed; the process then exits with
128 + the signal's number (130, 143).

A second signal stops the process at once, even when its main thread is blocked in native code
(a wait on a file system that stopped answering) and so could run no Python handler: a watcher
thread reads the signals from Python's wakeup file descriptor (``signal.set_wakeup_fd``) and
ends the process itself. What the run wrote before stays whole (files are replaced atomically,
and Orbax ignores a save it did not commit).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_WAIT_S = 10.0  # how long a stopping process waits for library threads before it leaves anyway


class Interrupted(KeyboardInterrupt):
    """The run stopped for a signal; ``exit_code`` is the shell's 128 + its number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum


class StopRequests:
    """The signal received, if any, while the run was working."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal came, on every process of a multi-host run alike
        (they stop together, or none would be left waiting for the others)."""
        from gradual_jax.runner import sharding  # imports JAX

        stopping = sharding.processes_where(self.signum is not None)
        if stopping:
            raise Interrupted(self.signum if self.signum is not None else signal.SIGTERM)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is None:
            self.signum = signum  # the second is the watcher's (``_watch``)


def _watch(read_fd: int) -> None:
    """Count SIGINT/SIGTERM as Python's C handler writes them to the wakeup pipe; end the process
    on the second. Returns when the pipe is closed."""
    received = 0
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            data = b""
        if not data:
            os.close(read_fd)
            return
        for signum in data:
            if signum in SIGNALS:
                received += 1
                if received >= 2:
                    name = signal.Signals(signum).name
                    print(f"interrupted again ({name}); stopped at once: run the same command again to resume from "
                          "the last checkpoint", file=sys.stderr, flush=True)
                    os._exit(128 + signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequests]:
    """Catch SIGINT and SIGTERM for the ``with`` block (the previous handlers come back after it).
    Only the main thread can install handlers; elsewhere signals keep their usual effect."""
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {signum: signal.signal(signum, requests._handle) for signum in SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), name="signal-watch", daemon=True).start()
    try:
        yield requests
    finally:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_fd)  # ends the watcher, which closes its end


def leave(code: int, wait_s: float = EXIT_WAIT_S) -> None:
    """End the process with ``code`` after a fault or a signal, in at most ``wait_s`` seconds.

    Library threads (Orbax's save threads) may still be blocked on a file system that stopped
    answering, and the interpreter waits for them at exit forever; or they wake while it shuts
    down and print tracebacks. What the run wrote is complete (atomic files, sealed checkpoints),
    so the process gives them a bounded time and then leaves without running them down.
    """
    deadline = time.monotonic() + wait_s
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
