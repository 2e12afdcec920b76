"""What CReLU costs per lane-step against the plain ReLU MLP, through ``gradual-jax run``'s own code.

    python -m benchmarks.crelu_cost [--lanes 4] [--epochs 2] [--repeats 3] [--json OUT.json]

The paper's MNIST MLP (784-256×4-10, LayerNorm, Adam, batch 64, 5,120 random-label images) with
ReLU (``fig1-mnist`` ``verdict``) and with CReLU (``verdict-crelu``: ``[relu(x), relu(-x)]``, so
every layer after the first reads twice the columns), cut to ``--lanes`` seeds, one task and E =
``--epochs``. The two are run alternately ``--repeats`` times (so a change in the machine's load
falls on both), each into a fresh folder; a run's lane-steps/s are its own (``config.json``:
lanes × steps / training seconds, compile apart) and the best of the repeats is kept.

The expected ratio from the matmuls alone: forward MACs per example are 784·256 + 3·256·256 +
256·10 = 399,872 with ReLU and 784·256 + 3·512·256 + 512·10 = 599,040 with CReLU (1.50×); the
elementwise work after each hidden layer (activation, LayerNorm of the next input) doubles.
"""

from __future__ import annotations

import argparse

from benchmarks import common

PRESETS = {"relu": "verdict", "crelu": "verdict-crelu"}
HIDDEN, INPUTS, CLASSES = 256, 784, 10


def forward_macs(copies: int, layers: int = 4) -> int:
    """Matmul multiply-adds of one example's forward pass; ``copies`` output columns per unit."""
    return INPUTS * HIDDEN + (layers - 1) * copies * HIDDEN * HIDDEN + copies * HIDDEN * CLASSES


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny data and model (a smoke test)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    overrides = [f"sweep.seeds={','.join(str(10 + i) for i in range(args.lanes))}", "sweep.schedules=abrupt",
                 "task.num_tasks=1", f"protocol.epochs_per_task={args.epochs}", "run.checkpoint_every=0"]
    if args.quick:  # seconds: the smoke test's sizes
        overrides += ["data.train_per_class=8", "model.hidden_sizes=16,16", "protocol.batch_size=16"]
    runs = {name: [] for name in PRESETS}
    for _ in range(args.repeats):
        for name, preset in PRESETS.items():
            runs[name].append(common.command_run("fig1-mnist", preset, overrides))
            print(f"{name:6s} {runs[name][-1]['lane_steps_per_second']:8.1f} lane-steps/s "
                  f"(others' CPU {runs[name][-1]['others_cpu']:.0%})", flush=True)
    best = {name: max(r["lane_steps_per_second"] for r in rs) for name, rs in runs.items()}
    result = {"overrides": overrides, "runs": runs, "best_lane_steps_per_second": best,
              "cost_ratio": best["relu"] / best["crelu"],
              "matmul_ratio": forward_macs(2) / forward_macs(1)}
    print(f"CReLU costs {result['cost_ratio']:.2f}× the ReLU MLP per lane-step "
          f"(its matmuls alone: {result['matmul_ratio']:.2f}×)")
    if args.json:
        common.write_json(args.json, "crelu_cost", result)
    return result


if __name__ == "__main__":
    main()
