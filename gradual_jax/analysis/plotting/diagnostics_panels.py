"""The ``diagnostics`` layout (Fig. 6): four network properties per task, read at each task's
readout on a fixed probe."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.figure
import pandas as pd

from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.canvas import captions_of, finish, heading_of, new_canvas
from gradual_jax.analysis.plotting.curves import CURVES_NOTE, draw_curves
from gradual_jax.analysis.plotting.load import UsageError
from gradual_jax.analysis.plotting.panels import Panel
from gradual_jax.analysis.plotting.style import panel_title, style_of

FIG6_PANELS = ("max_hessian_eigenvalue", "representation_change", "dormant_fraction_tau0", "distance_from_init")
DIAGNOSTICS_NOTE = ("Read at each task's readout on a fixed probe of training inputs: the eigenvalue of largest "
                    "magnitude of the probe loss's Hessian (power iteration); the relative change of the last "
                    "hidden layer's representation h since the previous task's readout, mean over the probe; the "
                    "fraction of hidden units never active on the probe; the distance of all parameters θ from "
                    "their initialisation θ₀.")


def has_diagnostics(frame: pd.DataFrame) -> bool:
    """Whether the results hold every one of Fig. 6's properties somewhere."""
    return all(name in frame and frame[name].notna().any() for name in FIG6_PANELS)


def diagnostics_figure(panels: Sequence[Panel], *, x: str = "task") -> matplotlib.figure.Figure:
    """Fig. 6: four network properties per task, of the first setting that has them."""
    panel = next((p for p in panels if has_diagnostics(p.frame())), None)
    if panel is None:
        raise UsageError("--layout diagnostics: the results have no diagnostics columns ("
                         + ", ".join(FIG6_PANELS) + "; a run with diagnostics.enabled=true records them)")
    style = style_of([panel])
    canvas = new_canvas(2, 2, [*captions_of([panel]), CURVES_NOTE, DIAGNOSTICS_NOTE], width=5.4, height=3.5)
    entries = []
    for ax, name in zip(canvas.axes.flat, FIG6_PANELS):
        entries += draw_curves(ax, panel, name, style, x=x)
        ax.set_title(words.metric_name(name), fontsize=10)
    heading = heading_of([panel], f"network properties per task, {panel_title(panel, style)}")
    return finish(canvas, heading, entries)
