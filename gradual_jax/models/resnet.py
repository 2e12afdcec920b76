"""ResNet-18 (He et al., 2016) in Flax NNX, with PyTorch's BatchNorm semantics, for random-label CIFAR-10.

Architecture (torchvision's ``resnet18``, the paper's model):

* ImageNet stem: 7×7 conv, stride 2, padding 3, no bias → BatchNorm → ReLU → 3×3 max-pool,
  stride 2, padding 1 (padded with -inf, so padding never wins the max). ``cifar_stem=True``
  swaps in a 3×3 stride-1 padding-1 conv and drops the max-pool (the usual CIFAR variant).
* four stages of two basic blocks, widths 64/128/256/512 × ``width_multiplier``; a block is
  3×3 conv (stride s) → BN → ReLU → 3×3 conv → BN, plus the shortcut, then ReLU. The shortcut
  is the identity, or a 1×1 conv with stride s (no bias) → BN where the shape changes.
* global average pool → linear head (with bias).

Every padding is explicit and symmetric, as in PyTorch, so an ``H``-pixel input gives
``floor((H + 2p - k) / s) + 1`` pixels after each conv/pool (32 → 16 → 8 → 8 → 4 → 2 → 1 with the
ImageNet stem; 224 → 112 → 56 → 56 → 28 → 14 → 7). Inputs are NHWC float32 (normalised images).
A conv whose output map has at most 4 pixels (layers 3–4 at 28- to 32-pixel inputs) is computed
as matrix products over the taps that land inside its input map (:func:`conv_by_dots`): the same
function with the same parameters, which XLA:CPU runs faster than a convolution there; on CPU a
conv of one input channel (the stem of grey-scale images) is one product of its patches
(:func:`conv_by_patches`), a stride-2 conv of a colour image's 3 channels a stride-1 one over
2×2 pixel blocks (:func:`conv_by_space_to_depth`), and the other convolutions differentiate into
canonical-layout ones
(:mod:`canonical_conv`), which
XLA:CPU runs fast inside the training scan as well; the stem's
max-pool is strided slices with PyTorch's first-maximum gradient (:func:`max_pool`), for the same
reason.

Initialisation (``init=``):

* ``"torch"`` (default; docs/protocol.md: PyTorch's default initialisation): what ``nn.Conv2d`` and
  ``nn.Linear`` do on construction, kaiming_uniform(a=√5), i.e. weights ~ U(±1/√fan_in) with
  fan_in = in_channels·kh·kw; the head's bias ~ U(±1/√fan_in); BN γ = 1, β = 0.
* ``"torchvision"``: what ``torchvision.models.resnet18()`` does after construction: conv
  weights ~ N(0, 2/fan_out) (kaiming_normal, mode="fan_out", nonlinearity="relu", fan_out =
  out_channels·kh·kw); BN γ = 1, β = 0; the head keeps nn.Linear's default U(±1/√fan_in).

BatchNorm (:class:`~gradual_jax.models.batch_norm.BatchNorm`) follows ``torch.nn.BatchNorm2d``
(the unbiased variance in the running statistics, PyTorch's momentum convention), not
``nnx.BatchNorm``; its training-mode arithmetic has a closed-form gradient.

Functional use (the engine's lanes): the running statistics are ``nnx.BatchStat`` variables,
separate from the ``nnx.Param`` ones::

    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    logits, batch_stats = apply(graphdef, params, batch_stats, x, train=True, mask=valid)
    logits, _ = apply(graphdef, params, batch_stats, x, train=False)

``train`` is a static Python bool. ``mask`` ([N] bool, optional) leaves padded examples of a
short last batch out of the batch statistics, so the statistics are PyTorch's for that batch.

``dtype=jnp.bfloat16`` computes convolutions and activations in bfloat16 with float32
parameters; batch statistics, normalisation arithmetic, pooling and the head stay float32
and the logits are float32. Default ``None``: everything float32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.models import canonical_conv
from gradual_jax.models.batch_norm import BatchNorm
from gradual_jax.models.init import normal, torch_linear, uniform
from gradual_jax.models.paths import leaf_dict
from gradual_jax.models.units import UnitLayer

WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = (2, 2, 2, 2)
INITS = ("torch", "torchvision")


# --------------------------------------------------------------------------- init
def conv_kernel_init(init: str, in_channels: int, out_channels: int, kernel: int):
    """The kernel initialiser of a bias-free conv (flax kernel layout [kh, kw, in, out])."""
    if init == "torch":  # nn.Conv2d.reset_parameters: kaiming_uniform(a=√5) = U(±1/√fan_in)
        return uniform(1.0 / math.sqrt(in_channels * kernel * kernel))
    if init == "torchvision":  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
        return normal(math.sqrt(2.0 / (out_channels * kernel * kernel)))
    raise ValueError(f"init must be one of {INITS}, got {init!r}.")


def scaled_width(width: int, multiplier: float) -> int:
    """``round(width × multiplier)``, at least 1."""
    return max(1, round(width * multiplier))


# --------------------------------------------------------------------------- convolutions
#: Output maps of at most this many pixels are computed by :func:`conv_by_dots`: layers 3 and 4
#: of a 28- to 32-pixel input with the ImageNet stem (2×2 and 1×1 maps).
MAX_DOT_OUTPUT_PIXELS = 4
NHWC_HWIO = jax.lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def window_spans(size: int, kernel: int, stride: int, padding: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Along one axis, per output index: ``(first input index, first tap, taps)`` of the part of
    its window that lies inside the map (the rest reads zero padding); ``(0, 0, 0)`` where all of it
    lies on padding."""
    out_size = (size + sum(padding) - kernel) // stride + 1
    spans = []
    for o in range(out_size):
        start = o * stride - padding[0]  # the input index under tap 0
        first, stop = max(0, -start), min(kernel, size - start)
        spans.append((start + first, first, stop - first) if stop > first else (0, 0, 0))
    return spans


def is_plain(input_shape, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
             feature_group_count: int = 1) -> bool:
    """An NHWC/HWIO convolution without dilation or groups, with explicit padding."""
    return (len(input_shape) == 4 and dimension_numbers == NHWC_HWIO and feature_group_count == 1
            and not isinstance(padding, str)
            and all(d in (None, 1) or tuple(d) == (1, 1) for d in (lhs_dilation, rhs_dilation)))


def uses_dots(input_shape, kernel_shape, strides, padding, lhs_dilation=None, rhs_dilation=None,
              dimension_numbers=None, feature_group_count: int = 1) -> bool:
    """Whether :func:`conv_general_dilated` computes this convolution by :func:`conv_by_dots`:
    an NHWC/HWIO convolution without dilation or groups, explicit padding, and an output map of at
    most ``MAX_DOT_OUTPUT_PIXELS`` pixels. Decided from static shapes, so at trace time."""
    if not is_plain(input_shape, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count):
        return False
    out_pixels = math.prod(len(window_spans(size, k, s, tuple(p)))
                           for size, k, s, p in zip(input_shape[1:3], kernel_shape[:2], strides, padding))
    return out_pixels <= MAX_DOT_OUTPUT_PIXELS


def conv_by_dots(x: jax.Array, kernel: jax.Array, strides, padding, precision=None) -> jax.Array:
    """A zero-padded NHWC convolution (HWIO kernel, no dilation, no groups) as one matrix product
    per output pixel: the in-map part of the pixel's window, flattened, times the kernel taps that
    land on it, flattened alike. The taps that land on padding are never multiplied, so a 3×3
    stride-1 kernel on a 1×1 map is its centre tap as a dense layer, and a stride-2 one from 2×2
    to 1×1 uses its 4 lower-right taps.

    Why: on maps smaller than the kernel XLA:CPU runs convolutions far below its matrix-product
    rate, and at one lane it swaps the operands of their backward convolutions (examples become
    features), which then take most of a ResNet-18 step. Slices, reshapes and products
    differentiate into the same, so the backward pass has no convolution either."""
    n = x.shape[0]
    kh, kw, _, out_channels = kernel.shape
    rows = window_spans(x.shape[1], kh, strides[0], tuple(padding[0]))
    cols = window_spans(x.shape[2], kw, strides[1], tuple(padding[1]))
    pixels = []
    for i, ti, nh in rows:
        for j, tj, nw in cols:
            if nh == 0 or nw == 0:  # the whole window on padding
                pixels.append(jnp.zeros((n, out_channels), jnp.result_type(x, kernel)))
                continue
            patch = x[:, i:i + nh, j:j + nw, :].reshape(n, -1)
            taps = kernel[ti:ti + nh, tj:tj + nw].reshape(-1, out_channels)
            pixels.append(jnp.dot(patch, taps, precision=precision))
    return jnp.stack(pixels, axis=1).reshape(n, len(rows), len(cols), out_channels)


def uses_patches(input_shape, kernel_shape, strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count: int = 1) -> bool:
    """Whether :func:`conv_general_dilated` computes this convolution on CPU by
    :func:`conv_by_patches`: a plain NHWC/HWIO convolution of a single input channel (the stem of a
    grey-scale image) whose output map is larger than :func:`conv_by_dots` takes."""
    return (is_plain(input_shape, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
            and input_shape[3] == 1
            and not uses_dots(input_shape, kernel_shape, strides, padding, lhs_dilation, rhs_dilation,
                              dimension_numbers, feature_group_count))


def conv_by_patches(x: jax.Array, kernel: jax.Array, strides, padding, precision=None) -> jax.Array:
    """A zero-padded NHWC convolution of one input channel (HWIO kernel ``[kh, kw, 1, out]``, no
    dilation, no groups) as one matrix product: the kernel's taps, flattened to ``[out, kh·kw]``,
    times the kh·kw strided views of the padded image stacked as ``[kh·kw, examples·pixels]``.

    Why: XLA:CPU runs a convolution whose contraction is one channel wide far below its
    matrix-product rate (a 7×7 stride-2 stem on 28×28×1 images: about a sixth of a width-1/8
    ResNet-18 step), while the product's contraction is the kh·kw taps. The views are slices, so
    the product differentiates into products and pads; the kernel's gradient is the patches
    times the output's gradient."""
    kh, kw, _, out_channels = kernel.shape
    image = jnp.pad(x[..., 0], ((0, 0), tuple(padding[0]), tuple(padding[1])))
    n, height, width = image.shape
    out_h, out_w = (height - kh) // strides[0] + 1, (width - kw) // strides[1] + 1
    views = [jax.lax.slice(image, (0, i, j), (n, i + strides[0] * (out_h - 1) + 1, j + strides[1] * (out_w - 1) + 1),
                           (1, strides[0], strides[1]))
             for i in range(kh) for j in range(kw)]
    patches = jnp.stack(views).reshape(kh * kw, n * out_h * out_w)
    out = jnp.dot(kernel.reshape(kh * kw, out_channels).T, patches.astype(jnp.result_type(x, kernel)),
                  precision=precision)
    return out.reshape(out_channels, n, out_h, out_w).transpose(1, 2, 3, 0)


def uses_space_to_depth(input_shape, kernel_shape, strides, padding, lhs_dilation=None, rhs_dilation=None,
                        dimension_numbers=None, feature_group_count: int = 1) -> bool:
    """Whether :func:`conv_general_dilated` computes this convolution on CPU by
    :func:`conv_by_space_to_depth`: a plain NHWC/HWIO stride-2 convolution of 2 to 4 input
    channels (the stem of a colour image; below width 1/8 also a block's first convolution) whose
    output map is larger than :func:`conv_by_dots` takes."""
    return (is_plain(input_shape, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count)
            and 2 <= input_shape[3] <= 4 and tuple(strides) == (2, 2)
            and not uses_dots(input_shape, kernel_shape, strides, padding, lhs_dilation, rhs_dilation,
                              dimension_numbers, feature_group_count))


def conv_by_space_to_depth(x: jax.Array, kernel: jax.Array, padding, precision=None) -> jax.Array:
    """A zero-padded stride-2 NHWC convolution (HWIO kernel, no dilation, no groups) as a stride-1
    one over 2×2 pixel blocks: the padded image's blocks folded into 4·C channels, the kernel
    zero-padded to even sides and folded alike (tap (2a + p, 2b + q) of channel c becomes tap
    (a, b) of channel (p, q, c)), and the output cut to the convolution's size.

    Why: XLA:CPU's convolution contracts over the input channels in its innermost loop, which for
    the 3 channels of a colour image's stem runs far below its matrix-product rate; the folded
    convolution contracts over 12 and takes a quarter of the kernel positions."""
    n, height, width, channels = x.shape
    kh, kw, _, out_channels = kernel.shape
    out_h = (height + sum(padding[0]) - kh) // 2 + 1
    out_w = (width + sum(padding[1]) - kw) // 2 + 1
    kh2, kw2 = -(-kh // 2), -(-kw // 2)  # the folded kernel's sides
    rows, cols = 2 * (out_h - 1 + kh2), 2 * (out_w - 1 + kw2)  # even, and every tap's reach
    zero = jnp.zeros((), x.dtype)  # lax.pad: a negative high padding cuts rows no output reads
    padded = jax.lax.pad(x, zero, ((0, 0, 0), (padding[0][0], rows - height - padding[0][0], 0),
                                   (padding[1][0], cols - width - padding[1][0], 0), (0, 0, 0)))
    blocks = padded.reshape(n, rows // 2, 2, cols // 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
    blocks = blocks.reshape(n, rows // 2, cols // 2, 4 * channels)
    folded = jnp.pad(kernel, ((0, 2 * kh2 - kh), (0, 2 * kw2 - kw), (0, 0), (0, 0)))
    folded = folded.reshape(kh2, 2, kw2, 2, channels, out_channels).transpose(0, 2, 1, 3, 4, 5)
    folded = folded.reshape(kh2, kw2, 4 * channels, out_channels)
    return canonical_conv.conv(blocks, folded, (1, 1), ((0, 0), (0, 0)), precision)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """``lax.conv_general_dilated``, by :func:`conv_by_dots` where :func:`uses_dots` says so
    (small output maps); on CPU by :func:`conv_by_patches` where :func:`uses_patches` says so (one
    input channel), by :func:`conv_by_space_to_depth` where :func:`uses_space_to_depth` says so
    (a colour stem) and by :func:`canonical_conv.conv` (whose gradients XLA:CPU runs fast inside a
    scan) for the other plain NHWC convolutions; by the convolution otherwise (GPU and TPU
    compilers lay out every convolution themselves). ``nnx.Conv`` calls it in its place."""
    plain = is_plain(lhs.shape, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count) \
        and all(v is None for v in kwargs.values())
    if plain and uses_dots(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                           dimension_numbers, feature_group_count):
        return conv_by_dots(lhs, rhs, window_strides, padding, precision)
    if plain and jax.default_backend() == "cpu":
        if uses_patches(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                        dimension_numbers, feature_group_count):
            return conv_by_patches(lhs, rhs, window_strides, padding, precision)
        if uses_space_to_depth(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation,
                               dimension_numbers, feature_group_count):
            return conv_by_space_to_depth(lhs, rhs, padding, precision)
        return canonical_conv.conv(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)), precision)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)


def conv(in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, *,
         init: str = "torch", dtype=None, rngs: nnx.Rngs) -> nnx.Conv:
    """``nn.Conv2d(in, out, kernel, stride, padding, bias=False)`` in NHWC; small output maps
    are computed as matrix products (:func:`conv_general_dilated`), the same function."""
    return nnx.Conv(in_channels, out_channels, (kernel, kernel), (stride, stride),
                    padding=((padding, padding), (padding, padding)), use_bias=False,
                    dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=conv_kernel_init(init, in_channels, out_channels, kernel),
                    conv_general_dilated=conv_general_dilated, rngs=rngs)


# --------------------------------------------------------------------------- max-pool
def _window_taps(padded: jax.Array, window: int, stride: int, out_size: tuple[int, int]) -> list[jax.Array]:
    """The ``window²`` strided views of an NHWC map, tap (i, j) at ``i * window + j``: view
    ``[n, a, b, c] = padded[n, i + stride·a, j + stride·b, c]``."""
    n, _, _, c = padded.shape
    return [jax.lax.slice(padded, (0, i, j, 0),
                          (n, i + stride * (out_size[0] - 1) + 1, j + stride * (out_size[1] - 1) + 1, c),
                          (1, stride, stride, 1))
            for i in range(window) for j in range(window)]


def _pool_fwd(x, window, stride, padding):
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
    out_size = tuple((padded.shape[k] - window) // stride + 1 for k in (1, 2))
    out = functools.reduce(jnp.maximum, _window_taps(padded, window, stride, out_size))
    return out, (padded, out)


def _pool_bwd(window, stride, padding, residuals, g):
    padded, out = residuals
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(out.shape, bool)
    grad = jnp.zeros(padded.shape, g.dtype)
    for t, tap in enumerate(_window_taps(padded, window, stride, out.shape[1:3])):
        i, j = divmod(t, window)
        first = (tap == out) & ~taken  # the first tap in row-major order that holds the max
        taken = taken | first
        spread = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]  # each output back onto its input pixel
        for axis, offset in ((1, i), (2, j)):
            used = stride * (out.shape[axis] - 1) + 1
            spread[axis] = (offset, padded.shape[axis] - offset - used, stride - 1)
        grad = grad + jax.lax.pad(jnp.where(first, g, zero), zero, spread)
    return (grad[:, padding:padded.shape[1] - padding, padding:padded.shape[2] - padding],)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """``nn.MaxPool2d(window, stride, padding)`` on NHWC: padding is -inf, so it never wins;
    the gradient goes to the first input of each window that holds the max (row-major), as
    PyTorch's and XLA's ``select_and_scatter`` do.

    Why not ``nnx.max_pool``: XLA:CPU differentiates a ``reduce_window`` max into an argmax
    ``reduce_window`` over index arrays and a ``select_and_scatter``, which took a fifth of a
    width-1/8 ResNet-18 step; here the forward is ``window²`` strided slices and maxima, the
    backward ``window²`` compares and interior-padded adds, all elementwise."""
    return _pool_fwd(x, window, stride, padding)[0]


max_pool.defvjp(_pool_fwd, _pool_bwd)


# --------------------------------------------------------------------------- blocks
class Downsample(nnx.Module):
    """The projection shortcut: 1×1 conv with stride (no bias) → BatchNorm."""

    def __init__(self, in_channels, out_channels, stride, *, init, dtype, bn_momentum, bn_epsilon, rngs):
        self.conv = conv(in_channels, out_channels, 1, stride, 0, init=init, dtype=dtype, rngs=rngs)
        self.bn = BatchNorm(out_channels, momentum=bn_momentum, epsilon=bn_epsilon)

    def __call__(self, x, train: bool, mask=None):
        return self.bn(self.conv(x), train, mask)


class BasicBlock(nnx.Module):
    """3×3 conv → BN → ReLU → 3×3 conv → BN, + shortcut, → ReLU (torchvision's BasicBlock)."""

    def __init__(self, in_channels, out_channels, stride, *, init="torch", dtype=None,
                 bn_momentum=0.1, bn_epsilon=1e-5, rngs: nnx.Rngs):
        bn = {"momentum": bn_momentum, "epsilon": bn_epsilon}
        self.conv1 = conv(in_channels, out_channels, 3, stride, 1, init=init, dtype=dtype, rngs=rngs)
        self.bn1 = BatchNorm(out_channels, **bn)
        self.conv2 = conv(out_channels, out_channels, 3, 1, 1, init=init, dtype=dtype, rngs=rngs)
        self.bn2 = BatchNorm(out_channels, **bn)
        if stride != 1 or in_channels != out_channels:
            self.downsample = Downsample(in_channels, out_channels, stride, init=init, dtype=dtype,
                                         bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
        else:
            self.downsample = None

    def activations(self, x, train: bool, mask=None):
        """(inner, out): the post-ReLU activation after conv1/bn1 and the block output."""
        inner = nnx.relu(self.bn1(self.conv1(x), train, mask))
        h = self.bn2(self.conv2(inner), train, mask)
        shortcut = x if self.downsample is None else self.downsample(x, train, mask)
        return inner, nnx.relu(h + shortcut.astype(h.dtype))

    def __call__(self, x, train: bool, mask=None):
        return self.activations(x, train, mask)[1]


# --------------------------------------------------------------------------- ResNet-18
class ResNet18(nnx.Module):
    """ResNet-18; ``model(x, train)`` -> float32 logits [N, num_classes] for NHWC inputs.

    Attribute names follow torchvision (``conv1``, ``bn1``, ``layer1``…``layer4`` holding
    ``BasicBlock``s, ``fc``), so per-layer code (ReDo, L2 on ndim>1) and weight ports read alike.
    ``train`` selects batch statistics (and updates the running ones) or running statistics.
    """

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, width_multiplier: float = 1.0,
                 cifar_stem: bool = False, init: str = "torch", dtype=None, bn_momentum: float = 0.1,
                 bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}.")
        widths = [scaled_width(w, width_multiplier) for w in WIDTHS]
        common = {"init": init, "dtype": dtype, "rngs": rngs}
        bn = {"momentum": bn_momentum, "epsilon": bn_epsilon}
        if cifar_stem:
            self.conv1 = conv(in_channels, widths[0], 3, 1, 1, **common)
        else:
            self.conv1 = conv(in_channels, widths[0], 7, 2, 3, **common)
        self.bn1 = BatchNorm(widths[0], **bn)
        stages = []
        channels = widths[0]
        for i, (width, blocks) in enumerate(zip(widths, BLOCKS_PER_STAGE)):
            stage = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(BasicBlock(channels, width, stride, bn_momentum=bn_momentum,
                                        bn_epsilon=bn_epsilon, **common))
                channels = width
            stages.append(nnx.List(stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = torch_linear(channels, num_classes, rngs=rngs)  # float32, U(±1/√fan_in) in both inits
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.cifar_stem = cifar_stem
        self.init = init
        self.dtype = dtype

    @property
    def blocks(self) -> list[tuple[str, BasicBlock]]:
        """(torchvision name, block) in forward order: ``layer1.0`` … ``layer4.1``."""
        return [(f"layer{i + 1}.{j}", block)
                for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4))
                for j, block in enumerate(stage)]

    def _stem(self, x, train: bool, mask=None):
        if self.dtype is not None:
            x = x.astype(self.dtype)
        h = nnx.relu(self.bn1(self.conv1(x), train, mask))
        pre_pool = h
        if not self.cifar_stem:  # nn.MaxPool2d(3, 2, padding=1)
            h = max_pool(h, 3, 2, 1)
        return pre_pool, h

    def activation_maps(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> dict[str, jax.Array]:
        """Every post-ReLU activation [N, H, W, C] in forward order: ``stem`` (before the
        max-pool), then per block ``layerI.J.relu1`` (after conv1/bn1) and ``layerI.J`` (output)."""
        stem, h = self._stem(x, train, mask)
        maps = {"stem": stem}
        for name, block in self.blocks:
            inner, h = block.activations(h, train, mask)
            maps[f"{name}.relu1"] = inner
            maps[name] = h
        return maps

    def feature_maps(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> list[jax.Array]:
        """The 8 block outputs (post-ReLU) [N, H, W, C], in forward order."""
        _, h = self._stem(x, train, mask)
        out = []
        for _, block in self.blocks:
            h = block(h, train, mask)
            out.append(h)
        return out

    def features(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> list[jax.Array]:
        """The 8 block outputs averaged over space, float32 [N, C] each (diagnostics' convention:
        one [N, units] array per layer, a unit = a conv filter, as ReDo scores conv filters).
        The last one is the head's input (the globally pooled layer4 output)."""
        return [_global_pool(h) for h in self.feature_maps(x, train, mask)]

    def logits_and_unit_features(self, x: jax.Array, train: bool,
                                 mask: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """Logits and every block's inner map ``layerI.J.relu1`` [N, H, W, C] from one forward
        pass: the units of ReDo and continual backprop (:func:`unit_layers`, a
        unit = a conv1 filter, its activity averaged over the batch and space)."""
        _, h = self._stem(x, train, mask)
        inner_maps = []
        for _, block in self.blocks:
            inner, h = block.activations(h, train, mask)
            inner_maps.append(inner)
        return self.fc(_global_pool(h)), inner_maps

    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> jax.Array:
        _, h = self._stem(x, train, mask)
        for _, block in self.blocks:
            h = block(h, train, mask)
        return self.fc(_global_pool(h))


def _global_pool(h: jax.Array) -> jax.Array:
    return h.astype(jnp.float32).mean(axis=(1, 2))


def unit_layers(params) -> tuple[UnitLayer, ...]:
    """The inner units of every ``BasicBlock``: the filters of ``conv1`` (with ``bn1``'s γ, β),
    whose outgoing weights are ``conv2``'s input channels; in the order of the
    ``layerI.J.relu1`` maps of :meth:`ResNet18.logits_and_unit_features`. (Block outputs feed a
    residual sum, so they have no single outgoing kernel to zero; the BatchNorm running
    statistics are not parameters and are left to the caller.)"""
    leaves = leaf_dict(params)
    layers = []
    for stage in range(1, 5):
        j = 0
        while f"layer{stage}/{j}/conv1/kernel" in leaves:
            block = f"layer{stage}/{j}"
            layers.append(UnitLayer(kernel=f"{block}/conv1/kernel", out_kernel=f"{block}/conv2/kernel",
                                    norm_scale=f"{block}/bn1/scale", norm_bias=f"{block}/bn1/bias"))
            j += 1
    if not layers:
        raise ValueError("no 'layer<i>/<j>/conv1/kernel' leaves: not a ResNet18")
    return tuple(layers)


# --------------------------------------------------------------------------- functional use
def split(model: nnx.Module):
    """``(graphdef, params, batch_stats)``; ``nnx.merge(graphdef, params, batch_stats)`` undoes it."""
    return nnx.split(model, nnx.Param, nnx.BatchStat)


def apply(graphdef: nnx.GraphDef, params: Any, batch_stats: Any, x: jax.Array, *, train: bool,
          mask: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """Pure forward: ``(logits, new_batch_stats)``. In eval mode the stats come back unchanged.

    Differentiable in ``params`` (use ``has_aux`` for the stats); ``vmap`` it over lanes with
    ``params`` and ``batch_stats`` mapped, and every lane keeps its own running statistics.
    """
    model = nnx.merge(graphdef, params, batch_stats, copy=True)
    logits = model(x, train, mask)
    return logits, nnx.state(model, nnx.BatchStat)


def forward_macs(height: int = 32, width: int = 32, *, num_classes: int = 10, in_channels: int = 3,
                 width_multiplier: float = 1.0, cifar_stem: bool = False) -> int:
    """Multiply-accumulates of one example's forward pass through the convs and the head
    (BN, ReLU, pooling and additions, a few percent, left out). FLOPs ≈ 2 × MACs; a training
    step (forward + backward) ≈ 3 × the forward's FLOPs."""
    def out(size, k, s, p):
        return (size + 2 * p - k) // s + 1

    widths = [scaled_width(w, width_multiplier) for w in WIDTHS]
    k, s, p = (3, 1, 1) if cifar_stem else (7, 2, 3)
    h, w = out(height, k, s, p), out(width, k, s, p)
    macs = h * w * widths[0] * in_channels * k * k
    if not cifar_stem:
        h, w = out(h, 3, 2, 1), out(w, 3, 2, 1)
    channels = widths[0]
    for i, (width_i, blocks) in enumerate(zip(widths, BLOCKS_PER_STAGE)):
        for j in range(blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            h, w = out(h, 3, stride, 1), out(w, 3, stride, 1)
            macs += h * w * width_i * channels * 9 + h * w * width_i * width_i * 9
            if stride != 1 or channels != width_i:
                macs += h * w * width_i * channels
            channels = width_i
    return macs + channels * num_classes
