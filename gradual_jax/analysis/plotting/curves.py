"""The metric per task, and the final window against Δ: the ``curves``, ``granularity``
(Fig. 5) and ``delta`` layouts.

Every line is one arm, the mean over seeds with its 95% Student-t interval over seeds as a band
clipped to the metric's range; overlaid runs differ by line style and marker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.axes
import matplotlib.figure
import pandas as pd
from matplotlib import ticker

from gradual_jax.analysis import summary
from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.canvas import captions_of, finish, heading_of, new_canvas
from gradual_jax.analysis.plotting.load import UsageError
from gradual_jax.analysis.plotting.panels import Panel, variant_arms
from gradual_jax.analysis.plotting.style import (ABRUPT_COLOR, LINESTYLES, MARKERS, Entry, Style, arm_color,
                                                 arm_entry, axis_label, entry_label, error_lengths,
                                                 panel_title, style_of, title_lines, variant_entries,
                                                 within_unit_range)
from gradual_jax.envs import schedules

X_AXES = {"task": "task", "samples": "samples_seen"}
CURVES_NOTE = "Lines: mean over seeds; bands: 95% Student-t interval over seeds, clipped to the metric's range."
DELTA_NOTE = ("Points: mean over seeds of the final-window mean (the last max(3, round(0.1·T)) tasks); "
              "bars: 95% Student-t interval, clipped to the metric's range.")


def arm_groups(frame: pd.DataFrame, order: list[str]):
    """The panel's (variant, schedule, method, Δ) groups in legend order."""
    keys = ["variant", "schedule", "method", "delta"]
    groups = list(frame.groupby(keys, dropna=False, sort=False))
    return sorted(groups, key=lambda g: (order.index(g[0][0]), words.arm_rank(g[0][1], g[0][3], g[0][2])))


def task_axis(ax: matplotlib.axes.Axes, x: str) -> None:
    """Whole tasks on the task axis; samples seen in engineering notation (1.2M)."""
    if x == "task":
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("task")
    else:
        ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
        ax.set_xlabel("samples seen")


def draw_curves(ax: matplotlib.axes.Axes, panel: Panel, metric: str, style: Style, *,
                x: str = "task") -> list[Entry]:
    """One line per arm: the mean over seeds of ``metric`` per task, with its clipped 95% band."""
    if x not in X_AXES:
        raise UsageError(f"x={x!r} is not allowed; choose one of: {', '.join(X_AXES)}")
    frame, order = panel.frame(), panel.variant_order()
    entries = []
    for (variant, schedule, method, delta), group in arm_groups(frame, order):
        by_task = group.groupby("task")
        mean, low, high = summary.band(by_task[metric], metric)
        xs = by_task[X_AXES[x]].mean().to_numpy()
        color = arm_color(schedule, delta, method, style.colors)
        ax.plot(xs, mean.to_numpy(), color=color, linestyle=LINESTYLES[order.index(variant) % 4], linewidth=1.6,
                label=entry_label(variant, words.arm_name(schedule, delta, method)))
        if by_task[metric].count().max() > 1:
            ax.fill_between(xs, low.to_numpy(), high.to_numpy(), alpha=0.15, color=color, linewidth=0)
        entries.append(arm_entry(schedule, delta, method, style))
    task_axis(ax, x)
    ax.set_ylabel(axis_label(words.metric_axis(metric)))
    ax.grid(alpha=0.3)
    return entries + variant_entries(panel)


def abrupt_position(deltas: Sequence[float]) -> float:
    """Where abrupt sits on the Δ axis: one step coarser than the coarsest Δ."""
    return 2.0 * max(deltas) if deltas else 2.0


def point(ax: matplotlib.axes.Axes, x: float, row: pd.Series, metric: str, color, marker: str) -> None:
    """A final-window mean with its clipped 95% interval as an error bar."""
    ax.errorbar([x], [row["final"]], yerr=error_lengths(row["final"], row["final_ci95"], metric), color=color,
                marker=marker, markersize=6, capsize=3, linestyle="none", zorder=3)


def draw_final_vs_delta(ax: matplotlib.axes.Axes, panel: Panel, metric: str, style: Style) -> list[Entry]:
    """The final-window mean against Δ (log scale, coarse to fine from left to right), one
    line per overlaid run; abrupt at its own place left of the coarsest Δ, with a dotted
    reference line across. Points are coloured as the curves; bars: 95% t-intervals, clipped."""
    tables = variant_arms(panel, metric)
    deltas = sorted({float(d) for _, arms, _ in tables for d in arms["delta"].dropna()})
    abrupt_x = abrupt_position(deltas)
    entries, shift = [], 1.06  # overlaid runs are set slightly apart so their bars stay readable
    for i, (variant, arms, _) in enumerate(tables):
        offset = shift ** (i - (len(tables) - 1) / 2)
        plain = arms[arms["method"] == "none"]
        for schedule, group in plain[plain["schedule"] != "abrupt"].groupby("schedule", sort=False):
            group = group.sort_values("delta", ascending=False)
            xs = group["delta"].to_numpy(float) * offset
            ax.plot(xs, group["final"], color="0.45", linestyle=LINESTYLES[i % 4], linewidth=1.2,
                    label=entry_label(variant, words.display(schedules.SCHEDULES, schedule)))
            for xv, (_, r) in zip(xs, group.iterrows()):
                point(ax, xv, r, metric, style.colors[float(r["delta"])], MARKERS[i % 4])
                entries.append(arm_entry(schedule, r["delta"], "none", style))
        for _, r in plain[plain["schedule"] == "abrupt"].iterrows():
            point(ax, abrupt_x * offset, r, metric, ABRUPT_COLOR, MARKERS[i % 4])
            ax.axhline(r["final"], color=ABRUPT_COLOR, linestyle=LINESTYLES[i % 4], linewidth=0.8, alpha=0.4,
                       label=entry_label(variant, "abrupt"))
            entries.append(arm_entry("abrupt", math.nan, "none", style))
    ax.set_xscale("log")
    ax.set_xticks([abrupt_x, *deltas], ["abrupt", *(f"{d:g}" for d in deltas)])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlim(abrupt_x * 1.5, min(deltas or [1.0]) / 1.5)  # inverted: coarse on the left
    ax.set_xlabel("step size Δ (coarse → fine)")
    ax.set_ylabel(axis_label(words.metric_name(metric)))
    within_unit_range(ax, metric, "y")
    ax.grid(alpha=0.3)
    return entries + variant_entries(panel)


def curves_figure(panels: Sequence[Panel], *, x: str = "task") -> matplotlib.figure.Figure:
    """One panel per setting, side by side; a single panel's title becomes the heading."""
    style = style_of(panels)
    canvas = new_canvas(1, len(panels), [*captions_of(panels), CURVES_NOTE])
    entries = []
    for ax, panel in zip(canvas.axes.flat, panels):
        entries += draw_curves(ax, panel, panel.metric, style, x=x)
        if len(panels) > 1 or style.schedule_in_title:
            ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels), entries)


def granularity_figure(panels: Sequence[Panel], *, x: str = "task") -> matplotlib.figure.Figure:
    """Fig. 5: each setting's curves with its final-window mean against Δ (beside them for
    one setting, beneath them for several)."""
    style = style_of(panels)
    captions = [*captions_of(panels), CURVES_NOTE + " " + DELTA_NOTE]
    single = len(panels) == 1
    canvas = (new_canvas(1, 2, captions) if single else new_canvas(2, len(panels), captions, height=3.6))
    pairs = [canvas.axes[0]] if single else list(zip(canvas.axes[0], canvas.axes[1]))
    entries = []
    for (curves_ax, delta_ax), panel in zip(pairs, panels):
        entries += draw_curves(curves_ax, panel, panel.metric, style, x=x)
        entries += draw_final_vs_delta(delta_ax, panel, panel.metric, style)
        curves_ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
        delta_ax.set_title("final-window mean against the step size Δ", fontsize=10)
    return finish(canvas, heading_of(panels, "granularity of the change (step size Δ)"), entries)


def delta_figure(panels: Sequence[Panel]) -> matplotlib.figure.Figure:
    """The final-window mean against Δ, one panel per setting, one line per overlaid run."""
    style = style_of(panels)
    width = 6.4 if len(panels) > 1 else 7.2  # one panel: room for the legend below it
    canvas = new_canvas(1, len(panels), [*captions_of(panels), DELTA_NOTE], width=width, height=4.4)
    entries = []
    for ax, panel in zip(canvas.axes.flat, panels):
        entries += draw_final_vs_delta(ax, panel, panel.metric, style)
        ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels, "final window against the step size Δ"), entries)
