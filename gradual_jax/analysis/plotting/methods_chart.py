"""The ``methods`` layout (the baselines): every arm's final-window mean as a point with its
95% interval, one row per arm, where a curve per mitigation would be unreadable."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import matplotlib.axes
import matplotlib.figure
import numpy as np
import pandas as pd

from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.canvas import captions_of, finish, heading_of, new_canvas
from gradual_jax.analysis.plotting.panels import Panel, variant_arms
from gradual_jax.analysis.plotting.style import (ABRUPT_COLOR, Entry, Style, arm_color, error_lengths, panel_title,
                                                 style_of, title_lines, within_unit_range)

METHODS_NOTE = ("Points: mean over seeds of the final-window mean (the last max(3, round(0.1·T)) tasks); bars: "
                "95% Student-t interval, clipped to the metric's range; open marks: single seeds; dotted: abrupt.")


@dataclasses.dataclass(frozen=True)
class ArmRow:
    """One arm of the methods chart: its final-window mean over seeds, the 95% t half-width,
    and each seed's final-window mean."""

    rank: tuple
    label: str
    schedule: str
    delta: float
    method: str
    final: float
    half_width: float
    per_seed: np.ndarray
    window: str


def arm_rows(panel: Panel, metric: str) -> list[ArmRow]:
    """Every arm of every part of the panel, in chart order: the abrupt arms of each run (plain,
    then with each mitigation), then the gradual arms."""
    rows = []
    for i, (variant, arms, seeds) in enumerate(variant_arms(panel, metric)):
        for _, r in arms.iterrows():
            same = ((seeds["schedule"] == r["schedule"]) & (seeds["method"] == r["method"])
                    & ((seeds["delta"] == r["delta"]) | (seeds["delta"].isna() & pd.isna(r["delta"]))))
            label = words.arm_name(r["schedule"], r["delta"], r["method"])
            own = [piece for piece in variant.split(", ") if piece not in panel.setting]  # the title names the rest
            if own:
                label += f" ({', '.join(own)})"
            order = words.arm_rank(r["schedule"], r["delta"], r["method"])
            rows.append(ArmRow((order[0], i, order[1:]),
                               label, r["schedule"], r["delta"], r["method"], r["final"],
                               r["final_ci95"], seeds.loc[same, "final"].to_numpy(float), r["window"]))
    return sorted(rows, key=lambda row: row.rank)


def draw_methods(ax: matplotlib.axes.Axes, panel: Panel, metric: str, style: Style) -> list[Entry]:
    """One row per arm (abrupt, abrupt + each mitigation, each gradual arm): its final-window
    mean over seeds as a point with the clipped 95% t-interval, and each seed's value as a small
    open mark; a dotted line at the abrupt arm's mean, a thin rule before the gradual arms.
    The rows are labelled on the axis, so no legend entries are returned."""
    rows = arm_rows(panel, metric)
    for y, row in enumerate(rows):
        color = arm_color(row.schedule, row.delta, row.method, style.colors)
        ax.errorbar([row.final], [y], xerr=error_lengths(row.final, row.half_width, metric), color=color,
                    marker="o", markersize=7, capsize=4, linestyle="none", zorder=3, label=row.label)
        ax.scatter(row.per_seed, np.full(len(row.per_seed), y + 0.22), s=14, facecolors="none", edgecolors=color,
                   linewidths=0.8, zorder=2)
        if row.schedule == "abrupt" and row.method == "none" and row.rank[1] == 0:  # the first run's abrupt arm
            ax.axvline(row.final, color=ABRUPT_COLOR, linestyle=":", linewidth=1, alpha=0.6)
        if y and row.schedule != "abrupt" and rows[y - 1].schedule == "abrupt":
            ax.axhline(y - 0.5, color="0.6", linewidth=0.6)
    ax.set_yticks(range(len(rows)), [row.label for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.6)  # first arm on top
    windows = {row.window for row in rows}
    where = f" ({windows.pop()})" if len(windows) == 1 else ""
    ax.set_xlabel(f"{words.metric_name(metric)}, final-window mean{where}")
    within_unit_range(ax, metric, "x")
    ax.grid(alpha=0.3, axis="x")
    return []


def methods_figure(panels: Sequence[Panel]) -> matplotlib.figure.Figure:
    """The baselines: one row per arm with its final-window mean, one panel per setting."""
    style = style_of(panels)
    arms = max(len(p.frame().groupby(["variant", "schedule", "method", "delta", "learning_rate"], dropna=False))
               for p in panels)
    canvas = new_canvas(1, len(panels), [*captions_of(panels), METHODS_NOTE], width=6.2, height=1.2 + 0.36 * arms)
    for ax, panel in zip(canvas.axes.flat, panels):
        draw_methods(ax, panel, panel.metric, style)
        ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels, "mitigations and gradual change"), [])
