"""Do gradual-jax and the PyTorch reference reach the same accuracy on the same data?

    python -m benchmarks.compare --check [--check-seeds 8] [--json OUT.json]

Both implementations train the same lanes (seeds × {abrupt, output_interp}) on the same real
MNIST subset (64 per class, LayerNorm MLP 784-W×4-10, E = 5, k = 2, Δ = 0.5, batch 64, Adam 1e-3)
for a few tasks: gradual-jax as one program of all lanes, PyTorch one lane after another
(``torch_reference.train``, one thread). Their random streams differ (JAX keys against torch
generators), so lanes agree in distribution, not bit for bit: for each schedule and metric the
per-seed means over tasks are compared (mean ± std over seeds), and they agree if the difference
is within 3 standard errors or 0.03.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import throughput
from benchmarks import torch_reference
from gradual_jax.envs import data as data_lib
from gradual_jax.core import engine
from gradual_jax.runner import sharding
from gradual_jax.config import ExperimentConfig
from gradual_jax.models import MLP
from gradual_jax.runner.sweep import Lane, to_hparams
from gradual_jax.runner.build import make_optimizer_factory

SCHEDULES = throughput.SCHEDULES


def run_check(seeds: int, tasks: int, per_class: int, epochs: int, ratio: float, delta: float,
              width: int, echo=print) -> dict:
    hidden = (width,) * 4
    splits = data_lib.load_images("mnist")
    idx = data_lib.balanced_subset(splits.y_train, per_class, seed=0)
    x = data_lib.normalize(splits.x_train[idx], "mnist")
    y = splits.y_train[idx]
    echo(f"check: MNIST ({splits.source}) {len(idx)} images ({per_class}/class), MLP 784-{width}×4-10, "
         f"E={epochs}, k={ratio:g}, Δ={delta:g}, batch 64, {tasks} tasks, seeds 0..{seeds - 1}")

    lanes = [Lane(seed=s, schedule=name, delta=None if name == "abrupt" else delta, learning_rate=1e-3)
             for name in SCHEDULES for s in range(seeds)]
    program = engine.Program(
        model_factory=lambda rngs: MLP(x[0].size, hidden, 10, rngs=rngs),
        **throughput.classification("random_labels", 10), num_train=len(idx),
        epochs_per_task=epochs, transition_epochs=round(ratio * epochs), batch_size=64,
        eval_batch_size=1024, make_optimizer=make_optimizer_factory(ExperimentConfig()))
    data = engine.BaseData(x_train=jnp.asarray(x), y_train=jnp.asarray(y, jnp.int32))
    hp = to_hparams(lanes)
    state = engine.init_lanes(program, hp)
    run_task = engine.make_task_fn(program, sharding.LaneLayout.create(len(lanes)).lane_groups(0))
    start = time.perf_counter()
    jax_metrics = {"train_acc": [], "online_train_acc": []}  # [task][lane]
    for t in range(tasks):
        state, m = run_task(hp, state, data, jnp.int32(t))
        m = jax.device_get(m)
        for key in jax_metrics:
            jax_metrics[key].append(np.asarray(getattr(m, key), float))
    jax_s = time.perf_counter() - start
    echo(f"check: gradual-jax, {len(lanes)} lanes in one program: {jax_s:.1f} s (with compile)")

    # One thread: the check measures agreement, not speed, and a single thread cannot stall in OpenMP
    # barriers when other work shares the cores (two threads can, badly, on a busy 2-core machine).
    torch.set_num_threads(1)
    tx = torch.from_numpy(x.reshape(len(x), -1).copy())
    ty = torch.from_numpy(y.astype(np.int64))
    start = time.perf_counter()
    torch_metrics = {"train_acc": [[None] * len(lanes) for _ in range(tasks)],
                     "online_train_acc": [[None] * len(lanes) for _ in range(tasks)]}
    for j, lane in enumerate(lanes):
        out = torch_reference.train(tx, ty, seed=lane.seed, schedule=lane.schedule, delta=delta,
                                    epochs_per_task=epochs, transition_ratio=ratio, batch_size=64,
                                    hidden=hidden, num_tasks=tasks)
        for row in out["per_task"]:
            for key in torch_metrics:
                torch_metrics[key][row["task"]][j] = row[key]
    torch_s = time.perf_counter() - start
    echo(f"check: PyTorch, {len(lanes)} lanes one after another (1 thread): {torch_s:.1f} s")

    summary = []
    for key in ("train_acc", "online_train_acc"):
        for name in SCHEDULES:
            cols = [j for j, lane in enumerate(lanes) if lane.schedule == name]
            per_seed = {}
            per_task = {}
            for impl, table in (("jax", jax_metrics[key]), ("torch", torch_metrics[key])):
                arr = np.array([[table[t][j] for j in cols] for t in range(tasks)], float)  # [task, seed]
                per_seed[impl] = arr.mean(0)
                per_task[impl] = arr.mean(1).tolist()
            mj, mt = per_seed["jax"].mean(), per_seed["torch"].mean()
            sj, st = per_seed["jax"].std(ddof=1), per_seed["torch"].std(ddof=1)
            se = math.sqrt(sj ** 2 / len(cols) + st ** 2 / len(cols))
            diff = mj - mt
            summary.append({
                "metric": key, "schedule": name, "seeds": len(cols),
                "jax_mean": mj, "jax_std": sj, "torch_mean": mt, "torch_std": st,
                "difference": diff, "standard_error": se,
                "agree": bool(abs(diff) <= max(3 * se, 0.03)),
                "jax_per_task": per_task["jax"], "torch_per_task": per_task["torch"]})
    return {"data": f"mnist ({splits.source}), {per_class}/class, subset_seed 0",
            "protocol": {"hidden": list(hidden), "epochs_per_task": epochs, "transition_ratio": ratio,
                         "delta": delta, "batch": 64, "optimizer": "adam 1e-3", "tasks": tasks},
            "seeds": list(range(seeds)), "metric_per_seed": "mean over the tasks",
            "criterion": "|mean_jax - mean_torch| <= max(3 * sqrt(std_jax²/n + std_torch²/n), 0.03)",
            "jax_seconds": jax_s, "torch_seconds": torch_s, "results": summary,
                        "agree": all(r["agree"] for r in summary)}


def check_table(result: dict) -> str:
    lines = ["| metric | schedule | gradual-jax | PyTorch | difference | 3 SE | agree |",
             "|---|---|---:|---:|---:|---:|:---:|"]
    for r in result["results"]:
        lines.append(f"| {r['metric']} | {r['schedule']} | {r['jax_mean']:.3f} ± {r['jax_std']:.3f} | "
                     f"{r['torch_mean']:.3f} ± {r['torch_std']:.3f} | {r['difference']:+.3f} | "
                     f"{3 * r['standard_error']:.3f} | {'yes' if r['agree'] else 'NO'} |")
    lines += ["", "per task (mean over seeds), gradual-jax / PyTorch:", "",
              "| metric | schedule | " + " | ".join(f"task {t}" for t in range(result["protocol"]["tasks"])) + " |",
              "|---|---|" + "---:|" * result["protocol"]["tasks"]]
    for r in result["results"]:
        cells = " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(r["jax_per_task"], r["torch_per_task"]))
        lines.append(f"| {r['metric']} | {r['schedule']} | {cells} |")
    return "\n".join(lines)
