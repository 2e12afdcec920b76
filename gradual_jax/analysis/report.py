"""``gradual-jax report DIR [DIR ...] --out FILE.md``: the paper's claims decided on finished runs.

Reads only each run's ``results.csv``, ``epochs.csv`` and ``config.json`` (never re-runs
anything) and the claims declared in code (a :class:`Catalog`: the paper's sentences, the
questions that decide them, and the runs each question declares). The rules a verdict passes
are :mod:`gradual_jax.analysis.verdicts`'. The report opens with one line per claim, then one
section per claim (its words in full, its evidence, the setting and every deviation from the
paper, the abrupt arm's own loss, each comparison at three readouts, replicates, the runs still
to make with their cost); then the searches, and an appendix with the runs no claim declares
(the ``cpu`` presets, earlier runs).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from gradual_jax import catalog as catalog_lib
from gradual_jax import config as config_lib
from gradual_jax.analysis import plan, summary, verdicts
from gradual_jax.analysis import search as search_lib
from gradual_jax.analysis.claims import AllChecksHold, Arm, Claim, Question, Run, Versus
from gradual_jax.analysis.runs import (IGNORED_KEYS, SETTING_SECTIONS, RunPart, command, is_text, load, setting_key,
                                      wall)
from gradual_jax.analysis.verdicts import Answer
from gradual_jax.runner import storage

READABLE = {"protocol.epochs_per_task": "E", "protocol.transition_ratio": "k", "protocol.batch_size": "batch",
            "task.num_tasks": "tasks", "data.train_per_class": "train images/class",
            "data.test_per_class": "test images/class", "data.dataset": "data", "model.hidden_sizes": "MLP widths",
            "model.width_multiplier": "ResNet width", "text.num_train": "pairs/task", "model.d_model": "d_model",
            "model.d_ff": "d_ff", "optim.name": "optimizer"}
SHORT_QUOTE = 70  # characters of a claim's words in the summary


@dataclasses.dataclass(frozen=True)
class Catalog:
    """What the report needs from the experiments: the declared claims, an experiment preset's
    configs (part -> config; raises ConfigError for an unknown preset) and the seeds an
    experiment's search ran on."""

    claims: tuple[Claim, ...]
    configs: Callable[[str, str], dict[str, config_lib.ExperimentConfig]]
    search_seeds: Callable[[str], set[int]]

    def config(self, run: Run) -> config_lib.ExperimentConfig | None:
        """The declared run's config; None where its preset is not defined yet (it awaits a search)."""
        try:
            parts = self.configs(run.experiment, run.preset)
        except config_lib.ConfigError:
            return None
        return parts.get(run.part)


def paper_catalog(files: Sequence[str | Path] = ()) -> Catalog:
    """The paper's claims (and those of the researchers' experiment ``files``) with the presets
    and searches of :mod:`gradual_jax.catalog`."""
    return Catalog(catalog_lib.claims(files), catalog_lib.get_configs, catalog_lib.search_seeds)


# ---------------------------------------------------------------------------
# Evaluation


def _classes(parts: Sequence[RunPart]) -> int | None:
    from gradual_jax.envs.data import NUM_CLASSES

    for p in parts:
        if p.config and not is_text(p.config["task"]["family"]):
            return NUM_CLASSES.get(p.config["data"]["dataset"])
    return None


def answers(catalog: Catalog, parts: Sequence[RunPart]) -> dict[str, list[Answer]]:
    """Every declared question answered on ``parts``: claim key -> answers, in declared order."""
    out = {}
    for claim in catalog.claims:
        out[claim.key] = []
        for q in claim.questions:
            declared = [catalog.config(r) for r in q.runs]
            out[claim.key].append(verdicts.answer(q, parts, catalog.search_seeds, _classes(parts),
                                                  declared_setting=_declared_setting(declared),
                                                  holds_gate=lambda run: _trains_plain_abrupt(catalog.config(run))))
    return out


def _trains_plain_abrupt(cfg: config_lib.ExperimentConfig | None) -> bool:
    """Whether a declared run has unmitigated abrupt lanes (unknown, a setting awaiting its search: yes)."""
    return cfg is None or ("abrupt" in cfg.sweep.schedules and "none" in cfg.sweep.methods)


def _declared_setting(configs: Sequence[config_lib.ExperimentConfig | None]) -> str | None:
    first = next((c for c in configs if c is not None), None)
    return setting_key(config_lib.to_dict(first)) if first is not None else None


def summarised(claim: Claim, by_key: dict[str, list[Answer]], catalog: Catalog) -> list[Answer]:
    """A claim's deciding answers: its own primaries, plus, for the abstract and the TL;DR, the
    primaries against plain abrupt of the claims it summarises (and of those they summarise)."""
    claims = {c.key: c for c in catalog.claims}

    def against_abrupt(key: str) -> list[Answer]:
        inner = verdicts.preserved_by(key, by_key)
        return inner + [a for k in claims[key].summarises for a in against_abrupt(k)]

    own = [a for a in by_key[claim.key] if a.question.role == "primary"]
    for key in claim.summarises:
        own += [a for a in against_abrupt(key) if a not in own]
    return own


def _n(answers_: Sequence[Answer]) -> int:
    """The most seeds a decided comparison among ``answers_`` rests on (the theory check has none)."""
    return max((a.n for a in answers_ if not isinstance(a.question.comparison, AllChecksHold)), default=0)


# ---------------------------------------------------------------------------
# Text


def _ci(interval: summary.Interval | None) -> str:
    if interval is None or interval.n == 0:
        return "–"
    return f"{interval.mean:+.3f}" + ("" if math.isnan(interval.half_width) else
                                      f" [{interval.low:+.3f}, {interval.high:+.3f}]")


def _drop_text(drop: verdicts.Drop | None) -> str:
    if drop is None:
        return "–"
    return (f"best earlier window ({drop.best_window}) → final {_ci(drop.best)}; first task → final "
            f"{_ci(drop.first)}; n={drop.best.n}")


def _lost(answers_: Sequence[Answer]) -> str:
    drops = [a.drop for a in answers_ if a.drop is not None]
    if not drops:
        return "–"
    posed = sum(d.posed for d in drops)
    return "yes" if posed == len(drops) else "no" if posed == 0 else f"in {posed} of {len(drops)}"


def _short(text: str) -> str:
    return text if len(text) <= SHORT_QUOTE else text[:SHORT_QUOTE - 1].rsplit(" ", 1)[0] + " …"


def _flags(answers_: Sequence[Answer]) -> str:
    return ", ".join(dict.fromkeys(f for a in answers_ for f in a.flags)) or "–"


def _settings_text(answers_: Sequence[Answer]) -> str:
    runs = dict.fromkeys(r.folder for a in answers_ for r in a.question.runs)
    return ", ".join(f"`{r}`" for r in runs) or "–"


def summary_lines(catalog: Catalog, by_key: dict[str, list[Answer]]) -> list[str]:
    lines = ["## Summary", "",
             "| claim | source | the paper's words | verdict of the primary comparisons | best secondary | "
             "abrupt arm lost? | deciding runs | n | flags |", "|---|---|---|---|---|---|---|---:|---|"]
    for claim in catalog.claims:
        primary = summarised(claim, by_key, catalog)
        secondary = [a for a in by_key[claim.key] if a.question.role != "primary" and a.status == "decided"]
        best = max((r for a in secondary for r in a.readings), key=lambda r: r.paper.low, default=None)
        best_text = f"{best.comparison}: {_ci(best.paper)} ({best.verdict})" if best else "–"
        n = _n(primary)
        lines.append(f"| [{claim.key}](#{claim.key}) | {claim.source} | {_short(claim.quote)} | "
                     f"**{verdicts.combined([a.verdict for a in primary])}** | {best_text} | {_lost(primary)} | "
                     f"{_settings_text(primary)} | {n or '–'} | {_flags(primary)} |")
    return lines + [""]


def paper_differences(part: RunPart, catalog: Catalog) -> list[str]:
    """How a run's setting differs from its experiment's paper preset, e.g. ``E = 10 (paper: 80)``,
    the learning rate included."""
    paper = catalog.config(Run(part.experiment, "paper", part.part))
    if paper is None or not part.config:
        return []
    reference = config_lib.to_dict(paper)
    keys = [*SETTING_SECTIONS, "text"] if is_text(part.config["task"]["family"]) else list(SETTING_SECTIONS)
    ours = config_lib.flatten({k: part.config[k] for k in keys})
    theirs = config_lib.flatten({k: reference[k] for k in keys})
    out = [f"{READABLE.get(k, k)} = {_fmt(ours[k])} (paper: {_fmt(theirs.get(k))})"
           for k in ours if k not in IGNORED_KEYS and ours[k] != theirs.get(k)]
    rates, paper_rates = part.learning_rates, tuple(reference["sweep"]["learning_rates"])
    if rates and rates != paper_rates:
        out.append(f"learning rate = {', '.join(map(_fmt, rates))} (paper: {', '.join(map(_fmt, paper_rates))})")
    return out


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "×".join(map(str, value)) if len(set(value)) > 1 else f"{value[0]}×{len(value)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _figure(part: RunPart, out: Path) -> str:
    for folder in (part.path, part.path.parent):
        figure = folder / "figure.png"
        if figure.exists():
            return f"[figure]({os.path.relpath(figure, out.parent)})"
    return "–"


def _reading_rows(role: str, a: Answer) -> list[str]:
    """One row per comparison read; a question's label names which question each answers, since two
    questions may read comparisons of the same arms (the same Δ on two models, or at two E)."""
    flags = list(a.flags)
    head = f"| {role} | {a.question.label} |"
    if not a.readings:
        return [f"{head} – | – | – | **{a.verdict}** | – | – | {', '.join(flags) or '–'} |"]
    if isinstance(a.question.comparison, AllChecksHold):
        return [f"{head} {r.comparison} | – | – | **{a.verdict}** | – | – | – |" for r in a.readings]
    rows = []
    for r in a.readings:
        mine = flags + (["baseline at chance"] if r.baseline_at_chance else [])
        rows.append(f"{head} {r.comparison} | {_ci(r.paper)} | {r.paper.positive()}/{r.paper.n} | "
                    f"**{a.verdict if a.status != 'decided' else r.verdict}** | {_ci(r.at_E)} | {_ci(r.equal)} | "
                    f"{', '.join(mine) or '–'} |")
    return rows


def _plan_rows(missing: Sequence[Run], catalog: Catalog, parts: Sequence[RunPart]) -> list[str]:
    rows = []
    for run in missing:
        cfg = catalog.config(run)
        if cfg is None:
            rows.append(f"| `{run.folder}` | `gradual-jax search {run.experiment} --out results/{run.experiment}"
                        f"-search`, then its `{run.preset}` preset in the chosen setting | its setting awaits the "
                        "search |")
        else:
            rows.append(f"| `{run.folder}` | `{run.command()}` | {plan.cost(cfg, parts).text()} |")
    return rows


def claim_section(claim: Claim, by_key: dict[str, list[Answer]], catalog: Catalog, parts: Sequence[RunPart],
                  out: Path) -> list[str]:
    words = "" if claim.verbatim else " (a paraphrase of its first line: the statement was not recovered word for word)"
    lines = [f'### <a id="{claim.key}"></a>{claim.source}', "", f"> {claim.quote}", "", f"Source: {claim.source}{words}."]
    if claim.summarises:
        lines += ["", "Decided by the primary comparisons against the plain abrupt arm of: "
                  + ", ".join(f"[{k}](#{k})" for k in claim.summarises) + "."]
    mine = by_key[claim.key]
    if not mine:
        return lines + [""]
    lines += ["", "| role | question | comparison | difference, paper's readout [95% CI] | seeds > 0 | verdict | "
              "at epoch E | equal exposure | flags |", "|---|---|---|---:|---:|---|---:|---:|---|"]
    for a in mine:
        lines += _reading_rows(a.question.role, a)
    lines.append("")
    for a in mine:
        lines += _answer_details(a, catalog, parts, out)
    missing = list(dict.fromkeys(run for a in mine if a.status == "not run" for run in a.missing))
    if missing:
        lines += ["Runs still to make (declared above, not yet run):", "",
                  "| run | command | cost on this machine |", "|---|---|---|", *_plan_rows(missing, catalog, parts), ""]
    moot = [run for run in dict.fromkeys(run for a in mine for run in a.missing) if run not in missing]
    if moot:
        lines += ["Runs declared above and not made, since the runs made show the question not posed (none of "
                  "these trains the plain abrupt arm the gate reads, so none could pose it):", "",
                  "| run | command | cost on this machine |", "|---|---|---|", *_plan_rows(moot, catalog, parts), ""]
    return lines


def _overlaps_search(labels: Sequence[str], q: Question, catalog: Catalog, parts: Sequence[RunPart]) -> bool:
    """Whether runs (by label) share seeds with the search that chose the question's setting."""
    if q.search is None:
        return False
    held_out = catalog.search_seeds(q.search)
    return any(set(p.seeds) & held_out for p in parts if p.label in labels)


def _answer_details(a: Answer, catalog: Catalog, parts: Sequence[RunPart], out: Path) -> list[str]:
    q = a.question
    lines = []
    for part in a.runs:
        cmd, revision = command(part)
        differences = paper_differences(part, catalog)
        lines.append(f"- `{part.label}`: seeds {', '.join(map(str, part.seeds)) or '–'}; `{cmd}` at {revision}; "
                     f"{wall(part.meta)}; {_figure(part, out)}"
                     + (f"; differs from the paper in: {'; '.join(differences)}" if differences else ""))
    if q.revised:
        lines.append(f"- criterion changed after earlier runs were seen: {q.revised}; the declared runs use fresh "
                     "seeds, and the runs seen before are listed as replicates")
    if a.drop is not None:
        lines.append(f"- abrupt arm's own loss: {_drop_text(a.drop)}; posed when above 0 and at least {q.min_drop} → "
                     + ("**posed**" if a.drop.posed else "**not posed at this scale**"))
    if a.replicates:
        lines += ["", "| replicate (same setting, other runs: they do not decide) | comparison | paper's readout | "
                  "seeds > 0 | verdict | abrupt arm's loss |", "|---|---|---:|---:|---|---|"]
        for rep in a.replicates:
            lost = _drop_text(rep.drop) + ("" if rep.drop is None or rep.drop.posed else " (not posed)")
            label = rep.label + (" (seeds overlap the search)" if _overlaps_search(rep.runs, q, catalog, parts) else "")
            for r in rep.readings:
                lines.append(f"| {label} | {r.comparison} | {_ci(r.paper)} | {r.paper.positive()}/{r.paper.n} | "
                             f"{r.verdict} | {lost} |")
    if not lines:
        return []
    head = f"**{q.role.capitalize()}: {q.label}** (`{q.metric}`" + (f"; holds above −{q.margin}" if q.margin else "") + ")"
    return [head, "", *lines, ""]


def search_lines(searches: Sequence[tuple[Path, pd.DataFrame]], catalog: Catalog, out: Path) -> list[str]:
    lines = ["## Searches", "",
             "A search (`gradual-jax search`) trains the abrupt arm alone in settings that change only sizes of the",
             f"paper's protocol, cheapest first, on seeds no verdict run uses. Its criterion: {search_lib.CRITERION}",
             f"(fixed {search_lib.CRITERION_FIXED}). {search_lib.CRITERION_HISTORY}", "",
             "| experiment | claims | candidates run | chosen setting | abrupt arm: best earlier window → final, "
             "drop [95% CI], seeds | drop from the first task (earlier criterion) | outcome | search |",
             "|---|---|---:|---|---|---|---|---|"]
    for path, frame in searches:
        experiment = frame["experiment"].iloc[0]
        named = frame["search"].iloc[0] if "search" in frame and isinstance(frame["search"].iloc[0], str) else ""
        name = f"{experiment} `{named}`" if named else experiment
        keys = [c.key for c in catalog.claims if any(q.search == experiment for q in c.questions)]
        ran = int(frame["status"].eq("finished").sum())
        chosen = frame[frame["chosen"].astype(bool)]
        if len(chosen):
            r = chosen.iloc[0]
            setting = f"`{r['candidate']}`"
            numbers = (f"{r['best']:.3f} ({r['best_window']}) → {r['final']:.3f}, "
                       f"{r['drop']:+.3f} [{r['drop'] - r['drop_ci95']:+.3f}, {r['drop'] + r['drop_ci95']:+.3f}], "
                       f"{int(r['drop_positive'])}/{int(r['seeds'])}")
            first = _first_drop(r)
        else:
            setting, numbers, first = "none", "–", "–"
        table = os.path.relpath(path / search_lib.TABLE_FILE, out.parent)
        lines.append(f"| {name} | {', '.join(keys) or '–'} | {ran}/{len(frame)} | {setting} | {numbers} | {first} | "
                     f"**{search_lib.outcome(frame)}** | [{search_lib.TABLE_FILE}]({table}) |")
    return lines + [""]


def _first_drop(row: pd.Series) -> str:
    """The chosen candidate's drop from the first task (the earlier criterion), from search.csv."""
    if pd.isna(row.get("first_drop", math.nan)):
        return "–"
    drop = summary.Interval(row["first_drop"], row["first_drop_ci95"], int(row["seeds"]), ())
    return f"{_ci(drop)} ({verdicts.verdict(drop)})"


def appendix_lines(rest: Sequence[RunPart], catalog: Catalog, out: Path) -> list[str]:
    """Runs no question declares or replicates: each arm against its run's abrupt arm."""
    lines = ["## Appendix: runs that decide no claim", "",
             "The `cpu` presets (for trying the pipeline) and earlier runs of settings no claim declares now. Each",
             "arm against the plain abrupt arm of its run, paired by seed, at the paper's readout.", "",
             "| run | comparison | metric | difference [95% CI] | seeds > 0 | verdict | abrupt arm's loss | differs from "
             "the paper in | figure |", "|---|---|---|---:|---:|---|---|---|---|"]
    for part in rest:
        if not part.config:
            continue
        metric = part.config["metric"]
        table = summary.paired_table(part.frame.assign(run=part.label), metric)
        question = Question("abrupt arm", metric, Versus(Arm("abrupt"), Arm("abrupt")), ())
        drop = _drop_text(verdicts.abrupt_drop(question, [part]))
        differences = "; ".join(paper_differences(part, catalog)) or "–"
        for _, row in table.iterrows():
            diff = summary.Interval(row["difference"], row["ci95"], int(row["seeds"]), ())
            lines.append(f"| {part.label} | {row['comparison']} | {metric} | {_ci(diff)} | "
                         f"{int(row['positive'])}/{int(row['seeds'])} | {row['verdict']} | {drop} | {differences} | "
                         f"{_figure(part, out)} |")
    return lines + [""]


RULES = [
    "Each claim is a sentence of the paper, quoted exactly, and is decided by the comparisons declared in",
    "code before their runs (`experiments/claims.py`): the **primary** one (the paper's schedule and Δ",
    "against abrupt, at the paper's readout) decides; **secondary** ones and **extensions** (methods the paper",
    "does not run) are shown beside it. A difference is the mean over seeds of the paired difference of",
    "final-window means (the last max(3, round(T/10)) tasks), with its 95% Student-t interval: **holds** when",
    "the interval lies above 0 (above −margin for \"matching or surpassing\"), **reversed** when below,",
    "**inconclusive** otherwise. A claim that gradual change preserves something is first checked to be",
    "posed: the plain abrupt arm (no mitigation, on the gradual arm's network) must lose (its drop from its",
    "best earlier window to the final window has an interval above 0 and a mean of at least the declared",
    "minimum; picking the best window biases this drop upward a little, so the drop from the first task is",
    "shown too); otherwise it reads **not posed at this scale**. Verdict runs use seeds no search used. Other",
    "runs of the same setting are *replicates*: they do not decide, and a replicate whose verdict differs is",
    "flagged. A question whose criterion changed after its runs were seen is flagged *criterion revised*,",
    "says what changed, and is decided on fresh seeds. *At epoch E* reads every lane",
    "after E epochs of a task (abrupt lanes are otherwise read after (1+k)·E); *equal exposure* reads",
    "abrupt lanes after (1 + k/2)·E, the epochs a gradual lane has spent on a task when it is read.",
]


def render(catalog: Catalog, parts: Sequence[RunPart], out: Path, command_line: str,
           searches: Sequence[tuple[Path, pd.DataFrame]] = ()) -> str:
    by_key = answers(catalog, parts)
    lines = ["# Does it reproduce?", "", f"Made by `{command_line}` from finished runs (nothing is re-run).", "",
             *RULES, ""]
    lines += summary_lines(catalog, by_key)
    lines += ["## Claims", ""]
    for claim in catalog.claims:
        lines += claim_section(claim, by_key, catalog, parts, out)
    if searches:
        lines += search_lines(searches, catalog, out)
    every = [a for answers_ in by_key.values() for a in answers_]
    used = {p.label for a in every for p in a.runs} | {label for a in every for rep in a.replicates for label in rep.runs}
    rest = [p for p in parts if p.label not in used]
    if rest:
        lines += appendix_lines(rest, catalog, out)
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- claims summary: written by gradual-jax report --readme; do not edit by hand -->"
README_END = "<!-- end of the claims summary -->"


def summary_block(report_text: str, report_path: Path, readme: Path) -> str:
    """The report's summary table as the README shows it: the same rows, each claim linking to
    its section of the report."""
    table = report_text.split("## Summary\n\n", 1)[1].split("\n\n", 1)[0]
    link = os.path.relpath(report_path, readme.parent)
    return table.replace("](#", f"]({link}#")


def write_readme_summary(readme: Path, report_path: Path) -> None:
    """Replace the block between the README's claims-summary markers with the report's summary."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no claims-summary markers ({README_BEGIN} … {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    block = summary_block(report_path.read_text(), report_path, readme)
    storage.atomic_write_text(readme, f"{head}{README_BEGIN}\n{block}\n{README_END}{tail}")


def is_search(path: str | Path) -> bool:
    return (Path(path) / search_lib.CSV_FILE).exists()


def load_search(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path / search_lib.CSV_FILE)
    if "experiment" not in frame or frame.empty:
        raise ValueError(f"{path}: {search_lib.CSV_FILE} names no experiment; rewrite it with "
                         f"`gradual-jax search EXPERIMENT --out {path} --table-only`")
    return frame


def report(run_dirs: Sequence[str | Path], out: str | Path, catalog: Catalog, command_line: str | None = None) -> Path:
    """Write the claims report of ``run_dirs`` (runs and search folders) to ``out``; return its path."""
    out = Path(out)
    searches = [(Path(d), load_search(Path(d))) for d in run_dirs if is_search(d)]
    parts = load([d for d in run_dirs if not is_search(d)])
    command_line = command_line or "gradual-jax report " + " ".join(map(str, run_dirs)) + f" --out {out}"
    text = render(catalog, parts, out, command_line, searches)
    storage.atomic_write_text(out, text)  # a reader never sees half a report
    return out
