"""ReDo (Sokar et al., 2023): recycle dormant units every N steps.

A unit's score is :func:`redo_scores` of its post-activation features (mean |h| over the batch
divided by the layer's mean; the diagnostics count dormant units by the same score); it is
dormant when its score is ``<= threshold``. At most ``floor(max_fraction · units)`` units of a layer are reset, the
lowest scores first; a reset is :func:`gradual_jax.mitigations.unit_reset.reset_units` (incoming
weights redrawn, LayerNorm γ/β to 1/0, outgoing weights and the Adam moments of all of those
zeroed). ``threshold <= 0`` switches ReDo off for a lane (nothing is ever reset), so lanes with
and without ReDo share one program; ``threshold`` and ``max_fraction`` may be traced.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from gradual_jax.mitigations.unit_reset import lowest_k, reset_units, resolve_layers, unit_activity
from gradual_jax.models.init import InitFn, torch_uniform
from gradual_jax.models.units import UnitLayer


def redo_scores(features: Sequence[jax.Array]) -> list[jax.Array]:
    """ReDo's normalised unit scores, one ``[units]`` array per layer (Sokar et al., 2023).

    A unit's score is its mean |activation| over the inputs (``[N, units]`` per layer) divided
    by the mean of that quantity over the layer's units, so it is comparable across layers of
    different scale. A layer whose units are all silent has mean 0: its scores are defined as 0
    (all dormant) instead of 0/0.
    """
    def layer(h):
        s = jnp.mean(jnp.abs(h), axis=0)
        mean = jnp.mean(s)
        return s / jnp.where(mean > 0, mean, 1.0)

    return [layer(h) for h in features]


def should_apply(steps_done, every: int, after: int = 0):
    """True when ReDo runs after an update: ``steps_done`` optimizer updates have been made
    (1-based: pass the 0-based step index + 1), it is a multiple of ``every`` and more than
    ``after`` (the released code: ``step > 1000 and step % 1000 == 0``). ``every <= 0``: never.
    ``every`` and ``after`` are static; ``steps_done`` may be traced."""
    if every <= 0:
        return jnp.zeros((), bool)
    steps_done = jnp.asarray(steps_done)
    return (steps_done % every == 0) & (steps_done > after)


def layer_scores(features: Sequence[jax.Array], layers: Sequence[UnitLayer], *, normalize: bool = True,
                 valid: jax.Array | None = None) -> list[jax.Array]:
    """One ``[units]`` score array per layer.

    ``normalize=True``: ReDo's normalised score, by :func:`redo_scores` (features
    are ``[N, units]``; for CReLU the two halves of a unit are summed first). ``False``: the raw
    mean |activation| (the released code's T5 variant, absolute threshold 1e-4).
    """
    scores = []
    for h, layer in zip(features, layers):
        if normalize and layer.copies == 1 and valid is None:
            scores.append(redo_scores([h.reshape(-1, h.shape[-1])])[0])
            continue
        activity = unit_activity(h, layer.copies, valid).sum(0)  # [units]
        scores.append(scores_from_activity(activity, normalize=normalize))
    return scores


def scores_from_activity(activity: jax.Array, *, normalize: bool = True) -> jax.Array:
    """Score of one layer from its per-unit mean |activation| ``[units]`` (e.g. accumulated over
    many steps): :func:`redo_scores` of it as a one-row feature matrix, or the raw
    activity with ``normalize=False``."""
    return redo_scores([activity[None]])[0] if normalize else activity


def redo_select(scores: jax.Array, threshold, max_fraction) -> jax.Array:
    """Units to reset in one layer: dormant (``score <= threshold``, and ``threshold > 0``),
    at most ``floor(max_fraction · units)`` of them, lowest scores first."""
    n = scores.shape[0]
    dormant = (scores <= threshold) & (threshold > 0)
    cap = jnp.floor(jnp.asarray(max_fraction, jnp.float32) * n).astype(jnp.int32)
    return lowest_k(scores, dormant, cap)


def redo_reset(params, opt_state, features: Sequence[jax.Array], key: jax.Array, *, threshold, max_fraction,
               optimizer: optax.GradientTransformation | None = None, layers: Sequence[UnitLayer] | None = None,
               init_fn: InitFn = torch_uniform, reset_bias: str = "init", normalize: bool = True,
               valid: jax.Array | None = None):
    """One ReDo pass. ``features[i]`` are the post-activation features of unit layer ``i``
    (``MLP.features(x)``: ``[N, units]``), ``layers`` default to the MLP's
    (:func:`gradual_jax.models.mlp.unit_layers`).

    Returns ``(params, opt_state, masks)``, ``masks`` a tuple of ``[units]`` bool arrays: the
    units reset in each layer.
    """
    layers = resolve_layers(params, layers)
    if len(features) != len(layers):
        raise ValueError(f"{len(features)} feature arrays for {len(layers)} unit layers")
    scores = layer_scores(features, layers, normalize=normalize, valid=valid)
    return redo_reset_scored(params, opt_state, scores, key, threshold=threshold, max_fraction=max_fraction,
                             optimizer=optimizer, layers=layers, init_fn=init_fn, reset_bias=reset_bias)


def redo_reset_scored(params, opt_state, scores: Sequence[jax.Array], key: jax.Array, *, threshold, max_fraction,
                      optimizer: optax.GradientTransformation | None = None,
                      layers: Sequence[UnitLayer] | None = None, init_fn: InitFn = torch_uniform,
                      reset_bias: str = "init"):
    """:func:`redo_reset` from precomputed per-layer scores (``[units]`` each)."""
    layers = resolve_layers(params, layers)
    masks = tuple(redo_select(s, threshold, max_fraction) for s in scores)
    params, opt_state = reset_units(params, opt_state, masks, key, layers, optimizer=optimizer,
                                    init_fn=init_fn, reset_bias=reset_bias)
    return params, opt_state, masks
