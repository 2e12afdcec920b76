"""The committed main-job results reproduce from the command their config.json records.

A rerun changes the last bits wherever the arithmetic is compiled differently (another CPU, on
which XLA picks other kernels, or a later version of the code), and training on random labels
amplifies them until single lanes differ by a tenth after two tasks. So each arm's mean over its
seeds and the first two tasks is compared (what the summaries report), within a band far below
the arms' differences."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradual_jax import cli
from tests.test_cli import needs_mnist

RUN = Path(__file__).resolve().parent.parent / "results" / "fig1-mnist-cpu"
ARM_MEANS = 0.05  # an arm's mean accuracy over 3 seeds × 2 tasks (the arms differ by 0.1 and more)


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
@needs_mnist
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
    new_means = new.reset_index().groupby(arms, dropna=False)[columns].mean()
    old_means = old.reset_index().groupby(arms, dropna=False)[columns].mean()
    assert new_means.index.equals(old_means.index)
    for column in columns:
        np.testing.assert_allclose(new_means[column], old_means[column], atol=ARM_MEANS, rtol=0, err_msg=column)
