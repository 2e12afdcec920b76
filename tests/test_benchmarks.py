"""The benchmark scripts (benchmarks/). The PyTorch reference and the comparison script need torch,
a benchmark-only dependency (``pip install torch``): their tests are skipped without it; the
ResNet-18 / T5 step benchmark needs only JAX."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax import metrics, schedules

try:
    import torch
except ImportError:  # the torch-only tests below are skipped
    torch = None

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

if torch is not None:
    import torch_reference

needs_torch = pytest.mark.skipif(torch is None, reason="torch is a benchmark-only dependency (pip install torch)")


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread avoids OpenMP spin-waits when other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_torch
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
@needs_torch
def test_soft_targets_match_gradual_jax(schedule, delta, ratio, epochs, steps_per_epoch, one_torch_thread):
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


@needs_torch
def test_training_reads_every_task_once_and_counts_steps(one_torch_thread):
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
@needs_torch
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


@pytest.mark.slow
def test_model_steps_quick_writes_sane_json(tmp_path):
    """benchmarks/model_steps.py --quick: tiny ResNet-18 and T5 steps, 2 lanes; no timing assertions."""
    out = tmp_path / "steps.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "model_steps.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cost_analysis" in proc.stdout  # says where the FLOPs come from
    result = json.loads(out.read_text())
    assert result["quick"] and result["device"] and result["versions"]["jax"] == jax.__version__
    assert result["matmul"]["flops_per_s"] > 0
    assert set(result["models"]) == {"resnet18", "t5"}
    for name, entry in result["models"].items():
        assert entry["sizes"]["params"] > 0 and entry["sizes"]["batch"] > 0
        assert [row["lanes"] for row in entry["rows"]] == [2]
        for row in entry["rows"]:
            for key in ("lane_steps_per_s", "compile_s", "step_ms", "xla_flops_per_lane_step",
                        "analytic_flops_per_lane_step", "model_flops_per_s", "fraction_of_matmul"):
                assert row[key] > 0 and math.isfinite(row[key]), (name, key, row[key])
            assert row["steps"] >= 2 and math.isfinite(row["final_loss"])
            # XLA's count leaves out taps on conv padding and adds the elementwise ops: same order
            assert 0.3 < row["xla_over_analytic"] < 3.0, (name, row["xla_over_analytic"])


def test_t5_analytic_flops_match_xla_cost_analysis():
    """At the paper's T5 dims the matmul count of model_steps.t5_forward_macs is XLA's forward FLOPs
    (XLA also counts the softmax, norms and bias: a little more)."""
    import model_steps
    from flax import nnx

    from gradual_jax.models import t5

    cfg = t5.T5Config()
    graphdef, params = nnx.split(nnx.eval_shape(lambda: t5.T5(cfg, rngs=nnx.Rngs(0))))
    inputs = jax.ShapeDtypeStruct((2, 128), jnp.int32)
    targets = jax.ShapeDtypeStruct((2, 30), jnp.int32)
    compiled = jax.jit(lambda p, i, t: nnx.merge(graphdef, p)(i, t)).lower(params, inputs, targets).compile()
    xla = compiled.cost_analysis()["flops"]
    analytic = 2 * 2 * model_steps.t5_forward_macs(cfg, 128, 30)
    assert 1.0 <= xla / analytic < 1.05, xla / analytic


def test_resnet_analytic_flops_are_xlas_plus_the_padding_taps():
    """XLA's cost analysis counts only the taps of a convolution that fall inside the image, so a
    padded conv costs less there than forward_macs' dense count; without padding they agree."""
    x = jax.ShapeDtypeStruct((4, 8, 8, 16), jnp.float32)
    k = jax.ShapeDtypeStruct((3, 3, 16, 32), jnp.float32)

    def flops(padding):
        conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), padding,
                                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))
        return conv.lower(x, k).compile().cost_analysis()["flops"]

    dense = 2 * 4 * 8 * 8 * 32 * 16 * 9
    assert flops(((1, 1), (1, 1))) == pytest.approx(dense * (22 / 24) ** 2, rel=1e-6)  # border rows/cols: 2 of 3 taps
    assert flops(((0, 0), (0, 0))) == pytest.approx(2 * 4 * 6 * 6 * 32 * 16 * 9, rel=1e-6)
