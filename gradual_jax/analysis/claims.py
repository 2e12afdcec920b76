"""The paper's claims as data: each sentence, the comparisons that decide it, and their evidence.

A :class:`Claim` is one sentence of the paper, quoted exactly, with its source (the abstract,
the TL;DR, a figure's caption). It is decided by :class:`Question` s, each declared in code
before its runs: a comparison of two arms on a metric's final-window mean, paired by seed
(lanes with the same seed share the initialisation and the task sequence), and the
:class:`Run` s that hold the arms (an experiment's preset, whose seeds are therefore fixed
too). A question's ``role`` says whether it decides the claim (``primary``: the paper's
schedule and Δ against abrupt, at the paper's readout), only adds to it (``secondary``: other
Δ, other settings) or goes beyond the paper (``extension``: CReLU, continual backprop).

A claim that gradual change *preserves* something is posed only where the abrupt arm loses it:
such a question declares ``min_drop``, and reads **not posed at this scale** unless the abrupt
arm's own drop on the same seeds has its 95% interval above 0 and its mean at least
``min_drop`` (:mod:`gradual_jax.analysis.verdicts` decides; this module only declares).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from gradual_jax.arms import arm_label

ANY = "*"  # an arm field that matches every value present in the results (one comparison each)
ROLES = ("primary", "secondary", "extension")
MIN_PRIMARY_SEEDS = 8  # random-label runs move a seed's final window by up to 0.2 between runs


@dataclasses.dataclass(frozen=True)
class Arm:
    """Lanes of a results table: a schedule, its Δ (None for abrupt; ANY: each Δ present), a
    mitigation method (ANY: each method other than none) and a model name (None: any model)."""

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


@dataclasses.dataclass(frozen=True)
class AllChecksHold:
    """The theory check: every row of its table (``theory.csv``) holds."""


Comparison = Versus | FinerVersusCoarser | AllChecksHold


@dataclasses.dataclass(frozen=True)
class Run:
    """A run declared as evidence: an experiment's preset (one part of a multi-part one),
    trained by ``gradual-jax run EXPERIMENT --preset PRESET --out results/EXPERIMENT-PRESET``."""

    experiment: str
    preset: str
    part: str = ""
    out: str = ""  # the folder's name, where it is not EXPERIMENT-PRESET

    @property
    def folder(self) -> str:
        """Where it is committed, under ``results/`` (with its part)."""
        return (self.out or f"{self.experiment}-{self.preset}") + (f"/{self.part}" if self.part else "")

    def command(self, root: str = "results") -> str:
        return (f"gradual-jax run {self.experiment} --preset {self.preset} --out "
                f"{root}/{self.folder.split('/')[0]}")


@dataclasses.dataclass(frozen=True)
class Question:
    """One comparison that decides (or adds to) a claim, with the runs that hold its arms.

    ``runs`` are read together (their lanes merge by arm, so runs of disjoint seeds of one
    setting add up); ``min_drop`` (None: no gate) is the abrupt arm's own loss required before
    a preservation question is posed; ``margin`` > 0 reads "matching or surpassing": the
    question holds when the interval's lower end lies above −margin; ``search`` names the
    experiment whose ``SEARCH`` chose the setting, whose seeds the runs must not reuse;
    ``revised`` says how its criterion changed after earlier runs were seen (the report shows
    it, and the declared runs must then be fresh seeds: the earlier runs become replicates)."""

    label: str
    metric: str
    comparison: Comparison
    runs: tuple[Run, ...]
    role: str = "primary"
    min_drop: float | None = 0.05
    margin: float = 0.0
    search: str | None = None
    revised: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Question.role={self.role!r}; choose one of: {', '.join(ROLES)}")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One sentence of the paper (``quote``, exactly as printed; ``verbatim=False`` where only a
    paraphrase was recovered) and what decides it: its own ``questions``, or, for the abstract
    and the TL;DR, the primary questions of the claims it ``summarises`` (by key)."""

    key: str
    source: str
    quote: str
    questions: tuple[Question, ...] = ()
    summarises: tuple[str, ...] = ()
    verbatim: bool = True

    def primary(self) -> tuple[Question, ...]:
        return tuple(q for q in self.questions if q.role == "primary")


class MissingArmsError(ValueError):
    """The runs given lack the arms a question needs."""


# ---------------------------------------------------------------------------
# Matching arms against a per-seed table (summary.per_seed)


def _model_name(model: str) -> str:
    return str(model).split()[0] if model else ""


def present_arms(seeds: pd.DataFrame) -> pd.DataFrame:
    """The distinct arms of a per-seed table, one row each, in the order the runs were given."""
    cols = ["run", "model", "schedule", "method", "delta"]
    arms = seeds.drop_duplicates(cols)[cols].copy()
    arms["model_name"] = arms["model"].map(_model_name)
    return arms.reset_index(drop=True)


def matches(arms: pd.DataFrame, arm: Arm) -> pd.DataFrame:
    mask = arms["schedule"] == arm.schedule
    if arm.delta is None:
        mask &= arms["delta"].isna()
    elif arm.delta != ANY:
        mask &= (arms["delta"] - float(arm.delta)).abs() < 1e-9
    mask &= (arms["method"] != "none") if arm.method == ANY else (arms["method"] == arm.method)
    if arm.model is not None:
        mask &= arms["model_name"] == arm.model
    return arms[mask].drop_duplicates(["model_name", "schedule", "method", "delta"], keep="first")


def expand(comparison: Comparison, arms: pd.DataFrame) -> list[tuple[dict, dict]]:
    """The concrete (arm, baseline) pairs a comparison makes on the arms present."""
    if isinstance(comparison, FinerVersusCoarser):
        found = matches(arms, Arm(comparison.schedule, ANY, model=comparison.model)).sort_values("delta")
        rows = [r.to_dict() for _, r in found.iterrows()]
        return list(zip(rows[:-1], rows[1:]))
    baselines = [r.to_dict() for _, r in matches(arms, comparison.baseline).iterrows()]
    return [(arm, baseline) for _, row in matches(arms, comparison.arm).iterrows()
            for arm in [row.to_dict()] for baseline in baselines if baseline != arm]


def spec_label(spec: dict, show_model: bool = False) -> str:
    return arm_label(spec["schedule"], spec["delta"], spec["method"],
                             model=spec["model_name"] if show_model else "")


def comparison_label(arm: dict, baseline: dict) -> str:
    show_model = arm["model_name"] != baseline["model_name"]
    return f"{spec_label(arm, show_model)} − {spec_label(baseline, show_model)}"


def required_arms(question: Question) -> list[str]:
    """The arms a question needs, in words."""
    c = question.comparison
    if isinstance(c, FinerVersusCoarser):
        return [f"{c.schedule} at two or more Δ"]
    if isinstance(c, AllChecksHold):
        return []
    return [c.arm.label(), c.baseline.label()]
