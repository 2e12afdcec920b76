"""``gradual-jax report`` on hand-made result tables: each verdict, settings, refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import experiments
from gradual_jax.analysis import claims, report
from gradual_jax import cli
from gradual_jax import config as config_lib


def write_run(path, finals: dict, *, preset="cpu", model="mlp", tasks=4, status="finished"):
    """A finished fig1-mnist run whose lanes score ``finals[(schedule, delta, method)][seed]``
    on tasks 1.. (task 0 scores 1.0), with the config.json a run writes."""
    cfg = experiments.get_config("fig1-mnist", "cpu")
    cfg = config_lib.to_dict(cfg)
    cfg["preset"], cfg["model"]["name"] = preset, model
    rows = []
    for lane, ((schedule, delta, method), values) in enumerate(finals.items()):
        for seed, final in enumerate(values):
            for task in range(tasks):
                value = 1.0 if task == 0 else final
                rows.append(dict(experiment="fig1-mnist", preset=preset, model=f"{model} 64x4", lane=lane, seed=seed,
                                 schedule=schedule, method=method, delta=delta, learning_rate=1e-3, task=task,
                                 finite=True, online_train_acc=value, online_train_acc_at_E=value))
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    meta = {"config": cfg, "status": status, "train_seconds": 100.0, "compile_seconds": 5.0,
            "provenance": {"commit": "0123456789abcdef", "dirty": False, "command": f"gradual-jax run fig1-mnist --out {path}"}}
    (path / "config.json").write_text(json.dumps(meta))
    return path


ABRUPT = ("abrupt", np.nan, "none")
GRADUAL = ("output_interp", 0.5, "none")


@pytest.mark.parametrize("gradual,verdict", [
    ([0.9, 0.9, 0.9], "holds"),  # differences 0.4, 0.3, 0.5
    ([0.1, 0.2, 0.0], "reversed"),  # -0.4, -0.4, -0.4 ± 0 -> below 0
    ([0.9, 0.3, 0.6], "inconclusive"),  # 0.4, -0.3, 0.2: the interval straddles 0
])
def test_verdicts(tmp_path, gradual, verdict):
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: gradual})
    [(group, outcomes)] = report.evaluate(report.load([run]))
    [outcome] = outcomes
    assert outcome.verdict == verdict
    assert outcome.comparison == "output_interp Δ=0.5 − abrupt"
    expected = np.array(gradual) - np.array([0.5, 0.6, 0.4])
    assert outcome.difference.mean == pytest.approx(expected.mean())
    assert outcome.difference.positive() == int((expected > 0).sum())


def test_mitigations_and_a_crelu_run_are_compared_paired_by_seed(tmp_path):
    main = write_run(tmp_path / "study", {ABRUPT: [0.5, 0.5, 0.5], GRADUAL: [0.9, 0.8, 0.9],
                                           ("abrupt", np.nan, "l2"): [0.95, 0.85, 0.95]}, preset="study")
    crelu = write_run(tmp_path / "crelu", {ABRUPT: [0.7, 0.6, 0.8]}, preset="study-crelu", model="crelu_mlp")
    out = report.report([main, crelu], tmp_path / "R.md")
    [(group, outcomes)] = report.evaluate(report.load([main, crelu]))  # one setting: only the activation differs
    found = {o.comparison: o for o in outcomes}
    assert set(found) == {"output_interp Δ=0.5 − abrupt", "output_interp Δ=0.5 [mlp] − abrupt [crelu_mlp]",
                          "output_interp Δ=0.5 − abrupt + l2"}
    assert found["output_interp Δ=0.5 − abrupt + l2"].verdict == "reversed"
    assert found["output_interp Δ=0.5 [mlp] − abrupt [crelu_mlp]"].difference.mean == pytest.approx(
        np.mean([0.2, 0.2, 0.1]))
    text = out.read_text()
    assert "Output interpolation is more effective than other plasticity mitigation methods." in text
    assert "`gradual-jax run fig1-mnist --out" in text and "0123456789" in text
    assert "E = 30 (paper: 80)" in text and "tasks = 20 (paper: 100)" in text


def test_refuses_a_run_without_the_arms_its_claims_need(tmp_path, capsys):
    run = write_run(tmp_path / "abrupt-only", {ABRUPT: [0.5, 0.6, 0.4]})
    with pytest.raises(claims.MissingArmsError, match="output_interp Δ=any"):
        report.evaluate(report.load([run]))
    assert cli.main(["report", str(run), "--out", str(tmp_path / "R.md")]) == 2
    assert "no claim of fig1-mnist can be decided" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()


def test_refuses_an_unfinished_run(tmp_path, capsys):
    run = write_run(tmp_path / "running", {ABRUPT: [0.5], GRADUAL: [0.9]}, status="running")
    assert cli.main(["report", str(run), "--out", str(tmp_path / "R.md")]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_every_experiment_claim_names_a_known_metric_and_schedule():
    for name in experiments.MODULES:
        for claim in getattr(experiments.module(name), "CLAIMS", ()):
            assert claim.metric in config_lib.METRICS, (name, claim)
            for c in claim.comparisons:
                schedules = [c.schedule] if isinstance(c, claims.FinerVersusCoarser) else [c.arm.schedule,
                                                                                             c.baseline.schedule]
                assert all(s in ("abrupt", "input_interp", "output_interp", "output_mix", "task_sampling")
                           for s in schedules)


MY_CLAIMS = '''
import experiments
from gradual_jax.analysis.claims import ANY, Arm, Claim, Versus

CLAIMS = (Claim("My figure", "Gradual beats abrupt in my setting.", "online_train_acc",
                (Versus(Arm("output_interp", ANY), Arm("abrupt")),)),)
PRESETS = {"cpu": lambda: experiments.get_config("fig1-mnist", "cpu")}
'''


def test_claims_of_a_researchers_own_experiment_file_are_decided(tmp_path):
    file = tmp_path / "elsewhere" / "my_exp.py"
    file.parent.mkdir()
    file.write_text(MY_CLAIMS)
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["name"] = "my-exp"
    meta["provenance"]["experiment_file"] = str(file)
    (run / "config.json").write_text(json.dumps(meta))
    [(_, outcomes)] = report.evaluate(report.load([run]))
    [outcome] = outcomes
    assert outcome.claim.caption == "Gradual beats abrupt in my setting." and outcome.verdict == "holds"
    assert outcome.difference.mean == pytest.approx(np.mean([0.4, 0.3, 0.5]))


def fake_search_run(run_dir, metric: str, first: list[float], final: list[float]) -> None:
    """A finished abrupt-only candidate run of 4 tasks: task 0 at ``first[seed]``, the final
    window (tasks 1–3) at ``final[seed]`` exactly on average."""
    rows = [dict(lane=seed, seed=seed, schedule="abrupt", delta=np.nan, learning_rate=1e-3, method="none",
                 task=task, **{metric: value})
            for seed, (a, b) in enumerate(zip(first, final)) for task, value in enumerate([a, b - 0.01, b, b + 0.01])]
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "config.json").write_text(json.dumps({"status": "finished", "train_seconds": 60.0, "config": {}}))


FLAT, FALLS = ([0.9, 0.8, 0.85], [0.91, 0.79, 0.85]), ([0.9, 0.8, 0.85], [0.5, 0.45, 0.55])


def test_searches_say_whether_each_figure_can_be_tested(tmp_path):
    """Three hand-made searches: every candidate ran and none loses (not testable), the second
    candidate loses (testable there, the chosen setting), one of several ran (incomplete)."""
    from gradual_jax.analysis import search

    folders = {}
    for name, runs in (("fig2-seq2seq", {c.name: FLAT for c in search.candidates("fig2-seq2seq")}),
                       ("fig4-cipher", dict(zip([c.name for c in search.candidates("fig4-cipher")][:2], (FLAT, FALLS)))),
                       ("fig1-cifar", {search.candidates("fig1-cifar")[0].name: FLAT})):
        out = tmp_path / f"{name}-search"
        metric = experiments.get_config(name, "cpu").metric
        for candidate, (first, final) in runs.items():
            fake_search_run(out / candidate, metric, first, final)
        search.write(name, "cpu", out)
        folders[name] = out
    mnist = write_run(tmp_path / "mnist", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    text = report.report([mnist, *folders.values()], tmp_path / "R.md").read_text()

    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| fig")}
    assert "**not testable at CPU scale**" in rows["fig2-seq2seq"] and "| 5/5 | none |" in rows["fig2-seq2seq"]
    chosen = search.candidates("fig4-cipher")[1]
    drops = np.array([0.9 - 0.5, 0.8 - 0.45, 0.85 - 0.55])  # first task − final window, per seed, by hand
    half = 4.302652729911275 * drops.std(ddof=1) / np.sqrt(3)
    assert f"`{chosen.name}`" in rows["fig4-cipher"] and "**testable**" in rows["fig4-cipher"]
    assert (f"0.850 (task 0) → 0.500, {drops.mean():+.3f} [{drops.mean() - half:+.3f}, {drops.mean() + half:+.3f}], 3/3"
            in rows["fig4-cipher"])
    assert "**incomplete**" in rows["fig1-cifar"] and f"| 1/{len(search.candidates('fig1-cifar'))} | none |" in rows["fig1-cifar"]
    # the searched figures' claims get ids after the decided ones, and each row names its own
    assert "- **C1** (Fig. 1 (left)" in text
    legend = {line.split("**")[1]: line for line in text.splitlines() if line.startswith("- **C")}
    seq2seq_ids = [i for i, line in legend.items() if "(Fig. 2," in line]
    assert len(seq2seq_ids) == len(experiments.module("fig2-seq2seq").CLAIMS) >= 1
    assert f"| fig2-seq2seq | {', '.join(seq2seq_ids)} |" in text
    assert f"[search.md]({folders['fig4-cipher'].name}/search.md)" in rows["fig4-cipher"]


def test_a_search_table_without_its_experiment_is_refused(tmp_path, capsys):
    out = tmp_path / "old-search"
    out.mkdir()
    pd.DataFrame([{"candidate": "e10", "status": "finished"}]).to_csv(out / "search.csv", index=False)
    assert cli.main(["report", str(out), "--out", str(tmp_path / "R.md")]) == 2
    assert "search.csv names no experiment" in capsys.readouterr().err
