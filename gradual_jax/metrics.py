"""Soft targets shared by the image and text problems (one place for the definition)."""

from __future__ import annotations

import jax


def mixed_targets(y_old: jax.Array, y_new: jax.Array, mix, num_classes: int) -> jax.Array:
    """Soft targets ``target_old·onehot(y_old) + target_new·onehot(y_new) + target_uniform/C``.

    Each row sums to ``target_old + target_new + target_uniform``, which every schedule
    keeps at 1 (see :mod:`gradual_jax.envs.schedules`).
    """
    def col(w):
        return w[:, None]

    return (col(mix.target_old) * jax.nn.one_hot(y_old, num_classes)
            + col(mix.target_new) * jax.nn.one_hot(y_new, num_classes)
            + col(mix.target_uniform) / num_classes)

