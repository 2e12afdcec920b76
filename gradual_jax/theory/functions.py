"""The objectives the checks run GD on, and their constants β, μ(r) and r in closed form.

Every objective is f(x; c) = g(x - c), minimised at c, so a moving minimiser is a moving c.

- :func:`quadratic`: β = λ_max(A) and μ = λ_min(A) everywhere (r = ∞).
- :func:`logcosh_well`: convex everywhere, (1+ε)-smooth, with a strong-convexity modulus μ(r)
  that fades with the radius of the ball (:func:`logcosh_constants`).
- :func:`double_well`: a landscape where the lemma's radius matters. The functions above are
  globally convex, so "GD stays in the domain" holds trivially there. The tilted double well
  g(x) = -log(e^{-‖x‖²/2} + e^{κ-‖x+su‖²/2}) - b·uᵀx is 1-smooth everywhere, strongly convex
  only on a ball of closed-form radius r* around its minimiser 0 (:func:`double_well_radius`),
  with a barrier and a second well behind it along -u (:func:`double_well_stationary_points`).

The constants are NumPy float64 functions: they are the predictions the JAX dynamics are checked
against, computed without the dynamics' code.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def random_rotation(dim: int, seed: int) -> np.ndarray:
    """A fixed orthogonal matrix (QR of a Gaussian matrix, signs fixed): non-axis-aligned wells."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def random_unit_vector(dim: int, seed: int) -> np.ndarray:
    """A fixed random unit vector: the double well's axis u, not aligned with a coordinate."""
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------- convex objectives
def quadratic(a: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """f(x; c) = ½(x - c)ᵀA(x - c): β = λ_max(A), μ = λ_min(A) everywhere (r = ∞)."""
    def f(x, c):
        e = x - c
        return 0.5 * e @ a @ e

    return f


def logcosh_well(q: jax.Array, eps: float) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """f(x; c) = Σ_i log cosh(q_iᵀ(x - c)) + ½ε‖x - c‖², q_i the columns of an orthogonal Q.

    Its Hessian Q diag(sech²(Qᵀ(x-c))) Qᵀ + εI lies between (sech²(r) + ε)I and (1 + ε)I on
    B(c, r) (each |q_iᵀ(x-c)| ≤ ‖x-c‖), so it is (1+ε)-smooth and strongly convex with a
    modulus that fades with r: see :func:`logcosh_constants`.
    """
    def f(x, c):
        z = q.T @ (x - c)
        log_cosh = jnp.logaddexp(z, -z) - jnp.log(2.0)  # overflow-free log cosh
        return jnp.sum(log_cosh) + 0.5 * eps * jnp.sum(jnp.square(x - c))

    return f


def logcosh_constants(eps: float, r) -> tuple:
    """(μ(r), β) of :func:`logcosh_well` on B(c, r): μ = sech²(r) + ε, β = 1 + ε."""
    return 1.0 / np.cosh(r) ** 2 + eps, 1.0 + eps


# --------------------------------------------------------------------------- the double well
def _sigmoid(z):
    """σ(z) = 1/(1 + e^{-z}) without overflow."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64)))


def double_well_logit0(s: float, kappa: float) -> float:
    """ℓ₀ = κ - s²/2: the log-odds of the second well's component at the minimiser x = 0."""
    return kappa - 0.5 * s * s


def double_well(u: jax.Array, s: float, kappa: float) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """f(x; c) = g(x - c), g(x) = -log(e^{-‖x‖²/2} + e^{κ - ‖x + su‖²/2}) - b·uᵀx, u a unit vector.

    g is the negative log-density of a two-Gaussian mixture (unit covariances, centres 0 and -su,
    weight ratio e^κ) plus a linear tilt b = s·σ(ℓ₀) (ℓ₀ = :func:`double_well_logit0`) that makes
    ∇g(0) = 0 exactly, so the tracked minimiser sits at c with no root finding. Writing
    z = uᵀx, y = x - zu: g(x) = ½‖y‖² + φ(z), φ(z) = -log(e^{-z²/2} + e^{κ-(z+s)²/2}) - bz, with
    φ'(z) = z + s(σ(ℓ(z)) - σ(ℓ₀)) and φ''(z) = 1 - s²σ(ℓ)σ(-ℓ) = 1 - s²/(4cosh²(ℓ/2)),
    ℓ(z) = ℓ₀ - sz. So ∇²g = I - (1 - φ''(z))uuᵀ, with eigenvalues 1 (⊥ u) and φ''(z) ≤ 1:
    g is 1-smooth (β = 1), and for s > 2 the curvature along u is negative where
    |ℓ| < 2 arccosh(s/2): a barrier between the main well at 0 and a second well near z = -s.
    Constants: :func:`double_well_mu`, :func:`double_well_radius`.
    """
    tilt = s * float(_sigmoid(double_well_logit0(s, kappa)))

    def f(x, c):
        e = x - c
        log_mix = jnp.logaddexp(-0.5 * jnp.sum(jnp.square(e)), kappa - 0.5 * jnp.sum(jnp.square(e + s * u)))
        return -log_mix - tilt * (u @ e)

    return f


def double_well_slope(z, s: float, kappa: float):
    """φ'(z), g's slope along u at x = zu (see :func:`double_well`)."""
    l0 = double_well_logit0(s, kappa)
    z = np.asarray(z, np.float64)
    return z + s * (_sigmoid(l0 - s * z) - _sigmoid(l0))


def double_well_curvature(z, s: float, kappa: float):
    """φ''(z) = 1 - s²/(4cosh²(ℓ(z)/2)), ℓ(z) = ℓ₀ - sz: g's curvature along u at x = zu + y."""
    ell = double_well_logit0(s, kappa) - s * np.asarray(z, np.float64)
    return 1.0 - s * s / (4.0 * np.cosh(0.5 * ell) ** 2)


DOUBLE_WELL_BETA = 1.0  # ∇²g ⪯ I everywhere (see :func:`double_well`)


def double_well_mu(s: float, kappa: float, r):
    """μ(r): the smallest Hessian eigenvalue of :func:`double_well` on B(c, r), closed form.

    On B(c, r), z = uᵀ(x - c) ranges over [-r, r] and ℓ = ℓ₀ - sz over [ℓ₀ - sr, ℓ₀ + sr];
    the smallest eigenvalue min(1, φ'') = φ'' = 1 - s²/(4cosh²(ℓ/2)) is smallest where |ℓ| is,
    at ℓ* = clip(0, ℓ₀ - sr, ℓ₀ + sr). Negative once the ball reaches the barrier region.
    """
    l0 = double_well_logit0(s, kappa)
    r = np.asarray(r, np.float64)
    ell = np.clip(0.0, l0 - s * r, l0 + s * r)
    return 1.0 - s * s / (4.0 * np.cosh(0.5 * ell) ** 2)


def double_well_radius(s: float, kappa: float) -> float:
    """r* = (-ℓ₀ - 2 arccosh(s/2))/s: the largest r with μ(r) > 0 on every smaller ball.

    φ'' = 0 where cosh(ℓ/2) = s/2, i.e. |ℓ| = ℓ_c = 2 arccosh(s/2); the ball B(c, r) stays
    where φ'' > 0 while ℓ₀ + sr < -ℓ_c. So every r < r* gives an (r, μ(r))-locally strongly
    convex domain with μ(r) > 0, and no ball of radius > r* is one (φ''(-r*) = 0).
    Needs s > 2 (else g is convex) and ℓ₀ < -ℓ_c (else 0 is not in a convex region).
    """
    if s <= 2.0:
        raise ValueError(f"separation s = {s} must exceed 2 for a second well")
    l0, lc = double_well_logit0(s, kappa), 2.0 * np.arccosh(0.5 * s)
    if l0 >= -lc:
        raise ValueError(f"kappa = {kappa} too large: the minimiser is not in a convex region")
    return float((-l0 - lc) / s)


def _bisect_root(fn, lo: float, hi: float, iters: int = 200) -> float:
    """A root of a scalar fn with fn(lo)·fn(hi) ≤ 0, by bisection to rounding."""
    f_lo = fn(lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        f_mid = fn(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def double_well_stationary_points(s: float, kappa: float, grid_points: int = 20_001) -> dict:
    """The barrier and the second well of :func:`double_well` on the -u side: z_b, z₂ < 0.

    Between z = -s (where φ'(-s) = -s(1 - σ(ℓ(-s)) + σ(ℓ₀)) < 0) and z = -r* (where φ' < 0:
    φ'' > 0 on [-r*, 0] and φ'(0) = 0), φ' goes - → + at the second well z₂ and + → - at the
    barrier z_b. Located on a grid, refined by bisection. GD's component along u follows
    z ↦ z - ηφ'(z) whatever y is (y just contracts by 1 - η), and for η ≤ 1/β that map is
    nondecreasing (1 - ηφ'' ≥ 0): GD from any z in (z_b, 0] converges to 0, from z < z_b to z₂.
    So |z_b| is the exact basin radius on this side.
    """
    r_star = double_well_radius(s, kappa)
    z = np.linspace(-s, -r_star, grid_points)
    slope = double_well_slope(z, s, kappa)
    up = np.flatnonzero((slope[:-1] < 0) & (slope[1:] >= 0))
    down = np.flatnonzero((slope[:-1] > 0) & (slope[1:] <= 0))
    if len(up) != 1 or len(down) != 1:
        raise ValueError(f"no single barrier and second well for s = {s}, kappa = {kappa}")
    fn = lambda t: float(double_well_slope(t, s, kappa))
    z_well = _bisect_root(fn, z[up[0]], z[up[0] + 1])
    z_barrier = _bisect_root(fn, z[down[0]], z[down[0] + 1])
    return dict(barrier=float(z_barrier), well=float(z_well),
                barrier_curvature=float(double_well_curvature(z_barrier, s, kappa)),
                well_curvature=float(double_well_curvature(z_well, s, kappa)))
