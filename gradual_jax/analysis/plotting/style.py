"""What every panel of a figure shares: the colour of each arm, the line style of each overlaid
run, legend entries, titles and labels that fit, and intervals kept within a metric's range.

Δ is coloured along viridis from coarse (dark) to fine (light) with abrupt in black; an
abrupt arm with a mitigation takes its method's registered colour.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Sequence

import matplotlib
import matplotlib.axes
import matplotlib.lines
import numpy as np
import pandas as pd

from gradual_jax.analysis import summary
from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.panels import Panel
from gradual_jax.envs import schedules

ABRUPT_COLOR = "black"
DELTA_CMAP, DELTA_SPAN = "viridis", (0.0, 0.85)  # the yellow end of viridis is unreadable on white
LINESTYLES = ("-", "--", ":", "-.")  # one per overlaid run
MARKERS = ("o", "s", "^", "D")


def delta_colors(deltas: Iterable[float]) -> dict[float, tuple]:
    """Δ -> colour, from the dark end of viridis (coarsest Δ) to the light end (finest)."""
    ordered = sorted({float(d) for d in deltas if not pd.isna(d)}, reverse=True)
    cmap = matplotlib.colormaps[DELTA_CMAP]
    if len(ordered) == 1:
        return {ordered[0]: cmap(sum(DELTA_SPAN) / 2)}
    return {d: cmap(p) for d, p in zip(ordered, np.linspace(*DELTA_SPAN, len(ordered)))}


def arm_color(schedule: str, delta: float, method: str, colors: dict[float, tuple]):
    if schedule == "abrupt":
        return ABRUPT_COLOR if method == "none" else words.method_color(method)
    return colors[float(delta)]


@dataclasses.dataclass(frozen=True)
class Style:
    """What every panel of a figure shares: the colour of each Δ, and whether the gradual
    schedule is named in the panel titles (Fig. 5: one schedule per panel) instead of each label."""

    colors: dict[float, tuple]
    schedule_in_title: bool = False


def style_of(panels: Sequence[Panel]) -> Style:
    frames = [p.frame() for p in panels]
    colors = delta_colors(pd.concat([f["delta"] for f in frames]))
    gradual = [set(f.loc[f["schedule"] != "abrupt", "schedule"]) for f in frames]
    one_each = len(set().union(*gradual)) > 1 and all(len(g) <= 1 for g in gradual)
    return Style(colors, schedule_in_title=one_each)


def title_lines(title: str, width: int = 60) -> str:
    """A panel title broken into lines that fit above a panel."""
    return "\n".join(textwrap.wrap(title, width))


def axis_label(text: str, width: int = 34) -> str:
    """An axis label in lines no longer than a panel's side (a formula is never broken)."""
    return text if "$" in text else "\n".join(textwrap.wrap(text, width))


def panel_title(panel: Panel, style: Style) -> str:
    """The setting, after the part and the gradual schedule when the figure names them per panel
    (``trainability, output interpolation: random-label MNIST, MLP 4×64``)."""
    head = [panel.part] if panel.part else []
    if style.schedule_in_title:
        gradual = sorted(set(panel.frame().query("schedule != 'abrupt'")["schedule"]))
        head += [words.display(schedules.SCHEDULES, g) for g in gradual]
    return f"{', '.join(head)}: {panel.setting}" if head else panel.setting


@dataclasses.dataclass(frozen=True)
class Entry:
    """A legend entry: its place in the shared legend, its text and its handle."""

    rank: tuple
    label: str
    handle: object


def entry_label(variant: str, arm: str) -> str:
    return f"{variant}: {arm}" if variant else arm


def arm_entry(schedule: str, delta: float, method: str, style: Style) -> Entry:
    """An arm's legend entry: its colour and name (overlaid runs share it; their line styles
    have entries of their own, :func:`variant_entries`)."""
    handle = matplotlib.lines.Line2D([], [], color=arm_color(schedule, delta, method, style.colors), linewidth=1.6)
    label = words.arm_name(schedule, delta, method, with_schedule=not style.schedule_in_title)
    return Entry((0, words.arm_rank(schedule, delta, method)), label, handle)


def variant_entries(panel: Panel) -> list[Entry]:
    """One entry per overlaid run: its line style and marker (none for a single run)."""
    return [Entry((1, i), variant, matplotlib.lines.Line2D([], [], color="0.35", linestyle=LINESTYLES[i % 4],
                                                           marker=MARKERS[i % 4], markersize=5, linewidth=1.4))
            for i, variant in enumerate(panel.variant_order()) if variant]


def clipped_interval(mean: np.ndarray, half: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The 95% interval's ends, within the metric's range (a missing half-width is 0)."""
    mean, half = np.asarray(mean, float), np.nan_to_num(np.asarray(half, float))
    low, high = mean - half, mean + half
    bounds = summary.metric_range(metric)
    if bounds is not None:
        low, high = np.clip(low, *bounds), np.clip(high, *bounds)
    return low, high


def error_lengths(mean: float, half_width: float, metric: str) -> list[list[float]]:
    """Matplotlib's error-bar lengths below and above ``mean`` for its clipped 95% interval."""
    low, high = clipped_interval([mean], [half_width], metric)
    return [[max(mean - low[0], 0.0)], [max(high[0] - mean, 0.0)]]


def within_unit_range(ax: matplotlib.axes.Axes, metric: str, axis: str) -> None:
    """An axis of a metric in [0, 1] (accuracy, BLEU) shows no values outside it."""
    if summary.metric_range(metric) == (0.0, 1.0):
        low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
        (ax.set_xlim if axis == "x" else ax.set_ylim)(max(low, -0.02), min(high, 1.02))
