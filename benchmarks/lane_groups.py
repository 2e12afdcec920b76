"""How a sweep's lanes are grouped: ``run.vmap_lanes`` 1 (lanes one after another), 2, 4 and all
lanes in one ``vmap``, for any experiment's preset, all run through ``gradual-jax run``'s own code in
one process.

    python -m benchmarks.lane_groups --experiment fig2-seq2seq --preset verdict --seeds 10,11,12,13
        [--groups 1,2,4,all] [--tasks 1] [--epochs 2] [--set KEY=VALUE ...] [--json OUT.json]

The preset is cut to ``--seeds``, ``--tasks`` and ``--epochs`` E (every schedule, Δ and method of
the preset stays, so the lanes are the preset's lanes for those seeds). Each grouping trains into
its own temporary folder; its lane-steps/s are the run's own (``config.json``: lanes × steps /
training seconds, readouts included, compile apart), with the share of the CPU other processes
used meanwhile. ``all`` is one ``vmap`` of every lane of a program (``run.vmap_lanes`` = the
program's lane count). The ratio column divides each grouping's rate by the automatic grouping's
(``run.vmap_lanes=0``, measured first).
"""

from __future__ import annotations

import argparse

from benchmarks import common


def groupings(groups: str, lanes: int) -> dict[str, int]:
    """Label -> ``run.vmap_lanes`` of each grouping asked for; the automatic one (0) always first."""
    out = {"automatic": 0}
    for token in groups.split(","):
        token = token.strip()
        if token == "all":
            out["all lanes"] = lanes
        elif token.isdigit() and int(token) > 0:
            out[f"{token} at a time"] = int(token)
        else:
            raise SystemExit(f"--groups: {token!r} is not a positive integer or 'all'")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="fig2-seq2seq")
    parser.add_argument("--preset", default="verdict")
    parser.add_argument("--seeds", default="10,11,12,13")
    parser.add_argument("--groups", default="1,2,4,all", help="run.vmap_lanes values: positive integers or 'all'")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    overrides = [f"sweep.seeds={args.seeds}", f"task.num_tasks={args.tasks}", f"protocol.epochs_per_task={args.epochs}",
                 "run.checkpoint_every=0", *args.set]
    rows = {}
    for label, vmap_lanes in groupings(args.groups, lanes=10 ** 6).items():
        row = common.command_run(args.experiment, args.preset, [*overrides, f"run.vmap_lanes={vmap_lanes}"])
        rows[label] = {"vmap_lanes": vmap_lanes, **row}
        print(f"{label:14s} {row['lanes']:3d} lanes: {row['lane_steps_per_second']:8.1f} lane-steps/s "
              f"(compile {row['compile_seconds']:.1f} s, others' CPU {row['others_cpu']:.0%})", flush=True)
    automatic = rows["automatic"]["lane_steps_per_second"]
    for row in rows.values():
        row["over_automatic"] = row["lane_steps_per_second"] / automatic
    print("\n| grouping | run.vmap_lanes | lane-steps/s | × automatic | compile (s) | others' CPU |\n"
          "|---|---:|---:|---:|---:|---:|")
    for label, row in rows.items():
        shown = "all" if row["vmap_lanes"] >= 10 ** 6 else row["vmap_lanes"]
        print(f"| {label} | {shown} | {row['lane_steps_per_second']:,.1f} | {row['over_automatic']:.2f}× | "
              f"{row['compile_seconds']:.1f} | {row['others_cpu']:.0%} |")
    result = {"experiment": args.experiment, "preset": args.preset, "overrides": overrides, "groupings": rows}
    if args.json:
        common.write_json(args.json, "lane_groups", result)
    return result


if __name__ == "__main__":
    main()
