"""Shrink & Perturb (Ash & Adams, 2020): θ ← shrink·θ + noise_scale·ε, ε ~ N(0, I)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shrink_perturb(params, key: jax.Array, shrink, noise_scale):
    """Every leaf (weights, biases, norm parameters) becomes ``shrink·θ + noise_scale·ε``.

    ``shrink`` and ``noise_scale`` may be traced per-lane scalars. ``ε`` is one standard-normal
    draw from ``key`` for all parameters together (cut into the leaves in flattening order), so
    a fixed key gives the same noise. With ``noise_scale == 0`` the result is exactly
    ``shrink·θ`` (no ``+ 0·ε``), so ``shrink = 1, noise_scale = 0`` returns the parameters bit
    for bit.
    """
    leaves, treedef = jax.tree.flatten(params)
    sizes = [x.size for x in leaves]
    eps = jax.random.normal(key, (sum(sizes),), jnp.float32)
    out, start = [], 0
    for size, x in zip(sizes, leaves):
        e = eps[start:start + size].reshape(x.shape).astype(x.dtype)
        start += size
        scaled = jnp.asarray(shrink, x.dtype) * x
        noisy = scaled + jnp.asarray(noise_scale, x.dtype) * e
        out.append(jnp.where(noise_scale != 0, noisy, scaled))
    return jax.tree.unflatten(treedef, out)
