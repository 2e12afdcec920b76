"""Run folders read back: ``results.csv`` and ``config.json`` of each run or part, and the
``diagnostics.csv`` that ``gradual-jax analyze`` may have written beside them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

RESULTS_FILE, CONFIG_FILE, DIAGNOSTICS_FILE = "results.csv", "config.json", "diagnostics.csv"
REQUIRED_COLUMNS = ("task", "seed", "schedule", "delta", "learning_rate")
# numeric columns that describe a lane rather than measure it: never a --metric
NOT_METRICS = ("lane", "seed", "task", "delta", "learning_rate", "samples_seen", "epochs_per_task",
               "transition_ratio", "batch_size", "reset_each_task", "finite")


class ResultsError(ValueError):
    """A run directory's results or config cannot be read (empty, damaged, not a results table)."""


class UsageError(ValueError):
    """A plot request that cannot be honoured as given (e.g. several runs and no output file)."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One results table: a run, or one part of a multi-part run (Fig. 5's trainability)."""

    name: str  # the part's name ('' for a single-part run)
    frame: pd.DataFrame
    config: dict


def run_parts(run_dir: Path) -> list[Path]:
    """A run directory, or the part directories of a multi-part experiment (Fig. 5)."""
    run_dir = Path(run_dir)
    if (run_dir / RESULTS_FILE).exists():
        return [run_dir]
    parts = sorted(p for p in run_dir.iterdir() if (p / RESULTS_FILE).exists()) if run_dir.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"{run_dir} holds no {RESULTS_FILE} (neither directly nor in part directories)")
    return parts


def read_results(table: Path) -> pd.DataFrame:
    """A results table with the columns every figure needs and at least one row."""
    try:
        frame = pd.read_csv(table)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ResultsError(f"{table} is not a results table ({type(err).__name__}: "
                           f"{str(err).splitlines()[0] if str(err) else 'empty'})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame]
    if missing or frame.empty:
        raise ResultsError(f"{table} is not a results table of a run: "
                           + (f"it lacks the columns {', '.join(missing)}" if missing else "it has no rows"))
    if "method" not in frame:  # results written before mitigations existed
        frame = frame.assign(method="none")
    return frame


def read_config(config_file: Path) -> dict:
    """The config a run recorded in its ``config.json``."""
    try:
        config = json.loads(config_file.read_text())["config"]
        config["name"], config["metric"]  # noqa: B018 - the keys every figure needs
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{config_file} is not a run's config.json ({type(err).__name__}: {err})") from None
    return config


def load_part(part_dir: Path, run_label: str) -> tuple[pd.DataFrame, dict]:
    """A part's results (with a ``run`` column holding ``run_label``) and its config."""
    frame = read_results(part_dir / RESULTS_FILE)
    config = read_config(part_dir / CONFIG_FILE)
    recomputed = part_dir / DIAGNOSTICS_FILE
    if recomputed.exists():  # `gradual-jax analyze` wrote post-hoc diagnostics beside the results
        from gradual_jax.runner import results  # imports JAX: only analyzed runs need it

        frame = results.merge_diagnostics(frame, pd.read_csv(recomputed))
    frame.insert(0, "run", run_label)
    return frame, config


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


def check_metric(frame: pd.DataFrame, metric: str, where: Path | str) -> None:
    """A clear error for ``--metric`` naming a column the results do not have."""
    if metric not in frame or not pd.api.types.is_numeric_dtype(frame[metric]):
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in NOT_METRICS]
        raise ResultsError(f"--metric {metric}: {where} has no such numeric column; choose one of: "
                           + ", ".join(numeric))
