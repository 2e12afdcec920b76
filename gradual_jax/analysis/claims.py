"""The paper's claims as data, and how a results table decides them.

A :class:`Claim` is one sentence of the paper (a figure's caption) and the comparisons that
decide it: each compares an *arm* with a *baseline* on a metric's final-window mean, paired by
seed (lanes with the same seed share the initialisation and the task sequence). A comparison's
verdict is **holds** when the 95% Student-t interval of the paired difference lies above 0,
**reversed** when it lies below, **inconclusive** otherwise. Experiment modules list their
claims in ``CLAIMS``; ``gradual-jax report`` evaluates them on finished runs.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from gradual_jax.analysis import summary

ANY = "*"  # an arm field that matches every value present in the results (one comparison each)


@dataclasses.dataclass(frozen=True)
class Arm:
    """Lanes of a results table: a schedule, its Δ (None for abrupt; ANY: each Δ present), a
    mitigation method (ANY: each method other than none) and a model name (None: any model;
    when several runs hold the arm, the first run given is used)."""

    schedule: str
    delta: float | None | str = None
    method: str = "none"
    model: str | None = None

    def label(self) -> str:
        """In words, e.g. ``output_interp Δ=any``, ``abrupt + any method``."""
        text = self.schedule
        if self.delta is not None:
            text += f" Δ={'any' if self.delta == ANY else format(self.delta, 'g')}"
        if self.method != "none":
            text += f" + {'any method' if self.method == ANY else self.method}"
        return text + (f" [{self.model}]" if self.model else "")


@dataclasses.dataclass(frozen=True)
class Versus:
    """``arm − baseline``, paired by seed."""

    arm: Arm
    baseline: Arm


@dataclasses.dataclass(frozen=True)
class FinerVersusCoarser:
    """Each Δ of ``schedule`` against the next coarser Δ present: ``Δ_finer − Δ_coarser``."""

    schedule: str
    model: str | None = None


Comparison = Versus | FinerVersusCoarser


@dataclasses.dataclass(frozen=True)
class Claim:
    figure: str  # e.g. "Fig. 1 (left)"
    caption: str  # the paper's words
    metric: str  # the results column compared
    comparisons: tuple[Comparison, ...]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One comparison of a claim on one setting."""

    claim: Claim
    arm: dict
    baseline: dict
    difference: summary.Interval
    control: summary.Interval | None  # the same comparison read at epoch E in every arm
    runs: tuple[str, ...]  # the runs the two arms were read from

    @property
    def verdict(self) -> str:
        return summary.verdict(self.difference)

    @property
    def comparison(self) -> str:
        show_model = self.arm["model_name"] != self.baseline["model_name"]
        return f"{_spec_label(self.arm, show_model)} − {_spec_label(self.baseline, show_model)}"


class MissingArmsError(ValueError):
    """The runs given lack the arms every claim of their experiment needs."""


# ---------------------------------------------------------------------------
# Matching arms against a per-seed table (summary.per_seed)


def _spec_label(spec: dict, show_model: bool = False) -> str:
    return summary.arm_label(spec["schedule"], spec["delta"], spec["method"],
                             model=spec["model_name"] if show_model else "")


def _model_name(model: str) -> str:
    return str(model).split()[0] if model else ""


def present_arms(seeds: pd.DataFrame) -> pd.DataFrame:
    """The distinct arms of a per-seed table, one row each, in the order the runs were given."""
    cols = ["run", "model", "schedule", "method", "delta"]
    arms = seeds.drop_duplicates(cols)[cols].copy()
    arms["model_name"] = arms["model"].map(_model_name)
    return arms.reset_index(drop=True)


def _matches(arms: pd.DataFrame, arm: Arm) -> pd.DataFrame:
    mask = arms["schedule"] == arm.schedule
    if arm.delta is None:
        mask &= arms["delta"].isna()
    elif arm.delta != ANY:
        mask &= (arms["delta"] - float(arm.delta)).abs() < 1e-9
    mask &= (arms["method"] != "none") if arm.method == ANY else (arms["method"] == arm.method)
    if arm.model is not None:
        mask &= arms["model_name"] == arm.model
    found = arms[mask]
    # one row per distinct arm: the first run that holds it
    return found.drop_duplicates(["model_name", "schedule", "method", "delta"], keep="first")


def expand(comparison: Comparison, arms: pd.DataFrame) -> list[tuple[dict, dict]]:
    """The concrete (arm, baseline) pairs a comparison makes on the arms present."""
    if isinstance(comparison, FinerVersusCoarser):
        found = _matches(arms, Arm(comparison.schedule, ANY, model=comparison.model)).sort_values("delta")
        rows = [r.to_dict() for _, r in found.iterrows()]
        return list(zip(rows[:-1], rows[1:]))
    baselines = [r.to_dict() for _, r in _matches(arms, comparison.baseline).iterrows()]
    return [(arm, baseline) for _, row in _matches(arms, comparison.arm).iterrows()
            for arm in [row.to_dict()] for baseline in baselines if baseline != arm]


def _paired(seeds: pd.DataFrame, arm: dict, baseline: dict, column: str) -> summary.Interval | None:
    keys = ["run", "model", "schedule", "method", "delta"]
    return summary.paired(seeds, {k: arm[k] for k in keys}, {k: baseline[k] for k in keys}, column)


def evaluate(claim: Claim, frame: pd.DataFrame) -> list[Outcome]:
    """Every comparison of ``claim`` that the results in ``frame`` (one setting, the ``run``
    column naming each run, in the order given) can make."""
    if claim.metric not in frame:
        return []
    seeds = summary.per_seed(frame, claim.metric)
    arms = present_arms(seeds)
    outcomes = []
    for comparison in claim.comparisons:
        for arm, baseline in expand(comparison, arms):
            diff = _paired(seeds, arm, baseline, "final")
            if diff is None or diff.n == 0:
                continue
            control = _paired(seeds, arm, baseline, "final_at_E") if "final_at_E" in seeds else None
            outcomes.append(Outcome(claim, arm, baseline, diff, control, tuple(dict.fromkeys((arm["run"], baseline["run"])))))
    return outcomes


def required_arms(claim: Claim) -> list[str]:
    """The arms a claim needs, in words (for the error when none of them is there)."""
    needs = []
    for c in claim.comparisons:
        needs += ([f"{c.schedule} at two or more Δ"] if isinstance(c, FinerVersusCoarser)
                  else [c.arm.label(), c.baseline.label()])
    return list(dict.fromkeys(needs))
