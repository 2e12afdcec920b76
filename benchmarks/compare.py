"""gradual-jax against a plain PyTorch reference (benchmarks/torch_reference.py), in one invocation
on one machine.

    python benchmarks/compare.py [--lanes 1,8,32] [--tasks 2] [--repeats 2] [--sequential-sample 4] [--json OUT.json]
    python benchmarks/compare.py --check [--check-seeds 8] [--json OUT.json]

Throughput (the default). For each lane count R, every variant trains R lanes of the same protocol
for the same number of steps per lane (``--tasks`` task segments of 160 steps: the program of
``benchmarks/throughput.py``, 5,120 MNIST-shaped random examples, LayerNorm MLP 784-256×4-10,
Adam, batch 64, E = 1, k = 1, Δ = 0.5, lanes alternating abrupt / output_interp):

* ``gradual-jax``: one compiled program of R lanes (``throughput.measure``: compile, one untimed
  warm-up task, then the timed tasks), in a fresh subprocess so its peak RSS is its own, with the
  ``gradual-jax`` command's XLA flags (``gradual_jax/xla_flags.py``; ``GRADUAL_JAX_KEEP_XLA_FLAGS=1``
  for JAX's defaults);
* ``torch sequential``: R runs of the reference one after another, each a process with
  torch threads = all cores. The lanes are independent and identical in cost, so only the first
  ``--sequential-sample`` lanes are timed and the rate is extrapolated to R (said in the output);
* ``torch parallel``: R reference processes at once, sharing the cores, torch threads =
  max(1, cores // R) each. All processes load and build first, then start together on a
  barrier; the rate is R·steps over the wall time from the start signal to the last finish.

Torch times cover the training loop only (not Python/torch start-up, data or model set-up); the
gradual-jax time covers the timed tasks only (compile time is reported separately). Every variant is
measured ``--repeats`` times (interleaved) and the fastest is kept, and every measurement records
the share of the machine's CPU that *other* processes used meanwhile (``others' CPU``: /proc/stat
busy time minus this process tree's rusage); above 5% the numbers are disturbed and a warning is
printed. Model
FLOP/s = lane-steps/s × the MLP's matmul FLOPs per step (forward + backward), against a 2048²
float32 matmul timed by XLA in the same run (PyTorch's own matmul rate is reported too), and, for
gradual-jax, against a bare ReLU MLP step of R lanes (``throughput.bare_step_flops_per_second``:
the same matmuls with plain SGD and nothing else, a practical ceiling for the MLP step). Peak
memory is each process's peak resident set size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``,
reported by the process itself (for the parallel variant, the sum over the R processes).

Correctness (``--check``): both implementations train the same lanes (seeds × {abrupt,
output_interp}) on the same real MNIST subset (64 per class, width 256, E = 5, k = 2, Δ = 0.5,
batch 64) for a few tasks; for each schedule and metric the per-seed means over tasks are compared
(mean ± std over seeds), and they agree if the difference is within 3 standard errors or 0.03.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import throughput  # noqa: E402  (benchmarks/throughput.py: the gradual-jax side, reused)
from machine import busy_cpu_seconds  # noqa: E402  (benchmarks/machine.py)

TORCH_REFERENCE = HERE / "torch_reference.py"
SCHEDULES = ("abrupt", "output_interp")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def provenance() -> dict:
    """Where the gradual_jax being measured comes from: its path, and the git commit if it is a checkout."""
    import gradual_jax

    root = Path(gradual_jax.__file__).resolve().parent.parent
    info = {"gradual_jax": str(root)}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "gradual_jax"],
                               capture_output=True, text=True)
        if commit.returncode == 0:
            info.update(commit=commit.stdout.strip(), gradual_jax_modified=bool(dirty.stdout.strip()))
    except OSError:
        pass
    return info


def steps_per_task() -> int:
    return throughput.make_program().steps_per_task


def lane_schedule(i: int) -> str:
    return SCHEDULES[i % 2]  # as throughput.measure: even lanes abrupt, odd lanes output_interp


# --- workers -----------------------------------------------------------------------------------

def _json_line(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in the worker's output:\n{stdout[-2000:]}")


def _run(cmd: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return _json_line(proc.stdout)


def set_num_train(num_train: int) -> None:
    """Shrink the benchmark's data set (smoke tests only): throughput.py reads it at call time."""
    throughput.NUM_TRAIN = num_train


def jax_worker(num_lanes: int, tasks: int, num_train: int) -> None:
    """Runs in a subprocess: one gradual-jax program of ``num_lanes`` lanes (throughput.measure)."""
    set_num_train(num_train)
    row = throughput.measure(num_lanes, tasks)
    row["peak_rss_mb"] = peak_rss_mb()
    row["bare_step_flops_per_s"] = throughput.bare_step_flops_per_second(num_lanes)  # a practical ceiling
    print(json.dumps(row))


def run_jax(num_lanes: int, tasks: int) -> dict:
    return _run([sys.executable, str(Path(__file__).resolve()), "--jax-worker", str(num_lanes),
                 "--tasks", str(tasks), "--num-train", str(throughput.NUM_TRAIN)])


def torch_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def torch_cmd(seed: int, steps: int, threads: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, str(TORCH_REFERENCE), "--steps", str(steps), "--seed", str(seed),
            "--schedule", lane_schedule(seed), "--delta", "0.5", "--epochs-per-task", "1",
            "--transition-ratio", "1", "--data", "synthetic", "--num-train", str(throughput.NUM_TRAIN),
            "--threads", str(threads), *extra]


def run_torch_parallel(num_lanes: int, steps: int, threads: int) -> dict:
    """R processes that set up, wait on a barrier (stdin), then train at once."""
    procs = [subprocess.Popen(torch_cmd(i, steps, threads, ("--wait-for-go",)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=torch_env(threads))
             for i in range(num_lanes)]
    try:
        for p in procs:
            while True:
                line = p.stderr.readline()
                if not line:
                    raise RuntimeError(f"a torch worker exited before it was ready: {p.wait()}")
                if line.strip() == "READY":
                    break
        go = time.time()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = []
        for p in procs:
            stdout, stderr = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"a torch worker failed ({p.returncode}):\n{stderr[-3000:]}")
            outs.append(_json_line(stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = max(o["wall_end"] for o in outs) - go
    return {"runs": outs, "wall_s": wall}


# --- throughput --------------------------------------------------------------------------------

def _own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(fn):
    """Run ``fn()`` and add ``others_cpu``: the share of the machine's CPU that processes other than
    this one and its children used meanwhile (0 on a quiet machine; > 0.05 means the numbers are
    disturbed by someone else's work)."""
    wall, busy, own = time.perf_counter(), busy_cpu_seconds(), _own_cpu_seconds()
    out = fn()
    wall = time.perf_counter() - wall
    others = (busy_cpu_seconds() - busy) - (_own_cpu_seconds() - own)
    out["others_cpu"] = max(0.0, others) / (wall * cores()) if wall > 0 else float("nan")
    return out


def compare(lane_counts: list[int], tasks: int, sequential_sample: int, repeats: int = 1, echo=print) -> dict:
    import jax

    n_cores = cores()
    steps = tasks * steps_per_task()
    flops_step = throughput.model_flops_per_step()
    load_before = load()
    peak = max(throughput.matmul_flops_per_second() for _ in range(repeats))
    torch_peak = max((_run([sys.executable, str(TORCH_REFERENCE), "--matmul", "--threads", str(n_cores)],
                           torch_env(n_cores)) for _ in range(repeats)), key=lambda o: o["matmul_flops_per_s"])
    device = jax.devices()[0]
    echo(f"machine: {platform.processor() or platform.machine()}, {n_cores} cores; jax {jax.__version__} "
         f"on {device.platform}; load average before: {load_before:.2f}; "
         f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (gradual_jax/xla_flags.py)")
    echo(f"reference: float32 2048² matmul, XLA {peak / 1e9:,.1f} GFLOP/s, PyTorch "
         f"{torch_peak['matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s ({torch_peak['threads']} threads)")
    echo(f"every variant: {steps} steps per lane ({tasks} tasks × {steps // tasks} steps), "
         f"{flops_step / 1e6:.1f} model MFLOP per step; best of {repeats} measurement(s) each")

    n_seq = min(max(lane_counts), sequential_sample)
    echo(f"torch sequential: timing {n_seq} lane(s), one process each, {n_cores} threads ...")
    sequential = []
    for i in range(n_seq):
        runs = [measured(lambda i=i: _run(torch_cmd(i, steps, n_cores), torch_env(n_cores)))
                for _ in range(repeats)]
        sequential.append(min(runs, key=lambda o: o["seconds"]))

    rows = []
    for r in lane_counts:
        threads = max(1, n_cores // r)
        jax_runs, par_runs = [], []
        for k in range(repeats):
            echo(f"R = {r}: gradual-jax ({k + 1}/{repeats}) ...")
            jax_runs.append(measured(lambda: run_jax(r, tasks)))
            echo(f"R = {r}: torch parallel, {r} processes × {threads} thread(s) ({k + 1}/{repeats}) ...")
            par_runs.append(measured(lambda: run_torch_parallel(r, steps, threads)))
        jx = max(jax_runs, key=lambda o: o["lane_steps_per_s"])
        par = min(par_runs, key=lambda o: o["wall_s"])
        seq_runs = sequential[:min(r, n_seq)]
        seq_seconds = sum(o["seconds"] for o in seq_runs)
        seq_rate = len(seq_runs) * steps / seq_seconds
        par_rate = r * steps / par["wall_s"]
        best = max(seq_rate, par_rate)
        row = {
            "lanes": r,
            "steps_per_lane": steps,
            "jax": {"lane_steps_per_s": jx["lane_steps_per_s"], "compile_s": min(o["compile_s"] for o in jax_runs),
                    "lane_groups": jx["lane_groups"],
                    "fraction_of_bare_step": jx["model_flops_per_s"] / jx["bare_step_flops_per_s"],
                    "seconds": jx["seconds"], "peak_rss_mb": jx["peak_rss_mb"], "others_cpu": jx["others_cpu"],
                    "all_lane_steps_per_s": [o["lane_steps_per_s"] for o in jax_runs]},
            "torch_sequential": {
                "lane_steps_per_s": seq_rate, "threads": n_cores, "lanes_timed": len(seq_runs),
                "extrapolated": len(seq_runs) < r, "seconds_timed": seq_seconds,
                "seconds_for_all_lanes": r * steps / seq_rate,
                "peak_rss_mb": max(o["peak_rss_mb"] for o in seq_runs),
                "others_cpu": max(o["others_cpu"] for o in seq_runs)},
            "torch_parallel": {
                "lane_steps_per_s": par_rate, "processes": r, "threads_each": threads, "wall_s": par["wall_s"],
                "peak_rss_mb": sum(o["peak_rss_mb"] for o in par["runs"]),
                "slowest_process_s": max(o["seconds"] for o in par["runs"]), "others_cpu": par["others_cpu"],
                "all_lane_steps_per_s": [r * steps / o["wall_s"] for o in par_runs]},
            "best_torch": "sequential" if seq_rate >= par_rate else "parallel",
            "jax_over_best_torch": jx["lane_steps_per_s"] / best,
            "load_average_after": load(),
        }
        for key in ("jax", "torch_sequential", "torch_parallel"):
            rate = row[key]["lane_steps_per_s"]
            row[key]["model_flops_per_s"] = rate * flops_step
            row[key]["fraction_of_matmul"] = rate * flops_step / peak
        row["others_cpu_max"] = max(row[k]["others_cpu"] for k in ("jax", "torch_sequential", "torch_parallel"))
        rows.append(row)
        echo(f"R = {r}: jax {row['jax']['lane_steps_per_s']:,.0f}, torch sequential {seq_rate:,.0f}, "
             f"torch parallel {par_rate:,.0f} lane-steps/s (others' CPU share up to "
             f"{100 * row['others_cpu_max']:.0f}%)")
    return {
        "machine": {"processor": platform.processor() or platform.machine(), "cores": n_cores,
                    "jax": jax.__version__, "device": f"{device.platform} {device.device_kind}",
                    "torch": torch_peak.get("torch"), "load_average_before": load_before,
                    "xla_flags": os.environ.get("XLA_FLAGS", ""), **provenance()},
        "protocol": {"model": "LayerNorm MLP 784-256x4-10", "optimizer": "adam 1e-3", "batch": 64,
                     "num_train": throughput.NUM_TRAIN, "epochs_per_task": 1, "transition_ratio": 1,
                     "delta": 0.5, "schedules": "lanes alternate abrupt / output_interp",
                     "data": "synthetic (MNIST-shaped normals)"},
        "tasks_per_lane": tasks, "steps_per_lane": steps, "repeats": repeats,
        "selection": "best of the repeats: highest lane-steps/s per variant (min compile time over repeats); "
                     "torch sequential: fastest repeat of each timed lane",
        "model_flops_per_step": flops_step,
        "matmul_flops_per_s": peak, "torch_matmul_flops_per_s": torch_peak["matmul_flops_per_s"],
        "memory": "peak RSS per process, resource.getrusage(RUSAGE_SELF).ru_maxrss, reported by each process; "
                  "torch parallel: sum over its processes; torch sequential: the largest single process",
        "others_cpu": "share of the machine's CPU used by other processes during a measurement "
                      "(/proc/stat busy time minus this process tree's rusage)",
        "rows": rows,
    }


def throughput_table(result: dict) -> str:
    peak = result["matmul_flops_per_s"]
    lines = [
        f"lane-steps/s ({result['steps_per_lane']} steps per lane; model GFLOP/s and % of the "
        f"{peak / 1e9:,.1f} GFLOP/s XLA float32 matmul in brackets; peak RSS)",
        "",
        "| lanes | gradual-jax | jax % of bare step | compile | torch sequential | torch parallel | "
        "jax / best torch | RSS jax | RSS torch seq. | RSS torch par. | others' CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []

    def of_bare_step(v):  # older result files lack the ceiling
        return f"{100 * v['fraction_of_bare_step']:.0f}%" if "fraction_of_bare_step" in v else "–"

    for row in result["rows"]:
        def cell(v):
            return (f"{v['lane_steps_per_s']:,.0f} ({v['model_flops_per_s'] / 1e9:,.1f}, "
                    f"{100 * v['fraction_of_matmul']:.0f}%)")
        seq, par = row["torch_sequential"], row["torch_parallel"]
        star = "*" if seq["extrapolated"] else ""
        lines.append(
            f"| {row['lanes']} | {cell(row['jax'])} | {of_bare_step(row['jax'])} | {row['jax']['compile_s']:.1f} s | "
            f"{cell(seq)}{star} | "
            f"{cell(par)} [{par['processes']}×{par['threads_each']} thr] | "
            f"{row['jax_over_best_torch']:.2f}× | {row['jax']['peak_rss_mb']:,.0f} MB | "
            f"{seq['peak_rss_mb']:,.0f} MB | {par['peak_rss_mb']:,.0f} MB | {100 * row['others_cpu_max']:.0f}% |")
        if seq["extrapolated"]:
            notes.append(f"R = {row['lanes']}: torch sequential timed on {seq['lanes_timed']} of "
                         f"{row['lanes']} lanes and extrapolated ({seq['seconds_for_all_lanes']:,.0f} s "
                         f"for all {row['lanes']})")
    if notes:
        lines += ["", "\\* " + "; ".join(notes) + "."]
    if any(row["others_cpu_max"] > 0.05 for row in result["rows"]):
        lines += ["", "WARNING: other processes used more than 5% of the CPU during some measurements "
                      "(column \"others' CPU\"); those numbers are disturbed."]
    return "\n".join(lines)


# --- correctness check -------------------------------------------------------------------------

def run_check(seeds: int, tasks: int, per_class: int, epochs: int, ratio: float, delta: float,
              width: int, echo=print) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import torch_reference
    from gradual_jax import data as data_lib
    from gradual_jax import engine, sharding
    from gradual_jax.config import ExperimentConfig
    from gradual_jax.models import MLP
    from gradual_jax.sweep import Lane, to_hparams
    from gradual_jax.train import make_optimizer_factory

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
    data = engine.TaskData(x_train=jnp.asarray(x), y_train=jnp.asarray(y, jnp.int32))
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
            "machine": {"cores": cores(), "jax": jax.__version__, "torch": torch.__version__, **provenance()},
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32", help="lane counts R (comma separated)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="measure every variant this many times and keep the fastest (robust to other load)")
    parser.add_argument("--tasks", type=int, default=2,
                        help="timed task segments per lane (160 steps each); the same for every variant")
    parser.add_argument("--sequential-sample", type=int, default=4,
                        help="torch sequential: lanes actually timed; larger R are extrapolated from them")
    parser.add_argument("--check", action="store_true", help="run the correctness cross-check instead")
    parser.add_argument("--check-seeds", type=int, default=8)
    parser.add_argument("--check-tasks", type=int, default=4)
    parser.add_argument("--check-per-class", type=int, default=64)
    parser.add_argument("--check-width", type=int, default=256)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--num-train", type=int, default=throughput.NUM_TRAIN,
                        help="examples of the synthetic data set (default 5120; smaller only for smoke tests)")
    parser.add_argument("--jax-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")

    if args.num_train < 64 or args.num_train % 10:
        parser.error("--num-train must be a multiple of 10 and at least one batch (64)")
    if args.jax_worker is not None:
        jax_worker(args.jax_worker, args.tasks, args.num_train)
        return
    set_num_train(args.num_train)
    start = time.perf_counter()
    if args.check:
        if args.check_seeds < 2:
            parser.error("--check-seeds must be >= 2 (a standard deviation needs two seeds)")
        result = run_check(args.check_seeds, args.check_tasks, args.check_per_class, epochs=5, ratio=2.0,
                           delta=0.5, width=args.check_width)
        print()
        print(check_table(result))
        print(f"\nagree: {'yes' if result['agree'] else 'NO'} ({result['criterion']})")
    else:
        lanes = [int(v) for v in args.lanes.split(",")]
        if min(lanes) < 1:
            parser.error("--lanes must be positive")
        result = compare(lanes, args.tasks, max(1, args.sequential_sample), max(1, args.repeats))
        print()
        print(throughput_table(result))
    result["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
