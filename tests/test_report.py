"""``gradual-jax report`` and ``reproduce`` on hand-made tables: each rule a verdict must pass."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax.experiments import claims as paper_claims
from gradual_jax import cli, reproduce
from gradual_jax import config as config_lib
from gradual_jax.analysis import report, runs, verdicts
from gradual_jax.analysis.claims import Arm, Claim, Question, Run, Versus

ROOT = Path(__file__).resolve().parents[1]
ABRUPT = ("abrupt", np.nan, "none")
GRADUAL = ("output_interp", 0.5, "none")


def write_run(path, finals: dict, *, preset="verdict", seeds=(10, 11, 12), first: dict | None = None, tasks=4,
              status="finished", model="mlp", rate=None, num_tasks=None):
    """A finished fig1-mnist run (the ``cpu`` sizes) whose lanes score ``first[arm][i]`` (default
    1.0) on task 0 and ``finals[arm][i]`` on every later task, for seed ``seeds[i]``."""
    cfg = config_lib.to_dict(experiments.get_config("fig1-mnist", "cpu"))
    cfg["preset"], cfg["model"]["name"], cfg["sweep"]["seeds"] = preset, model, list(seeds)
    cfg["task"]["num_tasks"] = num_tasks or cfg["task"]["num_tasks"]
    rows = []
    for lane, (arm, values) in enumerate(finals.items()):
        schedule, delta, method = arm
        for i, (seed, final) in enumerate(zip(seeds, values)):
            start = (first or {}).get(arm, [1.0] * len(seeds))[i]
            for task in range(tasks):
                value = start if task == 0 else final
                rows.append(dict(experiment="fig1-mnist", preset=preset, model=f"{model} 64x4", lane=lane * 100 + i,
                                 seed=seed, schedule=schedule, method=method, delta=delta, learning_rate=1e-3,
                                 task=task, finite=True, online_train_acc=value, online_train_acc_at_E=value))
    path.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path / "results.csv", index=False)
    meta = {"config": cfg, "status": status, "train_seconds": 100.0, "compile_seconds": 5.0,
            "provenance": {"commit": "0123456789abcdef", "dirty": False,
                           "command": f"gradual-jax run fig1-mnist --preset {preset} --out {path}"}}
    if rate is not None:
        meta["lane_steps_per_second"] = rate
    (path / "config.json").write_text(json.dumps(meta))
    return path


def question(**changes) -> Question:
    fields = dict(label="gradual − abrupt", metric="online_train_acc", comparison=Versus(Arm("output_interp", 0.5),
                                                                                          Arm("abrupt")),
                  runs=(Run("fig1-mnist", "verdict"),))
    return Question(**{**fields, **changes})


def catalog(*questions: Question, search_seeds=frozenset()) -> report.Catalog:
    def configs(experiment, preset):
        if preset not in ("verdict", "study", "paper", "cpu"):
            raise config_lib.ConfigError(f"unknown preset {preset!r}")
        cfg = experiments.get_config("fig1-mnist", "paper" if preset == "paper" else "cpu")
        return {"": dataclasses.replace(cfg, preset=preset)}

    claim = Claim("mine", "Fig. 1 caption", "Gradual beats abrupt.", questions=tuple(questions))
    return report.Catalog((claim,), configs, lambda _: set(search_seeds))


@pytest.mark.parametrize("gradual,verdict", [
    ([0.9, 0.9, 0.9], "holds"),  # differences 0.4, 0.3, 0.5
    ([0.1, 0.2, 0.0], "reversed"),  # -0.4, -0.4, -0.4
    ([0.9, 0.3, 0.6], "inconclusive"),  # 0.4, -0.3, 0.2: the interval straddles 0
])
def test_a_posed_question_is_decided_on_its_declared_run(tmp_path, gradual, verdict):
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: gradual})
    answer = verdicts.answer(question(), runs.load([run]))
    assert answer.status == "decided" and answer.drop.posed  # the abrupt arm falls from 1.0 to about 0.5
    assert answer.verdict == verdict
    [reading] = answer.readings
    expected = np.array(gradual) - np.array([0.5, 0.6, 0.4])
    assert reading.paper.mean == pytest.approx(expected.mean()) and reading.paper.positive() == (expected > 0).sum()
    t = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5%
    assert reading.paper.half_width == pytest.approx(t * expected.std(ddof=1) / np.sqrt(3))
    assert answer.flags == ("n < 8",)  # a primary comparison needs 8 seeds


def test_the_share_of_tasks_learned_is_read_from_each_tasks_test_bleu(tmp_path):
    """A cipher task is learned (test BLEU-2 near 1) or failed (near 0); the share learned over
    the final window is a metric like any other, its drop gating the question as usual."""
    run = write_run(tmp_path / "run", {ABRUPT: [0.5] * 3, GRADUAL: [0.9] * 3}, tasks=4)
    frame = pd.read_csv(run / "results.csv")
    bleu = {  # (schedule, seed) -> test BLEU-2 on tasks 0..3; the final window is tasks 1-3
        ("abrupt", 10): [0.98, 0.97, 0.03, 0.01], ("abrupt", 11): [0.99, 0.02, 0.5, 0.04],
        ("abrupt", 12): [0.97, 0.01, 0.02, np.nan],
        ("output_interp", 10): [0.98, 0.99, 0.97, 0.99], ("output_interp", 11): [0.97, 0.96, 0.49, 0.98],
        ("output_interp", 12): [0.99, 0.98, 0.99, 0.97]}
    frame["test_bleu2"] = [bleu[(row.schedule, row.seed)][row.task] for row in frame.itertuples()]
    frame.to_csv(run / "results.csv", index=False)
    answer = verdicts.answer(question(metric="test_bleu2_learned"), runs.load([run]))
    # learned shares over tasks 1-3 (NaN left out): abrupt 1/3, 1/3 (0.5 counts), 0/2; gradual 1, 2/3, 1
    abrupt, gradual = np.array([1 / 3, 1 / 3, 0.0]), np.array([1.0, 2 / 3, 1.0])
    assert answer.status == "decided"
    assert answer.drop.first.mean == pytest.approx((1 - abrupt).mean())  # every abrupt seed learned task 0
    [reading] = answer.readings
    assert reading.paper.mean == pytest.approx((gradual - abrupt).mean()) and reading.paper.positive() == 3


def test_not_posed_when_the_abrupt_arm_does_not_lose(tmp_path):
    """The gradual arm is far ahead, but the abrupt arm keeps its first task's level: no question."""
    run = write_run(tmp_path / "run", {ABRUPT: [0.9, 0.9, 0.95], GRADUAL: [1.0, 1.0, 1.0]},
                    first={ABRUPT: [0.92, 0.88, 0.93]})
    answer = verdicts.answer(question(), runs.load([run]))
    assert answer.readings[0].verdict == "holds"
    assert answer.status == "not posed" and answer.verdict == "not posed at this scale"
    drops = np.array([0.02, -0.02, -0.02])  # first task − final window, by hand
    assert answer.drop.first.mean == pytest.approx(drops.mean())
    assert "not posed" in answer.flags


def test_a_drop_below_the_declared_minimum_is_not_posed(tmp_path):
    """A clear but small loss (0.03 on every seed) is below min_drop = 0.05."""
    run = write_run(tmp_path / "run", {ABRUPT: [0.97, 0.96, 0.95], GRADUAL: [1.0, 1.0, 1.0]},
                    first={ABRUPT: [1.0, 0.99, 0.98]})
    answer = verdicts.answer(question(), runs.load([run]))
    assert answer.drop.best.low > 0 and answer.drop.best.mean == pytest.approx(0.03)
    assert answer.status == "not posed"
    assert verdicts.answer(question(min_drop=0.01), runs.load([run])).status == "decided"


def test_against_a_mitigating_architecture_the_gate_reads_the_plain_networks_abrupt_arm(tmp_path):
    """CReLU keeps its level (no loss of its own) while the plain network's abrupt arm falls: the
    question "does gradual change beat CReLU" is posed, and CReLU's lead reads reversed."""
    plain = write_run(tmp_path / "plain", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.7, 0.7, 0.7]})
    crelu = write_run(tmp_path / "crelu", {ABRUPT: [0.95, 0.96, 0.97]}, preset="verdict-crelu", model="crelu_mlp",
                      first={ABRUPT: [0.95, 0.96, 0.97]})
    versus_crelu = Versus(Arm("output_interp", 0.5, model="mlp"), Arm("abrupt", model="crelu_mlp"))
    answer = verdicts.answer(question(comparison=versus_crelu, runs=(Run("fig1-mnist", "verdict"),
                                                                     Run("fig1-mnist", "verdict-crelu"))),
                             runs.load([plain, crelu]))
    assert answer.status == "decided"
    assert answer.drop.first.mean == pytest.approx(0.5)  # the plain abrupt arm: 1.0 -> 0.5, 0.6, 0.4
    assert answer.readings[0].paper.mean == pytest.approx(0.7 - 0.96) and answer.verdict == "reversed"


def test_a_revised_criterion_is_flagged_and_said_in_the_report(tmp_path):
    run = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    revised = question(revised="the gate now reads the plain arm")
    assert "criterion revised" in verdicts.answer(revised, runs.load([run])).flags
    assert "criterion revised" not in verdicts.answer(question(), runs.load([run])).flags
    text = report.render(catalog(revised), runs.load([run]), tmp_path / "R.md", "test")
    assert "- criterion changed after earlier runs were seen: the gate now reads the plain arm;" in text


def test_matching_or_surpassing_holds_within_the_margin(tmp_path):
    mitigated = ("abrupt", np.nan, "redo")
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.5, 0.5], GRADUAL: [0.80, 0.80, 0.79],
                                       mitigated: [0.82, 0.82, 0.82]})
    versus_redo = Versus(Arm("output_interp", 0.5), Arm("abrupt", method="redo"))
    strict = verdicts.answer(question(comparison=versus_redo), runs.load([run]))
    matching = verdicts.answer(question(comparison=versus_redo, margin=0.05), runs.load([run]))
    assert strict.readings[0].paper.mean == pytest.approx(-0.07 / 3)  # -0.02, -0.02, -0.03: interval below 0
    assert strict.verdict == "reversed" and matching.verdict == "holds"


def test_a_verdict_run_on_its_searchs_seeds_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]}, seeds=(2, 3, 4))
    with pytest.raises(verdicts.OverlappingSeedsError, match=r"seeds \[2\] overlap those the fig1-cifar search"):
        verdicts.answer(question(search="fig1-cifar"), runs.load([run]), lambda _: {0, 1, 2})
    fresh = verdicts.answer(question(search="fig1-cifar"), runs.load([run]), lambda _: {100, 101, 102})
    assert fresh.verdict == "holds"


def test_replicates_are_listed_and_a_disagreeing_one_is_flagged(tmp_path):
    declared = write_run(tmp_path / "verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    agrees = write_run(tmp_path / "study", {ABRUPT: [0.5, 0.5, 0.5], GRADUAL: [0.8, 0.9, 0.85]}, preset="study",
                       seeds=(0, 1, 2))
    disagrees = write_run(tmp_path / "study2", {ABRUPT: [0.5, 0.5, 0.5], GRADUAL: [0.2, 0.9, 0.5]},
                          preset="study2", seeds=(0, 1, 2))
    answer = verdicts.answer(question(), runs.load([declared, agrees]))
    assert [r.label for r in answer.replicates] == ["study"] and not answer.replicates_disagree
    answer = verdicts.answer(question(), runs.load([declared, agrees, disagrees]))
    assert answer.verdict == "holds"  # the declared run decides
    assert [r.label for r in answer.replicates] == ["study", "study2"]
    assert answer.replicates[1].readings[0].verdict == "inconclusive"
    assert "replicates disagree" in answer.flags


def test_a_run_not_yet_made_reads_not_run_with_its_command_and_cost(tmp_path):
    """The cost is lanes × tasks × steps a task over the rate a comparable finished run measured."""
    other = write_run(tmp_path / "study", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]}, preset="study",
                      seeds=(0, 1, 2), rate=100.0)
    cat = catalog(question())
    text = report.render(cat, runs.load([other]), tmp_path / "R.md", "test")
    # fig1-mnist cpu: 3 seeds × (abrupt + Δ 0.5 + Δ 0.1) = 9 lanes; 1,280 images / batch 64 = 20 steps,
    # (1 + 2)·30 = 90 epochs: 1,800 steps a task, 20 tasks: 324,000 lane-steps, 3,240 s at 100 a second
    assert "| `fig1-mnist-verdict` | `gradual-jax run fig1-mnist --preset verdict --out results/fig1-mnist-verdict` | " \
           "9 lanes, 0.32 M lane-steps, ~54 min at 100 lane-steps/s (study) |" in text
    summary_row = next(line for line in text.splitlines() if line.startswith("| [mine]"))
    assert "**not run**" in summary_row
    assert "| study | output_interp Δ=0.5 − abrupt | +0.400" in text  # the other run, as a replicate


def test_runs_split_by_seeds_are_read_as_one_run_and_the_gate_reads_every_seed(tmp_path):
    first = {ABRUPT: [0.9, 0.9, 0.9, 0.9, 0.9]}
    a = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]},
                  seeds=(10, 11, 12), first=first)
    b = write_run(tmp_path / "fig1-mnist-study", {ABRUPT: [0.5, 0.7], GRADUAL: [0.8, 0.9]}, preset="study",
                  seeds=(13, 14), first=first)
    q = question(runs=(Run("fig1-mnist", "verdict"), Run("fig1-mnist", "study")))
    answer = verdicts.answer(q, runs.load([a, b]))
    [reading] = answer.readings
    assert reading.paper.n == 5 and reading.paper.mean == pytest.approx(np.mean([0.4, 0.3, 0.5, 0.3, 0.2]))
    assert reading.runs == ("fig1-mnist-verdict", "fig1-mnist-study")
    # the abrupt arm's drop from the first task (0.9) to the final window, over all five seeds
    assert answer.drop.first.n == 5 and answer.drop.first.mean == pytest.approx(0.9 - np.mean([0.5, 0.6, 0.4, 0.5, 0.7]))


def test_runs_of_the_same_seeds_are_not_added_up(tmp_path):
    a = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    b = write_run(tmp_path / "fig1-mnist-study", {ABRUPT: [0.5, 0.7], GRADUAL: [0.8, 0.9]}, preset="study",
                  seeds=(10, 11))
    assert verdicts.read_together(runs.load([a, b])) == {"fig1-mnist-verdict": "fig1-mnist-verdict",
                                                         "fig1-mnist-study": "fig1-mnist-study"}
    q = question(runs=(Run("fig1-mnist", "verdict"), Run("fig1-mnist", "study")))
    [reading] = verdicts.answer(q, runs.load([a, b])).readings
    assert reading.paper.n == 3 and reading.runs == ("fig1-mnist-verdict",)  # the first run's arms


def _methods_catalog(q: Question) -> report.Catalog:
    """``verdict``: the cpu preset; ``study``: its abrupt arm with ReDo only (no plain abrupt lane)."""
    def configs(experiment, preset):
        cfg = dataclasses.replace(experiments.get_config("fig1-mnist", "cpu"), preset=preset)
        if preset == "study":
            cfg = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, schedules=("abrupt",),
                                                                     methods=("redo",)))
        return {"": cfg}

    return report.Catalog((Claim("mine", "Fig. 1 caption", "Gradual beats abrupt.", questions=(q,)),),
                          configs, lambda _: set())


@pytest.mark.parametrize("abrupt_final,status", [(0.98, "not posed"), (0.5, "not run")])
def test_a_question_whose_missing_runs_cannot_hold_the_gate_reads_not_posed_when_the_made_runs_fail_it(
        tmp_path, abrupt_final, status):
    """The mitigation run is missing; the gate reads the plain abrupt arm, which only the verdict
    run trains: where that arm does not lose (0.98 after 1.0), no missing run could pose the
    question; where it does (0.5), the question waits for its runs."""
    run = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [abrupt_final] * 3, GRADUAL: [0.9, 0.9, 0.9]})
    q = question(comparison=Versus(Arm("output_interp", 0.5), Arm("abrupt", method="redo")),
                 runs=(Run("fig1-mnist", "verdict"), Run("fig1-mnist", "study")))
    cat = _methods_catalog(q)
    [answer] = report.answers(cat, runs.load([run]))["mine"]
    assert answer.status == status and answer.missing == (Run("fig1-mnist", "study"),)
    text = report.render(cat, runs.load([run]), tmp_path / "R.md", "test")
    assert ("since the runs made show the question not posed" in text) == (status == "not posed")
    assert ("Runs still to make" in text) == (status == "not run")
    # a missing run that trains the plain abrupt arm could change the gate: the question waits for it
    plain = question(runs=(Run("fig1-mnist", "verdict"), Run("fig1-mnist", "paper")))
    [waiting] = report.answers(_methods_catalog(plain), runs.load([run]))["mine"]
    assert waiting.status == "not run"


def test_a_run_with_no_comparable_finished_run_says_so_instead_of_a_time():
    from gradual_jax.analysis import plan

    text = plan.Cost(8, 153_600, None, "").text()
    assert text.startswith("8 lanes, 0.15 M lane-steps, no comparable finished run") and " h" not in text


def test_the_equal_exposure_reading_comes_from_the_epoch_curves(tmp_path):
    """E = 30, k = 2 in the cpu preset: abrupt lanes are read at epoch (1 + k/2)·E = 60 of each task."""
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    frame = pd.read_csv(run / "results.csv")
    curves = []
    for (lane, task, schedule), _ in frame.groupby(["lane", "task", "schedule"]):
        for epoch in range(1, 91):
            acc = 0.7 + lane / 1000 if schedule == "abrupt" and epoch == 60 else 0.0
            curves.append(dict(lane=lane, seed=0, arm="", task=task, epoch=epoch, online_train_loss=1.0,
                               online_train_acc=acc))
    pd.DataFrame(curves).to_csv(run / "epochs.csv", index=False)
    [reading] = verdicts.answer(question(), runs.load([run])).readings
    abrupt_at_60 = 0.7 + np.array([0, 1, 2]) / 1000  # lanes 0, 1, 2 are the abrupt seeds
    assert reading.equal.mean == pytest.approx(np.mean(0.9 - abrupt_at_60))
    assert reading.paper.mean == pytest.approx(np.mean(0.9 - np.array([0.5, 0.6, 0.4])))


def test_the_report_opens_with_one_line_per_claim(tmp_path):
    run = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    cpu = write_run(tmp_path / "fig1-mnist-cpu", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]}, preset="cpu",
                    seeds=(0, 1, 2), num_tasks=5)  # another setting (5 tasks): no replicate, the appendix
    text = report.render(catalog(question()), runs.load([run, cpu]), tmp_path / "R.md", "cmd")
    row = next(line for line in text.splitlines() if line.startswith("| [mine]"))
    assert "**holds**" in row and "| yes |" in row and "`fig1-mnist-verdict`" in row and "| 3 |" in row
    assert "> Gradual beats abrupt." in text
    assert "tasks = 20 (paper: 100)" in text and "E = 30 (paper: 80)" in text
    appendix = text.split("## Appendix")[1]
    assert "| fig1-mnist-cpu | output_interp Δ=0.5 − abrupt | online_train_acc | +0.400" in appendix


def test_two_questions_reading_the_same_arms_are_told_apart_by_their_labels(tmp_path):
    run = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    questions = (question(label="at E = 10"), question(label="at E = 20", role="secondary"))
    text = report.render(catalog(*questions), runs.load([run]), tmp_path / "R.md", "cmd")
    rows = [line for line in text.splitlines() if line.startswith(("| primary |", "| secondary |"))]
    assert [row.split(" | ")[1:3] for row in rows] == [["at E = 10", "output_interp Δ=0.5 − abrupt"],
                                                       ["at E = 20", "output_interp Δ=0.5 − abrupt"]]


def test_a_run_without_the_arms_its_question_needs_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "abrupt-only", {ABRUPT: [0.5, 0.6, 0.4]})
    with pytest.raises(verdicts.claims_lib.MissingArmsError, match="output_interp Δ=0.5"):
        verdicts.answer(question(), runs.load([run]))


def test_refuses_an_unfinished_run(tmp_path, capsys):
    run = write_run(tmp_path / "running", {ABRUPT: [0.5], GRADUAL: [0.9]}, status="running")
    assert cli.main(["report", str(run), "--out", str(tmp_path / "R.md")]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_a_search_table_without_its_experiment_is_refused(tmp_path, capsys):
    out = tmp_path / "old-search"
    out.mkdir()
    pd.DataFrame([{"candidate": "e10", "status": "finished"}]).to_csv(out / "search.csv", index=False)
    assert cli.main(["report", str(out), "--out", str(tmp_path / "R.md")]) == 2
    assert "search.csv names no experiment" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# The declared claims

PAPER = {  # the paper's sentences, typed out from the paper, independently of experiments/claims.py
    "Abstract": "We perform theoretical and empirical analysis, showing that the loss of plasticity is an artifact "
                "of abrupt tasks changes in the environment and can be largely mitigated if the world changes "
                "gradually.",
    "TL;DR": "Empirically, the approach preserves trainability and generalization across vision benchmarks and "
             "language tasks, often matching or surpassing traditional abrupt-change mitigations.",
    "Fig. 1 caption": "Output interpolation is more effective than other plasticity mitigation methods for these "
                      "vision benchmarks.",
    "Fig. 2 caption": "Task sampling effectively mitigates loss of trainability.",
    "Fig. 3 caption": "Generalizability is well preserved in a gradually changing environment.",
    "Fig. 4 caption": "The gradually changing environment is effective in maintaining test BLEU2 score on new tasks.",
    "Fig. 5 caption": "A smaller step size simulates gradually changing environment better and retains more "
                      "plasticity.",
}


def test_the_claims_quote_the_paper_exactly_and_docs_quote_them_too():
    quoted = {c.source: c.quote for c in paper_claims.CLAIMS if c.verbatim}
    assert quoted == PAPER
    protocol = " ".join((ROOT / "docs" / "protocol.md").read_text().split())
    for sentence in PAPER.values():
        assert sentence in protocol


def test_every_declared_question_names_arms_metrics_and_runs_that_exist():
    schedules = ("abrupt", "input_interp", "output_interp", "output_mix", "task_sampling")
    cat = report.paper_catalog()
    for claim in cat.claims:
        assert claim.questions or claim.summarises, claim.key
        assert set(claim.summarises) <= {c.key for c in cat.claims}
        for q in claim.questions:
            seeds = set()  # a question's runs are read together: runs of disjoint seeds add up
            for run in q.runs:
                cfg = cat.config(run)
                if cfg is None:  # a custom runner (the theory check) or a setting that awaits its search
                    assert run.experiment == "theory" or run.preset not in experiments.presets(run.experiment)
                    continue
                metric = runs.DERIVED[q.metric][0] if q.metric in runs.DERIVED else q.metric  # read from its source
                assert metric in config_lib.METRICS and metric in (cfg.metric, "online_train_acc")
                if isinstance(q.comparison, Versus):
                    assert q.comparison.arm.schedule in schedules and q.comparison.baseline.schedule in schedules
                seeds |= set(cfg.sweep.seeds)
                if q.search:
                    assert not set(cfg.sweep.seeds) & experiments.search_seeds(q.search), (claim.key, run)
            if q.role == "primary" and q.runs[0].experiment != "theory":
                assert len(seeds) >= 8, (claim.key, q.label)


# ---------------------------------------------------------------------------
# reproduce


def test_reproduce_plans_the_declared_runs_and_makes_only_the_missing_ones(tmp_path):
    write_run(tmp_path / "fig1-mnist-study", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]}, preset="study",
              seeds=(0, 1, 2), rate=100.0)
    cat = catalog(question(runs=(Run("fig1-mnist", "verdict"), Run("fig1-mnist", "study"))),
                  question(runs=(Run("fig1-mnist", "later"),)))
    finished = runs.load(reproduce.run_folders(tmp_path))
    todo = reproduce.steps(cat, tmp_path, "study", finished)
    assert [(s.run.preset, s.state) for s in todo] == [("verdict", "to run"), ("study", "finished"),
                                                      ("later", "awaits its search")]
    text = reproduce.plan_text(todo)
    assert "fig1-mnist-verdict: to run; 9 lanes, 0.32 M lane-steps, ~54 min at 100 lane-steps/s" in text
    assert re.search(r"1 run\(s\) to make, ~0\.9 h", text)
    made = []
    reproduce.execute(todo, lambda cfg, out, cmd: made.append((cfg.preset, out, cmd)), lambda run, out: None,
                      echo=lambda _: None)
    assert made == [("verdict", tmp_path / "fig1-mnist-verdict",
                     f"gradual-jax run fig1-mnist --preset verdict --out {tmp_path}/fig1-mnist-verdict")]


def test_reproduce_at_paper_scale_keeps_the_arms_and_seeds_and_takes_the_paper_sizes():
    verdict = experiments.get_config("fig1-mnist", "verdict")
    paper = experiments.get_config("fig1-mnist", "paper")
    scaled = reproduce.at_scale(verdict, paper, "paper")
    assert scaled.sweep.seeds == verdict.sweep.seeds and scaled.sweep.deltas == verdict.sweep.deltas
    assert scaled.protocol.epochs_per_task == 80 and scaled.task.num_tasks == 100 and scaled.preset == "verdict"


def test_reproduce_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    assert cli.main(["reproduce", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "fig1-mnist-verdict: to run; 30 lanes, 1.44 M lane-steps" in out
    assert "fig1-cifar-verdict-seeds10-13: to run; 8 lanes, 0.15 M lane-steps" in out
    # a multi-part run is one command: listed once, with the lanes of both parts (16 + 8)
    assert "fig1-mnist-verdict-crelu-fresh: to run; 24 lanes" in out and "verdict-crelu-fresh/" not in out
    assert list(tmp_path.iterdir()) == []


def test_claims_of_a_researchers_own_experiment_file_are_decided(tmp_path):
    file = tmp_path / "elsewhere" / "my_exp.py"
    file.parent.mkdir()
    file.write_text('''
from gradual_jax import experiments
from gradual_jax.analysis.claims import ANY, Arm, Claim, Question, Run, Versus

CLAIMS = (Claim("mine", "my figure", "Gradual beats abrupt in my setting.", questions=(
    Question("gradual − abrupt", "online_train_acc", Versus(Arm("output_interp", ANY), Arm("abrupt")),
             (Run("my-exp", "verdict"),)),)),)
PRESETS = {"cpu": lambda: experiments.get_config("fig1-mnist", "cpu")}
''')
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["name"] = "my-exp"
    meta["provenance"]["experiment_file"] = str(file)
    (run / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "R.md"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith("| [mine]"))
    assert "Gradual beats abrupt in my setting." in row and "**holds**" in row


def fake_search_run(run_dir, metric: str, first: list[float], final: list[float]) -> None:
    """A finished abrupt-only candidate run of 4 tasks: task 0 at ``first[seed]``, the final
    window (tasks 1–3) at ``final[seed]`` exactly on average."""
    rows = [dict(lane=seed, seed=seed, schedule="abrupt", delta=np.nan, learning_rate=1e-3, method="none",
                 task=task, **{metric: value})
            for seed, (a, b) in enumerate(zip(first, final)) for task, value in enumerate([a, b - 0.01, b, b + 0.01])]
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "config.json").write_text(json.dumps({"status": "finished", "train_seconds": 60.0, "config": {}}))


def test_a_search_says_its_criterion_when_it_was_fixed_and_what_the_earlier_one_gave(tmp_path):
    from gradual_jax.analysis import search

    out = tmp_path / "fig4-cipher-search"
    flat, falls = ([0.9, 0.8, 0.85], [0.91, 0.79, 0.85]), ([0.9, 0.8, 0.85], [0.5, 0.45, 0.55])
    names = [c.name for c in search.candidates("fig4-cipher")]
    for name, (first, final) in zip(names, (flat, falls)):
        fake_search_run(out / name, "test_bleu2", first, final)
    table = search.write("fig4-cipher", "cpu", out).read_text()
    assert f"fixed on {search.CRITERION_FIXED}" in table and "drop from the first task" in table
    drops = np.array([0.9 - 0.5, 0.8 - 0.45, 0.85 - 0.55])  # first task − final window, per seed, by hand
    half = 4.302652729911275 * drops.std(ddof=1) / np.sqrt(3)
    chosen = next(line for line in table.splitlines() if line.startswith(f"| `{names[1]}`"))
    assert f"| {drops.mean():+.3f} ± {half:.3f} |" in chosen and "**yes**" in chosen
    text = report.render(report.paper_catalog(), [], tmp_path / "R.md", "cmd", [(out, report.load_search(out))])
    row = next(line for line in text.splitlines() if line.startswith("| fig4-cipher |"))
    assert "| fig4 |" in row and "**testable**" in row and f"`{names[1]}`" in row
    assert f"{drops.mean():+.3f} [{drops.mean() - half:+.3f}, {drops.mean() + half:+.3f}] (holds)" in row


def test_report_readme_rewrites_only_the_block_between_the_markers(tmp_path, capsys):
    run = write_run(tmp_path / "run", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]}, preset="mine")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{report.README_BEGIN}\nstale\n{report.README_END}\nafter\n")
    out = tmp_path / "results" / "R.md"
    assert cli.main(["report", str(run), "--out", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{report.README_END}\nafter\n")
    assert "stale" not in text and "| [fig1](results/R.md#fig1) | Fig. 1 caption |" in text
    readme.write_text("no markers\n")
    assert cli.main(["report", str(run), "--out", str(out), "--readme", str(readme)]) == 2
    assert "no claims-summary markers" in capsys.readouterr().err


def test_a_replicate_that_does_not_pose_the_question_disagrees(tmp_path):
    declared = write_run(tmp_path / "verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    flat = write_run(tmp_path / "flat", {ABRUPT: [0.9, 0.9, 0.9], GRADUAL: [0.95, 0.95, 0.95]}, preset="flat",
                     seeds=(0, 1, 2), first={ABRUPT: [0.9, 0.9, 0.9]})
    answer = verdicts.answer(question(), runs.load([declared, flat]))
    [rep] = answer.replicates
    assert not rep.drop.posed and rep.readings[0].verdict == "holds"  # same verdict, but no question there
    assert answer.verdict == "holds" and "replicates disagree" in answer.flags


def test_the_readme_shows_the_committed_reports_summary():
    """README.md's claims table is the summary of results/REPRODUCTION.md, row for row."""
    readme, committed = ROOT / "README.md", ROOT / "results" / "REPRODUCTION.md"
    text = readme.read_text()
    block = text.split(report.README_BEGIN + "\n", 1)[1].split("\n" + report.README_END, 1)[0]
    assert block == report.summary_block(committed.read_text(), committed, readme)
    assert block.count("\n| [") == len(paper_claims.CLAIMS)


def test_a_replicate_on_the_searchs_seeds_is_marked(tmp_path):
    declared = write_run(tmp_path / "fig1-mnist-verdict", {ABRUPT: [0.5, 0.6, 0.4], GRADUAL: [0.9, 0.9, 0.9]})
    earlier = write_run(tmp_path / "study", {ABRUPT: [0.5, 0.5, 0.5], GRADUAL: [0.8, 0.9, 0.85]}, preset="study",
                        seeds=(0, 1, 2))
    text = report.render(catalog(question(search="fig1-cifar"), search_seeds={0, 1, 2}),
                         runs.load([declared, earlier]), tmp_path / "R.md", "cmd")
    assert "| study (seeds overlap the search) | output_interp Δ=0.5 − abrupt |" in text
