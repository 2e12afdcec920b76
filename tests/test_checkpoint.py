"""Long runs that survive: exact resume, SIGKILL, damaged checkpoints, config checks, sharding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax.runner import checkpoint, resume, results, storage, train
from gradual_jax.config import ConfigError, apply_overrides
from tests.conftest import Stop, stop_after

pytestmark = [pytest.mark.needs_mnist, pytest.mark.slow]

TINY = ["data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16", "protocol.batch_size=16",
        "sweep.seeds=0,1", "sweep.schedules=abrupt,output_interp", "diagnostics.enabled=false"]
ROOT = Path(__file__).resolve().parents[1]


def tiny(num_tasks=5, *extra):
    return apply_overrides(experiments.get_config("fig1-mnist", "cpu"), [*TINY, f"task.num_tasks={num_tasks}", *extra])


def quiet_run(cfg, out, **kwargs):
    return train.run(cfg, out, progress=False, echo=lambda *_: None, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 5-task run."""
    out = tmp_path_factory.mktemp("reference")
    quiet_run(tiny(), out)
    return pd.read_csv(out / results.RESULTS_FILE)


def test_stop_and_resume_in_process_is_exact(tmp_path, reference):
    with pytest.raises(Stop):
        quiet_run(tiny(), tmp_path, on_task_end=stop_after(2))
    assert pd.read_csv(tmp_path / results.RESULTS_FILE)["task"].max() == 2  # rows flushed up to the stop
    quiet_run(tiny(), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert json.loads((tmp_path / results.CONFIG_FILE).read_text())["resumed_from_task"] == 3


def sigkill_when(argv, ready, poll=0.02, timeout=240):
    """Start ``argv`` and SIGKILL it as soon as ``ready()`` holds (it must still be running)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(poll)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigkill_mid_run_then_resume_is_exact(tmp_path):
    many = 25
    argv = [sys.executable, "-m", "gradual_jax.cli", "run", "fig1-mnist", "--preset", "cpu", "--out", str(tmp_path),
            "--no-progress"] + [a for kv in [*TINY, f"task.num_tasks={many}"] for a in ("--set", kv)]
    def three_checkpoints():
        done = [int(p.name) for p in (tmp_path / checkpoint.CHECKPOINT_DIR).glob("*") if p.name.isdigit()]
        return bool(done) and max(done) >= 3

    sigkill_when(argv, three_checkpoints)
    killed_at = pd.read_csv(tmp_path / results.RESULTS_FILE)["task"].max()
    assert killed_at < many - 1
    quiet_run(tiny(many), tmp_path)
    uninterrupted = tmp_path.parent / "uninterrupted"
    quiet_run(tiny(many), uninterrupted)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE),
                                  pd.read_csv(uninterrupted / results.RESULTS_FILE), check_exact=True)


def test_damaged_latest_checkpoint_falls_back(tmp_path, reference):
    with pytest.raises(Stop):
        quiet_run(tiny(), tmp_path, on_task_end=stop_after(2))
    latest = tmp_path / checkpoint.CHECKPOINT_DIR / "3"
    for f in (latest / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="trying the previous one"):
        quiet_run(tiny(), tmp_path)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)
    assert json.loads((tmp_path / results.CONFIG_FILE).read_text())["resumed_from_task"] == 2
    assert (tmp_path / checkpoint.CHECKPOINT_DIR / "unreadable-3").is_dir()  # set aside, not deleted


def test_config_mismatch_is_refused_with_the_keys(tmp_path):
    with pytest.raises(Stop):
        quiet_run(tiny(), tmp_path, on_task_end=stop_after(0))
    with pytest.raises(ConfigError) as err:
        quiet_run(tiny(5, "protocol.batch_size=8", "sweep.learning_rates=0.01"), tmp_path)
    message = str(err.value)
    assert "protocol.batch_size (stored: 16, now: 8)" in message
    assert "sweep.learning_rates" in message and "another --out" in message and "--force-new" not in message
    # --force-new starts over
    frame = quiet_run(tiny(2, "protocol.batch_size=8"), tmp_path, force_new=True)
    assert frame["task"].max() == 1 and (frame["batch_size"] == 8).all()


def test_checkpoints_of_another_state_format_are_refused_in_one_line(tmp_path, reference):
    """Checkpoints hold the lane state's pytree; one of another layout (an older version whose
    optimizer state carried the learning rate) is refused by name, not read as damaged."""
    with pytest.raises(Stop):
        quiet_run(tiny(), tmp_path, on_task_end=stop_after(1))
    meta = json.loads((tmp_path / results.CONFIG_FILE).read_text())
    assert meta["state_format"] == 2
    del meta["state_format"]  # as the older version wrote it
    (tmp_path / results.CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as err:
        quiet_run(tiny(), tmp_path)
    message = str(err.value)
    assert "\n" not in message and "lane states of format 1" in message and "reads format 2" in message
    assert "--force-new" in message
    quiet_run(tiny(), tmp_path, force_new=True)  # the way out it names
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / results.RESULTS_FILE), reference, check_exact=True)


def test_results_without_checkpoints_are_recomputed_only_for_the_same_config(tmp_path):
    first = quiet_run(tiny(1, "run.checkpoint_every=0"), tmp_path)
    assert not checkpoint.has_checkpoints(tmp_path)
    with pytest.raises(ConfigError, match="protocol.batch_size"):  # another run's results: never overwritten
        quiet_run(tiny(1, "run.checkpoint_every=0", "protocol.batch_size=8"), tmp_path)
    again = quiet_run(tiny(1, "run.checkpoint_every=0"), tmp_path)  # the same run: deterministic, so redone
    pd.testing.assert_frame_equal(again.reset_index(drop=True), first.reset_index(drop=True), check_exact=True)
    (tmp_path / results.CONFIG_FILE).unlink()
    with pytest.raises(resume.OutputExistsError, match="--force-new"):  # results of unknown origin
        quiet_run(tiny(1), tmp_path)


def test_chunked_sweep_equals_one_program(tmp_path, reference):
    """3 chunks of 2 lanes... here 4 lanes in chunks of 3 (padded to 6): same results per lane."""
    frame = quiet_run(tiny(5, "run.lanes_per_chunk=3"), tmp_path)
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), reference, check_exact=False, rtol=1e-5, atol=1e-6)


def test_two_devices_equal_one_with_padding(tmp_path, reference):
    """Lanes sharded over 2 CPU devices (3 lanes: padded to 4) equal a 1-device run, also with
    each device's lanes trained in groups one after another."""
    script = (
        "import sys\n"
        "from gradual_jax import experiments\n"
        "from gradual_jax.runner import train\n"
        "from gradual_jax.config import apply_overrides\n"
        "import jax\n"
        "assert jax.device_count() == 2, jax.devices()\n"
        f"cfg = apply_overrides(experiments.get_config('fig1-mnist', 'cpu'), {TINY + ['task.num_tasks=5']!r})\n"
        "cfg = apply_overrides(cfg, ['sweep.seeds=0,1,2', 'sweep.schedules=abrupt'])\n"
        "train.run(cfg, sys.argv[1], progress=False)\n"
        "train.run(apply_overrides(cfg, ['run.vmap_lanes=1']), sys.argv[2], progress=False)\n"
        "from gradual_jax.config import ConfigError\n"
        "try:\n"
        "    train.run(apply_overrides(cfg, ['diagnostics.enabled=true']), sys.argv[3], progress=False)\n"
        "except ConfigError as err:\n"
        "    print('refused:', err)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    two = tmp_path / "two"
    grouped = tmp_path / "grouped"  # each device's 2 lanes one after another
    refused = tmp_path / "refused"
    done = subprocess.run([sys.executable, "-c", script, str(two), str(grouped), str(refused)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: diagnostics.enabled=true on 2 CPU devices" in done.stdout  # it would never finish
    assert not (refused / results.RESULTS_FILE).exists()
    assert "2 device(s), 1 chunk(s) of 4 lanes" in done.stdout
    assert "(2 groups of lanes one after another per device)" in done.stdout
    one = quiet_run(apply_overrides(tiny(5), ["sweep.seeds=0,1,2", "sweep.schedules=abrupt"]), tmp_path / "one")
    sharded = pd.read_csv(two / results.RESULTS_FILE)
    assert len(sharded) == 3 * 5 and sorted(sharded["lane"].unique()) == [0, 1, 2]
    pd.testing.assert_frame_equal(sharded, one, check_exact=False, rtol=1e-5, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_csv(grouped / results.RESULTS_FILE), one, check_exact=False,
                                  rtol=1e-5, atol=1e-6)
    # the abrupt lanes of the 1-device 3-lane run also match the 4-lane reference's abrupt lanes
    ref = reference[reference.schedule == "abrupt"].reset_index(drop=True)
    mine = one[one.seed.isin([0, 1])].reset_index(drop=True)
    pd.testing.assert_series_equal(mine["train_acc"], ref["train_acc"], check_exact=False, rtol=1e-5)


def test_nan_and_inf_survive_the_json_record():
    record = {"rows": [{"test_acc": float("nan"), "x": float("inf"), "y": 0.25}]}
    back = checkpoint._from_json_safe(json.loads(json.dumps(checkpoint._json_safe(record))))
    row = back["rows"][0]
    assert row["test_acc"] != row["test_acc"] and row["x"] == float("inf") and row["y"] == 0.25


def test_results_file_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    storage.atomic_write_text(path, "old\n")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        storage.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind
