"""Lemma 4.3 and its tracking corollary, each checked on one setting.

Every check runs GD on an objective of :mod:`gradual_jax.theory.functions` and returns a dict
with what it measured next to what :mod:`gradual_jax.theory.tracking` predicts:

- convergence inside a strongly convex domain: :func:`quadratic_convergence` (the exact rate),
  :func:`logcosh_convergence` and :func:`double_well_convergence` (the lemma's radius and rate);
- tracking a minimiser that moves in 1/Δ jumps: :func:`logcosh_tracking` and
  :func:`double_well_tracking`, where every jump pushes the iterate towards the second well:
  jumps below r* (more precisely, those with a valid tracking radius r < r*) are provably
  tracked, and a jump beyond the barrier lands GD in the other well;
- :func:`double_well_escape`: the lemma's r* is sufficient, not necessary; the largest jump GD
  returns from, found by bisection, is the barrier's distance, > r*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradual_jax.envs import schedules
from gradual_jax.theory.functions import (
    DOUBLE_WELL_BETA,
    double_well,
    double_well_curvature,
    double_well_mu,
    double_well_radius,
    double_well_stationary_points,
    logcosh_constants,
    logcosh_well,
    quadratic,
    random_rotation,
    random_unit_vector,
)
from gradual_jax.theory.tracking import (
    contraction_bound,
    gd_path,
    in_float64,
    logcosh_tracking_bound,
    moving_minimiser_errors,
    smallest_tracking_radius,
    spectral_rate,
)


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


# --------------------------------------------------------------------------- convex objectives
@in_float64
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


@in_float64
def logcosh_convergence(dim: int = 4, eps: float = 0.05, r0: float = 3.0, eta_scale: float = 0.5,
                        num_steps: int = 40, seed: int = 0) -> dict:
    """GD with η = eta_scale/β on :func:`~gradual_jax.theory.functions.logcosh_well` from
    ‖x₀-c‖ = r0 (the domain's radius).

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


@in_float64
def logcosh_tracking(deltas: Sequence[float], *, dim: int = 4, eps: float = 0.05, shift: float = 4.0,
                     eta_scale: float = 0.5, m: int = 2, seed: int = 0) -> list[dict]:
    """Track the minimiser of :func:`~gradual_jax.theory.functions.logcosh_well` moving by
    ``shift`` in 1/Δ jumps, m GD steps (η = eta_scale/β) per jump; per Δ: the measured worst
    distance and the proved bound."""
    q = jnp.asarray(random_rotation(dim, seed + 1))
    direction = np.ones(dim) / np.sqrt(dim)
    c0, c1 = jnp.zeros(dim), jnp.asarray(shift * direction)
    f = logcosh_well(q, eps)
    grad = jax.grad(f)
    eta = eta_scale / logcosh_constants(eps, 0.0)[1]
    rows = []
    for delta in deltas:
        stages = schedules.one_over(float(delta))
        errors = np.asarray(moving_minimiser_errors(grad, c0, c1, stages, m, eta))
        jump = shift / stages
        bound, radius = logcosh_tracking_bound(jump, eta, m, eps)
        rows.append(dict(delta=delta, jump=jump, max_error=float(errors.max()), final_error=float(errors[-1, -1]),
                         bound=bound, radius=radius, errors=errors))
    return rows


# --------------------------------------------------------------------------- the double well
@in_float64
def double_well_convergence(*, s: float = 4.0, kappa: float = -1.0, dim: int = 2, r0_frac: float = 0.9,
                            eta_scale: float = 0.5, side: float = -1.0, num_steps: int = 30, seed: int = 0) -> dict:
    """GD with η = eta_scale/β on :func:`~gradual_jax.theory.functions.double_well` from
    x₀ = c + side·r0·u, r0 = r0_frac·r*.

    side = -1 starts towards the barrier, where the curvature is lowest (the lemma's worst case).
    Lemma 4.3 predicts every iterate in B(c, r0) and every step's ratio ≤ q(r0) = 1 - ημ(r0);
    near c the ratio tends to |1 - ηφ''(0)|. As in :func:`logcosh_convergence`, keep
    ``num_steps`` short enough that ‖x_T - c‖ stays far above rounding.
    """
    u = random_unit_vector(dim, seed)
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


@in_float64
def double_well_escape(*, s: float = 4.0, kappa: float = -1.0, dim: int = 2, eta_scale: float = 0.5,
                       num_steps: int = 500, tol: float = 1e-10, seed: int = 0) -> dict:
    """The largest jump GD comes back from on :func:`~gradual_jax.theory.functions.double_well`,
    against the lemma's r*.

    GD (η = eta_scale/β, ``num_steps`` steps) starts at c - ρu, i.e. the minimiser jumped by ρ
    away from the second well's side; it "returns" when it ends within r* of c (inside the
    lemma's domain, from which convergence is proved). The switch point in ρ is found by
    bisection on [0, s] (GD from -su ends in the second well). The lemma guarantees a return for
    every ρ < r*, so the measured escape radius must be ≥ r*; in 1-D along u it equals the
    barrier's distance |z_b| (:func:`~gradual_jax.theory.functions.double_well_stationary_points`).
    """
    u = jnp.asarray(random_unit_vector(dim, seed))
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


@in_float64
def double_well_tracking(deltas: Sequence[float], *, s: float = 4.0, kappa: float = -1.0, dim: int = 2,
                         shift: float = 3.5, eta_scale: float = 0.5, total_steps: int = 200,
                         seed: int = 0) -> list[dict]:
    """Track the minimiser of :func:`~gradual_jax.theory.functions.double_well` moving by
    ``shift`` along +u in 1/Δ jumps.

    Every arm runs ``total_steps`` GD steps (η = eta_scale/β), m = total_steps·Δ per stage,
    from x = c₀. Each jump δ = Δ·shift pushes the iterate towards the second well. Per Δ: the
    errors, the tracking corollary's bound B(r) with its radius r < r* (NaN when no r < r* is
    valid: nothing is certified, as for any jump ≥ r*), the bound q(r)^m·B(r) on the error at the
    end of every stage, and the distance of the other well (where an arm that escaped ends).
    """
    for delta in deltas:
        if total_steps % schedules.one_over(float(delta)):
            raise ValueError(f"1/Δ = {1.0 / delta:g} must divide total_steps = {total_steps}")
    u = jnp.asarray(random_unit_vector(dim, seed))
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
        stages = schedules.one_over(float(delta))
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
