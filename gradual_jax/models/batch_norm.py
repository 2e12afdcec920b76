"""BatchNorm with PyTorch's semantics, and its training-mode normalisation with a closed-form gradient.

:class:`BatchNorm` follows ``torch.nn.BatchNorm2d``, not ``nnx.BatchNorm``: ``nnx.BatchNorm``
updates the running variance with the *biased* batch variance, PyTorch with the *unbiased* one
(n/(n-1)·var, n = examples × pixels). Training normalises with the batch mean and biased batch
variance and updates running = (1 - 0.1)·running + 0.1·batch (PyTorch's momentum convention:
``momentum=0.1`` here is flax's 0.9); evaluation normalises with the running statistics.
eps = 1e-5, γ = 1, β = 0, running mean 0, running variance 1.

:func:`normalize` is the training-mode arithmetic as one differentiable function whose backward
pass is the textbook one (two per-channel sums and one elementwise pass), where differentiating
the two-pass formula step by step gives XLA a chain of reductions and broadcasts to run: on
XLA:CPU it is about twice as fast, forward and backward, at the ResNet's map sizes.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx


def mask_weights(x: jax.Array, mask: jax.Array | None) -> jax.Array | None:
    """``mask`` ([N] bool) as float32 weights broadcastable against ``x`` ([N, ..., C])."""
    if mask is None:
        return None
    return mask.astype(jnp.float32).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def count(x: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Values per channel that enter the statistics: the examples kept × the pixels of each."""
    if weights is None:
        return jnp.float32(math.prod(x.shape[:-1]))
    return weights.sum() * (math.prod(x.shape[:-1]) // weights.size)


def channel_sum(x: jax.Array) -> jax.Array:
    """The sum over every axis but the last (the channels), as XLA's reduction.

    One function for BatchNorm's four sums. On XLA:CPU a product with a vector of ones runs
    1.5–2.5 times as fast at the ResNet's map sizes but accumulates in float32 rows at a time:
    about 1e-5 from the exact sum of 64,000 values, relatively, where the reduction's tree is
    within 1e-6 (``benchmarks/archive/resnet_ab.py``, ``--change channel-sums-as-dots``)."""
    return x.sum(tuple(range(x.ndim - 1)))


def _forward(x, scale, bias, weights, epsilon):
    n = jnp.maximum(count(x, weights), 1.0)
    if weights is None:
        mean = channel_sum(x) / n
        centred = x - mean
        var = channel_sum(jnp.square(centred)) / n
    else:  # two passes, as without a mask, over the kept examples only
        mean = channel_sum(x * weights) / n
        centred = x - mean
        var = channel_sum(jnp.square(centred) * weights) / n
    inv_std = jax.lax.rsqrt(var + epsilon)
    normalized = centred * inv_std
    return (normalized * scale + bias, mean, var), (normalized, inv_std, scale, weights, n)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, weights: jax.Array | None,
              epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BatchNorm over the last axis: ``(y, mean, var)`` with ``y = (x - mean) /
    sqrt(var + epsilon) · scale + bias`` and the batch mean and *biased* variance per channel,
    taken over the examples whose ``weights`` are 1 (all of them when ``weights`` is None);
    every example is normalised. float32 in, float32 out.

    The gradient, with x̂ the normalised input, r = 1/sqrt(var + ε), n the count and w the
    weights: ∂x = γ·r·(g - w·(Σg + x̂·Σg·x̂)/n) (+ the mean's and variance's own cotangents),
    ∂γ = Σg·x̂, ∂β = Σg, the sums over every example."""
    return _forward(x, scale, bias, weights, epsilon)[0]


def _normalize_bwd(epsilon, residuals, cotangents):
    normalized, inv_std, scale, weights, n = residuals
    g, g_mean, g_var = cotangents
    g_bias = channel_sum(g)
    g_scale = channel_sum(g * normalized)
    kept = 1.0 if weights is None else weights
    # the mean's and the variance's own cotangents (zero where, as in BatchNorm, they are only
    # stored): ∂mean/∂x = w/n, ∂var/∂x = 2·w·(x - mean)/n
    direct = g_mean + 2.0 * g_var * normalized / inv_std
    g_x = scale * inv_std * (g - kept * (g_bias + normalized * g_scale) / n) + kept * direct / n
    g_weights = None if weights is None else jnp.zeros_like(weights)
    return g_x, g_scale, g_bias, g_weights


normalize.defvjp(lambda x, scale, bias, weights, epsilon: _forward(x, scale, bias, weights, epsilon),
                 _normalize_bwd)


class BatchNorm(nnx.Module):
    """``torch.nn.BatchNorm2d`` over the last (channel) axis of NHWC (or NC) inputs.

    Parameters ``scale`` (γ, 1) and ``bias`` (β, 0) are ``nnx.Param``; ``mean`` (0) and
    ``var`` (1) are ``nnx.BatchStat``. ``momentum`` uses PyTorch's convention (the weight of the
    new batch statistic). Statistics are computed in float32 by two passes (the mean, then the
    mean squared deviation); the output has the input's dtype unless ``dtype`` is given.
    ``mask`` ([N] bool, optional) leaves padded examples out of the batch statistics.
    """

    def __init__(self, num_features: int, *, momentum: float = 0.1, epsilon: float = 1e-5, dtype=None):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        self.num_features = num_features
        self.momentum = momentum
        self.epsilon = epsilon
        self.dtype = dtype

    def __call__(self, x: jax.Array, train: bool, mask: jax.Array | None = None) -> jax.Array:
        out_dtype = self.dtype or x.dtype
        x32 = x.astype(jnp.float32)
        if not train:
            inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * self.scale[...]
            return ((x32 - self.mean[...]) * inv + self.bias[...]).astype(out_dtype)
        weights = mask_weights(x32, mask)
        y, mean, var = normalize(x32, self.scale[...], self.bias[...], weights, self.epsilon)
        n = count(x32, weights)
        unbiased = var * n / jnp.maximum(n - 1.0, 1.0)
        m = self.momentum
        self.mean[...] = (1.0 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
        self.var[...] = (1.0 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
        return y.astype(out_dtype)
