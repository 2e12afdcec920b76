"""Throughput of the ResNet-18 and T5 training steps, R lanes in one vmapped, jitted program.

    python -m benchmarks.model_steps --json results/benchmarks/model_steps-cpu.json
    python -m benchmarks.model_steps --paper --lanes 1,8,32 --json results/benchmarks/model_steps-gpu.json
    python -m benchmarks.model_steps --quick --json /tmp/model_steps.json    # seconds, tiny sizes (the test)

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
  forcing with ``shift_right``, the text problem's token loss (pad masked), AdamW 1e-4, weight
  decay 0. Default batch 16 (CPU-sized); the paper's is 64 (``--paper`` or ``--t5-batch 64``).

Inputs are random (throughput does not depend on their values), made once on the device;
every lane gets its own. XLA flags are the ``gradual-jax`` command's (set by
``benchmarks/__init__.py``); the flags in effect go into the JSON with the device, versions and
sizes. Nothing here assumes a CPU: on a GPU the same command runs unchanged.
``models_vs_torch.py`` runs these same steps beside PyTorch implementations of the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from benchmarks import common, model_sizes
from gradual_jax.runner import sharding
from gradual_jax.models import resnet, t5
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.envs.text.seq2seq import counted_tokens, teacher_forced, token_loss
from gradual_jax.envs.text.tokenizer import shift_right

FLOPS_SOURCE = ("XLA cost analysis of the compiled step: compiled.cost_analysis()['flops'] (every op of the "
                "vmapped program, all lanes) divided by the lane count")


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
    # the engine's optimizer construction (build.make_optimizer_factory): the lane's rate, traced
    return optax.adamw(learning_rate=learning_rate, weight_decay=0.0)


def resnet_case(batch: int, width: float, image: int, cifar_stem: bool, dtype: str, in_channels: int = 3) -> Case:
    compute_dtype = jnp.bfloat16 if dtype == "bfloat16" else None

    def factory(rngs):
        return resnet.ResNet18(10, in_channels=in_channels, width_multiplier=width, cifar_stem=cifar_stem,
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
        return (jax.random.normal(kx, (lanes, batch, image, image, in_channels), jnp.float32),
                jax.random.randint(ky, (lanes, batch), 0, 10, jnp.int32))

    macs = resnet.forward_macs(image, image, num_classes=10, in_channels=in_channels, width_multiplier=width,
                               cifar_stem=cifar_stem)
    params = sum(int(v.size) for v in jax.tree.leaves(resnet.split(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))[1]))
    sizes = {"batch": batch, "image": [image, image, in_channels], "width_multiplier": width,
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


def mean_token_loss(logits, targets):
    """The text problem's token loss (pad targets left out), averaged over the counted tokens."""
    batch = teacher_forced(None, targets)
    loss_sum, _, count = token_loss(logits, batch, counted_tokens(targets, jnp.ones(targets.shape[:1], bool)))
    return loss_sum / count


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
            return mean_token_loss(nnx.merge(graphdef, p)(inputs, shift_right(targets)), targets)

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


def scanned(step: Callable, steps_per_call: int) -> Callable:
    """``steps_per_call`` steps on the same data in one ``lax.scan``: the engine's form, whose
    body XLA compiles apart from the top level (where ``steps_per_call`` is 1: the step itself)."""
    if steps_per_call == 1:
        return step

    def run(state, data):
        state, losses = jax.lax.scan(lambda s, _: step(s, data), state, None, length=steps_per_call)
        return state, losses[-1]

    return run


def lanes_program(lane_step: Callable, groups: int = 1, steps_per_call: int = 1) -> Callable:
    """One call of R lanes' ``steps_per_call`` steps, arranged as the engine arranges a task: the
    lanes in ``groups`` equal groups run one after another (``lax.map``; ``groups`` = R: lanes one
    at a time, what ``run.vmap_lanes=1`` runs), each group's lanes ``vmap``-ed and all its steps in
    one :func:`scanned` before the next group starts (``groups`` 1: one ``vmap`` of every lane)."""
    group = scanned(jax.vmap(lane_step), steps_per_call)
    if groups == 1:
        return group

    def grouped(state, data):
        def split(x):
            return x.reshape(groups, x.shape[0] // groups, *x.shape[1:])

        out = jax.lax.map(lambda part: group(*part), jax.tree.map(split, (state, data)))
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    return grouped


def on_devices(program: Callable, devices: int) -> tuple[Callable, Any]:
    """``program`` run on each of the first ``devices`` devices for its own block of the lanes
    (``shard_map``, as the engine spreads a sweep's lanes), and the lanes' sharding."""
    mesh = Mesh(np.asarray(jax.devices()[:devices]), (sharding.LANES,))
    lanes = PartitionSpec(sharding.LANES)
    spread = jax.shard_map(program, mesh=mesh, in_specs=(lanes, lanes), out_specs=(lanes, lanes), check_vma=False)
    return spread, NamedSharding(mesh, lanes)


def measure(case: Case, lanes: int, *, seconds: float, min_steps: int, max_steps: int, peak: float,
            repeats: int = 1, groups: int = 1, steps_per_call: int = 1, devices: int = 1) -> dict:
    """``steps_per_call`` > 1 times the steps inside a ``lax.scan`` (:func:`scanned`), as the
    engine runs them, each group of lanes (``groups``) through all its steps before the next
    (:func:`lanes_program`); the counts of steps are then calls of it. ``devices`` > 1 spreads
    the lanes over that many devices (:func:`on_devices`), ``groups`` then counting each device's."""
    if devices < 1 or devices > jax.device_count() or lanes % devices:
        raise ValueError(f"devices={devices}: expected a divisor of lanes={lanes}, at most the "
                         f"{jax.device_count()} device(s) there are")
    if groups < 1 or (lanes // devices) % groups:
        raise ValueError(f"groups={groups}: expected a divisor of the {lanes // devices} lanes of a device")
    # RBG keys: the init program then compiles in ~2 s instead of ~11 s (threefry, ResNet-18 on CPU);
    # the values are as random either way and do not change the step's cost.
    keys = jax.vmap(lambda i: jax.random.key(i, impl="rbg"))(jnp.arange(lanes))
    box = {"state": jax.jit(jax.vmap(case.init_lane))(keys)}
    data = case.make_batch(lanes)
    program = lanes_program(case.lane_step, groups, steps_per_call)
    if devices > 1:
        program, placement = on_devices(program, devices)
        box["state"], data = jax.device_put((box["state"], data), placement)
    jax.block_until_ready((box["state"], data))
    step = jax.jit(program, donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(box["state"], data).compile()
    compile_s = time.perf_counter() - start
    # XLA's cost analysis counts a while loop's body once: with lanes in groups, one group's FLOPs
    # (and in a scan of steps, one step's)
    xla_flops = _cost_flops(compiled) * groups * devices / lanes

    def run(n):
        for _ in range(n):
            box["state"], box["loss"] = compiled(box["state"], data)
        jax.block_until_ready((box["state"], box["loss"]))

    run(1)  # warm-up
    one = common.best_time(lambda: run(1), repeats=1, warmup=0)["seconds"]
    n = common.calibrated_steps(one, seconds, min_steps, max_steps)
    timing = common.best_time(lambda: run(n), repeats=repeats, warmup=0)
    elapsed, steps = timing["seconds"], n * steps_per_call
    rate = lanes * steps / elapsed
    program_bytes = sharding.program_bytes(compiled)
    return {"lanes": lanes, "devices": devices, "groups": groups, "steps_per_call": steps_per_call, "steps": steps, "seconds": elapsed,
            "step_ms": 1e3 * elapsed / steps, "others_cpu": timing["others_cpu"],
            "all_lane_steps_per_s": [lanes * steps / t for t in timing["all_seconds"]],
            "lane_steps_per_s": rate, "compile_s": compile_s,
            "xla_flops_per_lane_step": xla_flops, "analytic_flops_per_lane_step": case.analytic_flops_per_lane_step,
            "xla_over_analytic": xla_flops / case.analytic_flops_per_lane_step,
            "model_flops_per_s": rate * xla_flops, "fraction_of_matmul": rate * xla_flops / peak,
            "analytic_fraction_of_matmul": rate * case.analytic_flops_per_lane_step / peak,
            "device_memory_mb": None if program_bytes is None else program_bytes / 2 ** 20,
            "peak_rss_mb": common.peak_rss_mb(), "final_loss": float(jnp.mean(box["loss"]))}


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


QUICK = {**model_sizes.QUICK, "seconds": 0.05, "min_steps": 2, "max_steps": 5, "matmul_size": 256,
         "matmul_seconds": 0.1, "repeats": 1}
PAPER = model_sizes.PAPER


def t5_config(args) -> t5.T5Config:
    return t5.T5Config(d_model=args.t5_d_model, num_heads=args.t5_heads, d_kv=args.t5_d_kv, d_ff=args.t5_d_ff)


def build_case(name: str, args) -> Case:
    """The step of model ``name`` (resnet18 or t5) at the sizes of ``args`` (model_sizes.py's flags)."""
    if name == "resnet18":
        return resnet_case(args.resnet_batch, args.resnet_width, args.resnet_image, args.resnet_cifar_stem,
                           getattr(args, "resnet_dtype", "float32"), getattr(args, "resnet_in_channels", 3))
    if name == "t5":
        return t5_case(args.t5_batch, args.t5_input_len, args.t5_target_len, t5_config(args))
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


MODELS = ("resnet18", "t5")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,t5", help="comma separated: resnet18, t5")
    parser.add_argument("--lanes", default="1,2,4", help="lane counts R (comma separated)")
    model_sizes.add_size_arguments(parser)
    parser.add_argument("--resnet-dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--resnet-in-channels", type=int, default=3,
                        help="ResNet input channels (CIFAR: 3; the MNIST presets: 1, with --resnet-image 28)")
    parser.add_argument("--seconds", type=float, default=3.0, help="target time of one timed measurement")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="timed measurements per cell; the fastest is kept")
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--scan", type=int, default=1, metavar="K",
                        help="time K steps per call in a lax.scan, as the engine runs them (default 1: the step alone)")
    parser.add_argument("--matmul-size", type=int, help="reference matmul n (default: 2048 on CPU, 8192 otherwise)")
    parser.add_argument("--matmul-seconds", type=float, default=1.0, help="time spent timing the reference matmul")
    parser.add_argument("--paper", action="store_true", help="the paper's sizes: ResNet width 1, batch 250; T5 batch 64")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: a smoke test in seconds")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    for preset, flag in ((PAPER, args.paper), (QUICK, args.quick)):
        if flag:
            model_sizes.apply_preset(args, preset)
    if args.quick and args.lanes == parser.get_default("lanes"):
        args.lanes = "2"
    names = args.models.split(",")
    for name in names:
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; choose from {', '.join(MODELS)}")

    device = jax.devices()[0]
    matmul = common.matmul_flops_per_second(args.matmul_size, args.matmul_seconds)
    peak = matmul["flops_per_s"]
    print(f"device: {device.platform} {device.device_kind} ({common.cpu_model()}, {common.cores()} CPU cores); "
          f"jax {jax.__version__}; XLA_FLAGS={common.xla_flags()!r}")
    print(f"reference: float32 {matmul['n']}² matmul {peak / 1e9:,.1f} GFLOP/s")
    print(f"FLOPs: {FLOPS_SOURCE}; the analytic count (matmuls/convs only) beside it")
    start = time.perf_counter()
    result = {"matmul": matmul, "flops_source": FLOPS_SOURCE, "quick": args.quick, "models": {}}
    for name in names:
        case = build_case(name, args)
        print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in case.sizes.items()))
        rows = []
        for r in common.parse_ints(args.lanes):
            row = measure(case, r, seconds=args.seconds, min_steps=args.min_steps, max_steps=args.max_steps,
                          peak=peak, repeats=args.repeats, steps_per_call=args.scan)
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
        common.write_json(args.json, "model_steps", result)
    return result


if __name__ == "__main__":
    main()
