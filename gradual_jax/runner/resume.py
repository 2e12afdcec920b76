"""Resuming a run in its output folder: start over, continue from the latest verified
checkpoint, or refuse to mix two runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from gradual_jax import config as config_lib
from gradual_jax.config import ConfigError, ExperimentConfig
from gradual_jax.core import engine
from gradual_jax.runner import checkpoint, results, sharding


class NonFiniteError(RuntimeError):
    """A lane's training loss became NaN/Inf and ``run.on_nonfinite`` is ``stop``."""


class OutputExistsError(FileExistsError):
    """The output directory already holds results that a new run would overwrite."""


@dataclasses.dataclass
class Resumed:
    start_task: int
    states: list[Any]
    rows: list[dict[str, Any]]


def _stored_meta(out: Path) -> dict[str, Any] | None:
    """The ``config.json`` a previous run wrote into ``out`` (None when absent or unreadable)."""
    try:
        meta = json.loads((out / results.CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("config"), dict) else None


def _differences(meta: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    """What differs between a stored run and ``cfg``: config keys, and the device count (the
    lane layout over devices changes results in the last float bits)."""
    mismatched = config_lib.resume_mismatches(meta["config"], cfg)
    stored = (meta.get("environment") or {}).get("device_count")
    now = jax.device_count()
    if stored is not None and stored != now:
        mismatched.append(f"the device count (stored: {stored}, now: {now})")
    return mismatched


def prepare_output(cfg: ExperimentConfig, out: Path, force_new: bool, fresh_states: list[Any],
                    echo: Callable[[str], None]) -> Resumed | None:
    """Start over, resume from the latest verified checkpoint, or refuse to mix two runs.

    The stored config is compared with ``cfg`` before anything is restored, so a changed key is
    named instead of surfacing as unreadable checkpoints. A folder whose results have no
    committed checkpoint (a run killed before its first save) starts over: results are a
    deterministic function of the config, so nothing is lost by recomputing them.
    """
    table = out / results.RESULTS_FILE
    if force_new:
        if out.exists():
            checkpoint.Checkpointer(out).delete_all()
            _unlink_on_main(table)
        return None
    has_checkpoints, has_rows = checkpoint.has_checkpoints(out), table.exists()
    meta = _stored_meta(out) if has_checkpoints or has_rows else None
    sharding.barrier("output: read")  # before process 0 deletes anything there
    if not (has_checkpoints or has_rows):
        return None
    if meta is None:
        raise OutputExistsError(f"{out} holds results or checkpoints but no readable {results.CONFIG_FILE}, so "
                                "they cannot be matched to this run; choose another --out, or pass --force-new to "
                                "delete them")
    stored_format = meta.get("state_format", 1)
    if has_checkpoints and stored_format != engine.STATE_FORMAT:
        raise ConfigError(f"cannot resume {out}: its checkpoints hold lane states of format {stored_format}, this "
                          f"version of gradual-jax reads format {engine.STATE_FORMAT} ({engine.STATE_FORMAT_CHANGE}); "
                          "pass --force-new to recompute the run there (results are deterministic), or choose "
                          "another --out")
    mismatched = _differences(meta, cfg)
    if mismatched:
        raise ConfigError(f"cannot resume {out}: the run there differs in " + "; ".join(mismatched)
                          + "; run the same config to resume it, or choose another --out for this one")
    restored = checkpoint.Checkpointer(out).restore_latest(like=fresh_states) if has_checkpoints else None
    if restored is None:
        echo(f"{out} has no committed checkpoint to resume from; starting over (results are deterministic, so "
             "the rows there are recomputed)")
        if has_checkpoints:
            checkpoint.Checkpointer(out).delete_all()
        _unlink_on_main(table)
        return None
    step, states, record = restored
    if step > cfg.task.num_tasks:
        raise ConfigError(f"task.num_tasks={cfg.task.num_tasks} is below the {step} tasks {out} has finished; "
                          f"keep task.num_tasks >= {step} to resume it (its rows would otherwise be cut)")
    rows = record["rows"]
    if cfg.run.on_nonfinite == "stop":
        stop_if_nonfinite(rows, out)
    echo(f"resuming from the checkpoint after task {step - 1} ({out / checkpoint.CHECKPOINT_DIR / str(step)})")
    return Resumed(start_task=step, states=states, rows=rows)


def _unlink_on_main(path: Path) -> None:
    sharding.on_main_process(lambda: path.unlink(missing_ok=True), f"delete {path}")


def stop_if_nonfinite(rows: list[dict[str, Any]], out: Path | None) -> None:
    """``run.on_nonfinite=stop``: a run that stopped for a non-finite loss stays stopped."""
    bad = sorted({(row["lane"], row["task"]) for row in rows if not row["finite"]})
    if bad:
        lanes = sorted({lane for lane, _ in bad})
        first = min(task for _, task in bad)
        where = out / results.RESULTS_FILE if out else "memory"
        raise NonFiniteError(f"non-finite loss in lane(s) {lanes} during task {first}; results up to there are in "
                             f"{where} (run.on_nonfinite=stop)")
