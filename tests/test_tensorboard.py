"""TensorBoard event files (`run.tensorboard=true`): read back with TensorBoard's own reader and
compared with results.csv, across an interrupted and resumed run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax import config as config_lib
from gradual_jax.runner import results, tensorboard_log
from gradual_jax.config import ConfigError, apply_overrides, tensorboard, validate

TINY = ["data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16", "protocol.batch_size=16",
        "task.num_tasks=4", "sweep.seeds=0,1", "sweep.deltas=0.5", "diagnostics.enabled=false",
        "run.checkpoint_every=2", "run.tensorboard=true"]


def test_missing_writer_is_refused_at_validation(monkeypatch):
    monkeypatch.setattr(tensorboard, "installed", lambda: False)
    cfg = apply_overrides(experiments.get_config("fig1-mnist", "cpu"), ["run.tensorboard=true"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value) == ("run.tensorboard=true needs tensorboardX, which is not installed: "
                              "pip install -e '.[tensorboard]'")
    validate(apply_overrides(cfg, ["run.tensorboard=false"]))  # off: nothing is needed


def test_a_config_json_without_the_key_still_resumes():
    """Runs made before run.tensorboard existed: the key is filled with its default on reading,
    and switching it on or off is no reason to refuse a resume."""
    cfg = experiments.get_config("fig1-mnist", "cpu")
    stored = config_lib.to_dict(cfg)
    del stored["run"]["tensorboard"]
    assert config_lib.from_dict(stored).run.tensorboard is False
    for value in ("false", "true"):
        assert config_lib.resume_mismatches(stored, apply_overrides(cfg, [f"run.tensorboard={value}"])) == []


@pytest.mark.parametrize("index,arm,seed,expected", [
    (3, "output_interp Δ=0.1", 1, "lane003-output_interp_d0.1-seed1"),
    (0, "abrupt + redo", 0, "lane000-abrupt_redo-seed0"),
    (12, "abrupt, lr=0.001", 2, "lane012-abrupt_lr0.001-seed2"),
])
def test_run_names(index, arm, seed, expected):
    assert tensorboard_log.run_name(index, arm, seed) == expected


def read_runs(root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        reader = EventAccumulator(str(run))
        reader.Reload()
        runs[run.name] = reader
    return runs


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_event_files_equal_results_across_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from gradual_jax.runner import train

    class Interrupted(Exception):
        pass

    def stop_after_task_2(task, rows):
        if task == 2:  # its points are written, its checkpoint is not (checkpoints after tasks 1 and 3)
            raise Interrupted

    cfg = apply_overrides(experiments.get_config("fig1-mnist", "cpu"), TINY)
    quiet = dict(progress=False, echo=lambda *_: None)
    with pytest.raises(Interrupted):
        train.run(cfg, tmp_path, on_task_end=stop_after_task_2, **quiet)
    first_session = {p.parent.name: p for p in (tmp_path / "tensorboard").glob("*/events.out.tfevents.*")}
    train.run(cfg, tmp_path, **quiet)
    assert json.loads((tmp_path / "config.json").read_text())["resumed_from_task"] == 2

    table = pd.read_csv(tmp_path / "results.csv")
    lanes = table.drop_duplicates("lane").sort_values("lane")
    epochs = 2 * (1 + cfg.protocol.transition_ratio)  # (1+k)·E epochs per task
    runs = read_runs(tmp_path / "tensorboard")
    assert list(runs) == [tensorboard_log.run_name(r.lane, r.arm, r.seed) for r in lanes.itertuples()]
    for lane, reader in zip(lanes["lane"], runs.values()):
        rows = table[table["lane"] == lane].sort_values("task")
        readout = 2 - 1 if rows["schedule"].iloc[0] != "abrupt" else epochs - 1  # E−1 or (1+k)E−1
        for column in ("online_train_acc", "online_train_loss", "online_train_acc_at_E", "train_acc", "train_loss"):
            points = reader.Scalars(f"task/{column}")
            assert [p.step for p in points] == [task * epochs + readout for task in range(4)], column
            np.testing.assert_allclose([p.value for p in points], rows[column], rtol=1e-6)
        assert "task/test_acc" not in reader.Tags()["scalars"]  # random labels: no test split, no NaN points
        for tag in ("epoch/online_train_acc", "epoch/online_train_loss"):
            assert [p.step for p in reader.Scalars(tag)] == list(range(int(4 * epochs))), tag
        # the epoch curve at the readout epoch is the row's online number
        curve = {p.step: p.value for p in reader.Scalars("epoch/online_train_acc")}
        np.testing.assert_allclose([curve[task * epochs + readout] for task in range(4)], rows["online_train_acc"],
                                   rtol=1e-6)
        (text,) = reader.Tensors("lane/text_summary")
        assert text.tensor_proto.string_val[0].decode().startswith(f"lane {lane}: ")

    # the interrupted session had written task 2, which the resumed one wrote again: the reader
    # keeps the resumed points only (the restart marker), so the check above saw each step once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    name = next(iter(runs))
    old = EventAccumulator(str(first_session[name]))
    old.Reload()
    assert len(old.Scalars("task/train_acc")) == 3


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_a_run_from_task_0_replaces_old_event_files(tmp_path):
    """Event files an earlier run left in the folder (its results are replaced too) are removed."""
    pytest.importorskip("tensorboard")
    from gradual_jax.runner import train

    stale = tmp_path / "tensorboard" / "lane000-output_interp_d0.1-seed5"
    stale.mkdir(parents=True)
    (stale / "events.out.tfevents.1.host").write_bytes(b"")
    cfg = apply_overrides(experiments.get_config("fig1-mnist", "cpu"),
                          TINY + ["task.num_tasks=1", "sweep.schedules=abrupt", "sweep.seeds=0"])
    train.run(cfg, tmp_path, progress=False, echo=lambda *_: None)
    (run,) = (tmp_path / "tensorboard").iterdir()
    assert run.name == "lane000-abrupt-seed0" and len(list(run.glob("events.out.tfevents.*"))) == 1
    table = results.read_table(tmp_path / "results.csv")
    (reader,) = read_runs(tmp_path / "tensorboard").values()
    np.testing.assert_allclose([p.value for p in reader.Scalars("task/train_acc")], table["train_acc"], rtol=1e-6)
