"""How finished runs answer the declared questions: the rules a verdict must pass.

1. **Declared evidence decides.** A question is answered from the runs it declares (found by
   experiment, preset and part among the runs given); other runs of the same setting that hold
   the same arms are *replicates*: listed with their own numbers, flagged when their verdict
   differs, never deciding. A declared run that is missing makes the question **not run**.
2. **Held-out seeds.** A declared run whose seeds overlap those of the search that chose its
   setting is refused (:class:`OverlappingSeedsError`).
3. **Is the question posed?** For a preservation question (``min_drop`` set) the loss of the
   plain abrupt arm (no mitigation, on the network the gradual arm trains) on the same seeds
   comes first. Against a mitigation the question is whether gradual change does better on a
   network that loses plasticity, so a mitigation that removes the loss (a method, or an
   architecture such as CReLU) leaves the question posed instead of hiding it. That loss, the
   drop from the best earlier window to the final window (paired by seed; the best window is
   the maximum of several, so this drop leans upward on a flat, noisy curve), must have its 95%
   interval above 0 and its mean at least ``min_drop``. Otherwise the question reads **not
   posed at this scale**, whatever the comparison gives. The drop from the first task is shown beside it.
4. **Three readouts.** The paper's (a gradual lane after E pure epochs, an abrupt lane after
   (1+k)·E), *at epoch E* (every lane after E epochs: less exposure for abrupt) and *equal
   exposure* (abrupt after (1 + k/2)·E epochs, the E pure epochs plus the k·E/2 fade-in epochs a
   gradual lane has had on the new task when it is read), from the per-epoch curves.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from gradual_jax.analysis import claims as claims_lib
from gradual_jax.analysis import summary
from gradual_jax.analysis.claims import AllChecksHold, Arm, Question, Run, Versus
from gradual_jax.analysis.runs import RunPart, setting_key

CHANCE_SLACK = 0.02  # an accuracy within this of 1/classes is "at chance"
EQUAL_EXPOSURE = "equal_exposure"  # the per-seed column of the equal-exposure readout


class OverlappingSeedsError(ValueError):
    """A declared verdict run reuses seeds its setting's search was chosen on."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """One concrete comparison (``arm − baseline``, paired by seed) at three readouts."""

    comparison: str
    paper: summary.Interval
    at_E: summary.Interval | None
    equal: summary.Interval | None
    margin: float = 0.0
    baseline_at_chance: bool = False
    runs: tuple[str, ...] = ()  # the runs the arm and the baseline were read from

    @property
    def verdict(self) -> str:
        return verdict(self.paper, self.margin)


@dataclasses.dataclass(frozen=True)
class Drop:
    """The abrupt arm's own loss over the run: first task and best earlier window → final window."""

    first: summary.Interval
    best: summary.Interval
    best_window: str
    min_drop: float

    @property
    def posed(self) -> bool:
        return self.best.n >= 2 and self.best.low > 0 and self.best.mean >= self.min_drop


@dataclasses.dataclass(frozen=True)
class Replicate:
    runs: tuple[str, ...]  # the labels of the runs read together
    readings: tuple[Reading, ...]
    drop: Drop | None

    @property
    def label(self) -> str:
        return " + ".join(self.runs)


@dataclasses.dataclass(frozen=True)
class Answer:
    question: Question
    status: str  # "decided", "not posed", "not run"
    readings: tuple[Reading, ...] = ()
    drop: Drop | None = None
    runs: tuple[RunPart, ...] = ()
    missing: tuple[Run, ...] = ()
    replicates: tuple[Replicate, ...] = ()

    @property
    def n(self) -> int:
        return max((r.paper.n for r in self.readings), default=0)

    @property
    def verdict(self) -> str:
        if self.status == "not run":
            return "not run"
        if self.status == "not posed":
            return "not posed at this scale"
        return combined([r.verdict for r in self.readings])

    @property
    def flags(self) -> tuple[str, ...]:
        flags = []
        if self.question.role == "extension":
            flags.append("extension")
        if self.question.revised:
            flags.append("criterion revised")
        if self.status == "decided" and self.question.role == "primary" and 0 < self.n < claims_lib.MIN_PRIMARY_SEEDS:
            flags.append(f"n < {claims_lib.MIN_PRIMARY_SEEDS}")
        if self.status == "not posed":
            flags.append("not posed")
        if self.replicates_disagree:
            flags.append("replicates disagree")
        return tuple(flags)

    @property
    def replicates_disagree(self) -> bool:
        """A replicate that differs from the deciding run: one poses the question and the other
        does not, or the same comparison gets another verdict."""
        if self.status == "not run":
            return False
        posed = self.status == "decided"
        mine = {r.comparison: r.verdict for r in self.readings}
        for rep in self.replicates:
            if (rep.drop is None or rep.drop.posed) != posed:
                return True
            if posed and any(mine.get(r.comparison, r.verdict) != r.verdict for r in rep.readings):
                return True
        return False


def verdict(diff: summary.Interval, margin: float = 0.0) -> str:
    """``holds`` when the interval lies above −margin (above 0 without a margin), ``reversed``
    when it lies below −margin, ``inconclusive`` otherwise or with fewer than 2 seeds."""
    shifted = dataclasses.replace(diff, mean=diff.mean + margin)
    return summary.verdict(shifted)


def combined(verdicts: Sequence[str]) -> str:
    """One verdict for several readings: theirs if they agree, else each counted."""
    if not verdicts:
        return "no comparison"
    counts = pd.Series(list(verdicts)).value_counts(sort=False)
    if len(counts) == 1:
        return verdicts[0]
    return ", ".join(f"{v} {c}/{len(verdicts)}" for v, c in counts.items())


# ---------------------------------------------------------------------------
# Readouts


def equal_exposure_column(part: RunPart, metric: str) -> pd.Series | None:
    """The metric with abrupt lanes read after (1 + k/2)·E epochs of each task (gradual lanes as
    read), from the run's per-epoch curves; None without them or for a metric they do not hold."""
    if part.epochs is None or metric != "online_train_acc":
        return None
    protocol = part.config["protocol"]
    epoch = round((1 + protocol["transition_ratio"] / 2) * protocol["epochs_per_task"])
    at = part.epochs[part.epochs["epoch"] == epoch].set_index(["lane", "task"])["online_train_acc"]
    keys = pd.MultiIndex.from_frame(part.frame[["lane", "task"]])
    abrupt = part.frame["schedule"].eq("abrupt").to_numpy()
    read = at.reindex(keys).to_numpy(float)
    return pd.Series(np.where(abrupt, read, part.frame[metric].to_numpy(float)), index=part.frame.index)


def read_together(parts: Sequence[RunPart]) -> dict[str, str]:
    """Each part's label -> the label its lanes are read under: parts that differ only in their
    seeds (one setting, the same arms: a run split into runs of fewer seeds) and share none are
    read as one run, ``A + B``, so that their seeds add up."""
    groups: list[tuple[tuple, set, list[str]]] = []  # (setting and arms, seeds, labels)
    for p in parts:
        sweep = {k: v for k, v in (p.config or {}).get("sweep", {}).items() if k != "seeds"}
        key = (setting_key(p.config), json.dumps(sweep, sort_keys=True, default=str), p.part) if p.config else p.label
        seeds = set(p.seeds)
        group = next((g for g in groups if g[0] == key and not g[1] & seeds), None)
        if group is None:
            groups.append((key, seeds, [p.label]))
        else:
            group[1].update(seeds)
            group[2].append(p.label)
    return {label: " + ".join(labels) for _, _, labels in groups for label in labels}


def _pooled(parts: Sequence[RunPart], metric: str) -> pd.DataFrame:
    """The parts' rows with a ``run`` column (:func:`read_together`) and, where every part has
    curves, the equal-exposure readout."""
    frames = []
    joint = read_together(parts)
    for p in parts:
        frame = p.frame.assign(run=joint[p.label])
        column = equal_exposure_column(p, metric)
        frames.append(frame.assign(**{EQUAL_EXPOSURE: column if column is not None else math.nan}))
    return pd.concat(frames, ignore_index=True)


def _per_seed(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    seeds = summary.per_seed(frame, metric)
    if frame[EQUAL_EXPOSURE].notna().any():
        equal = summary.per_seed(frame.assign(**{metric: frame[EQUAL_EXPOSURE]}), metric)
        seeds["final_equal"] = equal["final"].to_numpy()
    return seeds


def _keys(spec: dict) -> dict:
    return {k: spec[k] for k in ("run", "model", "schedule", "method", "delta")}


def _at_chance(seeds: pd.DataFrame, baseline: dict, metric: str, classes: int | None) -> bool:
    """Whether the baseline arm's final window sits at chance (1/classes), as L2 does at E = 10."""
    if not metric.endswith("_acc") or not classes:
        return False
    mine = np.ones(len(seeds), bool)
    for k in ("run", "model", "schedule", "method"):
        mine &= (seeds[k] == baseline[k]).to_numpy()
    return bool(mine.any()) and seeds.loc[mine, "final"].mean() <= 1 / classes + CHANCE_SLACK


def readings(question: Question, parts: Sequence[RunPart], classes: int | None = None) -> list[Reading]:
    """Every concrete comparison the question makes on ``parts`` (read together)."""
    if isinstance(question.comparison, AllChecksHold):
        return [_theory_reading(parts)]
    frame = _pooled(parts, question.metric)
    if question.metric not in frame:
        return []
    seeds = _per_seed(frame, question.metric)
    arms = claims_lib.present_arms(seeds)
    out = []
    for arm, baseline in claims_lib.expand(question.comparison, arms):
        def diff(column: str) -> summary.Interval | None:
            if column not in seeds or seeds[column].isna().all():
                return None
            return summary.paired(seeds, _keys(arm), _keys(baseline), column)

        paper = diff("final")
        if paper is None or paper.n == 0:
            continue
        labels = (label for joint in (arm["run"], baseline["run"]) for label in joint.split(" + "))
        out.append(Reading(claims_lib.comparison_label(arm, baseline), paper, diff("final_at_E"), diff("final_equal"),
                           question.margin, _at_chance(seeds, baseline, question.metric, classes),
                           tuple(dict.fromkeys(labels))))
    return out


def _theory_reading(parts: Sequence[RunPart]) -> Reading:
    """The theory check as a reading that holds when every check holds, and is reversed otherwise."""
    holds = np.concatenate([p.frame["holds"].astype(bool).to_numpy() for p in parts])
    result = summary.Interval(1.0 if holds.all() else -1.0, 0.0, len(holds), ())
    return Reading(f"{int(holds.sum())}/{len(holds)} checks hold", result, None, None)


# ---------------------------------------------------------------------------
# The gate


def abrupt_drop(question: Question, parts: Sequence[RunPart]) -> Drop | None:
    """The abrupt, unmitigated arm's own drop over the question's runs, on the network the
    gradual arm trains (the plain one where the baseline is a mitigating architecture)."""
    if question.min_drop is None:
        return None
    model = question.comparison.arm.model if isinstance(question.comparison, Versus) else None
    frame = _pooled(parts, question.metric)
    abrupt = frame[frame["schedule"].eq("abrupt") & frame.get("method", "none").eq("none")]
    if model is not None:
        abrupt = abrupt[abrupt["model"].astype(str).str.split().str[0] == model]
    if abrupt.empty or question.metric not in abrupt:
        return None
    abrupt = abrupt[abrupt["run"] == abrupt["run"].iloc[0]]  # one run's abrupt lanes
    by_task = abrupt.pivot_table(index="task", columns="seed", values=question.metric, aggfunc="mean")
    final = summary.final_window(int(by_task.index.max()) + 1)
    width = max(1, min(len(final), final.start))
    windows = [range(s, s + width) for s in range(0, max(1, final.start - width + 1))]
    best = windows[int(np.argmax([by_task.loc[list(w)].to_numpy().mean() for w in windows]))]
    final_by_seed = by_task.loc[list(final)].mean(axis=0)
    return Drop(first=summary.interval((by_task.iloc[0] - final_by_seed).to_numpy()),
                best=summary.interval((by_task.loc[list(best)].mean(axis=0) - final_by_seed).to_numpy()),
                best_window=summary.window_text(best), min_drop=question.min_drop)


# ---------------------------------------------------------------------------
# Answers


def find(run: Run, parts: Sequence[RunPart]) -> RunPart | None:
    for p in parts:
        if p.experiment == run.experiment and p.preset == run.preset and p.part == run.part:
            return p
    return None


def check_seeds(question: Question, found: Sequence[RunPart], search_seeds: Callable[[str], set[int]]) -> None:
    if question.search is None:
        return
    held_out = search_seeds(question.search)
    for part in found:
        shared = sorted(held_out & set(part.seeds))
        if shared:
            raise OverlappingSeedsError(
                f"{part.path}: its seeds {shared} overlap those the {question.search} search chose its setting on; "
                "a verdict run needs fresh seeds (declare them in its preset and run it again)")


def _replicates(question: Question, setting: str | None, found: Sequence[RunPart], parts: Sequence[RunPart],
                classes: int | None) -> tuple[Replicate, ...]:
    """Other runs of the declared setting that hold the question's arms, each read alone, or,
    where the arms are split over runs, the runs with the same seeds read together."""
    if setting is None or isinstance(question.comparison, AllChecksHold):
        return ()
    others = [p for p in parts if all(p is not f for f in found) and p.config and setting_key(p.config) == setting]
    out, pooled = [], {}
    for p in others:
        got = readings(question, [p], classes)
        if got:
            out.append(Replicate((p.label,), tuple(got), abrupt_drop(question, [p])))
        else:
            pooled.setdefault(p.seeds, []).append(p)
    for group in pooled.values():
        got = readings(question, group, classes) if len(group) > 1 else []
        if got:
            used = tuple(dict.fromkeys(run for r in got for run in r.runs))
            within = [p for p in group if p.label in used]
            out.append(Replicate(used, tuple(got), abrupt_drop(question, within)))
    return tuple(out)


def answer(question: Question, parts: Sequence[RunPart], search_seeds: Callable[[str], set[int]] = lambda _: set(),
           classes: int | None = None, declared_setting: str | None = None,
           holds_gate: Callable[[Run], bool] = lambda _: True) -> Answer:
    """The question answered from its declared runs among ``parts`` (see the module's rules);
    ``declared_setting`` (the :func:`setting_key` of its declared config) finds its replicates
    even before the declared runs exist. ``holds_gate(run)``: whether a declared run trains the
    plain abrupt arm the gate reads; where none of the missing runs does and the runs made show
    the abrupt arm not losing, no missing run can pose the question, and it reads not posed."""
    found = [find(run, parts) for run in question.runs]
    missing = tuple(run for run, part in zip(question.runs, found) if part is None)
    present = tuple(p for p in found if p is not None)
    check_seeds(question, present, search_seeds)
    setting = setting_key(present[0].config) if present and present[0].config else declared_setting
    replicates = _replicates(question, setting, present, parts, classes)
    if missing:
        drop = abrupt_drop(question, present) if present and not any(map(holds_gate, missing)) else None
        if drop is not None and not drop.posed:
            return Answer(question, "not posed", tuple(readings(question, present, classes)), drop, present,
                          missing=missing, replicates=replicates)
        return Answer(question, "not run", runs=present, missing=missing, replicates=replicates)
    got = tuple(readings(question, present, classes))
    if not got:
        raise claims_lib.MissingArmsError(
            f"{', '.join(str(p.path) for p in present)}: the question '{question.label}' needs the arms "
            f"{', '.join(claims_lib.required_arms(question))} on {question.metric}")
    drop = abrupt_drop(question, present)
    status = "not posed" if drop is not None and not drop.posed else "decided"
    return Answer(question, status, got, drop, present, replicates=replicates)


def preserved_by(claim_key: str, answers: dict[str, list[Answer]]) -> list[Answer]:
    """The primary answers of a claim that compare a gradual arm with the plain abrupt arm
    (what the abstract's and the TL;DR's sentences are about)."""
    def against_abrupt(q: Question) -> bool:
        c = q.comparison
        return isinstance(c, AllChecksHold) or (isinstance(c, Versus) and c.baseline == Arm("abrupt"))
    return [a for a in answers.get(claim_key, []) if a.question.role == "primary" and against_abrupt(a.question)]
