"""The LayerNorm MLP of the paper's MNIST/EMNIST experiments, initialised like PyTorch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax import nnx


def _uniform(bound: float):
    def init(key, shape, dtype=jax.numpy.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_linear(in_features: int, out_features: int, *, rngs: nnx.Rngs) -> nnx.Linear:
    """``nn.Linear`` with PyTorch's default init: weight and bias ~ U(±1/√fan_in).

    (PyTorch's kaiming_uniform with a=√5 reduces to exactly this bound.)
    """
    bound = 1.0 / math.sqrt(in_features)
    return nnx.Linear(in_features, out_features, kernel_init=_uniform(bound),
                      bias_init=_uniform(bound), rngs=rngs)


class MLP(nnx.Module):
    """Flatten → [Linear → LayerNorm → ReLU] × len(hidden) → Linear.

    LayerNorm uses PyTorch's eps = 1e-5 and γ = 1, β = 0 at init.
    """

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
        sizes = [in_features, *hidden_sizes]
        self.hidden = nnx.List([torch_linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List([nnx.LayerNorm(b, epsilon=1e-5, rngs=rngs) for b in hidden_sizes])
        self.head = torch_linear(sizes[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> list[jax.Array]:
        """Post-ReLU activations of every hidden layer (for diagnostics and ReDo).

        ``train`` and ``mask`` are the engine's uniform model interface (they matter for
        models with batch statistics); the MLP behaves the same in both modes.
        """
        h = x.reshape(x.shape[0], -1)
        out = []
        for linear, norm in zip(self.hidden, self.norms):
            h = nnx.relu(norm(linear(h)))
            out.append(h)
        return out

    def logits_and_unit_features(self, x: jax.Array, train: bool = False,
                                 mask: jax.Array | None = None) -> tuple[jax.Array, list[jax.Array]]:
        """Logits and the hidden features from one forward pass (what ReDo and continual
        backprop read during a training step)."""
        features = self.features(x)
        return self.head(features[-1]), features

    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for linear, norm in zip(self.hidden, self.norms):
            h = nnx.relu(norm(linear(h)))
        return self.head(h)
