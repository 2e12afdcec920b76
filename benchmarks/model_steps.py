"""Throughput of the ResNet-18 and T5 training steps, R lanes in one vmapped, jitted program.

    python benchmarks/model_steps.py --json results/benchmarks/model_steps-cpu.json
    python benchmarks/model_steps.py --paper --lanes 1,8,32 --json results/benchmarks/model_steps-gpu.json
    python benchmarks/model_steps.py --quick --json /tmp/model_steps.json    # seconds, tiny sizes (the test)

For each model and each lane count R it builds one step, ``jax.jit(jax.vmap(step))`` with the
state donated: forward, loss, gradients and the optimizer update of R independent lanes (each
with its own parameters, optimizer state, batch statistics and batch), the way the engine runs a
sweep, minus its schedule and data plumbing. Then it

* times tracing + compilation (``jit(...).lower(...).compile()``);
* runs one warm-up step, times one step, and times ``n`` steps (``n`` chosen to take about
  ``--seconds``, between ``--min-steps`` and ``--max-steps``), blocking on the result at the end
  (``block_until_ready``), ``--repeats`` times; lane-steps/s = R·n / the fastest time. Each
  measurement records the share of the CPU that *other* processes used meanwhile
  ("others' CPU", from /proc/stat; above a few percent the cell is disturbed);
* reads the FLOPs of the compiled step from XLA's cost analysis (``compiled.cost_analysis()
  ["flops"]``: every op of the program, for all R lanes; divided by R here) and reports the
  achieved FLOP/s as a share of a large float32 matmul (``--matmul-size``, default 2048 on CPU and
  8192 elsewhere) timed by XLA in the same run. An analytic count of the matmul/conv FLOPs is
  printed beside it as a cross-check: ResNet-18 from ``gradual_jax.models.resnet.forward_macs``
  (× 2 FLOPs per MAC × 3 for forward + backward), T5 from its layer shapes (:func:`t5_forward_macs`).

The models and optimizers are the paper's (docs/protocol.md):

* **ResNet-18** (``gradual_jax.models.resnet.ResNet18``, ImageNet stem, BatchNorm in training
  mode, PyTorch init) on CIFAR-shaped 32×32×3 inputs, 10 classes, softmax cross-entropy, AdamW
  1e-4, weight decay 0. Defaults are CPU-sized: width multiplier 0.25 (widths 16/32/64/128),
  batch 64. The paper's model is width 1.0 (11,181,642 parameters) at batch 250: ``--paper`` or
  ``--resnet-width 1 --resnet-batch 250``. ``--resnet-dtype bfloat16`` computes in bfloat16.
* **T5** (``gradual_jax.models.t5.T5``, ``T5Config`` defaults = the paper's customised T5-small:
  d_model 256, 4 heads, d_kv 64, d_ff 2048, 1 encoder + 1 decoder layer, relative position
  buckets 32 / 128, the 30-token character vocabulary), Random Seq2Seq shapes: inputs of 128
  tokens (50 five-letter words, truncated), targets of 30 tokens (5 words + eos), teacher
  forcing with ``shift_right``, ``seq2seq_loss`` (pad masked), AdamW 1e-4, weight decay 0. Default
  batch 16 (CPU-sized); the paper's is 64 (``--paper`` or ``--t5-batch 64``).

Inputs are random (throughput does not depend on their values), made once on the device;
every lane gets its own. XLA flags are the ``gradual-jax`` command's (gradual_jax/xla_flags.py:
on CPU the experimental YNNPACK fusions are off; ``GRADUAL_JAX_KEEP_XLA_FLAGS=1`` for JAX's
defaults); the flags in effect go into the JSON with the device, versions and sizes.
Nothing here assumes a CPU: on a GPU the same command runs unchanged.
"""

from __future__ import annotations

import os

from gradual_jax.xla_flags import set_default_xla_flags

set_default_xla_flags()  # as the CLI does, before jax is imported

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import flax  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from gradual_jax.models import resnet, t5  # noqa: E402
from machine import busy_cpu_seconds  # noqa: E402  (benchmarks/machine.py)
from gradual_jax.text import tokenizer as tok  # noqa: E402

FLOPS_SOURCE = ("XLA cost analysis of the compiled step: compiled.cost_analysis()['flops'] (every op of the "
                "vmapped program, all lanes) divided by the lane count")


def cpu_model() -> str:
    """The host CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- reference matmul
def matmul_flops_per_second(n: int, seconds: float = 1.0) -> float:
    """float32 n×n @ n×n timed by XLA (best of a few batches of calls)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    start = time.perf_counter()
    f(a, b).block_until_ready()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, min(1000, int(seconds / 3 / once)))
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            out = f(a, b)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - start) / calls)
    return 2.0 * n ** 3 / best


# --------------------------------------------------------------------------- the two models
@dataclasses.dataclass
class Case:
    """One model's step: ``init(keys)`` -> batched state, ``step(state, batch)`` -> (state, loss)."""

    name: str
    sizes: dict
    init_lane: Callable[[jax.Array], Any]
    lane_step: Callable[[Any, Any], tuple[Any, jax.Array]]
    make_batch: Callable[[int], Any]  # lanes -> batched inputs
    analytic_flops_per_lane_step: float
    analytic_source: str


def _adamw(learning_rate: float):
    # the engine's optimizer construction (train.make_optimizer_factory): the rate is a state leaf
    return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate, weight_decay=0.0)


def resnet_case(batch: int, width: float, image: int, cifar_stem: bool, dtype: str) -> Case:
    compute_dtype = jnp.bfloat16 if dtype == "bfloat16" else None

    def factory(rngs):
        return resnet.ResNet18(10, in_channels=3, width_multiplier=width, cifar_stem=cifar_stem,
                               dtype=compute_dtype, rngs=rngs)

    graphdef = resnet.split(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))[0]
    tx = _adamw(1e-4)

    def init_lane(key):
        _, params, stats = resnet.split(factory(nnx.Rngs(key)))
        return params, stats, tx.init(params)

    def lane_step(state, data):
        params, stats, opt_state = state
        x, y = data

        def loss_fn(p):
            logits, new_stats = resnet.apply(graphdef, p, stats, x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), stats, opt_state), loss

    def make_batch(lanes):
        kx, ky = jax.random.split(jax.random.key(42))
        return (jax.random.normal(kx, (lanes, batch, image, image, 3), jnp.float32),
                jax.random.randint(ky, (lanes, batch), 0, 10, jnp.int32))

    macs = resnet.forward_macs(image, image, num_classes=10, in_channels=3, width_multiplier=width,
                               cifar_stem=cifar_stem)
    params = sum(int(v.size) for v in jax.tree.leaves(resnet.split(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))[1]))
    sizes = {"batch": batch, "image": [image, image, 3], "width_multiplier": width,
             "widths": [resnet.scaled_width(w, width) for w in resnet.WIDTHS], "stem": "cifar" if cifar_stem else "imagenet",
             "compute_dtype": dtype, "classes": 10, "params": params, "optimizer": "adamw 1e-4, weight decay 0",
             "forward_macs_per_example": macs}
    return Case("resnet18", sizes, init_lane, lane_step, make_batch, 6.0 * macs * batch,
                "resnet.forward_macs × 2 FLOPs/MAC × 3 (forward + backward) × batch: convs and head only")


def t5_forward_macs(cfg: t5.T5Config, input_len: int, target_len: int) -> int:
    """Multiply-accumulates of one example's forward pass through T5's matmuls (projections,
    attention scores and weighted sums, feed-forward, tied output projection; norms, softmax and
    the relative bias left out)."""
    d, inner, lin, lout = cfg.d_model, cfg.num_heads * cfg.d_kv, input_len, target_len
    encoder = lin * (4 * d * inner + 2 * d * cfg.d_ff) + 2 * lin * lin * inner
    decoder = (lout * (4 * d * inner + 2 * d * cfg.d_ff) + 2 * lout * lout * inner  # self-attention, FFN
               + lout * 2 * d * inner + lin * 2 * d * inner + 2 * lout * lin * inner)  # cross-attention
    return cfg.num_encoder_layers * encoder + cfg.num_decoder_layers * decoder + lout * d * cfg.vocab_size


def t5_case(batch: int, input_len: int, target_len: int, cfg: t5.T5Config) -> Case:
    graphdef = nnx.split(nnx.eval_shape(lambda: t5.T5(cfg, rngs=nnx.Rngs(0))))[0]
    tx = _adamw(1e-4)

    def init_lane(key):
        params = nnx.state(t5.T5(cfg, rngs=nnx.Rngs(key)))
        return params, tx.init(params)

    def lane_step(state, data):
        params, opt_state = state
        inputs, targets = data

        def loss_fn(p):
            logits = nnx.merge(graphdef, p)(inputs, t5.shift_right(targets))
            return t5.seq2seq_loss(logits, targets)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def make_batch(lanes):
        ki, kt = jax.random.split(jax.random.key(43))
        inputs = jax.random.randint(ki, (lanes, batch, input_len), tok.SPACE, cfg.vocab_size, jnp.int32)
        inputs = inputs.at[..., -1].set(tok.EOS)
        targets = jax.random.randint(kt, (lanes, batch, target_len), tok.SPACE, cfg.vocab_size, jnp.int32)
        return inputs, targets.at[..., -1].set(tok.EOS)

    macs = t5_forward_macs(cfg, input_len, target_len)
    params = t5.count_params(nnx.state(nnx.eval_shape(lambda: t5.T5(cfg, rngs=nnx.Rngs(0)))))
    sizes = {"batch": batch, "input_len": input_len, "target_len": target_len, **dataclasses.asdict(cfg),
             "params": params, "optimizer": "adamw 1e-4, weight decay 0", "forward_macs_per_example": macs}
    return Case("t5", sizes, init_lane, lane_step, make_batch, 6.0 * macs * batch,
                "t5_forward_macs × 2 FLOPs/MAC × 3 (forward + backward) × batch: matmuls only")


# --------------------------------------------------------------------------- measuring
def _cost_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


def _memory_mb(compiled) -> float | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes) / 2 ** 20


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure(case: Case, lanes: int, *, seconds: float, min_steps: int, max_steps: int, peak: float,
            repeats: int = 1) -> dict:
    # RBG keys: the init program then compiles in ~2 s instead of ~11 s (threefry, ResNet-18 on CPU);
    # the values are as random either way and do not change the step's cost.
    keys = jax.vmap(lambda i: jax.random.key(i, impl="rbg"))(jnp.arange(lanes))
    state = jax.jit(jax.vmap(case.init_lane))(keys)
    data = case.make_batch(lanes)
    jax.block_until_ready((state, data))
    step = jax.jit(jax.vmap(case.lane_step), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    xla_flops = _cost_flops(compiled) / lanes

    state, loss = compiled(state, data)  # warm-up
    jax.block_until_ready((state, loss))
    start = time.perf_counter()
    state, loss = compiled(state, data)
    jax.block_until_ready((state, loss))
    one = time.perf_counter() - start
    n = int(min(max_steps, max(min_steps, math.ceil(seconds / max(one, 1e-6)))))
    timings = []  # (seconds, others' CPU share) per repeat
    for _ in range(max(1, repeats)):
        busy, own, start = busy_cpu_seconds(), _own_cpu_seconds(), time.perf_counter()
        for _ in range(n):
            state, loss = compiled(state, data)
        jax.block_until_ready((state, loss))
        elapsed = time.perf_counter() - start
        others = (busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)
        timings.append((elapsed, max(0.0, others) / (elapsed * (os.cpu_count() or 1))))
    elapsed, others_cpu = min(timings)
    rate = lanes * n / elapsed
    return {"lanes": lanes, "steps": n, "seconds": elapsed, "step_ms": 1e3 * elapsed / n,
            "others_cpu": others_cpu, "all_lane_steps_per_s": [lanes * n / t for t, _ in timings],
            "lane_steps_per_s": rate, "compile_s": compile_s,
            "xla_flops_per_lane_step": xla_flops, "analytic_flops_per_lane_step": case.analytic_flops_per_lane_step,
            "xla_over_analytic": xla_flops / case.analytic_flops_per_lane_step,
            "model_flops_per_s": rate * xla_flops, "fraction_of_matmul": rate * xla_flops / peak,
            "analytic_fraction_of_matmul": rate * case.analytic_flops_per_lane_step / peak,
            "device_memory_mb": _memory_mb(compiled), "final_loss": float(jnp.mean(loss))}


def table(rows: list[dict], peak: float) -> str:
    lines = ["| lanes | lane-steps/s | step (all lanes) | compile | GFLOP / lane-step (XLA; analytic) | "
             "GFLOP/s (XLA) | % of matmul (XLA; analytic) | others' CPU |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['lanes']} | {r['lane_steps_per_s']:,.2f} | {r['step_ms']:,.1f} ms | {r['compile_s']:.1f} s | "
                     f"{r['xla_flops_per_lane_step'] / 1e9:,.3f}; {r['analytic_flops_per_lane_step'] / 1e9:,.3f} | "
                     f"{r['model_flops_per_s'] / 1e9:,.1f} | {100 * r['fraction_of_matmul']:.0f}%; "
                     f"{100 * r['analytic_fraction_of_matmul']:.0f}% | {100 * r['others_cpu']:.0f}% |")
    return "\n".join(lines)


QUICK = {"lanes": "2", "resnet_batch": 4, "resnet_width": 0.0625, "t5_batch": 2, "t5_input_len": 12,
         "t5_target_len": 6, "t5_d_model": 16, "t5_heads": 2, "t5_d_kv": 8, "t5_d_ff": 32,
         "seconds": 0.05, "min_steps": 2, "max_steps": 5, "matmul_size": 256, "matmul_seconds": 0.1,
         "repeats": 1}
PAPER = {"resnet_batch": 250, "resnet_width": 1.0, "t5_batch": 64}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,t5", help="comma separated: resnet18, t5")
    parser.add_argument("--lanes", default="1,2,4", help="lane counts R (comma separated)")
    parser.add_argument("--resnet-batch", type=int, default=64, help="ResNet batch per lane (paper: 250)")
    parser.add_argument("--resnet-width", type=float, default=0.25, help="ResNet width multiplier (paper: 1.0)")
    parser.add_argument("--resnet-image", type=int, default=32, help="input height = width (CIFAR: 32)")
    parser.add_argument("--resnet-cifar-stem", action="store_true", help="3×3 stride-1 stem, no max-pool")
    parser.add_argument("--resnet-dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--t5-batch", type=int, default=16, help="T5 batch per lane (paper: 64)")
    parser.add_argument("--t5-input-len", type=int, default=tok.MAX_INPUT_LEN)
    parser.add_argument("--t5-target-len", type=int, default=30, help="Random Seq2Seq: 5 words × 6 = 30")
    parser.add_argument("--t5-d-model", type=int, default=t5.T5Config.d_model)
    parser.add_argument("--t5-heads", type=int, default=t5.T5Config.num_heads)
    parser.add_argument("--t5-d-kv", type=int, default=t5.T5Config.d_kv)
    parser.add_argument("--t5-d-ff", type=int, default=t5.T5Config.d_ff)
    parser.add_argument("--seconds", type=float, default=3.0, help="target time of one timed measurement")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed measurements per cell; the fastest is kept")
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--matmul-size", type=int, help="reference matmul n (default: 2048 on CPU, 8192 otherwise)")
    parser.add_argument("--matmul-seconds", type=float, default=1.0, help="time spent timing the reference matmul")
    parser.add_argument("--paper", action="store_true", help="the paper's sizes: ResNet width 1, batch 250; T5 batch 64")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: a smoke test in seconds")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    for preset, flag in ((PAPER, args.paper), (QUICK, args.quick)):
        if flag:
            for key, value in preset.items():
                setattr(args, key, value)

    device = jax.devices()[0]
    n = args.matmul_size or (2048 if device.platform == "cpu" else 8192)
    peak = matmul_flops_per_second(n, args.matmul_seconds)
    print(f"device: {device.platform} {device.device_kind} ({cpu_model()}, "
          f"{os.cpu_count()} CPU cores); jax {jax.__version__}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"reference: float32 {n}² matmul {peak / 1e9:,.1f} GFLOP/s")
    print(f"FLOPs: {FLOPS_SOURCE}; the analytic count (matmuls/convs only) beside it")

    builders = {
        "resnet18": lambda: resnet_case(args.resnet_batch, args.resnet_width, args.resnet_image,
                                        args.resnet_cifar_stem, args.resnet_dtype),
        "t5": lambda: t5_case(args.t5_batch, args.t5_input_len, args.t5_target_len,
                              t5.T5Config(d_model=args.t5_d_model, num_heads=args.t5_heads, d_kv=args.t5_d_kv,
                                          d_ff=args.t5_d_ff)),
    }
    lane_counts = [int(v) for v in args.lanes.split(",")]
    start = time.perf_counter()
    result = {
        "device": f"{device.platform} {device.device_kind}", "platform": device.platform,
        "device_kind": device.device_kind, "device_count": jax.device_count(),
        "host": {"processor": cpu_model(), "cpu_count": os.cpu_count()},
        "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                     "optax": optax.__version__},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "matmul": {"n": n, "dtype": "float32", "flops_per_s": peak},
        "flops_source": FLOPS_SOURCE, "quick": args.quick, "models": {},
    }
    for name in args.models.split(","):
        if name not in builders:
            parser.error(f"--models: unknown model {name!r}; choose from {', '.join(builders)}")
        case = builders[name]()
        print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in case.sizes.items()))
        rows = []
        for r in lane_counts:
            row = measure(case, r, seconds=args.seconds, min_steps=args.min_steps, max_steps=args.max_steps,
                          peak=peak, repeats=args.repeats)
            rows.append(row)
            print(f"  R = {r}: {row['lane_steps_per_s']:,.2f} lane-steps/s ({row['steps']} steps, "
                  f"{row['step_ms']:,.1f} ms a step), compile {row['compile_s']:.1f} s, "
                  f"{row['model_flops_per_s'] / 1e9:,.1f} GFLOP/s = {100 * row['fraction_of_matmul']:.0f}% of matmul"
                  f" (others' CPU {100 * row['others_cpu']:.0f}%)", flush=True)
        print()
        print(table(rows, peak))
        result["models"][name] = {"sizes": case.sizes, "analytic_flops": case.analytic_source, "rows": rows}
    result["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
