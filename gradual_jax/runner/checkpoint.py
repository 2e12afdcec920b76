"""Orbax checkpoints of a whole sweep, so a run can stop anywhere and resume exactly.

A checkpoint at step j holds everything needed to continue after task j-1: the batched
lane state (parameters and optimizer state of every lane, as placed on the devices) and
a JSON record with the resolved config and the result rows of tasks 0..j-1. Nothing
else is needed: all randomness is a function of (seed, task, epoch), so restoring the
state and replaying from task j reproduces an uninterrupted run bit for bit.

Orbax writes each step into a temporary directory and renames it when complete, so a
kill during a save leaves the previous checkpoints intact. Orbax does not verify what it
reads back, so once a save has completed a manifest of its files' SHA-256 hashes is written
beside it (``OUT/checkpoints/manifests/<step>.json``); a step is used only if its files still
match. A step that does not (a flipped bit, a truncated or removed file, a save that completed
but whose manifest was never written) is set aside with a warning in favour of the one before it.
A run records in its ``config.json`` that it writes manifests (``verified``), so a step of such a
run without one is set aside too, even when the whole manifest folder has gone.

Saves run in Orbax's background threads; every wait for them is bounded (a file system that
stops answering must not hold the run forever), and a full disk or a read-only file system,
which tensorstore reports as ``ValueError: RESOURCE_EXHAUSTED ...``, is raised as an ``OSError``
(``gradual_jax.runner.storage``).

With several processes (``--distributed``) the folder is shared: every process saves and restores
its own shards together (Orbax meets them at its own barriers), process 0 alone writes manifests,
sets steps aside and deletes, and a step is restored only if every process finds it sound.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import shutil
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from gradual_jax.runner import sharding, storage

CHECKPOINT_DIR = "checkpoints"
MANIFEST_DIR = "manifests"  # inside the checkpoint directory; not a step, so Orbax ignores it
SNAPSHOT_DIR = "snapshots"  # readout parameters kept for post-hoc analysis (`gradual-jax analyze`)

SAVE_WAIT_S = 600.0  # the longest wait for a save in flight while the run goes on
STOP_WAIT_S = 60.0  # ... when the run is stopping anyway (a signal, a fault)


class CheckpointWarning(UserWarning):
    """A checkpoint was set aside as damaged or unreadable; the previous one is used."""


def _not_orbax_errors(record: logging.LogRecord) -> bool:
    """Drop Orbax's own error reports (a traceback per background thread): the failure reaches
    the run as an exception, which it reports in one line."""
    return record.levelno < logging.ERROR or "orbax" not in record.pathname


# Orbax logs every save at INFO level through absl; keep a long run's terminal readable.
logging.getLogger("absl").setLevel(logging.WARNING)
logging.getLogger("absl").addFilter(_not_orbax_errors)


def _late_callback_hook(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``sys.unraisablehook`` without the one report that is noise: after a save fails, tensorstore
    may complete a write onto the event loop Orbax has already closed for it, and reports that
    ``RuntimeError: Event loop is closed`` as unraisable; the failure itself reaches the run as an
    exception, which it reports in one line."""
    def unraisablehook(unraisable: Any) -> None:
        if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
            return
        hook(unraisable)

    unraisablehook.quiet_late_callbacks = True
    return unraisablehook


if not getattr(sys.unraisablehook, "quiet_late_callbacks", False):
    sys.unraisablehook = _late_callback_hook(sys.unraisablehook)


class Checkpointer:
    """Saves and restores ``(state, record)`` pairs under ``OUT/<name>/<step>``.

    ``keep=None`` keeps every step (parameter snapshots). ``verified``: the run that wrote the
    steps wrote manifests, so a step without one is not trusted (without it, a folder with no
    manifests at all is taken as written before manifests existed).
    """

    def __init__(self, out_dir: Path, *, name: str = CHECKPOINT_DIR, keep: int | None = 3, verified: bool = False):
        self.directory = (Path(out_dir) / name).absolute()
        self.manifests = self.directory / MANIFEST_DIR
        self.verified = verified
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               async_options=ocp.AsyncOptions(timeout_secs=int(SAVE_WAIT_S)))
        with storage.as_storage_errors(self.directory):
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "record"))
        self._unsealed: list[int] = []  # saves started whose manifest is not written yet

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
        """Start saving (asynchronously: training continues while the files are written); the
        previous save is sealed (its manifest written) first."""
        self._seal()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  record=ocp.args.JsonSave(_json_safe(record)))
        with storage.as_storage_errors(self.directory / str(step)):
            self._manager.save(step, args=args, force=True)
        self._unsealed.append(step)

    def _seal(self, wait_s: float | None = None) -> None:
        """Wait (at most ``wait_s``, default :data:`SAVE_WAIT_S`) for pending saves and write each
        completed step's manifest."""
        if not self._unsealed:
            return
        wait_s = SAVE_WAIT_S if wait_s is None else wait_s
        steps, self._unsealed = self._unsealed, []  # a failed save is not waited for twice
        with storage.as_storage_errors(self.directory):
            _bounded(self._manager.wait_until_finished, wait_s,  # on process 0: every process's shards
                     f"the checkpoint save into {self.directory}")
            if sharding.is_main_process():
                self.manifests.mkdir(parents=True, exist_ok=True)
                for step in steps:
                    if (self.directory / str(step)).is_dir():
                        _atomic_json(self.manifests / f"{step}.json", _hashes(self.directory / str(step)))
                self._forget_removed()

    def _forget_removed(self) -> None:
        """Drop manifests of steps Orbax has deleted (``keep``)."""
        if self.manifests.is_dir():
            present = {str(s) for s in self.steps()}
            for manifest in self.manifests.glob("*.json"):
                if manifest.stem not in present:
                    manifest.unlink(missing_ok=True)

    def verify(self, step: int) -> str | None:
        """None if step's files match its manifest, else what is wrong. Checkpoints written
        before manifests existed (no manifest directory at all, and a run that does not record
        ``verified``) are accepted unverified."""
        if not self.manifests.is_dir() and not self.verified:
            return None
        manifest = self.manifests / f"{step}.json"
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return "its save never completed (no manifest)"
        actual = _hashes(self.directory / str(step))
        changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
        return f"{len(changed)} file(s) differ from the manifest, e.g. {changed[0]}" if changed else None

    def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
        """One step's ``(state, record)``; ``like`` gives structure, shapes and shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        return restored.state, _from_json_safe(restored.record)

    def restore_latest(self, like: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """The newest readable checkpoint as ``(step, state, record)``, or None if there is none.

        ``like`` is a state of the right structure, shapes and shardings (a fresh init).
        """
        unreadable = []
        for step in reversed(self.steps()):
            problem = self.verify(step)
            if _anywhere(problem):
                self._warn(step, f"checkpoint {self.directory / str(step)} is set aside: "
                                 f"{problem or 'it differs from its manifest on another process'}; trying the "
                                 "previous one")
                unreadable.append(step)
                continue
            try:
                state, record = self.restore(step, like)
            except Exception as err:  # noqa: BLE001 - any unreadable step falls back to the previous
                problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            if _anywhere(problem):
                self._warn(step, f"checkpoint {self.directory / str(step)} is unreadable "
                                 f"({problem or 'another process could not read it'}); trying the previous one")
                unreadable.append(step)
                continue
            self._set_aside(unreadable)
            return step, state, record
        self._set_aside(unreadable)  # a run that starts over must be able to save these steps afresh
        return None

    def _warn(self, step: int, text: str) -> None:
        """One line (``<checkpoints>:<step>: CheckpointWarning: ...``), not the code line that warned."""
        warnings.warn_explicit(text, CheckpointWarning, str(self.directory), step)

    def _set_aside(self, steps: list[int]) -> None:
        """Rename unreadable steps to ``unreadable-<step>`` (``-2``, ``-3``, … when that name is
        taken; kept for inspection, ignored by Orbax), so the resumed run can write them afresh.
        Process 0 renames (every process has finished reading them: they agreed on the step to
        use); the others wait for it before Orbax lists the steps again."""
        if not steps:
            return
        if sharding.is_main_process():
            for step in steps:
                target = self.directory / f"unreadable-{step}"
                n = 1
                while target.exists():
                    n += 1
                    target = self.directory / f"unreadable-{step}-{n}"
                (self.directory / str(step)).rename(target)
                (self.manifests / f"{step}.json").unlink(missing_ok=True)
        sharding.barrier("checkpoint: steps set aside")
        self._manager.reload()

    def wait(self) -> None:
        self._seal()

    def close(self, wait_s: float | None = None) -> None:
        """Seal the save in flight (waiting at most ``wait_s``, default :data:`SAVE_WAIT_S`) and
        stop Orbax's threads."""
        wait_s = SAVE_WAIT_S if wait_s is None else wait_s
        try:
            self._seal(wait_s)
        except BaseException:
            self.abandon(wait_s)
            raise
        with storage.as_storage_errors(self.directory):
            _bounded(self._manager.close, wait_s, f"closing the checkpoints in {self.directory}")

    def abandon(self, wait_s: float | None = None) -> None:
        """Close on the way out of a run that failed or was stopped: the save in flight is sealed
        if it completes within ``wait_s`` (default :data:`STOP_WAIT_S`); a further error is not
        raised over the first."""
        wait_s = STOP_WAIT_S if wait_s is None else wait_s
        with contextlib.suppress(Exception):
            self._seal(wait_s)
        with contextlib.suppress(Exception):
            _bounded(self._manager.close, wait_s, f"closing the checkpoints in {self.directory}")

    def delete_all(self) -> None:
        self.close()
        if sharding.is_main_process():
            shutil.rmtree(self.directory, ignore_errors=True)
        sharding.barrier("checkpoint: deleted")


def _bounded(call: Callable[[], None], wait_s: float, what: str) -> None:
    """``call()``, given up after ``wait_s`` seconds (ETIMEDOUT): it runs in a helper thread, so a
    wait on a file system that stopped answering cannot hold the run forever."""
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(err)

    helper = threading.Thread(target=target, name="checkpoint-wait", daemon=True)
    helper.start()
    helper.join(wait_s)
    if helper.is_alive():
        raise OSError(errno.ETIMEDOUT, f"{what} did not finish within {wait_s:g} s")
    if outcome:
        raise outcome[0]


def _anywhere(problem: str | None) -> bool:
    """Whether any process found a problem with a step: the processes restore a step together,
    so every one of them must take it, or none."""
    return bool(sharding.processes_where(problem is not None))


def has_checkpoints(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds any checkpoint step (committed or not)."""
    directory = Path(out_dir) / CHECKPOINT_DIR
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _hashes(step_dir: Path) -> dict[str, str]:
    """SHA-256 of every file under a step's directory, by relative path."""
    out = {}
    for path in sorted(step_dir.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out[str(path.relative_to(step_dir))] = digest.hexdigest()
    return out


def _atomic_json(path: Path, payload: Any) -> None:
    storage.atomic_write_text(path, json.dumps(payload, indent=1))


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: store them as tagged strings and restore them exactly."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _from_json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_safe(v) for v in value]
    return value
