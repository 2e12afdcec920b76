"""The committed main-job results reproduce from the command their config.json records."""

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
TOLERANCE = 0.02  # in accuracy: far above run-to-run float noise, far below any protocol change


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
    for column in ("online_train_acc", "online_train_acc_at_E", "train_acc"):
        np.testing.assert_allclose(new[column], old[column], atol=TOLERANCE, rtol=0, err_msg=column)
