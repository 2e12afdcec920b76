"""Multi-host runs for real: two processes on this machine joined by ``jax.distributed``.

Each process has one CPU device; they find each other over localhost through
``GRADUAL_JAX_COORDINATOR``/``_NUM_PROCESSES``/``_PROCESS_ID`` (or a SLURM-like environment,
which jax reads itself), train the lanes sharded over both devices with gloo collectives, and
checkpoint into one folder. Lanes are independent, so the results equal a one-process run with
two devices bit for bit (the same program runs on each device), and a one-device run up to
float rounding (a vmap over more lanes rounds differently in the last bits).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax.runner import checkpoint, outlock, results, train
from gradual_jax.config import apply_overrides

pytestmark = [pytest.mark.needs_mnist, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
# 3 lanes (padded to 4 over the 2 devices), both kinds of schedule, 4 short tasks
TINY = ["task.num_tasks=4", "sweep.seeds=0", "sweep.schedules=abrupt,output_interp", "sweep.deltas=0.5,0.25",
        "data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16", "protocol.batch_size=16",
        "diagnostics.enabled=false"]
TIMEOUT_S = 600  # a whole two-process run, imports and compiling included, on a loaded 2-core machine
CLUSTER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "GRADUAL_JAX_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_argv(out: Path, *extra: str) -> list[str]:
    sets = [a for kv in TINY for a in ("--set", kv)]
    return [sys.executable, "-m", "gradual_jax.cli", "run", "fig1-mnist", "--preset", "cpu", "--out", str(out),
            "--no-progress", *sets, *extra]


def base_env(devices: int) -> dict[str, str]:
    """This environment without any cluster's variables, with ``devices`` CPU devices a process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER_PREFIXES)}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def localhost_env(process: int, port: int) -> dict[str, str]:
    return {**base_env(1), "GRADUAL_JAX_COORDINATOR": f"localhost:{port}", "GRADUAL_JAX_NUM_PROCESSES": "2",
            "GRADUAL_JAX_PROCESS_ID": str(process)}


def slurm_env(process: int, port: int) -> dict[str, str]:
    """What ``srun --ntasks=2`` on one node sets (the parts jax reads), the port given by
    ``JAX_COORDINATOR_PORT`` instead of derived from the job id."""
    return {**base_env(1), "SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
            "SLURM_PROCID": str(process), "SLURM_LOCALID": str(process), "JAX_COORDINATOR_PORT": str(port),
            "GRADUAL_JAX_DISTRIBUTED": "1"}


def launch(out: Path, env_of=localhost_env, *extra: str) -> list[subprocess.Popen]:
    port = free_port()
    return [subprocess.Popen(run_argv(out, "--distributed", *extra), env=env_of(i, port), cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]


def finish(procs: list[subprocess.Popen], timeout: float = TIMEOUT_S) -> list[tuple[int, str]]:
    """Each process's exit status and output; all are killed if any is still running at the deadline."""
    deadline = time.time() + timeout
    try:
        outputs = [p.communicate(timeout=max(1.0, deadline - time.time()))[0] for p in procs]
        return [(p.returncode, output) for p, output in zip(procs, outputs)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / results.RESULTS_FILE)


@pytest.fixture(scope="module")
def one_process_two_devices(tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("one-process") / "run"
    done = subprocess.run(run_argv(out), env=base_env(2), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 device(s), 1 chunk(s) of 4 lanes" in done.stdout
    return table(out)


def test_two_processes_equal_one_process(tmp_path, one_process_two_devices):
    out = tmp_path / "run"
    (rc0, log0), (rc1, log1) = finish(launch(out))
    assert (rc0, rc1) == (0, 0), log0[-2000:] + log1[-2000:]
    assert "2 device(s), 1 chunk(s) of 4 lanes" in log0
    assert "results:" in log0 and "results:" not in log1  # process 0 writes and tells
    two = table(out)
    assert len(two) == 3 * 4 and sorted(two["lane"].unique()) == [0, 1, 2]  # the padding lane is dropped
    pd.testing.assert_frame_equal(two, one_process_two_devices, check_exact=True)
    one_device = train.run(apply_overrides(experiments.get_config("fig1-mnist", "cpu"), TINY), tmp_path / "one",
                           progress=False, echo=lambda *_: None)
    pd.testing.assert_frame_equal(two, one_device.reset_index(drop=True), check_exact=False, rtol=1e-5, atol=1e-6)
    meta = json.loads((out / results.CONFIG_FILE).read_text())
    assert meta["status"] == "finished" and meta["environment"]["device_count"] == 2
    assert (out / "figure.png").is_file()
    assert sorted(p.name for p in out.glob(".*")) == [outlock.LOCK_FILE, outlock.lock_file(1)]  # no marker left


def test_both_killed_after_task_1_then_rerun_equals_one_process(tmp_path, one_process_two_devices):
    """SIGKILL both once the checkpoint after task 1 is sealed; the same command resumes (here
    through a SLURM-like environment instead of the GRADUAL_JAX_* variables)."""
    out = tmp_path / "run"
    sealed = out / checkpoint.CHECKPOINT_DIR / checkpoint.MANIFEST_DIR / "2.json"
    procs = launch(out)
    try:
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline and not sealed.exists() and all(p.poll() is None for p in procs):
            time.sleep(0.02)
        assert all(p.poll() is None for p in procs), "a process ended before the kill"
        for p in procs:
            p.send_signal(signal.SIGKILL)
    finally:
        finish(procs, timeout=30)
    assert table(out)["task"].max() < 3
    (rc0, log0), (rc1, log1) = finish(launch(out, slurm_env))
    assert (rc0, rc1) == (0, 0), log0[-2000:] + log1[-2000:]
    assert "resuming from the checkpoint after task" in log0
    assert json.loads((out / results.CONFIG_FILE).read_text())["resumed_from_task"] in (2, 3)
    pd.testing.assert_frame_equal(table(out), one_process_two_devices, check_exact=True)


def test_a_folder_locked_by_another_run_stops_both_processes(tmp_path):
    out = tmp_path / "run"
    with outlock.hold(out):  # a one-process run into the same folder holds process 0's lock
        (rc0, log0), (rc1, log1) = finish(launch(out), timeout=300)
    assert (rc0, rc1) == (2, 2), log0[-2000:] + log1[-2000:]
    assert f"is in use by another run (process {os.getpid()})" in log0
    assert "process 0 of this run could not lock it" in log1
