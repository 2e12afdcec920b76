"""An NHWC/HWIO convolution whose gradients are NHWC/HWIO convolutions too.

Why: XLA:CPU runs a convolution through its fast (Eigen) kernel only in the canonical layout,
input ``b01f``, kernel ``01io``, output ``b01f``. JAX differentiates a convolution into
convolutions with permuted dimension numbers (the kernel gradient treats the examples as
features, ``f01b_i01o->01bf``; the input gradient swaps the kernel's in and out, ``01oi``), and
XLA:CPU's canonicalisation pass, which rewrites those into transposes around canonical ones,
visits only the top-level computation. Inside a ``lax.scan`` — every step of a training run —
they stay permuted and run through XLA's generic loop emitter: a ResNet-18 step took about
2.7 times as long in a scan as on its own. :func:`conv` writes the two gradient convolutions
canonically, on explicitly transposed operands, so the scan body runs the fast kernel. The
formulas are JAX's own transpose rules (``jax/_src/lax/convolution.py``) with the operands
moved instead of the dimension numbers; the values are the same to rounding.

The kernel's gradient contracts over the examples in chunks of at most
:data:`KERNEL_GRADIENT_EXAMPLES`, one convolution each, summed. XLA:CPU runs a convolution with a
small output and a long contraction — a kernel's gradient: taps × channels out, examples × pixels
contracted — on one thread (the colour stem's took 6.5 ms on one core and 6.8 ms on two); the
chunks are independent convolutions, which its runtime runs side by side.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

NHWC_HWIO = ("NHWC", "HWIO", "NHWC")

Padding = tuple[tuple[int, int], tuple[int, int]]

#: The most examples one kernel-gradient convolution contracts over (see the module's docstring).
KERNEL_GRADIENT_EXAMPLES = 32


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding, precision=None) -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, strides, padding)`` for NHWC ``x`` and an HWIO
    ``kernel`` (explicit padding, no dilation, no groups), with canonical gradients."""
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=NHWC_HWIO, precision=precision)


def _forward(x, kernel, strides, padding, precision):
    return conv(x, kernel, strides, padding, precision), (x, kernel)


def input_gradient_padding(size: int, kernel: int, stride: int, padding: tuple[int, int], out: int) -> tuple[int, int]:
    """Along one axis, the padding of the stride-dilated output gradient that the flipped kernel
    slides over to give the input gradient (negative where the last inputs reach no window)."""
    before = kernel - 1 - padding[0]
    return before, size + kernel - 1 - ((out - 1) * stride + 1) - before


def kernel_gradient_padding(size: int, kernel: int, stride: int, padding: tuple[int, int], out: int) -> tuple[int, int]:
    """Along one axis, the padding of the input that the stride-dilated output gradient slides
    over to give the kernel gradient (``kernel`` positions)."""
    return padding[0], (out - 1) * stride + kernel - size - padding[0]


def _backward(strides, padding, precision, residuals, g):
    x, kernel = residuals
    sizes, taps, outs = x.shape[1:3], kernel.shape[:2], g.shape[1:3]
    axes = list(zip(sizes, taps, strides, padding, outs))
    # input gradient: the output gradient, dilated by the strides, through the flipped kernel
    # with its in and out channels swapped
    flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2)).astype(g.dtype)
    dx = lax.conv_general_dilated(g, flipped, (1, 1), [input_gradient_padding(*a) for a in axes],
                                  lhs_dilation=strides, dimension_numbers=NHWC_HWIO, precision=precision)
    dk = kernel_gradient(x, g.astype(x.dtype), strides, [kernel_gradient_padding(*a) for a in axes], precision)
    return dx.astype(x.dtype), jnp.transpose(dk, (1, 2, 0, 3)).astype(kernel.dtype)


def example_chunks(examples: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of consecutive chunks of at most ``size`` examples covering ``examples``."""
    return [(start, min(start + size, examples)) for start in range(0, examples, size)]


def kernel_gradient(x: jax.Array, g: jax.Array, strides, padding, precision) -> jax.Array:
    """The kernel's gradient in ``IHWO`` order: for each chunk of examples (:data:`KERNEL_GRADIENT_EXAMPLES`)
    a convolution with the input's channels as the batch and its examples as the features, the
    output gradient (dilated by the strides) as the kernel; the chunks' results summed."""
    total = None
    for start, stop in example_chunks(x.shape[0], KERNEL_GRADIENT_EXAMPLES):
        part = lax.conv_general_dilated(jnp.transpose(x[start:stop], (3, 1, 2, 0)),
                                        jnp.transpose(g[start:stop], (1, 2, 0, 3)), (1, 1), padding,
                                        rhs_dilation=strides, dimension_numbers=NHWC_HWIO, precision=precision)
        total = part if total is None else total + part
    return total


conv.defvjp(_forward, _backward)
