"""A sweep that mixes mitigation methods: one compiled program per method (``run.split_programs``,
the default) against one program with every method in every lane, and a plain sweep of as many
lanes as the reference, all run through ``gradual-jax run``'s own code in one process.

    python -m benchmarks.mixed_methods [--seeds 10,11] [--tasks 1] [--epochs 5] [--json OUT.json]

The sweep is the ``fig1-mnist`` ``verdict-methods`` preset (abrupt × Shrink & Perturb, ReDo,
spectral regularisation, continual backprop: the paper's MNIST MLP on 5,120 random-label
images) cut to ``--seeds``, ``--tasks`` and ``--epochs`` E. Each arrangement trains into its own
temporary folder; its lane-steps/s are the run's own (``config.json``: lanes × steps / training
seconds, compile time apart), with the share of the CPU other processes used meanwhile. The
plain sweep (every lane "none", the same lanes otherwise) is the floor: a lane of a method
cannot be cheaper than a lane of no method.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks import common
from gradual_jax import experiments
from gradual_jax.config import apply_overrides
from gradual_jax.runner import train

ARRANGEMENTS = {
    "one program per method": ("run.split_programs=true",),
    "one program, every method": ("run.split_programs=false",),
    "plain (no method)": ("sweep.methods=none",),
}


def measure(overrides: list[str], extra: tuple[str, ...]) -> dict:
    cfg = apply_overrides(experiments.get_config("fig1-mnist", "verdict-methods"), [*overrides, *extra])
    with tempfile.TemporaryDirectory() as out:
        result = common.measured(lambda: _run(cfg, Path(out)))
    return result


def _run(cfg, out: Path) -> dict:
    train.run(cfg, out, progress=False, echo=lambda *_: None)
    meta = json.loads((out / "config.json").read_text())
    return {"lanes": len(meta["lanes"]), "programs": len(meta["program_lanes"]),
            "compile_seconds": meta["compile_seconds"], "train_seconds": meta["train_seconds"],
            "lane_steps_per_second": meta["lane_steps_per_second"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="10,11")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    overrides = [f"sweep.seeds={args.seeds}", f"task.num_tasks={args.tasks}", f"protocol.epochs_per_task={args.epochs}",
                 "run.checkpoint_every=0"]
    rows = {}
    for name, extra in ARRANGEMENTS.items():
        rows[name] = measure(overrides, extra)
        print(f"{name:28s} {rows[name]['lanes']:3d} lanes in {rows[name]['programs']} program(s): "
              f"{rows[name]['lane_steps_per_second']:8.1f} lane-steps/s (compile {rows[name]['compile_seconds']:.1f} s, "
              f"others' CPU {rows[name]['others_cpu']:.0%})", flush=True)
    split, one = rows["one program per method"], rows["one program, every method"]
    result = {"overrides": overrides, "arrangements": rows,
              "split_over_one": split["lane_steps_per_second"] / one["lane_steps_per_second"],
              "split_over_plain": split["lane_steps_per_second"] / rows["plain (no method)"]["lane_steps_per_second"]}
    print(f"one program per method: {result['split_over_one']:.2f}× one program with every method, "
          f"{result['split_over_plain']:.2f}× a plain sweep")
    if args.json:
        common.write_json(args.json, "mixed_methods", result)
    return result


if __name__ == "__main__":
    main()
