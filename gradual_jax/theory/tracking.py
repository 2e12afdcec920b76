"""Gradient descent on a fixed and on a moving minimiser, and Lemma 4.3's rates and bounds for it.

What is proved here (the version of Lemma 4.3 that the checks test). Let f be C², β-smooth,
with minimiser c, and μ-strongly convex on the ball B(c, r) (an (r, μ)-locally strongly convex
domain). Let 0 < η ≤ 1/β and x₀ ∈ B(c, r). Then every gradient descent iterate stays in
B(c, r) and ‖x_{t+1} - c‖ ≤ q‖x_t - c‖ with q = 1 - ημ.
Proof: x_{t+1} - c = (I - ηH̄)(x_t - c) with H̄ = ∫₀¹ ∇²f(c + s(x_t - c)) ds; the segment lies in
the (convex) ball, so μI ⪯ H̄ ⪯ βI and ‖I - ηH̄‖ ≤ max(|1 - ημ|, |1 - ηβ|) = 1 - ημ; the
distance shrinks, so the next iterate is in the ball again (induction). On a quadratic
½(x-c)ᵀA(x-c), H̄ = A and the asymptotic rate is exactly max_i |1 - ηλ_i| (any η).
(docs/protocol.md writes the lemma's step condition as η ≤ min(1/β, …); 1/β is all this proof needs.)

Tracking corollary (checked by :func:`gradual_jax.theory.checks.logcosh_tracking` and
:func:`gradual_jax.theory.checks.double_well_tracking`). The minimiser moves from c₀ to c₁
in S = 1/Δ equal jumps of size δ = Δ‖c₁ - c₀‖, with m GD steps on each f_s(x) = g(x - c_s),
starting at x = c₀. If some r satisfies B(r) := δ / (1 - q(r)^m) ≤ r, then every iterate, the
one right after each jump included, is within B(r) of the current minimiser.
Proof: let a_s be the error at the end of stage s, a₀ = 0. If a_{s-1} ≤ q^m δ/(1 - q^m), the
error right after the jump is ≤ a_{s-1} + δ ≤ δ/(1 - q^m) = B(r) ≤ r, so it is in the ball and
the m steps contract it by q each: a_s ≤ q^m B(r) = q^m δ/(1 - q^m). The bound grows linearly
in δ, so finer steps track more closely; an abrupt jump (Δ = 1) may exceed every such r: then
nothing keeps GD in the basin, which is the paper's story and :mod:`gradual_jax.theory.relu`'s
picture.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradual_jax.theory.functions import logcosh_constants


def in_float64(fn):
    """Run ``fn`` with float64 JAX arrays, leaving the global config untouched."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped


# --------------------------------------------------------------------------- dynamics
def gd_path(grad_fn: Callable[[jax.Array], jax.Array], x0: jax.Array, eta: float, num_steps: int) -> jax.Array:
    """Iterates x₀ … x_T of x ← x - η∇f(x): [num_steps + 1, dim]."""
    def step(x, _):
        x = x - eta * grad_fn(x)
        return x, x

    _, xs = jax.lax.scan(step, x0, None, length=num_steps)
    return jnp.concatenate([x0[None], xs])


def moving_minimiser_errors(grad_fn: Callable[[jax.Array, jax.Array], jax.Array], c0: jax.Array,
                            c1: jax.Array, num_stages: int, m: int, eta: float, x0: jax.Array | None = None) -> jax.Array:
    """Distances ‖x - c_s‖ from the current minimiser while it moves c₀ → c₁ in ``num_stages``
    equal jumps, m GD steps on ``grad_fn(x, c_s)`` per stage: [stages, m + 1], column 0 the
    distance right after the jump (before any step), column j after j steps. Starts at x₀ = c₀.
    """
    x0 = c0 if x0 is None else x0

    def stage(x, s):
        c = c0 + (s / num_stages) * (c1 - c0)

        def step(x, _):
            x = x - eta * grad_fn(x, c)
            return x, jnp.linalg.norm(x - c)

        x_end, errs = jax.lax.scan(step, x, None, length=m)
        return x_end, jnp.concatenate([jnp.linalg.norm(x - c)[None], errs])

    _, errors = jax.lax.scan(stage, x0, jnp.arange(1, num_stages + 1))
    return errors


# --------------------------------------------------------------------------- rates and bounds
def spectral_rate(eigvals, eta: float) -> float:
    """Exact asymptotic GD contraction on a quadratic: max_i |1 - ηλ_i|."""
    return float(np.max(np.abs(1.0 - eta * np.asarray(eigvals))))


def contraction_bound(mu, beta, eta):
    """Per-step contraction of GD where μI ⪯ ∇²f ⪯ βI: max(|1 - ημ|, |1 - ηβ|) (= 1 - ημ for η ≤ 1/β)."""
    return np.maximum(np.abs(1.0 - eta * mu), np.abs(1.0 - eta * beta))


def tracking_bound(jump, q, m: int):
    """Worst distance to the moving minimiser when each jump δ is followed by m steps that
    contract by q: δ / (1 - q^m) (the tracking corollary, see the module docstring)."""
    return jump / (1.0 - q ** m)


def logcosh_tracking_bound(jump: float, eta: float, m: int, eps: float, grid_points: int = 20_001) -> tuple:
    """The tightest tracking bound B(r) = δ/(1 - q(r)^m) over radii r with B(r) ≤ r, for
    :func:`~gradual_jax.theory.functions.logcosh_well` (q(r) = contraction_bound(μ(r), β, η)).
    Returns (B(r), r).

    B is increasing in r and B(δ) ≥ δ, so the best valid r is the smallest. ε > 0 makes every
    r ≥ R∞ = δ/(1 - q(∞)^m) valid, so the search runs over a geometric grid of ``grid_points``
    radii on [δ, R∞] and takes the first valid one: the bound is proved, tight to the grid.
    """
    _, beta = logcosh_constants(eps, 0.0)
    r_inf = tracking_bound(jump, contraction_bound(eps, beta, eta), m)
    r = np.geomspace(jump, r_inf * (1 + 1e-9), grid_points)
    bound = tracking_bound(jump, contraction_bound(logcosh_constants(eps, r)[0], beta, eta), m)
    first = int(np.argmax(bound <= r))  # the last grid point is valid by construction
    return float(bound[first]), float(r[first])


def smallest_tracking_radius(jump: float, contraction: Callable, m: int, r_max: float,
                             grid_points: int = 20_001) -> tuple:
    """The tightest tracking bound B(r) = δ/(1 - q(r)^m) over radii δ ≤ r < r_max with B(r) ≤ r,
    where ``contraction(r)`` = q(r) is the lemma's per-step rate on B(c, r) (nondecreasing in r).

    Returns (B(r), r) at the first valid r of a geometric grid (B is nondecreasing, so the first
    valid r gives the smallest bound; it is proved, tight to the grid), or (nan, nan) when no
    radius below r_max is valid: then the tracking corollary certifies nothing.
    """
    if not jump < r_max:
        return float("nan"), float("nan")
    r = np.geomspace(jump, r_max, grid_points, endpoint=False)
    q = contraction(r)
    with np.errstate(divide="ignore"):
        bound = np.where(q < 1.0, tracking_bound(jump, np.minimum(q, 1.0), m), np.inf)
    valid = bound <= r
    if not valid.any():
        return float("nan"), float("nan")
    first = int(np.argmax(valid))
    return float(bound[first]), float(r[first])
