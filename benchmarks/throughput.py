"""Throughput of the MNIST MLP protocol in gradual-jax: lane-steps per second for R lanes in one
program, compile time, and model FLOP/s against a float32 matmul and a bare MLP step timed in the
same run.

    python -m benchmarks.throughput [--lanes 1,8,32] [--tasks 2] [--vmap-lanes 0] [--json OUT.json]
    python -m benchmarks.throughput --quick --lanes 2 --tasks 1 --json /tmp/throughput.json   # smoke test

Data are MNIST-shaped random numbers (throughput does not depend on pixel values), so the
benchmark needs no data set. Each lane runs the paper's LayerNorm MLP (784-256×4-10), Adam,
batch 64, on 5,120 examples; one task segment here is 2 epochs (E = 1, k = 1) = 160 steps. Lanes
alternate abrupt / output interpolation at Δ = 0.5.

Lanes are grouped as the ``gradual-jax`` command groups them (``run.vmap_lanes``: 0 = automatic,
groups of at most 4 lanes one after another on a CPU, one vmap on an accelerator); ``--vmap-lanes
0,1024`` measures the automatic grouping and one vmap of all lanes side by side in one run.
The other benchmarks of the MLP (compare.py, lane_scaling.py) build this same program.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from gradual_jax.core import engine
from gradual_jax.runner import sharding
from gradual_jax.envs import image
from gradual_jax.config import ExperimentConfig
from gradual_jax.models import MLP
from gradual_jax.runner.sweep import Lane, to_hparams
from gradual_jax.runner.build import make_optimizer_factory

NUM_TRAIN, BATCH, HIDDEN, CLASSES, FEATURES = 5120, 64, (256, 256, 256, 256), 10, 784
SCHEDULES = ("abrupt", "output_interp")  # lane i runs SCHEDULES[i % 2], in every MLP benchmark
DELTA = 0.5


def model_flops_per_step(batch: int = BATCH, hidden=HIDDEN) -> float:
    """Matmul FLOPs of one training step: forward 2·B·Σ(in·out), backward twice that."""
    sizes = [FEATURES, *hidden, CLASSES]
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6.0 * batch * macs


def bare_step_flops_per_second(num_lanes: int, batch: int = BATCH, steps: int = 160, repeats: int = 3,
                               hidden=HIDDEN) -> float:
    """Model FLOP/s of the cheapest program that does the MLP step's matmuls, for ``num_lanes`` lanes.

    784-256×4-10 with ReLU only (no LayerNorm, no biases), a hand-written backward pass and plain
    SGD, over one fixed batch per lane, ``lax.scan``-ed for ``steps`` steps and vmapped over lanes
    like the engine: the same matmuls with the same dependencies and almost nothing else. The
    engine's MLP step (plus Adam, LayerNorm, biases, data gathers, schedule mixing, metrics) can
    hardly beat it, so its model FLOP/s are a practical ceiling for the engine on this machine.
    """
    sizes = [FEATURES, *hidden, CLASSES]
    keys = jax.random.split(jax.random.key(0), len(sizes))
    weights = [jax.random.normal(k, (num_lanes, n_in, n_out)) / n_in ** 0.5
               for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]
    x0 = jax.random.normal(keys[-1], (num_lanes, batch, FEATURES))

    def lane_step(ws, x):
        acts = [x]
        for w in ws[:-1]:
            acts.append(jax.nn.relu(acts[-1] @ w))
        dy = (acts[-1] @ ws[-1]) / batch  # d(loss)/d(logits) for loss = Σ logits² / 2B
        grads = []
        for w, a in zip(ws[::-1], acts[::-1]):
            grads.append(a.T @ dy)
            dy = (dy @ w.T) * (a > 0)
        return [w - 1e-4 * g for w, g in zip(ws, grads[::-1])]

    @jax.jit
    def train(ws, x):
        return jax.lax.scan(lambda ws, _: (jax.vmap(lane_step)(ws, x), None), ws, None, length=steps)[0]

    state = {"w": jax.block_until_ready(train(weights, x0))}

    def run():
        state["w"] = jax.block_until_ready(train(state["w"], x0))

    timing = common.best_time(run, repeats=repeats, warmup=0)
    return num_lanes * steps * model_flops_per_step(batch, hidden) / timing["seconds"]


def classification(family: str, num_classes: int) -> dict:
    """``engine.Program`` keyword arguments of an image-classification task family."""
    return {"problem": image.Classification(image.get_family(family), num_classes)}


def make_program(num_train: int = NUM_TRAIN, hidden=HIDDEN) -> engine.Program:
    return engine.Program(
        model_factory=lambda rngs: MLP(FEATURES, hidden, CLASSES, rngs=rngs),
        **classification("random_labels", CLASSES), num_train=num_train,
        epochs_per_task=1, transition_epochs=1, batch_size=BATCH, eval_batch_size=1024,
        make_optimizer=make_optimizer_factory(ExperimentConfig()))


def make_data(num_train: int = NUM_TRAIN) -> engine.BaseData:
    rng = np.random.default_rng(0)
    return engine.BaseData(x_train=jnp.asarray(rng.normal(size=(num_train, FEATURES)), jnp.float32),
                           y_train=jnp.asarray(np.repeat(np.arange(CLASSES), num_train // CLASSES), jnp.int32))


def make_lanes(num_lanes: int) -> list[Lane]:
    return [Lane(seed=i, schedule=SCHEDULES[i % 2], delta=None if i % 2 == 0 else DELTA, learning_rate=1e-3)
            for i in range(num_lanes)]


def measure(num_lanes: int, num_tasks: int, vmap_lanes: int = 0, num_train: int = NUM_TRAIN,
            hidden=HIDDEN, repeats: int = 1) -> dict:
    """Compile R lanes into one program (lane groups as the command makes them), run one untimed
    warm-up task, then time ``num_tasks`` tasks, best of ``repeats``."""
    data, program, hp = make_data(num_train), make_program(num_train, hidden), to_hparams(make_lanes(num_lanes))
    state = {"s": engine.init_lanes(program, hp), "task": 0}
    start = time.perf_counter()
    groups = sharding.LaneLayout.create(num_lanes).lane_groups(vmap_lanes)  # as `gradual-jax run`
    run_task = engine.make_task_fn(program, groups).lower(hp, state["s"], data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start

    def tasks_once():
        for _ in range(num_tasks):
            state["s"], m = run_task(hp, state["s"], data, jnp.int32(state["task"]))
            state["task"] += 1
        jax.block_until_ready(m)

    state["s"], m = run_task(hp, state["s"], data, jnp.int32(0))  # warm-up task
    jax.block_until_ready(m)
    state["task"] = 1
    timing = common.best_time(tasks_once, repeats=repeats, warmup=0)
    lane_steps = num_lanes * program.steps_per_task * num_tasks
    return {"lanes": num_lanes, "vmap_lanes": vmap_lanes, "lane_groups": groups, "compile_s": compile_s,
            "seconds": timing["seconds"], "others_cpu": timing["others_cpu"],
            "steps_per_task": program.steps_per_task,
            "program_mb": (sharding.program_bytes(run_task) or 0) / 2 ** 20,
            "lane_steps_per_s": lane_steps / timing["seconds"],
            "model_flops_per_s": lane_steps * model_flops_per_step(hidden=hidden) / timing["seconds"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32")
    parser.add_argument("--tasks", type=int, default=2, help="timed task segments per lane count")
    parser.add_argument("--vmap-lanes", default="0",
                        help="run.vmap_lanes values to measure, comma-separated (0: automatic, as the CLI)")
    parser.add_argument("--num-train", type=int, default=NUM_TRAIN, help="examples (smaller only for smoke tests)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 640 examples, hidden 32,32, a small reference matmul and ceiling")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    hidden = (32, 32) if args.quick else HIDDEN
    if args.quick:
        args.num_train = 640
    matmul = common.matmul_flops_per_second(256 if args.quick else None, 0.1 if args.quick else 1.0)
    peak = matmul["flops_per_s"]
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} ×{jax.device_count()}; XLA_FLAGS={common.xla_flags()!r}")
    print(f"reference: float32 {matmul['n']}² matmul {peak / 1e9:,.1f} GFLOP/s")
    print("'% of bare step': of a bare ReLU MLP step's FLOP/s (same matmuls, plain SGD, nothing else), "
          "as many lanes")
    print(f"{'lanes':>6}{'groups':>8}{'compile s':>11}{'lane-steps/s':>14}{'model GFLOP/s':>15}"
          f"{'% of matmul':>13}{'% of bare step':>16}")
    rows = []
    for n in common.parse_ints(args.lanes):
        ceiling = (bare_step_flops_per_second(n, steps=10, repeats=1, hidden=hidden) if args.quick
                   else bare_step_flops_per_second(n))
        for vmap_lanes in common.parse_ints(args.vmap_lanes):
            row = measure(n, args.tasks, vmap_lanes, args.num_train, hidden)
            row.update(fraction_of_matmul=row["model_flops_per_s"] / peak, bare_step_flops_per_s=ceiling,
                       fraction_of_bare_step=row["model_flops_per_s"] / ceiling)
            rows.append(row)
            print(f"{n:>6}{row['lane_groups']:>8}{row['compile_s']:>11.1f}{row['lane_steps_per_s']:>14,.0f}"
                  f"{row['model_flops_per_s'] / 1e9:>15,.1f}{100 * row['fraction_of_matmul']:>12.0f}%"
                  f"{100 * row['fraction_of_bare_step']:>15.0f}%")
    result = {"matmul": matmul, "matmul_flops_per_s": peak, "num_train": args.num_train, "hidden": list(hidden),
              "quick": args.quick, "rows": rows}
    if args.json:
        common.write_json(args.json, "throughput", result)
    return result


if __name__ == "__main__":
    main()
