"""The paper's Section 4 (Lemma 4.3 and its tracking story), checked numerically.

What is proved here (the version of Lemma 4.3 that these checks test). Let f be C², β-smooth,
with minimiser c, and μ-strongly convex on the ball B(c, r) (an (r, μ)-locally strongly convex
domain). Let 0 < η ≤ 1/β and x₀ ∈ B(c, r). Then every gradient descent iterate stays in
B(c, r) and ‖x_{t+1} - c‖ ≤ q‖x_t - c‖ with q = 1 - ημ.
Proof: x_{t+1} - c = (I - ηH̄)(x_t - c) with H̄ = ∫₀¹ ∇²f(c + s(x_t - c)) ds; the segment lies in
the (convex) ball, so μI ⪯ H̄ ⪯ βI and ‖I - ηH̄‖ ≤ max(|1 - ημ|, |1 - ηβ|) = 1 - ημ; the
distance shrinks, so the next iterate is in the ball again (induction). On a quadratic
½(x-c)ᵀA(x-c), H̄ = A and the asymptotic rate is exactly max_i |1 - ηλ_i| (any η).
(PAPER.md writes the lemma's step condition as η ≤ min(1/β, …); 1/β is all this proof needs.)

Tracking corollary (checked by :func:`tracking_experiment`). The minimiser moves from c₀ to c₁
in S = 1/Δ equal jumps of size δ = Δ‖c₁ - c₀‖, with m GD steps on each f_s(x) = g(x - c_s),
starting at x = c₀. If some r satisfies B(r) := δ / (1 - q(r)^m) ≤ r, then every iterate, the
one right after each jump included, is within B(r) of the current minimiser.
Proof: let a_s be the error at the end of stage s, a₀ = 0. If a_{s-1} ≤ q^m δ/(1 - q^m), the
error right after the jump is ≤ a_{s-1} + δ ≤ δ/(1 - q^m) = B(r) ≤ r, so it is in the ball and
the m steps contract it by q each: a_s ≤ q^m B(r) = q^m δ/(1 - q^m). The bound grows linearly
in δ, so finer steps track more closely; an abrupt jump (Δ = 1) may exceed every such r: then
nothing keeps GD in the basin, which is the paper's story and :func:`relu_toy`'s picture.

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


def run_theory(out_dir, *, rate_tol: float = 1e-6) -> pd.DataFrame:
    """Run the three checks, write ``theory.csv`` and ``theory.png`` to ``out_dir``, return the table.

    Columns: experiment, case, quantity, delta (NaN where not swept), predicted (NaN where the
    theory predicts nothing), measured, holds (whether the prediction holds: equality within
    ``rate_tol`` for exact rates, ≤ for bounds; empty where nothing is predicted).
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
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["holds"] = table["holds"].astype("boolean")
    table.to_csv(os.path.join(out_dir, "theory.csv"), index=False)
    plot_theory(curves, tracking, toy, os.path.join(out_dir, "theory.png"))
    return table


def plot_theory(curves: dict, tracking: list[dict], toy: list[dict], path) -> None:
    """Three panels: convergence with predicted rate lines, tracking error vs Δ, the ReLU toy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for (name, res), color in zip(curves.items(), ("C0", "C1", "C2")):
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
