"""A sweep's lanes on one CPU device against one per core
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``), through the command's own code.

    python -m benchmarks.cpu_devices --cases fig1-mnist:study,fig2-seq2seq:verdict,fig1-cifar:study \\
        --seeds 10,11 [--devices 1,2] [--tasks 1] [--epochs 2] [--set KEY=VALUE ...] [--json OUT.json]

Each case (``EXPERIMENT:PRESET``) is cut to ``--seeds``, ``--tasks`` and ``--epochs`` E (every
schedule, Δ and method of the preset stays) and trained once per device count, each in a fresh
process (``XLA_FLAGS=--xla_force_host_platform_device_count=N``: XLA reads it once, when JAX
starts), the lanes grouped as the command groups them (``run.vmap_lanes`` 0), the readout
diagnostics off (their SVD cannot run on several CPU devices at once: ``sharding.check_cpu_devices``). A run's lane-steps/s
are its own (``config.json``: lanes × steps / training seconds, readouts included, compile
apart), with the share of the CPU other processes used meanwhile. The ratio column divides each
rate by the one-device rate; the largest difference between the device counts' results (every
metric of every row) says they trained the same lanes.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks import common

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def parse_cases(text: str) -> list[tuple[str, str]]:
    cases = []
    for token in text.split(","):
        experiment, _, preset = token.strip().partition(":")
        if not experiment or not preset:
            raise SystemExit(f"--cases: {token!r} is not EXPERIMENT:PRESET (e.g. fig1-cifar:study)")
        cases.append((experiment, preset))
    return cases


def worker(args) -> dict:
    """In a fresh process with the device count in ``XLA_FLAGS``: one run of the case."""
    import jax

    row, frame = common.config_run(case_config(args.experiment, args.preset, args))
    return {"devices": jax.device_count(), **row, "results": json.loads(frame.to_json(orient="records"))}


def case_config(experiment: str, preset: str, args):
    from gradual_jax import experiments
    from gradual_jax.config import apply_overrides

    return apply_overrides(experiments.get_config(experiment, preset), overrides(args))


def overrides(args) -> list[str]:
    return [f"sweep.seeds={args.seeds}", f"task.num_tasks={args.tasks}", f"protocol.epochs_per_task={args.epochs}",
            "run.checkpoint_every=0", "diagnostics.enabled=false", *args.set]


def run_case(experiment: str, preset: str, devices: int, args) -> dict:
    flags = " ".join(t for t in common.xla_flags().split() if not t.startswith(HOST_DEVICES_FLAG))
    env = dict(os.environ, XLA_FLAGS=f"{flags} {HOST_DEVICES_FLAG}={devices}".strip())
    cmd = common.module_cmd("cpu_devices", "--worker", "--experiment", experiment, "--preset", preset,
                            "--seeds", args.seeds, "--tasks", args.tasks, "--epochs", args.epochs,
                            *(a for kv in args.set for a in ("--set", kv)))
    return common.run_worker(cmd, env=env)


def largest_difference(a: list[dict], b: list[dict]) -> float:
    """The largest absolute difference between two runs' results, over every numeric column of
    every row (NaN where both are NaN counts as equal); rows are matched in order."""
    if len(a) != len(b):
        raise ValueError(f"the runs wrote {len(a)} and {len(b)} rows")
    worst = 0.0
    for x, y in zip(a, b):
        for key, u in x.items():
            v = y.get(key)
            if isinstance(u, (int, float)) and isinstance(v, (int, float)) and not isinstance(u, bool):
                if u != u and v != v:
                    continue
                worst = max(worst, abs(u - v)) if u == u and v == v else float("inf")
    return worst


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="fig1-cifar:study", help="EXPERIMENT:PRESET, comma separated")
    parser.add_argument("--seeds", default="10,11")
    parser.add_argument("--devices", default=None, help="device counts, comma separated (default: 1 and the cores)")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return None
    cases = parse_cases(args.cases)
    counts = common.parse_ints(args.devices) if args.devices else sorted({1, common.cores()})
    if not counts or min(counts) < 1:
        raise SystemExit(f"--devices: {args.devices!r}; expected positive whole numbers, e.g. 1,2")
    result = {"overrides": overrides(args), "cores": common.cores(), "cases": []}
    for experiment, preset in cases:
        runs = {}
        for n in counts:
            runs[n] = run_case(experiment, preset, n, args)
            print(f"{experiment} [{preset}], {n} device(s): {runs[n]['lanes']} lanes, "
                  f"{runs[n]['lane_steps_per_second']:,.1f} lane-steps/s (compile {runs[n]['compile_seconds']:.1f} s, "
                  f"others' CPU {runs[n]['others_cpu']:.0%})", flush=True)
        base = runs[counts[0]]
        rows = [{"devices": n, **{k: v for k, v in run.items() if k != "results"},
                 "over_first": run["lane_steps_per_second"] / base["lane_steps_per_second"],
                 "largest_difference_from_first": largest_difference(base["results"], run["results"])}
                for n, run in runs.items()]
        result["cases"].append({"experiment": experiment, "preset": preset, "rows": rows})
    print(f"\n| case | lanes | devices | lane-steps/s | × {counts[0]} device(s) | largest difference in results | "
          "compile (s) | others' CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in result["cases"]:
        for row in case["rows"]:
            print(f"| {case['experiment']} [{case['preset']}] | {row['lanes']} | {row['devices']} | "
                  f"{row['lane_steps_per_second']:,.1f} | {row['over_first']:.2f}× | "
                  f"{row['largest_difference_from_first']:.1e} | {row['compile_seconds']:.1f} | {row['others_cpu']:.0%} |")
    if args.json:
        common.write_json(args.json, "cpu_devices", result)
    return result


if __name__ == "__main__":
    main()
