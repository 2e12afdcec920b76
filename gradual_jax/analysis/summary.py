"""Summaries of a results table: per-arm means with Student-t intervals, and paired differences.

An *arm* is what a figure draws as one line: a model, a schedule (with its Δ), a mitigation
method and a learning rate, in one run. Its lanes differ only in the seed. Lanes of the same
seed share the initialisation and the task sequence (both are functions of the seed), so two
arms are compared *paired by seed*: the per-seed difference of their final-window means, with
a 95% Student-t interval over seeds. That difference is what the paper's claims are about, and
it is the first thing every summary shows.

The *final window* is the last ``max(3, round(0.1·T))`` tasks of a T-task run (all of them when
T ≤ 3), computed per run, so runs of different lengths can be overlaid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from gradual_jax.arms import arm_label

ARM_KEYS = ["run", "model", "schedule", "method", "delta", "learning_rate"]
CONTROL = {"online_train_acc": "online_train_acc_at_E", "online_train_loss": "online_train_loss_at_E"}
BOUNDED = ("_acc", "bleu2", "dormant_fraction")  # metrics that live in [0, 1] (accuracies, BLEU, fractions)
NONNEGATIVE = ("loss", "norm", "distance", "representation_change", "rank")


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take, for clipping intervals (None: unbounded)."""
    if any(part in metric for part in NONNEGATIVE):
        return (0.0, math.inf)
    if any(part in metric for part in BOUNDED):
        return (0.0, 1.0)
    return None


# ---------------------------------------------------------------------------
# Intervals


@dataclasses.dataclass(frozen=True)
class Interval:
    """Mean over seeds with the half-width of its 95% Student-t interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int
    values: tuple[float, ...]  # per seed, in seed order

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def positive(self) -> int:
        return sum(v > 0 for v in self.values)

    def text(self, digits: int = 3) -> str:
        """``0.438 ± 0.403 (n=2: 0.41, 0.47)``: per-seed values are listed when n ≤ 3."""
        ci = "" if math.isnan(self.half_width) else f" ± {self.half_width:.{digits}f}"
        seeds = f"n={self.n}"
        if self.n <= 3:
            seeds += ": " + ", ".join(f"{v:.{digits}f}" for v in self.values)
        return f"{self.mean:.{digits}f}{ci} ({seeds})"


def t_factor(n: int) -> float:
    """The 97.5% quantile of Student's t with n − 1 degrees of freedom (12.71 for n = 2)."""
    return float(stats.t.ppf(0.975, n - 1)) if n >= 2 else math.nan


def interval(values: Sequence[float] | np.ndarray) -> Interval:
    """Mean and 95% Student-t interval of per-seed values (NaNs dropped)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0, ())
    half = t_factor(n) * v.std(ddof=1) / math.sqrt(n) if n >= 2 else math.nan
    return Interval(float(v.mean()), float(half), n, tuple(float(x) for x in v))


def band(values: pd.core.groupby.SeriesGroupBy, metric: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Per group (e.g. task): mean and the 95% t-interval's ends, clipped to the metric's range."""
    mean, std, n = values.mean(), values.std(), values.count()
    half = (std * n.map(t_factor) / np.sqrt(n)).fillna(0.0)
    low, high = mean - half, mean + half
    bounds = metric_range(metric)
    if bounds is not None:
        low, high = low.clip(*bounds), high.clip(*bounds)
    return mean, low, high


# ---------------------------------------------------------------------------
# Arms and windows


def final_window(num_tasks: int) -> range:
    """The tasks the final-window mean covers: the last max(3, round(0.1·T)) of T tasks."""
    width = min(num_tasks, max(3, round(0.1 * num_tasks)))
    return range(num_tasks - width, num_tasks)


def window_text(window: range) -> str:
    return f"tasks {window.start}–{window.stop - 1}" if len(window) > 1 else f"task {window.start}"


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """The arm columns present in every table (older results lack some)."""
    defaults = {"run": "", "model": "", "method": "none"}
    return frame.assign(**{k: v for k, v in defaults.items() if k not in frame})


def per_seed(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (arm, seed): the metric on the first task, its final-window mean, and the
    same two for the readout-timing control (online numbers at epoch E) where one exists."""
    frame = _normalised(frame)
    control = CONTROL.get(metric)
    if control is not None and control not in frame:
        control = None
    rows = []
    for run, by_run in frame.groupby("run", sort=False):
        window = final_window(int(by_run["task"].max()) + 1)
        for key, group in by_run.groupby([k for k in ARM_KEYS if k != "run"] + ["seed"], dropna=False, sort=False):
            first = group[group["task"] == group["task"].min()]
            tail = group[group["task"].isin(window)]
            row = dict(zip(ARM_KEYS, (run, *key[:-1])), seed=key[-1], window=window_text(window),
                       first=first[metric].mean(), final=tail[metric].mean())
            if control is not None:
                row.update(first_at_E=first[control].mean(), final_at_E=tail[control].mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _arms(seeds: pd.DataFrame):
    return seeds.groupby(ARM_KEYS, dropna=False, sort=False)


def arm_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per arm: seeds, first task, final window (mean, 95% t-interval, per-seed values), and
    the drop from the first task to the final window, read at epoch E in every arm where the
    metric has a control (so arms read at different epochs are compared the same way)."""
    seeds = per_seed(frame, metric)
    rows = []
    for key, g in _arms(seeds):
        final = interval(g["final"])
        row = dict(zip(ARM_KEYS, key), metric=metric, arm=arm_label(key[2], key[4], key[3]), window=g["window"].iloc[0],
                   seeds=final.n, first_task=g["first"].mean(), final=final.mean, final_ci95=final.half_width,
                   final_per_seed=" ".join(f"{v:.3f}" for v in final.values), final_text=final.text())
        if "final_at_E" in g:
            at_e = interval(g["final_at_E"])
            row.update(final_at_E=at_e.mean, final_at_E_ci95=at_e.half_width,
                       drop=(g["first_at_E"] - g["final_at_E"]).mean(), drop_read_at="epoch E")
        else:
            row.update(drop=(g["first"] - g["final"]).mean(), drop_read_at="readout")
        rows.append(row)
    return pd.DataFrame(rows)


def paired(seeds: pd.DataFrame, arm: dict, baseline: dict, column: str = "final") -> Interval | None:
    """Per-seed ``arm − baseline`` of ``column`` over the seeds both have (None if either is missing).

    ``arm`` and ``baseline`` map arm columns to values (a NaN Δ matches abrupt lanes)."""
    def select(spec):
        mask = np.ones(len(seeds), bool)
        for k, v in spec.items():
            col = seeds[k]
            mask &= col.isna().to_numpy() if (isinstance(v, float) and math.isnan(v)) else (col == v).to_numpy()
        return seeds[mask].set_index("seed")[column]

    a, b = select(arm), select(baseline)
    common = a.index.intersection(b.index)
    if len(common) == 0:
        return None
    common = common.sort_values()
    return interval((a.loc[common] - b.loc[common]).to_numpy())


def paired_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Every arm against the abrupt, unmitigated arm of the same run, model and learning rate,
    paired by seed: the mean difference of final-window means, its 95% t-interval, the seeds
    where it is positive, and the same for the readout-timing control where one exists."""
    seeds = per_seed(frame, metric)
    rows = []
    for key, _ in _arms(seeds):
        spec = dict(zip(ARM_KEYS, key))
        if spec["schedule"] == "abrupt" and spec["method"] == "none":
            continue
        base = {**spec, "schedule": "abrupt", "method": "none", "delta": math.nan}
        diff = paired(seeds, spec, base)
        if diff is None:
            continue
        window = seeds.loc[seeds["run"] == spec["run"], "window"].iloc[0]
        row = dict(spec, metric=metric, comparison=f"{arm_label(spec['schedule'], spec['delta'], spec['method'])} − abrupt",
                   window=window, seeds=diff.n, difference=diff.mean, ci95=diff.half_width, low=diff.low,
                   high=diff.high, positive=diff.positive(), verdict=verdict(diff),
                   per_seed=" ".join(f"{v:+.3f}" for v in diff.values))
        if "final_at_E" in seeds:
            control = paired(seeds, spec, base, "final_at_E")
            row.update(difference_at_E=control.mean, ci95_at_E=control.half_width)
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(diff: Interval) -> str:
    """``holds`` when the 95% interval of the paired difference lies above 0, ``reversed`` when
    below, ``inconclusive`` otherwise (including n < 2, where there is no interval)."""
    if diff.n < 2 or math.isnan(diff.half_width):
        return "inconclusive"
    if diff.low > 0:
        return "holds"
    if diff.high < 0:
        return "reversed"
    return "inconclusive"


# ---------------------------------------------------------------------------
# Text


def _show_run(table: pd.DataFrame) -> bool:
    return table["run"].nunique() > 1


def _ci(value: float, half: float) -> str:
    return f"{value:+.3f}" + ("" if math.isnan(half) else f" ± {half:.3f}")


def format_summary(frame: pd.DataFrame, metric: str) -> str:
    """The terminal summary of a run: paired differences first, then every arm."""
    arms, pairs = arm_table(frame, metric), paired_table(frame, metric)
    window = arms["window"].iloc[0]
    show_run = _show_run(arms)
    lines = [f"{metric}, final window ({window}), paired by seed: arm − abrupt (mean ± 95% t-interval)"]
    for _, r in pairs.iterrows():
        control = (f"   at epoch E: {_ci(r['difference_at_E'], r['ci95_at_E'])}" if "difference_at_E" in r else "")
        name = f"{r['run']}: {r['comparison']}" if show_run else r["comparison"]
        lines.append(f"  {name:<34}{_ci(r['difference'], r['ci95']):>18}  {r['positive']}/{r['seeds']} seeds > 0"
                     f"  [{r['verdict']}]{control}")
    if pairs.empty:
        lines.append("  (no arm to compare with the abrupt one)")
    lines.append(f"{metric} per arm: first task, final window (mean ± 95% t-interval, n seeds)")
    for _, r in arms.iterrows():
        name = f"{r['run']}: {r['arm']}" if show_run else r["arm"]
        drop = f"drop {r['drop']:+.3f} (read at {r['drop_read_at']})"
        lines.append(f"  {name:<34}first {r['first_task']:.3f}  final {r['final_text']}  {drop}")
    return "\n".join(lines)


def summary_markdown(arms: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """The summary as Markdown: the paired table, then the per-arm table (``part`` columns
    name the panel of multi-part experiments)."""
    lines = ["Paired by seed, final window: arm − abrupt (mean ± 95% Student-t interval over seeds).", "",
             "| part | comparison | metric | window | seeds | difference | seeds > 0 | verdict | at epoch E |",
             "|---|---|---|---|---:|---:|---:|---|---:|"]
    for _, r in pairs.iterrows():
        name = f"{r['run']}: {r['comparison']}" if r["run"] else r["comparison"]
        control = (_ci(r["difference_at_E"], r["ci95_at_E"])
                   if not pd.isna(r.get("difference_at_E", math.nan)) else "–")
        lines.append(f"| {r['part']} | {name} | {r['metric']} | {r['window']} | {r['seeds']} | "
                     f"{_ci(r['difference'], r['ci95'])} | {r['positive']}/{r['seeds']} | {r['verdict']} | {control} |")
    lines += ["", "Per arm (mean ± 95% Student-t interval over seeds; per-seed values when n ≤ 3).", "",
              "| part | arm | metric | seeds | first task | final window | drop |", "|---|---|---|---:|---:|---|---:|"]
    for _, r in arms.iterrows():
        name = f"{r['run']}: {r['arm']}" if r["run"] else r["arm"]
        lines.append(f"| {r['part']} | {name} | {r['metric']} | {r['seeds']} | {r['first_task']:.3f} | "
                     f"{r['final_text']} ({r['window']}) | {r['drop']:+.3f} (read at {r['drop_read_at']}) |")
    return "\n".join(lines) + "\n"
