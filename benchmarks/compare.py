"""gradual-jax against the PyTorch arrangements of the same sweep, in one invocation on one machine.

    python -m benchmarks.compare [--lanes 1,8,32] [--tasks 2] [--repeats 2] [--no-torch-compile] [--json OUT.json]
    python -m benchmarks.compare --check [--check-seeds 8] [--json OUT.json]     # accuracy: agreement.py

For each lane count R, every arrangement trains R lanes of the same protocol for the same number of
steps per lane (``--tasks`` task segments of 160 steps: the program of ``throughput.py``, 5,120
MNIST-shaped random examples, LayerNorm MLP 784-256×4-10, Adam, batch 64, E = 1, k = 1, Δ = 0.5,
lanes alternating abrupt / output_interp), each in fresh processes of its own:

* ``jax``: one gradual-jax program of R lanes (``throughput.measure``: compile, one untimed
  warm-up task, then the timed tasks), with the ``gradual-jax`` command's XLA flags;
* ``torch_sequential``: R runs of ``torch_reference.py`` one after another, one process each,
  torch threads = all cores. Lanes are independent and identical in cost, so only the first
  ``--sequential-sample`` lanes are timed and the rate is extrapolated to R (said in the output);
* ``torch_parallel``: R reference processes at once sharing the cores, torch threads =
  max(1, cores // R) each; all set up first, then start together on a barrier; rate = R·steps
  over the wall time from the start signal to the last finish;
* ``torch_vmap``: all R lanes in one process, stacked parameters and ``torch.func.vmap``
  (``torch_vmap.py``), threads = all cores;
* ``torch_vmap_compiled``: the same with the vmapped loss under ``torch.compile``
  (``--no-torch-compile`` leaves it out). A compilation failure is recorded, not hidden.

Torch times cover the training loop only (not start-up, data or model set-up, compilation); the
gradual-jax time covers the timed tasks only; compile times are their own columns. Every
arrangement is measured ``--repeats`` times (interleaved) and the fastest is kept; every
measurement records the share of the machine's CPU that *other* processes used meanwhile
(``others_cpu``); above 5% the table warns. Model FLOP/s = lane-steps/s × the MLP's matmul FLOPs
per step, against a float32 matmul timed by XLA in the same run (PyTorch's own rate too), and for
gradual-jax against a bare ReLU MLP step of R lanes (``throughput.bare_step_flops_per_second``).
Peak memory is each process's own peak RSS (for torch_parallel the sum over its processes).
"jax / best torch" divides gradual-jax's rate by the fastest PyTorch arrangement of that R.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time

from benchmarks import common, throughput

TORCH = ("torch_sequential", "torch_parallel", "torch_vmap", "torch_vmap_compiled")
LABELS = {"jax": "gradual-jax", "torch_sequential": "torch sequential", "torch_parallel": "torch parallel",
          "torch_vmap": "torch vmap", "torch_vmap_compiled": "torch vmap + compile",
          "sequential": "torch sequential", "parallel": "torch parallel"}  # the last two: older result files


# --- workers -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sizes:
    """What every arrangement trains: the data set and the MLP's hidden widths (the defaults are the
    benchmark; ``quick`` shrinks them, and the ceiling and reference measurements, for smoke tests)."""

    num_train: int = throughput.NUM_TRAIN
    hidden: tuple[int, ...] = throughput.HIDDEN
    quick: bool = False

    @property
    def hidden_arg(self) -> str:
        return ",".join(str(h) for h in self.hidden)


QUICK = Sizes(num_train=640, hidden=(32, 32), quick=True)


def jax_worker(num_lanes: int, tasks: int, sizes: Sizes) -> dict:
    """In a fresh process: one gradual-jax program of ``num_lanes`` lanes, its peak RSS and the
    bare-step ceiling of as many lanes."""
    row = throughput.measure(num_lanes, tasks, num_train=sizes.num_train, hidden=sizes.hidden)
    row["peak_rss_mb"] = common.peak_rss_mb()
    row["bare_step_flops_per_s"] = throughput.bare_step_flops_per_second(
        num_lanes, steps=10 if sizes.quick else 160, repeats=1 if sizes.quick else 3, hidden=sizes.hidden)
    return row


def jax_cmd(num_lanes: int, tasks: int, sizes: Sizes) -> list[str]:
    return common.module_cmd("compare", "--jax-worker", num_lanes, "--tasks", tasks, "--num-train", sizes.num_train,
                             "--hidden", sizes.hidden_arg, *(["--quick"] if sizes.quick else []))


def torch_cmd(seed: int, steps: int, threads: int, sizes: Sizes, extra: tuple[str, ...] = ()) -> list[str]:
    return common.module_cmd("torch_reference", "--steps", steps, "--seed", seed,
                             "--schedule", throughput.SCHEDULES[seed % 2], "--delta", throughput.DELTA,
                             "--epochs-per-task", 1, "--transition-ratio", 1, "--data", "synthetic",
                             "--num-train", sizes.num_train, "--hidden", sizes.hidden_arg, "--threads", threads, *extra)


def run_torch_parallel(num_lanes: int, steps: int, threads: int, sizes: Sizes) -> dict:
    """R processes that set up, wait on a barrier (stdin), then train at once."""
    procs = [subprocess.Popen(torch_cmd(i, steps, threads, sizes, ("--wait-for-go",)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=common.ROOT,
                              env=common.thread_env(threads))
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
            outs.append(common.last_json_line(stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {"runs": outs, "wall_s": max(o["wall_end"] for o in outs) - go}


def run_torch_vmap(num_lanes: int, steps: int, threads: int, sizes: Sizes, compiled: bool) -> dict:
    cmd = common.module_cmd("torch_vmap", "--lanes", num_lanes, "--steps", steps, "--threads", threads,
                            "--num-train", sizes.num_train, "--hidden", sizes.hidden_arg,
                            *(["--compile"] if compiled else []))
    return common.run_worker(cmd, common.thread_env(threads))


# --- one lane count ----------------------------------------------------------------------------

def summarise(r: int, steps: int, jax_runs: list[dict], seq_runs: list[dict], par_runs: list[dict],
              vmap_runs: dict[str, list[dict]]) -> dict:
    """The row of one lane count from its measurements: the best repeat of every arrangement."""
    jx = max(jax_runs, key=lambda o: o["lane_steps_per_s"])
    row = {"lanes": r, "steps_per_lane": steps,
           "jax": {"lane_steps_per_s": jx["lane_steps_per_s"], "compile_s": min(o["compile_s"] for o in jax_runs),
                   "lane_groups": jx["lane_groups"], "program_mb": jx.get("program_mb"),
                   "fraction_of_bare_step": jx["model_flops_per_s"] / jx["bare_step_flops_per_s"],
                   "seconds": jx["seconds"], "peak_rss_mb": jx["peak_rss_mb"], "others_cpu": jx["others_cpu"],
                   "all_lane_steps_per_s": [o["lane_steps_per_s"] for o in jax_runs]}}
    seq_seconds = sum(o["seconds"] for o in seq_runs)
    seq_rate = len(seq_runs) * steps / seq_seconds
    row["torch_sequential"] = {
        "lane_steps_per_s": seq_rate, "threads": seq_runs[0]["threads"], "lanes_timed": len(seq_runs),
        "extrapolated": len(seq_runs) < r, "seconds_timed": seq_seconds, "seconds_for_all_lanes": r * steps / seq_rate,
        "peak_rss_mb": max(o["peak_rss_mb"] for o in seq_runs), "others_cpu": max(o["others_cpu"] for o in seq_runs)}
    par = min(par_runs, key=lambda o: o["wall_s"])
    row["torch_parallel"] = {
        "lane_steps_per_s": r * steps / par["wall_s"], "processes": r, "threads_each": par["runs"][0]["threads"],
        "wall_s": par["wall_s"], "peak_rss_mb": sum(o["peak_rss_mb"] for o in par["runs"]),
        "slowest_process_s": max(o["seconds"] for o in par["runs"]), "others_cpu": par["others_cpu"],
        "all_lane_steps_per_s": [r * steps / o["wall_s"] for o in par_runs]}
    for key, runs in vmap_runs.items():
        ok = [o for o in runs if "error" not in o]
        if not ok:
            row[key] = {"error": runs[0]["error"], "peak_rss_mb": runs[0].get("peak_rss_mb")}
            continue
        best = max(ok, key=lambda o: o["lane_steps_per_s"])
        row[key] = {"lane_steps_per_s": best["lane_steps_per_s"], "compile_s": min(o["warmup_s"] for o in ok),
                    "optimizer": best["optimizer"], "threads": best["threads"], "seconds": best["seconds"],
                    "peak_rss_mb": best["peak_rss_mb"], "others_cpu": best["others_cpu"],
                    "all_lane_steps_per_s": [o["lane_steps_per_s"] for o in ok]}
    rates = {k: row[k]["lane_steps_per_s"] for k in TORCH if "lane_steps_per_s" in row.get(k, {})}
    row["best_torch"] = max(rates, key=rates.get)
    row["jax_over_best_torch"] = row["jax"]["lane_steps_per_s"] / rates[row["best_torch"]]
    row["others_cpu_max"] = max(row[k]["others_cpu"] for k in ("jax", *rates))
    return row


def compare(lane_counts: list[int], tasks: int, sequential_sample: int, repeats: int = 1,
            sizes: Sizes = Sizes(), torch_compile: bool = True, echo=print) -> dict:
    n_cores = common.cores()
    steps = tasks * throughput.make_program(sizes.num_train, sizes.hidden).steps_per_task
    flops_step = throughput.model_flops_per_step(hidden=sizes.hidden)
    matmul_n = 256 if sizes.quick else None
    matmul = max((common.matmul_flops_per_second(matmul_n, 0.1 if sizes.quick else 1.0) for _ in range(repeats)),
                 key=lambda m: m["flops_per_s"])
    peak = matmul["flops_per_s"]
    torch_peak = max((common.run_worker(common.module_cmd("torch_reference", "--matmul", "--threads", n_cores,
                                                          "--matmul-size", matmul["n"]),
                                        common.thread_env(n_cores)) for _ in range(repeats)),
                     key=lambda o: o["matmul_flops_per_s"])
    echo(f"machine: {common.cpu_model()}, {n_cores} cores; XLA_FLAGS={common.xla_flags()!r}")
    echo(f"reference: float32 {matmul['n']}² matmul, XLA {peak / 1e9:,.1f} GFLOP/s, PyTorch "
         f"{torch_peak['matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s ({torch_peak['threads']} threads)")
    echo(f"every arrangement: {steps} steps per lane ({tasks} tasks × {steps // tasks} steps), "
         f"{flops_step / 1e6:.1f} model MFLOP per step; best of {repeats} measurement(s) each")

    n_seq = min(max(lane_counts), sequential_sample)
    echo(f"torch sequential: timing {n_seq} lane(s), one process each, {n_cores} threads ...")
    sequential = [min((common.measured(lambda i=i: common.run_worker(torch_cmd(i, steps, n_cores, sizes),
                                                                      common.thread_env(n_cores)))
                       for _ in range(repeats)), key=lambda o: o["seconds"]) for i in range(n_seq)]
    vmap_keys = {"torch_vmap": False, **({"torch_vmap_compiled": True} if torch_compile else {})}
    rows = []
    for r in lane_counts:
        threads = max(1, n_cores // r)
        jax_runs, par_runs, vmap_runs = [], [], {k: [] for k in vmap_keys}
        for k in range(repeats):
            echo(f"R = {r} ({k + 1}/{repeats}): gradual-jax, torch parallel ({r} × {threads} thread(s)), "
                 f"{', '.join(LABELS[v] for v in vmap_keys)} ...")
            jax_runs.append(common.measured(lambda: common.run_worker(jax_cmd(r, tasks, sizes))))
            par_runs.append(common.measured(lambda: run_torch_parallel(r, steps, threads, sizes)))
            for key, compiled in vmap_keys.items():
                vmap_runs[key].append(common.measured(lambda c=compiled: run_torch_vmap(r, steps, n_cores, sizes, c)))
        row = summarise(r, steps, jax_runs, sequential[:min(r, n_seq)], par_runs, vmap_runs)
        for key in ("jax", *TORCH):
            if "lane_steps_per_s" in row.get(key, {}):
                row[key]["model_flops_per_s"] = row[key]["lane_steps_per_s"] * flops_step
                row[key]["fraction_of_matmul"] = row[key]["model_flops_per_s"] / peak
        row["load_average_after"] = common.load_average()
        rows.append(row)
        echo(f"R = {r}: " + ", ".join(f"{LABELS[k]} {row[k]['lane_steps_per_s']:,.0f}" if "lane_steps_per_s" in row[k]
                                      else f"{LABELS[k]} failed" for k in ("jax", *TORCH) if k in row)
             + f" lane-steps/s; jax / best torch {row['jax_over_best_torch']:.2f}×")
    return {
        "protocol": {"model": f"LayerNorm MLP 784-{sizes.hidden_arg.replace(',', '-')}-10", "optimizer": "adam 1e-3",
                     "batch": 64, "num_train": sizes.num_train, "quick": sizes.quick, "epochs_per_task": 1,
                     "transition_ratio": 1, "delta": throughput.DELTA,
                     "schedules": "lanes alternate abrupt / output_interp", "data": "synthetic (MNIST-shaped normals)"},
        "tasks_per_lane": tasks, "steps_per_lane": steps, "repeats": repeats,
        "selection": "best of the repeats: highest lane-steps/s per arrangement (min compile time over repeats); "
                     "torch sequential: fastest repeat of each timed lane",
        "model_flops_per_step": flops_step, "matmul": matmul, "matmul_flops_per_s": peak,
        "torch_matmul_flops_per_s": torch_peak["matmul_flops_per_s"], "torch": torch_peak.get("torch"),
        "memory": "peak RSS per process, resource.getrusage(RUSAGE_SELF).ru_maxrss, reported by each process; "
                  "torch parallel: sum over its processes; torch sequential: the largest single process",
        "others_cpu": "share of the machine's CPU used by other processes during a measurement "
                      "(/proc/stat busy time minus this process tree's rusage)",
        "rows": rows,
    }


# --- tables ------------------------------------------------------------------------------------

def _cell(v: dict | None) -> str:
    if not v:
        return "–"
    if "error" in v:
        return "failed"
    return f"{v['lane_steps_per_s']:,.0f} ({v['model_flops_per_s'] / 1e9:,.1f}, {100 * v['fraction_of_matmul']:.0f}%)"


def throughput_table(result: dict) -> str:
    """Markdown tables of a result (older files without the vmap arrangements show "–")."""
    peak = result["matmul_flops_per_s"]
    present = [k for k in TORCH if any(k in row for row in result["rows"])]
    lines = [f"lane-steps/s ({result['steps_per_lane']} steps per lane; model GFLOP/s and % of the "
             f"{peak / 1e9:,.1f} GFLOP/s XLA float32 matmul in brackets)", "",
             "| lanes | gradual-jax | jax % of bare step | compile | "
             + " | ".join(LABELS[k] for k in present) + " | jax / best torch | others' CPU |",
             "|---:|" + "---:|" * (len(present) + 5)]
    notes = []
    for row in result["rows"]:
        jx = row["jax"]
        bare = f"{100 * jx['fraction_of_bare_step']:.0f}%" if "fraction_of_bare_step" in jx else "–"
        cells = []
        for k in present:
            v = row.get(k)
            text = _cell(v)
            if k == "torch_sequential" and v and v["extrapolated"]:
                text += "*"
                notes.append(f"R = {row['lanes']}: torch sequential timed on {v['lanes_timed']} of {row['lanes']} "
                             f"lanes and extrapolated ({v['seconds_for_all_lanes']:,.0f} s for all {row['lanes']})")
            if k == "torch_parallel" and v:
                text += f" [{v['processes']}×{v['threads_each']} thr]"
            if k == "torch_vmap_compiled" and v and "compile_s" in v:
                text += f" [compile {v['compile_s']:.0f} s]"
            cells.append(text)
        best = LABELS.get(row.get("best_torch", ""), row.get("best_torch", ""))
        lines.append(f"| {row['lanes']} | {_cell(jx)} | {bare} | {jx['compile_s']:.1f} s | " + " | ".join(cells)
                     + f" | {row['jax_over_best_torch']:.2f}× ({best}) | {100 * row['others_cpu_max']:.0f}% |")
    lines += ["", "peak RSS:", "", "| lanes | gradual-jax | " + " | ".join(LABELS[k] for k in present) + " |",
              "|---:|" + "---:|" * (len(present) + 1)]
    for row in result["rows"]:
        mem = [row.get(k, {}).get("peak_rss_mb") for k in ("jax", *present)]
        lines.append(f"| {row['lanes']} | " + " | ".join(f"{m:,.0f} MB" if m else "–" for m in mem) + " |")
    failures = [f"R = {row['lanes']}: {LABELS[k]}: {row[k]['error']}" for row in result["rows"]
                for k in present if "error" in row.get(k, {})]
    if notes:
        lines += ["", "\\* " + "; ".join(notes) + "."]
    if failures:
        lines += ["", "failed: " + "; ".join(failures)]
    if any(row["others_cpu_max"] > 0.05 for row in result["rows"]):
        lines += ["", "WARNING: other processes used more than 5% of the CPU during some measurements "
                      "(column \"others' CPU\"); those numbers are disturbed."]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32", help="lane counts R (comma separated)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="measure every arrangement this many times and keep the fastest (robust to other load)")
    parser.add_argument("--tasks", type=int, default=2,
                        help="timed task segments per lane (160 steps each); the same for every arrangement")
    parser.add_argument("--sequential-sample", type=int, default=4,
                        help="torch sequential: lanes actually timed; larger R are extrapolated from them")
    parser.add_argument("--no-torch-compile", action="store_true", help="leave out the torch.compile arrangement")
    parser.add_argument("--check", action="store_true", help="run the accuracy cross-check instead (agreement.py)")
    parser.add_argument("--check-seeds", type=int, default=8)
    parser.add_argument("--check-tasks", type=int, default=4)
    parser.add_argument("--check-per-class", type=int, default=64)
    parser.add_argument("--check-width", type=int, default=256)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--num-train", type=int, default=throughput.NUM_TRAIN,
                        help="examples of the synthetic data set (default 5120; smaller only for smoke tests)")
    parser.add_argument("--hidden", default=Sizes().hidden_arg, help="hidden widths (smaller only for smoke tests)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 640 examples, hidden 32,32, small reference matmul and ceiling")
    parser.add_argument("--jax-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error("--tasks must be >= 1")
    if args.num_train < 64 or args.num_train % 10:
        parser.error("--num-train must be a multiple of 10 and at least one batch (64)")
    sizes = QUICK if args.quick else Sizes(args.num_train, tuple(common.parse_ints(args.hidden)))
    if args.jax_worker is not None:
        import json

        print(json.dumps(jax_worker(args.jax_worker, args.tasks, sizes)))
        return None
    start = time.perf_counter()
    if args.check:
        from benchmarks import agreement

        if args.check_seeds < 2:
            parser.error("--check-seeds must be >= 2 (a standard deviation needs two seeds)")
        result = agreement.run_check(args.check_seeds, args.check_tasks, args.check_per_class, epochs=5, ratio=2.0,
                                     delta=0.5, width=args.check_width)
        print()
        print(agreement.check_table(result))
        print(f"\nagree: {'yes' if result['agree'] else 'NO'} ({result['criterion']})")
    else:
        lanes = common.parse_ints(args.lanes)
        if min(lanes) < 1:
            parser.error("--lanes must be positive")
        result = compare(lanes, args.tasks, max(1, args.sequential_sample), max(1, args.repeats), sizes,
                         torch_compile=not args.no_torch_compile)
        print()
        print(throughput_table(result))
    result["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "compare-check" if args.check else "compare", result)
    return result


if __name__ == "__main__":
    main()
