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
