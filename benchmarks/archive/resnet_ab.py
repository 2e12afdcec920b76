"""A/B of one change to the ResNet-18 step: the model before the change against the model as it is,
both in one process, interleaved.

    python -m benchmarks.archive.resnet_ab --change conv-dots [--settings cifar-0.125,cifar-0.25,mnist-0.125]
        [--lanes 1,4] [--batch 250] [--scan K] [--repeats 3] [--seconds 3] [--json OUT.json]

Changes (``--change``; gradual_jax/models/resnet.py unless named):

* ``conv-dots``: output maps of at most 4 pixels computed by matrix products (``conv_by_dots``),
  against ``lax.conv_general_dilated`` in every ``nnx.Conv``;
* ``max-pool``: the stem's max-pool as strided slices with a first-maximum gradient
  (``max_pool``), against ``nnx.max_pool`` (a ``reduce_window``, differentiated by XLA);
* ``canonical-conv``: on CPU the plain convolutions differentiate into canonical-layout ones
  (``gradual_jax.models.canonical_conv``), against JAX's own gradients (permuted dimension
  numbers, which XLA:CPU canonicalises at the top level only): run it with ``--scan K``, the
  engine's form, where the difference is;
* ``conv-patches`` (a candidate, not in the model: "before" is the model as it is, "after" has
  the candidate patched in): every other convolution as one matrix product of its patches
  (:func:`conv_by_concatenated_patches`: the kh·kw strided views of the padded map side by side, times the
  flattened kernel), so that lanes batch a product rather than group a convolution;
* ``colour-patches`` (a candidate, not in the model): a convolution of up to 4 input channels (the
  stem of colour images) as the sum over its channels of ``resnet.conv_by_patches``
  (:func:`channelwise_patches`);
* ``space-to-depth``: on CPU a stride-2 convolution of 2 to 4 input channels (the stem of colour
  images) as a stride-1 convolution of 2×2 pixel blocks (``resnet.conv_by_space_to_depth``),
  against the canonical-layout convolution (:func:`canonical_for_colour_stem`);
* ``gray-patches``: on CPU a convolution of one input channel (the stem of 28×28×1 images) as a
  product of its patches (``resnet.conv_by_patches``), against the canonical-layout convolution
  (:func:`canonical_for_one_channel`);
* ``fused-batchnorm``: BatchNorm's training-mode arithmetic as one function with its closed-form
  gradient (``gradual_jax.models.batch_norm.normalize``), against the same arithmetic
  differentiated by JAX step by step (:class:`StepwiseBatchNorm`).
* ``kernel-gradient-chunks``: on CPU a convolution's kernel gradient contracts over at most
  ``canonical_conv.KERNEL_GRADIENT_EXAMPLES`` examples per convolution, the chunks summed, against
  one convolution over every example (:data:`ONE_KERNEL_GRADIENT_CHUNK`).
* ``channel-sums-as-dots`` (a candidate, not in the model): BatchNorm's per-channel sums
  (``batch_norm.channel_sum``) as products with a vector of ones (:func:`summed_by_ones_product`),
  against the reductions. Faster on XLA:CPU, but the product accumulates in float32 rows at a
  time (about 1e-5 from the exact sum of 64,000 values, relatively, against the reduction's 1e-6).

A setting is an input shape and a width: ``cifar-W`` is 32×32×3, ``mnist-W`` 28×28×1 (the MNIST
presets' images), both with the ImageNet stem, so layers 3 and 4 see 2×2 and 1×1 maps. For each
setting and lane count R, both variants' steps (``model_steps``' ResNet case: AdamW, batch
statistics, ``jit(vmap(step))`` over R lanes, or K of them in a ``lax.scan`` with ``--scan K``) are
compiled, then timed ``--repeats`` times each,
alternating which goes first; the fastest timing of each is kept, and the ratio is after /
before. Each timing records the share of the CPU that other processes used meanwhile ("others' CPU"). The
loss of each variant's first step is recorded too: both start from the same parameters and see the
same batch, so the two agree to float32 rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from unittest import mock

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import common, model_steps
from gradual_jax.models import batch_norm, canonical_conv, resnet


def _reduce_window_pool(x, window, stride, padding):
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=((padding, padding),) * 2)


class StepwiseBatchNorm(batch_norm.BatchNorm):
    """The model's BatchNorm with its training-mode arithmetic left to JAX to differentiate: the
    mean, then the mean squared deviation, as reductions over the kept examples."""

    def __call__(self, x, train: bool, mask=None):
        if not train:
            return super().__call__(x, train, mask)
        x32 = x.astype(jnp.float32)
        axes = tuple(range(x.ndim - 1))
        weights = batch_norm.mask_weights(x32, mask)
        n = batch_norm.count(x32, weights)
        kept = 1.0 if weights is None else weights
        mean = (x32 * kept).sum(axes) / jnp.maximum(n, 1.0)
        var = (jnp.square(x32 - mean) * kept).sum(axes) / jnp.maximum(n, 1.0)
        m = self.momentum
        self.mean[...] = (1.0 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
        self.var[...] = (1.0 - m) * self.var[...] + m * jax.lax.stop_gradient(var * n / jnp.maximum(n - 1.0, 1.0))
        y = (x32 - mean) * (jax.lax.rsqrt(var + self.epsilon) * self.scale[...]) + self.bias[...]
        return y.astype(self.dtype or x.dtype)


def conv_by_concatenated_patches(x: jax.Array, kernel: jax.Array, strides, padding, precision=None) -> jax.Array:
    """A zero-padded NHWC convolution (HWIO kernel, no dilation, no groups) as one product: the
    kh·kw strided views of the padded map concatenated along channels (tap-major, as the HWIO
    kernel flattens), times the kernel flattened to [kh·kw·in, out]."""
    kh, kw, _, out_channels = kernel.shape
    padded = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    n, h, w, c = padded.shape
    oh, ow = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
    taps = [jax.lax.slice(padded, (0, i, j, 0), (n, i + strides[0] * (oh - 1) + 1, j + strides[1] * (ow - 1) + 1, c),
                          (1, strides[0], strides[1], 1))
            for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
    return jnp.dot(patches, kernel.reshape(-1, out_channels), precision=precision)


def patches_or_dots(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                    dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """The candidate in ``resnet.conv_general_dilated``'s place: small output maps by
    ``resnet.conv_by_dots`` as now, every other plain NHWC convolution by :func:`conv_by_concatenated_patches`."""
    plain = (dimension_numbers == resnet.NHWC_HWIO and feature_group_count == 1 and not isinstance(padding, str)
             and all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation))
             and all(v is None for v in kwargs.values()))
    if plain and not resnet.uses_dots(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                                      dimension_numbers, feature_group_count):
        return conv_by_concatenated_patches(lhs, rhs, window_strides, padding, precision)
    return _MODEL_CONV(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, precision, **kwargs)


_MODEL_CONV = resnet.conv_general_dilated  # the model's own, kept before the candidate is patched in


def dots_or_lax(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """The model's convolution with JAX's own gradients: small output maps by ``resnet.conv_by_dots``,
    every other convolution by ``lax.conv_general_dilated``."""
    if resnet.uses_dots(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count) and all(v is None for v in kwargs.values()):
        return resnet.conv_by_dots(lhs, rhs, window_strides, padding, precision)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)


def _canonical_where(rule, name: str, doc: str):
    """The model's convolution, except where ``rule`` (a ``resnet.uses_*`` predicate) holds: there
    ``canonical_conv.conv``, the model's way before that rule's path."""
    def convolution(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                    dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
        if rule(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                feature_group_count) and all(v is None for v in kwargs.values()):
            return canonical_conv.conv(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)), precision)
        return _MODEL_CONV(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                           feature_group_count, precision, **kwargs)

    convolution.__name__ = convolution.__qualname__ = name
    convolution.__doc__ = doc
    return convolution


canonical_for_one_channel = _canonical_where(
    resnet.uses_patches, "canonical_for_one_channel",
    "The model's convolution with one-channel convolutions left to ``canonical_conv.conv``.")
canonical_for_colour_stem = _canonical_where(
    resnet.uses_space_to_depth, "canonical_for_colour_stem",
    "The model's convolution with the colour stem left to ``canonical_conv.conv``.")


def channelwise_patches(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                        dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """The candidate in ``resnet.conv_general_dilated``'s place: a plain convolution of 2 to 4 input
    channels as one patch product per channel, summed; every other convolution as the model's."""
    if (resnet.is_plain(lhs.shape, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
            and 1 < lhs.shape[-1] <= 4 and all(v is None for v in kwargs.values())
            and not resnet.uses_dots(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                                     dimension_numbers, feature_group_count)):
        return sum(resnet.conv_by_patches(lhs[..., c:c + 1], rhs[:, :, c:c + 1], window_strides, padding, precision)
                   for c in range(lhs.shape[-1]))
    return _MODEL_CONV(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                       feature_group_count, precision, **kwargs)


def summed_by_ones_product(x: jax.Array) -> jax.Array:
    """The candidate in ``batch_norm.channel_sum``'s place: a vector of ones times the values as an
    [examples·pixels, channels] matrix."""
    rows = x.reshape(-1, x.shape[-1])
    return jnp.dot(jnp.ones((rows.shape[0],), rows.dtype), rows, precision=jax.lax.Precision.HIGHEST)


#: Examples per kernel-gradient convolution that no batch reaches: one convolution over them all.
ONE_KERNEL_GRADIENT_CHUNK = 2 ** 31

#: change -> the attribute it swaps (of gradual_jax.models.resnet, unless it names another module
#: of gradual_jax.models), the "before" variant and the "after" one (None: the model as it is).
#: ``conv_general_dilated`` and ``BatchNorm`` are read when the model is built, ``max_pool``,
#: ``KERNEL_GRADIENT_EXAMPLES`` and ``channel_sum`` when it is traced.
CHANGES = {"conv-dots": ("conv_general_dilated", jax.lax.conv_general_dilated, None),
           "max-pool": ("max_pool", _reduce_window_pool, None),
           "conv-patches": ("conv_general_dilated", None, patches_or_dots),
           "canonical-conv": ("conv_general_dilated", dots_or_lax, None),
           "fused-batchnorm": ("BatchNorm", StepwiseBatchNorm, None),
           "gray-patches": ("conv_general_dilated", canonical_for_one_channel, None),
           "colour-patches": ("conv_general_dilated", None, channelwise_patches),
           "space-to-depth": ("conv_general_dilated", canonical_for_colour_stem, None),
           "kernel-gradient-chunks": ("canonical_conv.KERNEL_GRADIENT_EXAMPLES", ONE_KERNEL_GRADIENT_CHUNK, None),
           "channel-sums-as-dots": ("batch_norm.channel_sum", None, summed_by_ones_product)}
MODULES = {"resnet": resnet, "canonical_conv": canonical_conv, "batch_norm": batch_norm}
VARIANTS = ("before", "after")
SHAPES = {"cifar": (32, 3), "mnist": (28, 1)}  # image side, channels


def variant(change: str, name: str):
    """A context in which ``resnet`` is the model ``before`` the change or ``after`` it."""
    target, *variants = CHANGES[change]
    swapped = dict(zip(VARIANTS, variants))[name]
    module, attribute = _module_and_attribute(target)
    return contextlib.nullcontext() if swapped is None else mock.patch.object(module, attribute, swapped)


def _module_and_attribute(target: str):
    module, _, attribute = target.rpartition(".")
    return MODULES[module or "resnet"], attribute


def _described(target: str, swapped) -> str:
    """How a variant sets ``target``, for the result file."""
    module, attribute = _module_and_attribute(target)
    where = f"{module.__name__.rpartition('.')[2]}.{attribute}"
    if swapped is None:
        return f"{where} as it is"
    if callable(swapped):
        return f"{where} = {swapped.__module__}.{swapped.__qualname__}"
    return f"{where} = {swapped!r}"


def setting_case(setting: str, batch: int) -> model_steps.Case:
    """``model_steps``' ResNet case at ``setting`` (e.g. ``mnist-0.125``)."""
    shape, width = setting.split("-")
    image, channels = SHAPES[shape]
    return model_steps.resnet_case(batch, float(width), image, False, "float32", in_channels=channels)


def compiled_runner(case: model_steps.Case, lanes: int, steps_per_call: int = 1):
    """``run(n)``: n calls of the compiled ``jit(vmap(step))`` (``steps_per_call`` steps each, in a
    ``lax.scan``) on fixed data, blocking, -> the mean loss of the last step; the compile time; and
    the first call's mean loss."""
    keys = jax.vmap(lambda i: jax.random.key(i, impl="rbg"))(jnp.arange(lanes))
    box = {"state": jax.jit(jax.vmap(case.init_lane))(keys)}
    data = case.make_batch(lanes)
    start = time.perf_counter()
    step = model_steps.scanned(jax.vmap(case.lane_step), steps_per_call)
    compiled = jax.jit(step, donate_argnums=0).lower(box["state"], data).compile()
    compile_s = time.perf_counter() - start

    def run(n):
        for _ in range(n):
            box["state"], box["loss"] = compiled(box["state"], data)
        jax.block_until_ready((box["state"], box["loss"]))
        return float(jnp.mean(box["loss"]))

    first_loss = run(1)  # also the warm-up
    return run, compile_s, first_loss


def compare(change: str, setting: str, lanes: int, *, batch: int, repeats: int, seconds: float,
            steps_per_call: int = 1) -> dict:
    names = list(VARIANTS)
    runners = {}
    for name in names:
        with variant(change, name):
            runners[name] = compiled_runner(setting_case(setting, batch), lanes, steps_per_call)
    one = min(common.best_time(lambda: runners[name][0](1), repeats=1, warmup=0)["seconds"] for name in names)
    n = common.calibrated_steps(one, seconds, 2, 500)
    timings = {name: [] for name in names}
    for k in range(repeats):
        for name in (names if k % 2 == 0 else names[::-1]):
            timings[name].append(common.best_time(lambda: runners[name][0](n), repeats=1, warmup=0))
    steps = n * steps_per_call
    row = {"setting": setting, "lanes": lanes, "batch": batch, "steps_per_call": steps_per_call, "steps": steps}
    for name in names:
        best = min(timings[name], key=lambda t: t["seconds"])
        row[name] = {"lane_steps_per_s": lanes * steps / best["seconds"], "others_cpu": best["others_cpu"],
                     "all_lane_steps_per_s": [lanes * steps / t["seconds"] for t in timings[name]],
                     "compile_s": runners[name][1], "first_loss": runners[name][2]}
    row["ratio"] = row[names[1]]["lane_steps_per_s"] / row[names[0]]["lane_steps_per_s"]
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change", choices=sorted(CHANGES), required=True, help="the change to measure")
    parser.add_argument("--settings", default="cifar-0.125,cifar-0.25,mnist-0.125",
                        help="comma separated SHAPE-WIDTH, SHAPE one of: " + ", ".join(SHAPES))
    parser.add_argument("--lanes", default="1,4", help="lane counts R (comma separated)")
    parser.add_argument("--batch", type=int, default=250, help="examples per lane-step")
    parser.add_argument("--scan", type=int, default=1, metavar="K",
                        help="K steps per call in a lax.scan, as the engine runs them (default 1: the step alone)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per variant; the fastest is kept")
    parser.add_argument("--seconds", type=float, default=3.0, help="target time of one timing")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for setting in args.settings.split(","):
        for lanes in common.parse_ints(args.lanes):
            row = compare(args.change, setting, lanes, batch=args.batch, repeats=args.repeats, seconds=args.seconds,
                          steps_per_call=args.scan)
            rows.append(row)
            print(f"{setting}, R = {lanes}: " + ", ".join(
                f"{n} {row[n]['lane_steps_per_s']:,.2f} lane-steps/s (others' CPU {100 * row[n]['others_cpu']:.0f}%)"
                for n in VARIANTS) + f"; ratio {row['ratio']:.2f}×", flush=True)
    names = list(VARIANTS)
    print(f"\n| setting | lanes | {names[0]} | {names[1]} | ratio | others' CPU (max) |\n|---|---:|---:|---:|---:|---:|")
    for row in rows:
        others = max(row[n]["others_cpu"] for n in names)
        print(f"| {row['setting']} | {row['lanes']} | {row[names[0]]['lane_steps_per_s']:,.2f} | "
              f"{row[names[1]]['lane_steps_per_s']:,.2f} | {row['ratio']:.2f}× | {100 * others:.0f}% |")
    target, *variants = CHANGES[args.change]
    result = {"change": args.change,
              "variants": {name: _described(target, swapped) for name, swapped in zip(VARIANTS, variants)},
              "batch": args.batch, "steps_per_call": args.scan, "repeats": args.repeats, "selection": "fastest timing per variant",
              "rows": rows, "total_seconds": time.perf_counter() - start}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "resnet_ab", result)
    return result


if __name__ == "__main__":
    main()
