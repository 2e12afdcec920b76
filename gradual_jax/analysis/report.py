"""``gradual-jax report DIR [DIR ...] --out FILE.md``: the claims table of finished runs.

Reads only each run's ``results.csv`` and ``config.json`` (never re-runs anything). Runs are
grouped into *settings*: runs whose data, tasks, protocol, optimizer and model shape agree (a
model's activation may differ, so a CReLU run joins the ReLU run it is compared with). Every
claim of the experiments in a setting (``CLAIMS`` in the experiment modules) is evaluated on
it; each comparison gives the paired difference of final-window means over seeds, its 95%
Student-t interval, how many seeds favour the arm, and a verdict. A run from which no claim can
be decided is refused, naming the arms the claims need.

A DIR may also be a search folder (``gradual-jax search``, with its ``search.csv``): it adds a
section saying, per figure, whether a setting was found in which the abrupt arm loses
plasticity (so the figure's claims can be tested there), or that every candidate ran and none
does (the claims are **not testable at CPU scale**).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

import experiments
from gradual_jax.analysis import claims as claims_lib
from gradual_jax import config as config_lib
from gradual_jax.analysis import search as search_lib
from gradual_jax.analysis import summary
from gradual_jax.analysis.plotting import load_part, run_parts

SETTING_SECTIONS = ("data", "task", "protocol", "optim", "model")
IGNORED_KEYS = {"data.data_dir", "data.source", "data.download", "model.name"}
READABLE = {"protocol.epochs_per_task": "E", "protocol.transition_ratio": "k", "protocol.batch_size": "batch",
            "task.num_tasks": "tasks", "data.train_per_class": "train images/class",
            "data.test_per_class": "test images/class", "data.dataset": "data", "model.hidden_sizes": "MLP widths",
            "model.width_multiplier": "ResNet width", "text.num_train": "pairs/task", "model.d_model": "d_model",
            "model.d_ff": "d_ff", "sweep.seeds": "seeds"}


@dataclasses.dataclass
class RunPart:
    """One results table: a run directory, or one part of a multi-part run."""

    label: str  # how tables name it: the directory (and part)
    path: Path
    frame: pd.DataFrame
    config: dict  # the experiment config (config.json's "config")
    meta: dict  # the whole config.json


def load(run_dirs: Sequence[str | Path]) -> list[RunPart]:
    loaded = []
    for run_dir in map(Path, run_dirs):
        for part in run_parts(run_dir):
            label = run_dir.name if part == run_dir else f"{run_dir.name}/{part.name}"
            frame, config = load_part(part, label)
            meta = json.loads((part / "config.json").read_text())
            if meta.get("status") != "finished":
                raise ValueError(f"{part}: the run has not finished (config.json status {meta.get('status')!r}); "
                                 "run its command again to resume it")
            loaded.append(RunPart(label, part, frame, config, meta))
    return loaded


def _setting_key(config: dict) -> str:
    sections = {k: config[k] for k in SETTING_SECTIONS}
    if config["task"]["family"] in config_lib.TEXT_FAMILIES:
        sections["text"] = config["text"]
    flat = {k: v for k, v in config_lib.flatten(sections).items() if k not in IGNORED_KEYS}
    return json.dumps(flat, sort_keys=True, default=str)


def settings(parts: list[RunPart]) -> list[list[RunPart]]:
    """Runs grouped by setting, in the order given."""
    groups: dict[str, list[RunPart]] = {}
    for part in parts:
        groups.setdefault(_setting_key(part.config), []).append(part)
    return list(groups.values())


def experiment_of(part: RunPart) -> str:
    """The experiment a run came from: one of this package's by name, or the file of a
    researcher's own experiment, as the run recorded it."""
    name = part.config["name"]
    if name in experiments.MODULES:
        return name
    return (part.meta.get("provenance") or {}).get("experiment_file") or name


def claims_of(parts: Sequence[RunPart]) -> list[claims_lib.Claim]:
    found = []
    for name in dict.fromkeys(experiment_of(p) for p in parts):
        found += [c for c in getattr(experiments.module(name), "CLAIMS", ()) if c not in found]
    return found


def paper_differences(part: RunPart) -> list[str]:
    """How a run's setting differs from its experiment's paper preset, e.g. ``E = 10 (paper: 80)``."""
    try:
        paper = experiments.get_configs(experiment_of(part), "paper")
    except config_lib.ConfigError:
        return []
    section = part.path.name if part.path.name in paper else ""
    reference = config_lib.to_dict(paper.get(section, next(iter(paper.values()))))
    keys = [*SETTING_SECTIONS, "text"] if part.config["task"]["family"] in config_lib.TEXT_FAMILIES \
        else list(SETTING_SECTIONS)
    ours = config_lib.flatten({k: part.config[k] for k in keys})
    theirs = config_lib.flatten({k: reference[k] for k in keys})
    out = [f"{READABLE.get(k, k)} = {_fmt(ours[k])} (paper: {_fmt(theirs.get(k))})"
           for k in ours if k not in IGNORED_KEYS and ours[k] != theirs.get(k)]
    seeds, paper_seeds = len(part.config["sweep"]["seeds"]), len(reference["sweep"]["seeds"])
    if seeds != paper_seeds:
        out.append(f"seeds = {seeds} (paper: {paper_seeds})")
    return out


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "×".join(map(str, value)) if len(set(value)) > 1 else f"{value[0]}×{len(value)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _ci(interval: summary.Interval | None) -> str:
    if interval is None or interval.n == 0:
        return "–"
    return f"{interval.mean:+.3f}" + ("" if math.isnan(interval.half_width) else
                                      f" [{interval.low:+.3f}, {interval.high:+.3f}]")


def evaluate(parts: list[RunPart]) -> list[tuple[list[RunPart], list[claims_lib.Outcome]]]:
    """Each setting with the outcomes of its claims; refuses a run that decides nothing."""
    evaluated = []
    for group in settings(parts):
        frame = pd.concat([p.frame for p in group], ignore_index=True)
        group_claims = claims_of(group)
        outcomes = [o for claim in group_claims for o in claims_lib.evaluate(claim, frame)]
        used = {run for o in outcomes for run in o.runs}
        for part in group:
            if part.label not in used:
                mine = claims_of([part])
                if not mine:
                    raise claims_lib.MissingArmsError(f"{part.path}: experiment {part.config['name']} states no claim "
                                                      "to decide")
                needs = sorted({arm for c in mine for arm in claims_lib.required_arms(c)})
                raise claims_lib.MissingArmsError(
                    f"{part.path}: no claim of {part.config['name']} can be decided from it; its claims need "
                    f"the arms {', '.join(needs)} (on {', '.join(sorted({c.metric for c in mine}))})")
        evaluated.append((group, outcomes))
    return evaluated


def _setting_name(group: list[RunPart]) -> str:
    """The runs of a setting by their folders, e.g. ``fig1-mnist-cpu + fig5-granularity-cpu/trainability``."""
    return " + ".join(p.label for p in group)


def _wall(meta: dict) -> str:
    seconds = (meta.get("compile_seconds") or 0) + (meta.get("train_seconds") or 0)
    text = f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
    if meta.get("resumed_from_task"):
        text += f" (the last part, resumed at task {meta['resumed_from_task']})"
    return text


def _command(part: RunPart) -> tuple[str, str]:
    prov = part.meta.get("provenance") or {}
    command = prov.get("command") or "(not recorded)"
    commit = prov.get("commit")
    revision = "not recorded" if not commit else commit[:10] + (" + uncommitted changes" if prov.get("dirty") else "")
    return command, revision


def _figure(part: RunPart, out: Path) -> str:
    run_dir = part.path.parent if (part.path.parent / "figure.png").exists() and not (
        part.path / "figure.png").exists() else part.path
    figure = run_dir / "figure.png"
    return os.path.relpath(figure, out.parent) if figure.exists() else ""


def is_search(path: str | Path) -> bool:
    return (Path(path) / search_lib.CSV_FILE).exists()


def load_search(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path / search_lib.CSV_FILE)
    if "experiment" not in frame or frame.empty:
        raise ValueError(f"{path}: {search_lib.CSV_FILE} names no experiment; rewrite it with "
                         f"`gradual-jax search EXPERIMENT --out {path} --table-only`")
    return frame


def _search_rows(searches: list[tuple[Path, pd.DataFrame]], ids: dict, out: Path) -> list[str]:
    lines = ["## Searches: where the question is real at CPU scale", "",
             "A claim that gradual change preserves plasticity can only be tested where the abrupt arm loses it.",
             "Each search (`gradual-jax search`) trains the abrupt arm alone in settings that change only sizes",
             "of the paper's protocol, cheapest first, so the setting is chosen before any gradual arm is seen:",
             "the first whose abrupt arm loses (its drop from its best earlier window to the final window,",
             "paired by seed, has a 95% interval above 0) is the chosen setting. When every candidate ran and",
             "none loses, the figure's claims are **not testable at CPU scale**.", "",
             "| experiment | claims | candidates run | chosen setting | abrupt arm: best earlier window → final window, "
             "drop [95% CI], seeds | outcome | search |", "|---|---|---:|---|---|---|---|"]
    for path, frame in searches:
        name = frame["experiment"].iloc[0]
        claim_ids = ", ".join(ids[c] for c in getattr(experiments.module(name), "CLAIMS", ()) if c in ids) or "–"
        ran = int(frame["status"].eq("finished").sum())
        verdict = search_lib.outcome(frame)
        chosen = frame[frame["chosen"].astype(bool)]
        if len(chosen):
            r = chosen.iloc[0]
            setting = f"`{r['candidate']}` (`{r['overrides']}`)"
            low, high = r["drop"] - r["drop_ci95"], r["drop"] + r["drop_ci95"]
            numbers = (f"{r['best']:.3f} ({r['best_window']}) → {r['final']:.3f}, {r['drop']:+.3f} [{low:+.3f}, {high:+.3f}], "
                       f"{int(r['drop_positive'])}/{int(r['seeds'])}")
        else:
            setting, numbers = "none", "–"
        table = os.path.relpath(path / search_lib.TABLE_FILE, out.parent)
        lines.append(f"| {name} | {claim_ids} | {ran}/{len(frame)} | {setting} | {numbers} | **{verdict}** | "
                     f"[{search_lib.TABLE_FILE}]({table}) |")
    return lines + [""]


def render(evaluated, out: Path, command: str, searches: Sequence[tuple[Path, pd.DataFrame]] = ()) -> str:
    lines = ["# Does it reproduce?", "",
             f"Made by `{command}` from finished runs (their results only; nothing is re-run). Each row",
             "compares two arms on the final-window mean of the claim's metric (the last max(3, 10%) of",
             "the tasks), paired by seed: lanes with the same seed share the initialisation and the task",
             "sequence. The difference is the mean over seeds with its 95% Student-t interval; the verdict",
             "is **holds** when the interval lies above 0, **reversed** when below, **inconclusive** otherwise.",
             "*At epoch E* is the same comparison read after E epochs of every task in both arms (abrupt",
             "lanes are otherwise read after (1+k)·E), where the metric is the online train accuracy.", ""]
    claims_in_order = list(dict.fromkeys(o.claim for _, outcomes in evaluated for o in outcomes))
    for _, frame in searches:  # a searched figure's claims are listed even when no run decides them
        claims_in_order += [c for c in getattr(experiments.module(frame["experiment"].iloc[0]), "CLAIMS", ())
                            if c not in claims_in_order]
    ids = {claim: f"C{i + 1}" for i, claim in enumerate(claims_in_order)}
    lines += [f"- **{ids[c]}** ({c.figure}, {c.metric}): {c.caption}" for c in claims_in_order]
    lines += ["", "| claim | setting | comparison | difference [95% CI] | seeds > 0 | verdict | at epoch E | "
              "figure | wall time |", "|---|---|---|---:|---:|---|---:|---|---:|"]
    for group, outcomes in evaluated:
        name = _setting_name(group)
        by_label = {p.label: p for p in group}
        for o in outcomes:
            run = by_label[o.runs[0]]
            figure = _figure(run, out)
            lines.append(f"| {ids[o.claim]} | {name} | {o.comparison} | {_ci(o.difference)} | "
                         f"{o.difference.positive()}/{o.difference.n} | **{o.verdict}** | {_ci(o.control)} | "
                         + (f"[figure]({figure})" if figure else "–") + f" | {_wall(run.meta)} |")
    lines.append("")
    if searches:
        lines += _search_rows(list(searches), ids, out)
    lines += ["## Settings", ""]
    for group, outcomes in evaluated:
        lines += [f"### {_setting_name(group)}", ""]
        first = group[0]
        differences = paper_differences(first)
        lines.append("Differs from the paper's scale in: " + ("; ".join(differences) if differences else "nothing")
                     + ".")
        lines.append("")
        lines += ["| run | command | commit | wall time | figure |", "|---|---|---|---|---|"]
        for part in group:
            command_line, revision = _command(part)
            figure = _figure(part, out)
            lines.append(f"| {part.label} | `{command_line}` | {revision} | {_wall(part.meta)} | "
                         + (f"[figure]({figure})" if figure else "–") + " |")
        metrics = sorted({o.claim.metric for o in outcomes})
        lines += ["", f"Metric: {', '.join(metrics)}; final window: "
                  f"{summary.window_text(summary.final_window(int(first.frame['task'].max()) + 1))}.", ""]
    return "\n".join(lines) + "\n"


def report(run_dirs: Sequence[str | Path], out: str | Path, command: str | None = None) -> Path:
    """Write the claims table of ``run_dirs`` to ``out`` (Markdown); return its path."""
    out = Path(out)
    searches = [(Path(d), load_search(Path(d))) for d in run_dirs if is_search(d)]
    parts = load([d for d in run_dirs if not is_search(d)])
    evaluated = evaluate(parts)
    command = command or "gradual-jax report " + " ".join(map(str, run_dirs)) + f" --out {out}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(evaluated, out, command, searches))
    return out
