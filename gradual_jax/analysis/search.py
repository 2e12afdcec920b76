"""A documented search for a setting in which the abrupt arm loses plasticity.

A claim that gradual change *preserves* plasticity can only be tested where the abrupt arm
*loses* it. At CPU size some figures' abrupt arms fit every task, so the question is not yet
real there. A search tries settings that move only the sizes the paper's protocol has (pairs
per task, words per input and target, epochs per task, model width, images per task, number
of tasks), or the learning rate between the paper's and the ``cpu`` preset's, and keeps the
model family and the protocol. To make sure the setting is not chosen for the gradual arm's
sake, it trains the **abrupt arm only**: every candidate is run with :data:`ABRUPT_ONLY` on top
of its overrides, and the choice is made from its numbers alone. A later search of the same
experiment is declared whole, beside the earlier one, in the module's ``SEARCHES`` (by name,
``gradual-jax search EXPERIMENT --search NAME``); every search's seeds are held out from the
verdict runs.

An experiment module declares its candidates, cheapest first, as ``SEARCH`` (a tuple of
:class:`Candidate`). ``gradual-jax search EXPERIMENT --out DIR`` runs each one into
``DIR/<name>`` (resumable, like ``run``) and writes ``DIR/search.md`` and ``search.csv``: for
every candidate, tried or not, its overrides, the exact ``gradual-jax run`` command that makes
it, the abrupt arm's metric on the first task, at its best earlier window and over the final
window, the drop from the best earlier window to the final one paired by seed (95% Student-t
interval), and whether the abrupt arm **loses** plasticity (the drop's interval lies above 0),
**gains** (below 0) or shows no loss (the interval holds 0), and the wall time. The chosen
setting is the first candidate, in the declared order, that loses.

The drop is measured from the best earlier window, not from the first task, because a fresh
network may learn nothing on its first task and still lose what it gained later: the T5's
abrupt arm at 10 epochs a task scores 0 on task 0, rises over the next tasks, then falls back
to 0, and a drop from the first task reads that as no loss. The best earlier window
(:func:`best_window`) has the final window's width, ends before it, and is the one with the
highest mean over seeds; picking the highest favours a positive drop a little on a flat, noisy
curve, a bias the verdict runs do not inherit (they compare arms over the same final window).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gradual_jax import catalog
from gradual_jax import config as config_lib
from gradual_jax.analysis import summary
from gradual_jax.runner import results as results_lib
from gradual_jax.runner import storage

#: The rule that marks a candidate's abrupt arm as losing plasticity, and when it was fixed.
CRITERION = ("the abrupt arm loses when its drop from the best earlier window to the final window, paired by seed, "
             "has a 95% interval above 0")
CRITERION_FIXED = "2026-12-03"
CRITERION_HISTORY = ("The searches of fig1-cifar, fig2-seq2seq and fig4-cipher first measured the drop from the "
                     "first task; the rule above replaced it after every candidate of those searches had run, and "
                     "under the first rule no candidate of fig1-cifar or fig2-seq2seq loses (the column beside "
                     "shows it). The fig1-cifar search's 32-task candidates were withdrawn unrun once an 8-task one "
                     "qualified. Settings chosen this way are decided only on fresh seeds.")
ABRUPT_ONLY = ("sweep.schedules=abrupt", "sweep.methods=none", "sweep.mitigate_gradual=false")
TABLE_FILE, CSV_FILE = "search.md", "search.csv"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One setting to try: a folder name and the ``--set`` overrides that make it from the preset."""

    name: str
    overrides: tuple[str, ...]
    why: str = ""  # what the setting changes and why it might make the abrupt arm lose plasticity


def declared(experiment: str) -> dict[str, tuple[Candidate, ...]]:
    """Every search the experiment declares, by name: its ``SEARCH`` (named ``""``, the default)
    and the named ones of ``SEARCHES`` (a later search, declared whole before it runs, beside
    an earlier one whose table stays as it was)."""
    mod = catalog.module(experiment)
    found = {"": tuple(getattr(mod, "SEARCH", ()) or ())} if getattr(mod, "SEARCH", None) else {}
    found.update({name: tuple(c) for name, c in (getattr(mod, "SEARCHES", None) or {}).items()})
    return found


def candidates(experiment: str, name: str = "") -> tuple[Candidate, ...]:
    """The candidates of the experiment's search ``name`` (``""``: its ``SEARCH``); a clear error
    naming the experiments that declare one, or the experiment's searches."""
    searches = declared(experiment)
    if not searches:
        with_search = [n for n in catalog.MODULES if declared(n)]
        raise config_lib.ConfigError(f"{experiment} declares no SEARCH; experiments with one: "
                                     f"{', '.join(with_search) or 'none'}")
    if name not in searches:
        named = ", ".join(repr(n) if n else "'' (its SEARCH)" for n in searches)
        raise config_lib.ConfigError(f"--search {name!r}: {experiment} declares no such search; choose one of: {named}")
    found = searches[name]
    names = [c.name for c in found]
    if len(set(names)) != len(names) or not all(n and "/" not in n for n in names):
        raise config_lib.ConfigError(f"{experiment}: SEARCH names must be unique folder names, got {names}")
    return found


def overrides(candidate: Candidate) -> list[str]:
    return [*candidate.overrides, *ABRUPT_ONLY]


def configs(experiment: str, preset: str, chosen: Sequence[Candidate]) -> list[config_lib.ExperimentConfig]:
    """Every candidate's validated config, before any of them runs (a bad one stops the search
    before any compute)."""
    base = catalog.get_config(experiment, preset)
    out = []
    for candidate in chosen:
        try:
            out.append(config_lib.validate(config_lib.apply_overrides(base, overrides(candidate))))
        except config_lib.ConfigError as err:
            raise config_lib.ConfigError(f"search candidate {candidate.name!r}: {err}") from None
    return out


def finished(cfg: config_lib.ExperimentConfig, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly ``cfg`` (then it is not run again): its
    ``config.json`` says so, and its results, figure and summaries are there and whole. A candidate
    killed while they were written, or whose ``config.json`` is damaged, is run again (which
    resumes it, or says in one line why it cannot)."""
    try:
        meta = json.loads((run_dir / results_lib.CONFIG_FILE).read_text())
    except (OSError, ValueError):  # absent, unreadable, not JSON (UnicodeDecodeError is a ValueError)
        return False
    if not isinstance(meta, dict) or meta.get("status") != "finished":
        return False
    stored = json.dumps(meta.get("config"), sort_keys=True, default=str)
    return stored == json.dumps(config_lib.to_dict(cfg), sort_keys=True, default=str) and _files_whole(run_dir)


FINISHED_FILES = ("figure.png", "figure.pdf", "figure-summary.csv", "figure-paired.csv", "figure-summary.md")


def _files_whole(run_dir: Path) -> bool:
    """A finished run's table has no row cut short, and its figure and summaries are not empty."""
    table = run_dir / results_lib.RESULTS_FILE
    return (table.is_file() and storage.cut_row(table) is None
            and all((run_dir / name).is_file() and (run_dir / name).stat().st_size > 0 for name in FINISHED_FILES))


def run_command(experiment: str, preset: str, candidate: Candidate, out: Path) -> str:
    """The ``gradual-jax run`` command line that makes (and resumes) one candidate's run."""
    argv = ["gradual-jax", "run", experiment, "--preset", preset]
    for item in overrides(candidate):
        argv += ["--set", item]
    return shlex.join([*argv, "--out", str(out / candidate.name)])


def best_window(frame: pd.DataFrame, metric: str) -> tuple[range, pd.Series]:
    """The window the drop is measured from, and each seed's mean over it.

    Windows have the final window's width (narrower when fewer tasks precede it, down to the
    first task alone) and end before the final window starts; the one with the highest mean
    over seeds wins, the earliest on a tie."""
    by_task = frame.pivot_table(index="task", columns="seed", values=metric, aggfunc="mean")
    final = summary.final_window(int(by_task.index.max()) + 1)
    width = max(1, min(len(final), final.start))
    starts = range(0, max(1, final.start - width + 1))
    windows = [range(start, start + width) for start in starts]
    means = [by_task.loc[list(w)].to_numpy().mean() for w in windows]
    window = windows[int(np.argmax(means))]
    return window, by_task.loc[list(window)].mean(axis=0)


def _row(experiment: str, preset: str, metric: str, candidate: Candidate, out: Path) -> dict:
    run_dir = out / candidate.name
    row = {"candidate": candidate.name, "overrides": " ".join(candidate.overrides), "why": candidate.why,
           "command": run_command(experiment, preset, candidate, out), "status": "not run", "seeds": 0}
    meta_file = run_dir / results_lib.CONFIG_FILE
    if not meta_file.exists() or not (run_dir / results_lib.RESULTS_FILE).exists():
        return row
    meta = json.loads(meta_file.read_text())
    frame = pd.read_csv(run_dir / results_lib.RESULTS_FILE)
    frame = frame[frame["schedule"] == "abrupt"]
    row["status"] = meta.get("status", "unknown")
    row["tasks"] = int(frame["task"].max()) + 1 if len(frame) else 0
    row["train_seconds"] = meta.get("train_seconds")
    if row["status"] != "finished" or frame.empty:
        return row
    seeds = summary.per_seed(frame, metric).set_index("seed")
    window, best_by_seed = best_window(frame, metric)
    first, final = summary.interval(seeds["first"]), summary.interval(seeds["final"])
    best = summary.interval(best_by_seed)
    drop = summary.interval((best_by_seed - seeds["final"]).to_numpy())
    from_first = summary.interval((seeds["first"] - seeds["final"]).to_numpy())  # the criterion before CRITERION
    verdict = summary.verdict(drop)
    row.update(seeds=drop.n, window=seeds["window"].iloc[0], first=first.mean, best_window=summary.window_text(window),
               best=best.mean, final=final.mean, final_ci95=final.half_width,
               drop=drop.mean, drop_ci95=drop.half_width, drop_positive=drop.positive(),
               first_drop=from_first.mean, first_drop_ci95=from_first.half_width,
               abrupt_arm={"holds": "loses", "reversed": "gains", "inconclusive": "no loss shown"}[verdict])
    return row


def table(experiment: str, preset: str, out: str | Path, name: str = "") -> pd.DataFrame:
    """One row per declared candidate of search ``name``, in the declared order, whether or not it has run."""
    cfg = catalog.get_config(experiment, preset)
    out = Path(out)
    rows = [_row(experiment, preset, cfg.metric, c, out) for c in candidates(experiment, name)]
    frame = pd.DataFrame(rows)
    if "abrupt_arm" not in frame:
        frame["abrupt_arm"] = None
    losing = frame.index[frame["abrupt_arm"].eq("loses").to_numpy()]
    frame["chosen"] = frame.index == (losing[0] if len(losing) else -1)
    frame.insert(0, "search", name)
    frame.insert(0, "preset", preset)
    frame.insert(0, "experiment", experiment)  # so `gradual-jax report` knows whose claims a search is about
    return frame


def outcome(frame: pd.DataFrame) -> str:
    """What a search table says about its figure's claims: ``testable`` (a candidate's abrupt arm
    loses plasticity: the first such is the chosen setting), ``no searched setting loses`` (every
    candidate ran and none loses), or ``incomplete`` (none loses among those that ran so far)."""
    if frame["chosen"].astype(bool).any():
        return "testable"
    judged = frame["abrupt_arm"].notna() & frame["status"].eq("finished")
    return "no searched setting loses" if judged.all() else "incomplete"


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def markdown(frame: pd.DataFrame, experiment: str, preset: str, name: str = "") -> str:
    metric = catalog.get_config(experiment, preset).metric
    title = f"{experiment} `{name}`" if name else experiment
    lines = [f"# Search: {title}, from the `{preset}` preset, abrupt arm only", "",
             f"Each candidate trains only the abrupt arm (`{' '.join('--set ' + o for o in ABRUPT_ONLY)}`), so the "
             "setting is chosen before the gradual arm is looked at. Metric: "
             f"`{metric}`; drop = best earlier window − final window, paired by seed (mean ± 95% Student-t "
             "interval), where the best earlier window has the final window's width, ends before it and has "
             "the highest mean over seeds (a fresh network may learn nothing on its first task and still lose "
             "what it gains later). **loses**: the drop's interval lies above 0. The chosen setting is the "
             "first candidate, in the order below (cheapest first), that loses.", "",
             f"The criterion ({CRITERION}) was fixed on {CRITERION_FIXED}. {CRITERION_HISTORY} The column *drop "
             "from the first task* is that earlier criterion's number.", "",
             "| candidate | overrides | status | seeds | first task | best earlier window | final window | drop | "
             "seeds with a drop | abrupt arm | drop from the first task | wall | chosen |",
             "|---|---|---|---:|---:|---|---|---|---:|---|---|---:|---|"]
    for _, r in frame.iterrows():
        done = r["status"] == "finished" and r["seeds"] > 0
        final = f"{_fmt(r.get('final'))} ± {_fmt(r.get('final_ci95'))} ({r.get('window')})" if done else "–"
        drop = f"{r['drop']:+.3f} ± {_fmt(r.get('drop_ci95'))}" if done else "–"
        best = f"{_fmt(r.get('best'))} ({r.get('best_window')})" if done else "–"
        first_drop = f"{r['first_drop']:+.3f} ± {_fmt(r.get('first_drop_ci95'))}" if done else "–"
        wall = f"{r['train_seconds'] / 60:.1f} min" if not pd.isna(r.get("train_seconds", float("nan"))) else "–"
        lines.append(f"| `{r['candidate']}` | `{r['overrides']}` | {r['status']} | {r['seeds']} | "
                     f"{_fmt(r.get('first')) if done else '–'} | {best} | {final} | {drop} | "
                     f"{f'{int(r.drop_positive)}/{r.seeds}' if done else '–'} | {r.get('abrupt_arm', '–') if done else '–'} | "
                     f"{first_drop} | {wall} | {'**yes**' if r['chosen'] else ''} |")
    lines += ["", "Why each candidate, and the command that makes it:", ""]
    for _, r in frame.iterrows():
        lines.append(f"* `{r['candidate']}`: {r['why'] or '(no reason given)'}  \n  `{r['command']}`")
    return "\n".join(lines) + "\n"


def write(experiment: str, preset: str, out: str | Path, name: str = "") -> Path:
    """``search.md`` and ``search.csv`` in ``out`` (atomically, so a reader never sees half a table)."""
    out = Path(out)
    frame = table(experiment, preset, out, name)
    storage.atomic_write_text(out / CSV_FILE, frame.to_csv(index=False))
    path = out / TABLE_FILE
    storage.atomic_write_text(path, markdown(frame, experiment, preset, name))
    return path
