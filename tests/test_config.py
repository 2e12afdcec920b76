"""Config overrides and validation: every bad input is a one-line error naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from gradual_jax import experiments
from gradual_jax import config as config_lib
from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides, validate


def base() -> ExperimentConfig:
    return experiments.get_config("fig1-mnist", "cpu")


def test_overrides_parse_to_field_types():
    cfg = apply_overrides(base(), ["sweep.seeds=0,1,2", "sweep.deltas=0.5,0.25", "protocol.batch_size=32",
                                   "protocol.transition_ratio=1", "data.download=true", "data.data_dir=none",
                                   "model.hidden_sizes=64,32"])
    assert cfg.sweep.seeds == (0, 1, 2)
    assert cfg.sweep.deltas == (0.5, 0.25)
    assert cfg.protocol.batch_size == 32 and cfg.protocol.transition_ratio == 1.0
    assert cfg.data.download is True and cfg.data.data_dir is None
    assert cfg.model.hidden_sizes == (64, 32)
    validate(cfg)


@pytest.mark.parametrize("override,message", [
    ("protocol.batchsize=3", "unknown config key 'protocol.batchsize'; allowed in protocol: epochs_per_task"),
    ("nonsense=3", "allowed in the top level"),
    ("protocol=3", "protocol is a section"),
    ("protocol.batch_size=abc", "protocol.batch_size: expected an integer"),
    ("data.download=maybe", "expected a boolean"),
    ("sweep.deltas=0.5,x", "sweep.deltas: expected a number"),
    ("noequals", "expected KEY=VALUE"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        apply_overrides(base(), [override])


@pytest.mark.parametrize("override,field", [
    ("sweep.deltas=0", "sweep.deltas"),
    ("sweep.deltas=1.5", "sweep.deltas"),
    ("sweep.deltas=0.3", "sweep.deltas"),
    ("protocol.transition_ratio=-1", "protocol.transition_ratio"),
    ("protocol.transition_ratio=0.01", "k·E"),
    ("protocol.batch_size=100000", "protocol.batch_size=100000 is larger than the training set"),
    ("protocol.batch_size=0", "protocol.batch_size"),
    ("data.dataset=imagenet", "data.dataset='imagenet' is not allowed; choose one of: mnist, emnist_balanced"),
    ("data.source=web", "data.source"),
    ("task.family=rotations", "task.family"),
    ("sweep.schedules=abrupt,smooth", "sweep.schedules='smooth' is not allowed; choose one of: abrupt"),
    ("sweep.schedules=input_interp", "input_interp needs a task family whose inputs change"),
    ("sweep.learning_rates=-1", "sweep.learning_rates"),
    ("sweep.seeds=-3", "sweep.seeds"),
    ("task.num_tasks=0", "task.num_tasks"),
    ("metric=test_acc", "metric=test_acc needs a test split"),
    ("optim.weight_decay=0.1", "optim.weight_decay"),
    ("run.on_nonfinite=ignore", "run.on_nonfinite"),
])
def test_validation_names_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        validate(apply_overrides(base(), [override]))
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_types_in_code_configs_are_caught():
    cfg = dataclasses.replace(base(), sweep=dataclasses.replace(base().sweep, seeds=[0, 1]))
    with pytest.raises(ConfigError, match="sweep.seeds"):
        validate(cfg)


def test_round_trip_through_dict():
    cfg = base()
    assert config_lib.from_dict(config_lib.to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", list(experiments.MODULES))
def test_every_experiment_preset_validates(name):
    presets = experiments.presets(name)
    assert {"paper", "cpu"} <= set(presets)
    if experiments.is_custom_runner(name):
        return
    for preset in presets:
        parts = experiments.get_configs(name, preset)
        for cfg in parts.values():
            validate(cfg)
            assert cfg.name == name and cfg.preset in (preset, "paper", "cpu")


def test_fig5_sweeps_every_delta_in_both_parts():
    for preset in ("paper", "cpu"):
        parts = experiments.get_configs("fig5-granularity", preset)
        assert list(parts) == ["trainability", "generalizability"]
        assert parts["trainability"].sweep.schedules == ("abrupt", "output_interp")
        assert parts["generalizability"].sweep.schedules == ("abrupt", "input_interp")
        for cfg in parts.values():
            assert cfg.sweep.deltas == (1.0, 0.5, 0.25, 0.1, 0.05) and cfg.preset == preset


def test_paper_presets_use_paper_numbers():
    mnist = experiments.get_config("fig1-mnist", "paper")
    assert (mnist.protocol.epochs_per_task, mnist.protocol.transition_ratio, mnist.protocol.batch_size) == (80, 2, 64)
    assert mnist.sweep.deltas == (0.5,) and mnist.data.train_per_class == 512 and mnist.task.num_tasks == 100
    emnist = experiments.get_config("fig3-emnist", "paper")
    assert (emnist.protocol.epochs_per_task, emnist.protocol.transition_ratio, emnist.protocol.batch_size) == (100, 1, 400)
    assert emnist.sweep.deltas == (0.05,) and emnist.data.dataset == "emnist_balanced"
    assert (emnist.data.train_per_class, emnist.data.test_per_class) == (1000, 200)
