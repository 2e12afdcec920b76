"""A text task family written outside the package joins through one registry line and trains end to end.

``docs/examples/reversed_copy.py`` registers reversed copy (random words in, the same words in
reverse order out). Here its pairs are checked against the rule worked out by hand through the
tokenizer, the config asks the registry what the family has (schedules, test split, models),
the runner builds its problem from the registered ``make``, and a tiny T5 run through the
command line trains it.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from gradual_jax import experiments
from gradual_jax.analysis import runs
from gradual_jax.config import ConfigError, apply_overrides, to_dict, validate
from gradual_jax.envs import families
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.runner import build
from tests.conftest import assert_readme_shows, example_fixture, run_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "reversed_copy.py"
NAME = "reversed_copy"
TINY = ["task.num_tasks=2", "sweep.seeds=0", "text.num_train=16", "text.bleu_examples=8", "text.word_len=2",
        "protocol.epochs_per_task=2", "protocol.batch_size=8", "sweep.deltas=0.5", "model.d_model=16",
        "model.num_heads=2", "model.d_kv=8", "model.d_ff=32", "text.beam_size=2", "diagnostics.enabled=false"]


example = example_fixture(EXAMPLE, families.FAMILIES, NAME)


def test_the_readme_shows_the_example_and_its_command():
    assert_readme_shows("### A task family", EXAMPLE)


def test_pairs_follow_the_rule_by_hand(example):
    spec = example.ReversedCopy(num_train=5, words=3, word_len=2)
    task = spec.sample(jax.random.key(7), 0)
    inputs, targets = np.asarray(task.train_inputs), np.asarray(task.train_targets)
    assert inputs.shape == targets.shape == (5, 9)  # 3 words of 2 letters, 2 spaces, eos
    assert task.test_inputs is None
    for x, y in zip(inputs, targets):
        words = tok.decode(x).split(" ")
        assert len(words) == 3 and all(len(w) == 2 and w.isalpha() for w in words)
        by_hand = " ".join(reversed(words))  # "ab cd ef" -> "ef cd ab"
        np.testing.assert_array_equal(y, tok.encode(by_hand, max_len=9))
    again = spec.sample(jax.random.key(7), 0)
    np.testing.assert_array_equal(again.train_inputs, inputs)  # a pure function of (key, task)
    assert not np.array_equal(spec.sample(jax.random.key(7), 1).train_inputs, inputs)  # each task its own pairs


def test_the_config_asks_the_registry_about_the_family(example):
    cfg = validate(example.cpu())
    assert cfg.task.family == NAME and families.schedules_for(NAME) == ("abrupt", "task_sampling")
    for overrides, start in [
        (["sweep.schedules=abrupt,output_interp"], f"sweep.schedules: output_interp is not available for "
                                                   f"task.family={NAME}; choose among abrupt, task_sampling; "
                                                   "output_interp moves the targets"),
        (["metric=test_bleu2"], f"metric=test_bleu2 needs a test split; task.family={NAME} has none "
                                "(bigram_cipher has one)"),
        (["model.name=mlp"], f"model.name='mlp' does not fit task.family='{NAME}': the text families "
                             f"(random_seq2seq, bigram_cipher, {NAME}) need a text model"),
    ]:
        with pytest.raises(ConfigError) as err:
            validate(apply_overrides(cfg, overrides))
        assert str(err.value).startswith(start) and "\n" not in str(err.value), str(err.value)


def test_the_runner_builds_its_problem_from_the_registered_make(example):
    cfg = apply_overrides(example.cpu(), ["text.num_train=12", "text.input_words=4", "text.word_len=2"])
    spec = build.text_spec(cfg)
    assert spec == example.ReversedCopy(num_train=12, words=4, word_len=2)
    problem = build.make_problem(cfg, build.prepare_data(cfg))
    assert problem.spec == spec and problem.splits == ("train",)
    assert problem.num_examples(None, "train") == 12 and problem.num_examples(None, "test") == 0


def test_its_runs_are_told_apart_by_their_text_sizes(example):
    """The analysis asks the registry, not a list of built-ins: a run of a registered text family
    is a setting that includes its ``text`` section, as an image run's is not."""
    ours, longer = (to_dict(apply_overrides(example.cpu(), overrides)) for overrides in ([], ["text.word_len=7"]))
    assert ours["text"]["word_len"] != 7
    assert json.loads(runs.setting_key(longer))["text.word_len"] == 7
    assert runs.setting_key(ours) != runs.setting_key(longer)
    image = experiments.get_config("fig1-mnist", "cpu")
    assert runs.setting_key(to_dict(image)) == runs.setting_key(to_dict(apply_overrides(image, ["text.word_len=7"])))


@pytest.mark.slow
def test_a_tiny_t5_run_of_its_preset(example, tmp_path):
    frame = pd.read_csv(run_example(EXAMPLE, tmp_path, TINY) / "results.csv")
    assert set(frame["family"]) == {NAME} and set(frame["schedule"]) == {"abrupt", "task_sampling"}
    assert len(frame) == 4 and frame["finite"].all()  # 2 lanes × 2 tasks
    for column in ("online_train_acc", "train_acc", "train_loss", "train_bleu2"):
        values = frame[column].to_numpy(float)
        assert np.isfinite(values).all(), column
    assert ((frame["train_bleu2"] >= 0) & (frame["train_bleu2"] <= 1)).all()
