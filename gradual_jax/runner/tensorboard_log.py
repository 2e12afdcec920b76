"""TensorBoard event files of a run (``--set run.tensorboard=true``), written with tensorboardX.

Layout: ``OUT/tensorboard/<lane run>/``, one TensorBoard *run* per lane, named
``lane003-output_interp_d0.1-seed1`` (lane index, arm, seed), so TensorBoard draws every lane of
a metric in one chart and its run filter selects arms by name (``abrupt``, ``_d0.1``). Tags:

* ``task/<column>``: every metric column of the lane's ``results.csv`` row (accuracies, losses,
  BLEU-2, diagnostics; NaN values such as a missing test split are left out), once per task;
* ``epoch/online_train_loss``, ``epoch/online_train_acc``: the online loss and accuracy of
  every epoch (predictions before each update);
* ``lane`` (text, once): the lane's arm, seed and learning rate.

One step unit for all tags: the epoch index since the run began, ``task·(1+k)·E + epoch``; a
task's row is logged at its readout epoch (E−1 of the task for gradual lanes, (1+k)·E−1 for
abrupt ones), so ``task/*`` and ``epoch/*`` line up on the same axis. A resumed run marks its
first step with TensorBoard's restart marker (``purge_step``), so points a killed run wrote past
its last checkpoint are dropped by the reader instead of appearing twice; every task is flushed
to disk before its checkpoint is saved, so no checkpointed task is missing from the files.

tensorboardX is imported only when a run asks for it: it is an optional extra
(``pip install -e '.[tensorboard]'``), and ``config.validate`` refuses ``run.tensorboard=true``
without it before anything is computed.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any


TENSORBOARD_DIR = "tensorboard"
EPOCH_TAGS = {"online_train_loss": "epoch_loss", "online_train_acc": "epoch_acc"}  # tag -> TaskMetrics field
NOT_METRICS = ("finite",)  # a row's columns that are flags, not curves


def run_name(index: int, arm: str, seed: int) -> str:
    """A lane's TensorBoard run (a folder name without spaces): ``lane003-output_interp_d0.1-seed1``."""
    slug = (arm.replace(" + ", "_").replace(" Δ=", "_d").replace(", lr=", "_lr").replace(" ", "_"))
    return f"lane{index:03d}-{slug}-seed{seed}"


def step_of(task: int, epoch: int, epochs_per_segment: int) -> int:
    """The step of ``epoch`` (0-based, within the task) of ``task``: epochs since the run began."""
    return task * epochs_per_segment + epoch


def row_scalars(row: dict[str, Any], metric_names: Sequence[str]) -> dict[str, float]:
    """The ``task/*`` scalars of one results row: its metric columns, NaNs left out."""
    values = {name: float(row[name]) for name in metric_names if name in row and name not in NOT_METRICS}
    return {f"task/{name}": value for name, value in values.items() if not math.isnan(value)}


class LaneWriters:
    """One tensorboardX ``SummaryWriter`` per lane under ``OUT/tensorboard``.

    ``start_task`` 0 begins afresh (event files of an earlier run in this folder are removed,
    as its results.csv is); a later one resumes, marking ``step_of(start_task, 0)`` as a restart.
    """

    def __init__(self, out_dir: Path, names: Sequence[str], texts: Sequence[str], epochs_per_segment: int,
                 start_task: int):
        from tensorboardX import SummaryWriter  # the optional extra, imported only when asked for

        root = Path(out_dir) / TENSORBOARD_DIR
        if start_task == 0 and root.exists():
            shutil.rmtree(root)
        self.epochs_per_segment = epochs_per_segment
        purge = step_of(start_task, 0, epochs_per_segment) if start_task > 0 else None
        suffix = f".{os.getpid()}.from-task{start_task}"  # event file names are only unique to the second
        self.writers = []
        for name, text in zip(names, texts):
            fresh = not any((root / name).glob("events.out.tfevents.*"))
            writer = SummaryWriter(str(root / name), purge_step=purge, max_queue=1000, flush_secs=3600,
                                   filename_suffix=suffix)
            if fresh:
                writer.add_text("lane", text, global_step=0)
            self.writers.append(writer)

    def write_task(self, task: int, rows: Sequence[dict[str, Any]], metric_names: Sequence[str],
                   epoch_curves: dict[str, Any], readout_epochs: Sequence[int]) -> None:
        """One task of every lane: its row's metrics at the readout epoch, and every epoch's
        online loss and accuracy (``epoch_curves``: tag -> array [lanes, epochs]); flushed."""
        for i, (writer, row) in enumerate(zip(self.writers, rows)):
            readout = step_of(task, readout_epochs[i], self.epochs_per_segment)
            for tag, value in row_scalars(row, metric_names).items():
                writer.add_scalar(tag, value, global_step=readout)
            for name, curve in epoch_curves.items():
                for epoch, value in enumerate(curve[i]):
                    writer.add_scalar(f"epoch/{name}", float(value),
                                      global_step=step_of(task, epoch, self.epochs_per_segment))
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
