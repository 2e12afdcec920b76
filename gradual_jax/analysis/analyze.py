"""Post-hoc diagnostics from a run's parameter snapshots (``gradual-jax analyze DIR``).

For runs made before a diagnostic existed, or to recompute with costlier settings (more
probe inputs, more power iterations): the snapshots that ``run.snapshot_every`` kept are
restored and passed through the same :func:`gradual_jax.core.engine.diagnose_readout` the run
uses. The values go into their own file, ``DIR/diagnostics.csv`` (one row per lane × snapshot
task: the lane columns, then one column per diagnostic, named as in ``results.csv``), with the
settings used in ``DIR/diagnostics.json``; ``results.csv`` stays as the run wrote it, so the
in-run numbers remain what the run measured. ``results.read_run_table`` reads both together.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from gradual_jax.runner import build, checkpoint, programs, resume, results, sharding, storage, sweep
from gradual_jax.core import engine
from gradual_jax import config as config_lib
from gradual_jax.config import ConfigError


def load_run_config(run_dir: Path) -> config_lib.ExperimentConfig:
    path = Path(run_dir) / results.CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a gradual-jax run directory")
    return config_lib.from_dict(json.loads(path.read_text())["config"])


def analyze(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (),
            echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Recompute the diagnostics of every snapshot task, write them to ``DIR/diagnostics.csv``
    (and the settings to ``DIR/diagnostics.json``) and return that table."""
    run_dir = Path(run_dir)
    for item in overrides:
        if not item.startswith("diagnostics."):
            raise ConfigError(f"analyze: only diagnostics.* settings can change, not {item.split('=')[0]!r}")
    cfg = config_lib.apply_overrides(load_run_config(run_dir), list(overrides))
    cfg = config_lib.validate(dataclasses.replace(cfg, diagnostics=dataclasses.replace(cfg.diagnostics, enabled=True)))
    store = checkpoint.Checkpointer(run_dir, name=checkpoint.SNAPSHOT_DIR, keep=None)
    steps = store.steps()
    if not steps:
        raise FileNotFoundError(f"{run_dir / checkpoint.SNAPSHOT_DIR} holds no snapshots; rerun with "
                                "--set run.snapshot_every=1 (or N) to keep them")
    lanes = sweep.expand(cfg.sweep)
    prepared = build.prepare_data(cfg)
    stored = json.loads((run_dir / results.CONFIG_FILE).read_text()).get(resume.PROGRAMS_KEY)
    lane_programs = programs.build_all(cfg, lanes, prepared, groups=stored or [range(len(lanes))])
    data = lane_programs[0].layout.replicate(prepared.task_data)
    # a snapshot is (readout parameters, readout batch statistics) of every chunk of every program, in turn
    chunks = [(p, h) for p in lane_programs for h in p.hparams]
    like = [jax.jit(jax.vmap(lambda hp, program=p.program: engine.init_variables(program, hp.seed)),
                    out_shardings=p.layout.lane_sharding)(h) for p, h in chunks]
    program = lane_programs[0].program  # the readout's diagnostics do not depend on the mitigations compiled in
    diagnose = jax.jit(jax.vmap(lambda hp, now, prev, task: engine.diagnose_readout(
        program, hp.seed, now[0], prev[0], task, data, now[1], prev[1]), in_axes=(0, 0, 0, None)))

    identity = diagnostics_identity(lanes)
    rows = []
    for task in steps:
        params, _ = store.restore(task, like)
        if task - 1 in steps:
            previous, known = store.restore(task - 1, like)[0], True
        else:  # before task 0 the previous readout is the initialisation
            previous, known = (like if task == 0 else params), task == 0
        per_chunk = iter([sharding.to_host(diagnose(h, p, q, task))
                          for (_, h), p, q in zip(chunks, params, previous)])
        values = programs.in_lane_order(lane_programs, [p.layout.join([next(per_chunk) for _ in p.hparams])
                                                        for p in lane_programs])
        if not known:
            values["representation_change"] = np.full(len(lanes), math.nan)
        rows += [{**identity[lane], "task": task,
                  **{name: float(np.asarray(column)[lane]) for name, column in values.items()}}
                 for lane in range(len(lanes))]
        echo(f"task {task}: diagnostics of {len(lanes)} lanes recomputed")
    store.close()
    table = pd.DataFrame(rows)
    storage.atomic_write_text(run_dir / results.DIAGNOSTICS_FILE, table.to_csv(index=False))
    settings = {"diagnostics": dataclasses.asdict(cfg.diagnostics), "snapshot_tasks": steps,
                "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    storage.atomic_write_text(run_dir / results.DIAGNOSTICS_SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
    return table


def diagnostics_identity(lanes: list[sweep.Lane]) -> list[dict]:
    """Per lane, the columns that name it in ``diagnostics.csv`` (a subset of ``results.csv``'s)."""
    arms = results.lane_arms(lanes)
    return [{"lane": i, "seed": lane.seed, "schedule": lane.schedule, "method": lane.method,
             "delta": math.nan if lane.delta is None else lane.delta, "learning_rate": lane.learning_rate,
             "arm": arms[i]} for i, lane in enumerate(lanes)]
