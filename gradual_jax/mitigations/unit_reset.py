"""Hidden units and their re-initialisation, shared by ReDo and continual backprop.

Each model says where its units are (:class:`gradual_jax.models.units.UnitLayer`). Resetting
unit j redraws its incoming kernel column and bias from the layer's init distribution
(``init_fn``; PyTorch's U(±1/√fan_in) by default), sets its LayerNorm γ, β back to 1, 0,
zeroes its outgoing kernel rows, and zeroes the optimizer moments (Adam's ``mu`` and
``nu``) of all those entries. The moments are reached with ``optax.tree_utils.tree_map_params``,
which maps over every parameter-shaped tree of an optimizer state (``adam``, ``adamw``,
``inject_hyperparams`` ...), never by walking optax internals. Units not reset, and everything
else, are left bit for bit: all updates are ``where(mask, new, old)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from gradual_jax.models import mlp
from gradual_jax.models.init import InitFn, torch_uniform
from gradual_jax.models.paths import leaf_dict, map_named, path_tree
from gradual_jax.models.units import UnitLayer


def resolve_layers(params, layers: Sequence[UnitLayer] | None) -> tuple[UnitLayer, ...]:
    return tuple(layers) if layers is not None else mlp.unit_layers(params)


def num_units(params, layer: UnitLayer) -> int:
    return leaf_dict(params)[layer.kernel].shape[-1]


# --------------------------------------------------------------------------- activity
def unit_activity(h: jax.Array, copies: int = 1, valid: jax.Array | None = None) -> jax.Array:
    """Mean |activation| of each unit over all leading axes: ``[copies, units]``.

    ``h`` is ``[..., units·copies]``; ``valid`` (optional, bool, shaped like a prefix of
    ``h.shape[:-1]``) leaves out padded rows.
    """
    a = jnp.abs(h)
    if valid is None:
        mean = a.reshape(-1, a.shape[-1]).mean(0)
    else:
        w = valid.reshape(valid.shape + (1,) * (a.ndim - 1 - valid.ndim))
        w = jnp.broadcast_to(w, a.shape[:-1]).astype(a.dtype)
        mean = (a * w[..., None]).reshape(-1, a.shape[-1]).sum(0) / jnp.maximum(w.sum(), 1.0)
    return mean.reshape(copies, -1)


def outgoing_magnitude(out_kernel: jax.Array, copies: int = 1) -> jax.Array:
    """Σ|w_out| over each row of the outgoing kernel (units on axis -2): ``[copies, units]``."""
    rows = jnp.moveaxis(out_kernel, -2, 0)
    return jnp.abs(rows.reshape(rows.shape[0], -1)).sum(1).reshape(copies, -1)


# --------------------------------------------------------------------------- reset
def _where(mask, new, old):
    return jnp.where(mask, jnp.asarray(new, old.dtype), old)


def reset_units(params, opt_state, masks: Sequence[jax.Array], key: jax.Array, layers: Sequence[UnitLayer], *,
                optimizer: optax.GradientTransformation | None = None, init_fn: InitFn = torch_uniform,
                reset_bias: str = "init"):
    """Re-initialise the units selected by ``masks`` (one ``[units]`` bool array per layer).

    ``reset_bias``: ``"init"`` redraws the bias from ``init_fn`` like the kernel; ``"zero"``
    sets it to 0 (Dohare et al.'s and the released code's choice). Where a reset unit's
    outgoing row crosses the redrawn incoming column of a reset unit of the next layer, the
    zero wins (outgoing weights of reset units are always exactly 0).

    ``opt_state`` may be ``None`` (parameters only); otherwise ``optimizer`` must be the
    optimizer that made it (only its ``init`` is used, to locate the moments).
    Returns ``(params, opt_state)``.
    """
    if reset_bias not in ("init", "zero"):
        raise ValueError(f"reset_bias must be 'init' or 'zero', got {reset_bias!r}")
    if opt_state is not None and optimizer is None:
        raise ValueError("reset_units needs the optimizer to reach the moments inside opt_state")
    leaves = leaf_dict(params)
    incoming: dict[str, list] = {}  # name -> [fn(old) -> new], applied first
    outgoing: dict[str, list] = {}  # name -> [fn(old) -> new], applied last
    moment_masks: dict[str, list] = {}  # name -> [bool mask broadcastable to the leaf]
    keys = jax.random.split(key, max(len(layers), 1))
    for layer, mask, k in zip(layers, masks, keys):
        w = leaves[layer.kernel]
        fan_in, units = math.prod(w.shape[:-1]), w.shape[-1]
        redraw_bias = layer.bias is not None and reset_bias == "init"
        # one draw per layer: the kernel's fan_in rows, plus one row for the bias if redrawn
        new = init_fn(k, (fan_in + int(redraw_bias), units), w.dtype, fan_in)
        new_w = new[:fan_in].reshape(w.shape)
        incoming.setdefault(layer.kernel, []).append(functools.partial(_where, mask, new_w))
        moment_masks.setdefault(layer.kernel, []).append(mask)
        if layer.bias is not None:
            b = leaves[layer.bias]
            new_b = new[fan_in].astype(b.dtype) if redraw_bias else jnp.zeros_like(b)
            incoming.setdefault(layer.bias, []).append(functools.partial(_where, mask, new_b))
            moment_masks.setdefault(layer.bias, []).append(mask)
        for name, value in ((layer.norm_scale, 1.0), (layer.norm_bias, 0.0)):
            if name is not None:
                incoming.setdefault(name, []).append(functools.partial(_where, mask, value))
                moment_masks.setdefault(name, []).append(mask)
        rows = jnp.tile(mask, layer.copies)[:, None]  # [rows, 1] against [..., rows, fan_out]
        outgoing.setdefault(layer.out_kernel, []).append(functools.partial(_where, rows, 0.0))
        moment_masks.setdefault(layer.out_kernel, []).append(rows)

    def update_param(name, x):
        for fn in incoming.get(name, []) + outgoing.get(name, []):
            x = fn(x)
        return x

    params = map_named(update_param, params)
    if opt_state is None:
        return params, None

    union = {name: functools.reduce(jnp.logical_or, ms) for name, ms in moment_masks.items()}

    def update_moment(m, name):
        return _where(union[name], 0.0, m) if name in union else m

    opt_state = optax.tree_utils.tree_map_params(optimizer, update_moment, opt_state, path_tree(params))
    return params, opt_state


def lowest_k(scores: jax.Array, candidate: jax.Array, k) -> jax.Array:
    """Mask of the (at most) ``k`` candidates with the lowest scores (ties: lower index first).
    ``k`` may be traced; shapes stay static."""
    n = scores.shape[0]
    order = jnp.lexsort((scores, jnp.logical_not(candidate)))  # candidates first, then by score
    rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
    return candidate & (rank < k)
