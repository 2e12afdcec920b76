"""Hidden units and their re-initialisation, shared by ReDo and continual backprop.

A *unit layer* names, by leaf path, the parameters that belong to one layer's hidden units:

* ``kernel``: the incoming kernel, units on its **last** axis (``[fan_in, units]``, or a conv
  kernel ``[kh, kw, in, units]``; fan-in is the product of the other axes);
* ``bias``: the incoming bias ``[units]`` (optional);
* ``norm_scale`` / ``norm_bias``: the LayerNorm γ, β of the units (optional);
* ``out_kernel``: the next layer's kernel, units on axis **-2** (``[units·copies, fan_out]``).
  ``copies`` is 2 for CReLU, whose unit j feeds rows j and j + units.

Resetting unit j redraws its incoming kernel column and bias from the layer's init
distribution (``init_fn``; PyTorch's U(±1/√fan_in) by default), sets its LayerNorm γ, β back to
1, 0, zeroes its outgoing kernel rows, and zeroes the optimizer moments (Adam's ``mu`` and
``nu``) of all those entries. The moments are reached with ``optax.tree_utils.tree_map_params``,
which maps over every parameter-shaped tree of an optimizer state (``inject_hyperparams``,
``adam``, ``adamw`` ...), never by walking optax internals. Units not reset, and everything
else, are left bit for bit: all updates are ``where(mask, new, old)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from gradual_jax.mitigations._paths import leaf_dict, map_named, path_tree

InitFn = Callable[[jax.Array, tuple[int, ...], jnp.dtype, int], jax.Array]


def torch_uniform(key: jax.Array, shape, dtype, fan_in: int) -> jax.Array:
    """PyTorch's default Linear/Conv init for weights and biases: U(±1/√fan_in)
    (the same as :func:`gradual_jax.models.mlp.torch_linear`)."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def normal_fan_in(key: jax.Array, shape, dtype, fan_in: int) -> jax.Array:
    """N(0, 1/fan_in): the T5 FFN input projection's init (std d_model^-½)."""
    return jax.random.normal(key, shape, dtype) / math.sqrt(fan_in)


@dataclasses.dataclass(frozen=True)
class UnitLayer:
    kernel: str
    out_kernel: str
    bias: str | None = None
    norm_scale: str | None = None
    norm_bias: str | None = None
    copies: int = 1


def mlp_unit_layers(params) -> tuple[UnitLayer, ...]:
    """The unit layers of :class:`gradual_jax.models.MLP` (and of the CReLU MLP: ``copies``
    is read off the shapes): ``hidden/i`` → ``norms/i`` → next ``hidden/i+1`` or ``head``."""
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


def t5_unit_layers(params) -> tuple[UnitLayer, ...]:
    """The FFN units of :class:`gradual_jax.models.t5.T5` (``ffn/wi`` → ``ffn/wo``, no bias,
    no norm), encoder layers then decoder layers: the order of ``T5.ffn_activations``."""
    leaves = leaf_dict(params)
    layers = []
    for stack in ("encoder_layers", "decoder_layers"):
        i = 0
        while f"{stack}/{i}/ffn/wi/kernel" in leaves:
            layers.append(UnitLayer(kernel=f"{stack}/{i}/ffn/wi/kernel", out_kernel=f"{stack}/{i}/ffn/wo/kernel"))
            i += 1
    if not layers:
        raise ValueError("no '<stack>_layers/<i>/ffn/wi/kernel' leaves: not a T5")
    return tuple(layers)


def resnet_unit_layers(params) -> tuple[UnitLayer, ...]:
    """The inner units of every ``BasicBlock`` of :class:`gradual_jax.models.resnet.ResNet18`:
    the filters of ``conv1`` (with ``bn1``'s γ, β), whose outgoing weights are ``conv2``'s input
    channels; in the order of the ``layerI.J.relu1`` maps of ``ResNet18.activation_maps``.
    (Block outputs feed a residual sum, so they have no single outgoing kernel to zero; the
    BatchNorm running statistics are not parameters and are left to the caller.)"""
    leaves = leaf_dict(params)
    layers = []
    for stage in range(1, 5):
        j = 0
        while f"layer{stage}/{j}/conv1/kernel" in leaves:
            block = f"layer{stage}/{j}"
            layers.append(UnitLayer(kernel=f"{block}/conv1/kernel", out_kernel=f"{block}/conv2/kernel",
                                    norm_scale=f"{block}/bn1/scale", norm_bias=f"{block}/bn1/bias"))
            j += 1
    if not layers:
        raise ValueError("no 'layer<i>/<j>/conv1/kernel' leaves: not a ResNet18")
    return tuple(layers)


def resolve_layers(params, layers: Sequence[UnitLayer] | None) -> tuple[UnitLayer, ...]:
    return tuple(layers) if layers is not None else mlp_unit_layers(params)


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
