"""The committed main-job results reproduce from the command their config.json records.

A rerun changes the last bits wherever the arithmetic is compiled differently (another CPU, on
which XLA picks other kernels, or a later version of the code), and training on random labels
amplifies them until single lanes differ by a fifth after two tasks. What a rerun must
reproduce is therefore each arm as a sample over seeds: per arm and metric, the seeds' means
over the first two tasks of the rerun and of the committed run must agree within the 95%
interval of a difference of two means (Welch's t), the same statistics the summaries report.
An arm whose seeds all agree exactly leaves almost no room (a floor of 0.001, about one image
in 1,280), so the sharpness of the check follows the seeds' own spread.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gradual_jax import cli

RUN = Path(__file__).resolve().parent.parent / "results" / "fig1-mnist-cpu"
FLOOR = 1e-3  # the least room an arm gets, when its seeds agree exactly in both runs


def welch_half_width(a: np.ndarray, b: np.ndarray) -> float:
    """Half-width of the 95% interval of mean(a) − mean(b) (Welch–Satterthwaite degrees of freedom)."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return FLOOR
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return max(FLOOR, float(stats.t.ppf(0.975, dof)) * math.sqrt(va + vb))


def recorded_command() -> list[str]:
    meta = json.loads((RUN / "config.json").read_text())
    argv = shlex.split(meta["provenance"]["command"])
    assert argv[:2] == ["gradual-jax", "run"], argv
    return argv[1:]  # what cli.main takes: the command line without the program


def with_out(args: list[str], out: Path) -> list[str]:
    i = args.index("--out")
    return [*args[:i], "--out", str(out), *args[i + 2:]]


def test_the_recorded_command_names_the_committed_folder():
    args = recorded_command()
    assert args[args.index("--out") + 1] == "results/fig1-mnist-cpu"


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_first_two_tasks_of_the_committed_main_job_reproduce(tmp_path):
    args = with_out(recorded_command(), tmp_path / "rerun") + ["--set", "task.num_tasks=2", "--no-progress"]
    assert cli.main(args) == 0
    new = pd.read_csv(tmp_path / "rerun" / "results.csv").set_index(["lane", "task"]).sort_index()
    old = pd.read_csv(RUN / "results.csv")
    old = old[old["task"] < 2].set_index(["lane", "task"]).sort_index()
    assert list(new.index) == list(old.index)
    assert (new["seed"] == old["seed"]).all() and (new["schedule"] == old["schedule"]).all()
    columns = ["online_train_acc", "online_train_acc_at_E", "train_acc"]
    arms = ["schedule", "delta"]
    new_seeds = new.reset_index().groupby([*arms, "seed"], dropna=False)[columns].mean()
    old_seeds = old.reset_index().groupby([*arms, "seed"], dropna=False)[columns].mean()
    assert new_seeds.index.equals(old_seeds.index)
    for arm, old_arm in old_seeds.groupby(level=arms, dropna=False):
        new_arm = new_seeds.loc[old_arm.index]
        for column in columns:
            a, b = new_arm[column].to_numpy(), old_arm[column].to_numpy()
            half = welch_half_width(a, b)
            assert abs(a.mean() - b.mean()) <= half, (arm, column, a, b, half)
