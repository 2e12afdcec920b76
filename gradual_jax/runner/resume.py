"""Resuming a run in its output folder: start over, continue from the latest verified
checkpoint, or refuse to mix two runs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import pandas as pd

from gradual_jax import config as config_lib
from gradual_jax.config import ConfigError, ExperimentConfig
from gradual_jax.core import engine
from gradual_jax.runner import checkpoint, results, sharding, storage, sweep


class NonFiniteError(RuntimeError):
    """A lane's training loss became NaN/Inf and ``run.on_nonfinite`` is ``stop``."""


class OutputExistsError(FileExistsError):
    """The output directory already holds results that a new run would overwrite."""


@dataclasses.dataclass
class Resumed:
    start_task: int
    states: list[Any]
    rows: list[dict[str, Any]]
    complete: bool = False  # results.csv holds every task already; nothing is trained or rewritten


VERIFIED_KEY = "verified_checkpoints"  # config.json: every completed checkpoint of the run has a manifest
PROGRAMS_KEY = "program_lanes"  # config.json: each compiled program's lanes, in checkpoint order
RUN_SECTIONS = ("data", "task", "protocol", "model", "sweep")  # what every run's stored config holds
SET_ASIDE = "{stem}.set-aside-{n}{suffix}"  # results kept when a run starts over


def _stored_meta(out: Path) -> tuple[dict[str, Any] | None, str]:
    """The ``config.json`` a previous run wrote into ``out``, or None and why it cannot be used."""
    path = out / results.CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {results.CONFIG_FILE}"
    except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
        return None, f"a {results.CONFIG_FILE} that cannot be read ({type(err).__name__})"
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in RUN_SECTIONS):
        return None, f"a {results.CONFIG_FILE} that is not a run's (no {', '.join(RUN_SECTIONS)} sections)"
    return meta, ""


def _differences(meta: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    """What differs between a stored run and ``cfg``: config keys, and the device count (the
    lane layout over devices changes results in the last float bits)."""
    mismatched = config_lib.resume_mismatches(meta["config"], cfg)
    stored = (meta.get("environment") or {}).get("device_count")
    now = jax.device_count()
    if stored is not None and stored != now:
        mismatched.append(f"the device count (stored: {stored}, now: {now})")
    return mismatched


def _program_differences(meta: dict[str, Any], cfg: ExperimentConfig,
                         program_lanes: Sequence[Sequence[int]]) -> list[str]:
    """The checkpoints hold one list of lane states per compiled program (``runner.programs``):
    a run whose lanes were grouped into other programs cannot restore them. A run that recorded
    no grouping compiled all its lanes into one."""
    stored = meta.get(PROGRAMS_KEY) or [list(range(len(meta.get("lanes") or sweep.expand(cfg.sweep))))]
    now = [list(group) for group in program_lanes]
    if [list(g) for g in stored] == now:
        return []
    hint = "false" if len(stored) == 1 else "true"
    return [f"how lanes are compiled into programs (stored: {len(stored)} program(s), now: {len(now)}; resume with "
            f"--set run.split_programs={hint})"]


def check_force_new(out: str | Path) -> None:
    """``--force-new`` deletes the checkpoints and results in ``out``: refuse a folder that is no
    run's own (the current folder, one above it, the home folder, the root), before any work."""
    if not str(out).strip():
        raise ConfigError("--out is empty; name the run's own folder, e.g. --out results/my-run")
    resolved = Path(out).expanduser().resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents or resolved == Path.home().resolve():
        raise ConfigError(f"--force-new deletes the checkpoints and results in --out, and --out {out} is "
                          f"{resolved}, not a run's own folder; name one, e.g. --out results/my-run")


def check_layout(out: Path, checkpoints: bool) -> None:
    """Refuse, before any training, an output folder where a run's files cannot go: a folder in
    place of ``results.csv`` (found otherwise only when the first task ends), or a file in place of
    ``checkpoints/`` when the run saves checkpoints."""
    for name in (results.RESULTS_FILE, results.CONFIG_FILE, results.EPOCHS_FILE):
        if (out / name).is_dir():
            raise ConfigError(f"{out / name} is a folder, where the run writes its {name}; move it away or "
                              "choose another --out")
    path = out / checkpoint.CHECKPOINT_DIR
    if checkpoints and path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is not a folder, where the run saves its checkpoints; move it away or choose "
                          "another --out")


def prepare_output(cfg: ExperimentConfig, out: Path, force_new: bool, fresh_states: list[Any],
                   echo: Callable[[str], None], program_lanes: Sequence[Sequence[int]] | None = None) -> Resumed | None:
    """Start over, resume from the latest verified checkpoint, or refuse to mix two runs.

    The stored config is compared with ``cfg`` before anything is restored, so a changed key is
    named instead of surfacing as unreadable checkpoints. Nothing finished is deleted without
    ``force_new``: a folder whose results are complete but whose checkpoints are unusable keeps
    its results (``Resumed.complete``); one whose partial results have no usable checkpoint (a
    run killed before its first save) starts over, results being a deterministic function of the
    config, and keeps the old rows beside the new ones (``results.set-aside-1.csv``).
    """
    table = out / results.RESULTS_FILE
    if force_new:
        check_force_new(out)
        check_layout(out, checkpoints=cfg.run.checkpoint_every > 0)
        if checkpoint.has_checkpoints(out) or (out / checkpoint.CHECKPOINT_DIR).is_dir():
            checkpoint.Checkpointer(out).delete_all()
        _unlink_on_main(table)
        return None
    has_checkpoints, has_rows = checkpoint.has_checkpoints(out), table.is_file()
    meta, why = _stored_meta(out) if has_checkpoints or has_rows else (None, "")
    sharding.barrier("output: read")  # before process 0 moves anything there
    if not (has_checkpoints or has_rows):
        check_layout(out, checkpoints=cfg.run.checkpoint_every > 0)
        return None
    if meta is None:
        raise OutputExistsError(f"{out} holds results or checkpoints but {why}, so they cannot be matched to this "
                                "run; choose another --out, or pass --force-new to delete them")
    stored_format = meta.get("state_format", 1)
    if has_checkpoints and stored_format != engine.STATE_FORMAT:
        raise ConfigError(f"cannot resume {out}: its checkpoints hold lane states of format {stored_format}, this "
                          f"version of gradual-jax reads format {engine.STATE_FORMAT} ({engine.STATE_FORMAT_CHANGE}); "
                          "pass --force-new to recompute the run there (results are deterministic), or choose "
                          "another --out")
    mismatched = _differences(meta, cfg)
    if has_checkpoints and program_lanes is not None:
        mismatched += _program_differences(meta, cfg, program_lanes)
    if mismatched:
        raise ConfigError(f"cannot resume {out}: the run there differs in " + "; ".join(mismatched)
                          + "; run the same config to resume it, or choose another --out for this one")
    restored = None
    if has_checkpoints:
        saved = checkpoint.Checkpointer(out, verified=bool(meta.get(VERIFIED_KEY)))
        restored = saved.restore_latest(like=fresh_states)
        saved.close()
    if restored is None:
        return _without_checkpoint(cfg, out, fresh_states, echo)
    step, states, record = restored
    if step > cfg.task.num_tasks:
        raise ConfigError(f"task.num_tasks={cfg.task.num_tasks} is below the {step} tasks {out} has finished; "
                          f"keep task.num_tasks >= {step} to resume it (its rows would otherwise be cut)")
    rows = record["rows"]
    if cfg.run.on_nonfinite == "stop":
        stop_if_nonfinite(rows, out)
    echo(f"resuming from the checkpoint after task {step - 1} ({out / checkpoint.CHECKPOINT_DIR / str(step)})")
    return Resumed(start_task=step, states=states, rows=rows)


def _without_checkpoint(cfg: ExperimentConfig, out: Path, fresh_states: list[Any],
                        echo: Callable[[str], None]) -> Resumed | None:
    """No usable checkpoint: keep complete results as they are; set partial ones aside and start over."""
    table = out / results.RESULTS_FILE
    done = complete_tasks(table, len(sweep.expand(cfg.sweep)))
    if done is not None and done > cfg.task.num_tasks:
        raise ConfigError(f"task.num_tasks={cfg.task.num_tasks} is below the {done} tasks {table} holds; keep "
                          f"task.num_tasks >= {done} to resume it (its rows would otherwise be cut)")
    if done == cfg.task.num_tasks:
        echo(f"{out} has no usable checkpoint, but {table} holds every task of the run: kept as it is (pass "
             "--force-new to recompute it)")
        return Resumed(start_task=done, states=fresh_states, rows=[], complete=True)
    check_layout(out, checkpoints=cfg.run.checkpoint_every > 0)
    kept = [_set_aside(out / name) for name in (results.RESULTS_FILE, results.EPOCHS_FILE)]
    echo(f"{out} has no usable checkpoint to resume from; starting over (results are deterministic; the rows "
         f"there are kept as {kept[0].name})")
    return None


def complete_tasks(table: Path, num_lanes: int) -> int | None:
    """How many tasks ``table`` holds in full (every lane's row of tasks 0..n-1, each once, no row
    cut short); None when it holds anything else (a gap, a cut row, a foreign table)."""
    if not table.is_file() or storage.cut_row(table) is not None:
        return None
    try:
        frame = pd.read_csv(table, usecols=["lane", "task"])
    except (ValueError, pd.errors.ParserError, OSError):
        return None
    if frame.empty or frame.isna().any().any():
        return None
    pairs = set(zip(frame["lane"].astype(int), frame["task"].astype(int)))
    tasks = int(frame["task"].max()) + 1
    expected = {(lane, task) for lane in range(num_lanes) for task in range(tasks)}
    return tasks if len(frame) == len(pairs) and pairs == expected else None


def _set_aside(path: Path) -> Path:
    """Rename ``path`` (if present) to the first free ``<stem>.set-aside-<n><suffix>``; its new name."""
    n = 1
    while (target := path.with_name(SET_ASIDE.format(stem=path.stem, n=n, suffix=path.suffix))).exists():
        n += 1
    if path.exists():
        sharding.on_main_process(lambda: path.rename(target), f"rename {path}")
    return target


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
