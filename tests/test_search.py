"""``gradual-jax search``: the abrupt-arm-only search for a setting in which plasticity is lost."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradual_jax import cli
from gradual_jax import config as config_lib
from gradual_jax.analysis import search

TINY = ["task.num_tasks=2", "sweep.seeds=0,1", "data.train_per_class=4", "protocol.epochs_per_task=1",
        "protocol.batch_size=8", "model.hidden_sizes=8"]


def write_experiment(tmp_path: Path, candidates: str, name: str = "my_search") -> str:
    """A researcher's experiment file: fig1-mnist's cpu preset at tiny size, with a SEARCH
    (a new ``name`` for each file: an experiment file is imported once per process)."""
    file = tmp_path / f"{name}.py"
    file.write_text("\n".join([
        "from gradual_jax import experiments",
        "from gradual_jax import config",
        "from gradual_jax.analysis.search import Candidate",
        f"PRESETS = {{'cpu': lambda: config.apply_overrides(experiments.get_config('fig1-mnist', 'cpu'), {TINY!r})}}",
        f"SEARCH = ({textwrap.dedent(candidates).strip()})",
    ]) + "\n")
    return str(file)


def fake_run(run_dir: Path, first: list[float], final: list[float], *, status: str = "finished") -> None:
    """A finished abrupt-only run of 4 tasks: task 0 at ``first[seed]``, tasks 1–3 (the final
    window of 4 tasks) at ``final[seed]`` ± 0.01 (mean exactly ``final[seed]``)."""
    rows = []
    for seed, (a, b) in enumerate(zip(first, final)):
        for task, value in enumerate([a, b - 0.01, b, b + 0.01]):
            rows.append(dict(lane=seed, seed=seed, schedule="abrupt", delta=math.nan, learning_rate=1e-3,
                             method="none", task=task, online_train_acc=value))
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "config.json").write_text(json.dumps({"status": status, "train_seconds": 90.0, "config": {}}))


CANDIDATES = """
    Candidate("flat", ("protocol.epochs_per_task=2",), "no change in accuracy"),
    Candidate("falls", ("protocol.epochs_per_task=3",), "accuracy falls"),
    Candidate("falls-too", ("protocol.epochs_per_task=4",), "falls as well, but later in the order"),
    Candidate("rises", ("protocol.epochs_per_task=5",), "accuracy rises"),
    Candidate("untried", ("protocol.epochs_per_task=6",), "never run"),
"""


def test_table_reads_each_candidate_and_chooses_the_first_that_loses(tmp_path):
    experiment = write_experiment(tmp_path, CANDIDATES)
    out = tmp_path / "search"
    fake_run(out / "flat", first=[0.9, 0.8, 0.85], final=[0.91, 0.79, 0.85])
    fake_run(out / "falls", first=[0.9, 0.8, 0.85], final=[0.5, 0.45, 0.55])
    fake_run(out / "falls-too", first=[0.9, 0.8, 0.85], final=[0.6, 0.5, 0.55])
    fake_run(out / "rises", first=[0.5, 0.4, 0.45], final=[0.9, 0.85, 0.8])
    frame = search.table(experiment, "cpu", out).set_index("candidate")
    assert list(frame.index) == ["flat", "falls", "falls-too", "rises", "untried"]  # the declared order

    drops = np.array([0.9 - 0.5, 0.8 - 0.45, 0.85 - 0.55])  # by hand: first task − final-window mean, per seed
    half = 4.302652729911275 * drops.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 d.o.f.)
    row = frame.loc["falls"]
    assert row["drop"] == pytest.approx(drops.mean()) and row["drop_ci95"] == pytest.approx(half)
    assert row["first"] == pytest.approx(0.85) and row["final"] == pytest.approx(0.5)
    assert (row["seeds"], row["drop_positive"], row["window"]) == (3, 3, "tasks 1–3")
    assert [frame.loc[c, "abrupt_arm"] for c in ("flat", "falls", "falls-too", "rises")] == [
        "no loss shown", "loses", "loses", "gains"]
    assert frame["chosen"].tolist() == [False, True, False, False, False]
    assert frame.loc["untried", "status"] == "not run"

    text = search.write(experiment, "cpu", out).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == 5 and "**yes**" in rows[1] and "**yes**" not in "".join(rows[:1] + rows[2:])
    for name, epochs in (("flat", 2), ("untried", 6)):  # every candidate's command, tried or not
        assert (f"gradual-jax run {experiment} --preset cpu --set protocol.epochs_per_task={epochs} "
                f"--set sweep.schedules=abrupt --set sweep.methods=none --set sweep.mitigate_gradual=false "
                f"--out {out / name}") in text
    assert pd.read_csv(out / "search.csv")["candidate"].tolist() == list(frame.index)


def abrupt_frame(curves: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([dict(seed=seed, task=task, schedule="abrupt", online_train_acc=value)
                         for seed, curve in curves.items() for task, value in enumerate(curve)])


def test_best_window_is_the_earlier_window_of_highest_seed_mean():
    # 10 tasks: final window tasks 7-9 (width 3), earlier windows start at 0 … 4
    curves = {0: [0.0, 0.2, 0.4, 0.6, 0.5, 0.3, 0.2, 0.1, 0.0, 0.0],
              1: [0.0, 0.1, 0.5, 0.4, 0.7, 0.2, 0.1, 0.0, 0.0, 0.1]}
    window, by_seed = search.best_window(abrupt_frame(curves), "online_train_acc")
    # window means by hand: 0-2 0.2, 1-3 0.367, 2-4 0.517, 3-5 0.45, 4-6 0.333
    assert window == range(2, 5)
    np.testing.assert_allclose(by_seed.to_numpy(), [0.5, 1.6 / 3])


@pytest.mark.parametrize("tasks,expected", [(4, range(0, 1)), (5, range(0, 2)), (6, range(0, 3))])
def test_best_window_narrows_when_few_tasks_precede_the_final_one(tasks, expected):
    # a falling curve: the best window is the earliest that fits before the final 3 tasks
    window, _ = search.best_window(abrupt_frame({0: list(np.linspace(1, 0, tasks)), 1: [0.5] * tasks}),
                                   "online_train_acc")
    assert window == expected


def test_a_loss_after_a_first_task_that_learned_nothing_is_found(tmp_path):
    """The T5 shape: 0 on the first task, a rise, a fall back to 0. From the first task the drop
    is 0 (no loss); from the best earlier window it is the rise, and the arm loses."""
    curves = {0: [0.0, 0.15, 0.11, 0.19, 0.14, 0.19, 0.12, 0.08, 0.02, 0.03, 0.0, 0.03, 0.0, 0.0, 0.0, 0.0],
              1: [0.0, 0.10, 0.20, 0.23, 0.16, 0.15, 0.06, 0.06, 0.03, 0.02, 0.02, 0.0, 0.03, 0.0, 0.0, 0.0],
              2: [0.0, 0.05, 0.16, 0.24, 0.21, 0.19, 0.07, 0.14, 0.09, 0.06, 0.04, 0.03, 0.0, 0.0, 0.0, 0.0]}
    frame = abrupt_frame(curves).assign(lane=lambda f: f["seed"], delta=math.nan, learning_rate=1e-3, method="none")
    out = tmp_path / "search"
    (out / "rise-and-fall").mkdir(parents=True)
    frame.to_csv(out / "rise-and-fall" / "results.csv", index=False)
    (out / "rise-and-fall" / "config.json").write_text(json.dumps({"status": "finished", "config": {}}))
    file = write_experiment(tmp_path, 'Candidate("rise-and-fall", ("protocol.epochs_per_task=2",), ""),', "t5_shape")
    row = search.table(file, "cpu", out).iloc[0]
    # by hand: window means 1-3 0.159, 2-4 0.182, 3-5 0.189 (the highest), 4-6 0.143; final window 13-15 all 0
    assert row["best_window"] == "tasks 3–5" and row["first"] == 0.0 and row["final"] == 0.0
    per_seed = np.array([0.19 + 0.14 + 0.19, 0.23 + 0.16 + 0.15, 0.24 + 0.21 + 0.19]) / 3
    assert row["drop"] == pytest.approx(per_seed.mean())
    assert row["abrupt_arm"] == "loses" and bool(row["chosen"])


def test_unfinished_runs_are_listed_but_not_judged(tmp_path):
    experiment = write_experiment(tmp_path, CANDIDATES)
    out = tmp_path / "search"
    fake_run(out / "falls", first=[0.9, 0.8, 0.85], final=[0.5, 0.45, 0.55], status="running")
    frame = search.table(experiment, "cpu", out).set_index("candidate")
    assert frame.loc["falls", "status"] == "running" and pd.isna(frame.loc["falls", "abrupt_arm"])
    assert not frame["chosen"].any()


def test_every_candidate_trains_the_abrupt_arm_only(tmp_path):
    experiment = write_experiment(tmp_path, CANDIDATES)
    cfgs = search.configs(experiment, "cpu", search.candidates(experiment))
    assert [c.protocol.epochs_per_task for c in cfgs] == [2, 3, 4, 5, 6]
    for cfg in cfgs:
        assert cfg.sweep.schedules == ("abrupt",) and cfg.sweep.methods == ("none",)


def test_bad_input_is_refused_before_any_work(tmp_path, capsys):
    assert cli.main(["search", "fig1-mnist", "--out", str(tmp_path / "a")]) == cli.EXIT_USAGE
    assert "fig1-mnist declares no SEARCH; experiments with one: fig1-cifar, fig2-seq2seq, fig4-cipher" in \
        capsys.readouterr().err
    experiment = write_experiment(tmp_path, CANDIDATES)
    assert cli.main(["search", experiment, "--out", str(tmp_path / "b"), "--only", "nope"]) == cli.EXIT_USAGE
    assert "--only nope: not a candidate" in capsys.readouterr().err
    bad = write_experiment(tmp_path, 'Candidate("ok", ()), Candidate("bad", ("protocol.epochs_per_task=0",)),',
                           "bad_search")
    assert cli.main(["search", bad, "--out", str(tmp_path / "c")]) == cli.EXIT_USAGE
    assert "search candidate 'bad': protocol.epochs_per_task" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing ran, not even the valid candidate
    dupes = write_experiment(tmp_path, 'Candidate("x", ()), Candidate("x", ()),', "dupes_search")
    with pytest.raises(config_lib.ConfigError, match="unique folder names"):
        search.candidates(dupes)


@pytest.mark.slow
def test_search_runs_candidates_resumably_and_records_their_commands(tmp_path, capsys):
    experiment = write_experiment(tmp_path, 'Candidate("e1", ()), Candidate("e2", ("protocol.epochs_per_task=2",)),',
                                  "run_search")
    out = tmp_path / "search"
    assert cli.main(["search", experiment, "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "search.csv").set_index("candidate")
    assert frame["status"].tolist() == ["finished", "finished"] and frame["seeds"].tolist() == [2, 2]
    for name in ("e1", "e2"):
        meta = json.loads((out / name / "config.json").read_text())
        assert meta["provenance"]["command"] == frame.loc[name, "command"]
        assert set(pd.read_csv(out / name / "results.csv")["schedule"]) == {"abrupt"}
    capsys.readouterr()
    assert cli.main(["search", experiment, "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("finished earlier") == 2


def test_a_named_search_sits_beside_the_first_and_its_seeds_are_held_out_too(tmp_path, capsys):
    file = tmp_path / "two_searches.py"
    file.write_text(Path(write_experiment(tmp_path, CANDIDATES, "first_only")).read_text()
                    + "SEARCHES = {'later': (Candidate('wide', ('model.hidden_sizes=16', 'sweep.seeds=7,8')),)}\n")
    experiment = str(file)
    assert [c.name for c in search.candidates(experiment)] == ["flat", "falls", "falls-too", "rises", "untried"]
    assert [c.name for c in search.candidates(experiment, "later")] == ["wide"]
    from gradual_jax import catalog
    assert catalog.search_seeds(experiment) == {0, 1, 7, 8}  # TINY's seeds 0, 1 and the later search's
    assert cli.main(["search", experiment, "--search", "nope", "--out", str(tmp_path / "x")]) == cli.EXIT_USAGE
    assert "--search 'nope'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert cli.main(["search", experiment, "--search", "later", "--out", str(tmp_path / "later"),
                     "--table-only"]) == 0
    frame = pd.read_csv(tmp_path / "later" / "search.csv")
    assert frame["candidate"].tolist() == ["wide"] and frame["search"].tolist() == ["later"]
    assert "# Search: " in (tmp_path / "later" / "search.md").read_text().splitlines()[0]
    assert "`later`" in (tmp_path / "later" / "search.md").read_text().splitlines()[0]


@pytest.mark.parametrize("experiment,name", [("fig1-cifar", ""), ("fig1-cifar", "tasks32"), ("fig2-seq2seq", ""),
                                             ("fig4-cipher", "")])
def test_the_figures_searches_validate_and_keep_model_and_protocol(experiment, name):
    """Every declared candidate resolves from the cpu preset, trains the abrupt arm only and
    changes sizes only: the model family, the optimizer, k and the batch size stay the preset's."""
    from gradual_jax import experiments

    base = experiments.get_config(experiment, "cpu")
    cfgs = search.configs(experiment, "cpu", search.candidates(experiment, name))
    assert len(cfgs) >= 4
    for cfg in cfgs:
        assert cfg.sweep.schedules == ("abrupt",) and len(cfg.sweep.seeds) >= 3
        assert (cfg.model.name, cfg.optim, cfg.protocol.transition_ratio, cfg.protocol.batch_size) == (
            base.model.name, base.optim, base.protocol.transition_ratio, base.protocol.batch_size)


RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.mark.parametrize("experiment,schedule", [("fig1-cifar", "output_interp"), ("fig2-seq2seq", "task_sampling")])
def test_the_study_preset_is_the_committed_searchs_chosen_setting(experiment, schedule):
    """The verdict preset trains the sizes of the candidate the committed search chose (the
    table read afresh from the committed runs, not only the stored csv), with both arms."""
    from gradual_jax import experiments

    folder = RESULTS / f"{experiment}-search"
    stored = pd.read_csv(folder / search.CSV_FILE)
    fresh = search.table(experiment, "cpu", folder)
    assert list(fresh.loc[fresh["chosen"], "candidate"]) == list(stored.loc[stored["chosen"], "candidate"])
    (chosen,) = fresh.loc[fresh["chosen"], "candidate"]
    (candidate,) = [c for c in search.candidates(experiment) if c.name == chosen]
    study = config_lib.validate(experiments.get_config(experiment, "study"))
    cpu, flat = config_lib.flatten(config_lib.to_dict(experiments.get_config(experiment, "cpu"))), \
        config_lib.flatten(config_lib.to_dict(study))
    sizes = dict(o.split("=", 1) for o in candidate.overrides if not o.startswith("sweep."))
    assert sizes
    for key, text in sizes.items():
        assert flat[key] == config_lib.parse_value(text, type(cpu[key]), key) != cpu[key]
    unchanged = {k for k in cpu if not k.startswith("sweep.") and k not in sizes and k != "preset"}
    assert {k: flat[k] for k in unchanged} == {k: cpu[k] for k in unchanged}
    assert set(study.sweep.schedules) == {"abrupt", schedule} and len(study.sweep.seeds) >= 5
    assert len(study.sweep.deltas) == 2


def test_the_resnet_verdict_runs_train_the_later_searchs_choice_on_fresh_seeds():
    """The ``tasks32`` search's chosen candidate (read afresh from its committed runs), its
    learning rate included, with its seeds replaced by 8 that no search trains; the arms split
    over groups, each group run in two halves of 4 seeds, each arm and seed in exactly one run."""
    from gradual_jax import catalog, experiments
    from gradual_jax.runner import sweep as sweep_lib

    fresh = search.table("fig1-cifar", "cpu", RESULTS / "fig1-cifar-search-tasks32", "tasks32")
    (chosen,) = fresh.loc[fresh["chosen"], "candidate"]
    (candidate,) = [c for c in search.candidates("fig1-cifar", "tasks32") if c.name == chosen]
    setting = [o for o in candidate.overrides if not o.startswith("sweep.seeds=")]
    assert any(o.startswith("sweep.learning_rates=") for o in setting)
    expected = config_lib.flatten(config_lib.to_dict(
        config_lib.apply_overrides(experiments.get_config("fig1-cifar", "cpu"), setting)))
    groups = ["verdict", "verdict-methods-sp-redo", "verdict-methods-spectral-l2", "verdict-coarse-l2init"]
    presets = {f"{g}-seeds{h}" for g in groups for h in ("10-13", "14-17")}
    assert {p for p in catalog.presets("fig1-cifar") if p.startswith("verdict")} == presets
    lanes_of = []
    for preset in sorted(presets):
        cfg = config_lib.validate(experiments.get_config("fig1-cifar", preset))
        assert cfg.preset == preset
        flat = config_lib.flatten(config_lib.to_dict(cfg))
        for key in (o.split("=", 1)[0] for o in setting):
            assert flat[key] == expected[key], key
        lanes = sweep_lib.expand(cfg.sweep)
        assert len(lanes) <= 8 and len(cfg.sweep.seeds) == 4
        lanes_of += [(lane.schedule, lane.delta, lane.method, lane.seed) for lane in lanes]
    assert len(lanes_of) == len(set(lanes_of)) == 8 * 8  # 8 arms × 8 seeds, each lane in one run
    arms = {lane[:3] for lane in lanes_of}
    assert len(arms) == 8  # abrupt, Δ = 0.05 and 0.5, five mitigations
    seeds = {lane[3] for lane in lanes_of}
    assert len(seeds) == 8 and not seeds & catalog.search_seeds("fig1-cifar")
