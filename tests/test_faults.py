"""Fault injection: damaged checkpoints, concurrent runs, full disks, interrupts, changed configs.

Each fault is injected into a tiny run and the outcome is compared with an uninterrupted run
(results equal) or checked for its exact exit status and message.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import orbax.checkpoint as ocp
import pandas as pd
import pytest

from gradual_jax.analysis import search
from gradual_jax.runner import checkpoint, outlock, resume, results, train
from gradual_jax import cli
from gradual_jax.config import ConfigError
from tests.test_checkpoint import (ROOT, TINY, Stop, quiet_run, reference, sigkill_when, stop_after,  # noqa: F401
                                   tiny)
pytestmark = [pytest.mark.needs_mnist, pytest.mark.slow]

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


def epochs_match_results(out) -> bool:
    """``epochs.csv`` holds exactly the (lane, task) pairs of ``results.csv``."""
    table = pd.read_csv(out / results.RESULTS_FILE)
    curves = results.read_epochs(out / results.EPOCHS_FILE)
    return set(zip(table["lane"], table["task"])) == set(zip(curves["lane"], curves["task"]))


def test_rows_without_a_committed_checkpoint_start_over_and_keep_the_old_rows(tmp_path, reference):
    stopped_after_task_2(tmp_path)
    partial = (tmp_path / results.RESULTS_FILE).read_bytes()
    for step in (tmp_path / checkpoint.CHECKPOINT_DIR).iterdir():  # as if killed before the first save
        if step.name.isdigit():
            shutil.rmtree(step)
    said = []
    train.run(tiny(), tmp_path, progress=False, echo=said.append)
    assert any("starting over" in line and "results.set-aside-1.csv" in line for line in said)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert (tmp_path / "results.set-aside-1.csv").read_bytes() == partial  # set aside, not deleted
    assert epochs_match_results(tmp_path)


@pytest.mark.parametrize("damage", ["checkpoints_replaced_by_a_file", "checkpoints_removed", "all_steps_damaged"])
def test_complete_results_are_kept_when_the_checkpoints_are_unusable(tmp_path, reference, damage):
    quiet_run(tiny(), tmp_path)
    table, curves = (tmp_path / results.RESULTS_FILE).read_bytes(), (tmp_path / results.EPOCHS_FILE).read_bytes()
    checkpoints = tmp_path / checkpoint.CHECKPOINT_DIR
    if damage == "all_steps_damaged":
        shutil.rmtree(checkpoints / checkpoint.MANIFEST_DIR)  # no step can be verified
    else:
        shutil.rmtree(checkpoints)
        if damage == "checkpoints_replaced_by_a_file":
            checkpoints.write_text("not a folder")
    (tmp_path / "figure.png").write_bytes(b"")  # as if killed while the figure was written
    said = []
    train.run(tiny(), tmp_path, progress=False, echo=said.append, reporting=cli.run_reporting())
    assert any("holds every task of the run: kept as it is" in line for line in said)
    assert (tmp_path / results.RESULTS_FILE).read_bytes() == table  # not recomputed, not rewritten
    assert (tmp_path / results.EPOCHS_FILE).read_bytes() == curves
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert (tmp_path / "figure.png").stat().st_size > 0  # redrawn
    assert json.loads((tmp_path / results.CONFIG_FILE).read_text())["status"] == "finished"


def test_a_missing_manifest_folder_does_not_skip_verification(tmp_path, reference):
    """A run that writes manifests says so in config.json: removing the folder cannot make a
    damaged step pass unverified."""
    checkpoints = stopped_after_task_2(tmp_path)
    assert json.loads((tmp_path / results.CONFIG_FILE).read_text())[resume.VERIFIED_KEY] is True
    shutil.rmtree(checkpoints / checkpoint.MANIFEST_DIR)
    target = largest_file(checkpoints / "3")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.warns(checkpoint.CheckpointWarning, match="no manifest"):
        quiet_run(tiny(), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert resumed_from(tmp_path) == 0 and (checkpoints / "unreadable-3").is_dir()
    assert epochs_match_results(tmp_path)


def test_force_new_refuses_the_current_folder_and_deletes_nothing(tmp_path, monkeypatch):
    (tmp_path / results.RESULTS_FILE).write_text("lane,task\n0,0\n")
    monkeypatch.chdir(tmp_path)
    for out in ("", ".", str(tmp_path)):
        with pytest.raises(ConfigError, match="--out is empty|--force-new deletes the checkpoints and results"):
            quiet_run(tiny(), out, force_new=True)
    assert (tmp_path / results.RESULTS_FILE).read_text() == "lane,task\n0,0\n"


def test_a_kill_while_the_figure_is_drawn_leaves_the_run_unfinished_and_the_rerun_draws_it(tmp_path, reference,
                                                                                             monkeypatch):
    from gradual_jax.analysis import plotting

    real = plotting.plot_runs
    monkeypatch.setattr(plotting, "plot_runs", lambda *a, **k: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        quiet_run(tiny(), tmp_path, reporting=cli.run_reporting())
    assert json.loads((tmp_path / results.CONFIG_FILE).read_text())["status"] == "running"  # finished comes last
    assert not search.finished(tiny(), tmp_path)
    monkeypatch.setattr(plotting, "plot_runs", real)
    quiet_run(tiny(), tmp_path, reporting=cli.run_reporting())
    assert search.finished(tiny(), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    (tmp_path / "figure-summary.md").write_bytes(b"")  # a summary lost after the fact: not finished any more
    assert not search.finished(tiny(), tmp_path)
    for garbage in (b"\xff\xfe\x00", b"[1, 2]", b'{"status": "finished", "config": 3}'):
        (tmp_path / results.CONFIG_FILE).write_bytes(garbage)
        assert not search.finished(tiny(), tmp_path)  # no traceback: run again, which says why in one line


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
    assert err == ["interrupted (SIGINT); run the same command again to resume from the last checkpoint"]
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


ORBAX_FULL = ('RESOURCE_EXHAUSTED: Error writing "0.opt_state.0.count/0" in OCDBT database: Failed to write 13260 '
              "bytes to file 15: No space left on device [os_error_code='28']")
ORBAX_READ_ONLY = "FAILED_PRECONDITION: Error opening file: Read-only file system [os_error_code='30']"


@pytest.mark.parametrize("message,strerror", [(ORBAX_FULL, os.strerror(errno.ENOSPC)),
                                              (ORBAX_READ_ONLY, os.strerror(errno.EROFS))])
def test_a_save_that_fails_in_orbax_threads_exits_4_in_one_line(tmp_path, reference, capsys, monkeypatch, message,
                                                                strerror):
    """Orbax/tensorstore report a full disk or a read-only file system as ValueError from their
    threads; the run reports it as one line and exit 4, and the same command resumes."""
    real = ocp.CheckpointManager.wait_until_finished
    calls = []

    def fails_on_the_third_wait(self):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError(message)
        return real(self)

    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", fails_on_the_third_wait)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == cli.EXIT_IO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and strerror in err[0] and "run the same command again" in err[0]
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", real)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert epochs_match_results(tmp_path)


def test_a_save_that_never_finishes_is_given_up_within_its_bound(tmp_path, capsys, monkeypatch):
    """A file system that stops answering (a hung mount): the wait is bounded, the run exits 4."""
    monkeypatch.setattr(checkpoint, "SAVE_WAIT_S", 2.0)
    monkeypatch.setattr(checkpoint, "STOP_WAIT_S", 1.0)
    never = threading.Event()
    real = ocp.CheckpointManager.wait_until_finished

    def stuck_when_awaited(self):  # the run's own waits for a save never return; Orbax's inner ones do
        return never.wait() if threading.current_thread().name == "checkpoint-wait" else real(self)

    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", stuck_when_awaited)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == cli.EXIT_IO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not finish within 2 s" in err[0]
    never.set()  # lets the helper threads end


def tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``, or skip where this machine does not allow it."""
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    tmpfs(disk, "600k")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def cli_process(out, *extra):
    return [sys.executable, "-m", "gradual_jax.cli", *CLI_TINY, "--out", str(out), *extra]


def test_a_real_full_disk_exits_4_in_one_line_and_the_rerun_resumes_exactly(small_disk, reference):
    """A 600 KiB tmpfs: the first checkpoint does not fit (tensorstore's RESOURCE_EXHAUSTED)."""
    out = small_disk / "run"
    done = subprocess.run(cli_process(out), capture_output=True, text=True, cwd=ROOT, timeout=600)
    err = done.stderr.strip().splitlines()
    assert done.returncode == cli.EXIT_IO, done.stderr[-2000:]
    assert len(err) == 1 and os.strerror(errno.ENOSPC) in err[0] and "Traceback" not in done.stderr, done.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    done = subprocess.run(cli_process(out), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(out / results.RESULTS_FILE), reference, check_exact=True)
    assert epochs_match_results(out)


def signal_when(argv, signum, ready, timeout=300):
    """Start ``argv``, send ``signum`` once ``ready()`` holds; its (exit status, stderr)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before the signal"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_a_safe_point_in_one_line_and_the_rerun_resumes_exactly(tmp_path, signum, code):
    slow = ["--set", "protocol.epochs_per_task=20"]  # seconds per task, so the signal lands mid-run
    out = tmp_path / "signalled"

    def two_tasks_written():
        table = out / results.RESULTS_FILE
        return table.exists() and table.read_text().count("\n") > 2 * 4

    status, err = signal_when(cli_process(out, *slow), signum, two_tasks_written)
    name = signal.Signals(signum).name
    assert status == code
    assert err.strip().splitlines() == [f"interrupted ({name}); run the same command again to resume from the last "
                                        "checkpoint"]
    assert not list((out / checkpoint.CHECKPOINT_DIR).glob("*.orbax-checkpoint-tmp*"))  # the save was awaited
    stopped_at = pd.read_csv(out / results.RESULTS_FILE)["task"].max()
    assert stopped_at < 4 and epochs_match_results(out)
    assert cli.main([*CLI_TINY, "--out", str(out), *slow]) == 0
    assert resumed_from(out) == stopped_at + 1  # the checkpoint of the last task written was completed
    assert cli.main([*CLI_TINY, "--out", str(tmp_path / "uninterrupted"), *slow]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / results.RESULTS_FILE),
                                  pd.read_csv(tmp_path / "uninterrupted" / results.RESULTS_FILE), check_exact=True)


def test_ctrl_c_while_compiling_stops_the_run_before_any_task(tmp_path, capsys, monkeypatch):
    """The handler records the signal (raising inside XLA's callbacks would be swallowed); the run
    stops at the first safe point after the compiler returns."""
    real = train._check_memory

    def signal_while_compiling(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(train, "_check_memory", signal_while_compiling)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main([*CLI_TINY, "--out", str(tmp_path)]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip().startswith("interrupted (SIGINT)")
    assert not (tmp_path / results.RESULTS_FILE).exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are given back


def test_leave_does_not_wait_for_a_stuck_thread():
    """The command's last step after a fault: a non-daemon thread blocked forever cannot hold the
    process at exit."""
    script = ("import threading\n"
              "from gradual_jax.runner import signals\n"
              "threading.Thread(target=threading.Event().wait).start()\n"
              "signals.leave(4, wait_s=0.5)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == 4 and done.stderr == b""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    quiet_run(tiny(3), out)
    return out


def test_plot_and_report_refuse_a_cut_row_naming_file_and_line(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    table = run / results.RESULTS_FILE
    text = table.read_text()
    lines = text.count("\n")
    table.write_text(text[:-20])  # the last row cut inside its last fields
    for argv in (["plot", str(run)], ["report", str(run), "--out", str(tmp_path / "report.md")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {table}, line {lines}: a row cut short (the file was cut while written or copied); "
                       "rerun the run's command to rewrite it")
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize("target", ["/dev/null", "FOLDER", ""])
def test_plot_refuses_an_out_that_is_no_regular_file(finished_run, tmp_path, capsys, target):
    out = str(tmp_path) if target == "FOLDER" else target
    before = set(os.listdir("/dev")), set(os.listdir(tmp_path))
    assert cli.main(["plot", str(finished_run), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err
    assert (set(os.listdir("/dev")), set(os.listdir(tmp_path))) == before  # nothing written


def test_plot_says_when_a_run_is_writing_the_folder(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    with outlock.hold(run):
        assert cli.main(["plot", str(run)]) == 0
    assert f"note: {run} is in use by a run (process {os.getpid()})" in capsys.readouterr().err


@pytest.mark.parametrize("stored", ['{"config": {"name": "x"}}', '["not", "a", "run"]', "\x00garbage"])
def test_a_config_json_of_the_wrong_shape_is_named_as_such(tmp_path, stored):
    stopped_after_task_2(tmp_path)
    (tmp_path / results.CONFIG_FILE).write_text(stored)
    with pytest.raises(resume.OutputExistsError, match="config.json that") as err:
        quiet_run(tiny(), tmp_path)
    assert "format" not in str(err.value) and checkpoint.has_checkpoints(tmp_path)  # nothing deleted


def test_a_second_signal_ends_a_process_whose_main_thread_is_stuck(tmp_path):
    """The first SIGTERM is recorded for the next safe point; a main thread blocked for good (a
    wait on a dead mount) never reaches one, so the second ends the process at once."""
    script = ("import os, signal, threading, time\n"
              "from gradual_jax.runner import signals\n"
              "with signals.stop_requests() as stop:\n"
              "    os.kill(os.getpid(), signal.SIGTERM)\n"
              "    time.sleep(0.2)\n"
              "    assert stop.signum == signal.SIGTERM\n"
              "    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
              "    threading.Event().wait()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 143
    assert done.stderr.strip().splitlines() == ["interrupted again (SIGTERM); stopped at once: run the same command "
                                                "again to resume from the last checkpoint"]


@pytest.mark.parametrize("name", [results.RESULTS_FILE, results.EPOCHS_FILE, checkpoint.CHECKPOINT_DIR])
def test_a_run_file_in_the_wrong_form_is_refused_before_training(tmp_path, monkeypatch, name):
    if name == checkpoint.CHECKPOINT_DIR:
        (tmp_path / name).write_text("a file where the checkpoints go")
    else:
        (tmp_path / name).mkdir()
    monkeypatch.setattr(train.engine, "make_task_fn", lambda *a, **k: pytest.fail("compiled despite the folder"))
    with pytest.raises(ConfigError, match=f"{tmp_path / name} is (a|not a) folder"):
        quiet_run(tiny(), tmp_path)


def test_a_disk_that_fills_mid_run_exits_4_in_one_line_and_the_rerun_resumes_exactly(tmp_path):
    """A 64 MiB tmpfs filled to its last blocks once two tasks are written."""
    disk = tmp_path / "disk"
    tmpfs(disk, "64m")
    try:
        out, filler = disk / "run", disk / "filler"
        slow = ["--set", "protocol.epochs_per_task=20"]
        proc = subprocess.Popen(cli_process(out, *slow), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT)
        table = out / results.RESULTS_FILE
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (table.exists() and table.read_text().count("\n") > 2 * 4):
            time.sleep(0.02)
        free = shutil.disk_usage(disk).free
        with open(filler, "wb") as f:  # leaves about 40 KiB
            with contextlib.suppress(OSError):
                f.write(b"\0" * (free - 40 * 1024))
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == cli.EXIT_IO, err[-2000:]
        lines = err.strip().splitlines()
        assert len(lines) == 1 and os.strerror(errno.ENOSPC) in lines[0], err
        filler.unlink()
        assert cli.main([*CLI_TINY, "--out", str(out), *slow]) == 0
        assert cli.main([*CLI_TINY, "--out", str(tmp_path / "uninterrupted"), *slow]) == 0
        pd.testing.assert_frame_equal(pd.read_csv(table),
                                      pd.read_csv(tmp_path / "uninterrupted" / results.RESULTS_FILE), check_exact=True)
        assert epochs_match_results(out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("fault", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   ValueError(ORBAX_READ_ONLY)])
def test_plot_on_a_full_or_read_only_disk_exits_4_in_one_line(finished_run, tmp_path, capsys, monkeypatch, fault):
    from gradual_jax.runner import storage

    def fails(path, write):
        raise fault

    monkeypatch.setattr(storage, "atomic_write", fails)
    target = tmp_path / "figure.png"
    assert cli.main(["plot", str(finished_run), "--out", str(target)]) == cli.EXIT_IO
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write the figure") and "Traceback" not in err[0]
    assert not target.exists()


@pytest.fixture
def search_file(tmp_path):
    path = tmp_path / "tiny_search.py"
    path.write_text("from gradual_jax import experiments\n"
                    "from gradual_jax.analysis.search import Candidate\n"
                    "from gradual_jax.config import apply_overrides\n"
                    f"TINY = {[*TINY, 'task.num_tasks=3']!r}\n"
                    "PRESETS = {'cpu': lambda: apply_overrides(experiments.get_config('fig1-mnist', 'cpu'), TINY)}\n"
                    "SEARCH = (Candidate('only', ()),)\n")
    return path


def test_search_redraws_a_finished_candidate_with_an_empty_figure_and_names_a_garbage_config(search_file, tmp_path,
                                                                                             capsys):
    argv = ["search", str(search_file), "--out", str(tmp_path / "search"), "--no-progress"]
    assert cli.main(argv) == 0
    run = tmp_path / "search" / "only"
    table = (run / results.RESULTS_FILE).read_bytes()
    (run / "figure.png").write_bytes(b"")  # killed while the figure was written, as an older version left it
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "finished earlier" not in capsys.readouterr().out  # re-checked, so run again: it resumes and redraws
    assert (run / "figure.png").stat().st_size > 0 and (run / results.RESULTS_FILE).read_bytes() == table
    (run / results.CONFIG_FILE).write_bytes(b"\xff\xfe garbage")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json that cannot be read" in err[0] and "Traceback" not in err[0]
    assert (run / results.RESULTS_FILE).read_bytes() == table  # nothing deleted
