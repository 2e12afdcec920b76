"""CReLU (Shang et al., 2016; used against loss of plasticity by Abbas et al., 2023): ``crelu(x) = [relu(x), relu(-x)]``.

:class:`CReLUMLP` is :class:`gradual_jax.models.MLP` with CReLU in place of ReLU:
Flatten → [Linear → LayerNorm → CReLU] × L → Linear. The widths given are the
*pre-activation* widths (the Linear's outputs and the LayerNorm's size); CReLU doubles them,
so each following Linear has fan-in 2·w (and is initialised U(±1/√(2w)), PyTorch's default).

Parameter count, inputs d, widths w_1..w_L, C classes (f_1 = d, f_l = 2·w_{l-1}):

    Σ_l (f_l·w_l + w_l)  +  Σ_l 2·w_l  +  2·w_L·C + C
    (Linear weights+biases)  (LayerNorm γ, β)   (head)

For the paper's 784-256×4-10: 200,960 + 3·131,328 + 2,048 + 5,130 = 602,122 parameters, against
the ReLU MLP's 402,954 (1.49×): the hidden-to-hidden and head matrices double. With
``halve_widths=True`` (w/2 pre-activation units, so every layer's *output* width and every
fan-in equal the ReLU MLP's): 100,480 + 3·32,896 + 1,024 + 2,570 = 202,762 (0.50×). Neither
matches the parameter count; the default keeps the number of pre-activation units (and
LayerNorm sizes), ``halve_widths`` keeps the representation width. Nothing is halved unless
asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.models.mlp import torch_linear


def crelu(x: jax.Array) -> jax.Array:
    """Concatenated ReLU along the last axis: ``[relu(x), relu(-x)]`` (width doubles)."""
    return jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)], axis=-1)


def crelu_widths(hidden_sizes: Sequence[int], halve_widths: bool) -> list[int]:
    if not halve_widths:
        return list(hidden_sizes)
    odd = [w for w in hidden_sizes if w % 2]
    if odd:
        raise ValueError(f"halve_widths needs even widths, got {list(hidden_sizes)}")
    return [w // 2 for w in hidden_sizes]


class CReLUMLP(nnx.Module):
    """Flatten → [Linear → LayerNorm → CReLU] × len(hidden) → Linear (same constructor as
    :class:`gradual_jax.models.MLP`, plus ``halve_widths``)."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 halve_widths: bool = False):
        widths = crelu_widths(hidden_sizes, halve_widths)
        fan_ins = [in_features] + [2 * w for w in widths[:-1]]
        self.hidden = nnx.List([torch_linear(a, b, rngs=rngs) for a, b in zip(fan_ins, widths)])
        self.norms = nnx.List([nnx.LayerNorm(b, epsilon=1e-5, rngs=rngs) for b in widths])
        self.head = torch_linear(2 * widths[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> list[jax.Array]:
        """Post-CReLU activations of every hidden layer, ``[N, 2·w_l]`` (unit j of layer l is
        columns j and w_l + j)."""
        h = x.reshape(x.shape[0], -1)
        out = []
        for linear, norm in zip(self.hidden, self.norms):
            h = crelu(norm(linear(h)))
            out.append(h)
        return out

    def logits_and_unit_features(self, x: jax.Array, train: bool = False,
                                 mask: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        features = self.features(x)
        return self.head(features[-1]), features

    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        return self.head(self.features(x)[-1])
