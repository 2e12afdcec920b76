"""The PyTorch reference and the comparison script (benchmarks/). Skipped without torch, which is a
benchmark-only dependency (``pip install torch``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from gradual_jax import metrics, schedules  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import torch_reference  # noqa: E402


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models: one thread avoids OpenMP spin-waits when other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_layernorm_mlp_has_the_papers_parameter_count():
    model = torch_reference.build_mlp()
    assert torch_reference.num_parameters(model) == 402_954
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten"] + ["Linear", "LayerNorm", "ReLU"] * 4 + ["Linear"]


@pytest.mark.parametrize("delta,ratio,epochs,steps_per_epoch", [
    (0.5, 2.0, 5, 3),   # the check's setting (k·E·Δ/2 = 2.5 epochs a stage)
    (0.5, 1.0, 1, 80),  # the benchmark's setting: stage boundaries inside epochs
    (0.25, 2.0, 2, 4),
    (1.0, 1.0, 3, 2),   # Δ = 1: one fade-out stage (α = 0) and one fade-in stage (α = 1)
    (0.1, 1.0, 10, 1),
])
@pytest.mark.parametrize("schedule", ["abrupt", "output_interp"])
def test_soft_targets_match_gradual_jax(schedule, delta, ratio, epochs, steps_per_epoch):
    classes, batch = 10, 6
    transition_epochs = round(ratio * epochs)
    pure, transition = epochs * steps_per_epoch, transition_epochs * steps_per_epoch
    rng = np.random.default_rng(0)
    y_old, y_new = rng.integers(0, classes, batch), rng.integers(0, classes, batch)
    steps = np.arange(pure + transition)

    def jax_targets(step):
        mix = schedules.batch_mix(jnp.int32(schedules.schedule_id(schedule)), jnp.float32(delta), step,
                                  pure, transition, jnp.int32(batch), batch)
        return metrics.mixed_targets(jnp.asarray(y_old), jnp.asarray(y_new), mix, classes)

    want = np.asarray(jax.jit(jax.vmap(jax_targets))(jnp.asarray(steps, jnp.int32)))
    got = np.stack([torch_reference.segment_targets(schedule, delta, int(s), pure, transition,
                                                    torch.from_numpy(y_old), torch.from_numpy(y_new),
                                                    classes).numpy() for s in steps])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert torch_reference.readout_epoch(schedule, epochs, transition_epochs) == int(
        schedules.readout_epoch(schedules.schedule_id(schedule), epochs, transition_epochs))


def test_training_reads_every_task_once_and_counts_steps():
    x, y = torch_reference.load_data("synthetic", num_train=100)
    out = torch_reference.train(x, y, seed=0, schedule="output_interp", epochs_per_task=1,
                                transition_ratio=1.0, batch_size=32, hidden=(8, 8), num_tasks=2)
    assert out["steps"] == 2 * 2 * 4 and out["steps_per_task"] == 8  # 100 examples: 4 batches, last short
    assert [r["task"] for r in out["per_task"]] == [0, 1]
    assert all(0.0 <= r["train_acc"] <= 1.0 for r in out["per_task"])
    short = torch_reference.train(x, y, seed=0, schedule="abrupt", epochs_per_task=1, transition_ratio=1.0,
                                  batch_size=32, hidden=(8, 8), max_steps=5)
    assert short["steps"] == 5 and short["per_task"] == []  # stopped before task 0's readout epoch ended


@pytest.mark.slow
def test_tiny_compare_invocation_runs(tmp_path):
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "compare.py"), "--lanes", "2", "--tasks", "1",
                           "--repeats", "1", "--sequential-sample", "1", "--num-train", "640", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| lanes | gradual-jax |" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["lanes"] for r in result["rows"]] == [2]
    row = result["rows"][0]
    assert row["steps_per_lane"] == 20  # 640 examples / 64 = 10 steps an epoch, 2 epochs a task
    assert row["torch_sequential"]["extrapolated"] and row["torch_parallel"]["processes"] == 2
    for key in ("jax", "torch_sequential", "torch_parallel"):
        assert row[key]["lane_steps_per_s"] > 0 and row[key]["peak_rss_mb"] > 0
        assert 0.0 <= row[key]["others_cpu"] <= 1.0
