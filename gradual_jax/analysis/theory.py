"""The paper's Section 4 (Lemma 4.3 and its tracking story), checked numerically.

What is proved here (the version of Lemma 4.3 that these checks test). Let f be C², β-smooth,
with minimiser c, and μ-strongly convex on the ball B(c, r) (an (r, μ)-locally strongly convex
domain). Let 0 < η ≤ 1/β and x₀ ∈ B(c, r). Then every gradient descent iterate stays in
B(c, r) and ‖x_{t+1} - c‖ ≤ q‖x_t - c‖ with q = 1 - ημ.
Proof: x_{t+1} - c = (I - ηH̄)(x_t - c) with H̄ = ∫₀¹ ∇²f(c + s(x_t - c)) ds; the segment lies in
the (convex) ball, so μI ⪯ H̄ ⪯ βI and ‖I - ηH̄‖ ≤ max(|1 - ημ|, |1 - ηβ|) = 1 - ημ; the
distance shrinks, so the next iterate is in the ball again (induction). On a quadratic
½(x-c)ᵀA(x-c), H̄ = A and the asymptotic rate is exactly max_i |1 - ηλ_i| (any η).
(docs/protocol.md writes the lemma's step condition as η ≤ min(1/β, …); 1/β is all this proof needs.)

Tracking corollary (checked by :func:`tracking_experiment`). The minimiser moves from c₀ to c₁
in S = 1/Δ equal jumps of size δ = Δ‖c₁ - c₀‖, with m GD steps on each f_s(x) = g(x - c_s),
starting at x = c₀. If some r satisfies B(r) := δ / (1 - q(r)^m) ≤ r, then every iterate, the
one right after each jump included, is within B(r) of the current minimiser.
Proof: let a_s be the error at the end of stage s, a₀ = 0. If a_{s-1} ≤ q^m δ/(1 - q^m), the
error right after the jump is ≤ a_{s-1} + δ ≤ δ/(1 - q^m) = B(r) ≤ r, so it is in the ball and
the m steps contract it by q each: a_s ≤ q^m B(r) = q^m δ/(1 - q^m). The bound grows linearly
in δ, so finer steps track more closely; an abrupt jump (Δ = 1) may exceed every such r: then
nothing keeps GD in the basin, which is the paper's story and :func:`relu_toy`'s picture.

A landscape where the lemma's radius matters (:func:`double_well`). The functions above are
globally convex, so "GD stays in the domain" holds trivially there. The tilted double well
g(x) = -log(e^{-‖x‖²/2} + e^{κ-‖x+su‖²/2}) - b·uᵀx is 1-smooth everywhere, strongly convex
only on a ball of closed-form radius r* around its minimiser 0, with a barrier and a second
well behind it along -u. With f_c(x) = g(x - c) and c moving by D along +u, every jump pushes
the iterate towards the second well: jumps below r* (more precisely, those with a valid tracking
radius r < r*) are provably tracked, and a jump beyond the barrier lands GD in the other well
(:func:`double_well_tracking`). The lemma's r* is sufficient, not necessary: the largest jump
GD returns from (:func:`double_well_escape`, by bisection) is the barrier's distance, > r*.

Everything runs in float64 inside ``jax.enable_x64(True)`` contexts: the global JAX config is
never changed. The dynamics are ``lax.scan`` loops over pure functions.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

COLUMNS = ("experiment", "case", "quantity", "delta", "predicted", "measured", "holds")


def _x64(fn):
    """Run ``fn`` with float64 JAX arrays, leaving the global config untouched."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped


def random_rotation(dim: int, seed: int) -> np.ndarray:
    """A fixed orthogonal matrix (QR of a Gaussian matrix, signs fixed): non-axis-aligned wells."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


# --------------------------------------------------------------------------- objectives
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


# --------------------------------------------------------------------------- rates and bounds
def spectral_rate(eigvals, eta: float) -> float:
    """Exact asymptotic GD contraction on a quadratic: max_i |1 - ηλ_i|."""
    return float(np.max(np.abs(1.0 - eta * np.asarray(eigvals))))


def contraction_bound(mu, beta, eta):
    """Per-step contraction of GD where μI ⪯ ∇²f ⪯ βI: max(|1 - ημ|, |1 - ηβ|) (= 1 - ημ for η ≤ 1/β)."""
    return np.maximum(np.abs(1.0 - eta * mu), np.abs(1.0 - eta * beta))


def tracking_bound(jump, q, m: int):
    """Worst distance to the moving minimiser when each jump δ is followed by m steps that
    contract by q: δ / (1 - q^m) (see the module docstring)."""
    return jump / (1.0 - q ** m)


def logcosh_tracking_bound(jump: float, eta: float, m: int, eps: float, grid_points: int = 20_001) -> tuple:
    """The tightest tracking bound B(r) = δ/(1 - q(r)^m) over radii r with B(r) ≤ r, for
    :func:`logcosh_well` (q(r) = contraction_bound(μ(r), β, η)). Returns (B(r), r).

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


def bisect_threshold(returns: Callable[[float], bool], lo: float, hi: float, tol: float = 1e-10) -> float:
    """The switch point of a monotone predicate with returns(lo) true and returns(hi) false,
    by bisection to ``tol``; returns the largest point known to be true."""
    if not returns(lo) or returns(hi):
        raise ValueError(f"need returns({lo}) true and returns({hi}) false")
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if returns(mid):
            lo = mid
        else:
            hi = mid
    return lo


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


def relu_unit(theta: jax.Array, x: jax.Array) -> jax.Array:
    """y = w·relu(a·x + b) with θ = (w, a, b)."""
    w, a, b = theta
    return w * jax.nn.relu(a * x + b)


def relu_toy_path(x: jax.Array, theta0: jax.Array, target_a: float, target_b: float, w0: float, w1: float,
                  num_stages: int, steps_per_stage: int, eta: float):
    """GD on ½·mean (relu_unit(θ, x) - w*_s·relu(a*x + b*))² while the target's output weight
    moves w₀ → w₁ in ``num_stages`` equal jumps (1 stage: abrupt). Returns the final θ and the
    loss against the current target before every step: [stages·steps]."""
    def loss(theta, w_target):
        target = relu_unit(jnp.stack([w_target, target_a, target_b]), x)
        return 0.5 * jnp.mean(jnp.square(relu_unit(theta, x) - target))

    def stage(theta, s):
        w_target = w0 + (s / num_stages) * (w1 - w0)

        def step(theta, _):
            value, grad = jax.value_and_grad(loss)(theta, w_target)
            return theta - eta * grad, value

        return jax.lax.scan(step, theta, None, length=steps_per_stage)

    theta, losses = jax.lax.scan(stage, theta0, jnp.arange(1, num_stages + 1))
    return theta, losses.reshape(-1)


# --------------------------------------------------------------------------- experiments
@_x64
def quadratic_convergence(eigvals: Sequence[float], eta: float, num_steps: int, *, r0: float = 1.0,
                          seed: int = 0) -> dict:
    """GD on ½(x-c)ᵀA(x-c) with spectrum ``eigvals`` (random eigenbasis and c), from ‖x₀-c‖ = r0.

    ``measured`` is the last step's ratio ‖e_T‖/‖e_{T-1}‖; pick ``num_steps`` so that the
    slower modes have died out but ‖e_T‖ is still far above rounding of c (≳ 1e-8·‖c‖).
    """
    eigvals = np.asarray(eigvals, np.float64)
    rng = np.random.default_rng(seed)
    q = random_rotation(len(eigvals), seed)
    a = jnp.asarray(q @ np.diag(eigvals) @ q.T)
    c = jnp.asarray(rng.normal(size=len(eigvals)))
    u = rng.normal(size=len(eigvals))
    x0 = c + r0 * jnp.asarray(u / np.linalg.norm(u))
    f = quadratic(a)
    dist = np.asarray(jnp.linalg.norm(gd_path(jax.grad(lambda x: f(x, c)), x0, eta, num_steps) - c, axis=-1))
    mu, beta = eigvals.min(), eigvals.max()
    return dict(distances=dist, measured=float(dist[-1] / dist[-2]), predicted=spectral_rate(eigvals, eta),
                lemma_rate=1.0 - eta * mu, mu=mu, beta=beta, eta=eta)


@_x64
def logcosh_convergence(dim: int = 4, eps: float = 0.05, r0: float = 3.0, eta_scale: float = 0.5,
                        num_steps: int = 40, seed: int = 0) -> dict:
    """GD with η = eta_scale/β on :func:`logcosh_well` from ‖x₀-c‖ = r0 (the domain's radius).

    Lemma 4.3 predicts every iterate in B(c, r0) and every step's ratio ≤ 1 - ημ(r0); near c
    the Hessian is (1+ε)I, so the asymptotic ratio is |1 - η(1+ε)| = |1 - eta_scale|. Keep
    ``num_steps`` short enough that ‖x_T - c‖ stays far above rounding (≈ 1e-16·‖c‖), where
    the measured ratios stop meaning anything.
    """
    q = jnp.asarray(random_rotation(dim, seed + 1))
    rng = np.random.default_rng(seed)
    c = jnp.asarray(rng.normal(size=dim))
    x0 = c + r0 * jnp.ones(dim) / np.sqrt(dim)
    mu, beta = logcosh_constants(eps, r0)
    eta = eta_scale / beta
    f = logcosh_well(q, eps)
    dist = np.asarray(jnp.linalg.norm(gd_path(jax.grad(lambda x: f(x, c)), x0, eta, num_steps) - c, axis=-1))
    # a step that lands exactly on c (possible when η(1+ε) = 1) leaves 0/0 ratios: count them as 0
    ratios = np.divide(dist[1:], dist[:-1], out=np.zeros(num_steps), where=dist[:-1] > 0)
    return dict(distances=dist, max_distance=float(dist.max()), radius=r0, worst_ratio=float(ratios.max()),
                bound=float(contraction_bound(mu, beta, eta)), final_ratio=float(ratios[-1]),
                asymptotic_rate=abs(1.0 - eta * beta), mu=mu, beta=beta, eta=eta)


@_x64
def tracking_experiment(deltas: Sequence[float], *, dim: int = 4, eps: float = 0.05, shift: float = 4.0,
                        eta_scale: float = 0.5, m: int = 2, seed: int = 0) -> list[dict]:
    """Track the minimiser of :func:`logcosh_well` moving by ``shift`` in 1/Δ jumps, m GD steps
    (η = eta_scale/β) per jump; per Δ: the measured worst distance and the proved bound."""
    q = jnp.asarray(random_rotation(dim, seed + 1))
    direction = np.ones(dim) / np.sqrt(dim)
    c0, c1 = jnp.zeros(dim), jnp.asarray(shift * direction)
    f = logcosh_well(q, eps)
    grad = jax.grad(f)
    eta = eta_scale / logcosh_constants(eps, 0.0)[1]
    rows = []
    for delta in deltas:
        stages = int(round(1.0 / delta))
        errors = np.asarray(moving_minimiser_errors(grad, c0, c1, stages, m, eta))
        jump = shift / stages
        bound, radius = logcosh_tracking_bound(jump, eta, m, eps)
        rows.append(dict(delta=delta, jump=jump, max_error=float(errors.max()), final_error=float(errors[-1, -1]),
                         bound=bound, radius=radius, errors=errors))
    return rows


@_x64
def relu_toy(deltas: Sequence[float], *, total_steps: int = 1000, eta: float = 1.0, w0: float = 1.0,
             w1: float = -1.0, target_a: float = 1.0, target_b: float = 0.5, num_inputs: int = 41) -> list[dict]:
    """One ReLU unit fitted by GD while the target's output weight turns from w₀ to w₁.

    Inputs: ``num_inputs`` points on [-1, 1]. The unit starts at the target (w₀, a*, b*). Every
    arm trains ``total_steps`` steps, in 1/Δ stages (Δ = 1: abrupt). The abrupt jump makes a huge
    error whose first gradient step pushes a·x + b below 0 on every input: the unit is dead,
    its gradient is 0 from then on and the loss stays. Small jumps keep the error small and the
    unit alive, and it follows the target to w₁. Per Δ: final loss on the final target, the
    largest pre-activation over inputs (≤ 0: dead), and the loss curve.
    """
    for delta in deltas:
        if total_steps % int(round(1.0 / delta)):
            raise ValueError(f"1/Δ = {1.0 / delta:g} must divide total_steps = {total_steps}")
    x = jnp.linspace(-1.0, 1.0, num_inputs)
    theta0 = jnp.array([w0, target_a, target_b])
    rows = []
    for delta in deltas:
        stages = int(round(1.0 / delta))
        theta, losses = relu_toy_path(x, theta0, target_a, target_b, w0, w1, stages, total_steps // stages, eta)
        target = relu_unit(jnp.array([w1, target_a, target_b]), x)
        final = 0.5 * jnp.mean(jnp.square(relu_unit(theta, x) - target))
        pre = float(jnp.max(theta[1] * x + theta[2]))
        rows.append(dict(delta=delta, final_loss=float(final), max_preactivation=pre, dead=pre <= 0.0,
                         theta=np.asarray(theta), losses=np.asarray(losses)))
    return rows


def _unit_vector(dim: int, seed: int) -> np.ndarray:
    """A fixed random unit vector: the double well's axis u, not aligned with a coordinate."""
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


@_x64
def double_well_convergence(*, s: float = 4.0, kappa: float = -1.0, dim: int = 2, r0_frac: float = 0.9,
                            eta_scale: float = 0.5, side: float = -1.0, num_steps: int = 30, seed: int = 0) -> dict:
    """GD with η = eta_scale/β on :func:`double_well` from x₀ = c + side·r0·u, r0 = r0_frac·r*.

    side = -1 starts towards the barrier, where the curvature is lowest (the lemma's worst case).
    Lemma 4.3 predicts every iterate in B(c, r0) and every step's ratio ≤ q(r0) = 1 - ημ(r0);
    near c the ratio tends to |1 - ηφ''(0)|. As in :func:`logcosh_convergence`, keep
    ``num_steps`` short enough that ‖x_T - c‖ stays far above rounding.
    """
    u = _unit_vector(dim, seed)
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=dim))
    r_star = double_well_radius(s, kappa)
    r0 = r0_frac * r_star
    mu, beta = float(double_well_mu(s, kappa, r0)), DOUBLE_WELL_BETA
    eta = eta_scale / beta
    f = double_well(jnp.asarray(u), s, kappa)
    x0 = c + side * r0 * jnp.asarray(u)
    dist = np.asarray(jnp.linalg.norm(gd_path(jax.grad(lambda x: f(x, c)), x0, eta, num_steps) - c, axis=-1))
    ratios = np.divide(dist[1:], dist[:-1], out=np.zeros(num_steps), where=dist[:-1] > 0)
    return dict(distances=dist, max_distance=float(dist.max()), radius=r0, lemma_radius=r_star,
                worst_ratio=float(ratios.max()), bound=float(contraction_bound(mu, beta, eta)),
                final_ratio=float(ratios[-1]),
                asymptotic_rate=float(abs(1.0 - eta * double_well_curvature(0.0, s, kappa))),
                mu=mu, beta=beta, eta=eta)


@_x64
def double_well_escape(*, s: float = 4.0, kappa: float = -1.0, dim: int = 2, eta_scale: float = 0.5,
                       num_steps: int = 500, tol: float = 1e-10, seed: int = 0) -> dict:
    """The largest jump GD comes back from on :func:`double_well`, against the lemma's r*.

    GD (η = eta_scale/β, ``num_steps`` steps) starts at c - ρu, i.e. the minimiser jumped by ρ
    away from the second well's side; it "returns" when it ends within r* of c (inside the
    lemma's domain, from which convergence is proved). The switch point in ρ is found by
    bisection on [0, s] (GD from -su ends in the second well). The lemma guarantees a return for
    every ρ < r*, so the measured escape radius must be ≥ r*; in 1-D along u it equals the
    barrier's distance |z_b| (:func:`double_well_stationary_points`).
    """
    u = jnp.asarray(_unit_vector(dim, seed))
    c = jnp.asarray(np.random.default_rng(seed + 1).normal(size=dim))
    r_star = double_well_radius(s, kappa)
    eta = eta_scale / DOUBLE_WELL_BETA
    grad = jax.grad(double_well(u, s, kappa))

    @jax.jit
    def final_distance(rho):
        path = gd_path(lambda x: grad(x, c), c - rho * u, eta, num_steps)
        return jnp.linalg.norm(path[-1] - c)

    escape = bisect_threshold(lambda rho: float(final_distance(rho)) < r_star, 0.0, s, tol)
    points = double_well_stationary_points(s, kappa)
    return dict(lemma_radius=r_star, escape_radius=escape, barrier=abs(points["barrier"]),
                other_well=abs(points["well"]), eta=eta, num_steps=num_steps, tol=tol)


@_x64
def double_well_tracking(deltas: Sequence[float], *, s: float = 4.0, kappa: float = -1.0, dim: int = 2,
                         shift: float = 3.5, eta_scale: float = 0.5, total_steps: int = 200,
                         seed: int = 0) -> list[dict]:
    """Track the minimiser of :func:`double_well` moving by ``shift`` along +u in 1/Δ jumps.

    Every arm runs ``total_steps`` GD steps (η = eta_scale/β), m = total_steps·Δ per stage,
    from x = c₀. Each jump δ = Δ·shift pushes the iterate towards the second well. Per Δ: the
    errors, the tracking corollary's bound B(r) with its radius r < r* (NaN when no r < r* is
    valid: nothing is certified, as for any jump ≥ r*), the bound q(r)^m·B(r) on the error at the
    end of every stage, and the distance of the other well (where an arm that escaped ends).
    """
    for delta in deltas:
        if total_steps % int(round(1.0 / delta)):
            raise ValueError(f"1/Δ = {1.0 / delta:g} must divide total_steps = {total_steps}")
    u = jnp.asarray(_unit_vector(dim, seed))
    c0 = jnp.zeros(dim)
    c1 = c0 + shift * u
    grad = jax.grad(double_well(u, s, kappa))
    beta = DOUBLE_WELL_BETA
    eta = eta_scale / beta
    r_star = double_well_radius(s, kappa)
    points = double_well_stationary_points(s, kappa)
    contraction = lambda r: contraction_bound(double_well_mu(s, kappa, r), beta, eta)
    rows = []
    for delta in deltas:
        stages = int(round(1.0 / delta))
        m = total_steps // stages
        errors = np.asarray(moving_minimiser_errors(grad, c0, c1, stages, m, eta))
        jump = shift / stages
        bound, radius = smallest_tracking_radius(jump, contraction, m, r_star)
        certified = bool(np.isfinite(bound))
        final_bound = float(contraction(radius) ** m * bound) if certified else float("nan")
        rows.append(dict(delta=delta, stages=stages, m=m, jump=jump, errors=errors, max_error=float(errors.max()),
                         final_error=float(errors[-1, -1]), bound=bound, radius=radius, final_bound=final_bound,
                         certified=certified, lemma_radius=r_star, barrier=abs(points["barrier"]),
                         other_well=abs(points["well"])))
    return rows


# --------------------------------------------------------------------------- report
def _row(experiment, case, quantity, predicted, measured, holds, delta=np.nan):
    return dict(experiment=experiment, case=case, quantity=quantity, delta=delta, predicted=predicted,
                measured=measured, holds=holds)


QUADRATIC_CASES = {
    # name: (eigenvalues, η, steps); the first has η = 1/β (1 - ημ binds), the second η > 1/β
    # with λ_max binding (|1 - ηβ| > 1 - ημ), still converging since η < 2/β.
    "quadratic, eta=1/beta": ((0.5, 1.0, 2.0, 4.0), 0.25, 100),
    "quadratic, eta>1/beta (lambda_max binds)": ((1.0, 2.0, 3.5), 0.5, 40),
}
TRACKING_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)
RELU_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05)
# the double well: s = 4, κ = -1 gives r* ≈ 1.59 and a barrier at ≈ 2.33; a shift of 3.5 in
# halves (1.75) is beyond r* but below the barrier, in quarters or finer it is certified.
DOUBLE_WELL = dict(s=4.0, kappa=-1.0, dim=2, eta_scale=0.5)
DOUBLE_WELL_SHIFT = 3.5
DOUBLE_WELL_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05)


def double_well_rows(conv: dict, escape: dict, tracking: list[dict], case: str, *,
                     rate_tol: float = 1e-3, point_tol: float = 1e-6, rounding: float = 1e-12) -> list[dict]:
    """The double well's rows (experiment "double_well"): the lemma inside the basin (distance
    ≤ r0, every step's ratio ≤ 1 - ημ(r0), asymptotic rate within ``rate_tol``), the escape
    radius (≥ the lemma's r*; = the barrier within ``point_tol``), and per Δ the tracking bounds
    where certified (NaN predicted, empty holds where not) and, for arms whose jump exceeds the
    barrier, the final distance against the other well's (within ``point_tol``).

    The tracking bounds are compared with an absolute slack ``rounding``: in float64 a distance
    between points of size ~1-10 is only known to ~1e-15, while the proved end-of-stage bound
    q^m·B can be far smaller, and the worst-case bound B can equal the jump to ~1e-14."""
    rows = [
        _row("double_well", case, "max_distance_vs_radius", conv["radius"], conv["max_distance"],
             conv["max_distance"] <= conv["radius"]),
        _row("double_well", case, "worst_step_rate_vs_bound", conv["bound"], conv["worst_ratio"],
             conv["worst_ratio"] <= conv["bound"]),
        _row("double_well", case, "asymptotic_rate", conv["asymptotic_rate"], conv["final_ratio"],
             abs(conv["final_ratio"] - conv["asymptotic_rate"]) <= rate_tol),
        _row("double_well", "escape from a jump", "escape_radius_vs_lemma_radius", escape["lemma_radius"],
             escape["escape_radius"], escape["escape_radius"] >= escape["lemma_radius"]),
        _row("double_well", "escape from a jump", "escape_radius_vs_barrier", escape["barrier"],
             escape["escape_radius"], abs(escape["escape_radius"] - escape["barrier"]) <= point_tol),
    ]
    for t in tracking:
        arm = "abrupt" if t["stages"] == 1 else "gradual"
        ok = t["certified"]
        rows.append(_row("double_well", arm, "max_tracking_error", t["bound"], t["max_error"],
                         t["max_error"] <= t["bound"] + rounding if ok else pd.NA, t["delta"]))
        rows.append(_row("double_well", arm, "final_distance", t["final_bound"], t["final_error"],
                         t["final_error"] <= t["final_bound"] + rounding if ok else pd.NA, t["delta"]))
        if t["jump"] > t["barrier"]:
            rows.append(_row("double_well", arm, "final_distance_vs_other_well", t["other_well"], t["final_error"],
                             abs(t["final_error"] - t["other_well"]) <= point_tol, t["delta"]))
    return rows


def run_theory(out_dir, *, rate_tol: float = 1e-6) -> pd.DataFrame:
    """Run the four checks, write ``theory.csv`` and ``theory.png`` to ``out_dir``, return the table.

    Columns: experiment, case, quantity, delta (NaN where not swept), predicted (NaN where the
    theory predicts nothing), measured, holds (whether the prediction holds: equality within
    ``rate_tol`` for exact rates, ≤ for bounds, ≥ for the escape radius; empty where nothing is
    predicted).
    """
    os.makedirs(out_dir, exist_ok=True)
    rows, curves = [], {}
    for case, (eig, eta, steps) in QUADRATIC_CASES.items():
        res = quadratic_convergence(eig, eta, steps)
        curves[case] = res
        rows.append(_row("convergence", case, "asymptotic_rate", res["predicted"], res["measured"],
                         abs(res["measured"] - res["predicted"]) <= rate_tol))
        if eta <= 1.0 / res["beta"]:  # the lemma's step condition
            rows.append(_row("convergence", case, "lemma_rate_1-eta*mu", res["lemma_rate"], res["measured"],
                             res["measured"] <= res["lemma_rate"] + rate_tol))
    lc = logcosh_convergence()
    case = "log-cosh well, eta=0.5/beta"
    curves[case] = lc
    rows += [
        _row("convergence", case, "max_distance_vs_radius", lc["radius"], lc["max_distance"],
             lc["max_distance"] <= lc["radius"]),
        _row("convergence", case, "worst_step_rate_vs_bound", lc["bound"], lc["worst_ratio"],
             lc["worst_ratio"] <= lc["bound"]),
        _row("convergence", case, "asymptotic_rate", lc["asymptotic_rate"], lc["final_ratio"],
             abs(lc["final_ratio"] - lc["asymptotic_rate"]) <= 1e-3),
    ]
    tracking = tracking_experiment(TRACKING_DELTAS)
    for t in tracking:
        rows.append(_row("tracking", "log-cosh well, m=2", "max_tracking_error", t["bound"], t["max_error"],
                         t["max_error"] <= t["bound"], t["delta"]))
    toy = relu_toy(RELU_DELTAS)
    for t in toy:
        case = "abrupt" if t["delta"] == 1.0 else "gradual"
        rows.append(_row("relu_toy", case, "final_loss", np.nan, t["final_loss"], pd.NA, t["delta"]))
        rows.append(_row("relu_toy", case, "max_preactivation", np.nan, t["max_preactivation"], pd.NA, t["delta"]))
    dw_conv = double_well_convergence(**DOUBLE_WELL)
    case = f"double well, eta={DOUBLE_WELL['eta_scale']:g}/beta, r0=0.9r*"
    curves[case] = dw_conv
    dw_escape = double_well_escape(**DOUBLE_WELL)
    dw_tracking = double_well_tracking(DOUBLE_WELL_DELTAS, shift=DOUBLE_WELL_SHIFT, **DOUBLE_WELL)
    rows += double_well_rows(dw_conv, dw_escape, dw_tracking, case)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["holds"] = table["holds"].astype("boolean")
    table.to_csv(os.path.join(out_dir, "theory.csv"), index=False)
    plot_theory(curves, tracking, toy, os.path.join(out_dir, "theory.png"), double_well=(dw_tracking, dw_escape))
    return table


def stage_curve(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(GD step, distance) for a [stages, m + 1] error array as one sawtooth: each stage's
    column 0 (right after the jump) shares the step index of the previous stage's end, so the
    jumps draw as vertical lines."""
    stages, width = errors.shape
    m = width - 1
    steps = np.arange(stages)[:, None] * m + np.arange(width)[None, :]
    return steps.reshape(-1), errors.reshape(-1)


def plot_theory(curves: dict, tracking: list[dict], toy: list[dict], path, double_well=None) -> None:
    """Panels: convergence with predicted rate lines, tracking error vs Δ, the ReLU toy, and
    (given ``double_well`` = (tracking rows, escape result)) the double well's distance to the
    moving minimiser, gradual vs abrupt, against the lemma's radius and the barrier. That panel
    is linear in the distance: the story is which side of r* and the barrier each arm stays on;
    the decay rates are the first panel's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if double_well is None:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    else:
        fig, axes = plt.subplots(2, 2, figsize=(13, 9))
        axes = axes.reshape(-1)
    ax = axes[0]
    for (name, res), color in zip(curves.items(), ("C0", "C1", "C2", "C3", "C4")):
        d = res["distances"]
        t = np.arange(len(d))
        ax.semilogy(t, d, color=color, label=name)
        if "predicted" in res:  # exact asymptotic rate, anchored at the last point
            ax.semilogy(t, d[-1] * res["predicted"] ** (t - t[-1]), "-", color=color, lw=5, alpha=0.25,
                        label=f"predicted rate {res['predicted']:.3f}")
        else:  # the lemma's worst-case bound from the start
            ax.semilogy(t, d[0] * res["bound"] ** t, ":", color=color, lw=1,
                        label=f"bound (1-ημ(r))^t, {res['bound']:.3f}")
    ax.set(xlabel="GD step", ylabel="‖x_t - c‖", title="Lemma 4.3: linear convergence")
    ax.legend(fontsize=7)

    ax = axes[1]
    deltas = [t["delta"] for t in tracking]
    ax.loglog(deltas, [t["max_error"] for t in tracking], "o-", label="measured max ‖x - c_s‖")
    ax.loglog(deltas, [t["bound"] for t in tracking], "s--", label="bound δ/(1-q(r)^m)")
    ax.loglog(deltas, [t["jump"] for t in tracking], ":", color="gray", label="jump δ")
    ax.set(xlabel="step size Δ", ylabel="distance to current minimiser", title="Tracking a moving minimiser")
    ax.legend(fontsize=7)

    ax = axes[2]
    for t in toy:
        label = f"Δ={t['delta']:g}" + (" (abrupt)" if t["delta"] == 1.0 else "") + (", dead" if t["dead"] else "")
        ax.semilogy(np.maximum(t["losses"], 1e-16), label=label)
    ax.set(xlabel="GD step", ylabel="loss vs current target (floor 1e-16)",
           title="One ReLU unit: abrupt vs gradual")
    ax.legend(fontsize=7)

    if double_well is not None:
        dw_tracking, escape = double_well
        ax = axes[3]
        for t in dw_tracking:
            steps, dist = stage_curve(t["errors"])
            label = (f"Δ={t['delta']:g}, jump {t['jump']:.3g}" + (" (abrupt)" if t["stages"] == 1 else "")
                     + (", certified" if t["certified"] else ", not certified"))
            ax.plot(steps, dist, label=label, lw=1.2)
        ax.axhline(escape["lemma_radius"], color="k", ls="--", lw=1,
                   label=f"lemma radius r* = {escape['lemma_radius']:.3f}")
        ax.axhline(escape["escape_radius"], color="k", ls=":", lw=1,
                   label=f"measured escape radius {escape['escape_radius']:.3f}")
        ax.axhline(escape["other_well"], color="gray", ls="-.", lw=1,
                   label=f"other well at {escape['other_well']:.3f}")
        top = max(escape["other_well"], max(t["max_error"] for t in dw_tracking))
        ax.set(xlabel="GD step", ylabel="‖x - c_s‖ (distance to the current minimiser)", ylim=(0, 1.5 * top),
               title=f"Double well: minimiser moves by {dw_tracking[0]['jump'] * dw_tracking[0]['stages']:g}, "
                     "gradual vs abrupt")
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
