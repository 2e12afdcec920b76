"""Orbax checkpoints of a whole sweep, so a run can stop anywhere and resume exactly.

A checkpoint at step j holds everything needed to continue after task j-1: the batched
lane state (parameters and optimizer state of every lane, as placed on the devices) and
a JSON record with the resolved config and the result rows of tasks 0..j-1. Nothing
else is needed: all randomness is a function of (seed, task, epoch), so restoring the
state and replaying from task j reproduces an uninterrupted run bit for bit.

Orbax writes each step into a temporary directory and renames it when complete, so a
kill during a save leaves the previous checkpoints intact; a step that is unreadable
anyway (a damaged disk, a file removed by hand) is skipped with a warning in favour of
the one before it.
"""

from __future__ import annotations

import logging
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
SNAPSHOT_DIR = "snapshots"  # readout parameters kept for post-hoc analysis (`gradual-jax analyze`)

# Orbax logs every save at INFO level through absl; keep a long run's terminal readable.
logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
    """Saves and restores ``(state, record)`` pairs under ``OUT/<name>/<step>``.

    ``keep=None`` keeps every step (parameter snapshots).
    """

    def __init__(self, out_dir: Path, *, name: str = CHECKPOINT_DIR, keep: int | None = 3):
        self.directory = (Path(out_dir) / name).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "record"))

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, record: dict[str, Any]) -> None:
        """Start saving (asynchronously: training continues while the files are written)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  record=ocp.args.JsonSave(_json_safe(record)))
        self._manager.save(step, args=args, force=True)

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
            try:
                state, record = self.restore(step, like)
            except Exception as err:  # noqa: BLE001 - any unreadable step falls back to the previous
                warnings.warn(f"checkpoint {self.directory / str(step)} is unreadable ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}); trying the previous one",
                              stacklevel=2)
                unreadable.append(step)
                continue
            self._set_aside(unreadable)
            return step, state, record
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Rename unreadable steps to ``unreadable-<step>`` (kept for inspection, ignored by
        Orbax), so the resumed run can write those steps afresh."""
        for step in steps:
            (self.directory / str(step)).rename(self.directory / f"unreadable-{step}")
        if steps:
            self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def delete_all(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def has_checkpoints(out_dir: Path) -> bool:
    directory = Path(out_dir) / CHECKPOINT_DIR
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


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
