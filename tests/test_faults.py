"""Fault injection: damaged checkpoints, concurrent runs, full disks, interrupts, changed configs.

Each fault is injected into a tiny run and the outcome is compared with an uninterrupted run
(results equal) or checked for its exact exit status and message.
"""

from __future__ import annotations

import errno
import json
import os

import pandas as pd
import pytest

from gradual_jax.runner import checkpoint, outlock, results, train
from gradual_jax import cli
from gradual_jax.config import ConfigError
from tests.test_checkpoint import (TINY, Stop, quiet_run, reference, sigkill_when, stop_after,  # noqa: F401
                                   tiny)
from tests.test_cli import needs_mnist

pytestmark = [needs_mnist, pytest.mark.slow]

CLI_TINY = ["run", "fig1-mnist", "--preset", "cpu", "--no-progress", "--set", "task.num_tasks=5"] + [
    a for kv in TINY for a in ("--set", kv)]


def stopped_after_task_2(out):
    with pytest.raises(Stop):
        quiet_run(tiny(), out, on_task_end=stop_after(2))
    return out / checkpoint.CHECKPOINT_DIR


def largest_file(step_dir):
    return max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def resumed_from(out) -> int:
    return json.loads((out / results.CONFIG_FILE).read_text())["resumed_from_task"]


@pytest.mark.parametrize("damage", ["flip_one_bit", "truncate", "drop_manifest"])
def test_damaged_checkpoint_is_set_aside_and_results_equal(tmp_path, reference, damage):
    checkpoints = stopped_after_task_2(tmp_path)
    latest = checkpoints / "3"
    if damage == "flip_one_bit":
        target = largest_file(latest)
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target = largest_file(latest)
        target.write_bytes(target.read_bytes()[:-7])
    else:  # a save that completed but was killed before its manifest was written
        (checkpoints / checkpoint.MANIFEST_DIR / "3.json").unlink()
    with pytest.warns(UserWarning, match="set aside"):
        quiet_run(tiny(), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert resumed_from(tmp_path) == 2
    assert (checkpoints / "unreadable-3").is_dir()


def test_setting_the_same_step_aside_twice_does_not_collide(tmp_path, reference):
    checkpoints = stopped_after_task_2(tmp_path)
    (checkpoints / "unreadable-3").mkdir()  # left by an earlier fallback
    (checkpoints / checkpoint.MANIFEST_DIR / "3.json").unlink()
    with pytest.warns(UserWarning, match="set aside"):
        quiet_run(tiny(), tmp_path)
    assert (checkpoints / "unreadable-3-2").is_dir()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)


def test_rows_without_a_committed_checkpoint_start_over(tmp_path, reference):
    stopped_after_task_2(tmp_path)
    for step in (tmp_path / checkpoint.CHECKPOINT_DIR).iterdir():  # as if killed before the first save
        if step.name.isdigit():
            import shutil
            shutil.rmtree(step)
    said = []
    train.run(tiny(), tmp_path, progress=False, echo=said.append)
    assert any("starting over" in line for line in said)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)


def test_sigkill_before_the_first_checkpoint_then_the_same_command_starts_over(tmp_path):
    """Killed after task 0's rows were written but before the first checkpoint (at the end)."""
    import sys
    slow = ["--set", "protocol.epochs_per_task=20", "--set", "run.checkpoint_every=5"]  # seconds per task
    argv = [sys.executable, "-m", "gradual_jax.cli", *CLI_TINY, "--out", str(tmp_path / "killed"), *slow]
    sigkill_when(argv, (tmp_path / "killed" / results.RESULTS_FILE).exists)
    assert not checkpoint.has_checkpoints(tmp_path / "killed")
    assert cli.main([*CLI_TINY, "--out", str(tmp_path / "killed"), *slow]) == 0
    assert cli.main([*CLI_TINY, "--out", str(tmp_path / "uninterrupted"), *slow]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "killed" / results.RESULTS_FILE),
                                  pd.read_csv(tmp_path / "uninterrupted" / results.RESULTS_FILE), check_exact=True)


def test_a_second_run_into_a_busy_folder_exits_2_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "busy"
    with outlock.hold(out):
        for extra in ([], ["--force-new"]):
            assert cli.main([*CLI_TINY, "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err
            assert f"{out} is in use by another run (process {os.getpid()})" in err
    assert not (out / results.RESULTS_FILE).exists()
    assert cli.main([*CLI_TINY, "--out", str(out)]) == 0  # free again once the holder is gone


@pytest.mark.parametrize("writer,code", [("results", errno.ENOSPC), ("checkpoint", errno.ENOSPC),
                                         ("results", errno.EROFS)])
def test_disk_full_mid_run_exits_4_and_the_rerun_resumes_exactly(tmp_path, reference, capsys, monkeypatch, writer,
                                                                  code):
    owner, name = (results, "write_table") if writer == "results" else (checkpoint.Checkpointer, "save")
    real = getattr(owner, name)

    def full_at_task_3(*args):
        rows = args[-1] if writer == "results" else args[-1]["rows"]
        if max(row["task"] for row in rows) == 3:
            raise OSError(code, os.strerror(code), str(tmp_path))
        return real(*args)

    monkeypatch.setattr(owner, name, full_at_task_3)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == cli.EXIT_IO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and os.strerror(code) in err[0] and "run the same command again" in err[0]
    monkeypatch.setattr(owner, name, real)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)


def test_ctrl_c_prints_one_line_and_the_rerun_resumes_exactly(tmp_path, reference, capsys, monkeypatch):
    real = results.write_table

    def interrupt_at_task_2(path, rows):
        out = real(path, rows)
        if max(row["task"] for row in rows) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(results, "write_table", interrupt_at_task_2)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == cli.EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted; run the same command again to resume from the last checkpoint"]
    monkeypatch.setattr(results, "write_table", real)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)


def test_a_run_stopped_for_nan_stays_stopped(tmp_path, capsys):
    argv = [*CLI_TINY, "--out", str(tmp_path), "--set", "sweep.learning_rates=0.001,1e38",
            "--set", "sweep.schedules=abrupt", "--set", "run.on_nonfinite=stop"]
    assert cli.main(argv) == cli.EXIT_NONFINITE
    first = capsys.readouterr().err
    assert cli.main(argv) == cli.EXIT_NONFINITE  # the same command again: still stopped, nothing trained
    again = capsys.readouterr().err
    assert "non-finite loss in lane(s) [2, 3] during task 0" in first and "lane(s) [2, 3]" in again


@pytest.mark.parametrize("change,key", [
    (["--set", "sweep.seeds=0,1,2"], "sweep.seeds"),
    (["--set", "model.hidden_sizes=32"], "model.hidden_sizes"),
    (["--lanes-per-chunk", "2"], "run.lanes_per_chunk"),
    (["--set", "run.vmap_lanes=1"], "run.vmap_lanes"),
])
def test_a_changed_config_is_named_before_anything_is_restored(tmp_path, capsys, change, key):
    assert cli.main([*CLI_TINY, "--out", str(tmp_path), "--set", "task.num_tasks=2"]) == 0
    capsys.readouterr()
    assert cli.main([*CLI_TINY, "--out", str(tmp_path), "--set", "task.num_tasks=3", *change]) == 2
    err = capsys.readouterr().err
    assert key in err and "(stored:" in err and "Event loop" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert checkpoint.has_checkpoints(tmp_path)  # nothing deleted


def test_lowering_num_tasks_on_resume_is_refused(tmp_path, capsys):
    assert cli.main([*CLI_TINY, "--out", str(tmp_path), "--set", "task.num_tasks=3"]) == 0
    rows = pd.read_csv(tmp_path / results.RESULTS_FILE)
    with pytest.raises(ConfigError, match="task.num_tasks=2 is below the 3 tasks"):
        quiet_run(tiny(2), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), rows)


@pytest.mark.parametrize("make_out", ["regular_file", "under_a_file", "read_only"])
def test_an_unwritable_out_exits_2(tmp_path, capsys, monkeypatch, make_out):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker if make_out == "regular_file" else blocker / "run"
    if make_out == "read_only":  # simulated: this suite may run as root, which ignores permissions
        out = tmp_path / "read-only"
        real_open = os.open

        def refuse(path, *args, **kwargs):
            if str(path).startswith(str(out)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(outlock.os, "open", refuse)
    assert cli.main([*CLI_TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write the output folder {out}") and len(err.splitlines()) == 1
