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
from gradual_jax.arms import arm_label
from gradual_jax.config import ConfigError, ExperimentConfig, validate
from gradual_jax.core import engine
from gradual_jax.runner import (build, checkpoint, outlock, resume, results, sharding, signals, storage, sweep,
                                tensorboard_log)


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
    main_process = sharding.is_main_process()
    made_by = results.provenance(command, experiment_file)  # the code and command this run starts with
    lanes = sweep.expand(cfg.sweep)
    prepared = build.prepare_data(cfg)
    stop.check()
    program = build.build_program(cfg, prepared)
    layout, task_data, hparams = build.place_lanes(cfg, lanes, prepared)
    init = jax.jit(jax.vmap(lambda hp: engine.init_lane(program, hp)), out_shardings=layout.lane_sharding)
    states = [init(h) for h in hparams]
    offload = layout.num_chunks > 1  # idle chunks wait in host memory
    if offload:
        states = [jax.device_get(s) for s in states]

    resumed = resume.prepare_output(cfg, out, force_new, states, echo) if out is not None else None
    sharding.barrier("output: prepared")  # every process has read the folder before process 0 writes
    if resumed is not None and resumed.complete:
        return _finish_complete(out, echo, cfg.metric, reporting)
    start_task, rows = (resumed.start_task, results.upgrade_rows(resumed.rows, lanes)) if resumed else (0, [])
    if resumed:
        states = resumed.states
    saver = (checkpoint.Checkpointer(out, keep=cfg.run.checkpoints_to_keep)
             if out is not None and cfg.run.checkpoint_every > 0 else None)
    snapshots = (checkpoint.Checkpointer(out, name=checkpoint.SNAPSHOT_DIR, keep=None)
                 if out is not None and cfg.run.snapshot_every > 0 else None)
    readouts = build.readout_epochs(program, lanes)
    if out is not None:
        sharding.on_main_process(lambda: results.keep_epochs_before(out / results.EPOCHS_FILE, start_task),
                                 f"write {out / results.EPOCHS_FILE}")
        sharding.on_main_process(lambda: results.write_config(
            out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset, source=prepared.source,
            status="running", **{resume.VERIFIED_KEY: True}), f"write {out / results.CONFIG_FILE}")

    echo(f"{cfg.name} [{cfg.preset}]: {len(lanes)} lanes × {cfg.task.num_tasks} tasks on "
         f"{prepared.dataset} ({prepared.source}), {program.num_train} training examples, "
         f"{program.steps_per_task} steps per task; {layout.mesh.size} device(s), "
         f"{layout.num_chunks} chunk(s) of {layout.chunk_size} lanes")
    for line in sweep.describe_schedules(cfg):
        echo("  " + line)

    stop.check()
    start = time.perf_counter()
    example_state = layout.to_devices(states[0]) if offload else states[0]
    lane_groups = layout.lane_groups(cfg.run.vmap_lanes)
    run_task = engine.make_task_fn(program, lane_groups, layout.mesh.size).lower(
        hparams[0], example_state, task_data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    grouping = f" ({lane_groups} groups of lanes one after another per device)" if lane_groups > 1 else ""
    echo(f"compiled in {compile_s:.1f} s{grouping}")
    _check_memory(run_task, layout, echo)
    stop.check()  # a signal during compilation stops here

    reported: set[int] = {row["lane"] for row in rows if not row["finite"]}
    bar = tqdm(total=cfg.task.num_tasks, initial=min(start_task, cfg.task.num_tasks), unit="task",
               disable=not progress or not main_process, file=sys.stderr, dynamic_ncols=True)
    board = (_open_tensorboard(out, lanes, program, start_task)
             if cfg.run.tensorboard and out is not None and main_process else None)
    train_start = time.perf_counter()
    try:
        for task in range(start_task, cfg.task.num_tasks):
            stop.check()  # between tasks: the rows so far are written and the last save has started
            chunk_metrics = []
            for c in range(layout.num_chunks):
                state = layout.to_devices(states[c]) if offload else states[c]
                state, m = run_task(hparams[c], state, task_data, jnp.int32(task))
                states[c] = jax.device_get(state) if offload else state
                chunk_metrics.append(sharding.to_host(m))
            task_metrics = layout.join(chunk_metrics)
            scores = program.problem.host_metrics(task_metrics.readout)  # e.g. BLEU of the decoded ids
            seen = [results.samples_seen(task, r, program.epochs_per_segment, program.num_train)
                    for r in readouts]
            new_rows = results.task_rows(cfg, prepared.dataset, prepared.source, lanes, task, task_metrics, seen,
                                         scores)
            rows += new_rows
            if out is not None:
                curves = results.epoch_frame(lanes, task, task_metrics.epoch_loss, task_metrics.epoch_acc)
                sharding.on_main_process(lambda: results.append_epochs(out / results.EPOCHS_FILE, curves),
                                         f"write {out / results.EPOCHS_FILE}")
                sharding.on_main_process(lambda: results.write_table(out / results.RESULTS_FILE, rows),
                                         f"write {out / results.RESULTS_FILE}")
            if cfg.run.tensorboard:  # before the checkpoint: a checkpointed task is always on disk here too
                epochs = {tag: np.asarray(getattr(task_metrics, field))
                          for tag, field in tensorboard_log.EPOCH_TAGS.items()}
                sharding.on_main_process(lambda: board.write_task(task, new_rows, results.metric_names(new_rows[0]),
                                                                  epochs, readouts), "write the TensorBoard events")
            if snapshots is not None and (task + 1) % cfg.run.snapshot_every == 0:
                snapshots.save(task, [(s.readout_params, s.readout_batch_stats) for s in states], {"task": task})
            if saver is not None and ((task + 1) % cfg.run.checkpoint_every == 0 or task + 1 == cfg.task.num_tasks):
                saver.save(task + 1, states, {"config": config_lib.to_dict(cfg), "rows": rows})
            done = task + 1 - start_task
            elapsed = time.perf_counter() - train_start
            bar.set_postfix(lanes=len(lanes),
                            lane_steps_per_s=f"{len(lanes) * program.steps_per_task * done / elapsed:,.0f}")
            bar.update(1)
            bad = [int(i) for i in np.flatnonzero(~np.asarray(task_metrics.finite)) if i not in reported]
            for i in bad:
                echo(f"warning: non-finite training loss in lane {i} ({lanes[i].label()}) during task {task}")
            reported.update(bad)
            if bad and cfg.run.on_nonfinite == "stop":
                resume.stop_if_nonfinite(rows, out)
            if on_task_end is not None:
                on_task_end(task, rows)
    except BaseException:
        bar.close()
        _abandon(saver, snapshots, board)
        raise
    bar.close()
    for manager in (saver, snapshots, board):
        if manager is not None:
            manager.close()
    train_s = time.perf_counter() - train_start
    rows = [row for row in rows if row["task"] < cfg.task.num_tasks]
    frame = pd.DataFrame(rows, columns=results.columns_of(rows))
    tasks_run = cfg.task.num_tasks - start_task
    if out is not None:
        sharding.on_main_process(lambda: results.write_table(out / results.RESULTS_FILE, rows),
                                 f"write {out / results.RESULTS_FILE}")
    echo(f"trained {len(lanes)} lanes × {max(tasks_run, 0)} tasks in {train_s:.1f} s")
    if reporting.summary is not None:
        echo(reporting.summary(frame, cfg.metric))
    if out is not None:
        def write_finished() -> None:  # last: "finished" promises the table, the figure and the summaries
            echo(f"results: {out / results.RESULTS_FILE}")
            if reporting.figure is not None:
                echo(f"figure:  {reporting.figure(out)}")
            results.write_config(out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset,
                                 source=prepared.source, status="finished", compile_seconds=round(compile_s, 2),
                                 train_seconds=round(train_s, 2), resumed_from_task=start_task,
                                 lane_steps_per_second=round(len(lanes) * program.steps_per_task
                                                             * max(tasks_run, 0) / max(train_s, 1e-9), 1),
                                 **{resume.VERIFIED_KEY: True})

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
