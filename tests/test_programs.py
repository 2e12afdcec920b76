"""A sweep that mixes mitigation methods compiles one program per structure: the lanes' results
are those of one program with every method, and resuming checks the checkpoints' grouping."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax.config import ConfigError, apply_overrides
from gradual_jax.runner import programs, results, sweep, train
from tests.conftest import Stop, stop_after

MIXED = ["data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16", "protocol.batch_size=16",
         "sweep.seeds=0,1", "sweep.schedules=abrupt,output_interp", "sweep.deltas=0.5",
         "sweep.methods=none,l2,redo,spectral", "mitigations.redo_every=4", "diagnostics.enabled=false"]


def mixed(*extra):
    return apply_overrides(experiments.get_config("fig1-mnist", "cpu"), [*MIXED, *extra])


def test_lanes_group_by_the_structure_their_method_needs():
    cfg = mixed("task.num_tasks=2")
    lanes = sweep.expand(cfg.sweep)
    # schedule, method, Δ, rate, seed (innermost): abrupt×{none,l2,redo,spectral}×2 seeds, then Δ = 0.5 ×2 seeds
    assert [(lane.schedule, lane.method) for lane in lanes][::2] == [
        ("abrupt", "none"), ("abrupt", "l2"), ("abrupt", "redo"), ("abrupt", "spectral"), ("output_interp", "none")]
    assert programs.structure_groups(lanes, cfg) == [(0, 1, 8, 9), (2, 3), (4, 5), (6, 7)]
    one = apply_overrides(cfg, ["run.split_programs=false"])
    assert programs.structure_groups(lanes, one) == [tuple(range(10))]


def test_in_lane_order_puts_each_programs_values_back_in_place():
    class Part:
        def __init__(self, lanes):
            self.lanes = lanes

    parts = [Part((0, 3)), Part((1,)), Part((2, 4))]
    values = [{"a": np.array([10, 13])}, {"a": np.array([11])}, {"a": np.array([12, 14])}]
    np.testing.assert_array_equal(programs.in_lane_order(parts, values)["a"], [10, 11, 12, 13, 14])


def quiet_run(cfg, out, **kwargs):
    return train.run(cfg, out, progress=False, echo=lambda *_: None, **kwargs)


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_split_programs_equal_one_program_and_resume_checks_the_grouping(tmp_path):
    one = quiet_run(mixed("task.num_tasks=3", "run.split_programs=false"), tmp_path / "one")
    split = quiet_run(mixed("task.num_tasks=3"), tmp_path / "split")
    pd.testing.assert_frame_equal(split.reset_index(drop=True), one.reset_index(drop=True), check_exact=False,
                                  rtol=1e-5, atol=1e-6)
    meta = json.loads((tmp_path / "split" / results.CONFIG_FILE).read_text())
    assert meta["program_lanes"] == [[0, 1, 8, 9], [2, 3], [4, 5], [6, 7]]
    assert json.loads((tmp_path / "one" / results.CONFIG_FILE).read_text())["program_lanes"] == [list(range(10))]
    chunked = quiet_run(mixed("task.num_tasks=3", "run.lanes_per_chunk=3"), tmp_path / "chunked")
    pd.testing.assert_frame_equal(chunked.reset_index(drop=True), one.reset_index(drop=True), check_exact=False,
                                  rtol=1e-5, atol=1e-6)

    # checkpoints of one program cannot be restored into four: refused in one line, naming the way out
    out = tmp_path / "resumed"
    with pytest.raises(Stop):
        quiet_run(mixed("task.num_tasks=3", "run.split_programs=false"), out, on_task_end=stop_after(0))
    with pytest.raises(ConfigError) as err:
        quiet_run(mixed("task.num_tasks=3"), out)
    assert "\n" not in str(err.value) and "--set run.split_programs=false" in str(err.value)
    resumed = quiet_run(mixed("task.num_tasks=3", "run.split_programs=false"), out)
    assert json.loads((out / results.CONFIG_FILE).read_text())["resumed_from_task"] == 1
    pd.testing.assert_frame_equal(resumed.reset_index(drop=True), one.reset_index(drop=True), check_exact=True)
