"""The layouts a figure can take, and the one each experiment draws by default (``auto``):
Fig. 6's panels for ``fig6-diagnostics``, the methods chart when a run crosses more than
:data:`METHODS_CHART_ABOVE` methods, the granularity layout for ``fig5-granularity``, and the
curves otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.figure

from gradual_jax.analysis.plotting.curves import curves_figure, delta_figure, granularity_figure
from gradual_jax.analysis.plotting.diagnostics_panels import diagnostics_figure
from gradual_jax.analysis.plotting.methods_chart import methods_figure
from gradual_jax.analysis.plotting.panels import Panel

LAYOUTS = ("auto", "curves", "granularity", "delta", "methods", "diagnostics")
METHODS_CHART_ABOVE = 4  # auto draws the methods chart when a run crosses more methods than this


def auto_layout(panels: Sequence[Panel], metric: str | None) -> str:
    """The experiment's own figure (see the module docstring)."""
    names = {p.config["name"] for panel in panels for p in panel.parts}
    if "fig6-diagnostics" in names and metric is None:
        return "diagnostics"
    if any(panel.frame()["method"].nunique() > METHODS_CHART_ABOVE for panel in panels):
        return "methods"
    if "fig5-granularity" in names:
        return "granularity"
    return "curves"


def figure_of(panels: Sequence[Panel], layout: str, *, x: str = "task") -> matplotlib.figure.Figure:
    """The figure of ``layout`` (not ``auto``: :func:`auto_layout` names the one to draw)."""
    if layout == "diagnostics":
        return diagnostics_figure(panels, x=x)
    if layout == "methods":
        return methods_figure(panels)
    if layout == "granularity":
        return granularity_figure(panels, x=x)
    if layout == "delta":
        return delta_figure(panels)
    return curves_figure(panels, x=x)
