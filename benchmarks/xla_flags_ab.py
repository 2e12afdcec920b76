"""A/B of the XLA flags the ``gradual-jax`` command sets (gradual_jax/xla_flags.py) on the MNIST MLP
sweep: lane-steps/s with JAX's default flags and with the CLI's, measured in one invocation.

    python benchmarks/xla_flags_ab.py [--lanes 8,32] [--tasks 1] [--repeats 2] [--json OUT.json]
    python benchmarks/xla_flags_ab.py --model-steps [--lanes 1,4] [--repeats 1] [--json OUT.json]

For each lane count R and each repeat, both variants run ``throughput.measure`` (the program of
``benchmarks/throughput.py``: LayerNorm MLP 784-256×4-10, Adam, batch 64, 5,120 MNIST-shaped
random examples, 160-step task segments; compile + one untimed warm-up task + ``--tasks`` timed
tasks) in a fresh subprocess, since XLA reads ``XLA_FLAGS`` once per process. The order of the two
variants alternates between repeats; the best repeat of each is kept, and the ratio is
CLI flags / JAX defaults. Like compare.py, each measurement records the share of the CPU that
*other* processes used meanwhile ("others' CPU").

``--model-steps``: the same A/B on the ResNet-18 and T5 steps, each variant one run of
``benchmarks/model_steps.py`` (its default, CPU-sized models) in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from gradual_jax import xla_flags  # noqa: E402

VARIANTS = {"jax defaults": "", "gradual-jax CLI": " ".join(xla_flags.DEFAULT_FLAGS)}


def variant_env(flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env[xla_flags.OPT_OUT_ENV] = "1"  # the worker must not add anything: the flags are exactly ``flags``
    if flags:
        env["XLA_FLAGS"] = flags
    return env


def run_variant(num_lanes: int, tasks: int, flags: str) -> dict:
    import compare  # the worker mode of benchmarks/compare.py: one throughput.measure in its own process

    cmd = [sys.executable, str(HERE / "compare.py"), "--jax-worker", str(num_lanes), "--tasks", str(tasks)]
    return compare.measured(lambda: compare._run(cmd, env=variant_env(flags)))


def run_model_steps(lanes: str, flags: str) -> dict:
    """One run of model_steps.py under ``flags``: {"resnet18 R=1": {...row}, ...}."""
    import subprocess
    import tempfile

    import compare

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "steps.json"
        cmd = [sys.executable, str(HERE / "model_steps.py"), "--lanes", lanes, "--json", str(out)]

        def go():
            proc = subprocess.run(cmd, capture_output=True, text=True, env=variant_env(flags))
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
            return {"result": json.loads(out.read_text())}

        run = compare.measured(go)
    rows = {}
    for model, entry in run["result"]["models"].items():
        for row in entry["rows"]:
            rows[f"{model} R={row['lanes']}"] = {**row, "others_cpu_whole_run": run["others_cpu"]}
    return rows


def main_model_steps(args) -> None:
    import jax

    start = time.perf_counter()
    names = list(VARIANTS)
    runs = {n: [] for n in names}
    for k in range(args.repeats):
        for n in (names if k % 2 == 0 else names[::-1]):
            runs[n].append(run_model_steps(args.lanes, VARIANTS[n]))
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
    result = {"jax": jax.__version__, "device": f"{jax.devices()[0].platform} {jax.devices()[0].device_kind}",
              "workload": "benchmarks/model_steps.py (default sizes)", "variants": VARIANTS,
              "repeats": args.repeats, "selection": "best repeat per variant", "rows": rows,
              "total_seconds": time.perf_counter() - start}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="8,32", help="lane counts R (comma separated)")
    parser.add_argument("--tasks", type=int, default=1, help="timed task segments (160 steps) per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per variant; the best is kept")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--model-steps", action="store_true",
                        help="A/B the ResNet-18 and T5 steps (benchmarks/model_steps.py) instead of the MLP sweep")
    args = parser.parse_args(argv)
    if args.model_steps:
        if args.lanes == parser.get_default("lanes"):
            args.lanes = "1,4"
        main_model_steps(args)
        return
    import jax

    start = time.perf_counter()
    names = list(VARIANTS)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; variants: "
          + "; ".join(f"{n}: XLA_FLAGS={f!r}" for n, f in VARIANTS.items()))
    rows = []
    for r in (int(v) for v in args.lanes.split(",")):
        runs = {n: [] for n in names}
        for k in range(args.repeats):
            for n in (names if k % 2 == 0 else names[::-1]):
                out = run_variant(r, args.tasks, VARIANTS[n])
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
    result = {"jax": jax.__version__, "device": f"{jax.devices()[0].platform} {jax.devices()[0].device_kind}",
              "variants": VARIANTS, "tasks": args.tasks, "steps_per_task": 160, "repeats": args.repeats,
              "selection": "best repeat per variant", "rows": rows, "total_seconds": time.perf_counter() - start}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
