"""The paper's figures from run directories (``gradual-jax plot DIR [DIR ...]``).

Reads only ``results.csv`` and ``config.json`` of each run (it never re-runs anything).
Each line is one arm (schedule, Δ, method, learning rate; and the run, when several are
overlaid), the mean over seeds with a shaded 95% Student-t interval, clipped to the metric's
range. The layout follows the experiment: one panel for Figs. 1–4, one panel per part for
Fig. 5 (trainability and generalizability), four diagnostics panels for Fig. 6. A run that
carries the diagnostics columns also gets those four panels as ``figure-diagnostics.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gradual_jax import summary  # noqa: E402

RESULTS_FILE, CONFIG_FILE = "results.csv", "config.json"
LABELS = {
    "online_train_acc": "train accuracy (online, last pure epoch)", "train_acc": "train accuracy",
    "test_acc": "test accuracy", "max_hessian_eigenvalue": "max Hessian eigenvalue",
    "representation_change": "relative representation change", "dormant_fraction_tau0": "dormant fraction (never active on the probe)",
    "dormant_fraction_tau0.01": "dormant fraction (active on ≤ 1% of the probe)",
    "distance_from_init": "distance from initialisation",
}
FIG6_PANELS = ("max_hessian_eigenvalue", "representation_change", "dormant_fraction_tau0", "distance_from_init")
X_AXES = {"task": "task", "samples": "samples_seen"}


# ---------------------------------------------------------------------------
# Loading runs


def run_parts(run_dir: Path) -> list[Path]:
    """A run directory, or the part directories of a multi-part experiment (Fig. 5)."""
    run_dir = Path(run_dir)
    if (run_dir / RESULTS_FILE).exists():
        return [run_dir]
    parts = sorted(p for p in run_dir.iterdir() if (p / RESULTS_FILE).exists()) if run_dir.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"{run_dir} holds no {RESULTS_FILE} (neither directly nor in part directories)")
    return parts


class ResultsError(ValueError):
    """A run directory's results or config cannot be read (empty, damaged, not a results table)."""


REQUIRED_COLUMNS = ("task", "seed", "schedule", "delta", "learning_rate")


def load_part(part_dir: Path, run_label: str) -> tuple[pd.DataFrame, dict]:
    table, config_file = part_dir / RESULTS_FILE, part_dir / CONFIG_FILE
    try:
        frame = pd.read_csv(table)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ResultsError(f"{table} is not a results table ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else 'empty'})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame]
    if missing or frame.empty:
        raise ResultsError(f"{table} is not a results table of a run: "
                           + (f"it lacks the columns {', '.join(missing)}" if missing else "it has no rows"))
    try:
        config = json.loads(config_file.read_text())["config"]
        config["name"], config["metric"]  # noqa: B018 - the keys every figure needs
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{config_file} is not a run's config.json ({type(err).__name__}: {err})") from None
    frame.insert(0, "run", run_label)
    return frame, config


def check_metric(frame: pd.DataFrame, metric: str, where: Path | str) -> None:
    """A clear error for ``--metric`` naming a column the results do not have."""
    if metric not in frame or not pd.api.types.is_numeric_dtype(frame[metric]):
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in
                   ("lane", "seed", "task", "delta", "learning_rate", "samples_seen", "epochs_per_task",
                    "transition_ratio", "batch_size", "reset_each_task", "finite")]
        raise ResultsError(f"--metric {metric}: {where} has no such numeric column; choose one of: "
                           + ", ".join(numeric))


# ---------------------------------------------------------------------------
# Drawing


def method_label(run: str, schedule: str, method: str, delta: float, learning_rate: float, *, show_run: bool,
                 show_rate: bool) -> str:
    label = schedule if pd.isna(delta) else f"{schedule} (Δ={delta:g})"
    if method != "none":
        label += f" + {method}"
    if show_rate:
        label += f", lr={learning_rate:g}"
    return f"{run}: {label}" if show_run else label


def draw(ax: plt.Axes, frame: pd.DataFrame, metric: str, *, x: str = "task") -> None:
    """One line per method: the mean over seeds of ``metric`` against task or samples seen."""
    if x not in X_AXES:
        raise ValueError(f"x={x!r} is not allowed; choose one of: {', '.join(X_AXES)}")
    show_run = frame["run"].nunique() > 1
    show_rate = frame["learning_rate"].nunique() > 1
    if "method" not in frame:  # results written before mitigations existed
        frame = frame.assign(method="none")
    keys = ["run", "schedule", "method", "delta", "learning_rate"]
    for (run, schedule, method, delta, lr), group in frame.groupby(keys, dropna=False, sort=False):
        by_task = group.groupby("task")
        mean, low, high = summary.band(by_task[metric], metric)
        xs = by_task[X_AXES[x]].mean().to_numpy()
        label = method_label(run, schedule, method, delta, lr, show_run=show_run, show_rate=show_rate)
        line, = ax.plot(xs, mean.to_numpy(), label=label)
        if by_task[metric].count().max() > 1:
            ax.fill_between(xs, low.to_numpy(), high.to_numpy(), alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set_xlabel("task" if x == "task" else "samples seen")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _model_of(m: dict) -> str:
    name = m.get("name", "mlp")
    if name == "resnet18":
        return f"ResNet-18 ×{m['width_multiplier']:g} width"
    if name == "t5":
        return f"T5 d_model {m['d_model']}, d_ff {m['d_ff']}, {m['num_layers']}+{m['num_layers']} layers"
    return f"{'CReLU MLP' if name == 'crelu_mlp' else 'MLP'} {tuple(m['hidden_sizes'])}"


def caption_of(config: dict, dataset: str) -> str:
    d, p, m, o = config["data"], config["protocol"], config["model"], config["optim"]
    text = config.get("text")
    size = (f"{text['num_train']} pairs/task" if dataset.endswith("(generated)") and text
            else f"{d['train_per_class']}/class")
    return (f"{dataset}, {config['task']['family']}, {size}, E={p['epochs_per_task']}, "
            f"k={p['transition_ratio']:g}, batch {p['batch_size']}, {_model_of(m)}, {o['name']}; "
            "mean over seeds, 95% Student-t interval")


def figure_for(parts: list[tuple[str, pd.DataFrame, dict]], *, x: str = "task",
               metric: str | None = None, diagnostics_panels: bool = False) -> plt.Figure:
    """The figure of one experiment; ``parts`` are (title, table, config) per panel group.
    ``diagnostics_panels``: Fig. 6's four diagnostics panels of the first part instead."""
    experiment = parts[0][2]["name"]
    if (experiment == "fig6-diagnostics" and metric is None) or diagnostics_panels:
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
        frame, config = parts[0][1], parts[0][2]
        for ax, name in zip(axes.flat, FIG6_PANELS):
            draw(ax, frame, name, x=x)
            ax.set_title(LABELS[name])
        captions = [caption_of(config, frame["dataset"].iloc[0])]
    else:
        fig, axes = plt.subplots(1, len(parts), figsize=(6.4 * len(parts), 4.2), squeeze=False)
        captions = []
        for ax, (title, frame, config) in zip(axes.flat, parts):
            draw(ax, frame, metric or config["metric"], x=x)
            ax.set_title(title)
            captions.append(caption_of(config, frame["dataset"].iloc[0]))
    fig.suptitle(f"{experiment} [{parts[0][2]['preset']}]")
    fig.text(0.01, 0.005, "\n".join(dict.fromkeys(captions)), fontsize=7, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.04 * len(set(captions)), 1, 1))
    return fig


def final_vs_delta(runs: list[tuple[str, pd.DataFrame, dict]], metric: str | None = None) -> plt.Figure:
    """The final-window mean against Δ, one line per run (labelled with its E), each abrupt arm
    a dashed line of its run's colour; 95% Student-t intervals over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, frame, config in runs:
        name = metric or config["metric"]
        arms = summary.arm_table(frame, name)
        epochs = config["protocol"]["epochs_per_task"]
        color = None  # the run's colour, once its gradual line has one
        for schedule, group in arms[arms["schedule"] != "abrupt"].groupby("schedule", sort=False):
            group = group.sort_values("delta")
            line = ax.errorbar(group["delta"].to_numpy(float), group["final"].to_numpy(float),
                               yerr=group["final_ci95"].fillna(0.0).to_numpy(float), marker="o",
                               capsize=3, label=f"{label + ': ' if label else ''}{schedule}, E = {epochs}")
            color = line[0].get_color()
        abrupt = arms[(arms["schedule"] == "abrupt") & (arms["method"] == "none")]
        for _, r in abrupt.iterrows():
            ax.axhline(r["final"], color=color, linestyle="--", linewidth=1, label=f"abrupt, E = {epochs}")
            if not np.isnan(r["final_ci95"]):
                ax.axhspan(r["final"] - r["final_ci95"], r["final"] + r["final_ci95"], color=color, alpha=0.1, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("step size Δ")
    ax.set_ylabel(f"{LABELS.get(name, name)}, final window")
    bounds = summary.metric_range(name)
    if bounds == (0.0, 1.0):
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{runs[0][2]['name']}: final window against Δ")
    fig.tight_layout()
    return fig


def plot_runs(run_dirs: Sequence[str | Path], *, out: str | Path | None = None, x: str = "task",
              metric: str | None = None, layout: str = "auto") -> list[Path]:
    """Write the figure (PNG and PDF) and the summary (Markdown and CSV) of one or more runs.

    Several directories are overlaid, part by part. ``layout="delta"`` draws the final window
    against Δ instead, one line per run part (e.g. runs at different E). Returns the files written.
    """
    if layout not in ("auto", "delta"):
        raise ValueError(f"layout={layout!r} is not allowed; choose one of: auto, delta")
    dirs = [Path(d) for d in run_dirs]
    labels = [d.name for d in dirs] if len(dirs) > 1 else [""]  # name runs only when overlaying
    by_part: dict[str, list[tuple[pd.DataFrame, dict]]] = {}
    for label, run_dir in zip(labels, dirs):
        for part in run_parts(run_dir):
            name = part.name if part != run_dir else ""
            by_part.setdefault(name, []).append(load_part(part, label))
    parts = [(name or frames[0][1]["name"], pd.concat([f for f, _ in frames], ignore_index=True), frames[0][1])
             for name, frames in by_part.items()]
    for title, frame, config in parts:
        check_metric(frame, metric or config["metric"], ", ".join(map(str, dirs)))
    target = Path(out) if out else dirs[0] / "figure.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    if layout == "delta":
        runs = [(label, frame, config) for _, frames in by_part.items() for frame, config in frames
                for label in [frame["run"].iloc[0]]]
        written = save(final_vs_delta(runs, metric), target)
    else:
        written = save(figure_for(parts, x=x, metric=metric), target)
    if (layout == "auto" and metric is None and experiment_of(parts) != "fig6-diagnostics"
            and has_diagnostics(parts[0][1])):
        written += save(figure_for(parts, x=x, diagnostics_panels=True),
                        target.with_name(target.stem + "-diagnostics.png"))
    arms, pairs = [], []
    for title, frame, config in parts:
        name = metric or config["metric"]
        arms.append(summary.arm_table(frame, name).assign(part=title))
        pairs.append(summary.paired_table(frame, name).assign(part=title))
    arms, pairs = pd.concat(arms, ignore_index=True), pd.concat(pairs, ignore_index=True)
    csv_path, md_path = target.with_name(target.stem + "-summary.csv"), target.with_name(target.stem + "-summary.md")
    pairs_path = target.with_name(target.stem + "-paired.csv")
    arms.to_csv(csv_path, index=False)
    pairs.to_csv(pairs_path, index=False)
    md_path.write_text(summary.summary_markdown(arms, pairs))
    return [*written, csv_path, pairs_path, md_path]


def save(fig: plt.Figure, target: Path) -> list[Path]:
    """``target`` as PNG and PDF; the figure is closed."""
    paths = [target.with_suffix(suffix) for suffix in (".png", ".pdf")]
    for path in paths:
        fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def experiment_of(parts: list[tuple[str, pd.DataFrame, dict]]) -> str:
    return parts[0][2]["name"]


def has_diagnostics(frame: pd.DataFrame) -> bool:
    return all(name in frame and frame[name].notna().any() for name in FIG6_PANELS)
