"""A sweep that mixes mitigation methods: one compiled program per method (``run.split_programs``,
the default) against one program with every method in every lane, and a plain sweep of as many
lanes as the reference, all run through ``gradual-jax run``'s own code in one process.

    python -m benchmarks.mixed_methods [--seeds 10,11] [--tasks 1] [--epochs 5] [--json OUT.json]

The sweep is the ``fig1-mnist`` ``verdict-methods`` preset (abrupt × Shrink & Perturb, ReDo,
spectral regularisation, continual backprop: the paper's MNIST MLP on 5,120 random-label
images) cut to ``--seeds``, ``--tasks`` and ``--epochs`` E. Each arrangement trains into its own
temporary folder; its lane-steps/s are the run's own (``config.json``: lanes × steps / training
seconds, compile time apart), with the share of the CPU other processes used meanwhile. The
plain sweep (every lane "none", as many lanes, on other seeds) is the floor: a lane of a method
cannot be cheaper than a lane of no method.
"""

from __future__ import annotations

import argparse

from benchmarks import common
from gradual_jax import experiments

def arrangements(seeds: list[int], methods: int) -> dict[str, tuple[str, ...]]:
    """The three arrangements' overrides; the plain sweep gets ``methods`` seeds for each of
    ``seeds`` so that it has as many lanes as the mixed one."""
    plain_seeds = ",".join(str(s + 1000 * m) for m in range(methods) for s in seeds)
    return {"one program per method": ("run.split_programs=true",),
            "one program, every method": ("run.split_programs=false",),
            "plain (no method)": ("sweep.methods=none", f"sweep.seeds={plain_seeds}")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="10,11")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny data and model (a smoke test)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    overrides = [f"sweep.seeds={args.seeds}", f"task.num_tasks={args.tasks}", f"protocol.epochs_per_task={args.epochs}",
                 "run.checkpoint_every=0"]
    if args.quick:  # seconds: the smoke test's sizes
        overrides += ["data.train_per_class=8", "model.hidden_sizes=16,16", "protocol.batch_size=16"]
    methods = len(experiments.get_config("fig1-mnist", "verdict-methods").sweep.methods)
    rows = {}
    for name, extra in arrangements(common.parse_ints(args.seeds), methods).items():
        rows[name] = common.command_run("fig1-mnist", "verdict-methods", [*overrides, *extra])
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
