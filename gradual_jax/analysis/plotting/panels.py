"""Parts grouped into panels: the runs of one data set, task family, network and metric share
one axes, and overlaid runs are named by what sets them apart."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pandas as pd

from gradual_jax.analysis import summary
from gradual_jax.analysis.plotting import words
from gradual_jax.analysis.plotting.load import Part


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
            rate = frame["learning_rate"].map(lambda r: f"lr = {words.rate(r)}")
            frame["variant"] = [f"{v}, {r}" if v else r for v, r in zip(frame["variant"], rate)]
        return frame

    def variant_order(self) -> list[str]:
        return list(dict.fromkeys(self.frame()["variant"]))


def setting_key(part: Part, metric: str | None) -> tuple:
    """What a panel holds: one data set, task family, network and metric. The activation is
    not part of it: a CReLU network is drawn beside the ReLU one it changes, as a mitigation."""
    network = words.model_words(part.config["model"]).removeprefix("CReLU ")
    return (words.dataset_of(part.frame, part.config), part.config["task"]["family"], network,
            metric or part.config["metric"])


VARIANT_FIELDS = (  # what may set overlaid runs apart, in words, most telling first
    lambda c: words.model_words(c["model"]),
    lambda c: f"E = {c['protocol']['epochs_per_task']}",
    lambda c: f"k = {c['protocol']['transition_ratio']:g}",
    lambda c: f"batch {c['protocol']['batch_size']}",
    lambda c: f"{c['task']['num_tasks']} tasks",
    lambda c: f"{c['data']['train_per_class']} images per class",
    lambda c: words.optimizer_words(c["optim"]),
)


def variant_names(configs: Sequence[dict], fallback: Sequence[str]) -> list[str]:
    """Overlaid runs named by the config fields in which they differ (``E = 10``, ``E = 20``),
    with the preset added to a name two runs share (``MLP 4×256, verdict preset`` beside
    ``CReLU MLP 4×256``), then by ``fallback`` (their folder names). '' for a single run."""
    if len(configs) < 2:
        return [""] * len(configs)
    fields = [f for f in VARIANT_FIELDS if len({f(c) for c in configs}) > 1]
    names = [", ".join(f(c) for f in fields) for c in configs]
    names = [n if names.count(n) == 1 else ", ".join(filter(None, (n, f"{c['preset']} preset")))
             for n, c in zip(names, configs)]
    return names if len(set(names)) == len(names) else list(fallback)


def panels_of(parts: Sequence[tuple[str, Part]], metric: str | None) -> list[Panel]:
    """Group (folder name, part) pairs into panels by setting, in the order first seen."""
    groups: dict[tuple, list[tuple[str, Part]]] = {}
    for folder, part in parts:
        groups.setdefault(setting_key(part, metric), []).append((folder, part))
    panels = []
    for key, members in groups.items():
        first = members[0][1]
        networks = {words.model_words(p.config["model"]) for _, p in members}
        network = networks.pop() if len(networks) == 1 else key[2]
        setting = f"{words.setting_words(first.frame, first.config)}, {network}"
        variants = variant_names([p.config for _, p in members], [f or p.name for f, p in members])
        names = {p.name for _, p in members}  # parts of one run drawn together: no single part to name
        panels.append(Panel(first.name if len(names) == 1 else "", setting, key[-1], tuple(p for _, p in members),
                            tuple(variants)))
    # as the paper: trainability first
    return sorted(panels, key=lambda p: words.purpose_of(p.metric) != "trainability")


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
