"""Would an NCHW ResNet-18 run faster on XLA:CPU? One 3×3 convolution and its two gradients, NHWC
(the model's) against NCHW, at the ResNet's narrow map sizes, alone and inside a ``lax.scan``.

    python -m benchmarks.archive.conv_layout [--cases 250x8x8,250x8x16,250x4x32] [--scan 4]
        [--repeats 5] [--json OUT.json]

A case ``NxSxC`` is N examples of an S×S map with C channels into C channels (stride 1, padding
1). Per case and layout: ``jit(vjp)`` of the convolution pulled back by its own output (forward,
input gradient, kernel gradient), timed alone and as ``--scan`` such steps in a ``lax.scan`` (the
engine's form), best of ``--repeats`` timings of 10 calls each. NHWC is the model's convolution
(``canonical_conv.conv``, canonical gradients); NCHW is ``lax.conv_general_dilated`` with
``("NCHW", "OIHW", "NCHW")``, whose gradients JAX writes with permuted dimension numbers.

XLA:CPU's fast convolution kernel (Eigen's) takes the canonical NHWC layout only: at the top level
XLA transposes an NCHW convolution's operands into it, and inside a loop body, where that
rewrite does not run, the convolution goes to XLA's generic loop emitter.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks import common
from gradual_jax.models import canonical_conv

PADDING = ((1, 1), (1, 1))


def nhwc_step(x, w):
    out, pull = jax.vjp(lambda x, w: canonical_conv.conv(x, w, (1, 1), PADDING, None), x, w)
    return pull(out)


def nchw_step(x, w):
    out, pull = jax.vjp(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), PADDING, dimension_numbers=("NCHW", "OIHW", "NCHW")), x, w)
    return pull(out)


def scanned(step, steps: int):
    """``steps`` steps in a ``lax.scan``, each moving the operands by its gradients."""
    def run(x, w):
        def body(carry, _):
            gx, gw = step(*carry)
            return (carry[0] + 1e-3 * gx, carry[1] + 1e-3 * gw), None
        return jax.lax.scan(body, (x, w), None, length=steps)[0]
    return run


def seconds_per_step(fn, args, steps: int, repeats: int) -> float:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(10):
            jax.block_until_ready(compiled(*args))
        best = min(best, (time.perf_counter() - start) / 10)
    return best / steps


def measure(batch: int, side: int, channels: int, scan: int, repeats: int) -> dict:
    x = jax.random.normal(jax.random.key(0), (batch, side, side, channels))
    w = 0.1 * jax.random.normal(jax.random.key(1), (3, 3, channels, channels))
    layouts = {"nhwc": (nhwc_step, (x, w)), "nchw": (nchw_step, (x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)))}
    row = {"batch": batch, "side": side, "channels": channels}
    for name, (step, args) in layouts.items():
        row[f"{name}_alone_ms"] = 1e3 * seconds_per_step(step, args, 1, repeats)
        row[f"{name}_in_scan_ms"] = 1e3 * seconds_per_step(scanned(step, scan), args, scan, repeats)
    # the two layouts compute the same gradients
    got = nchw_step(*layouts["nchw"][1])
    want = nhwc_step(x, w)
    row["max_relative_difference"] = max(
        float(jnp.max(jnp.abs(g - h)) / jnp.max(jnp.abs(h)))
        for g, h in zip((got[0].transpose(0, 2, 3, 1), got[1].transpose(2, 3, 1, 0)), want))
    row["nchw_over_nhwc_alone"] = row["nchw_alone_ms"] / row["nhwc_alone_ms"]
    row["nchw_over_nhwc_in_scan"] = row["nchw_in_scan_ms"] / row["nhwc_in_scan_ms"]
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="250x8x8,250x8x16,250x4x32",
                        help="comma separated NxSxC: examples, map side, channels")
    parser.add_argument("--scan", type=int, default=4, help="steps per lax.scan")
    parser.add_argument("--repeats", type=int, default=5, help="timings per variant; the fastest is kept")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for case in args.cases.split(","):
        batch, side, channels = (int(v) for v in case.split("x"))
        row = measure(batch, side, channels, args.scan, args.repeats)
        rows.append(row)
        print(f"{case}: alone NHWC {row['nhwc_alone_ms']:.2f} ms, NCHW {row['nchw_alone_ms']:.2f} ms "
              f"({row['nchw_over_nhwc_alone']:.2f}×); in a scan NHWC {row['nhwc_in_scan_ms']:.2f} ms, "
              f"NCHW {row['nchw_in_scan_ms']:.2f} ms ({row['nchw_over_nhwc_in_scan']:.2f}×)", flush=True)
    result = {"scan": args.scan, "repeats": args.repeats, "selection": "fastest timing of 10 calls",
              "rows": rows, "total_seconds": time.perf_counter() - start}
    if args.json:
        common.write_json(args.json, "conv_layout", result)
    return result


if __name__ == "__main__":
    main()
