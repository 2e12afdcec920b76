"""``gradual-jax reproduce``: make every run the claims declare, then write the report.

The plan is the declared evidence (``experiments/claims.py``): each run a question names, at
the scale asked for. ``study`` is the declared presets themselves (sized for a 2-core CPU);
``paper`` keeps each declared run's arms and seeds but takes data, tasks, protocol, model sizes
and learning rate from the experiment's ``paper`` preset, into a folder of its own. Finished runs
are skipped, interrupted ones resume from their checkpoints, runs whose setting awaits a search
are named with the search to run first; the report is written last.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from gradual_jax import config as config_lib
from gradual_jax.analysis import plan, report, runs, search
from gradual_jax.analysis.claims import Run

SCALES = ("study", "paper")
REPORT_FILE = "REPRODUCTION.md"


@dataclasses.dataclass(frozen=True)
class Step:
    run: Run
    configs: dict[str, config_lib.ExperimentConfig] | None  # part -> config; None: the setting awaits a search
    out: Path
    state: str  # "finished", "partial", "to run", "awaits its search"
    cost: plan.Cost | None

    def line(self) -> str:
        what = f"{self.run.folder}: {self.state}"
        if self.state == "awaits its search":
            return f"{what} (run `{search_command(self.run.experiment)}` first and declare its " \
                   f"`{self.run.preset}` preset in the chosen setting)"
        return what + (f"; {self.cost.text()}" if self.cost and self.state != "finished" else "")


def search_command(experiment: str) -> str:
    """The command of the experiment's latest declared search (the last of ``SEARCHES``, else ``SEARCH``)."""
    names = list(search.declared(experiment)) or [""]
    named = f" --search {names[-1]} --out results/{experiment}-search-{names[-1]}" if names[-1] else ""
    return f"gradual-jax search {experiment}{named}"


def declared_runs(catalog: report.Catalog) -> list[Run]:
    """Every run the claims' questions declare, once, in declared order (a multi-part run once,
    whole: one command trains all its parts)."""
    return list(dict.fromkeys(dataclasses.replace(r, part="") for c in catalog.claims for q in c.questions
                              for r in q.runs))


def at_scale(cfg: config_lib.ExperimentConfig, paper: config_lib.ExperimentConfig,
             scale: str) -> config_lib.ExperimentConfig:
    """``cfg`` (a declared run) at ``scale``: at ``paper`` its arms and seeds at the paper's sizes."""
    if scale == "study":
        return cfg
    sweep = dataclasses.replace(cfg.sweep, learning_rates=paper.sweep.learning_rates)
    model = dataclasses.replace(paper.model, name=cfg.model.name)
    return dataclasses.replace(paper, preset=cfg.preset, sweep=sweep, model=model)


def _state(out: Path, parts: Sequence[str]) -> str:
    def status(folder: Path) -> str | None:
        try:
            return json.loads((folder / "config.json").read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            return None

    found = [status(out / part if part else out) for part in parts]
    if all(s == "finished" for s in found):
        return "finished"
    return "partial" if any(s is not None for s in found) else "to run"


def steps(catalog: report.Catalog, root: Path, scale: str, finished: Sequence[runs.RunPart]) -> list[Step]:
    if scale not in SCALES:
        raise config_lib.ConfigError(f"--scale={scale!r}; choose one of: {', '.join(SCALES)}")
    out = []
    for run in declared_runs(catalog):
        folder = root / run.folder.split("/")[0]
        try:
            parts = catalog.configs(run.experiment, run.preset)
        except config_lib.ConfigError:
            out.append(Step(run, None, folder, "awaits its search", None))
            continue
        if any(cfg is None for cfg in parts.values()):  # a custom runner (the theory check): seconds
            out.append(Step(run, parts, folder, _state(folder, [""]), None))
            continue
        paper = catalog.configs(run.experiment, "paper")
        parts = {name: at_scale(cfg, paper.get(name, cfg), scale) for name, cfg in parts.items()}
        costs = [plan.cost(cfg, finished) for cfg in parts.values()]
        total = plan.Cost(sum(c.lanes for c in costs), sum(c.lane_steps for c in costs), costs[0].rate,
                          costs[0].rate_from)
        out.append(Step(run, parts, folder, _state(folder, list(parts)), total))
    return out


def plan_text(todo: Sequence[Step]) -> str:
    making = [s for s in todo if s.state in ("to run", "partial")]
    known = [s.cost.seconds for s in making if s.cost and s.cost.seconds]
    timed = [s for s in making if s.cost]  # the theory check has no cost: seconds
    lines = [s.line() for s in todo]
    if timed and not known:
        time = "no measured rate on this machine yet to time them"
    else:
        some = f" for {len(known)} of them" if len(known) < len(timed) else ""
        time = f"~{sum(known) / 3600:.1f} h at the measured rates of this machine{some} (partial runs resume, so less)"
    lines.append(f"{len(making)} run(s) to make, {time}")
    return "\n".join(lines)


def execute(todo: Sequence[Step], train: Callable[[config_lib.ExperimentConfig, Path, str], None],
            custom: Callable[[Run, Path], None], echo: Callable[[str], None] = print) -> None:
    """Make every run not yet finished, one after another (``train`` one config into a folder)."""
    for step in todo:
        if step.state in ("finished", "awaits its search"):
            continue
        echo(f"== {step.run.folder} ({step.state})")
        if any(cfg is None for cfg in step.configs.values()):
            custom(step.run, step.out)
            continue
        for part, cfg in step.configs.items():
            train(cfg, step.out / part if part else step.out, step.run.command(str(step.out.parent)))


def run_folders(root: Path) -> list[Path]:
    """The finished runs and search folders under ``root`` (what the report reads)."""
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if report.is_search(folder):
            found.append(folder)
            continue
        try:
            runs.load([folder])
        except (OSError, ValueError):
            continue
        found.append(folder)
    return found
