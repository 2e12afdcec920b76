"""The ImageNet stem of a colour image (7×7, stride 2, padding 3, 3 input channels) written four
ways, forward and kernel gradient, timed in one process: can XLA:CPU run it nearer PyTorch's rate?

    python -m benchmarks.archive.stem_forms [--cases 250x32x3x8,250x32x3x16,250x32x3x64]
        [--repeats 3] [--json OUT.json]

A case ``NxSxCxO`` is N images of S×S pixels and C channels into O output channels. The stem's
input is the data, so its step needs the forward and the kernel's gradient only; each form is
``jit`` of both (the kernel's VJP pulled back by half the output), timed as the best of
``--repeats`` timings of 10 calls, interleaved. The forms, all the same function:

* ``convolution``: the canonical-layout convolution and its canonical kernel gradient
  (``canonical_conv.conv``, the model's way for most convolutions on CPU);
* ``space_to_depth``: the padded image's 2×2 pixel blocks folded into 4·C channels, so the stem is
  a 4×4 stride-1 convolution of the 8×8-padded kernel folded alike (``resnet.conv_by_space_to_depth``,
  the model's way for the colour stem on CPU);
* ``unrolled_columns``: each output column's 7 input columns unrolled into 7·C channels, then a
  7×1 stride-(2, 1) convolution over them;
* ``patch_rows``: the 49·C strided views of the channel-major image stacked as one
  ``[49·C, examples·pixels]`` matrix, times the kernel (``resnet.conv_by_patches``'s product for
  more than one channel).

PyTorch's ``nn.Conv2d`` forward and backward of the same case is timed too (oneDNN; ``--no-torch``
leaves it out).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks import common
from gradual_jax.models import canonical_conv, resnet

STRIDE, PAD, KERNEL = 2, 3, 7


def convolution(x, kernel):
    return canonical_conv.conv(x, kernel, (STRIDE, STRIDE), ((PAD, PAD), (PAD, PAD)), None)


def _out_size(side: int) -> int:
    return (side + 2 * PAD - KERNEL) // STRIDE + 1


def space_to_depth(x, kernel):
    return resnet.conv_by_space_to_depth(x, kernel, ((PAD, PAD), (PAD, PAD)))


def unrolled_columns(x, kernel):
    n, side, _, c = x.shape
    padded = jnp.pad(x, ((0, 0), (0, 0), (PAD, PAD), (0, 0)))
    width = _out_size(side)
    columns = jnp.concatenate([jax.lax.slice(padded, (0, 0, j, 0), (n, side, j + STRIDE * (width - 1) + 1, c),
                                             (1, 1, STRIDE, 1)) for j in range(KERNEL)], axis=-1)
    k = kernel.reshape(KERNEL, 1, KERNEL * c, -1)
    return resnet.conv_general_dilated(columns, k, (STRIDE, 1), ((PAD, PAD), (0, 0)),
                                       dimension_numbers=resnet.NHWC_HWIO)


def patch_rows(x, kernel):
    n, side, _, c = x.shape
    image = jnp.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0))).transpose(3, 0, 1, 2)  # c, n, H, W
    size = _out_size(side)
    views = [jax.lax.slice(image, (0, 0, i, j), (c, n, i + STRIDE * (size - 1) + 1, j + STRIDE * (size - 1) + 1),
                           (1, 1, STRIDE, STRIDE)) for i in range(KERNEL) for j in range(KERNEL)]
    patches = jnp.stack(views).reshape(KERNEL * KERNEL * c, n * size * size)  # rows (i, j, c)
    out = jnp.dot(kernel.reshape(KERNEL * KERNEL * c, -1).T, patches)
    return out.reshape(-1, n, size, size).transpose(1, 2, 3, 0)


FORMS = {"convolution": convolution, "space_to_depth": space_to_depth, "unrolled_columns": unrolled_columns,
         "patch_rows": patch_rows}


def forward_and_kernel_gradient(form):
    def step(kernel, x):
        out, pull = jax.vjp(lambda k: form(x, k), kernel)
        return out, pull(0.5 * out)[0]
    return jax.jit(step)


def torch_seconds(batch: int, side: int, channels: int, outputs: int, repeats: int) -> float:
    import torch

    torch.set_num_threads(common.cores())
    x = torch.randn(batch, channels, side, side)
    conv = torch.nn.Conv2d(channels, outputs, KERNEL, STRIDE, PAD, bias=False)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        for _ in range(10):
            out = conv(x)
            out.backward(0.5 * out.detach())
            conv.weight.grad = None
        best = min(best, (time.perf_counter() - start) / 10)
    return best


def measure(batch: int, side: int, channels: int, outputs: int, repeats: int, torch: bool) -> dict:
    x = jax.random.normal(jax.random.key(0), (batch, side, side, channels))
    kernel = 0.1 * jax.random.normal(jax.random.key(1), (KERNEL, KERNEL, channels, outputs))
    steps = {name: forward_and_kernel_gradient(form) for name, form in FORMS.items()}
    want = steps["convolution"](kernel, x)
    row = {"batch": batch, "side": side, "channels": channels, "outputs": outputs}
    for name, step in steps.items():  # compile, and check each form is the same function
        got = step(kernel, x)
        row[f"{name}_max_relative_difference"] = max(float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w)))
                                                     for g, w in zip(got, want))
    best = {name: float("inf") for name in steps}
    for k in range(repeats):
        for name in (list(steps) if k % 2 == 0 else list(steps)[::-1]):
            start = time.perf_counter()
            for _ in range(10):
                jax.block_until_ready(steps[name](kernel, x))
            best[name] = min(best[name], (time.perf_counter() - start) / 10)
    for name, seconds in best.items():
        row[f"{name}_ms"] = 1e3 * seconds
    if torch:
        row["torch_ms"] = 1e3 * torch_seconds(batch, side, channels, outputs, repeats)
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="250x32x3x8,250x32x3x16,250x32x3x64",
                        help="comma separated NxSxCxO: images, side, channels, output channels")
    parser.add_argument("--repeats", type=int, default=3, help="timings per form; the fastest is kept")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch's convolution out")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for case in args.cases.split(","):
        batch, side, channels, outputs = (int(v) for v in case.split("x"))
        row = measure(batch, side, channels, outputs, args.repeats, not args.no_torch)
        rows.append(row)
        names = list(FORMS) + ([] if args.no_torch else ["torch"])
        print(f"{case}: " + ", ".join(f"{name} {row[f'{name}_ms']:.2f} ms" for name in names), flush=True)
    result = {"stem": {"kernel": KERNEL, "stride": STRIDE, "padding": PAD}, "repeats": args.repeats,
              "selection": "fastest timing of 10 calls", "rows": rows, "total_seconds": time.perf_counter() - start}
    if args.json:
        common.write_json(args.json, "stem_forms", result)
    return result


if __name__ == "__main__":
    main()
