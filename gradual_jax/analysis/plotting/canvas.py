"""A figure's frame: panels under one heading, one shared legend, and a caption beneath
naming every setting drawn and saying what its arms do.

Figures are :class:`matplotlib.figure.Figure` objects of their own, never pyplot's: writing
them needs no display and leaves the process's backend alone.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterable, Sequence

import matplotlib.figure
import numpy as np

from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.panels import Panel
from gradual_jax.analysis.plotting.style import Entry, Style, panel_title


@dataclasses.dataclass
class Canvas:
    """A figure in two stacked parts: ``top`` holds the heading, the panels and the one
    legend; ``bottom`` the caption, sized to its wrapped lines so that nothing overlaps."""

    figure: matplotlib.figure.Figure
    top: matplotlib.figure.SubFigure
    axes: np.ndarray
    caption: str


def new_canvas(rows: int, cols: int, caption_lines: Sequence[str], *, width: float = 5.6,
               height: float = 3.9) -> Canvas:
    """``rows`` × ``cols`` panels of ``width`` × ``height`` inches above the caption."""
    total_width = width * cols
    wrapped = [line for text in caption_lines for line in textwrap.wrap(text, int(total_width * 17))]
    caption_height = 0.15 * len(wrapped) + 0.1
    fig = matplotlib.figure.Figure(figsize=(total_width, height * rows + caption_height), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[height * rows, caption_height])
    bottom.text(0.01, 1.0, "\n".join(wrapped), fontsize=7.5, color="0.3", va="top", ha="left",
                transform=bottom.transSubfigure)
    return Canvas(fig, top, top.subplots(rows, cols, squeeze=False), "\n".join(wrapped))


def finish(canvas: Canvas, heading: str, entries: Iterable[Entry]) -> matplotlib.figure.Figure:
    """The heading and one legend for every panel, below them, in arm order."""
    canvas.top.suptitle(heading, fontsize=13)
    unique: dict[str, Entry] = {}
    for entry in entries:
        unique.setdefault(entry.label, entry)
    ordered = sorted(unique.values(), key=lambda e: e.rank)
    if ordered:
        longest = max(len(e.label) for e in ordered)
        ncol = max(1, min(len(ordered), int(canvas.figure.get_figwidth() * 12 / (longest + 8))))
        beside = ncol == 1 and len(ordered) > 3  # a narrow figure: a tall legend goes to the right
        canvas.top.legend([e.handle for e in ordered], [e.label for e in ordered], frameon=False, fontsize=9,
                          loc="outside right center" if beside else "outside lower center", ncol=ncol)
    return canvas.figure


def captions_of(panels: Sequence[Panel]) -> list[str]:
    """One caption line per distinct setting (runs made with the same setting, a sweep split
    into several runs, share one), then one saying what each drawn schedule and mitigation does."""
    parts = [p for panel in panels for p in panel.parts]
    settings = dict.fromkeys(words.caption_of(p.config, p.frame) for p in parts)
    arms = words.arms_caption((s for p in parts for s in p.frame["schedule"]),
                              (m for p in parts for m in p.frame["method"]))
    return [*settings, arms]


def heading_of(panels: Sequence[Panel], topic: str | None = None) -> str:
    """``Fig. 1 — trainability``; ``Fig. 1 — random-label MNIST, MLP 4×64`` for a single panel."""
    numbers = list(dict.fromkeys(words.figure_number(p.config["name"]) for panel in panels for p in panel.parts))
    prefix = numbers[0] if len(numbers) == 1 else "Figs. " + ", ".join(n.removeprefix("Fig. ") for n in numbers)
    if topic is None:
        topic = panel_title(panels[0], Style({})) if len(panels) == 1 else " and ".join(
            dict.fromkeys(words.purpose_of(p.metric) for p in panels))
    return f"{prefix} — {topic}"
