"""A/B of the XLA flags the ``gradual-jax`` command sets (gradual_jax/runner/xla_flags.py) on the MNIST MLP
sweep: lane-steps/s with JAX's default flags and with the CLI's, measured in one invocation.

    python -m benchmarks.archive.xla_flags_ab [--lanes 8,32] [--tasks 1] [--repeats 2] [--json OUT.json]
    python -m benchmarks.archive.xla_flags_ab --model-steps [--lanes 1,4] [--repeats 1] [--json OUT.json]
        [--baseline XLA_FLAGS] [--candidate XLA_FLAGS] [--model-steps-args "ARGS"]

For each lane count R and each repeat, both variants run ``throughput.measure`` (the program of
``benchmarks/throughput.py``: LayerNorm MLP 784-256×4-10, Adam, batch 64, 5,120 MNIST-shaped
random examples, 160-step task segments; compile + one untimed warm-up task + ``--tasks`` timed
tasks) in a fresh subprocess (compare.py's gradual-jax worker), since XLA reads ``XLA_FLAGS`` once
per process. The order of the two variants alternates between repeats; the best repeat of each is
kept, and the ratio is CLI flags / JAX defaults. Each measurement records the share of the CPU
that *other* processes used meanwhile ("others' CPU").

``--model-steps``: the same A/B on the ResNet-18 and T5 steps, each variant one run of
``benchmarks/model_steps.py`` (its default, CPU-sized models, or ``--model-steps-args``) in a
fresh process. ``--baseline`` and ``--candidate`` replace the two variants (JAX's defaults, the
CLI's flags) by other flags, to measure a flag before the command sets it.
``--num-train`` and ``--quick`` shrink both workloads, for smoke tests only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import common
from gradual_jax.runner import xla_flags

VARIANTS = {"jax defaults": "", "gradual-jax CLI": " ".join(xla_flags.DEFAULT_FLAGS)}


def variants(baseline: str = "", candidate: str | None = None) -> dict[str, str]:
    """The two variants, named: ``baseline`` (JAX's defaults when empty) and ``candidate`` (the
    CLI's flags when ``None``)."""
    first = f"XLA_FLAGS={baseline}" if baseline else "jax defaults"
    second = "gradual-jax CLI" if candidate is None else f"XLA_FLAGS={candidate}"
    if first == second:
        raise SystemExit(f"--baseline and --candidate are the same flags ({baseline!r}): nothing to compare")
    return {first: baseline, second: VARIANTS["gradual-jax CLI"] if candidate is None else candidate}


def variant_env(flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env[xla_flags.OPT_OUT_ENV] = "1"  # the worker must not add anything: the flags are exactly ``flags``
    if flags:
        env["XLA_FLAGS"] = flags
    return env


def run_variant(num_lanes: int, tasks: int, flags: str, num_train: int) -> dict:
    """compare.py's gradual-jax worker (one ``throughput.measure``) in a process with ``flags``."""
    cmd = common.module_cmd("compare", "--jax-worker", num_lanes, "--tasks", tasks, "--num-train", num_train)
    return common.measured(lambda: common.run_worker(cmd, env=variant_env(flags)))


def run_model_steps(lanes: str, flags: str, quick: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """One run of model_steps.py under ``flags``: {"resnet18 R=1": {...row}, ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "steps.json"
        cmd = common.module_cmd("model_steps", "--lanes", lanes, "--json", out, *(["--quick"] if quick else []),
                                *extra)

        def go():
            proc = subprocess.run(cmd, capture_output=True, text=True, env=variant_env(flags), cwd=common.ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            return {"result": json.loads(out.read_text())}

        run = common.measured(go)
    rows = {}
    for model, entry in run["result"]["models"].items():
        for row in entry["rows"]:
            rows[f"{model} R={row['lanes']}"] = {**row, "others_cpu_whole_run": run["others_cpu"]}
    return rows


def main_model_steps(args) -> None:
    start = time.perf_counter()
    chosen = variants(args.baseline, args.candidate)
    names = list(chosen)
    extra = tuple(shlex.split(args.model_steps_args))
    runs = {n: [] for n in names}
    for k in range(args.repeats):
        for n in (names if k % 2 == 0 else names[::-1]):
            runs[n].append(run_model_steps(args.lanes, chosen[n], args.quick, extra))
            print(f"{n} ({k + 1}/{args.repeats}): " + ", ".join(
                f"{key} {row['lane_steps_per_s']:,.2f}" for key, row in runs[n][-1].items()), flush=True)
    rows = []
    for key in runs[names[0]][0]:
        best = {n: max((r[key] for r in runs[n]), key=lambda row: row["lane_steps_per_s"]) for n in names}
        rows.append({"case": key, **{n: {"lane_steps_per_s": best[n]["lane_steps_per_s"],
                                         "compile_s": best[n]["compile_s"], "others_cpu": best[n]["others_cpu"],
                                         "all_lane_steps_per_s": [r[key]["lane_steps_per_s"] for r in runs[n]]}
                                     for n in names},
                     "ratio": best[names[1]]["lane_steps_per_s"] / best[names[0]]["lane_steps_per_s"]})
    print(f"\n| model, lanes | {names[0]} | {names[1]} | ratio | others' CPU (max) |\n|---|---:|---:|---:|---:|")
    for row in rows:
        others = max(row[n]["others_cpu"] for n in names)
        print(f"| {row['case']} | {row[names[0]]['lane_steps_per_s']:,.2f} | {row[names[1]]['lane_steps_per_s']:,.2f} "
              f"| {row['ratio']:.2f}× | {100 * others:.0f}% |")
    sizes = " ".join(extra) or "default sizes"
    result = {"workload": f"benchmarks/model_steps.py ({'--quick' if args.quick else sizes})",
              "variants": chosen, "repeats": args.repeats, "selection": "best repeat per variant", "rows": rows,
              "total_seconds": time.perf_counter() - start}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "xla_flags_ab_model_steps", result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="8,32", help="lane counts R (comma separated)")
    parser.add_argument("--tasks", type=int, default=1, help="timed task segments (160 steps) per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per variant; the best is kept")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--model-steps", action="store_true",
                        help="A/B the ResNet-18 and T5 steps (benchmarks/model_steps.py) instead of the MLP sweep")
    parser.add_argument("--num-train", type=int, default=5120, help="MLP examples (smaller only for smoke tests)")
    parser.add_argument("--quick", action="store_true", help="--model-steps: model_steps.py --quick (smoke tests)")
    parser.add_argument("--baseline", default="", help="XLA_FLAGS of the variant the candidate is compared "
                        "with (default: none, JAX's defaults)")
    parser.add_argument("--candidate", default=None, help="XLA_FLAGS of the variant compared with the baseline "
                        "(default: the CLI's flags)")
    parser.add_argument("--model-steps-args", default="", help="--model-steps: further arguments of model_steps.py, "
                        "e.g. \"--models resnet18 --resnet-width 0.125 --scan 20\"")
    args = parser.parse_args(argv)
    if args.model_steps:
        if args.lanes == parser.get_default("lanes"):
            args.lanes = "1,4"
        main_model_steps(args)
        return
    start = time.perf_counter()
    chosen = variants(args.baseline, args.candidate)
    names = list(chosen)
    print("variants: "
          + "; ".join(f"{n}: XLA_FLAGS={f!r}" for n, f in chosen.items()))
    rows = []
    for r in (int(v) for v in args.lanes.split(",")):
        runs = {n: [] for n in names}
        for k in range(args.repeats):
            for n in (names if k % 2 == 0 else names[::-1]):
                out = run_variant(r, args.tasks, chosen[n], args.num_train)
                runs[n].append(out)
                print(f"R = {r}, {n} ({k + 1}/{args.repeats}): {out['lane_steps_per_s']:,.0f} lane-steps/s, "
                      f"compile {out['compile_s']:.1f} s, others' CPU {100 * out['others_cpu']:.0f}%", flush=True)
        best = {n: max(runs[n], key=lambda o: o["lane_steps_per_s"]) for n in names}
        rows.append({
            "lanes": r,
            **{n: {"lane_steps_per_s": best[n]["lane_steps_per_s"], "compile_s": min(o["compile_s"] for o in runs[n]),
                   "others_cpu": best[n]["others_cpu"],
                   "all_lane_steps_per_s": [o["lane_steps_per_s"] for o in runs[n]]} for n in names},
            "ratio": best[names[1]]["lane_steps_per_s"] / best[names[0]]["lane_steps_per_s"],
        })
    print(f"\n| lanes | {names[0]} | {names[1]} | ratio | others' CPU (max) |\n|---:|---:|---:|---:|---:|")
    for row in rows:
        others = max(max(row[n]["others_cpu"] for n in names), 0.0)
        print(f"| {row['lanes']} | {row[names[0]]['lane_steps_per_s']:,.0f} | {row[names[1]]['lane_steps_per_s']:,.0f} "
              f"| {row['ratio']:.2f}× | {100 * others:.0f}% |")
    result = {"variants": chosen, "tasks": args.tasks, "num_train": args.num_train,
              "steps_per_task": 2 * -(-args.num_train // 64), "repeats": args.repeats,
              "selection": "best repeat per variant", "rows": rows, "total_seconds": time.perf_counter() - start}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "xla_flags_ab", result)


if __name__ == "__main__":
    main()
