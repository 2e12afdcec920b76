"""Finished runs as the report reads them: results, per-epoch curves, config and provenance.

A run folder holds ``results.csv`` and ``config.json`` (and, for runs made since per-epoch
curves are kept, ``epochs.csv``), or one such folder per part of a multi-part experiment; the
theory check holds ``theory.csv`` instead. Nothing here trains or imports JAX.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gradual_jax import config as config_lib
from gradual_jax.analysis.plotting import load_part, run_parts
from gradual_jax.analysis.plotting.words import is_text

SETTING_SECTIONS = ("data", "task", "protocol", "optim", "model")
IGNORED_KEYS = {"data.data_dir", "data.source", "data.download", "model.name"}
EPOCHS_FILE = "epochs.csv"
THEORY_FILE = "theory.csv"
# A bigram-cipher task is learned or not: its test BLEU-2 sits near 1 or near 0. A task counts as
# learned when its test BLEU-2 reaches this, and the share of tasks learned is read like any
# metric (its complement is the share of failed tasks). Fixed before the verdict run.
LEARNED_BLEU = 0.5
DERIVED = {"test_bleu2_learned": ("test_bleu2", LEARNED_BLEU)}  # column -> (source column, threshold)


@dataclasses.dataclass
class RunPart:
    """One finished results table: a run folder, or one part of a multi-part run."""

    label: str  # how tables name it: the folder (and part)
    path: Path
    frame: pd.DataFrame
    config: dict  # the experiment config (config.json's "config"); {} for the theory check
    meta: dict  # the whole config.json
    epochs: pd.DataFrame | None = None  # epochs.csv, where the run kept per-epoch curves

    @property
    def experiment(self) -> str:
        return self.config.get("name") or self.meta.get("experiment", "")

    @property
    def preset(self) -> str:
        return self.config.get("preset") or self.meta.get("preset", "")

    @property
    def part(self) -> str:
        return self.label.partition("/")[2]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(int(s) for s in self.frame["seed"].unique())) if "seed" in self.frame else ()

    @property
    def learning_rates(self) -> tuple[float, ...]:
        return tuple(sorted(float(v) for v in self.frame["learning_rate"].unique())) if "learning_rate" in self.frame \
            else ()


def _finished(meta: dict, path: Path) -> None:
    if meta.get("status") != "finished":
        raise ValueError(f"{path}: the run has not finished (config.json status {meta.get('status')!r}); "
                         "run its command again to resume it")


def _theory(run_dir: Path) -> RunPart:
    meta = json.loads((run_dir / "config.json").read_text())
    _finished(meta, run_dir)
    return RunPart(run_dir.name, run_dir, pd.read_csv(run_dir / THEORY_FILE), {}, meta)


def load(run_dirs: Sequence[str | Path]) -> list[RunPart]:
    """Every finished part of ``run_dirs``; refuses (ValueError) a run still in progress."""
    loaded = []
    for run_dir in map(Path, run_dirs):
        if (run_dir / THEORY_FILE).exists():
            loaded.append(_theory(run_dir))
            continue
        for part in run_parts(run_dir):
            label = run_dir.name if part == run_dir else f"{run_dir.name}/{part.name}"
            frame, config = load_part(part, label)
            frame = with_derived(frame)
            meta = json.loads((part / "config.json").read_text())
            _finished(meta, part)
            epochs = pd.read_csv(part / EPOCHS_FILE) if (part / EPOCHS_FILE).exists() else None
            loaded.append(RunPart(label, part, frame, config, meta, epochs))
    return loaded


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`DERIVED` columns its own columns allow: 1.0 where the source
    reaches the threshold, 0.0 below it, NaN where the source is NaN."""
    added = {name: (frame[source] >= threshold).astype(float).where(frame[source].notna())
             for name, (source, threshold) in DERIVED.items() if source in frame}
    return frame.assign(**added)


def setting_key(config: dict) -> str:
    """What makes two runs the same setting (seeds, arms and a model's activation aside)."""
    if not config:
        return ""
    sections = {k: config[k] for k in SETTING_SECTIONS}
    if is_text(config["task"]["family"]):
        sections["text"] = config["text"]
    flat = {k: v for k, v in config_lib.flatten(sections).items() if k not in IGNORED_KEYS}
    return json.dumps(flat, sort_keys=True, default=str)


def command(part: RunPart) -> tuple[str, str]:
    """The command that made a run and its commit (``+ uncommitted changes`` where the tree was dirty)."""
    prov = part.meta.get("provenance") or {}
    commit = prov.get("commit")
    revision = "not recorded" if not commit else commit[:10] + (" + uncommitted changes" if prov.get("dirty") else "")
    return prov.get("command") or "(not recorded)", revision


def wall(meta: dict) -> str:
    seconds = (meta.get("compile_seconds") or 0) + (meta.get("train_seconds") or 0)
    text = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    if meta.get("resumed_from_task"):
        text += f" (the last part, resumed at task {meta['resumed_from_task']})"
    return text
