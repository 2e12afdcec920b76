"""Lemma 4.3 and its tracking corollary, checked numerically; the ReLU toy; the report."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from gradual_jax.theory import checks, experiment, functions, relu, tracking


def test_quadratic_contraction_equals_the_spectral_rate():
    # η = 1/β: every 1 - ηλ_i ≥ 0, the smallest eigenvalue binds and the rate is 1 - ημ
    res = checks.quadratic_convergence((0.5, 1.0, 2.0, 4.0), eta=0.25, num_steps=100)
    assert res["predicted"] == pytest.approx(max(abs(1 - 0.25 * lam) for lam in (0.5, 1.0, 2.0, 4.0)))
    assert abs(res["measured"] - res["predicted"]) <= 1e-6
    assert abs(res["measured"] - (1 - 0.25 * 0.5)) <= 1e-6
    # 1/β < η < 2/β: |1 - ηλ_max| = 0.75 binds, not 1 - ημ = 0.5
    res = checks.quadratic_convergence((1.0, 2.0, 3.5), eta=0.5, num_steps=40, seed=3)
    assert res["predicted"] == pytest.approx(0.75) and res["lemma_rate"] == pytest.approx(0.5)
    assert abs(res["measured"] - 0.75) <= 1e-6
    # the distance never grows (a contraction at every step when η ≤ 1/β)
    res = checks.quadratic_convergence((0.3, 1.0, 2.5), eta=0.4, num_steps=60, seed=1)
    assert np.all(np.diff(res["distances"]) <= 0)
    assert abs(res["measured"] - (1 - 0.4 * 0.3)) <= 1e-6
    assert jnp.ones(1).dtype == jnp.float32  # float64 only inside the context


@pytest.mark.parametrize("seed,r0,eta_scale,steps", [(0, 3.0, 0.5, 40), (1, 5.0, 1.0, 12), (2, 2.0, 0.8, 30)])
def test_log_cosh_iterates_stay_in_the_ball_and_contract_at_the_lemma_rate(seed, r0, eta_scale, steps):
    res = checks.logcosh_convergence(dim=5, r0=r0, eta_scale=eta_scale, num_steps=steps, seed=seed)
    d = res["distances"]
    assert d[0] == pytest.approx(r0)
    assert res["max_distance"] <= r0 * (1 + 1e-12)
    assert np.all(d[1:] <= d[:-1])
    live = d[:-1] > 1e-10  # ratios of distances at rounding level mean nothing
    assert np.all(d[1:][live] / d[:-1][live] <= res["bound"])
    assert d[-1] <= d[0] * res["bound"] ** steps  # linear convergence at the predicted rate or faster
    assert res["bound"] == pytest.approx(1 - res["eta"] * (1 / np.cosh(r0) ** 2 + 0.05))


def test_tracking_error_is_within_the_bound_and_grows_with_delta():
    deltas = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)
    rows = checks.logcosh_tracking(deltas)
    errors = [r["max_error"] for r in rows]
    for r in rows:
        assert r["jump"] <= r["max_error"] <= r["bound"] <= r["radius"]
    assert all(a > b for a, b in zip(errors, errors[1:]))  # Δ descending: error descending
    assert rows[-1]["bound"] < 1.05 * rows[-1]["max_error"]  # and tight for fine steps


def test_tracking_on_a_quadratic_is_within_delta_over_one_minus_q_to_the_m():
    with jax.enable_x64(True):
        a = jnp.diag(jnp.array([0.2, 1.0, 2.0]))
        grad = jax.grad(functions.quadratic(a))
        eta, m, c1 = 0.5, 3, jnp.array([3.0, -1.0, 2.0])
        for stages in (2, 5, 20):
            errors = np.asarray(tracking.moving_minimiser_errors(grad, jnp.zeros(3), c1, stages, m, eta))
            jump = float(jnp.linalg.norm(c1)) / stages
            q = tracking.spectral_rate([0.2, 1.0, 2.0], eta)
            assert errors.max() <= tracking.tracking_bound(jump, q, m) * (1 + 1e-12)
            assert errors[0, 0] == pytest.approx(jump)  # first jump from a converged start


def test_relu_toy_abrupt_dies_gradual_tracks():
    abrupt, half, fine, finer = relu.relu_toy((1.0, 0.5, 0.1, 0.05))
    assert abrupt["dead"] and abrupt["max_preactivation"] <= 0
    # dead: the loss is frozen at its value just after the jump
    assert np.ptp(abrupt["losses"][1:]) == 0.0
    for g in (fine, finer):
        assert not g["dead"] and g["max_preactivation"] > 0
        assert g["final_loss"] < 1e-10
        assert abrupt["final_loss"] > 1e6 * g["final_loss"]
        assert g["theta"][0] < 0  # the output weight turned with the target's
    assert len(abrupt["losses"]) == len(finer["losses"]) == 1000  # same compute per arm


DW = dict(s=4.0, kappa=-1.0)


def _profile(s, kappa, dim, seed=0):
    """g along the axis: z ↦ g(c + zu + y) for a fixed c and a fixed y ⊥ u (jax, float64)."""
    u = jnp.asarray(functions.random_unit_vector(dim, seed))
    f = functions.double_well(u, s, kappa)
    c = jnp.asarray(np.random.default_rng(seed + 7).normal(size=dim))
    y = jnp.asarray(np.random.default_rng(seed + 8).normal(size=dim))
    y = y - (u @ y) * u
    return f, u, c, y


def test_double_well_constants_match_the_hand_computation():
    # s = 4, κ = -1: ℓ₀ = -9, ℓ_c = 2 arccosh(2) = 2 log(2 + √3), r* = (9 - ℓ_c)/4
    lc = 2 * np.log(2 + np.sqrt(3))
    assert functions.double_well_logit0(**DW) == -9.0
    assert functions.double_well_radius(**DW) == pytest.approx((9 - lc) / 4, rel=1e-14)
    assert functions.double_well_mu(r=0.0, **DW) == pytest.approx(1 - 4 / np.cosh(4.5) ** 2, rel=1e-14)
    r_star = functions.double_well_radius(**DW)
    assert abs(functions.double_well_mu(r=r_star, **DW)) < 1e-12  # the curvature vanishes at -r*
    assert functions.double_well_mu(r=0.999 * r_star, **DW) > 0 > functions.double_well_mu(r=1.001 * r_star, **DW)
    r = np.linspace(0, 3, 301)
    assert np.all(np.diff(functions.double_well_mu(r=r, **DW)) <= 0)  # μ(r) shrinks with the ball
    with pytest.raises(ValueError):
        functions.double_well_radius(s=2.0, kappa=0.0)  # s ≤ 2: convex, no second well
    with pytest.raises(ValueError):
        functions.double_well_radius(s=4.0, kappa=7.0)  # the minimiser's own curvature is negative


@pytest.mark.parametrize("s,kappa,dim", [(4.0, -1.0, 2), (3.0, 0.0, 1), (5.0, -2.0, 3)])
def test_double_well_curvature_is_within_beta_and_mu_by_finite_differences(s, kappa, dim):
    with jax.enable_x64(True):
        f, u, c, y = _profile(s, kappa, dim)
        grad, hess = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
        assert float(jnp.linalg.norm(grad(c, c))) < 1e-14  # c is a stationary point
        r_star = functions.double_well_radius(s, kappa)
        h = 1e-4
        phi = jax.jit(jax.vmap(lambda z: f(c + z * u, c)))
        # the numpy profile φ', φ'' agrees with jax's derivatives of f
        z = jnp.linspace(-2 * s, s, 301)
        slope = jax.jit(jax.vmap(lambda t: u @ grad(c + t * u, c)))(z)
        np.testing.assert_allclose(slope, functions.double_well_slope(np.asarray(z), s, kappa), atol=1e-12)
        curv = jax.jit(jax.vmap(lambda t: u @ hess(c + t * u, c) @ u))(z)
        np.testing.assert_allclose(curv, functions.double_well_curvature(np.asarray(z), s, kappa), atol=1e-12)
        # central second differences: ≤ β = 1 everywhere, ≥ μ(r) on [-r, r], and μ(r) is attained
        wide = jnp.linspace(-3 * s, 3 * s, 4001)
        fd = (phi(wide + h) - 2 * phi(wide) + phi(wide - h)) / h**2
        assert float(fd.max()) <= functions.DOUBLE_WELL_BETA + 1e-5
        assert float(fd.min()) < 0  # there is a region of negative curvature
        for frac in (0.3, 0.7, 0.99):
            r = frac * r_star
            zr = jnp.linspace(-r, r, 2001)
            fd = (phi(zr + h) - 2 * phi(zr) + phi(zr - h)) / h**2
            mu = functions.double_well_mu(s, kappa, r)
            assert float(fd.min()) >= mu - 1e-5 and float(fd.min()) == pytest.approx(mu, abs=1e-5)
        # Hessian eigenvalues at random points of B(c, r): in [μ(r), β], ⊥ directions at exactly 1
        rng = np.random.default_rng(1)
        r = 0.9 * r_star
        v = rng.normal(size=(20, dim))
        xs = c + jnp.asarray(v / np.linalg.norm(v, axis=1, keepdims=True) * r * rng.uniform(size=(20, 1)) ** (1 / dim))
        eig = np.linalg.eigvalsh(np.asarray(jax.vmap(hess, (0, None))(xs, c)))
        assert eig.min() >= functions.double_well_mu(s, kappa, r) - 1e-12 and eig.max() <= 1 + 1e-12
        if dim > 1:  # off the axis the ⊥ curvature is 1
            assert float(y @ hess(c + y - r * u, c) @ y) == pytest.approx(float(y @ y), rel=1e-10)
    points = functions.double_well_stationary_points(s, kappa)
    assert points["well"] < points["barrier"] < -r_star
    assert points["barrier_curvature"] < 0 < points["well_curvature"]
    assert abs(functions.double_well_slope(points["barrier"], s, kappa)) < 1e-12


@pytest.mark.parametrize("side,r0_frac,eta_scale,steps", [(-1, 0.9, 0.5, 30), (-1, 0.99, 1.0, 6), (1, 0.9, 0.5, 30),
                                                          (-1, 0.5, 0.8, 15)])
def test_gd_in_the_double_well_basin_stays_and_contracts_at_the_lemma_rate(side, r0_frac, eta_scale, steps):
    res = checks.double_well_convergence(r0_frac=r0_frac, eta_scale=eta_scale, side=side, num_steps=steps, **DW)
    d = res["distances"]
    assert d[0] == pytest.approx(res["radius"])
    assert res["radius"] < res["lemma_radius"]
    assert res["max_distance"] <= res["radius"] * (1 + 1e-12)  # never leaves B(c, r0)
    live = d[:-1] > 1e-10
    assert np.all(d[1:][live] / d[:-1][live] <= res["bound"])  # every step at least as fast as 1 - ημ(r0)
    assert d[-1] <= d[0] * res["bound"] ** steps + 1e-14
    assert res["bound"] == pytest.approx(1 - res["eta"] * functions.double_well_mu(r=res["radius"], **DW))
    if eta_scale == 0.5:
        assert abs(res["final_ratio"] - res["asymptotic_rate"]) <= 1e-3


def test_escape_radius_is_at_least_the_lemma_radius_and_is_the_barrier():
    esc = checks.double_well_escape(**DW, dim=2)
    assert esc["escape_radius"] >= esc["lemma_radius"]  # the lemma's radius is sufficient ...
    assert esc["escape_radius"] > 1.2 * esc["lemma_radius"]  # ... and not necessary
    assert esc["escape_radius"] == pytest.approx(esc["barrier"], abs=1e-6)
    # just past the escape radius GD ends in the other well, just inside it comes back
    with jax.enable_x64(True):
        u = jnp.asarray(functions.random_unit_vector(2, 0))
        grad = jax.grad(functions.double_well(u, DW["s"], DW["kappa"]))
        c = jnp.zeros(2)
        for rho, expected in ((esc["escape_radius"] * 0.999, 0.0), (esc["escape_radius"] * 1.001, esc["other_well"])):
            x = tracking.gd_path(lambda x: grad(x, c), c - rho * u, esc["eta"], 500)[-1]
            assert float(jnp.linalg.norm(x - c)) == pytest.approx(expected, abs=1e-8)


def test_double_well_gradual_tracks_abrupt_escapes():
    deltas = (1.0, 0.5, 0.25, 0.1, 0.05)
    rows = checks.double_well_tracking(deltas, shift=3.5, dim=2, **DW)
    abrupt, half, *fine = rows
    r_star = abrupt["lemma_radius"]
    # abrupt: the jump is past the barrier, GD ends at the other well and stays there
    assert abrupt["jump"] > abrupt["barrier"] > r_star and not abrupt["certified"]
    assert abrupt["final_error"] == pytest.approx(abrupt["other_well"], abs=1e-8)
    assert abrupt["errors"].min() > r_star  # never back in the lemma's domain
    # Δ = 1/2: the jump is beyond r* (nothing certified) yet below the barrier: tracked anyway
    assert r_star < half["jump"] < half["barrier"] and not half["certified"]
    assert half["final_error"] < 1e-10
    for t in fine:  # jumps below r*: the corollary's bound is valid and holds
        assert t["certified"] and t["jump"] <= t["bound"] <= t["radius"] < r_star
        assert t["max_error"] <= t["bound"] + 1e-12
        assert t["final_error"] <= t["final_bound"] + 1e-12
        assert np.all(t["errors"] <= t["radius"] + 1e-12)  # every iterate inside the certified ball
    assert all(t["certified"] == (t["jump"] < r_star) for t in rows)
    assert all(t["errors"][:, 1:].size == 200 for t in rows)  # same compute per arm


def test_smallest_tracking_radius_and_bisection():
    # constant q (a quadratic): B = δ/(1 - q^m) for every r, the first valid r is ≈ B
    bound, radius = tracking.smallest_tracking_radius(0.1, lambda r: np.full_like(r, 0.5), 3, 10.0)
    assert bound == pytest.approx(0.1 / (1 - 0.125)) and bound <= radius <= bound * 1.001
    assert np.isnan(tracking.smallest_tracking_radius(2.0, lambda r: np.full_like(r, 0.5), 3, 1.0)[0])
    assert np.isnan(tracking.smallest_tracking_radius(0.5, lambda r: np.full_like(r, 0.99), 1, 1.0)[0])
    assert checks.bisect_threshold(lambda t: t < np.pi, 0.0, 10.0, 1e-12) == pytest.approx(np.pi, abs=1e-11)
    with pytest.raises(ValueError):
        checks.bisect_threshold(lambda t: True, 0.0, 1.0)


def _double_well_rows(max_distance):
    conv = dict(radius=1.5, max_distance=max_distance, bound=0.8, worst_ratio=0.5, asymptotic_rate=0.5,
                final_ratio=0.5)
    escape = dict(lemma_radius=1.6, escape_radius=2.3, barrier=2.3)
    return {r["quantity"]: r["holds"] for r in experiment.double_well_rows(conv, escape, [], "case")}


def test_double_well_rows_allow_rounding_at_the_basin_radius_and_nothing_more():
    # the start lies at distance r0 exactly; float64 may measure it one ulp above
    assert _double_well_rows(1.5 + 2.2e-16)["max_distance_vs_radius"]
    assert not _double_well_rows(1.5 + 1e-9)["max_distance_vs_radius"]
    assert all(_double_well_rows(1.5).values())


@pytest.mark.slow
def test_run_theory_writes_table_and_figure(tmp_path):
    table = experiment.run_theory(tmp_path)
    assert (tmp_path / "theory.png").stat().st_size > 10_000
    written = pd.read_csv(tmp_path / "theory.csv")
    assert tuple(written.columns) == experiment.COLUMNS
    assert len(written) == len(table)
    assert set(written["experiment"]) == {"convergence", "tracking", "relu_toy", "double_well"}
    predicted = table["holds"].notna()
    assert predicted.sum() >= 10 and table.loc[predicted, "holds"].all()
    assert (table["predicted"].notna() == predicted).all()  # a prediction is always checked
    dw = table[table["experiment"] == "double_well"]
    esc = dw[dw["quantity"] == "escape_radius_vs_lemma_radius"].iloc[0]
    assert esc["measured"] >= esc["predicted"] and esc["holds"]
    other = dw[dw["quantity"] == "final_distance_vs_other_well"]
    assert list(other["delta"]) == [1.0] and other["holds"].all()
    certified = dw[(dw["quantity"] == "max_tracking_error") & dw["predicted"].notna()]
    assert set(certified["delta"]) == {0.25, 0.1, 0.05}
    toy = table[(table["experiment"] == "relu_toy") & (table["quantity"] == "final_loss")]
    assert toy.loc[toy["delta"] == 1.0, "measured"].item() > 1e6 * toy.loc[toy["delta"] == 0.05, "measured"].item()
