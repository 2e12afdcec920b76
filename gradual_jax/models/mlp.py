"""The LayerNorm MLP of the paper's MNIST/EMNIST experiments, initialised like PyTorch, with
ReLU or CReLU units.

CReLU (Shang et al., 2016; used against loss of plasticity by Abbas et al., 2023) is
``crelu(x) = [relu(x), relu(-x)]``: each layer's output width doubles. The widths given are the
*pre-activation* widths (the Linear's outputs and the LayerNorm's size), so each following
Linear has fan-in 2·w (and is initialised U(±1/√(2w)), PyTorch's default). For the paper's
784-256×4-10 that is 602,122 parameters against the ReLU MLP's 402,954 (1.49×): the
hidden-to-hidden and head matrices double.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.models.init import torch_linear
from gradual_jax.models.units import UnitLayer
from gradual_jax.models.paths import leaf_dict


def crelu(x: jax.Array) -> jax.Array:
    """Concatenated ReLU along the last axis: ``[relu(x), relu(-x)]`` (width doubles)."""
    return jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)], axis=-1)


ACTIVATIONS = {"relu": jax.nn.relu, "crelu": crelu}
COPIES = {"relu": 1, "crelu": 2}  # output columns per pre-activation unit


class MLP(nnx.Module):
    """Flatten → [Linear → LayerNorm → activation] × len(hidden) → Linear.

    LayerNorm uses PyTorch's eps = 1e-5 and γ = 1, β = 0 at init.
    """

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 activation: str = "relu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        copies = COPIES[activation]
        fan_ins = [in_features] + [copies * w for w in hidden_sizes[:-1]]
        self.hidden = nnx.List([torch_linear(a, b, rngs=rngs) for a, b in zip(fan_ins, hidden_sizes)])
        self.norms = nnx.List([nnx.LayerNorm(b, epsilon=1e-5, rngs=rngs) for b in hidden_sizes])
        self.head = torch_linear(copies * hidden_sizes[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> list[jax.Array]:
        """Post-activation outputs of every hidden layer (for diagnostics and ReDo); with CReLU,
        ``[N, 2·w_l]``, unit j of layer l being columns j and w_l + j.

        ``train`` and ``mask`` are the engine's uniform model interface (they matter for
        models with batch statistics); the MLP behaves the same in both modes.
        """
        act = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], -1)
        out = []
        for linear, norm in zip(self.hidden, self.norms):
            h = act(norm(linear(h)))
            out.append(h)
        return out

    def logits_and_unit_features(self, x: jax.Array, train: bool = False,
                                 mask: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """Logits and the hidden features from one forward pass (what ReDo and continual
        backprop read during a training step)."""
        features = self.features(x)
        return self.head(features[-1]), features

    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        return self.head(self.features(x)[-1])


def unit_layers(params) -> tuple[UnitLayer, ...]:
    """The unit layers of :class:`MLP` (``copies`` is read off the shapes, 2 with CReLU):
    ``hidden/i`` → ``norms/i`` → next ``hidden/i+1`` or ``head``."""
    leaves = leaf_dict(params)
    layers = []
    i = 0
    while f"hidden/{i}/kernel" in leaves:
        out = f"hidden/{i + 1}/kernel" if f"hidden/{i + 1}/kernel" in leaves else "head/kernel"
        if out not in leaves:
            raise ValueError("parameters look like an MLP but have no 'head/kernel'")
        units = leaves[f"hidden/{i}/kernel"].shape[-1]
        rows = leaves[out].shape[-2]
        if rows % units:
            raise ValueError(f"{out} has {rows} rows, not a multiple of the {units} units of hidden/{i}")

        def opt(name):
            return name if name in leaves else None

        layers.append(UnitLayer(kernel=f"hidden/{i}/kernel", out_kernel=out, bias=opt(f"hidden/{i}/bias"),
                                norm_scale=opt(f"norms/{i}/scale"), norm_bias=opt(f"norms/{i}/bias"),
                                copies=rows // units))
        i += 1
    if not layers:
        raise ValueError("no 'hidden/<i>/kernel' leaves: pass unit layers explicitly for this model")
    return tuple(layers)
