"""The command line: errors before compilation, an end-to-end run, and the README's commands."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gradual_jax import cli
from gradual_jax.analysis import search
from gradual_jax.core import engine
from gradual_jax.runner import results

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--no-progress", "--set", "task.num_tasks=2", "--set", "sweep.seeds=0,1", "--set", "data.train_per_class=8",
        "--set", "protocol.epochs_per_task=2", "--set", "model.hidden_sizes=16", "--set", "protocol.batch_size=16",
        "--set", "diagnostics.hessian_iters=3"]




@pytest.fixture
def no_compile(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("compiled despite bad input")
    monkeypatch.setattr(engine, "make_task_fn", boom)


@pytest.mark.parametrize("argv,message", [
    (["run", "fig9", "--out", "X"], "unknown experiment 'fig9'; choose one of: fig1-mnist"),
    (["run", "fig1-mnist", "--preset", "huge", "--out", "X"], "unknown preset 'huge' for fig1-mnist; choose one of: paper, cpu"),
    (["run", "fig1-mnist", "--out", "X", "--set", "protocol.k=2"], "unknown config key 'protocol.k'"),
    (["run", "fig1-mnist", "--out", "X", "--set", "sweep.deltas=2"], "sweep.deltas: Δ=2.0 must lie in (0, 1]"),
    (["run", "fig1-mnist", "--out", "X", "--set", "protocol.transition_ratio=-1"], "protocol.transition_ratio"),
    (["run", "fig1-mnist", "--out", "X", "--set", "protocol.batch_size=9999"], "larger than the training set"),
    (["run", "fig3-emnist", "--preset", "paper", "--out", "X", "--set", "data.source=raw"],
     "emnist"),
])
def test_bad_input_exits_2_before_compiling(argv, message, capsys, no_compile, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADUAL_JAX_DATA_DIR", str(tmp_path / "empty"))
    argv = [str(tmp_path / "out") if a == "X" else a for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fig1-mnist" in out and "fig3-emnist" in out and "paper, cpu" in out


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_tiny_run_writes_the_documented_table(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "fig3-emnist", "--preset", "cpu", "--out", str(out), *TINY]) == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns[:len(results.COLUMNS)]) == list(results.COLUMNS)
    diagnostics = {"dormant_fraction_tau0", "redo_dormant_fraction", "effective_rank",
                   "srank", "max_hessian_eigenvalue", "representation_change", "distance_from_init",
                   "weight_norm", "grad_norm", "probe_loss"}
    assert set(table.columns[len(results.COLUMNS):]) == diagnostics
    assert table[sorted(diagnostics)].notna().all().all()
    assert len(table) == 2 * 2 * 2  # (abrupt + input_interp) × 2 seeds × 2 tasks
    assert set(table["schedule"]) == {"abrupt", "input_interp"}
    assert table["dataset"].str.startswith("mnist").all()  # the cpu preset is permuted MNIST
    assert table[["online_train_acc", "train_acc", "test_acc"]].notna().all().all()
    assert table["finite"].all()
    assert table.loc[table.schedule == "abrupt", "delta"].isna().all()
    # samples seen at readout: (task·(1+k)E + readout epoch + 1)·N with N = 80, E = 2, k = 1
    abrupt = table[(table.schedule == "abrupt") & (table.seed == 0)].sort_values("task")
    gradual = table[(table.schedule == "input_interp") & (table.seed == 0)].sort_values("task")
    assert abrupt["samples_seen"].tolist() == [4 * 80, 8 * 80]
    assert gradual["samples_seen"].tolist() == [2 * 80, 6 * 80]
    meta = json.loads((out / "config.json").read_text())
    assert meta["status"] == "finished"
    assert meta["config"]["name"] == "fig3-emnist" and meta["config"]["protocol"]["epochs_per_task"] == 2
    assert meta["environment"]["versions"]["jax"] and meta["environment"]["platform"] == "cpu"
    prov = meta["provenance"]
    assert prov["command"] == shlex.join(["gradual-jax", "run", "fig3-emnist", "--preset", "cpu", "--out", str(out),
                                          *TINY])
    assert prov["xla_flags"] == os.environ.get("XLA_FLAGS", "")
    assert prov["commit"] is None or (len(prov["commit"]) == 40 and isinstance(prov["dirty"], bool))
    umask = os.umask(0)
    os.umask(umask)
    readable = 0o666 & ~umask  # what any new file gets (0644 under the usual umask), not mkstemp's 0600
    assert all((out / name).stat().st_mode & 0o777 == readable for name in ("results.csv", "config.json"))
    assert "test_acc" in capsys.readouterr().out
    # the same command again resumes from the final checkpoint: nothing to redo, nothing lost
    assert cli.main(["run", "fig3-emnist", "--preset", "cpu", "--out", str(out), *TINY]) == 0
    assert "resuming from the checkpoint after task 1" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_nonfinite_loss_stops_with_lane_and_task(tmp_path, capsys):
    out = tmp_path / "nan"
    argv = ["run", "fig1-mnist", "--preset", "cpu", "--out", str(out), *TINY,
            "--set", "sweep.learning_rates=0.001,1e38", "--set", "sweep.schedules=abrupt",
            "--set", "sweep.seeds=0", "--set", "run.on_nonfinite=stop"]
    assert cli.main(argv) == 3
    captured = capsys.readouterr()
    assert "non-finite training loss in lane 1 (abrupt, lr=1e+38, seed=0) during task 0" in captured.out
    table = pd.read_csv(out / "results.csv")
    assert table["task"].max() == 0 and table["finite"].tolist() == [True, False]


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_cpu_preset_abrupt_arm_records_final_accuracy(tmp_path):
    """Many abrupt tasks at the fig1-mnist cpu preset (one seed): the final train accuracy is
    recorded for every task. Its value is the experiment's finding, so only finiteness and
    range are asserted."""
    out = tmp_path / "abrupt"
    argv = ["run", "fig1-mnist", "--preset", "cpu", "--out", str(out), "--no-progress",
            "--set", "sweep.schedules=abrupt", "--set", "sweep.seeds=0", "--set", "diagnostics.hessian=false"]
    assert cli.main(argv) == 0
    table = pd.read_csv(out / "results.csv")
    from gradual_jax import experiments
    tasks = experiments.get_config("fig1-mnist", "cpu").task.num_tasks
    assert table["task"].tolist() == list(range(tasks))
    final = table.iloc[-1]
    assert 0.0 <= final["train_acc"] <= 1.0 and 0.0 <= final["online_train_acc"] <= 1.0
    assert table["finite"].all()
    print(f"fig1-mnist cpu, abrupt, seed 0: train accuracy task 0 {table['train_acc'].iloc[0]:.3f}, "
          f"task {tasks - 1} {final['train_acc']:.3f}")


def test_checksum_mismatch_exits_2(tmp_path, capsys, no_compile):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"not the real file")
    argv = ["run", "fig1-mnist", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path),
            "--set", "data.source=raw"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "md5" in err.lower()


def readme_commands() -> list[str]:
    """Lines of the README's shell code blocks (```bash, ```sh, ```console or a bare ```)."""
    commands, language = [], None
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            language = line[3:].strip() if language is None else None
            continue
        if language in ("bash", "sh", "console", "") and line.strip() and not line.strip().startswith("#"):
            commands.append(line.strip())
    return commands


def test_readme_starts_with_install_and_test_commands():
    commands = readme_commands()
    assert any(c.startswith("pip install -e") for c in commands[:3])
    first_two = "\n".join(readme_commands()[:2])
    assert "gradual-jax run fig1-mnist --preset cpu" in first_two
    assert "pytest" in first_two
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command.split("&&")[-1].strip() in ci


def test_every_readme_cli_command_parses_and_resolves():
    """Each documented `gradual-jax ...` invocation parses and its config validates."""
    parser = cli.build_parser()
    seen = 0
    for line in readme_commands():
        for part in line.split("&&"):
            if not part.strip().startswith("gradual-jax "):
                continue
            words = shlex.split(part.strip())
            args = parser.parse_args(words[1:])
            if args.command in ("run", "show"):
                cli._resolve(args)
            if args.command == "search":  # every candidate it would run validates
                cli._experiment_and_preset(args)
                search.configs(args.experiment, args.preset, search.candidates(args.experiment))
            seen += 1
    assert seen >= 4


@pytest.mark.slow
def test_a_reader_that_goes_away_is_not_an_error():
    """`gradual-jax list | head -1`: the pipe closes before everything is written."""
    proc = subprocess.Popen([sys.executable, "-m", "gradual_jax.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # the reader is gone before the command writes anything
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert b"BrokenPipeError" not in stderr and b"Traceback" not in stderr, stderr.decode()


def test_version_show_json_and_bracketed_lists(capsys):
    import importlib.metadata
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"gradual-jax {importlib.metadata.version('gradual-jax')}"
    assert cli.main(["show", "fig1-mnist", "--json", "--set", "model.hidden_sizes=[32, 16]",
                     "--set", "sweep.seeds=(0,1)"]) == 0
    shown = json.loads(capsys.readouterr().out)  # JSON only: nothing else on stdout
    assert shown[""]["config"]["model"]["hidden_sizes"] == [32, 16]
    assert len(shown[""]["lanes"]) == 2 * 3  # 2 seeds × (abrupt + output interpolation at 2 Δ)
    assert [lane["seed"] for lane in shown[""]["lanes"][:2]] == [0, 1]


def test_show_keys_lists_what_applies_to_the_model_and_family(capsys):
    assert cli.main(["show", "fig1-mnist", "--keys"]) == 0
    mlp = capsys.readouterr().out
    assert "model.hidden_sizes" in mlp and "sweep.schedules" in mlp
    assert "model.d_model" not in mlp and "text." not in mlp  # T5 and text keys do not apply to an MLP
    assert cli.main(["show", "fig2-seq2seq", "--keys"]) == 0
    t5 = capsys.readouterr().out
    assert "model.d_model" in t5 and "text.input_words" in t5 and "model.hidden_sizes" not in t5


def test_show_prints_only_the_sections_that_apply(capsys):
    assert cli.main(["show", "fig1-mnist", "--json"]) == 0
    config = json.loads(capsys.readouterr().out)[""]["config"]
    assert "text" not in config and set(config["model"]) == {"name", "hidden_sizes"}


MY_EXPERIMENT = '''
"""My own experiment: Fig. 1's cpu setting with a coarser and a finer Δ."""
import dataclasses
from gradual_jax import experiments
from gradual_jax.config import SweepConfig

DESCRIPTION = "Fig. 1 at two other step sizes"


def cpu():
    cfg = experiments.get_config("fig1-mnist", "cpu")
    return dataclasses.replace(cfg, name="my-exp", preset="cpu", description=DESCRIPTION,
                               sweep=dataclasses.replace(cfg.sweep, deltas=(0.25, 0.05)))


def tiny():
    cfg = cpu()
    return dataclasses.replace(cfg, preset="tiny", sweep=SweepConfig(seeds=(0,), schedules=("abrupt", "output_interp"),
                                                                   deltas=(0.25,), learning_rates=(1e-3,)))


PRESETS = {"cpu": cpu, "tiny": tiny}
'''


def test_an_experiment_from_a_file_with_its_preset(tmp_path, capsys):
    file = tmp_path / "my_exp.py"
    file.write_text(MY_EXPERIMENT)
    assert cli.main(["show", f"{file}:tiny", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)[""]
    assert shown["config"]["name"] == "my-exp" and shown["config"]["preset"] == "tiny"
    assert [lane["schedule"] for lane in shown["lanes"]] == ["abrupt", "output_interp"]
    assert cli.main(["show", str(file), "--json"]) == 0  # the default preset, cpu
    assert json.loads(capsys.readouterr().out)[""]["config"]["sweep"]["deltas"] == [0.25, 0.05]


@pytest.mark.parametrize("argv,message", [
    (["show", "{dir}/nope.py"], "does not exist"),
    (["show", "{dir}/empty.py"], "defines no PRESETS"),
    (["show", "{dir}/broken.py"], "failed to import: ZeroDivisionError"),
    (["show", "{dir}/my_exp.py:huge"], "unknown preset 'huge'"),
    (["show", "{dir}/my_exp.py:tiny", "--preset", "cpu"], "names preset 'tiny' but --preset says 'cpu'"),
])
def test_a_bad_experiment_file_is_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "my_exp.py").write_text(MY_EXPERIMENT)
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "broken.py").write_text("1 / 0\n")
    assert cli.main([a.format(dir=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_an_experiment_from_a_file_runs(tmp_path):
    file = tmp_path / "my_exp.py"
    file.write_text(MY_EXPERIMENT)
    out = tmp_path / "out"
    assert cli.main(["run", f"{file}:tiny", "--out", str(out), *TINY]) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["experiment"]) == {"my-exp"} and set(table["schedule"]) == {"abrupt", "output_interp"}
    made_by = json.loads((out / "config.json").read_text())["provenance"]
    assert made_by["command"].split()[2] == f"{file}:tiny" and made_by["experiment_file"] == str(file.resolve())


def test_a_run_of_an_experiment_file_records_the_file(tmp_path, monkeypatch):
    from gradual_jax.runner import results
    made_by = results.provenance("gradual-jax run my_exp.py:tiny --out X", experiment_file="my_exp.py")
    assert made_by["experiment_file"] == str(Path("my_exp.py").resolve())
    assert "experiment_file" not in results.provenance("gradual-jax run fig1-mnist --out X")
