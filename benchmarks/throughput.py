"""Throughput of the MNIST MLP protocol: lane-steps per second for 1, 8 and 32 lanes in one
program, achieved model FLOP/s against a large float32 matmul measured in the same run, and
compile time.

    python benchmarks/throughput.py [--lanes 1,8,32] [--tasks 2] [--json OUT.json]

Data are MNIST-shaped random numbers (throughput does not depend on pixel values), so the
benchmark needs no data set. Each lane runs the paper's LayerNorm MLP (784-256×4-10), Adam,
batch 64, on 5,120 examples; one task segment here is 2 epochs (E = 1, k = 1) = 160 steps.

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

from gradual_jax import engine, tasks  # noqa: E402
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


def classification(family: str, num_classes: int) -> dict:
    """``engine.Program`` keyword arguments of an image-classification task family."""
    return {"problem": tasks.Classification(tasks.get_family(family), num_classes)}


def make_program() -> engine.Program:
    return engine.Program(
        model_factory=lambda rngs: MLP(FEATURES, HIDDEN, CLASSES, rngs=rngs),
        **classification("random_labels", CLASSES), num_train=NUM_TRAIN,
        epochs_per_task=1, transition_epochs=1, batch_size=BATCH, eval_batch_size=1024,
        make_optimizer=make_optimizer_factory(ExperimentConfig()))


def measure(num_lanes: int, num_tasks: int) -> dict:
    rng = np.random.default_rng(0)
    data = engine.TaskData(x_train=jnp.asarray(rng.normal(size=(NUM_TRAIN, FEATURES)), jnp.float32),
                           y_train=jnp.asarray(np.repeat(np.arange(CLASSES), NUM_TRAIN // CLASSES), jnp.int32))
    program = make_program()
    lanes = [Lane(seed=i, schedule=("abrupt", "output_interp")[i % 2], delta=None if i % 2 == 0 else 0.5,
                  learning_rate=1e-3) for i in range(num_lanes)]
    hp = to_hparams(lanes)
    state = engine.init_lanes(program, hp)
    start = time.perf_counter()
    run_task = engine.make_task_fn(program).lower(hp, state, data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    state, m = run_task(hp, state, data, jnp.int32(0))  # warm-up
    jax.block_until_ready(m)
    start = time.perf_counter()
    for t in range(1, num_tasks + 1):
        state, m = run_task(hp, state, data, jnp.int32(t))
    jax.block_until_ready(m)
    seconds = time.perf_counter() - start
    lane_steps = num_lanes * program.steps_per_task * num_tasks
    return {"lanes": num_lanes, "compile_s": compile_s, "seconds": seconds,
            "lane_steps_per_s": lane_steps / seconds,
            "model_flops_per_s": lane_steps * model_flops_per_step() / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32")
    parser.add_argument("--tasks", type=int, default=2, help="timed task segments per lane count")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    device = jax.devices()[0]
    peak = matmul_flops_per_second()
    print(f"device: {device.platform} {device.device_kind} ×{jax.device_count()}")
    print(f"reference: float32 2048² matmul {peak / 1e9:,.1f} GFLOP/s; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"{'lanes':>6}{'compile s':>11}{'lane-steps/s':>14}{'model GFLOP/s':>15}{'% of matmul':>13}")
    rows = []
    for n in (int(x) for x in args.lanes.split(",")):
        row = measure(n, args.tasks)
        row["fraction_of_matmul"] = row["model_flops_per_s"] / peak
        rows.append(row)
        print(f"{n:>6}{row['compile_s']:>11.1f}{row['lane_steps_per_s']:>14,.0f}"
              f"{row['model_flops_per_s'] / 1e9:>15,.1f}{100 * row['fraction_of_matmul']:>12.0f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": f"{device.platform} {device.device_kind}", "matmul_flops_per_s": peak,
                       "xla_flags": os.environ.get("XLA_FLAGS", ""), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
