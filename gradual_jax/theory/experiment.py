"""The ``theory`` experiment: the grid of checks, their table ``theory.csv`` and the figure.

:func:`run_checks` runs every check of :mod:`gradual_jax.theory.checks` and
:mod:`gradual_jax.theory.relu` at the settings below, :func:`table` turns what they measured
into one row per prediction (or observation), :func:`run_theory` writes the table and the
figure, and :func:`run` is what ``gradual-jax run theory`` calls. The experiment takes seconds,
so its presets are the same.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from gradual_jax.theory import checks, plot, relu

COLUMNS = ("experiment", "case", "quantity", "delta", "predicted", "measured", "holds")

QUADRATIC_CASES = {
    # name: (eigenvalues, η, steps); the first has η = 1/β (1 - ημ binds), the second η > 1/β
    # with λ_max binding (|1 - ηβ| > 1 - ημ), still converging since η < 2/β.
    "quadratic, eta=1/beta": ((0.5, 1.0, 2.0, 4.0), 0.25, 100),
    "quadratic, eta>1/beta (lambda_max binds)": ((1.0, 2.0, 3.5), 0.5, 40),
}
LOGCOSH_CASE = "log-cosh well, eta=0.5/beta"  # checks.logcosh_convergence's defaults
TRACKING_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02)
RELU_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05)
# the double well: s = 4, κ = -1 gives r* ≈ 1.59 and a barrier at ≈ 2.33; a shift of 3.5 in
# halves (1.75) is beyond r* but below the barrier, in quarters or finer it is certified.
DOUBLE_WELL = dict(s=4.0, kappa=-1.0, dim=2, eta_scale=0.5)
DOUBLE_WELL_CASE = f"double well, eta={DOUBLE_WELL['eta_scale']:g}/beta, r0=0.9r*"
DOUBLE_WELL_SHIFT = 3.5
DOUBLE_WELL_DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05)


@dataclasses.dataclass(frozen=True)
class Results:
    """What every check of the grid returned (the dicts of :mod:`gradual_jax.theory.checks`)."""

    quadratic: dict[str, dict]  # case name -> checks.quadratic_convergence
    logcosh: dict  # checks.logcosh_convergence
    logcosh_tracking: list[dict]  # per Δ of TRACKING_DELTAS
    relu_toy: list[dict]  # per Δ of RELU_DELTAS
    double_well: dict  # checks.double_well_convergence
    double_well_escape: dict
    double_well_tracking: list[dict]  # per Δ of DOUBLE_WELL_DELTAS

    def convergence_curves(self) -> dict[str, dict]:
        """Case name -> convergence check, in the figure's order."""
        return {**self.quadratic, LOGCOSH_CASE: self.logcosh, DOUBLE_WELL_CASE: self.double_well}


def run_checks() -> Results:
    """Every check at the grid's settings (seconds on a CPU)."""
    quadratic = {case: checks.quadratic_convergence(eig, eta, steps)
                 for case, (eig, eta, steps) in QUADRATIC_CASES.items()}
    return Results(
        quadratic=quadratic,
        logcosh=checks.logcosh_convergence(),
        logcosh_tracking=checks.logcosh_tracking(TRACKING_DELTAS),
        relu_toy=relu.relu_toy(RELU_DELTAS),
        double_well=checks.double_well_convergence(**DOUBLE_WELL),
        double_well_escape=checks.double_well_escape(**DOUBLE_WELL),
        double_well_tracking=checks.double_well_tracking(DOUBLE_WELL_DELTAS, shift=DOUBLE_WELL_SHIFT, **DOUBLE_WELL),
    )


def _row(experiment, case, quantity, predicted, measured, holds, delta=np.nan):
    return dict(experiment=experiment, case=case, quantity=quantity, delta=delta, predicted=predicted,
                measured=measured, holds=holds)


def double_well_rows(conv: dict, escape: dict, tracking: list[dict], case: str, *,
                     rate_tol: float = 1e-3, point_tol: float = 1e-6, rounding: float = 1e-12) -> list[dict]:
    """The double well's rows (experiment "double_well"): the lemma inside the basin (distance
    ≤ r0, every step's ratio ≤ 1 - ημ(r0), asymptotic rate within ``rate_tol``), the escape
    radius (≥ the lemma's r*; = the barrier within ``point_tol``), and per Δ the tracking bounds
    where certified (NaN predicted, empty holds where not) and, for arms whose jump exceeds the
    barrier, the final distance against the other well's (within ``point_tol``).

    The basin radius and the tracking bounds are compared with an absolute slack ``rounding``: in
    float64 a distance between points of size ~1-10 is only known to ~1e-15 (the start, at
    distance exactly r0 in exact arithmetic, measures r0 + 2e-16 on some CPUs), while the proved
    end-of-stage bound q^m·B can be far smaller, and the worst-case bound B can equal the jump to
    ~1e-14."""
    rows = [
        _row("double_well", case, "max_distance_vs_radius", conv["radius"], conv["max_distance"],
             conv["max_distance"] <= conv["radius"] + rounding),
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


def table(results: Results, *, rate_tol: float = 1e-6) -> pd.DataFrame:
    """One row per prediction or observation of ``results``.

    Columns: experiment, case, quantity, delta (NaN where not swept), predicted (NaN where the
    theory predicts nothing), measured, holds (whether the prediction holds: equality within
    ``rate_tol`` for exact rates, ≤ for bounds, ≥ for the escape radius; empty where nothing is
    predicted).
    """
    rows = []
    for case, res in results.quadratic.items():
        rows.append(_row("convergence", case, "asymptotic_rate", res["predicted"], res["measured"],
                         abs(res["measured"] - res["predicted"]) <= rate_tol))
        if res["eta"] <= 1.0 / res["beta"]:  # the lemma's step condition
            rows.append(_row("convergence", case, "lemma_rate_1-eta*mu", res["lemma_rate"], res["measured"],
                             res["measured"] <= res["lemma_rate"] + rate_tol))
    lc = results.logcosh
    rows += [
        _row("convergence", LOGCOSH_CASE, "max_distance_vs_radius", lc["radius"], lc["max_distance"],
             lc["max_distance"] <= lc["radius"]),
        _row("convergence", LOGCOSH_CASE, "worst_step_rate_vs_bound", lc["bound"], lc["worst_ratio"],
             lc["worst_ratio"] <= lc["bound"]),
        _row("convergence", LOGCOSH_CASE, "asymptotic_rate", lc["asymptotic_rate"], lc["final_ratio"],
             abs(lc["final_ratio"] - lc["asymptotic_rate"]) <= 1e-3),
    ]
    for t in results.logcosh_tracking:
        rows.append(_row("tracking", "log-cosh well, m=2", "max_tracking_error", t["bound"], t["max_error"],
                         t["max_error"] <= t["bound"], t["delta"]))
    for t in results.relu_toy:
        case = "abrupt" if t["delta"] == 1.0 else "gradual"
        rows.append(_row("relu_toy", case, "final_loss", np.nan, t["final_loss"], pd.NA, t["delta"]))
        rows.append(_row("relu_toy", case, "max_preactivation", np.nan, t["max_preactivation"], pd.NA, t["delta"]))
    rows += double_well_rows(results.double_well, results.double_well_escape, results.double_well_tracking,
                             DOUBLE_WELL_CASE)
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    out["holds"] = out["holds"].astype("boolean")
    return out


def run_theory(out_dir, *, rate_tol: float = 1e-6) -> pd.DataFrame:
    """Run the grid of checks, write ``theory.csv`` (see :func:`table`) and ``theory.png`` to
    ``out_dir``, return the table."""
    os.makedirs(out_dir, exist_ok=True)
    results = run_checks()
    rows = table(results, rate_tol=rate_tol)
    rows.to_csv(os.path.join(out_dir, "theory.csv"), index=False)
    plot.save_figure(results.convergence_curves(), results.logcosh_tracking, results.relu_toy,
                     os.path.join(out_dir, "theory.png"),
                     double_well=(results.double_well_tracking, results.double_well_escape))
    return rows


def run(out_dir: str | Path, preset: str) -> None:
    """``gradual-jax run theory``: :func:`run_theory` into ``out_dir`` and a one-line summary
    (every preset is the same)."""
    out_dir = Path(out_dir)
    rows = run_theory(out_dir)
    predicted = rows[rows["predicted"].notna()]
    held = int(predicted["holds"].astype(bool).sum())
    print(f"theory: {held}/{len(predicted)} predictions hold ({len(rows) - len(predicted)} rows are "
          f"observations without a prediction); {out_dir / 'theory.csv'}, {out_dir / 'theory.png'}")
