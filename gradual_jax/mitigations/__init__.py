"""Plasticity mitigations as small, pure, composable pieces.

Strengths are per-lane numbers (:class:`MitigationHParams`, traced under ``vmap``; the "off"
value of each is an exact no-op), structure is static (:class:`MitigationStructure`). The engine
needs four calls: :func:`init_state`, :func:`loss_terms`, :func:`after_step`,
:func:`at_task_boundary`. The pieces are usable on their own:

* loss terms: :func:`l2`, :func:`l2_init`, :func:`spectral` (persistent power iteration);
* :func:`shrink_perturb`;
* ReDo: :func:`redo_scores`, :func:`redo_reset`, :func:`should_apply`;
* continual backprop: :func:`cbp_init`, :func:`cbp_step`;
* a method from outside the package: :class:`Hooks` on its registry entry
  (:mod:`~gradual_jax.mitigations.hooks`, :mod:`~gradual_jax.mitigations.methods`).

CReLU is an activation of :class:`gradual_jax.models.mlp.MLP` (an architecture, not a step).
"""

from gradual_jax.mitigations.api import (
    MitigationStructure,
    MitigationHParams,
    MState,
    after_step,
    at_task_boundary,
    check_lanes,
    init_state,
    loss_terms,
)
from gradual_jax.mitigations.cbp import CBPLayerState, cbp_init, cbp_step
from gradual_jax.mitigations.hooks import CustomLane, Hooks
from gradual_jax.mitigations.redo import (
    layer_scores,
    redo_reset,
    redo_reset_scored,
    redo_scores,
    redo_select,
    should_apply,
)
from gradual_jax.mitigations.regularizers import (
    SpectralVectors,
    as_matrix,
    l2,
    l2_init,
    power_iteration,
    sigma_estimate,
    spectral,
    spectral_init,
    spectral_matrices,
)
from gradual_jax.mitigations.shrink_perturb import shrink_perturb
from gradual_jax.mitigations.unit_reset import reset_units, unit_activity

__all__ = [
    "CBPLayerState",
    "CustomLane",
    "Hooks",
    "MState",
    "MitigationStructure",
    "MitigationHParams",
    "SpectralVectors",
    "after_step",
    "as_matrix",
    "at_task_boundary",
    "cbp_init",
    "cbp_step",
    "check_lanes",
    "init_state",
    "l2",
    "l2_init",
    "layer_scores",
    "loss_terms",
    "power_iteration",
    "redo_reset",
    "redo_reset_scored",
    "redo_scores",
    "redo_select",
    "reset_units",
    "should_apply",
    "shrink_perturb",
    "sigma_estimate",
    "spectral",
    "spectral_init",
    "spectral_matrices",
    "unit_activity",
]
