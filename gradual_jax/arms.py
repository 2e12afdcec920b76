"""An arm's name: the one way a lane's schedule, Δ and mitigation are written in words.

The results table's ``arm`` column, the summaries, the claims report and TensorBoard's run
texts all use :func:`arm_label`, so an arm reads the same wherever it appears. It needs nothing
but the standard library, so every layer may use it.
"""

from __future__ import annotations

import math


def arm_label(schedule: str, delta: float | None, method: str, *, model: str = "",
              learning_rate: float | None = None, run: str = "") -> str:
    """``abrupt``, ``output_interp Δ=0.1``, ``abrupt + redo``, ``output_interp Δ=0.5 [crelu_mlp]``,
    ``abrupt, lr=0.001`` (the rate only when given), ``RUN: …`` with a run. A NaN or None Δ is an
    abrupt lane's."""
    label = schedule if delta is None or math.isnan(delta) else f"{schedule} Δ={delta:g}"
    if method != "none":
        label += f" + {method}"
    if model:
        label += f" [{model}]"
    if learning_rate is not None:
        label += f", lr={learning_rate:g}"
    return f"{run}: {label}" if run else label
