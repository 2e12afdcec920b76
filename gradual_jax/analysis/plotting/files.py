"""``gradual-jax plot DIR [DIR ...]``: the figure (PNG and PDF) and the summary tables
(Markdown and CSV) of one or more runs, each file written whole or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.figure
import pandas as pd

from gradual_jax.analysis import summary
from gradual_jax.analysis.plotting.curves import X_AXES
from gradual_jax.analysis.plotting.diagnostics_panels import diagnostics_figure, has_diagnostics
from gradual_jax.analysis.plotting.layouts import LAYOUTS, auto_layout, figure_of
from gradual_jax.analysis.plotting.load import UsageError, check_metric, load_runs
from gradual_jax.analysis.plotting.panels import panels_of
from gradual_jax.runner import storage


def save(fig: matplotlib.figure.Figure, target: Path) -> list[Path]:
    """``target`` as PNG and PDF. The figure is not pyplot's, so nothing holds it afterwards."""
    paths = [target.with_suffix(suffix) for suffix in (".png", ".pdf")]
    for path in paths:  # whole or absent, even if killed here
        storage.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))
    return paths


def write_summaries(by_part: dict[str, list[tuple[pd.DataFrame, dict]]], metric: str | None,
                    target: Path) -> list[Path]:
    """The per-arm and paired tables (CSV) and both as Markdown, beside the figure."""
    arms, pairs = [], []
    for name, frames in by_part.items():
        frame, config = pd.concat([f for f, _ in frames], ignore_index=True), frames[0][1]
        title, column = name or config["name"], metric or config["metric"]
        arms.append(summary.arm_table(frame, column).assign(part=title))
        pairs.append(summary.paired_table(frame, column).assign(part=title))
    arms, pairs = pd.concat(arms, ignore_index=True), pd.concat(pairs, ignore_index=True)
    csv_path, md_path = target.with_name(target.stem + "-summary.csv"), target.with_name(target.stem + "-summary.md")
    pairs_path = target.with_name(target.stem + "-paired.csv")
    storage.atomic_write_text(csv_path, arms.to_csv(index=False))  # whole or absent, even if killed here
    storage.atomic_write_text(pairs_path, pairs.to_csv(index=False))
    storage.atomic_write_text(md_path, summary.summary_markdown(arms, pairs))
    return [csv_path, pairs_path, md_path]


def check_request(dirs: Sequence[Path], *, out, x: str, layout: str) -> None:
    """Refuse, before reading anything, a request that cannot be honoured as given."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout={layout!r} is not allowed; choose one of: {', '.join(LAYOUTS)}")
    if x not in X_AXES:
        raise UsageError(f"x={x!r} is not allowed; choose one of: {', '.join(X_AXES)}")
    if len(dirs) > 1 and not out:
        raise UsageError(f"{len(dirs)} run directories need --out FILE for the figure (without it "
                         f"{dirs[0] / 'figure.png'} and its summary would be overwritten)")


def plot_runs(run_dirs: Sequence[str | Path], *, out: str | Path | None = None, x: str = "task",
              metric: str | None = None, layout: str = "auto") -> list[Path]:
    """Write the figure (PNG and PDF) and the summary (Markdown and CSV) of one or more runs.

    Without ``out`` a single run's own ``figure.png`` is redrawn; several runs need ``out``,
    so that overlaying runs never overwrites one run's own figure and summary. A run with the
    diagnostics columns also gets Fig. 6's panels (``-diagnostics.png``) under ``auto``.
    Returns the files written.
    """
    dirs = [Path(d) for d in run_dirs]
    check_request(dirs, out=out, x=x, layout=layout)
    parts, by_part = load_runs(dirs)
    for _, part in parts:
        check_metric(part.frame, metric or part.config["metric"], ", ".join(map(str, dirs)))
    panels = panels_of(parts, metric)
    chosen = auto_layout(panels, metric) if layout == "auto" else layout
    target = Path(out) if out else dirs[0] / "figure.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    written = save(figure_of(panels, chosen, x=x), target)
    if layout == "auto" and chosen != "diagnostics" and metric is None and any(
            has_diagnostics(p.frame()) for p in panels):
        written += save(diagnostics_figure(panels, x=x), target.with_name(target.stem + "-diagnostics.png"))
    return [*written, *write_summaries(by_part, metric, target)]
