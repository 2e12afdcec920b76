"""The README's own schedule: its file registers a schedule that trains end to end.

``docs/examples/exponential_schedule.py`` is the README's code; here its coefficients are
checked against α = 2^(q/n) − 1 worked out by hand, config validation takes its name, and a
tiny run of its preset through the command line has its lanes with finite metrics.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from gradual_jax.config import ConfigError, apply_overrides, validate
from gradual_jax.envs import schedules
from tests.conftest import assert_readme_shows, example_fixture, run_example, python_blocks, readme_section

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "exponential_schedule.py"
NAME = "exp_output_mix"
TINY = ["task.num_tasks=2", "sweep.seeds=0", "data.train_per_class=4", "protocol.epochs_per_task=2",
        "protocol.batch_size=8", "sweep.deltas=0.5", "model.hidden_sizes=16"]


example = example_fixture(EXAMPLE, schedules.SCHEDULES, NAME)


def test_the_readme_shows_the_example_and_its_command():
    assert_readme_shows("### A schedule", EXAMPLE)
    (code,) = python_blocks(readme_section("### A schedule"))
    assert code == EXAMPLE.read_text()  # the whole file


def test_coefficients_follow_the_exponential_by_hand(example):
    sid = schedules.schedule_id(NAME)
    assert sid == len(schedules.BUILT_IN)  # registered after the built-ins, which keep their ids
    assert schedules.num_stages(sid, 0.25) == 4
    # Δ = 0.25, E: 10 steps, k·E: 40 steps: 4 stages of 10 steps, α = 2^(q/4) − 1
    by_hand = {3: None, 10: 0.0, 19: 0.0, 20: 2 ** 0.25 - 1, 30: math.sqrt(2) - 1, 45: 2 ** 0.75 - 1,
               49: 2 ** 0.75 - 1}
    for step, alpha in by_hand.items():
        mix = schedules.batch_mix(jnp.int32(sid), jnp.float32(0.25), jnp.int32(step), 10, 40, jnp.int32(8), 8)
        old, new = (1.0, 0.0) if alpha is None else (1 - alpha, alpha)  # None: the pure phase
        for got, want in zip(mix, (0.0, old, new, 0.0)):
            np.testing.assert_allclose(np.asarray(got), np.full(8, want), rtol=1e-6, atol=1e-7,
                                       err_msg=f"step {step}")


def test_config_takes_the_registered_name(example):
    cfg = example.PRESETS["cpu"]()
    assert validate(cfg).sweep.schedules == ("abrupt", "output_mix", NAME)
    with pytest.raises(ConfigError, match=f"{NAME} only moves the labels.*permuted_pixels"):
        validate(apply_overrides(cfg, ["task.family=permuted_pixels", f"sweep.schedules=abrupt,{NAME}"]))


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_tiny_run_of_the_preset(example, tmp_path):
    frame = pd.read_csv(run_example(EXAMPLE, tmp_path, TINY) / "results.csv")
    assert sorted(set(frame["schedule"])) == ["abrupt", NAME, "output_mix"]
    ours = frame[frame["schedule"] == NAME]
    assert len(ours) == 2 and set(ours["task"]) == {0, 1}  # one lane, two tasks
    for column in ("online_train_acc", "train_acc", "train_loss"):
        assert np.isfinite(ours[column].to_numpy(float)).all(), column
