"""Run an experiment: data → lanes → one compiled program → a task loop → results.

The Python loop runs once per task (not per step): each iteration calls the compiled
``run_task`` for every lane, brings the task's metrics to the host, appends them to
the results table on disk and updates the progress bar.

A multi-host run (``run.distributed``) runs this same loop in every process, each training its
own devices' lanes; every process gets the whole task's metrics, checkpoints together with the
others, and only process 0 writes the results, the config and the figure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from gradual_jax import config as config_lib
from gradual_jax import models
from gradual_jax.arms import arm_label
from gradual_jax.config import ConfigError, ExperimentConfig, validate
from gradual_jax.core import engine
from gradual_jax.runner import (build, checkpoint, outlock, programs, resume, results, sharding, signals, storage,
                                sweep, tensorboard_log)


def _open_tensorboard(out: Path, lanes: list[sweep.Lane], program: engine.Program,
                      start_task: int) -> tensorboard_log.LaneWriters:
    """One TensorBoard run per lane, named by its index, arm and seed (``gradual_jax.runner.tensorboard_log``)."""
    arms = results.lane_arms(lanes)
    names = [tensorboard_log.run_name(i, arm, lane.seed) for i, (arm, lane) in enumerate(zip(arms, lanes))]
    texts = [f"lane {i}: {arm_label(lane.schedule, lane.delta, lane.method)}; seed {lane.seed}, "
             f"learning rate {lane.learning_rate:g}" for i, lane in enumerate(lanes)]
    return tensorboard_log.LaneWriters(out, names, texts, program.epochs_per_segment, start_task)


def _check_memory(compiled: Any, layout: sharding.LaneLayout, echo: Callable[[str], None]) -> None:
    """Print the program's device memory and refuse a sweep that cannot fit."""
    needed = sharding.program_bytes(compiled)
    if needed is None:
        return
    per_device_lanes = layout.chunk_size // layout.mesh.size
    echo(f"device memory: {needed / 2**20:,.1f} MiB per device for {per_device_lanes} lanes "
         f"(~{needed / per_device_lanes / 2**20:,.2f} MiB per lane)")
    limit = sharding.device_memory_limit()
    if limit is not None and needed > 0.9 * limit:
        fit = max(1, int(0.8 * limit / needed * layout.chunk_size))
        raise ConfigError(f"the sweep needs {needed / 2**30:.1f} GiB per device but a device has "
                          f"{limit / 2**30:.1f} GiB; run it in chunks, e.g. --lanes-per-chunk {fit}")


@dataclasses.dataclass(frozen=True)
class Reporting:
    """How a finished run tells its results, given by the layer above (the CLI passes the
    analysis layer's): ``summary(table, metric)`` is printed; ``figure(out)`` draws the figure and
    summary tables into the run's folder and returns the figure's path, before ``finished`` is
    written. Either may be None (nothing printed, nothing drawn)."""

    summary: Callable[[pd.DataFrame, str], str] | None = None
    figure: Callable[[Path], Path] | None = None


def run(cfg: ExperimentConfig, out_dir: str | Path | None = None, *, force_new: bool = False,
        progress: bool = True, echo: Callable[[str], None] = print,
        on_task_end: Callable[[int, list[dict[str, Any]]], None] | None = None, reporting: Reporting = Reporting(),
        command: str | None = None, experiment_file: str | Path | None = None) -> pd.DataFrame:
    """Train every lane of ``cfg`` on every task; return the results table.

    With ``out_dir``: ``config.json`` is written before any compute, ``results.csv`` after
    every task, an Orbax checkpoint every ``run.checkpoint_every`` tasks; a directory that
    holds checkpoints is resumed from the latest one (unless ``force_new``).
    ``on_task_end(task, rows)`` is called after each task's results are written; ``reporting``
    says how the run ends (a printed summary, a figure: :class:`Reporting`); ``command``
    is the command line ``config.json`` records (default: this process's), ``experiment_file``
    the file of a researcher's own experiment, if the config came from one.

    SIGINT and SIGTERM stop the run at its next safe point (``gradual_jax.runner.signals``):
    :class:`signals.Interrupted` is raised once the results so far and the save in flight are
    complete.
    """
    cfg = validate(cfg)
    if force_new and out_dir is not None:
        resume.check_force_new(out_dir)
    if cfg.run.tensorboard and out_dir is None:
        raise ConfigError("run.tensorboard=true needs an output folder (--out) for OUT/tensorboard/")
    if cfg.run.distributed and cfg.run.lanes_per_chunk:
        raise ConfigError("run.lanes_per_chunk cannot be combined with run.distributed (chunk states wait in "
                          "host memory, which multi-host runs do not share); use more hosts or fewer lanes")
    sharding.maybe_initialize_distributed(cfg.run.distributed)
    out = Path(out_dir) if out_dir is not None else None
    if not sharding.is_main_process():
        echo = _silent  # process 0 tells; the others would repeat it line for line
    with (_claim_output(out) if out is not None else contextlib.nullcontext(),  # one run per output folder
          signals.stop_requests() as stop):
        return _train(cfg, out, stop, force_new=force_new, progress=progress, echo=echo, on_task_end=on_task_end,
                      reporting=reporting, command=command, experiment_file=experiment_file)


def _silent(*_: Any) -> None:
    pass


@contextlib.contextmanager
def _claim_output(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock (``gradual_jax.runner.outlock``) for the run.

    In a multi-host run each process locks its own file, and they agree: if any process cannot,
    all stop with exit 2 (none is left waiting in a collective for one that has gone). They also
    check that they share the folder, which Orbax's checkpoints need.
    """
    if jax.process_count() == 1:
        with outlock.hold(out):
            yield
        return
    with contextlib.ExitStack() as stack:
        error = None
        try:
            stack.enter_context(outlock.hold(out, jax.process_index()))
        except (outlock.FolderInUseError, outlock.FolderError) as err:
            error = err
        failed = sharding.processes_where(error is not None)
        if error is not None:
            raise error
        if failed:
            raise outlock.FolderInUseError(f"{out} cannot be used: process {failed[0]} of this run could not lock "
                                           "it (see its error)")
        _check_shared_folder(out)
        yield


def _check_shared_folder(out: Path) -> None:
    """Stop unless every process sees the same ``out`` (one file system shared by the hosts):
    process 0 leaves a file with a fresh name there and every process looks for it."""
    marker = out / f".process-0-{sharding.broadcast_from_main(secrets.randbits(31))}"
    sharding.on_main_process(marker.touch, f"write into {out}")
    blind = sharding.processes_where(not marker.exists())
    sharding.on_main_process(lambda: marker.unlink(missing_ok=True), f"write into {out}")
    if blind:
        raise ConfigError(f"process {blind[0]} does not see process 0's files in {out}: --out must be one folder "
                          "on a file system that every host shares")


def _train(cfg: ExperimentConfig, out: Path | None, stop: signals.StopRequests, *, force_new: bool, progress: bool,
           echo: Callable[[str], None], on_task_end: Callable[[int, list[dict[str, Any]]], None] | None,
           reporting: Reporting, command: str | None, experiment_file: str | Path | None = None) -> pd.DataFrame:
    """Set up, compile, train task by task, and write the finished run: each a step below."""
    made_by = results.provenance(command, experiment_file)  # the code and command this run starts with
    lanes = sweep.expand(cfg.sweep)
    prepared = build.prepare_data(cfg)
    stop.check()
    lane_programs = programs.build_all(cfg, lanes, prepared)
    states = programs.init_states(lane_programs)
    resumed = (resume.prepare_output(cfg, out, force_new, states, echo, [p.lanes for p in lane_programs])
               if out is not None else None)
    sharding.barrier("output: prepared")  # every process has read the folder before process 0 writes
    if resumed is not None and resumed.complete:
        return _finish_complete(out, echo, cfg.metric, reporting)
    start_task, rows = (resumed.start_task, results.upgrade_rows(resumed.rows, lanes)) if resumed else (0, [])
    if resumed:
        states = resumed.states
    if out is not None:
        _start_files(cfg, out, lanes, lane_programs, prepared, made_by, start_task)
    _announce(cfg, lanes, lane_programs, prepared, echo)
    task_data = programs.place_data(lane_programs, prepared.task_data)
    stop.check()
    task_fns, compile_s = _compile(cfg, lane_programs, states, task_data, echo)
    stop.check()  # a signal during compilation stops here
    loop = _TaskLoop(cfg, out, lanes, lane_programs, task_fns, task_data, prepared, echo, on_task_end)
    rows, train_s = loop.run(states, rows, start_task, stop, progress)
    return _finish(cfg, out, lanes, lane_programs, prepared, made_by, rows, start_task, compile_s, train_s, echo,
                   reporting)


def _start_files(cfg: ExperimentConfig, out: Path, lanes: list[sweep.Lane], lane_programs: list[programs.LaneProgram],
                 prepared: build.PreparedData, made_by: dict[str, Any], start_task: int) -> None:
    """Cut the per-epoch curves back to the resume point and mark the run as running."""
    sharding.on_main_process(lambda: results.keep_epochs_before(out / results.EPOCHS_FILE, start_task),
                             f"write {out / results.EPOCHS_FILE}")
    sharding.on_main_process(lambda: results.write_config(
        out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset, source=prepared.source,
        status="running", **_layout_record(lane_programs)), f"write {out / results.CONFIG_FILE}")


def _layout_record(lane_programs: list[programs.LaneProgram]) -> dict[str, Any]:
    """What ``config.json`` records for resuming: the checkpoints are verified, and which lanes
    each compiled program holds."""
    return {resume.VERIFIED_KEY: True, resume.PROGRAMS_KEY: [list(p.lanes) for p in lane_programs]}


def _announce(cfg: ExperimentConfig, lanes: list[sweep.Lane], lane_programs: list[programs.LaneProgram],
              prepared: build.PreparedData, echo: Callable[[str], None]) -> None:
    program, layout = lane_programs[0].program, lane_programs[0].layout
    chunking = (f"{layout.num_chunks} chunk(s) of {layout.chunk_size} lanes" if len(lane_programs) == 1 else
                f"{len(lane_programs)} programs, one per mitigation structure ("
                + ", ".join(f"{' + '.join(dict.fromkeys(lanes[i].method for i in p.lanes))}: {len(p.lanes)} lanes"
                            for p in lane_programs) + ")")
    echo(f"{cfg.name} [{cfg.preset}]: {len(lanes)} lanes × {cfg.task.num_tasks} tasks on "
         f"{prepared.dataset} ({prepared.source}), {program.num_train} training examples, "
         f"{program.steps_per_task} steps per task; {layout.mesh.size} device(s), {chunking}")
    for line in sweep.describe_schedules(cfg):
        echo("  " + line)


def _compile(cfg: ExperimentConfig, lane_programs: list[programs.LaneProgram], states: list[Any], task_data: list[Any],
             echo: Callable[[str], None]) -> tuple[list[Any], float]:
    """Each program's task function, compiled for its first chunk's shapes (every chunk of a
    program has the same), with its device memory checked."""
    start = time.perf_counter()
    task_fns = []
    cpu_vmap_lanes = models.get(cfg.model.name).cpu_vmap_lanes
    for p, first, data in zip(lane_programs, programs.first_chunks(lane_programs), task_data):
        example_state = p.layout.to_devices(states[first]) if p.offload else states[first]
        groups = p.layout.lane_groups(cfg.run.vmap_lanes, cpu_vmap_lanes)
        task_fns.append(engine.make_task_fn(p.program, groups, p.layout.mesh).lower(
            p.hparams[0], example_state, data, jnp.int32(0)).compile())
    compile_s = time.perf_counter() - start
    groups = lane_programs[0].layout.lane_groups(cfg.run.vmap_lanes, cpu_vmap_lanes)
    grouping = f" ({groups} groups of lanes one after another per device)" if groups > 1 else ""
    what = "" if len(lane_programs) == 1 else f"{len(lane_programs)} programs "
    echo(f"compiled {what}in {compile_s:.1f} s{grouping}")
    for p, task_fn in zip(lane_programs, task_fns):
        _check_memory(task_fn, p.layout, echo)
    return task_fns, compile_s


@dataclasses.dataclass
class _TaskLoop:
    """The loop over tasks: train every chunk of every program on the task, then write the task's
    rows, curves, TensorBoard events, snapshot and checkpoint, in that order."""

    cfg: ExperimentConfig
    out: Path | None
    lanes: list[sweep.Lane]
    lane_programs: list[programs.LaneProgram]
    task_fns: list[Any]
    task_data: list[Any]  # the data set on each program's devices
    prepared: build.PreparedData
    echo: Callable[[str], None]
    on_task_end: Callable[[int, list[dict[str, Any]]], None] | None

    def run(self, states: list[Any], rows: list[dict[str, Any]], start_task: int, stop: signals.StopRequests,
            progress: bool) -> tuple[list[dict[str, Any]], float]:
        cfg, out = self.cfg, self.out
        program = self.lane_programs[0].program  # every program shares the problem and the protocol
        saver = (checkpoint.Checkpointer(out, keep=cfg.run.checkpoints_to_keep)
                 if out is not None and cfg.run.checkpoint_every > 0 else None)
        snapshots = (checkpoint.Checkpointer(out, name=checkpoint.SNAPSHOT_DIR, keep=None)
                     if out is not None and cfg.run.snapshot_every > 0 else None)
        board = (_open_tensorboard(out, self.lanes, program, start_task)
                 if cfg.run.tensorboard and out is not None and sharding.is_main_process() else None)
        readouts = build.readout_epochs(program, self.lanes)
        reported: set[int] = {row["lane"] for row in rows if not row["finite"]}
        bar = tqdm(total=cfg.task.num_tasks, initial=min(start_task, cfg.task.num_tasks), unit="task",
                   disable=not progress or not sharding.is_main_process(), file=sys.stderr, dynamic_ncols=True)
        train_start = time.perf_counter()
        try:
            for task in range(start_task, cfg.task.num_tasks):
                stop.check()  # between tasks: the rows so far are written and the last save has started
                task_metrics = self.train_task(states, task)
                scores = program.problem.host_metrics(task_metrics.readout)  # e.g. BLEU of the decoded ids
                seen = [results.samples_seen(task, r, program.epochs_per_segment, program.num_train)
                        for r in readouts]
                new_rows = results.task_rows(cfg, self.prepared.dataset, self.prepared.source, self.lanes, task,
                                             task_metrics, seen, scores)
                rows += new_rows
                self.write_task(task, rows, new_rows, task_metrics, readouts, board)
                if snapshots is not None and (task + 1) % cfg.run.snapshot_every == 0:
                    snapshots.save(task, [(s.readout_params, s.readout_batch_stats) for s in states], {"task": task})
                if saver is not None and ((task + 1) % cfg.run.checkpoint_every == 0
                                          or task + 1 == cfg.task.num_tasks):
                    saver.save(task + 1, states, {"config": config_lib.to_dict(cfg), "rows": rows})
                done, elapsed = task + 1 - start_task, time.perf_counter() - train_start
                rate = len(self.lanes) * program.steps_per_task * done / elapsed
                bar.set_postfix(lanes=len(self.lanes), lane_steps_per_s=f"{rate:,.0f}")
                bar.update(1)
                self.check_finite(task, rows, task_metrics, reported)
                if self.on_task_end is not None:
                    self.on_task_end(task, rows)
        except BaseException:
            bar.close()
            _abandon(saver, snapshots, board)
            raise
        bar.close()
        for manager in (saver, snapshots, board):
            if manager is not None:
                manager.close()
        return rows, time.perf_counter() - train_start

    def train_task(self, states: list[Any], task: int) -> engine.TaskMetrics:
        """Every chunk of every program trained on ``task`` (``states`` updated in place); the
        metrics on the host, in the sweep's lane order."""
        per_program = []
        for p, task_fn, first, data in zip(self.lane_programs, self.task_fns, programs.first_chunks(self.lane_programs),
                                           self.task_data):
            chunk_metrics = []
            for c in range(p.layout.num_chunks):
                state = p.layout.to_devices(states[first + c]) if p.offload else states[first + c]
                state, m = task_fn(p.hparams[c], state, data, jnp.int32(task))
                states[first + c] = jax.device_get(state) if p.offload else state
                chunk_metrics.append(sharding.to_host(m))
            per_program.append(p.layout.join(chunk_metrics))
        return programs.in_lane_order(self.lane_programs, per_program)

    def write_task(self, task: int, rows: list[dict[str, Any]], new_rows: list[dict[str, Any]],
                   task_metrics: engine.TaskMetrics, readouts: list[int],
                   board: tensorboard_log.LaneWriters | None) -> None:
        """The task's curves and the results so far on disk; its TensorBoard events (before the
        checkpoint: a checkpointed task is always on disk here too)."""
        out = self.out
        if out is not None:
            curves = results.epoch_frame(self.lanes, task, task_metrics.epoch_loss, task_metrics.epoch_acc)
            sharding.on_main_process(lambda: results.append_epochs(out / results.EPOCHS_FILE, curves),
                                     f"write {out / results.EPOCHS_FILE}")
            sharding.on_main_process(lambda: results.write_table(out / results.RESULTS_FILE, rows),
                                     f"write {out / results.RESULTS_FILE}")
        if self.cfg.run.tensorboard:
            epochs = {tag: np.asarray(getattr(task_metrics, field))
                      for tag, field in tensorboard_log.EPOCH_TAGS.items()}
            sharding.on_main_process(lambda: board.write_task(task, new_rows, results.metric_names(new_rows[0]),
                                                              epochs, readouts), "write the TensorBoard events")

    def check_finite(self, task: int, rows: list[dict[str, Any]], task_metrics: engine.TaskMetrics,
                     reported: set[int]) -> None:
        """Name each lane whose loss turned non-finite (once), and stop if the config says so."""
        bad = [int(i) for i in np.flatnonzero(~np.asarray(task_metrics.finite)) if i not in reported]
        for i in bad:
            self.echo(f"warning: non-finite training loss in lane {i} ({self.lanes[i].label()}) during task {task}")
        reported.update(bad)
        if bad and self.cfg.run.on_nonfinite == "stop":
            resume.stop_if_nonfinite(rows, self.out)


def _finish(cfg: ExperimentConfig, out: Path | None, lanes: list[sweep.Lane],
            lane_programs: list[programs.LaneProgram], prepared: build.PreparedData, made_by: dict[str, Any],
            rows: list[dict[str, Any]], start_task: int, compile_s: float, train_s: float,
            echo: Callable[[str], None], reporting: Reporting) -> pd.DataFrame:
    """The final table, the summary, the figure, and ``finished`` written last."""
    rows = [row for row in rows if row["task"] < cfg.task.num_tasks]
    frame = pd.DataFrame(rows, columns=results.columns_of(rows))
    tasks_run = max(cfg.task.num_tasks - start_task, 0)
    if out is not None:
        sharding.on_main_process(lambda: results.write_table(out / results.RESULTS_FILE, rows),
                                 f"write {out / results.RESULTS_FILE}")
    echo(f"trained {len(lanes)} lanes × {tasks_run} tasks in {train_s:.1f} s")
    if reporting.summary is not None:
        echo(reporting.summary(frame, cfg.metric))
    if out is None:
        return frame
    steps_per_task = lane_programs[0].program.steps_per_task

    def write_finished() -> None:  # last: "finished" promises the table, the figure and the summaries
        echo(f"results: {out / results.RESULTS_FILE}")
        if reporting.figure is not None:
            echo(f"figure:  {reporting.figure(out)}")
        results.write_config(out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset,
                             source=prepared.source, status="finished", compile_seconds=round(compile_s, 2),
                             train_seconds=round(train_s, 2), resumed_from_task=start_task,
                             lane_steps_per_second=round(len(lanes) * steps_per_task * tasks_run
                                                         / max(train_s, 1e-9), 1),
                             **_layout_record(lane_programs))

    sharding.on_main_process(write_finished, f"write the results into {out}")
    return frame


def _abandon(saver: checkpoint.Checkpointer | None, snapshots: checkpoint.Checkpointer | None,
             board: tensorboard_log.LaneWriters | None) -> None:
    """On the way out of a failed or stopped run: seal the saves in flight (bounded), close the
    writers, and raise nothing over the error that ended the run."""
    for manager in (saver, snapshots):
        if manager is not None:
            manager.abandon()
    if board is not None:
        with contextlib.suppress(Exception):
            board.close()


def _finish_complete(out: Path, echo: Callable[[str], None], metric: str, reporting: Reporting) -> pd.DataFrame:
    """A folder whose results hold every task already: redraw its figure and summaries, mark it
    finished (last), and return its table; nothing is trained and the table is not rewritten."""
    table = out / results.RESULTS_FILE
    frame = results.read_table(table)
    if reporting.summary is not None:
        echo(reporting.summary(frame, metric))

    def write_finished() -> None:
        echo(f"results: {table}")
        if reporting.figure is not None:
            echo(f"figure:  {reporting.figure(out)}")
        meta = json.loads((out / results.CONFIG_FILE).read_text())
        if meta.get("status") != "finished":
            storage.atomic_write_text(out / results.CONFIG_FILE, json.dumps({**meta, "status": "finished"}, indent=2)
                                      + "\n")

    sharding.on_main_process(write_finished, f"write the results into {out}")
    return frame
