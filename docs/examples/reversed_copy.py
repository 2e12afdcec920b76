"""A text task family of your own, registered from this file: reversed copy, and an experiment
that trains the T5 on it.

``reversed_copy``: the input is ``text.input_words`` random words of ``text.word_len`` letters,
the target the same words in reverse order ("abc de" -> "de abc"). Each task draws its
``text.num_train`` pairs from its own key, ``fold_in(key, task)`` of the lane's task key, as the
built-in families do, so any task can be rebuilt from the seed alone. Its spec tells the problem
the sizes (no test split) and how to sample a task; its registry line says what a transition
can move (whole examples: task sampling), what it measures and how figures name it.
"""

import dataclasses

import jax

from gradual_jax import experiments
from gradual_jax.envs import families
from gradual_jax.envs.text import tasks
from gradual_jax.envs.text import tokenizer as tok


@dataclasses.dataclass(frozen=True)
class ReversedCopy:
    num_train: int
    words: int
    word_len: int
    num_test = 0

    @property
    def input_len(self):
        return tasks.text_length(self.words, self.word_len)

    @property
    def output_len(self):
        return tasks.text_length(self.words, self.word_len)

    def sample(self, key, task):
        key = jax.random.fold_in(jax.random.fold_in(key, task), tasks.TRAIN_STREAM)
        letters = jax.random.randint(key, (self.num_train, self.words, self.word_len), 0, tok.NUM_LETTERS)
        return tasks.TextTask(train_inputs=tasks.letters_to_tokens(letters, self.input_len),
                              train_targets=tasks.letters_to_tokens(letters[:, ::-1], self.output_len))


def make(text):
    return ReversedCopy(num_train=text.num_train, words=text.input_words, word_len=text.word_len)


families.register(families.Family(
    "reversed_copy", kind="text", moves=("examples",), make=make,
    metrics=("online_train_acc", "train_acc", "train_bleu2", "train_bleu2_greedy"),
    words="Reversed Copy", caption="random words copied in reverse order, fresh pairs each task"))

DESCRIPTION = "Reversed copy, T5 d_model 64: abrupt vs task sampling"


def cpu():
    cfg = experiments.get_config("fig2-seq2seq", "cpu")
    return dataclasses.replace(cfg, name="reversed-copy", preset="cpu", description=DESCRIPTION,
                               task=dataclasses.replace(cfg.task, family="reversed_copy"),
                               text=dataclasses.replace(cfg.text, input_words=3))


PRESETS = {"cpu": cpu}
