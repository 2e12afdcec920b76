"""The benchmark suite (benchmarks/): every script runs at tiny sizes and writes valid JSON; the
PyTorch arrangements and models compute what gradual-jax computes; FLOP and parameter counts match
hand counts. Nothing here asserts a wall-clock time.

PyTorch is a benchmark-only dependency (``pip install torch``): the tests that need it are skipped
without it. End-to-end runs of the scripts are in the ``slow`` tier."""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmarks import (common, compare, conv_profile, cpu_devices, lane_groups, lane_scaling, model_sizes,
                        model_steps, plots, study_rerun, throughput)
from gradual_jax.envs import schedules
from gradual_jax.models import resnet, t5
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.runner.xla_flags import DEFAULT_FLAGS as DEFAULT_XLA_FLAGS

try:
    import torch
except ImportError:  # the torch-only tests below are skipped
    torch = None

if torch is not None:
    from benchmarks import torch_models as tm
    from benchmarks import torch_reference, torch_vmap

ROOT = Path(__file__).resolve().parent.parent
needs_torch = pytest.mark.needs_torch  # conftest skips it where PyTorch is missing

TINY_RESNET = 0.0625  # widths 4/8/16/32
TINY_T5 = {"d_model": 8, "num_heads": 2, "d_kv": 4, "d_ff": 16}


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread avoids OpenMP spin-waits when other work shares the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_module(module: str, *args, timeout: float = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m benchmarks.<module> args`` from the repository root, as the README runs it."""
    proc = subprocess.run(common.module_cmd(module, *args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def read_record(path: Path, benchmark: str) -> dict:
    """A benchmark's JSON: strict JSON (no NaN), with its name, command and environment."""
    result = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path}: non-JSON constant {c}"))
    assert result["benchmark"] == benchmark
    assert result["command"].startswith("python -m benchmarks.")
    env = result["environment"]
    assert env["cores"] >= 1 and env["versions"]["python"] and "xla_flags" in env and env["commit"]
    return result


# --------------------------------------------------------------------------- shared helpers
def test_write_json_is_strict_and_records_the_environment(tmp_path):
    out = common.write_json(tmp_path / "sub" / "r.json", "demo", {"x": float("nan"), "rows": [1.5, float("inf")]},
                            command="python -m benchmarks.demo --flag")
    assert out["x"] is None and out["rows"] == [1.5, None]
    result = read_record(tmp_path / "sub" / "r.json", "demo")
    assert result["environment"]["versions"]["jax"] == jax.__version__
    assert result["environment"]["device"].startswith("cpu")


def test_best_time_keeps_the_fastest_of_the_repeats():
    calls = []
    timing = common.best_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(timing["all_seconds"]) == 3
    assert timing["seconds"] == min(timing["all_seconds"]) and 0.0 <= timing["others_cpu"] <= 1.0


def test_small_helpers():
    assert common.parse_ints("1, 8,32") == [1, 8, 32]
    assert common.calibrated_steps(0.5, 3.0, 2, 100) == 6 and common.calibrated_steps(10.0, 3.0, 2, 100) == 2
    assert lane_scaling.lane_counts(8) == [1, 2, 4, 8] and lane_scaling.lane_counts(5) == [1, 2, 4, 5]
    assert common.module_cmd("compare", "--lanes", 2)[-4:] == ["-m", "benchmarks.compare", "--lanes", "2"]


def test_the_package_sets_the_commands_xla_flags():
    """The suite measures what ``gradual-jax`` runs: importing it (before JAX, as ``python -m``
    does) sets the command's XLA flags."""
    code = "import benchmarks, os, sys; assert 'jax' not in sys.modules; print(os.environ.get('XLA_FLAGS', ''))"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GRADUAL_JAX_KEEP_XLA_FLAGS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    from gradual_jax.runner import xla_flags

    assert proc.stdout.strip() == (xla_flags.xla_flags_with_defaults(env, xla_flags.installed_jaxlib_version()) or "")


# --------------------------------------------------------------------------- FLOP and parameter counts
def test_mlp_flops_match_the_hand_count():
    # 784·256 + 3·256·256 + 256·10 = 200,704 + 196,608 + 2,560 = 399,872 MACs an example;
    # × 2 FLOPs × 3 (forward + backward) × batch 64
    assert throughput.model_flops_per_step() == 6 * 64 * 399_872 == 153_550_848


@needs_torch
def test_torch_mlp_forward_flops_are_the_hand_count(one_torch_thread):
    from torch.utils.flop_counter import FlopCounterMode

    model = torch_reference.build_mlp()
    assert torch_reference.num_parameters(model) == 402_954  # 399,872 weights + 4·(256 + 2·256) + 10
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(64, 784))
    assert counter.get_total_flops() == 2 * 64 * 399_872


# Hand counts of the tiny ResNet-18 (width 1/16: widths 4/8/16/32, ImageNet stem, 32×32×3 input):
# MACs: stem 16·16·4·3·49 = 150,528; layer1 4 convs × 8·8·4·4·9 = 36,864; layers 2-4 each
# 4,608 + 9,216 + 512 + 2 × 9,216 = 32,768 (the maps halve as the channels double); head 32·10 = 320.
RESNET_TINY_MACS = 150_528 + 36_864 + 3 * 32_768 + 320  # 286,016
# parameters: stem 588 + bn 8; layer1 2 × (2·144 + 2·8); layer2 (288 + 576 + 32 + 32 + 16) + (2·576 + 32);
# layer3 (1,152 + 2,304 + 64 + 128 + 32) + (2·2,304 + 64); layer4 (4,608 + 9,216 + 128 + 512 + 64)
# + (2·9,216 + 128); head 32·10 + 10
RESNET_TINY_PARAMS = 588 + 8 + 608 + 2_128 + 8_352 + 33_088 + 330  # 45,102
# Tiny T5 (vocab 30, d_model 8, 2 heads × 4, d_ff 16), 6 input and 3 target tokens. MACs: encoder
# 6·(4·8·8 + 2·8·16) + 2·6·6·8 = 3,648; decoder 3·(256 + 256) + 2·3·3·8 + 3·2·64 + 6·2·64 + 2·3·6·8
# = 3,120; tied output projection 3·8·30 = 720.
T5_TINY_MACS = 3_648 + 3_120 + 720  # 7,488
# parameters: embedding 240; 2 relative-bias tables 2 × 32·2; encoder layer 2·8 + 4·64 + 2·128;
# decoder layer 3·8 + 8·64 + 2·128; 2 final norms 2·8
T5_TINY_PARAMS = 240 + 128 + 528 + 792 + 16  # 1,704


def tiny_jax_resnet():
    return resnet.ResNet18(10, width_multiplier=TINY_RESNET, rngs=nnx.Rngs(0))


def test_jax_models_match_the_hand_counts():
    assert resnet.forward_macs(32, 32, width_multiplier=TINY_RESNET) == RESNET_TINY_MACS
    params = resnet.split(nnx.eval_shape(tiny_jax_resnet))[1]
    assert sum(int(v.size) for v in jax.tree.leaves(params)) == RESNET_TINY_PARAMS
    cfg = t5.T5Config(**TINY_T5)
    assert model_steps.t5_forward_macs(cfg, 6, 3) == T5_TINY_MACS
    assert t5.count_params(nnx.state(nnx.eval_shape(lambda: t5.T5(cfg, rngs=nnx.Rngs(0))))) == T5_TINY_PARAMS


@needs_torch
def test_torch_models_match_the_hand_counts(one_torch_thread):
    from torch.utils.flop_counter import FlopCounterMode

    net = tm.ResNet18(10, width_multiplier=TINY_RESNET)
    assert tm.num_parameters(net) == RESNET_TINY_PARAMS
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(2, 3, 32, 32))
    assert counter.get_total_flops() == 2 * 2 * RESNET_TINY_MACS
    model = tm.T5(tm.T5Config(**TINY_T5))
    assert tm.num_parameters(model) == T5_TINY_PARAMS
    with FlopCounterMode(display=False) as counter:
        model(torch.full((2, 6), 5), torch.full((2, 3), 5))
    assert counter.get_total_flops() == 2 * 2 * T5_TINY_MACS


@pytest.mark.slow
def test_t5_analytic_flops_match_xla_cost_analysis():
    """At the paper's T5 dims the matmul count of model_steps.t5_forward_macs is XLA's forward FLOPs
    (XLA also counts the softmax, norms and bias: a little more)."""
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


# --------------------------------------------------------------------------- the PyTorch models are gradual-jax's
@needs_torch
def test_torch_constants_are_gradual_jaxs():
    assert tm.WIDTHS == resnet.WIDTHS
    assert (tm.PAD, tm.BOS, tm.EOS, tm.SPACE, tm.VOCAB_SIZE) == (tok.PAD, tok.BOS, tok.EOS, tok.SPACE, tok.VOCAB_SIZE)
    assert tm.NEG_INF == t5.NEG_INF
    assert dataclasses.asdict(tm.T5Config()) == dataclasses.asdict(t5.T5Config())
    d = model_sizes.DEFAULTS
    cfg = t5.T5Config()
    assert (d["t5_d_model"], d["t5_heads"], d["t5_d_kv"], d["t5_d_ff"]) == (cfg.d_model, cfg.num_heads, cfg.d_kv,
                                                                            cfg.d_ff)
    assert d["t5_input_len"] == tok.MAX_INPUT_LEN


def _flat(state) -> dict:
    return {".".join(str(p) for p in path): np.asarray(v[...]) for path, v in nnx.to_flat_state(state)}


def _port(jax_flat: dict, model, rename) -> None:
    """Load gradual-jax's weights into the PyTorch model; every tensor of it must be covered."""
    wanted = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    new = {}
    for name, value in jax_flat.items():
        tname, value = rename(name, value)
        assert tname in wanted and tuple(wanted[tname].shape) == value.shape, (name, tname, value.shape)
        new[tname] = torch.from_numpy(np.array(value))
    assert set(new) == set(wanted)
    model.load_state_dict(new, strict=False)


BN_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _resnet_name(name, value):
    name = name.replace("downsample.conv", "downsample.0").replace("downsample.bn", "downsample.1")
    head, last = name.rsplit(".", 1)
    if last == "kernel":  # HWIO -> OIHW, [in, out] -> [out, in]
        return f"{head}.weight", value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    return f"{head}.{BN_NAMES[last]}", value


def _t5_name(name, value):
    head, last = name.rsplit(".", 1)
    if last == "kernel":
        return f"{head}.weight", value.T
    return (f"{head}.weight", value) if last == "embedding" else (name, value)


@pytest.mark.slow
@needs_torch
def test_torch_resnet_computes_gradual_jaxs_resnet(one_torch_thread):
    model = tiny_jax_resnet()
    graphdef, params, stats = resnet.split(model)
    net = tm.ResNet18(10, width_multiplier=TINY_RESNET)
    _port({**_flat(params), **_flat(stats)}, net, _resnet_name)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    want, _ = resnet.apply(graphdef, params, stats, jnp.asarray(x), train=True)
    got = net.train()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@needs_torch
def test_torch_t5_computes_gradual_jaxs_t5(one_torch_thread):
    model = t5.T5(t5.T5Config(**TINY_T5), rngs=nnx.Rngs(0))
    net = tm.T5(tm.T5Config(**TINY_T5))
    _port(_flat(nnx.state(model)), net, _t5_name)
    rng = np.random.default_rng(1)
    inputs, targets = rng.integers(tok.SPACE, tok.VOCAB_SIZE, (2, 6)), rng.integers(tok.SPACE, tok.VOCAB_SIZE, (2, 3))
    inputs[0, 4:] = tok.PAD  # padding is masked on both sides
    want = model(jnp.asarray(inputs), tok.shift_right(jnp.asarray(targets)))
    got = net(torch.from_numpy(inputs), tm.shift_right(torch.from_numpy(targets))).detach()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert float(tm.seq2seq_loss(got, torch.from_numpy(targets))) == pytest.approx(
        float(model_steps.mean_token_loss(want, jnp.asarray(targets))), rel=1e-5)


# --------------------------------------------------------------------------- the PyTorch reference
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
        return schedules.mixed_targets(jnp.asarray(y_old), jnp.asarray(y_new), mix, classes)

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
def test_vmapped_torch_lanes_make_the_per_process_updates(one_torch_thread):
    """torch.func.vmap over stacked lanes is the reference, lane by lane: the same initial models,
    batches and soft targets give the same parameters and metrics after steps that cross a task's
    transition stages, a short last batch and the next task (float64, so only rounding differs)."""
    x, y = torch_reference.load_data("synthetic", num_train=100)
    x = x[:, :12].double().contiguous()
    seeds, names = [0, 1, 2], ["abrupt", "output_interp", "output_interp"]
    kw = {"delta": 0.5, "epochs_per_task": 1, "transition_ratio": 2.0, "batch_size": 32, "hidden": (8, 8),
          "num_classes": 10, "max_steps": 14}  # 4 steps an epoch (the last of 4 examples), 12 a task
    together = torch_vmap.train_lanes(x, y, seeds=seeds, schedules=names, return_params=True, **kw)
    assert together["steps"] == 14
    for r, (seed, name) in enumerate(zip(seeds, names)):
        alone = torch_reference.train(x, y, seed=seed, schedule=name, return_model=True, **kw)
        state = alone["model"].state_dict()
        assert set(state) == set(together["params"][r])
        for key, value in together["params"][r].items():
            np.testing.assert_allclose(value.numpy(), state[key].numpy(), rtol=0, atol=1e-9, err_msg=key)
        assert len(alone["per_task"]) == len(together["per_task"][r]) == 1
        for a, b in zip(alone["per_task"], together["per_task"][r]):
            assert a["task"] == b["task"] and a["train_acc"] == b["train_acc"]
            assert a["online_train_acc"] == b["online_train_acc"]
            assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-9)


# --------------------------------------------------------------------------- tables and figures
def test_compare_table_reads_the_committed_result():
    """Result files of earlier versions (no vmap arrangements) still render."""
    result = json.loads((ROOT / "results" / "benchmarks" / "compare-cpu.json").read_text())
    text = compare.throughput_table(result)
    assert "| lanes | gradual-jax |" in text and "torch vmap" not in text
    assert "1.60× (torch parallel)" in text


def test_compare_table_names_the_fastest_torch_arrangement_of_the_committed_result():
    """The committed arrangements result: each row's ratio is the JAX rate over the fastest of the
    four PyTorch arrangements, recomputed here from the raw rates."""
    result = json.loads((ROOT / "results" / "benchmarks" / "compare-arrangements-cpu.json").read_text())
    text = compare.throughput_table(result)
    arms = ("torch_sequential", "torch_parallel", "torch_vmap", "torch_vmap_compiled")
    for row in result["rows"]:
        rates = {a: row[a]["lane_steps_per_s"] for a in arms if row.get(a, {}).get("lane_steps_per_s")}
        assert len(rates) == 4
        best = max(rates, key=rates.get)
        ratio = row["jax"]["lane_steps_per_s"] / rates[best]
        name = best.replace("_compiled", " + compile").replace("_", " ")
        assert f"{ratio:.2f}× ({name})" in text


def test_lane_scaling_table_in_the_benchmarks_readme_matches_the_committed_result():
    """Every row of the documented lane-scaling table is recomputed from the committed JSON: the
    rates, the program sizes, and each chunked rate as a share of one program's at the same lanes."""
    result = json.loads((ROOT / "results" / "benchmarks" / "lane_scaling-cpu.json").read_text())
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    chunked = {c["lanes"]: c for c in result["chunked"]}
    assert result["one_program"] and chunked
    for cell in result["one_program"]:
        row = f"| {cell['lanes']} | {cell['lane_steps_per_s']:.0f} | {cell['program_mb']:,.1f} MiB |"
        if cell["lanes"] in chunked:
            share = chunked[cell["lanes"]]["lane_steps_per_s"] / cell["lane_steps_per_s"]
            row_end = f"| {chunked[cell['lanes']]['lane_steps_per_s']:.0f} ({share:.2f}×) |"
            line = next(l for l in readme.splitlines() if l.startswith(row))
            assert row_end in line
        else:
            assert row in readme


HLO = """
  %convolution.4 = f32[250,2,2,256]{3,2,1,0} convolution(%a, %b), window={size=2x2 rhs_reversal=1x1}, dim_labels=01fb_o01i->f01b, metadata={op_name="x"}
  %conv_general_dilated.2 = f32[250,8,8,64]{3,2,1,0} convolution(%c, %d), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
  ROOT %conv.9 = f32[64,3,3,64]{3,2,1,0} convolution(%e, %f), window={size=8x8 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, feature_group_count=4
  %fusion.1 = f32[8]{0} fusion(%convolution.4), kind=kLoop, calls=%fused
"""


def test_conv_profile_finds_the_swapped_convolutions_and_splits_op_time():
    convs = conv_profile.convolutions(HLO)
    assert convs == {"convolution.4": True, "conv_general_dilated.2": False, "conv.9": False}
    times = collections.Counter({"convolution.4": 3_000_000_000, "conv_general_dilated.2": 500_000_000,
                                 "fusion.1": 500_000_000})
    split = conv_profile.attribute(convs, times)
    assert split == pytest.approx({"op_seconds": 4.0, "swapped_conv_seconds": 3.0, "other_conv_seconds": 0.5,
                                   "rest_seconds": 0.5, "swapped_share": 0.75})


def _compare_result() -> dict:
    def arm(rate, **extra):
        return {"lane_steps_per_s": rate, "model_flops_per_s": rate * 1e8, "fraction_of_matmul": 0.3,
                "peak_rss_mb": 500.0, "others_cpu": 0.0, **extra}

    row = {"lanes": 8, "steps_per_lane": 320,
           "jax": arm(600.0, compile_s=3.0, fraction_of_bare_step=0.7),
           "torch_sequential": arm(370.0, extrapolated=True, lanes_timed=4, seconds_for_all_lanes=7.0),
           "torch_parallel": arm(400.0, processes=8, threads_each=1),
           "torch_vmap": arm(450.0, compile_s=0.5),
           "torch_vmap_compiled": {"error": "BackendCompilerFailed: no compiler", "peak_rss_mb": 400.0},
           "best_torch": "torch_vmap", "jax_over_best_torch": 600 / 450, "others_cpu_max": 0.0}
    return {"benchmark": "compare", "matmul_flops_per_s": 2e11, "steps_per_lane": 320, "rows": [row]}


def test_compare_table_names_the_fastest_arrangement_and_failures():
    text = compare.throughput_table(_compare_result())
    assert "1.33× (torch vmap)" in text
    assert "| failed |" in text and "BackendCompilerFailed" in text


def test_plots_draw_every_kind(tmp_path):
    rows = [{"lanes": r, "lane_steps_per_s": 500.0 + r, "program_mb": 5.0 * r, "peak_rss_mb": 600.0,
             "host_state_mb": 0.0} for r in (1, 2, 4)]
    scaling = {"benchmark": "lane_scaling", "lanes_per_chunk": 2, "memory_budget_bytes": 2 ** 30,
               "protocol": {"model": "MLP"}, "one_program": rows,
               "chunked": [{**rows[-1], "host_state_mb": 3.0}]}
    paths = []
    for name, result in (("scaling", scaling), ("compare", _compare_result())):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(result))
        paths.append(str(path))
    outs = plots.main([*paths, "--out-dir", str(tmp_path / "png")])
    assert [p.name for p in outs] == ["scaling.png", "compare.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in outs)
    assert plots.kind_of(json.loads((ROOT / "results" / "benchmarks" / "compare-cpu.json").read_text())) == "compare"


# --------------------------------------------------------------------------- every script, end to end
@pytest.mark.slow
def test_throughput_runs(tmp_path):
    out = tmp_path / "throughput.json"
    proc = run_module("throughput", "--quick", "--lanes", "2", "--tasks", "1", "--vmap-lanes", "0,1024",
                      "--json", out)
    assert "lane-steps/s" in proc.stdout
    result = read_record(out, "throughput")
    assert [(r["lanes"], r["vmap_lanes"]) for r in result["rows"]] == [(2, 0), (2, 1024)]
    for row in result["rows"]:
        assert row["lane_steps_per_s"] > 0 and row["program_mb"] > 0 and row["steps_per_task"] == 20


@pytest.mark.slow
@needs_torch
def test_torch_reference_runs():
    proc = run_module("torch_reference", "--steps", 6, "--num-train", 100, "--hidden", "8,8", "--batch-size", 32,
                      "--threads", 1)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == 6 and out["peak_rss_mb"] > 0 and out["steps_per_task"] == 8


@pytest.mark.slow
@needs_torch
def test_torch_vmap_compiled_runs_or_says_why_not():
    """The torch.compile arrangement either trains (and reports its compile time) or records why it
    could not; either way one JSON object comes back."""
    proc = run_module("torch_vmap", "--lanes", 2, "--steps", 4, "--num-train", 128, "--hidden", "8,8",
                      "--threads", 1, "--compile")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["compile"] is True and out["peak_rss_mb"] > 0
    if "error" not in out:
        assert out["steps"] == 4 and out["lane_steps_per_s"] > 0 and out["warmup_s"] > 0


@pytest.mark.slow
@needs_torch
def test_compare_runs(tmp_path):
    out = tmp_path / "compare.json"
    proc = run_module("compare", "--quick", "--lanes", "2", "--tasks", "1", "--repeats", "1", "--sequential-sample",
                      "1", "--no-torch-compile", "--json", out)
    assert "| lanes | gradual-jax |" in proc.stdout
    result = read_record(out, "compare")
    row, = result["rows"]
    assert row["lanes"] == 2 and row["steps_per_lane"] == 20  # 640 examples / 64 = 10 steps an epoch, 2 a task
    assert row["torch_sequential"]["extrapolated"] and row["torch_parallel"]["processes"] == 2
    assert "torch_vmap_compiled" not in row
    for key in ("jax", "torch_sequential", "torch_parallel", "torch_vmap"):
        assert row[key]["lane_steps_per_s"] > 0 and row[key]["peak_rss_mb"] > 0
        assert 0.0 <= row[key]["others_cpu"] <= 1.0
    rates = {k: row[k]["lane_steps_per_s"] for k in compare.TORCH if k in row}
    assert row["best_torch"] == max(rates, key=rates.get)
    assert row["jax_over_best_torch"] == pytest.approx(row["jax"]["lane_steps_per_s"] / max(rates.values()))


@pytest.mark.slow
@needs_torch
def test_compare_check_runs(tmp_path):
    out = tmp_path / "check.json"
    proc = run_module("compare", "--check", "--check-seeds", 2, "--check-tasks", 1, "--check-per-class", 7,
                      "--check-width", 8, "--json", out)
    assert "agree:" in proc.stdout
    result = read_record(out, "compare-check")
    assert {(r["metric"], r["schedule"]) for r in result["results"]} == {
        (m, s) for m in ("train_acc", "online_train_acc") for s in ("abrupt", "output_interp")}


@pytest.mark.slow
def test_readout_share_runs(tmp_path):
    """Tiny text runs timed with and without the key/value cache; no timing assertions, but the
    segment's step count is the protocol's and both decoders were timed."""
    out = tmp_path / "readout.json"
    proc = run_module("readout_share", "--quick", "--repeats", 1, "--json", out)
    assert "readout share" in proc.stdout
    rows = read_record(out, "readout_share")["rows"]
    assert [(r["experiment"], r["preset"]) for r in rows] == [("fig2-seq2seq", "cpu"), ("fig4-cipher", "cpu")]
    # fig2: 16 pairs, batch 8, E = 1, k = 2 -> 2 steps per epoch for 3 epochs; fig4: k = 1
    assert [r["steps_per_task"] for r in rows] == [6, 4]
    for r in rows:
        for decoder in ("cached", "prefix"):
            entry = r[decoder]
            assert entry["segment_seconds"] > 0 and 0 < entry["readout_share"]
            assert entry["readout_share"] == pytest.approx(entry["readout_seconds"] / entry["segment_seconds"])


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_mixed_methods_runs_each_arrangement_through_the_runner(tmp_path):
    out = tmp_path / "mixed.json"
    proc = run_module("mixed_methods", "--quick", "--seeds", "10", "--epochs", 1, "--json", out)
    assert "one program per method:" in proc.stdout
    rows = read_record(out, "mixed_methods")["arrangements"]
    # abrupt × Shrink & Perturb, ReDo, spectral, continual backprop: one seed each
    assert {name: (r["lanes"], r["programs"]) for name, r in rows.items()} == {
        "one program per method": (4, 4), "one program, every method": (4, 1), "plain (no method)": (4, 1)}


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_lane_groups_runs_each_grouping_through_the_runner(tmp_path):
    out = tmp_path / "groups.json"
    run_module("lane_groups", "--experiment", "fig1-mnist", "--preset", "cpu", "--seeds", "0,1", "--groups", "1,all",
               "--epochs", 1, "--set", "data.train_per_class=8", "--set", "model.hidden_sizes=16,16",
               "--set", "protocol.batch_size=16", "--json", out)
    rows = read_record(out, "lane_groups")["groupings"]
    assert list(rows) == ["automatic", "1 at a time", "all lanes"]
    assert [r["vmap_lanes"] for r in rows.values()][:2] == [0, 1]
    assert len({r["lanes"] for r in rows.values()}) == 1  # the same lanes, grouped three ways
    assert rows["automatic"]["over_automatic"] == 1.0
    with pytest.raises(SystemExit):
        lane_groups.groupings("1,0", lanes=4)


def test_cpu_devices_trains_the_same_lanes_on_one_device_and_on_two(tmp_path):
    out = tmp_path / "devices.json"
    run_module("cpu_devices", "--cases", "fig1-mnist:cpu", "--seeds", "0,1", "--devices", "1,2", "--epochs", 1,
               "--set", "data.train_per_class=8", "--set", "model.hidden_sizes=16,16",
               "--set", "protocol.batch_size=16", "--json", out, timeout=600)
    case, = read_record(out, "cpu_devices")["cases"]
    one, two = case["rows"]
    assert (one["devices"], two["devices"]) == (1, 2) and one["lanes"] == two["lanes"] == 6
    assert one["over_first"] == 1.0 and one["largest_difference_from_first"] == 0.0
    assert two["largest_difference_from_first"] < 1e-5  # the same lanes, to float rounding
    assert cpu_devices.largest_difference([{"a": 0.5, "b": "x"}], [{"a": 0.25, "b": "y"}]) == 0.25
    assert cpu_devices.largest_difference([{"a": float("nan")}], [{"a": float("nan")}]) == 0.0
    assert cpu_devices.largest_difference([{"a": float("nan")}], [{"a": 1.0}]) == float("inf")
    with pytest.raises(SystemExit, match="EXPERIMENT:PRESET"):
        cpu_devices.parse_cases("fig1-cifar")


def rows_of(values: dict[tuple, list[float]], tasks: int = 2) -> "pd.DataFrame":
    """Results rows: per arm (schedule, Δ) one lane per seed, ``values[arm][seed]`` on every task."""
    import pandas as pd

    rows, lane = [], 0
    for (schedule, delta), per_seed in values.items():
        for seed, value in enumerate(per_seed):
            rows += [{"lane": lane, "seed": seed, "task": t, "schedule": schedule, "delta": delta, "method": "none",
                      "online_train_acc": value, "train_loss": 1 - value} for t in range(tasks)]
            lane += 1
    return pd.DataFrame(rows)


def test_study_rerun_compares_rows_to_rounding_and_arm_means_by_welch():
    """Equal rows are equal to rounding; one chaotic lane (0.2 off) breaks rounding but not the
    arm's mean, whose seeds spread; a whole arm shifted by 0.1 with tight seeds differs."""
    from scipy import stats

    old = rows_of({("abrupt", np.nan): [0.5, 0.7, 0.6], ("output_interp", 0.5): [0.80, 0.81, 0.82]}, tasks=3)
    same = study_rerun.compare_rows(old[old["task"] < 2].copy(), old, "online_train_acc")
    assert same["to_rounding"] and same["arm_means"]["agree"]
    assert same["largest_difference"] == {"online_train_acc": 0.0, "train_loss": 0.0}

    chaotic = rows_of({("abrupt", np.nan): [0.7, 0.7, 0.6], ("output_interp", 0.5): [0.80, 0.81, 0.82]})
    found = study_rerun.compare_rows(chaotic, old, "online_train_acc")
    assert not found["to_rounding"] and found["largest_difference"]["online_train_acc"] == pytest.approx(0.2)
    # by hand: a = (0.7, 0.7, 0.6), b = (0.5, 0.7, 0.6); Welch's interval of mean(a) − mean(b)
    a, b = np.array([0.7, 0.7, 0.6]), np.array([0.5, 0.7, 0.6])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    arm = found["arm_means"]["arms"]["abrupt nan none"]
    assert arm["difference"] == pytest.approx(0.2 / 3) and arm["half_width"] == pytest.approx(half)
    assert found["arm_means"]["agree"] == (0.2 / 3 <= half)

    shifted = rows_of({("abrupt", np.nan): [0.5, 0.7, 0.6], ("output_interp", 0.5): [0.90, 0.91, 0.92]})
    assert not study_rerun.compare_rows(shifted, old, "online_train_acc")["arm_means"]["agree"]


def test_study_rerun_refuses_rows_of_other_lanes():
    old = rows_of({("abrupt", np.nan): [0.5, 0.7, 0.6]})
    other = old.assign(seed=old["seed"] + 1)
    with pytest.raises(SystemExit, match="not the committed run's"):
        study_rerun.compare_rows(other, old, "online_train_acc")


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_study_rerun_reproduces_a_run_of_the_same_code_exactly(tmp_path):
    """A tiny run made here, then its first two tasks again through the benchmark: the same
    code on the same machine gives the same rows; a tampered committed row is found."""
    from gradual_jax import cli

    run = tmp_path / "study"
    assert cli.main(["run", "fig1-mnist", "--preset", "cpu", "--out", str(run), "--no-progress",
                     "--set", "sweep.seeds=0,1", "--set", "task.num_tasks=3", "--set", "data.train_per_class=8",
                     "--set", "model.hidden_sizes=16,16", "--set", "protocol.batch_size=16",
                     "--set", "protocol.epochs_per_task=1"]) == 0
    out = tmp_path / "rerun.json"
    run_module("study_rerun", "--runs", run, "--json", out)
    [row] = read_record(out, "study_rerun")["runs"]
    assert row["to_rounding"] and row["arm_means"]["agree"] and row["tasks_rerun"] == 2
    assert row["rerun"]["lane_steps_per_second"] > 0 and row["speedup"] > 0
    table = run_module("study_rerun", "--table", out).stdout
    assert "| `study` | 6 |" in table and "online_train_acc 0 |" in table and "| agree |" in table
    import pandas as pd

    table = pd.read_csv(run / "results.csv")
    table.loc[table["task"] == 1, "online_train_acc"] += 0.3
    table.to_csv(run / "results.csv", index=False)
    run_module("study_rerun", "--runs", run, "--json", out)
    [row] = read_record(out, "study_rerun")["runs"]
    assert not row["to_rounding"] and row["largest_difference"]["online_train_acc"] == pytest.approx(0.3)


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_crelu_cost_runs_both_models_alternately(tmp_path):
    out = tmp_path / "crelu.json"
    proc = run_module("crelu_cost", "--quick", "--lanes", 1, "--epochs", 1, "--repeats", 2, "--json", out)
    assert "CReLU costs" in proc.stdout
    result = read_record(out, "crelu_cost")
    assert [len(result["runs"][m]) for m in ("relu", "crelu")] == [2, 2]
    assert result["matmul_ratio"] == pytest.approx(599_040 / 399_872)  # the docstring's hand count


@pytest.mark.slow
def test_conv_profile_runs(tmp_path):
    """A tiny ResNet-18 at 1 and 2 lanes: no step has a swapped backward convolution (the
    layer-3 and layer-4 maps, smaller than the 3×3 kernels, are matrix products in the model,
    where XLA swapped the operands of their convolutions at one lane)."""
    out = tmp_path / "conv.json"
    run_module("conv_profile", "--quick", "--lanes", "1,2", "--repeats", 1, "--json", out)
    one, two = read_record(out, "conv_profile")["rows"]
    assert (one["lanes"], two["lanes"]) == (1, 2) and one["convolutions"] > 0 and two["convolutions"] > 0
    assert one["swapped_convolutions"] == two["swapped_convolutions"] == 0
    assert one["swapped_conv_seconds"] == two["swapped_conv_seconds"] == 0 and one["op_seconds"] > 0
    for row in (one, two):
        assert row["swapped_conv_seconds"] + row["other_conv_seconds"] + row["rest_seconds"] == pytest.approx(
            row["op_seconds"])


def test_scanned_runs_the_step_k_times_on_the_same_data_and_returns_the_last_loss():
    def step(state, data):  # state counts the steps; the loss is the state it was given times the data
        return state + 1, state * data

    state, loss = jax.jit(model_steps.scanned(step, 5))(jnp.int32(2), jnp.int32(10))
    assert (int(state), int(loss)) == (7, 60)  # steps 2, 3, 4, 5, 6: the last loss is 6 × 10
    assert model_steps.scanned(step, 1) is step


@pytest.mark.slow
def test_model_steps_runs(tmp_path):
    """Tiny ResNet-18 and T5 steps, 2 lanes; no timing assertions."""
    out = tmp_path / "steps.json"
    proc = run_module("model_steps", "--quick", "--json", out)
    assert "cost_analysis" in proc.stdout  # says where the FLOPs come from
    result = read_record(out, "model_steps")
    assert result["quick"] and result["matmul"]["flops_per_s"] > 0
    assert set(result["models"]) == {"resnet18", "t5"}
    for name, entry in result["models"].items():
        assert entry["sizes"]["params"] > 0 and entry["sizes"]["batch"] > 0
        assert [row["lanes"] for row in entry["rows"]] == [2]
        for row in entry["rows"]:
            for key in ("lane_steps_per_s", "compile_s", "step_ms", "xla_flops_per_lane_step",
                        "analytic_flops_per_lane_step", "model_flops_per_s", "fraction_of_matmul", "peak_rss_mb"):
                assert row[key] > 0 and math.isfinite(row[key]), (name, key, row[key])
            assert row["steps"] >= 2 and math.isfinite(row["final_loss"])
            # XLA's count leaves out taps on conv padding and adds the elementwise ops: same order
            assert 0.3 < row["xla_over_analytic"] < 3.0, (name, row["xla_over_analytic"])


@pytest.mark.slow
@needs_torch
def test_models_vs_torch_runs(tmp_path):
    out = tmp_path / "models.json"
    proc = run_module("models_vs_torch", "--quick", "--lanes", "2", "--torch", "loop,vmap", "--json", out,
                      env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert "| case | lanes | gradual-jax vmap | gradual-jax vmap in a scan | gradual-jax one at a time |" in proc.stdout
    result = read_record(out, "models_vs_torch")
    assert [c["label"] for c in result["cases"]] == ["resnet18 b4", "t5 b2"]
    for case in result["cases"]:
        row, = case["rows"]
        assert case["jax_sizes"]["params"] == case["torch_sizes"]["params"]  # the same models on both sides
        for key in ("jax", "jax_scan", "jax_map", "torch_loop", "torch_vmap"):
            assert row[key]["lane_steps_per_s"] > 0 and row[key]["peak_rss_mb"] > 0, (case["label"], key)
        assert (row["jax"]["groups"], row["jax_map"]["groups"]) == (1, 2)  # one vmap; the lanes one at a time
        assert (row["jax"]["steps_per_call"], row["jax_scan"]["steps_per_call"]) == (1, 20)
        assert row["jax_scan"]["steps"] % 20 == 0
        # a scan's body is counted once: per lane-step the same FLOPs as the step alone
        assert row["jax_scan"]["xla_flops_per_lane_step"] == pytest.approx(row["jax"]["xla_flops_per_lane_step"],
                                                                           rel=0.2)
        # the same step either way: XLA's FLOPs per lane-step agree to the loop's slicing (a loop's body is
        # counted once, so a missed factor of groups would read half here)
        assert row["jax_map"]["xla_flops_per_lane_step"] == pytest.approx(row["jax"]["xla_flops_per_lane_step"],
                                                                          rel=0.2)
        assert row["best_jax"] in ("jax", "jax_scan", "jax_map", "jax_devices")
        # two CPU devices: the lanes spread over them, one on each
        assert (row["jax_devices"]["devices"], row["jax_devices"]["groups"]) == (2, 1)
        assert row["jax_devices"]["xla_flops_per_lane_step"] == pytest.approx(
            row["jax"]["xla_flops_per_lane_step"], rel=0.2)
        assert row["jax"]["device_memory_mb"] > 0
        # PyTorch counts dense FLOPs of forward + backward (no input gradient of the first layer):
        # below the analytic 6 × MACs × batch, above forward + weight gradients
        analytic = row["jax"]["analytic_flops_per_lane_step"]
        assert analytic * 2 / 3 < row["torch_loop"]["flops_per_lane_step"] <= analytic
        assert row["best_torch"] in ("torch_loop", "torch_vmap")


@pytest.mark.slow
@needs_torch
def test_models_vs_torch_compiles_the_torch_loop(tmp_path):
    out = tmp_path / "models.json"
    proc = run_module("models_vs_torch", "--quick", "--models", "t5", "--lanes", "1", "--torch", "loop,compile",
                      "--json", out)
    assert "| torch compile |" in proc.stdout
    row, = read_record(out, "models_vs_torch")["cases"][0]["rows"]
    assert "torch_vmap" not in row and "error" not in row["torch_compile"], row["torch_compile"].get("error")
    assert row["torch_compile"]["arrangement"] == "compile" and row["torch_compile"]["lane_steps_per_s"] > 0
    assert row["torch_compile"]["flops_per_lane_step"] == row["torch_loop"]["flops_per_lane_step"]  # one model
    assert row["best_torch"] in ("torch_loop", "torch_compile")


@pytest.mark.slow
def test_lane_scaling_runs_and_stops_at_the_budget(tmp_path):
    out = tmp_path / "lane_scaling.json"
    proc = run_module("lane_scaling", "--max-lanes", 2, "--lanes-per-chunk", 1, "--num-train", 640,
                      "--hidden", "16,16", "--memory-budget-gb", 1e-6, "--json", out)
    assert "one program stops at R = 1" in proc.stdout
    result = read_record(out, "lane_scaling")
    assert [r["lanes"] for r in result["one_program"]] == [1]  # twice its program would not fit 1 kB
    assert result["one_program_stopped"]["after_lanes"] == 1
    chunked, = result["chunked"]
    assert chunked["lanes"] == 2 and chunked["chunks"] == 2 and chunked["host_state_mb"] > 0
    for row in (*result["one_program"], chunked):
        assert row["lane_steps_per_s"] > 0 and row["program_mb"] > 0 and row["peak_rss_mb"] > 0
    png, = plots.main([str(out)])
    assert png == tmp_path / "lane_scaling.png" and png.stat().st_size > 0


@pytest.mark.slow
def test_checkpoint_overhead_runs(tmp_path):
    out = tmp_path / "ckpt.json"
    run_module("checkpoint_overhead", "--lanes", 1, "--tasks", 1, "--epochs", 1, "--json", out)
    result = read_record(out, "checkpoint_overhead")
    assert result["checkpoint_mb_per_lane"] > 0 and result["run_s_no_checkpoints"] > 0


@pytest.mark.slow
def test_archived_xla_flags_ab_runs(tmp_path):
    out = tmp_path / "ab.json"
    run_module("archive.xla_flags_ab", "--lanes", 1, "--tasks", 1, "--repeats", 1, "--num-train", 640, "--json", out)
    result = read_record(out, "xla_flags_ab")
    row, = result["rows"]
    assert row["ratio"] > 0 and set(result["variants"]) <= set(row)


@pytest.mark.slow
def test_archived_xla_flags_ab_model_steps_runs(tmp_path):
    out = tmp_path / "ab.json"
    run_module("archive.xla_flags_ab", "--model-steps", "--quick", "--lanes", 1, "--repeats", 1, "--json", out)
    result = read_record(out, "xla_flags_ab_model_steps")
    assert [r["case"] for r in result["rows"]] == ["resnet18 R=1", "t5 R=1"]


@pytest.mark.slow
def test_archived_xla_flags_ab_against_other_flags_and_sizes(tmp_path):
    out = tmp_path / "ab.json"
    off, conv = "--xla_cpu_experimental_ynn_fusion_type=", "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    run_module("archive.xla_flags_ab", "--model-steps", "--quick", "--lanes", 1, "--repeats", 1,
               f"--baseline={off}", f"--candidate={conv}", "--model-steps-args", "--models resnet18", "--json", out)
    result = read_record(out, "xla_flags_ab_model_steps")
    assert result["variants"] == {f"XLA_FLAGS={off}": off, f"XLA_FLAGS={conv}": conv}
    assert [r["case"] for r in result["rows"]] == ["resnet18 R=1"]


def test_xla_flags_ab_variants():
    from benchmarks.archive import xla_flags_ab

    cli = " ".join(DEFAULT_XLA_FLAGS)
    assert xla_flags_ab.variants() == {"jax defaults": "", "gradual-jax CLI": cli}
    assert xla_flags_ab.variants("--a=1") == {"XLA_FLAGS=--a=1": "--a=1", "gradual-jax CLI": cli}
    assert xla_flags_ab.variants("--a=1", "--b=") == {"XLA_FLAGS=--a=1": "--a=1", "XLA_FLAGS=--b=": "--b="}
    with pytest.raises(SystemExit, match="same flags"):
        xla_flags_ab.variants("--a=1", "--a=1")


@pytest.mark.slow
def test_archived_optax_flatten_runs(tmp_path):
    out = tmp_path / "flatten.json"
    run_module("archive.optax_flatten", "--lanes", 1, "--steps", 2, "--repeats", 1, "--json", out)
    result = read_record(out, "optax_flatten")
    row, = result["rows"]
    assert row["max_param_difference_plain_flatten"] < 1e-5 and row["ratio"] > 0


@pytest.mark.parametrize("side,kernel,stride,padding", [(7, 3, 1, 1), (8, 3, 2, 1), (9, 7, 2, 3), (8, 1, 2, 0), (5, 3, 1, 0)])
def test_conv_by_concatenated_patches_is_the_convolution_and_its_gradient(side, kernel, stride, padding):
    """The candidate convolution of ``archive.resnet_ab`` against ``lax.conv_general_dilated``:
    outputs and both gradients, at the strides and paddings a ResNet-18 uses, under vmap over lanes."""
    from benchmarks.archive import resnet_ab

    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 3, side, side, 4))  # lanes, examples, H, W, C
    w = jax.random.normal(kk, (2, kernel, kernel, 4, 5))
    pads = ((padding, padding), (padding, padding))

    def loss(conv, x, w):
        out = jax.vmap(lambda x, w: conv(x, w, (stride, stride), pads))(x, w)
        return jnp.sum(jnp.sin(out)), out

    def reference(x, w, strides, pads):
        return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision="highest")

    def candidate(x, w, strides, pads):
        return resnet_ab.conv_by_concatenated_patches(x, w, strides, pads, precision="highest")

    (_, want), want_grads = jax.value_and_grad(loss, argnums=(1, 2), has_aux=True)(reference, x, w)
    (_, got), got_grads = jax.value_and_grad(loss, argnums=(1, 2), has_aux=True)(candidate, x, w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for g, r in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("change, scan", [("conv-dots", 1), ("max-pool", 1), ("conv-patches", 1),
                                          ("canonical-conv", 3), ("fused-batchnorm", 1), ("gray-patches", 1),
                                          ("colour-patches", 1), ("space-to-depth", 1),
                                          ("kernel-gradient-chunks", 1), ("channel-sums-as-dots", 1)])
def test_archived_resnet_ab_runs(tmp_path, change, scan):
    out = tmp_path / "resnet_ab.json"
    setting = "cifar-0.0625" if change in ("colour-patches", "space-to-depth") else "mnist-0.0625"  # 3 channels or 1
    run_module("archive.resnet_ab", "--change", change, "--settings", setting, "--batch", 8, "--lanes", 1,
               "--scan", scan, "--repeats", 1, "--seconds", 0.1, "--json", out)
    result = read_record(out, "resnet_ab")
    row, = result["rows"]
    assert result["change"] == change and row["lanes"] == 1 and row["ratio"] > 0
    assert row["steps_per_call"] == scan and row["steps"] % scan == 0
    assert set(result["variants"]) == {"before", "after"} <= set(row)
    # same parameters, same batch: the first losses agree to float32 rounding
    assert row["before"]["first_loss"] == pytest.approx(row["after"]["first_loss"], rel=1e-4)


@pytest.mark.slow
def test_archived_conv_layout_runs(tmp_path):
    out = tmp_path / "layout.json"
    run_module("archive.conv_layout", "--cases", "4x4x2,3x2x3", "--scan", 2, "--repeats", 1, "--json", out)
    result = read_record(out, "conv_layout")
    assert [(r["batch"], r["side"], r["channels"]) for r in result["rows"]] == [(4, 4, 2), (3, 2, 3)]
    for row in result["rows"]:
        assert row["max_relative_difference"] < 1e-5  # the two layouts compute the same gradients
        assert row["nchw_over_nhwc_in_scan"] == pytest.approx(row["nchw_in_scan_ms"] / row["nhwc_in_scan_ms"])


@pytest.mark.slow
def test_archived_stem_forms_are_the_stem(tmp_path):
    out = tmp_path / "stem.json"
    run_module("archive.stem_forms", "--cases", "4x9x3x4,3x10x2x3", "--repeats", 1, "--no-torch", "--json", out)
    result = read_record(out, "stem_forms")
    assert [(r["side"], r["channels"]) for r in result["rows"]] == [(9, 3), (10, 2)]  # odd and even sides
    for row in result["rows"]:
        for form in ("convolution", "space_to_depth", "unrolled_columns", "patch_rows"):
            assert row[f"{form}_max_relative_difference"] < 1e-5, form  # the same function, outputs and gradients
            assert row[f"{form}_ms"] > 0
        assert "torch_ms" not in row


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("steps", [1, 3])
def test_lanes_program_in_groups_is_the_vmapped_program(groups, steps):
    """lax.map over groups of vmapped lanes, each group's steps in a scan, computes what one vmap
    of every lane, its steps in a scan, computes."""
    def lane_step(state, data):
        w, count = state
        loss = jnp.sum(jnp.tanh(data @ w) ** 2)
        return (w - 0.1 * jax.grad(lambda w: jnp.sum(jnp.tanh(data @ w) ** 2))(w), count + 1), loss

    state = (jax.random.normal(jax.random.key(0), (4, 3, 2)), jnp.arange(4))
    data = jax.random.normal(jax.random.key(1), (4, 5, 3))
    want = model_steps.scanned(jax.vmap(lane_step), steps)(state, data)
    got = model_steps.lanes_program(lane_step, groups, steps)(state, data)
    assert int(got[0][1][0]) == steps  # every lane took the steps
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=1e-6)
    with pytest.raises(ValueError, match="groups=3"):
        model_steps.measure(model_steps.Case("x", {}, None, lane_step, None, 1.0, ""), 4, seconds=0.1, min_steps=1,
                            max_steps=1, peak=1.0, groups=3)


ON_TWO_DEVICES = """
import jax, jax.numpy as jnp, numpy as np
from benchmarks import model_steps
def lane_step(state, data):
    return state - 0.1 * data.T @ jnp.tanh(data @ state), jnp.sum(state ** 2)
state = jax.random.normal(jax.random.key(0), (4, 3, 2))
data = jax.random.normal(jax.random.key(1), (4, 5, 3))
want = model_steps.scanned(jax.vmap(lane_step), 3)(state, data)
for groups in (1, 2):
    program, placement = model_steps.on_devices(model_steps.lanes_program(lane_step, groups, 3), 2)
    got = jax.jit(program)(*jax.device_put((state, data), placement))
    assert got[0].sharding.is_equivalent_to(placement, 3) and len(got[0].devices()) == 2
    print(groups, max(float(np.max(np.abs(g - w))) for g, w in zip(got, want)))
try:
    model_steps.measure(model_steps.Case("x", {}, None, lane_step, None, 1.0, ""), 4, seconds=0.1, min_steps=1,
                        max_steps=1, peak=1.0, devices=3)
except ValueError as err:
    print(err)
"""


def test_lanes_on_two_devices_compute_the_vmapped_program():
    """The lanes spread over two CPU devices, each device's lanes in one group or two, compute what
    one vmap of every lane computes, and come back spread over the two devices."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run([sys.executable, "-c", ON_TWO_DEVICES], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    for line, groups in zip(lines, ("1", "2")):
        got_groups, difference = line.split()
        assert got_groups == groups and float(difference) < 1e-6
    assert lines[2].startswith("devices=3: expected a divisor of lanes=4")
