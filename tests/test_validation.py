"""Validation of values that parse but mean nothing: each refusal names the dotted field, and the
CLI turns it into exit status 2 before loading data or compiling anything."""

from __future__ import annotations

import dataclasses
import importlib
import typing

import pytest

from gradual_jax import experiments
from gradual_jax import cli
from gradual_jax.core import engine
from gradual_jax.envs import schedules
from gradual_jax.runner import build
from gradual_jax import config as config_lib
from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides, schema, validate

MITIGATION_STRENGTHS = ("l2", "l2_init", "shrink", "perturb", "redo_threshold", "redo_max_fraction", "spectral",
                        "cbp_rate", "cbp_maturity", "cbp_decay")
# a preset of each task family, to check the family × schedule table against
FAMILY_BASES = {"random_labels": ("fig1-mnist", "cpu"), "permuted_pixels": ("fig3-emnist", "cpu"),
                "random_seq2seq": ("fig2-seq2seq", "cpu"), "bigram_cipher": ("fig4-cipher", "cpu")}


def base(name: str = "fig1-mnist", preset: str = "cpu") -> ExperimentConfig:
    return experiments.get_config(name, preset)  # fig1-mnist cpu: random-label MNIST, 128/class, MLP


def refused(overrides: list[str], cfg: ExperimentConfig | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        validate(apply_overrides(cfg or base(), overrides))
    message = str(err.value)
    assert "\n" not in message
    return message


def float_fields(cls: type = ExperimentConfig, prefix: str = "") -> list[str]:
    """Dotted keys of every float (or tuple-of-float) field of the config tree."""
    keys = []
    for name, annotation in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(annotation):
            keys += float_fields(annotation, f"{prefix}{name}.")
        elif annotation is float or typing.get_args(annotation)[:1] == (float,):
            keys.append(f"{prefix}{name}")
    return keys


# --- 1. random labels have no test split ------------------------------------------------------

@pytest.mark.parametrize("test_per_class", [1, 100])
def test_random_labels_refuse_a_test_split(test_per_class):
    message = refused([f"data.test_per_class={test_per_class}"])
    assert "data.test_per_class" in message and "task.family" in message


def test_permuted_pixels_keep_their_test_split():
    validate(apply_overrides(base(), ["task.family=permuted_pixels", "sweep.schedules=abrupt,input_interp",
                                      "data.test_per_class=10", "metric=test_acc"]))


def test_random_labels_test_metric_names_the_family():
    message = refused(["metric=test_acc"])
    assert "metric=test_acc needs a test split" in message and "random_labels" in message


def test_no_preset_pairs_random_labels_with_a_test_split():
    for name in experiments.MODULES:
        if experiments.is_custom_runner(name):
            continue
        for preset in experiments.presets(name):
            for cfg in experiments.get_configs(name, preset).values():
                assert not (cfg.task.family == "random_labels" and cfg.data.test_per_class > 0), (name, preset)


# --- 2. schedule × family ---------------------------------------------------------------------

def test_family_schedule_table_covers_every_family():
    assert set(config_lib.FAMILY_SCHEDULES) == set(config_lib.FAMILIES)
    for allowed in config_lib.FAMILY_SCHEDULES.values():
        assert "abrupt" in allowed and set(allowed) <= set(schedules.NAMES)
    for family, allowed in config_lib.TEXT_SCHEDULES.items():
        assert allowed == config_lib.FAMILY_SCHEDULES[family]


@pytest.mark.parametrize("family,schedule", [(f, s) for f in FAMILY_BASES for s in schedules.NAMES])
def test_schedule_family_table_is_enforced(family, schedule):
    cfg = base(*FAMILY_BASES[family])
    assert cfg.task.family == family
    overrides = [f"sweep.schedules={','.join(dict.fromkeys(('abrupt', schedule)))}"]  # each schedule once
    if schedule in config_lib.FAMILY_SCHEDULES[family]:
        validate(apply_overrides(cfg, overrides))
    else:
        message = refused(overrides, cfg)
        assert message.startswith("sweep.schedules: ") and schedule in message and f"task.family={family}" in message


@pytest.mark.parametrize("family,schedule,reason", [
    ("permuted_pixels", "output_interp", "never move toward task t+1"),
    ("permuted_pixels", "output_mix", "never move toward task t+1"),
    ("random_labels", "input_interp", "input_interp needs a task family whose inputs change"),
])
def test_meaningless_image_schedules_say_why(family, schedule, reason):
    message = refused([f"task.family={family}", f"sweep.schedules=abrupt,{schedule}"])
    assert "sweep.schedules" in message and reason in message


# --- 3. dormant-fraction thresholds ------------------------------------------------------------

@pytest.mark.parametrize("overrides,parts", [
    # n = min(512, 128 × 10) = 512: τ = 0.01% needs 10,000 inputs, more than the 1,280 training images
    (["diagnostics.dormant_taus=0,0.0001"],
     ["τ=0.0001", "n ≥ 10000", "diagnostics.probe_size ≥ 10000", "data.train_per_class ≥ 1000", "n = 512"]),
    # τ = 0.1% needs 1,000 inputs; the training set has them, the probe does not
    (["diagnostics.dormant_taus=0.001"], ["τ=0.001", "diagnostics.probe_size ≥ 1000", "n = 512"]),
    # a big enough probe, capped by a small training set (50 × 10 = 500 images)
    (["diagnostics.dormant_taus=0.001", "diagnostics.probe_size=2000", "data.train_per_class=50"],
     ["data.train_per_class ≥ 100", "n = 500", "capped by the training set"]),
    (["model.name=crelu_mlp", "diagnostics.dormant_taus=0.001"], ["diagnostics.probe_size ≥ 1000"]),
    (["task.family=permuted_pixels", "sweep.schedules=abrupt,input_interp", "diagnostics.probe_size=64",
      "diagnostics.dormant_taus=0.01"], ["diagnostics.probe_size ≥ 100", "n = 64"]),
])
def test_dormant_tau_below_one_probe_input_is_refused(overrides, parts):
    message = refused(overrides)
    assert message.startswith("diagnostics.dormant_taus: ") and "as at τ = 0" in message
    for part in parts:
        assert part in message, (part, message)
    if "data.train_per_class ≥" not in " ".join(parts):
        assert "data.train_per_class ≥" not in message  # more data is not needed when the probe alone is short


@pytest.mark.parametrize("name,preset,overrides", [
    ("fig1-mnist", "cpu", ["diagnostics.dormant_taus=0,0.01"]),  # the default: 1% of 512 is 5 inputs
    ("fig1-mnist", "cpu", ["diagnostics.dormant_taus=0.001953125"]),  # exactly 1/512: τ·n = 1
    ("fig1-mnist", "cpu", ["diagnostics.dormant_taus=0.0001", "diagnostics.probe_size=10000",
                           "data.train_per_class=1000"]),  # the paper's τ with a 10,000-input probe
    ("fig1-mnist", "cpu", ["diagnostics.dormant_taus=0.0001", "diagnostics.enabled=false"]),
    ("fig1-cifar", "cpu", ["diagnostics.dormant_taus=0.0001"]),  # not an MLP: not checked
])
def test_meaningful_or_unused_dormant_taus_are_accepted(name, preset, overrides):
    validate(apply_overrides(base(name, preset), overrides))


# --- 4. seeds, strengths, optimiser, NaN --------------------------------------------------------

@pytest.mark.parametrize("overrides,field", [
    (["sweep.seeds=2147483648"], "sweep.seeds"),
    (["sweep.seeds=0,-1"], "sweep.seeds"),
    (["data.subset_seed=-1"], "data.subset_seed"),
    *[([f"mitigations.{name}={value}"], f"mitigations.{name}")
      for name in MITIGATION_STRENGTHS for value in ("-0.1", "nan", "inf")],
    (["mitigations.redo_max_fraction=1.5"], "mitigations.redo_max_fraction"),
    (["mitigations.cbp_decay=1.01"], "mitigations.cbp_decay"),
    (["optim.eps=0"], "optim.eps"),
    (["optim.eps=-1e-8"], "optim.eps"),
    (["optim.eps=inf"], "optim.eps"),
    (["optim.b1=1"], "optim.b1"),
    (["optim.b1=-0.1"], "optim.b1"),
    (["optim.b2=1"], "optim.b2"),
    (["optim.b2=-0.5"], "optim.b2"),
    (["optim.name=adamw", "optim.weight_decay=-0.01"], "optim.weight_decay"),
    (["optim.name=adamw", "optim.weight_decay=inf"], "optim.weight_decay"),
    (["diagnostics.redo_threshold=-1"], "diagnostics.redo_threshold"),
])
def test_out_of_range_numbers_are_refused(overrides, field):
    assert field in refused(overrides)


@pytest.mark.parametrize("key", float_fields())
def test_nan_is_refused_in_every_float_field(key):
    message = refused([f"{key}=nan"])
    assert message.startswith(key) and "finite" in message


@pytest.mark.parametrize("overrides", [
    ["optim.b1=0", "optim.b2=0"],
    ["optim.b1=0.999999", "optim.b2=0.999999", "optim.eps=1e-30"],
    ["optim.name=adamw", "optim.weight_decay=0"],
    ["sweep.seeds=0,2147483647", "data.subset_seed=0"],
    ["data.subset_seed=123456789012"],  # numpy's generator takes any integer >= 0
    [f"mitigations.{name}=0" for name in MITIGATION_STRENGTHS],
    ["mitigations.redo_max_fraction=1", "mitigations.cbp_decay=1", "mitigations.shrink=1.5"],
])
def test_boundary_values_are_accepted(overrides):
    validate(apply_overrides(base(), overrides))


def test_the_seed_bound_is_the_int32_bound():
    assert config_lib.MAX_SEED == 2**31 - 1


# --- the CLI refuses all of these before any data or compilation --------------------------------

@pytest.fixture
def no_compute(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise AssertionError("loaded data or compiled despite bad input")
    monkeypatch.setattr(engine, "make_task_fn", boom)
    monkeypatch.setattr(build, "prepare_data", boom)
    monkeypatch.setenv("GRADUAL_JAX_DATA_DIR", str(tmp_path / "empty"))


@pytest.mark.parametrize("overrides,field", [
    (["data.test_per_class=10"], "data.test_per_class"),  # 1
    (["task.family=permuted_pixels", "sweep.schedules=abrupt,output_interp"], "sweep.schedules"),  # 2
    (["diagnostics.dormant_taus=0,0.0001"], "diagnostics.dormant_taus"),  # 3
    (["sweep.seeds=2147483648"], "sweep.seeds"),  # 4
    (["data.subset_seed=-1"], "data.subset_seed"),
    (["mitigations.cbp_decay=nan"], "mitigations.cbp_decay"),
    (["optim.b2=1"], "optim.b2"),
    (["optim.eps=0"], "optim.eps"),
    (["protocol.epochs_per_task=3000000000"], "protocol.epochs_per_task"),  # past int32: would overflow
    (["protocol.epochs_per_task=100000000"], "protocol.epochs_per_task"),  # fits, but its steps do not
    (["task.num_tasks=2147483648"], "task.num_tasks"),
    (["model.hidden_sizes=16,99999999999"], "model.hidden_sizes"),
    (["sweep.deltas=1e-300"], "sweep.deltas"),
    (["sweep.deltas=0.00005"], "sweep.deltas"),
    (["sweep.seeds=0,0"], "sweep.seeds"),
    (["sweep.seeds=3,1,3"], "sweep.seeds"),
    (["sweep.deltas=0.5,0.5"], "sweep.deltas"),
    (["sweep.learning_rates=0.001,1e-3"], "sweep.learning_rates"),
    (["sweep.schedules=abrupt,abrupt"], "sweep.schedules"),
    (["sweep.seeds=0,1,"], "sweep.seeds"),  # an empty item is a typo, not a shorter list
    (["sweep.seeds=,0"], "sweep.seeds"),
    (["model.hidden_sizes=16,,16"], "model.hidden_sizes"),
])
def test_cli_refuses_with_exit_2(overrides, field, capsys, no_compute, tmp_path):
    argv = ["run", "fig1-mnist", "--preset", "cpu", "--out", str(tmp_path / "x")]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and field in err and "\n" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("override,field", [
    ("sweep.seeds=2147483648", "sweep.seeds"),
    ("data.source=tfds", "data.source"),
])
def test_cli_refuses_out_of_range_seeds_and_a_missing_tfds(override, field, tmp_path, capsys, monkeypatch):
    from gradual_jax import cli
    from gradual_jax.envs.data import sources
    monkeypatch.setattr(sources, "tfds_installed", lambda: False)
    assert cli.main(["run", "fig1-mnist", "--out", str(tmp_path / "x"), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and len(err.splitlines()) == 1 and not (tmp_path / "x").exists()


def test_a_method_needs_its_strengths_and_names_them():
    """The strengths have no defaults (they differ per model; the paper's live in the experiments):
    a method in sweep.methods with a strength unset is refused in one line naming the key."""
    import dataclasses

    from gradual_jax.config import ExperimentConfig, MitigationsConfig, SweepConfig

    cfg = ExperimentConfig(sweep=SweepConfig(methods=("none", "shrink_perturb")))
    with pytest.raises(config_lib.ConfigError) as err:
        config_lib.validate(cfg)
    message = str(err.value)
    assert message.startswith("mitigations.shrink is not set, but sweep.methods includes shrink_perturb")
    assert "\n" not in message and "MLP_MITIGATIONS" in message
    half = dataclasses.replace(cfg, mitigations=MitigationsConfig(shrink=0.9))
    with pytest.raises(config_lib.ConfigError, match="mitigations.perturb is not set"):
        config_lib.validate(half)
    config_lib.validate(dataclasses.replace(cfg, mitigations=MitigationsConfig(shrink=0.9, perturb=0.01)))
    config_lib.validate(ExperimentConfig())  # no method, no strength needed


def test_the_delta_floor_and_the_step_bound_leave_every_preset_valid():
    for name in experiments.MODULES:
        if experiments.is_custom_runner(name):
            continue
        for preset in experiments.presets(name):
            for cfg in experiments.get_configs(name, preset).values():
                validate(cfg)
    validate(apply_overrides(base(), [f"sweep.deltas={schema.MIN_DELTA}"]))  # the floor itself passes
    validate(apply_overrides(base(), ["sweep.seeds=0,2147483647", "data.subset_seed=123456789012"]))


@pytest.mark.parametrize("presets,shown", [("{'cpu': 42}", "int"), ("{'cpu': 'fig1-mnist'}", "str"),
                                           ("{'cpu': None}", "NoneType")])
def test_an_experiment_file_whose_preset_is_not_a_function_is_refused_in_one_line(tmp_path, capsys, presets,
                                                                                    shown):
    path = tmp_path / "my_exp.py"
    path.write_text(f"PRESETS = {presets}\n")
    assert cli.main(["show", f"{path}:cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: experiment file {path}: PRESETS['cpu'] is {shown}, not a function returning an "
                   "ExperimentConfig")


@pytest.mark.parametrize("out", ["", " "])
def test_an_empty_out_is_refused_before_any_work(out, capsys, no_compute, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--force-new"]):
        assert cli.main(["run", "fig1-mnist", "--out", out, *extra]) == 2
        assert capsys.readouterr().err.strip() == ("error: --out is empty; name the run's folder, e.g. "
                                                   "--out results/my-run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", [".", "..", "~", "HERE"])
def test_force_new_refuses_a_folder_that_is_no_runs_own(where, capsys, no_compute, tmp_path, monkeypatch):
    here = tmp_path / "work"
    here.mkdir()
    (here / "results.csv").write_text("precious\n")
    monkeypatch.chdir(here)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = str(here) if where == "HERE" else where
    assert cli.main(["run", "fig1-mnist", "--out", out, "--force-new"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --force-new deletes the checkpoints and results in --out") and "\n" not in err
    assert (here / "results.csv").read_text() == "precious\n"


def test_a_config_is_validated_once_until_a_registry_changes(monkeypatch):
    """The CLI checks every part before the first trains and the runner checks what it is
    given: the second check of the same object runs no step, unless something was registered
    or removed in between (which can change the answer)."""
    validate_lib = importlib.import_module("gradual_jax.config.validate")  # the module (the package exports the function)

    calls = []
    monkeypatch.setattr(validate_lib, "STEPS", (lambda cfg: calls.append(cfg),))
    cfg = config_lib.ExperimentConfig()
    assert validate_lib.validate(cfg) is cfg and validate_lib.validate(cfg) is cfg
    assert len(calls) == 1
    validate_lib.validate(config_lib.ExperimentConfig())  # an equal but other object: checked
    assert len(calls) == 2
    schedules.register(dataclasses.replace(schedules.get("abrupt"), name="once_check"))
    try:
        validate_lib.validate(cfg)  # a registry changed: checked again
        assert len(calls) == 3
    finally:
        schedules.unregister("once_check")
