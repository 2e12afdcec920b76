"""Plasticity diagnostics (Fig. 6 and beyond), each defined once, as pure functions.

Everything here takes arrays or parameter pytrees and returns arrays, with no Python control
flow on traced values, so the engine can ``vmap`` these functions over lanes and ``jit`` them
inside a task segment. Every threshold and probe is an explicit argument; the defaults are the
paper's values (``docs/protocol.md``, section Diagnostics).

Conventions:

* ``features`` is a list with one ``[N, units]`` array per hidden layer: the post-ReLU
  activations on N fixed probe inputs (``MLP.features``). A unit is *active* on an input when
  its activation is ``> 0``.
* ``features_fn(params, probe) -> list[Array]`` and ``loss_fn(params, probe) -> scalar`` are
  the functional forms of a model on a probe (the engine builds them from its problem).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradual_jax.mitigations.redo import redo_scores

Features = Sequence[jax.Array]

DEFAULT_TAUS = (0.0,)  # never active on the probe


@dataclasses.dataclass(frozen=True)
class DiagnosticsSpec:
    """What the engine measures at every task's readout (a program without one measures none).

    ``probe_size`` training examples of the task (evenly spaced indices of the subset) are the
    probe; ``dormant_taus`` the dormancy thresholds; ``redo_threshold`` the ReDo score of the
    dormant-fraction column; ``hessian`` and ``hessian_iters`` the costly max Hessian eigenvalue
    by power iteration. The runner fills it from the config's ``diagnostics`` section.
    """

    probe_size: int
    dormant_taus: tuple[float, ...]
    redo_threshold: float
    hessian: bool
    hessian_iters: int


# --------------------------------------------------------------------------- dormant units
def active_fraction(h: jax.Array) -> jax.Array:
    """Per unit, the fraction of probe inputs on which it is active (activation > 0): [units]."""
    return jnp.mean(h > 0, axis=0)


def _dormant_mask(h: jax.Array, tau: float) -> jax.Array:
    # A unit is dormant when it is active on at most a fraction tau of the probe inputs.
    # Comparing fractions (count / N against tau) rather than counts keeps an exact decimal
    # such as tau = 1e-4 with N = 10_000 on the dormant side: both sides round the same real.
    return active_fraction(h) <= tau


def dormant_fraction_per_layer(features: Features, tau: float) -> jax.Array:
    """Fraction of dormant units in each hidden layer: [layers].

    A unit is dormant when active (> 0) on at most a fraction ``tau`` of the probe inputs;
    ``tau = 0`` means never active on the probe.
    """
    return jnp.stack([jnp.mean(_dormant_mask(h, tau)) for h in features])


def dormant_fraction(features: Features, tau: float) -> jax.Array:
    """Fraction of dormant units over all hidden layers pooled (each unit counts once).

    Pooled rather than averaged over layers, so a wide layer weighs more: it is the share of
    the network's units that no longer respond to the data.
    """
    dormant = sum(jnp.sum(_dormant_mask(h, tau)) for h in features)
    total = sum(h.shape[-1] for h in features)
    return dormant / total


# --------------------------------------------------------------------------- ReDo scores
def redo_dormant_fraction(features: Features, threshold: float = 0.1) -> jax.Array:
    """Fraction of units over all layers whose ReDo score is ``<= threshold``
    (:func:`~gradual_jax.mitigations.redo.redo_scores`: the score ReDo resets by)."""
    scores = redo_scores(features)
    dormant = sum(jnp.sum(s <= threshold) for s in scores)
    return dormant / sum(s.shape[0] for s in scores)


# --------------------------------------------------------------------------- rank
def _singular_values(h: jax.Array) -> jax.Array:
    return jnp.linalg.svd(h, compute_uv=False)


def effective_rank(h: jax.Array) -> jax.Array:
    """Roy & Vetterli (2007) effective rank of a feature matrix ``h`` [N, d].

    exp of the Shannon entropy of the singular values normalised to sum 1 (with 0·log 0 = 0).
    It equals k for k equal non-zero singular values and falls smoothly as the spectrum
    concentrates, so it sees collapse before the numerical rank does. A zero matrix has
    effective rank 0 (not exp(0) = 1).
    """
    s = _singular_values(h)
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.where(total > 0, jnp.exp(entropy), 0.0)


def srank(h: jax.Array, delta: float = 0.01) -> jax.Array:
    """Kumar et al. (2021) srank: the smallest k whose top-k singular values hold ``>= 1-delta``
    of their sum. Integer-valued (returned as int32); 0 for a zero matrix.
    """
    s = _singular_values(h)  # descending
    total = jnp.sum(s)
    short = jnp.cumsum(s) < (1.0 - delta) * total  # prefixes that do not hold enough yet
    return jnp.where(total > 0, jnp.sum(short) + 1, 0).astype(jnp.int32)


# --------------------------------------------------------------------------- curvature
def hvp(loss_fn: Callable[[Any], jax.Array], params, v):
    """Hessian-vector product H(params)·v by forward-over-reverse differentiation (no H formed)."""
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def max_hessian_eigenvalue(loss_fn: Callable[[Any], jax.Array], params, key: jax.Array,
                           num_iters: int = 20) -> jax.Array:
    """Eigenvalue of largest magnitude of the Hessian of ``loss_fn`` at ``params``.

    Power iteration on Hessian-vector products from a random unit start (``key``); the estimate
    is the Rayleigh quotient vᵀHv of the last direction, so the sign is kept (a negative result
    means the dominant curvature is a saddle direction). ``num_iters`` ≥ 1 Hessian-vector
    products in all (one per iteration, traced once inside a ``fori_loop``): the estimate is
    that of the direction after ``num_iters - 1`` power steps. ``params`` may be any pytree; it
    is flattened with ``ravel_pytree``. A zero Hessian-vector product stops the direction at 0
    and the estimate at 0 instead of dividing by zero.
    """
    flat, unravel = ravel_pytree(params)

    def flat_hvp(v):
        return ravel_pytree(hvp(loss_fn, params, unravel(v)))[0]

    def normalise(v):
        n = jnp.linalg.norm(v)
        return v / jnp.where(n > 0, n, 1.0)

    def power_step(_, carry):
        v, _ = carry
        hv = flat_hvp(v)
        return normalise(hv), jnp.vdot(v, hv)  # the Rayleigh quotient of v comes for free

    v0 = normalise(jax.random.normal(key, flat.shape, flat.dtype))
    _, estimate = jax.lax.fori_loop(0, num_iters, power_step, (v0, jnp.zeros((), flat.dtype)))
    return estimate


# --------------------------------------------------------------------------- representation
def representation_change(h_now: jax.Array, h_prev: jax.Array) -> jax.Array:
    """Relative representation change E_x ||h_t(x) - h_{t-1}(x)|| / ||h_{t-1}(x)||.

    ``h_now`` and ``h_prev`` are [N, d] features of the same probe inputs under the current
    and the previous parameters. Probe inputs whose previous representation is exactly zero
    have no relative change; they are left out of the mean. If every one is zero the result
    is NaN (undefined), never a silent 0 or inf.
    """
    prev_norm = jnp.linalg.norm(h_prev, axis=-1)
    diff_norm = jnp.linalg.norm(h_now - h_prev, axis=-1)
    ok = prev_norm > 0
    ratio = jnp.where(ok, diff_norm / jnp.where(ok, prev_norm, 1.0), 0.0)
    count = jnp.sum(ok)
    return jnp.where(count > 0, jnp.sum(ratio) / jnp.maximum(count, 1), jnp.nan)


# --------------------------------------------------------------------------- norms
def tree_l2(tree) -> jax.Array:
    """L2 norm over all leaves of a pytree, as if they were one flat vector."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def distance_from_init(params, init_params) -> jax.Array:
    """||θ - θ₀||₂ over all parameters (every leaf, biases and LayerNorm included)."""
    return tree_l2(jax.tree.map(jnp.subtract, params, init_params))


def weight_norm(params) -> jax.Array:
    """||θ||₂ over all parameters."""
    return tree_l2(params)


def grad_norm(grads) -> jax.Array:
    """||g||₂ over all gradient leaves."""
    return tree_l2(grads)


# --------------------------------------------------------------------------- all at once
def tau_key(tau: float) -> str:
    """Result name of the dormant fraction at ``tau``: ``dormant_fraction_tau0.01``."""
    return f"dormant_fraction_tau{tau:g}"


def diagnose(features_fn: Callable, loss_fn: Callable, params, init_params, prev_features: jax.Array,
             probe: Any, key: jax.Array, *,
             taus: Sequence[float] = DEFAULT_TAUS, redo_threshold: float = 0.1, srank_delta: float = 0.01,
             hessian_iters: int = 20, costly: bool = True) -> dict[str, jax.Array]:
    """Every diagnostic of one lane at one moment, as a flat dict of scalars.

    ``probe`` is whatever the two functions read (the engine passes a ``Batch``: inputs and
    labels): ``features_fn(params, probe)`` gives the hidden layers, ``loss_fn(params, probe)``
    the loss whose gradient and Hessian are measured. ``prev_features`` is the last hidden layer
    [N, d] on the same probe at the previous readout (or at initialisation for the first task);
    ``key`` seeds the power iteration.
    ``taus``, ``hessian_iters`` and ``costly`` are static. With ``costly=False`` the Hessian
    power iteration is skipped and ``max_hessian_eigenvalue`` is NaN, so the keys are the same
    either way.
    """
    features = features_fn(params, probe)
    last = features[-1]

    def probe_loss(p):
        return loss_fn(p, probe)

    loss, grads = jax.value_and_grad(probe_loss)(params)
    out = {tau_key(tau): dormant_fraction(features, tau) for tau in taus}
    out.update(
        redo_dormant_fraction=redo_dormant_fraction(features, redo_threshold),
        effective_rank=effective_rank(last),
        srank=srank(last, srank_delta),
        representation_change=representation_change(last, prev_features),
        distance_from_init=distance_from_init(params, init_params),
        weight_norm=weight_norm(params),
        grad_norm=grad_norm(grads),
        probe_loss=loss,
    )
    if costly:
        out["max_hessian_eigenvalue"] = max_hessian_eigenvalue(probe_loss, params, key, hessian_iters)
    else:
        out["max_hessian_eigenvalue"] = jnp.full((), jnp.nan, loss.dtype)
    return out
