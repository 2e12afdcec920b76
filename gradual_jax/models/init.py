"""Initialisers shared by the models and by the mitigations that redraw units.

The paper's networks are PyTorch's, so their layers start as PyTorch's do: ``nn.Linear`` and
``nn.Conv2d`` draw weights and biases from U(±1/√fan_in) (kaiming_uniform with a = √5 reduces
to exactly this bound). ReDo and continual backprop redraw a unit from the same distribution
its layer was drawn from, so they take these functions too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

# (key, shape, dtype, fan_in) -> array: how a redrawn unit's incoming weights are drawn
InitFn = Callable[[jax.Array, tuple[int, ...], jnp.dtype, int], jax.Array]


def uniform(bound: float):
    """A flax initialiser drawing from U(±bound)."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def normal(std: float):
    """A flax initialiser drawing from N(0, std²)."""
    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def torch_uniform(key: jax.Array, shape, dtype, fan_in: int) -> jax.Array:
    """PyTorch's default Linear/Conv weights and biases: U(±1/√fan_in)."""
    return uniform(1.0 / math.sqrt(fan_in))(key, shape, dtype)


def normal_fan_in(key: jax.Array, shape, dtype, fan_in: int) -> jax.Array:
    """N(0, 1/fan_in): the T5 FFN input projection's init (std d_model^-½)."""
    return jax.random.normal(key, shape, dtype) / math.sqrt(fan_in)


def torch_linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """``nn.Linear`` with PyTorch's default init: weight and bias ~ U(±1/√fan_in)."""
    bound = 1.0 / math.sqrt(in_features)
    return nnx.Linear(in_features, out_features, kernel_init=uniform(bound), bias_init=uniform(bound), rngs=rngs)
