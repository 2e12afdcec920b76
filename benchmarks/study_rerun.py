"""The committed study runs at the current code: each run's first tasks trained again from the
config its ``config.json`` records, their lane-steps/s beside the committed run's, their rows
beside the committed rows.

    python -m benchmarks.study_rerun [--runs results/fig1-mnist-study ...] [--tasks 2] [--json OUT.json]

A run's rate is the runner's own (``config.json``: lanes × steps / training seconds, readouts
included, compile apart), so the committed number and the rerun's measure the same thing; the
committed runs did not record their machine's load, the rerun records the share of the CPU
other processes used meanwhile. Rows are compared per lane and task (the largest absolute
difference of each metric) and per arm, as ``tests/test_committed_results.py`` does: on random
labels the last bits of a differently compiled step grow until single lanes differ, so what must
hold is each arm's mean over seeds, within the 95% interval of a difference of two means (Welch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import common

STUDIES = ("fig1-mnist-study", "fig1-mnist-study-costly", "fig1-mnist-study-crelu", "fig1-cifar-study",
           "fig2-seq2seq-study", "fig3-emnist-study", "fig5-granularity-study", "fig5-granularity-study-e20")
KEYS = ["lane", "task"]
ARM = ["schedule", "delta", "method"]
NOT_METRICS = {"lane", "seed", "task", "delta", "learning_rate", "samples_seen", "epochs_per_task",
               "transition_ratio", "batch_size", "finite", "reset_each_task"}
ROUNDING = 1e-5  # float32 arithmetic compiled alike agrees to this (accuracies, losses, norms of order 1)
FLOOR = 1e-3  # the least room an arm gets when its seeds agree exactly in both runs (one image in 1,000)


def parts_of(run: Path) -> list[Path]:
    """The folders holding a ``config.json`` and ``results.csv``: the run, or each of its parts."""
    if (run / "config.json").is_file():
        return [run]
    found = sorted(p for p in run.iterdir() if (p / "config.json").is_file())
    if not found:
        raise SystemExit(f"--runs: {run} holds no run (no config.json in it or in a part folder)")
    return found


def rerun(part: Path, tasks: int) -> tuple[dict, pd.DataFrame]:
    """Train ``part``'s recorded config for its first ``tasks`` tasks; its rate and rows."""
    from gradual_jax import config as config_lib

    stored = json.loads((part / "config.json").read_text())
    cfg = config_lib.apply_overrides(config_lib.from_dict(stored["config"]),
                                     [f"task.num_tasks={tasks}", "run.checkpoint_every=0"])
    return common.config_run(cfg)


def arm_agreement(new: pd.DataFrame, old: pd.DataFrame, metric: str) -> dict:
    """Per arm: the seeds' means over the compared tasks, their difference and the Welch 95%
    half-width; ``agree`` when every arm's difference lies within it."""
    from scipy import stats

    per_seed = [frame.groupby([*ARM, "seed"], dropna=False)[metric].mean() for frame in (new, old)]
    arms = {}
    for arm, old_arm in per_seed[1].groupby(level=ARM, dropna=False):
        a, b = per_seed[0].loc[old_arm.index].to_numpy(), old_arm.to_numpy()
        half = FLOOR
        if len(a) > 1 and (a.var() + b.var()) > 0:
            low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
            half = max(FLOOR, (high - low) / 2)
        arms[" ".join(str(x) for x in arm)] = {"difference": float(a.mean() - b.mean()), "half_width": float(half)}
    return {"arms": arms, "agree": all(abs(a["difference"]) <= a["half_width"] for a in arms.values())}


def compare_rows(new: pd.DataFrame, old: pd.DataFrame, metric: str) -> dict:
    """The rerun's rows against the committed rows of the same lanes and tasks."""
    old = old[old["task"] < new["task"].max() + 1]
    new, old = new.set_index(KEYS).sort_index(), old.set_index(KEYS).sort_index()
    if not new.index.equals(old.index) or not (new["seed"] == old["seed"]).all():
        raise SystemExit("the rerun's lanes and tasks are not the committed run's: its config changed meaning")
    metrics = [c for c in new.columns if c in old.columns and c not in NOT_METRICS
               and pd.api.types.is_numeric_dtype(new[c]) and new[c].notna().any()]
    largest = {c: float(np.nanmax(np.abs(new[c].to_numpy(float) - old[c].to_numpy(float)))) for c in metrics}
    largest = {c: (0.0 if np.isnan(v) else v) for c, v in largest.items()}
    return {"metric": metric, "largest_difference": largest,
            "to_rounding": all(v <= ROUNDING for v in largest.values()),
            "arm_means": arm_agreement(new.reset_index(), old.reset_index(), metric)}


def study(run: Path, tasks: int) -> list[dict]:
    rows = []
    for part in parts_of(run):
        stored = json.loads((part / "config.json").read_text())
        timing, new = rerun(part, tasks)
        compared = compare_rows(new, pd.read_csv(part / "results.csv"), stored["config"]["metric"])
        committed = {"lane_steps_per_second": stored.get("lane_steps_per_second"),
                     "train_seconds": stored.get("train_seconds"), "commit": stored["provenance"].get("commit"),
                     "tasks": stored["config"]["task"]["num_tasks"]}
        rate = committed["lane_steps_per_second"]
        row = {"run": str(run), "part": part.name if part != run else "", "lanes": len(stored["lanes"]),
               "committed": committed, "rerun": timing, "tasks_rerun": tasks,
               "speedup": timing["lane_steps_per_second"] / rate if rate else None,
               "committed_wall_at_rerun_rate_s": (committed["train_seconds"] * rate / timing["lane_steps_per_second"]
                                                  if rate and committed["train_seconds"] else None),
               **compared}
        rows.append(row)
        arms = "agree" if compared["arm_means"]["agree"] else "DIFFER"
        print(f"{row['run']}{'/' + row['part'] if row['part'] else ''}: {row['lanes']} lanes, committed "
              f"{rate or float('nan'):,.1f} lane-steps/s, now {timing['lane_steps_per_second']:,.1f} "
              f"({row['speedup'] or float('nan'):.2f}×, others' CPU {timing['others_cpu']:.0%}); rows "
              f"{'equal to rounding' if compared['to_rounding'] else 'not equal to rounding'}, arm means {arms}",
              flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| run | lanes | committed lane-steps/s | now | × | committed wall → at today's rate | rows to "
             "rounding | largest difference of its metric | arm means (Welch 95%) | others' CPU |",
             "|---|---:|---:|---:|---:|---|---|---:|---|---:|"]
    for r in rows:
        name = r["run"].split("/")[-1] + (f"/{r['part']}" if r["part"] else "")
        wall = r["committed"]["train_seconds"]
        after = r["committed_wall_at_rerun_rate_s"]
        lines.append(
            f"| `{name}` | {r['lanes']} | {r['committed']['lane_steps_per_second'] or float('nan'):,.1f} | "
            f"{r['rerun']['lane_steps_per_second']:,.1f} | {r['speedup'] or float('nan'):.2f} | "
            f"{(wall or 0) / 60:.0f} → {(after or 0) / 60:.0f} min | {'yes' if r['to_rounding'] else 'no'} | "
            f"{r['metric']} {r['largest_difference'].get(r['metric'], float('nan')):.2g} | "
            f"{'agree' if r['arm_means']['agree'] else 'differ'} | {r['rerun']['others_cpu']:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=[str(Path("results") / s) for s in STUDIES])
    parser.add_argument("--tasks", type=int, default=2, help="the first tasks to train again (default 2)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--table", metavar="JSON", help="only print the table of an earlier --json file")
    args = parser.parse_args(argv)
    if args.table:
        rows = json.loads(Path(args.table).read_text())["runs"]
        print(table(rows))
        return {"runs": rows}
    if args.tasks < 1:
        raise SystemExit(f"--tasks={args.tasks}: must be a positive integer")
    runs = [Path(r) for r in args.runs]
    for run in runs:
        if not run.is_dir():
            raise SystemExit(f"--runs: {run} is not a folder")
        parts_of(run)
    rows = [row for run in runs for row in study(run, args.tasks)]
    print("\n" + table(rows))
    result = {"tasks": args.tasks, "runs": rows}
    if args.json:
        common.write_json(args.json, "study_rerun", result)
    return result


if __name__ == "__main__":
    main()
