"""Losses and metrics shared by the engine and the tests (one place for each definition)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mixed_targets(y_old: jax.Array, y_new: jax.Array, mix, num_classes: int) -> jax.Array:
    """Soft targets ``target_old·onehot(y_old) + target_new·onehot(y_new) + target_uniform/C``.

    Each row sums to ``target_old + target_new + target_uniform``, which every schedule
    keeps at 1 (see :mod:`gradual_jax.schedules`).
    """
    def col(w):
        return w[:, None]

    return (col(mix.target_old) * jax.nn.one_hot(y_old, num_classes)
            + col(mix.target_new) * jax.nn.one_hot(y_new, num_classes)
            + col(mix.target_uniform) / num_classes)


def masked_mean(values: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean over the real examples of a padded batch (PyTorch's mean over a short last batch)."""
    return jnp.where(valid, values, 0.0).sum() / jnp.maximum(valid.sum(), 1)
