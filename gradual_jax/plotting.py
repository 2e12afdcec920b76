"""Figures from a results table: the metric per task, one line per schedule / Δ / learning rate.

Reads only the table (it never re-runs anything). Lines are the mean over seeds with a
shaded 95% interval (normal approximation, mean ± 1.96·s/√n) when there are several seeds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LABELS = {"online_train_acc": "train accuracy (online, last pure epoch)", "train_acc": "train accuracy",
          "test_acc": "test accuracy"}
X_AXES = {"task": "task", "samples": "samples_seen"}


def curve_label(schedule: str, delta: float, learning_rate: float, several_rates: bool) -> str:
    label = schedule if pd.isna(delta) else f"{schedule} (Δ={delta:g})"
    return f"{label}, lr={learning_rate:g}" if several_rates else label


def plot_metric(frame: pd.DataFrame, metric: str, *, x: str = "task", title: str = "",
                ax: plt.Axes | None = None) -> plt.Axes:
    """Draw ``metric`` against task index (``x="task"``) or samples seen (``x="samples"``)."""
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not allowed; choose one of: {', '.join(X_AXES)}")
    ax = ax or plt.figure(figsize=(6.4, 4.0)).add_subplot()
    several_rates = frame["learning_rate"].nunique() > 1
    for (schedule, delta, lr), group in frame.groupby(["schedule", "delta", "learning_rate"], dropna=False,
                                                      sort=False):
        by_task = group.groupby("task")
        mean = by_task[metric].mean()
        xs = by_task[X_AXES[x]].mean().to_numpy()
        line, = ax.plot(xs, mean.to_numpy(), label=curve_label(schedule, delta, lr, several_rates))
        count = by_task[metric].count()
        if count.max() > 1:
            half = 1.96 * by_task[metric].std().fillna(0.0) / np.sqrt(count)
            ax.fill_between(xs, (mean - half).to_numpy(), (mean + half).to_numpy(), alpha=0.2,
                            color=line.get_color(), linewidth=0)
    ax.set_xlabel("task" if x == "task" else "samples seen")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def save_run_figure(frame: pd.DataFrame, metric: str, path: Path, *, title: str = "",
                    caption: str = "") -> Path:
    """Write a PNG of ``metric`` per task for a run; returns the path."""
    ax = plot_metric(frame, metric, title=title)
    if caption:
        ax.figure.text(0.01, 0.01, caption, fontsize=7, color="0.35")
        ax.figure.subplots_adjust(bottom=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    return path
