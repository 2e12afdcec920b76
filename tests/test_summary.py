"""Summaries against hand-computed values: Student-t intervals, final windows, paired differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradual_jax.analysis import summary


def test_t_factor_matches_the_table():
    # Student's t, two-sided 95%: 12.706 for 1 degree of freedom, 2.776 for 4 (any printed table)
    assert summary.t_factor(2) == pytest.approx(12.7062, abs=1e-4)
    assert summary.t_factor(5) == pytest.approx(2.7764, abs=1e-4)
    assert math.isnan(summary.t_factor(1))


def test_interval_by_hand_n2_and_n5():
    two = summary.interval([0.41, 0.47])
    # mean 0.44, s = 0.06/√2 = 0.0424264, half = 12.7062 · s / √2 = 0.381186
    assert two.mean == pytest.approx(0.44)
    assert two.half_width == pytest.approx(0.381186, abs=1e-5)
    assert two.text() == "0.440 ± 0.381 (n=2: 0.410, 0.470)"
    five = summary.interval([1, 2, 3, 4, 5])
    # s = √2.5 = 1.581139, half = 2.776445 · 1.581139 / √5 = 1.963243
    assert five.half_width == pytest.approx(1.963243, abs=1e-5)
    assert five.text(1) == "3.0 ± 2.0 (n=5)"  # no per-seed values above 3 seeds
    assert math.isnan(summary.interval([0.5]).half_width)


@pytest.mark.parametrize("tasks,expected", [(2, (0, 2)), (3, (0, 3)), (10, (7, 10)), (20, (17, 20)), (30, (27, 30)),
                                            (100, (90, 100))])
def test_final_window_covers_at_least_three_tasks(tasks, expected):
    assert summary.final_window(tasks) == range(*expected)


def table(values: dict, tasks: int = 4, run: str = "") -> pd.DataFrame:
    """A results table: ``values[(schedule, delta, method)][seed]`` = per-task metric values."""
    rows = []
    for (schedule, delta, method), per_seed in values.items():
        for seed, series in enumerate(per_seed):
            for task in range(tasks):
                rows.append(dict(run=run, model="mlp 8x2", schedule=schedule, method=method, delta=delta,
                                 learning_rate=1e-3, seed=seed, task=task, finite=True,
                                 online_train_acc=series[task], online_train_acc_at_E=series[task] - 0.1))
    return pd.DataFrame(rows)


def test_paired_difference_against_a_hand_made_table():
    # 4 tasks: the final window is tasks 1-3. Abrupt seeds end at 0.5, 0.6, 0.4; output
    # interpolation at 0.9 in every seed -> per-seed differences 0.4, 0.3, 0.5: mean 0.4, s = 0.1,
    # half-width 4.303·0.1/√3 = 0.248, so the interval [0.152, 0.648] lies above 0.
    frame = table({
        ("abrupt", np.nan, "none"): [[1, .5, .5, .5], [1, .6, .6, .6], [1, .4, .4, .4]],
        ("output_interp", 0.5, "none"): [[.7, .9, .9, .9], [.7, .9, .9, .9], [.7, .9, .9, .9]],
        ("abrupt", np.nan, "l2"): [[1, .6, .6, .6], [1, .6, .6, .6], [1, .3, .3, .3]],
    })
    pairs = summary.paired_table(frame, "online_train_acc").set_index("comparison")
    oi = pairs.loc["output_interp Δ=0.5 − abrupt"]
    diffs = np.array([0.4, 0.3, 0.5])
    assert oi["difference"] == pytest.approx(diffs.mean())
    assert oi["ci95"] == pytest.approx(4.302653 * 0.1 / np.sqrt(3), abs=1e-6)
    assert oi["positive"] == 3 and oi["seeds"] == 3 and oi["window"] == "tasks 1–3"
    assert oi["verdict"] == "holds"
    assert oi["difference_at_E"] == pytest.approx(diffs.mean())  # both arms shifted by the same 0.1
    l2 = pairs.loc["abrupt + l2 − abrupt"]
    assert l2["difference"] == pytest.approx(0.0, abs=1e-12) and l2["positive"] == 1
    assert l2["verdict"] == "inconclusive"
    arms = summary.arm_table(frame, "online_train_acc").set_index("arm")
    assert arms.loc["abrupt", "final"] == pytest.approx(0.5)
    assert arms.loc["abrupt", "drop"] == pytest.approx(0.5)  # read at epoch E in both: 0.9 - 0.4
    assert arms.loc["abrupt", "drop_read_at"] == "epoch E"


def test_overlay_of_runs_with_different_task_counts_has_no_nan():
    short = table({("abrupt", np.nan, "none"): [[1, .5, .5, .5]] * 2}, tasks=4, run="short")
    long = table({("abrupt", np.nan, "none"): [[1] * 10 + [.2] * 10] * 2}, tasks=20, run="long")
    arms = summary.arm_table(pd.concat([short, long]), "online_train_acc").set_index("run")
    assert arms.loc["short", "final"] == pytest.approx(0.5) and arms.loc["short", "window"] == "tasks 1–3"
    assert arms.loc["long", "final"] == pytest.approx(0.2) and arms.loc["long", "window"] == "tasks 17–19"


def test_band_is_clipped_to_the_metric_range():
    frame = pd.DataFrame({"task": [0, 0, 1, 1], "acc": [1.0, 0.6, 0.0, 0.4]})
    mean, low, high = summary.band(frame.groupby("task")["acc"], "test_acc")
    assert mean.tolist() == pytest.approx([0.8, 0.2])
    assert high.max() <= 1.0 and low.min() >= 0.0
    # unclipped: 0.8 ± 12.706·0.2828/√2 runs far past 1
    assert high.iloc[0] == 1.0 and low.iloc[1] == 0.0
