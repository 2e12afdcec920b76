"""Continual backprop (Dohare et al., 2024, Nature: "Loss of plasticity in deep continual
learning"), generate-and-test with maturity-threshold replacement.

Per hidden unit: a contribution utility ``u ← η·u + (1-η)·mean_batch|h|·Σ_k|w_out,k|`` (read
with Adam-style bias correction ``u / (1 - η^age)``) and an age. Every step, in every layer:
ages += 1; ``rate × #(units with age > maturity)`` is added to a per-layer accumulator; its
integer part ``k`` is taken out and the ``k`` mature units of lowest corrected utility are
replaced (incoming weights redrawn, bias zeroed by default as in Dohare et al., LayerNorm γ/β to
1/0, outgoing weights zeroed, their Adam moments zeroed, age and utility set to 0).
``rate = 0`` is off: nothing is replaced and params/opt_state are returned bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from gradual_jax.models.paths import leaf_dict
from gradual_jax.mitigations.unit_reset import lowest_k, outgoing_magnitude, reset_units, resolve_layers, unit_activity
from gradual_jax.models.init import InitFn, torch_uniform
from gradual_jax.models.units import UnitLayer


@struct.dataclass
class CBPLayerState:
    utility: jax.Array  # float32 [units], running (uncorrected) contribution utility
    age: jax.Array  # int32 [units], steps since the unit was (re)initialised
    accumulator: jax.Array  # float32 scalar, fractional replacements carried over


def cbp_init(params, layers: Sequence[UnitLayer] | None = None) -> tuple[CBPLayerState, ...]:
    layers = resolve_layers(params, layers)
    leaves = leaf_dict(params)
    out = []
    for layer in layers:
        n = leaves[layer.kernel].shape[-1]
        out.append(CBPLayerState(utility=jnp.zeros((n,), jnp.float32), age=jnp.zeros((n,), jnp.int32),
                                 accumulator=jnp.zeros((), jnp.float32)))
    return tuple(out)


def _layer_update(state: CBPLayerState, h, out_kernel, layer: UnitLayer, *, rate, maturity, decay, valid):
    age = state.age + 1
    contribution = (unit_activity(h, layer.copies, valid) * outgoing_magnitude(out_kernel, layer.copies)).sum(0)
    decay = jnp.asarray(decay, jnp.float32)
    utility = decay * state.utility + (1.0 - decay) * contribution
    correction = 1.0 - jnp.power(decay, age.astype(jnp.float32))
    corrected = utility / jnp.where(correction > 0, correction, 1.0)
    mature = age.astype(jnp.float32) > maturity
    accumulator = state.accumulator + jnp.asarray(rate, jnp.float32) * mature.sum()
    k = jnp.floor(accumulator)
    accumulator = accumulator - k
    replace = lowest_k(corrected, mature, k.astype(jnp.int32))
    new = CBPLayerState(utility=jnp.where(replace, 0.0, utility), age=jnp.where(replace, 0, age),
                        accumulator=accumulator)
    return new, replace


def cbp_step(params, opt_state, state: Sequence[CBPLayerState], features: Sequence[jax.Array], key: jax.Array, *,
             rate, maturity, decay, optimizer: optax.GradientTransformation | None = None,
             layers: Sequence[UnitLayer] | None = None, init_fn: InitFn = torch_uniform, reset_bias: str = "zero",
             valid: jax.Array | None = None):
    """One generate-and-test step, after the optimizer update of the step whose forward pass
    gave ``features`` (post-activation, one array per unit layer). The utility uses the
    current (updated) outgoing weights, as Dohare et al. do.

    ``rate`` (replacement rate ρ), ``maturity`` (threshold m, in steps) and ``decay`` (η) may
    be traced per-lane scalars. Returns ``(params, opt_state, state, masks)``.
    """
    layers = resolve_layers(params, layers)
    if len(features) != len(layers) or len(state) != len(layers):
        raise ValueError(f"{len(features)} feature arrays and {len(state)} CBP states for {len(layers)} unit layers")
    leaves = leaf_dict(params)
    new_state, masks = [], []
    for s, h, layer in zip(state, features, layers):
        ns, mask = _layer_update(s, h, leaves[layer.out_kernel], layer, rate=rate, maturity=maturity,
                                 decay=decay, valid=valid)
        new_state.append(ns)
        masks.append(mask)
    params, opt_state = reset_units(params, opt_state, masks, key, layers, optimizer=optimizer,
                                    init_fn=init_fn, reset_bias=reset_bias)
    return params, opt_state, tuple(new_state), tuple(masks)
