"""Throughput of the MNIST MLP protocol: lane-steps per second for 1, 8 and 32 lanes in one
program, achieved model FLOP/s against a large float32 matmul measured in the same run, and
compile time.

    python benchmarks/throughput.py [--lanes 1,8,32] [--tasks 2] [--vmap-lanes 0] [--json OUT.json]

Data are MNIST-shaped random numbers (throughput does not depend on pixel values), so the
benchmark needs no data set. Each lane runs the paper's LayerNorm MLP (784-256×4-10), Adam,
batch 64, on 5,120 examples; one task segment here is 2 epochs (E = 1, k = 1) = 160 steps.

Lanes are grouped as the ``gradual-jax`` command groups them (``run.vmap_lanes``: 0 = automatic,
groups of at most 4 lanes one after another on a CPU, one vmap on an accelerator); ``--vmap-lanes
0,1024`` measures the automatic grouping and one vmap of all lanes side by side in one run.

XLA flags are those the ``gradual-jax`` command uses (``gradual_jax/xla_flags.py``: on CPU the
experimental YNNPACK fusions are off); ``GRADUAL_JAX_KEEP_XLA_FLAGS=1`` measures JAX's defaults.
The flags in effect are printed and written to the JSON.
"""

from __future__ import annotations

import os

from gradual_jax.xla_flags import set_default_xla_flags

set_default_xla_flags()  # as the CLI does, before jax is imported

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gradual_jax import engine, sharding, tasks  # noqa: E402
from gradual_jax.models import MLP  # noqa: E402
from gradual_jax.sweep import Lane, to_hparams  # noqa: E402
from gradual_jax.train import make_optimizer_factory  # noqa: E402
from gradual_jax.config import ExperimentConfig  # noqa: E402

NUM_TRAIN, BATCH, HIDDEN, CLASSES, FEATURES = 5120, 64, (256, 256, 256, 256), 10, 784


def model_flops_per_step(batch: int = BATCH) -> float:
    """Matmul FLOPs of one training step: forward 2·B·Σ(in·out), backward twice that."""
    sizes = [FEATURES, *HIDDEN, CLASSES]
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 6.0 * batch * macs


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2.0 * n ** 3 * repeats / (time.perf_counter() - start)


def bare_step_flops_per_second(num_lanes: int, batch: int = BATCH, steps: int = 160, repeats: int = 3) -> float:
    """Model FLOP/s of the cheapest program that does the MLP step's matmuls, for ``num_lanes`` lanes.

    784-256×4-10 with ReLU only (no LayerNorm, no biases), a hand-written backward pass and plain
    SGD, over one fixed batch per lane, ``lax.scan``-ed for ``steps`` steps and vmapped over lanes
    like the engine: the same matmuls with the same dependencies and almost nothing else. The
    engine's MLP step (plus Adam, LayerNorm, biases, data gathers, schedule mixing, metrics) can
    hardly beat it, so its model FLOP/s are a practical ceiling for the engine on this machine.
    """
    sizes = [FEATURES, *HIDDEN, CLASSES]
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

    weights = jax.block_until_ready(train(weights, x0))
    start = time.perf_counter()
    for _ in range(repeats):
        weights = train(weights, x0)
    jax.block_until_ready(weights)
    return num_lanes * steps * repeats * model_flops_per_step(batch) / (time.perf_counter() - start)


def classification(family: str, num_classes: int) -> dict:
    """``engine.Program`` keyword arguments of an image-classification task family."""
    return {"problem": tasks.Classification(tasks.get_family(family), num_classes)}


def make_program() -> engine.Program:
    return engine.Program(
        model_factory=lambda rngs: MLP(FEATURES, HIDDEN, CLASSES, rngs=rngs),
        **classification("random_labels", CLASSES), num_train=NUM_TRAIN,
        epochs_per_task=1, transition_epochs=1, batch_size=BATCH, eval_batch_size=1024,
        make_optimizer=make_optimizer_factory(ExperimentConfig()))


def measure(num_lanes: int, num_tasks: int, vmap_lanes: int = 0) -> dict:
    rng = np.random.default_rng(0)
    data = engine.TaskData(x_train=jnp.asarray(rng.normal(size=(NUM_TRAIN, FEATURES)), jnp.float32),
                           y_train=jnp.asarray(np.repeat(np.arange(CLASSES), NUM_TRAIN // CLASSES), jnp.int32))
    program = make_program()
    lanes = [Lane(seed=i, schedule=("abrupt", "output_interp")[i % 2], delta=None if i % 2 == 0 else 0.5,
                  learning_rate=1e-3) for i in range(num_lanes)]
    hp = to_hparams(lanes)
    state = engine.init_lanes(program, hp)
    start = time.perf_counter()
    groups = sharding.LaneLayout.create(num_lanes).lane_groups(vmap_lanes)  # as `gradual-jax run`
    run_task = engine.make_task_fn(program, groups).lower(hp, state, data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    state, m = run_task(hp, state, data, jnp.int32(0))  # warm-up
    jax.block_until_ready(m)
    start = time.perf_counter()
    for t in range(1, num_tasks + 1):
        state, m = run_task(hp, state, data, jnp.int32(t))
    jax.block_until_ready(m)
    seconds = time.perf_counter() - start
    lane_steps = num_lanes * program.steps_per_task * num_tasks
    return {"lanes": num_lanes, "vmap_lanes": vmap_lanes, "lane_groups": groups, "compile_s": compile_s,
            "seconds": seconds,
            "lane_steps_per_s": lane_steps / seconds,
            "model_flops_per_s": lane_steps * model_flops_per_step() / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32")
    parser.add_argument("--tasks", type=int, default=2, help="timed task segments per lane count")
    parser.add_argument("--vmap-lanes", default="0",
                        help="run.vmap_lanes values to measure, comma-separated (0: automatic, as the CLI)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    device = jax.devices()[0]
    peak = matmul_flops_per_second()
    print(f"device: {device.platform} {device.device_kind} ×{jax.device_count()}")
    print(f"reference: float32 2048² matmul {peak / 1e9:,.1f} GFLOP/s; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("'% of bare step': of a bare ReLU MLP step's FLOP/s (same matmuls, plain SGD, nothing else), "
          "as many lanes")
    print(f"{'lanes':>6}{'groups':>8}{'compile s':>11}{'lane-steps/s':>14}{'model GFLOP/s':>15}"
          f"{'% of matmul':>13}{'% of bare step':>16}")
    rows = []
    for n in (int(x) for x in args.lanes.split(",")):
        ceiling = bare_step_flops_per_second(n)
        for vmap_lanes in (int(v) for v in args.vmap_lanes.split(",")):
            row = measure(n, args.tasks, vmap_lanes)
            row["fraction_of_matmul"] = row["model_flops_per_s"] / peak
            row["bare_step_flops_per_s"] = ceiling
            row["fraction_of_bare_step"] = row["model_flops_per_s"] / ceiling
            rows.append(row)
            print(f"{n:>6}{row['lane_groups']:>8}{row['compile_s']:>11.1f}{row['lane_steps_per_s']:>14,.0f}"
                  f"{row['model_flops_per_s'] / 1e9:>15,.1f}{100 * row['fraction_of_matmul']:>12.0f}%"
                  f"{100 * row['fraction_of_bare_step']:>15.0f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": f"{device.platform} {device.device_kind}", "matmul_flops_per_s": peak,
                       "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
