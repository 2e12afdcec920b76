"""The engine-facing API: per-lane numbers, a static description, and four calls.

* :class:`MitigationHParams`: per-lane strengths (a pytree of float32 scalars, given a lane
  axis and ``vmap``-ed like ``engine.LaneHParams``). Every method's "off" value is an exact
  no-op: ``l2 = l2_init = spectral = 0``, ``shrink = 1, perturb = 0``,
  ``redo_threshold <= 0``, ``cbp_rate = 0``; a hooked method's lanes carry its numbers and
  whether they use it (:class:`~gradual_jax.mitigations.hooks.CustomLane`).
* :class:`MitigationStructure`: static structure: which methods the compiled program contains
  (the union over its lanes), periods, targets, which layers, the hooked methods. Hashable.
* :func:`init_state` → :class:`MState` (spectral power-iteration vectors, CBP utilities/ages,
  ReDo counters); :func:`loss_terms` (add to the loss, inside ``value_and_grad``);
  :func:`after_step` (after the optimizer update: CBP every step, ReDo every N steps, then the
  hooked methods' ``after_update``); :func:`at_task_boundary` (Shrink & Perturb, and the hooked
  methods' ``at_boundary`` after each task's readout).

The paper's strengths per model live with the experiments (``experiments/``), as
``MitigationsConfig`` values; ``gradual_jax.runner.sweep`` turns them into these numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from gradual_jax.mitigations import cbp as cbp_lib
from gradual_jax.mitigations import hooks as hooks_lib
from gradual_jax.mitigations import redo as redo_lib
from gradual_jax.mitigations import regularizers as reg
from gradual_jax.mitigations.shrink_perturb import shrink_perturb
from gradual_jax.mitigations.unit_reset import resolve_layers
from gradual_jax.models.init import InitFn, torch_uniform
from gradual_jax.models.units import UnitLayer

_OFF = {"l2": 0.0, "l2_init": 0.0, "spectral": 0.0, "shrink": 1.0, "perturb": 0.0, "redo_threshold": 0.0,
        "redo_max_fraction": 0.05, "cbp_rate": 0.0, "cbp_maturity": 100.0, "cbp_decay": 0.99}


@struct.dataclass
class MitigationHParams:
    """Per-lane numbers (float32 scalars; ``[lanes]`` once stacked)."""

    l2: jax.Array  # L2 strength
    l2_init: jax.Array  # L2-init strength
    spectral: jax.Array  # spectral-regulariser strength
    shrink: jax.Array  # Shrink & Perturb: θ ← shrink·θ + perturb·ε (1, 0 = off)
    perturb: jax.Array
    redo_threshold: jax.Array  # ReDo: dormant if score <= threshold (<= 0 = off)
    redo_max_fraction: jax.Array  # ReDo: at most floor(fraction·units) resets per layer
    cbp_rate: jax.Array  # continual backprop replacement rate ρ (0 = off)
    cbp_maturity: jax.Array  # CBP maturity threshold m, in steps
    cbp_decay: jax.Array  # CBP utility decay η
    # the hooked methods compiled into the program, by name (empty without any: no leaves)
    custom: dict[str, hooks_lib.CustomLane] = struct.field(default_factory=dict)

    @classmethod
    def create(cls, custom: Mapping[str, hooks_lib.CustomLane] | None = None, **values: float) -> MitigationHParams:
        """One lane, every method off unless given (see the field comments)."""
        unknown = set(values) - set(_OFF)
        if unknown:
            raise TypeError(f"unknown mitigation hyperparameters {sorted(unknown)}; known: {sorted(_OFF)}")
        return cls(**{k: jnp.asarray(values.get(k, v), jnp.float32) for k, v in _OFF.items()},
                   custom=dict(custom or {}))

    @classmethod
    def stack(cls, lanes: Sequence[MitigationHParams]) -> MitigationHParams:
        """A lane axis from per-lane values."""
        return jax.tree.map(lambda *xs: jnp.stack(xs), *lanes)


@dataclasses.dataclass(frozen=True)
class MitigationStructure:
    """Static structure. A method is compiled in only when enabled here; lanes that do not use
    it then set its strength to the "off" value. Defaults: nothing enabled (a no-op)."""

    l2: bool = False
    l2_kernels_only: bool = False  # ResNet variant: Σ‖W‖² over ndim > 1 leaves only
    l2_init: bool = False  # needs the lane's initial parameters (pass them to loss_terms)
    spectral: bool = False
    spectral_target: str = "init"  # "init": σ₀ = σ_max at init; "one": σ₀ = 1
    spectral_bias_l2: bool = True  # MLP variant: + Σ‖b‖² (inside the strength)
    spectral_exclude: tuple[str, ...] = reg.DEFAULT_EXCLUDE  # leaf-name substrings left out
    shrink_perturb: bool = False
    shrink_perturb_at: str = "after"  # "after" each task, or "before" each task (task 0 included)
    redo_every: int = 0  # ReDo period in optimizer steps (0: ReDo not compiled in)
    redo_after: int = 0  # ReDo runs only once more than this many steps were made
    redo_normalize: bool = True  # False: raw mean activation as the score (T5 variant)
    cbp: bool = False
    unit_layers: tuple[UnitLayer, ...] | None = None  # None: the MLP's (models.mlp.unit_layers)
    init_fn: InitFn = torch_uniform  # distribution of redrawn incoming weights (ReDo, CBP)
    custom: tuple[tuple[str, hooks_lib.Hooks], ...] = ()  # the hooked methods compiled in, in registry order

    def __post_init__(self):
        choices = {"spectral_target": ("init", "one"), "shrink_perturb_at": ("after", "before")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"MitigationStructure.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.redo_every < 0 or self.redo_after < 0:
            raise ValueError("redo_every and redo_after must be >= 0")

    @property
    def redo(self) -> bool:
        return self.redo_every > 0

    @property
    def needs_features(self) -> bool:
        """Whether :func:`after_step` needs the step's post-activation features."""
        return self.redo or self.cbp

    @property
    def needs_init_params(self) -> bool:
        """Whether :func:`loss_terms` needs the lane's initial parameters."""
        return self.l2_init

    def acts_at(self, at: str) -> bool:
        """Whether :func:`at_task_boundary` does anything ``"before"`` or ``"after"`` a task."""
        return ((self.shrink_perturb and self.shrink_perturb_at == at)
                or (at == "after" and hooks_lib.uses_boundary(self.custom)))


@struct.dataclass
class MState:
    """Per-lane mitigation state (absent parts are ``None``)."""

    spectral: tuple[reg.SpectralVectors, ...] | None = None
    cbp: tuple[cbp_lib.CBPLayerState, ...] | None = None
    redo_resets: jax.Array | None = None  # int32 [unit layers]: units reset by ReDo so far
    cbp_replacements: jax.Array | None = None  # int32 [unit layers]: units replaced by CBP so far


def init_state(params, static: MitigationStructure) -> MState:
    """The lane's mitigation state at initialisation (call on the initial parameters)."""
    state = MState()
    if static.spectral:
        state = state.replace(spectral=reg.spectral_init(params, exclude=static.spectral_exclude))
    if static.needs_features:
        layers = resolve_layers(params, static.unit_layers)
        counts = jnp.zeros((len(layers),), jnp.int32)
        if static.cbp:
            state = state.replace(cbp=cbp_lib.cbp_init(params, layers), cbp_replacements=counts)
        if static.redo:
            state = state.replace(redo_resets=counts)
    return state


def loss_terms(params, init_params, mstate: MState, mhp: MitigationHParams,
               static: MitigationStructure) -> tuple[jax.Array, MState]:
    """Σ of the enabled loss terms, and the state with the spectral vectors advanced.

    Call inside the loss function under ``value_and_grad`` and return the new state as aux.
    ``init_params`` is needed only when ``static.l2_init`` (else may be ``None``).
    """
    total = jnp.zeros((), jnp.float32)
    if static.l2:
        total = total + reg.l2(params, mhp.l2, kernels_only=static.l2_kernels_only)
    if static.l2_init:
        if init_params is None:
            raise ValueError("MitigationStructure.l2_init is on: loss_terms needs the lane's initial parameters")
        total = total + reg.l2_init(params, init_params, mhp.l2_init)
    if static.spectral:
        term, vectors = reg.spectral(params, mstate.spectral, mhp.spectral, target=static.spectral_target,
                                     bias_l2=static.spectral_bias_l2, exclude=static.spectral_exclude)
        total = total + term
        mstate = mstate.replace(spectral=vectors)
    if static.custom:
        total = total + hooks_lib.penalty(params, static.custom, mhp.custom)
    return total, mstate


def _counts(masks) -> jax.Array:
    return jnp.stack([m.sum().astype(jnp.int32) for m in masks])


def after_step(params, opt_state, mstate: MState, features: Sequence[jax.Array] | None, step, key: jax.Array,
               mhp: MitigationHParams, static: MitigationStructure, *,
               optimizer: optax.GradientTransformation | None = None, valid: jax.Array | None = None):
    """Continual backprop (every step), ReDo (when :func:`redo.should_apply`), then the hooked
    methods' ``after_update``, after the optimizer update of step ``step`` (0-based, counted over
    the lane's whole run, not per task).

    ``features``: post-activation features of the step's forward pass, one array per unit layer
    (``model.logits_and_unit_features``: the step's own forward pass); ``valid``: the batch's mask of real
    rows. ``optimizer``: the lane's optimizer (used only to locate Adam's moments).
    Returns ``(params, opt_state, mstate)``; with every strength off they are the inputs bit
    for bit (apart from CBP's ages/utilities, which always advance).
    """
    if static.needs_features:
        params, opt_state, mstate = _unit_resets(params, opt_state, mstate, features, step, key, mhp, static,
                                                 optimizer=optimizer, valid=valid)
    if static.custom:
        params = hooks_lib.after_update(params, static.custom, mhp.custom, key)
    return params, opt_state, mstate


def _unit_resets(params, opt_state, mstate: MState, features, step, key: jax.Array, mhp: MitigationHParams,
                 static: MitigationStructure, *, optimizer, valid):
    """Continual backprop, then ReDo when due: the methods that replace units."""
    if features is None:
        raise ValueError("after_step needs the step's features when ReDo or continual backprop is on")
    layers = resolve_layers(params, static.unit_layers)
    features = list(features)
    if static.cbp:
        params, opt_state, cbp_state, masks = cbp_lib.cbp_step(
            params, opt_state, mstate.cbp, features, jax.random.fold_in(key, 0), rate=mhp.cbp_rate,
            maturity=mhp.cbp_maturity, decay=mhp.cbp_decay, optimizer=optimizer, layers=layers,
            init_fn=static.init_fn, valid=valid)
        mstate = mstate.replace(cbp=cbp_state, cbp_replacements=mstate.cbp_replacements + _counts(masks))
    if static.redo:
        redo_key = jax.random.fold_in(key, 1)

        def reset(operand):
            params, opt_state, mstate = operand
            scores = redo_lib.layer_scores(features, layers, normalize=static.redo_normalize, valid=valid)
            params, opt_state, masks = redo_lib.redo_reset_scored(
                params, opt_state, scores, redo_key, threshold=mhp.redo_threshold,
                max_fraction=mhp.redo_max_fraction, optimizer=optimizer, layers=layers, init_fn=static.init_fn)
            return params, opt_state, mstate.replace(redo_resets=mstate.redo_resets + _counts(masks))

        apply = redo_lib.should_apply(jnp.asarray(step) + 1, static.redo_every, static.redo_after)
        params, opt_state, mstate = jax.lax.cond(apply, reset, lambda operand: operand, (params, opt_state, mstate))
    return params, opt_state, mstate


def at_task_boundary(params, key: jax.Array, mhp: MitigationHParams, static: MitigationStructure, *,
                     at: str | None = None):
    """What acts at a task boundary: Shrink & Perturb (``static.shrink_perturb_at``) and the
    hooked methods' ``at_boundary`` (after each task's readout). The engine calls it with ``at``
    ``"before"`` each task's training and ``"after"`` its readout, where :meth:`~MitigationStructure.acts_at`
    says it acts; ``at=None`` applies everything compiled in."""
    if static.shrink_perturb and at in (None, static.shrink_perturb_at):
        params = shrink_perturb(params, key, mhp.shrink, mhp.perturb)
    if static.custom and at in (None, "after"):
        params = hooks_lib.at_boundary(params, static.custom, mhp.custom, key)
    return params


def check_lanes(static: MitigationStructure, mhp: MitigationHParams) -> None:
    """Host-side check that every lane's nonzero strength belongs to a compiled-in method."""
    v = {k: np.atleast_1d(np.asarray(getattr(mhp, k))) for k in _OFF}
    used = {
        "l2": bool(np.any(v["l2"] != 0)),
        "l2_init": bool(np.any(v["l2_init"] != 0)),
        "spectral": bool(np.any(v["spectral"] != 0)),
        "shrink_perturb": bool(np.any(v["shrink"] != 1) or np.any(v["perturb"] != 0)),
        "redo": bool(np.any(v["redo_threshold"] > 0)),
        "cbp": bool(np.any(v["cbp_rate"] != 0)),
    }
    enabled = {"l2": static.l2, "l2_init": static.l2_init, "spectral": static.spectral,
               "shrink_perturb": static.shrink_perturb, "redo": static.redo, "cbp": static.cbp}
    missing = [name for name, u in used.items() if u and not enabled[name]]
    compiled = dict(static.custom)
    missing += [name for name, lane in mhp.custom.items() if np.any(np.asarray(lane.on)) and name not in compiled]
    if missing:
        raise ValueError(f"lanes use {missing} but the MitigationStructure does not compile them in")
