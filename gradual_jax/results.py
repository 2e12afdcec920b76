"""The results table (one row per lane × task) and the run's ``config.json``.

The table is tidy: every lane hyperparameter is a column beside the metrics, so a
figure is a group-by away. It is rewritten atomically (temporary file + rename) after
every task, so a crash never leaves a half-written file and loses at most one task.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from gradual_jax import config as config_lib
from gradual_jax.sweep import Lane

RESULTS_FILE = "results.csv"
CONFIG_FILE = "config.json"

LANE_COLUMNS = ("lane", "seed", "schedule", "delta", "learning_rate")
METRIC_COLUMNS = ("online_train_acc", "online_train_loss", "train_acc", "train_loss",
                  "test_acc", "test_loss", "finite")
COLUMNS = ("experiment", "preset", "dataset", "family", *LANE_COLUMNS, "epochs_per_task",
           "transition_ratio", "batch_size", "task", "samples_seen", *METRIC_COLUMNS)
PACKAGES = ("gradual-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy")


def samples_seen(task: int, readout_epoch: int, epochs_per_segment: int, num_train: int) -> int:
    """Training examples processed when task ``task``'s metrics are read."""
    return (task * epochs_per_segment + readout_epoch + 1) * num_train


def task_rows(cfg: config_lib.ExperimentConfig, dataset: str, lanes: Sequence[Lane], task: int,
              metrics: Any, seen: Sequence[int]) -> list[dict[str, Any]]:
    """Rows of one task: ``metrics`` holds host arrays shaped [lanes]."""
    rows = []
    for i, lane in enumerate(lanes):
        row = {
            "experiment": cfg.name, "preset": cfg.preset, "dataset": dataset, "family": cfg.task.family,
            "lane": i, "seed": lane.seed, "schedule": lane.schedule,
            "delta": math.nan if lane.delta is None else lane.delta,
            "learning_rate": lane.learning_rate,
            "epochs_per_task": cfg.protocol.epochs_per_task,
            "transition_ratio": cfg.protocol.transition_ratio,
            "batch_size": cfg.protocol.batch_size, "task": task, "samples_seen": int(seen[i]),
        }
        for name in METRIC_COLUMNS:
            value = np.asarray(getattr(metrics, name))[i]
            row[name] = bool(value) if name == "finite" else float(value)
        rows.append(row)
    return rows


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: Path, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def environment() -> dict[str, Any]:
    """Package versions and the device the run used."""
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
        "host": platform.node(),
    }


def write_config(path: Path, cfg: config_lib.ExperimentConfig, lanes: Sequence[Lane],
                 **extra: Any) -> None:
    payload = {
        "config": config_lib.to_dict(cfg),
        "lanes": [dict(lane=i, **lane.__dict__) for i, lane in enumerate(lanes)],
        "environment": environment(),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def summarize(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (schedule, Δ, learning rate): the metric on the first task, the last task, the
    mean over the last 10% of tasks, each as mean ± std over seeds."""
    last = frame["task"].max()
    tail_start = last - max(1, round(0.1 * (last + 1))) + 1
    keys = ["schedule", "delta", "learning_rate"]

    def per_lane(group: pd.DataFrame) -> pd.Series:
        group = group.sort_values("task")
        return pd.Series({
            "first": group[metric].iloc[0],
            "last": group[metric].iloc[-1],
            "last_10pct": group.loc[group["task"] >= tail_start, metric].mean(),
        })

    lanes = frame.groupby(keys + ["seed"], dropna=False)[["task", metric]].apply(per_lane).reset_index()
    grouped = lanes.groupby(keys, dropna=False, sort=False)
    out = grouped[["first", "last", "last_10pct"]].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out.insert(0, "seeds", grouped.size())
    return out.reset_index()


def format_summary(frame: pd.DataFrame, metric: str) -> str:
    table = summarize(frame, metric)
    tasks = int(frame["task"].max()) + 1
    lines = [f"{metric} (mean ± std over seeds; {tasks} tasks)",
             f"{'schedule':<15}{'Δ':>6}{'lr':>9}{'seeds':>6}{'first task':>17}{'last task':>17}"
             f"{'last 10% of tasks':>20}"]
    for _, row in table.iterrows():
        delta = "-" if pd.isna(row["delta"]) else f"{row['delta']:g}"

        def cell(name: str) -> str:
            std = row[f"{name}_std"]
            return f"{row[f'{name}_mean']:.3f} ± {0.0 if pd.isna(std) else std:.3f}"

        lines.append(f"{row['schedule']:<15}{delta:>6}{row['learning_rate']:>9.0e}{row['seeds']:>6}"
                     f"{cell('first'):>17}{cell('last'):>17}{cell('last_10pct'):>20}")
    return "\n".join(lines)
