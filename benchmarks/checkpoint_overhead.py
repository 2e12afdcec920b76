"""Cost of Orbax checkpoints for the MNIST MLP sweep: seconds and bytes per lane, and the
overhead of checkpointing after every task versus never.

    python -m benchmarks.checkpoint_overhead [--lanes 8] [--tasks 6] [--epochs 2] [--json OUT.json]

Runs the fig1-mnist protocol with the paper's MLP (784-256×4-10, Adam) on the real MNIST
subset twice in this process, with ``run.checkpoint_every=1`` and ``=0``, and times a single
save + wait separately. Short tasks (E = 2 epochs here) make this the worst case: at paper
scale a task is 240 epochs, so the same save is a ~100× smaller share.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax

from gradual_jax import experiments
from benchmarks import common
from gradual_jax.runner import build, checkpoint, sweep, train
from gradual_jax.core import engine
from gradual_jax.config import apply_overrides


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    cfg = apply_overrides(experiments.get_config("fig1-mnist", "cpu"), [
        "model.hidden_sizes=256,256,256,256", f"protocol.epochs_per_task={args.epochs}",
        f"task.num_tasks={args.tasks}", "sweep.schedules=abrupt",
        "sweep.seeds=" + ",".join(str(i) for i in range(args.lanes))])
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for every in (0, 1):
            out = Path(tmp) / f"every{every}"
            start = time.perf_counter()
            train.run(apply_overrides(cfg, [f"run.checkpoint_every={every}"]), out, progress=False,
                      echo=lambda *_: None)
            times[every] = time.perf_counter() - start
        step_dir = Path(tmp) / "every1" / checkpoint.CHECKPOINT_DIR / str(args.tasks)
        per_lane_bytes = dir_bytes(step_dir) / args.lanes

        prepared = build.prepare_data(cfg)
        program = build.build_program(cfg, prepared)
        hp = sweep.to_hparams(sweep.expand(cfg.sweep))
        state = jax.block_until_ready(engine.init_lanes(program, hp))
        saver = checkpoint.Checkpointer(Path(tmp) / "direct")
        start = time.perf_counter()
        saver.save(1, state, {"rows": []})
        blocking = time.perf_counter() - start
        saver.wait()
        total = time.perf_counter() - start
        saver.close()
    print(f"MNIST MLP sweep, {args.lanes} lanes, {args.tasks} tasks of {args.epochs * 3} epochs, "
          f"{jax.devices()[0].platform}")
    print(f"checkpoint size: {per_lane_bytes / 2**20:.2f} MiB per lane (params + Adam moments + results record)")
    print(f"one save of {args.lanes} lanes: {blocking:.3f} s blocking, {total:.3f} s until written "
          f"({total / args.lanes * 1e3:.1f} ms per lane)")
    print(f"run with a checkpoint after every task: {times[1]:.1f} s; never: {times[0]:.1f} s; "
          f"overhead {100 * (times[1] / times[0] - 1):+.1f}%")
    result = {"protocol": {"experiment": "fig1-mnist cpu, MLP 784-256x4-10", "lanes": args.lanes, "tasks": args.tasks,
                           "epochs_per_segment": args.epochs * 3},
              "checkpoint_mb_per_lane": per_lane_bytes / 2 ** 20, "save_blocking_s": blocking,
              "save_written_s": total, "run_s_checkpoint_every_task": times[1], "run_s_no_checkpoints": times[0],
              "overhead": times[1] / times[0] - 1}
    if args.json:
        common.write_json(args.json, "checkpoint_overhead", result)
    return result


if __name__ == "__main__":
    main()
