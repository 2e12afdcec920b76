"""Loss terms added to the training loss: L2, L2-init and spectral regularisation.

Every term takes its strength as a (possibly traced) scalar and returns ``strength · penalty``,
so a strength of 0 gives a term of exactly 0 whose gradient is exactly 0 (for finite
parameters): lanes with and without a term share one ``vmap``-ed program. Structural choices
(which leaves count, the spectral target) are static keyword arguments.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from gradual_jax.models.paths import named_leaves

DEFAULT_EXCLUDE = ("norm",)  # LayerNorm parameters are never spectrally regularised


# --------------------------------------------------------------------------- L2, L2-init
def _sum_squares(leaves) -> jax.Array:
    return sum((jnp.sum(jnp.square(x)) for x in leaves), jnp.zeros((), jnp.float32))


def l2(params, strength, *, kernels_only: bool = False) -> jax.Array:
    """``strength · Σ‖θ‖²`` over every leaf (MLP, T5), or over leaves with ndim > 1 only
    (``kernels_only=True``: the ResNet variant, weights but no biases or norm parameters)."""
    leaves = jax.tree.leaves(params)
    if kernels_only:
        leaves = [x for x in leaves if x.ndim > 1]
    return strength * _sum_squares(leaves)


def l2_init(params, init_params, strength) -> jax.Array:
    """``strength · Σ‖θ - θ₀‖²`` over every leaf (Kumar et al.'s L2-init)."""
    return strength * _sum_squares(jax.tree.leaves(jax.tree.map(jnp.subtract, params, init_params)))


# --------------------------------------------------------------------------- spectral
@struct.dataclass
class SpectralVectors:
    """Persistent power-iteration state of one weight matrix (viewed as ``[fan_in, out]``)."""

    u: jax.Array  # [fan_in], unit left singular vector estimate
    v: jax.Array  # [out], unit right singular vector estimate
    sigma0: jax.Array  # scalar, σ_max of the matrix at initialisation (exact, by SVD)


def as_matrix(w: jax.Array) -> jax.Array:
    """A kernel as a ``[fan_in, out]`` matrix: ``[in, out]`` as is, a conv kernel
    ``[kh, kw, in, out]`` as ``[kh·kw·in, out]``."""
    return w.reshape(-1, w.shape[-1])


def _excluded(name: str, exclude: Sequence[str]) -> bool:
    return any(e in name for e in exclude)


def spectral_matrices(params, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[tuple[str, jax.Array]]:
    """The leaves the spectral term treats as weight matrices: ndim ≥ 2, name not containing
    any of ``exclude``. The order (flattening order) is the order of the state tuple."""
    return [(n, x) for n, x in named_leaves(params) if x.ndim >= 2 and not _excluded(n, exclude)]


def spectral_biases(params, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> list[tuple[str, jax.Array]]:
    """The biases of the MLP variant's ``Σ‖b‖²``: 1-D leaves named ``bias`` outside ``exclude``
    (so LayerNorm's β is not among them, as in the released code)."""
    return [(n, x) for n, x in named_leaves(params)
            if x.ndim == 1 and n.rsplit("/", 1)[-1] == "bias" and not _excluded(n, exclude)]


def _normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


def power_iteration(w: jax.Array, u: jax.Array, v: jax.Array, iters: int = 1) -> tuple[jax.Array, jax.Array]:
    """``iters`` power-iteration steps ``v ← W̃ᵀu/‖·‖, u ← W̃v/‖·‖`` on ``W̃ = as_matrix(w)``,
    with no gradient through the vectors (or through ``w`` along this path)."""
    m = jax.lax.stop_gradient(as_matrix(w))
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    for _ in range(iters):
        v = _normalize(m.T @ u)
        u = _normalize(m @ v)
    return u, v


def sigma_estimate(w: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """``uᵀ W̃ v``: σ_max for converged vectors; differentiable in ``w`` (``∂/∂W̃ = u vᵀ``)."""
    return u @ (as_matrix(w) @ v)


@jax.custom_batching.sequential_vmap
def _top_singular_triplet(m: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(u₁, σ₁, v₁)`` of ``m`` by SVD. Under ``vmap`` the SVDs run one lane at a time: with
    jaxlib 0.10.2 on CPU, a program holding ~18 or more *batched* SVDs (or eigh) never
    finishes executing (the T5's 19 matrices × 2 lanes hang; one lane at a time does not)."""
    uu, s, vt = jnp.linalg.svd(m, full_matrices=False)
    return uu[:, 0], s[0], vt[0]


def spectral_init(params, *, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                  key: jax.Array | None = None) -> tuple[SpectralVectors, ...]:
    """Power-iteration state for every weight matrix, with ``sigma0`` = its exact σ_max (SVD).

    Without ``key`` the vectors start at the exact top singular pair, i.e. already converged
    (the released code starts the persistent iteration after 20 warm-up steps, for the same
    reason); with ``key`` they start as random unit vectors (used to test convergence).
    """
    out = []
    for i, (_, w) in enumerate(spectral_matrices(params, exclude)):
        m = as_matrix(w)
        u, sigma0, v = _top_singular_triplet(m)
        if key is not None:
            ku, kv = jax.random.split(jax.random.fold_in(key, i))
            u = _normalize(jax.random.normal(ku, (m.shape[0],), m.dtype))
            v = _normalize(jax.random.normal(kv, (m.shape[1],), m.dtype))
        out.append(SpectralVectors(u=u, v=v, sigma0=sigma0))
    return tuple(out)


def spectral(params, state: Sequence[SpectralVectors], strength, *, target: str = "init",
             bias_l2: bool = True, exclude: Sequence[str] = DEFAULT_EXCLUDE,
             iters: int = 1) -> tuple[jax.Array, tuple[SpectralVectors, ...]]:
    """Spectral regularisation (Lewandowski et al., 2024), as the paper's baselines use it.

    ``strength · [Σ_W (σ_max(W)² − σ₀²)² + Σ_b ‖b‖²]``: W runs over :func:`spectral_matrices`,
    σ₀ is W's σ_max at init (``target="init"``) or 1 (``target="one"``); the bias term is
    there only with ``bias_l2=True`` (the MLP variant; the strength multiplies it too, as in the
    released code). σ_max is ``uᵀW̃v`` after ``iters`` persistent power-iteration steps from
    ``state``; the updated vectors are returned and must be carried to the next step (return
    them as ``aux`` of the loss). Gradient flows through ``uᵀW̃v`` only.
    """
    if target not in ("init", "one"):
        raise ValueError(f"spectral target must be 'init' or 'one', got {target!r}")
    mats = spectral_matrices(params, exclude)
    if len(mats) != len(state):
        raise ValueError(f"spectral state has {len(state)} entries but the parameters have {len(mats)} matrices")
    total = jnp.zeros((), jnp.float32)
    new_state = []
    for (_, w), s in zip(mats, state):
        u, v = power_iteration(w, s.u, s.v, iters)
        sigma = sigma_estimate(w, u, v)
        goal = s.sigma0 if target == "init" else jnp.ones_like(s.sigma0)
        total = total + jnp.square(jnp.square(sigma) - jnp.square(goal))
        new_state.append(s.replace(u=u, v=v))
    if bias_l2:
        total = total + _sum_squares([b for _, b in spectral_biases(params, exclude)])
    return strength * total, tuple(new_state)
