"""Where a ResNet-18 step's time goes on XLA:CPU: the convolutions XLA swapped, by lane count.

    python -m benchmarks.conv_profile --json results/benchmarks/conv_profile-cpu.json

XLA's algebraic simplifier rewrites a convolution whose kernel window is larger than its input
by swapping its two operands, so that the examples become the convolution's features and the
channels its batch (``dim_labels=01fb_o01i->f01b`` in the optimised HLO). In ResNet-18 with the
ImageNet stem on 32×32 images, layers 3 and 4 see 2×2 and 1×1 feature maps, so the
backward-input convolutions of their 3×3 kernels are swapped. The simplifier leaves grouped
convolutions alone, and vmapped lanes are grouped convolutions (one group per lane): a step of
two or more lanes has no swapped convolution.

For each lane count R this script compiles the training step of ``model_steps``' ResNet case,
counts its convolutions and the swapped ones, times the step (best of ``--repeats``), and
profiles one step with ``jax.profiler``, summing the time of the ops XLA's CPU runtime names
(an HLO instruction per event) into the swapped convolutions, the other convolutions and the
rest. Times of ops on the two Eigen threads add up, so a share is of op time, not of wall time.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time
from pathlib import Path

from benchmarks import common

common.apply_cli_xla_flags()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import model_steps  # noqa: E402

SWAPPED = "dim_labels=01fb_o01i->f01b"
_CONV = re.compile(r"^\s*(?:ROOT )?%([\w.-]+) = \S+ convolution\((.*)$", re.M)


def convolutions(hlo_text: str) -> dict[str, bool]:
    """Every convolution of an optimised HLO module by name, and whether XLA swapped its operands."""
    return {m.group(1): SWAPPED in m.group(2) for m in _CONV.finditer(hlo_text)}


def op_times(xplane: Path) -> collections.Counter:
    """Nanoseconds per HLO instruction name, summed over XLA's CPU threads, from one profile."""
    profile = jax.profiler.ProfileData.from_file(str(xplane))
    times: collections.Counter = collections.Counter()
    for plane in profile.planes:
        for line in plane.lines:
            if not line.name.startswith(("tf_XLAEigen", "tf_XLAPjRtCpuClient")):
                continue
            for event in line.events:
                if not event.name.startswith("ThunkExecutor"):
                    times[event.name] += event.duration_ns
    return times


def attribute(convs: dict[str, bool], times: collections.Counter) -> dict:
    """Op time split into swapped convolutions, other convolutions and everything else (seconds)."""
    swapped = sum(times[n] for n, s in convs.items() if s) / 1e9
    other = sum(times[n] for n, s in convs.items() if not s) / 1e9
    total = sum(times.values()) / 1e9
    return {"op_seconds": total, "swapped_conv_seconds": swapped, "other_conv_seconds": other,
            "rest_seconds": total - swapped - other,
            "swapped_share": swapped / total if total else float("nan")}


def measure(case: model_steps.Case, lanes: int, repeats: int) -> dict:
    keys = jax.vmap(lambda i: jax.random.key(i, impl="rbg"))(jnp.arange(lanes))
    state = jax.jit(jax.vmap(case.init_lane))(keys)
    data = case.make_batch(lanes)
    compiled = jax.jit(jax.vmap(case.lane_step)).lower(state, data).compile()
    convs = convolutions(compiled.as_text())
    jax.block_until_ready(compiled(state, data))
    timing = common.best_time(lambda: jax.block_until_ready(compiled(state, data)), repeats=repeats, warmup=0)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            jax.block_until_ready(compiled(state, data))
        [xplane] = Path(trace_dir).rglob("*.xplane.pb")
        split = attribute(convs, op_times(xplane))
    step_s = timing["seconds"]
    return {"lanes": lanes, "convolutions": len(convs), "swapped_convolutions": sum(convs.values()),
            "step_s": step_s, "lane_steps_per_s": lanes / step_s, "others_cpu": timing["others_cpu"], **split}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,2,4", help="lane counts R (comma separated)")
    parser.add_argument("--resnet-width", type=float, default=1.0, help="width multiplier (1: the paper's model)")
    parser.add_argument("--resnet-batch", type=int, default=250)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps per lane count; the fastest is kept")
    parser.add_argument("--quick", action="store_true", help="width 1/16, batch 8: a smoke test")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.resnet_width, args.resnet_batch = 1 / 16, 8
    case = model_steps.resnet_case(args.resnet_batch, args.resnet_width, args.image, False, "float32")
    print(f"ResNet-18 width {args.resnet_width:g}, batch {args.resnet_batch}, {args.image}×{args.image} images, "
          f"ImageNet stem; XLA_FLAGS={common.xla_flags()!r}")
    start = time.perf_counter()
    rows = []
    for lanes in common.parse_ints(args.lanes):
        row = measure(case, lanes, args.repeats)
        rows.append(row)
        print(f"  R = {lanes}: {row['swapped_convolutions']} of {row['convolutions']} convolutions swapped; "
              f"step {row['step_s']:.2f} s ({row['lane_steps_per_s']:.3f} lane-steps/s); op time "
              f"{row['op_seconds']:.2f} s, of it swapped convolutions {row['swapped_conv_seconds']:.2f} s "
              f"({100 * row['swapped_share']:.0f}%) (others' CPU {100 * row['others_cpu']:.0f}%)", flush=True)
    result = {"sizes": case.sizes, "rows": rows, "total_seconds": time.perf_counter() - start}
    if args.json:
        common.write_json(args.json, "conv_profile", result)
    return result


if __name__ == "__main__":
    main()
