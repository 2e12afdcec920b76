"""Lemma 4.3 and its tracking corollary, checked numerically; the ReLU toy; the report."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from gradual_jax import theory


def test_quadratic_contraction_equals_the_spectral_rate():
    # η = 1/β: every 1 - ηλ_i ≥ 0, the smallest eigenvalue binds and the rate is 1 - ημ
    res = theory.quadratic_convergence((0.5, 1.0, 2.0, 4.0), eta=0.25, num_steps=100)
    assert res["predicted"] == pytest.approx(max(abs(1 - 0.25 * lam) for lam in (0.5, 1.0, 2.0, 4.0)))
    assert abs(res["measured"] - res["predicted"]) <= 1e-6
    assert abs(res["measured"] - (1 - 0.25 * 0.5)) <= 1e-6
    # 1/β < η < 2/β: |1 - ηλ_max| = 0.75 binds, not 1 - ημ = 0.5
    res = theory.quadratic_convergence((1.0, 2.0, 3.5), eta=0.5, num_steps=40, seed=3)
    assert res["predicted"] == pytest.approx(0.75) and res["lemma_rate"] == pytest.approx(0.5)
    assert abs(res["measured"] - 0.75) <= 1e-6
    # the distance never grows (a contraction at every step when η ≤ 1/β)
    res = theory.quadratic_convergence((0.3, 1.0, 2.5), eta=0.4, num_steps=60, seed=1)
    assert np.all(np.diff(res["distances"]) <= 0)
    assert abs(res["measured"] - (1 - 0.4 * 0.3)) <= 1e-6
    assert jnp.ones(1).dtype == jnp.float32  # float64 only inside the context


@pytest.mark.parametrize("seed,r0,eta_scale,steps", [(0, 3.0, 0.5, 40), (1, 5.0, 1.0, 12), (2, 2.0, 0.8, 30)])
def test_log_cosh_iterates_stay_in_the_ball_and_contract_at_the_lemma_rate(seed, r0, eta_scale, steps):
    res = theory.logcosh_convergence(dim=5, r0=r0, eta_scale=eta_scale, num_steps=steps, seed=seed)
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
    rows = theory.tracking_experiment(deltas)
    errors = [r["max_error"] for r in rows]
    for r in rows:
        assert r["jump"] <= r["max_error"] <= r["bound"] <= r["radius"]
    assert all(a > b for a, b in zip(errors, errors[1:]))  # Δ descending: error descending
    assert rows[-1]["bound"] < 1.05 * rows[-1]["max_error"]  # and tight for fine steps


def test_tracking_on_a_quadratic_is_within_delta_over_one_minus_q_to_the_m():
    with jax.enable_x64(True):
        a = jnp.diag(jnp.array([0.2, 1.0, 2.0]))
        grad = jax.grad(theory.quadratic(a))
        eta, m, c1 = 0.5, 3, jnp.array([3.0, -1.0, 2.0])
        for stages in (2, 5, 20):
            errors = np.asarray(theory.moving_minimiser_errors(grad, jnp.zeros(3), c1, stages, m, eta))
            jump = float(jnp.linalg.norm(c1)) / stages
            q = theory.spectral_rate([0.2, 1.0, 2.0], eta)
            assert errors.max() <= theory.tracking_bound(jump, q, m) * (1 + 1e-12)
            assert errors[0, 0] == pytest.approx(jump)  # first jump from a converged start


def test_relu_toy_abrupt_dies_gradual_tracks():
    abrupt, half, fine, finer = theory.relu_toy((1.0, 0.5, 0.1, 0.05))
    assert abrupt["dead"] and abrupt["max_preactivation"] <= 0
    # dead: the loss is frozen at its value just after the jump
    assert np.ptp(abrupt["losses"][1:]) == 0.0
    for g in (fine, finer):
        assert not g["dead"] and g["max_preactivation"] > 0
        assert g["final_loss"] < 1e-10
        assert abrupt["final_loss"] > 1e6 * g["final_loss"]
        assert g["theta"][0] < 0  # the output weight turned with the target's
    assert len(abrupt["losses"]) == len(finer["losses"]) == 1000  # same compute per arm


def test_run_theory_writes_table_and_figure(tmp_path):
    table = theory.run_theory(tmp_path)
    assert (tmp_path / "theory.png").stat().st_size > 10_000
    written = pd.read_csv(tmp_path / "theory.csv")
    assert tuple(written.columns) == theory.COLUMNS
    assert len(written) == len(table)
    assert set(written["experiment"]) == {"convergence", "tracking", "relu_toy"}
    predicted = table["holds"].notna()
    assert predicted.sum() >= 10 and table.loc[predicted, "holds"].all()
    toy = table[(table["experiment"] == "relu_toy") & (table["quantity"] == "final_loss")]
    assert toy.loc[toy["delta"] == 1.0, "measured"].item() > 1e6 * toy.loc[toy["delta"] == 0.05, "measured"].item()
