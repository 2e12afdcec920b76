"""The paper's figures from run directories (``gradual-jax plot DIR [DIR ...]``).

Reads only ``results.csv`` and ``config.json`` of each run (it never re-runs anything) and
writes the figure (PNG and PDF) with the run's summary tables beside it. Layouts:

* ``curves``: the metric against the task (or samples seen), one panel per data set, task
  family and model; runs of the same setting overlay in one panel, runs of different settings
  (Fig. 1's MLP on MNIST and ResNet-18) sit side by side.
* ``granularity`` (Fig. 5): the curves with the final-window mean against Δ under each panel.
* ``delta``: the final-window mean against Δ alone, one line per run (e.g. runs at different E).
* ``methods`` (the baselines): the final-window mean of every arm as a point with its 95%
  interval, one row per arm, where a curve per mitigation would be unreadable.
* ``diagnostics`` (Fig. 6): four panels of network properties per task.

``auto`` picks the experiment's own figure (:mod:`.layouts`). Every line is one arm, the mean
over seeds with its 95% Student-t interval over seeds, clipped to the metric's range. Names are
words (``output interpolation Δ = 0.1``, ``abrupt + ReDo``), Δ is coloured along viridis from
coarse to fine with abrupt in black, and every figure has one legend and a caption giving the
setting.

The modules, from the bottom: :mod:`.words` (names and captions), :mod:`.load` (run folders
read back), :mod:`.panels` (runs grouped onto axes), :mod:`.style` (colours, legend entries,
labels), :mod:`.canvas` (heading, legend, caption), one module per layout family
(:mod:`.curves`, :mod:`.methods`, :mod:`.diagnostics`), :mod:`.layouts` and :mod:`.files`.
Figures are :class:`matplotlib.figure.Figure` objects, never pyplot's, so drawing and writing
them needs no backend and leaves the process's own alone.
"""

from gradual_jax.analysis.plotting.canvas import captions_of, heading_of
from gradual_jax.analysis.plotting.curves import X_AXES, curves_figure, delta_figure, granularity_figure
from gradual_jax.analysis.plotting.diagnostics_panels import FIG6_PANELS, diagnostics_figure, has_diagnostics
from gradual_jax.analysis.plotting.files import plot_runs, save, write_summaries
from gradual_jax.analysis.plotting.layouts import LAYOUTS, auto_layout, figure_of
from gradual_jax.analysis.plotting.load import (Part, ResultsError, UsageError, check_metric, load_part,
                                                load_runs, run_parts)
from gradual_jax.analysis.plotting.methods_chart import methods_figure
from gradual_jax.analysis.plotting.panels import Panel, panels_of
from gradual_jax.analysis.plotting.words import arm_name, caption_of, metric_axis, metric_name, schedule_name

__all__ = [
    "FIG6_PANELS", "LAYOUTS", "X_AXES", "Panel", "Part", "ResultsError", "UsageError", "arm_name", "auto_layout",
    "caption_of", "captions_of", "check_metric", "curves_figure", "delta_figure", "diagnostics_figure", "figure_of",
    "granularity_figure", "has_diagnostics", "heading_of", "load_part", "load_runs", "methods_figure",
    "metric_axis", "metric_name", "panels_of", "plot_runs", "run_parts", "save", "schedule_name",
    "write_summaries",
]
