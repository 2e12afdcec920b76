"""Models, written in Flax NNX and used functionally (``nnx.split`` / ``nnx.merge``)."""

from gradual_jax.models.mlp import MLP, torch_linear

__all__ = ["MLP", "torch_linear"]
