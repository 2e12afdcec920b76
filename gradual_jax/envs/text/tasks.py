"""The text task families, as pure JAX functions of (key, task index).

Each task is generated whole, as token arrays, on the device: a lane's task t is
``sample(spec, key, t)`` with ``key`` the lane's task-stream key (``engine.lane_keys(seed)[1]``),
and the task's own key is ``fold_in(key, t)``, the same derivation as the image tasks' (``engine.sample_task``).
Nothing is stored per task, so any task can be rebuilt from the seed alone, and the
transition to task t+1 just generates t+1 alongside t.

* **Random Seq2Seq** (trainability): the input is ``input_words`` random words, the target
  ``target_words`` random words drawn independently of it, so the only way to fit a task is
  to memorise its pairs.
* **Bigram Cipher** (generalisation): a secret permutation π of the 26 letters per task;
  output letter i is ``letter[(π(c_i) + π(c_{i-1})) mod 26]`` over the input's letter stream
  (spaces excluded, ``c_0 = 'a'``), regrouped into words of the same lengths. The test set uses
  the same π on fresh inputs; ``test_from_train=True`` reproduces the released code, whose
  "test" set is its first ``num_test`` training pairs.

A text family registers ``make(text) -> spec``, its :class:`TextSpec` from the config's ``text``
section: the sizes the problem reads and ``sample(key, task)``. A new family is one such spec
and one ``families.register`` line (``docs/examples/reversed_copy.py``).

Token arrays follow :mod:`gradual_jax.envs.text.tokenizer`: ``inputs [P, L_in]`` are the input
text plus eos, truncated to ``max_input_len`` (eos kept); ``targets [P, L_out]`` are the target
text plus eos, padded with pad to ``target_len`` when given. Every example of a task has the
same lengths, so these shapes are static.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from gradual_jax.envs import families
from gradual_jax.envs.text import tokenizer as tok

PERM_STREAM, TRAIN_STREAM, TEST_STREAM, TARGET_STREAM = 0, 1, 2, 3


class TextSpec(Protocol):
    """What the seq2seq problem asks of a text family's tasks (static sizes, one sampler).

    ``num_test`` is 0 for a family without a test split. A family whose transitions can move
    the targets (``moves`` includes ``"targets"``) also gives ``targets_under(task, inputs)``:
    the targets that ``task`` asks of other inputs, which output interpolation mixes in.
    """

    num_train: int  # training pairs per task
    num_test: int  # held-out pairs per task (0: none)
    input_len: int  # input tokens, eos included
    output_len: int  # target tokens, eos included

    def sample(self, key: jax.Array, task: Any) -> TextTask: ...


@dataclasses.dataclass(frozen=True)
class RandomSeq2SeqSpec:
    """Random Seq2Seq sizes (defaults: the paper's)."""

    num_pairs: int = 5120
    input_words: int = 50
    target_words: int = 5
    word_len: int = 5
    max_input_len: int = tok.MAX_INPUT_LEN
    target_len: int | None = None  # pad targets to this length; None: their natural length

    num_test = 0  # no test split: a task is memorised, not learned

    @property
    def num_train(self) -> int:
        return self.num_pairs

    @property
    def input_len(self) -> int:
        return min(text_length(self.input_words, self.word_len), self.max_input_len)

    @property
    def output_len(self) -> int:
        return _target_len(text_length(self.target_words, self.word_len), self.target_len)

    def sample(self, key: jax.Array, task) -> TextTask:
        return random_seq2seq(key, task, self)


@dataclasses.dataclass(frozen=True)
class BigramCipherSpec:
    """Bigram Cipher sizes (defaults: the paper's); inputs and targets have ``num_words`` words."""

    num_train: int = 1280
    num_test: int = 512
    num_words: int = 10
    word_len: int = 5
    max_input_len: int = tok.MAX_INPUT_LEN
    target_len: int | None = None
    test_from_train: bool = False  # the released code's test set: the first num_test training pairs

    @property
    def input_len(self) -> int:
        return min(text_length(self.num_words, self.word_len), self.max_input_len)

    @property
    def output_len(self) -> int:
        return _target_len(text_length(self.num_words, self.word_len), self.target_len)

    def sample(self, key: jax.Array, task) -> TextTask:
        return bigram_cipher(key, task, self)

    def targets_under(self, task: TextTask, inputs: jax.Array) -> jax.Array:
        """The targets of ``inputs`` under ``task``'s cipher (what output interpolation mixes in)."""
        return encipher_inputs(self, task.cipher_perm, inputs)


@struct.dataclass
class TextTask:
    """One task's token arrays (int32). Random Seq2Seq has no test split (``None``)."""

    train_inputs: jax.Array  # [P, L_in]
    train_targets: jax.Array  # [P, L_out]
    test_inputs: jax.Array | None = None  # [Q, L_in]
    test_targets: jax.Array | None = None  # [Q, L_out]
    cipher_perm: jax.Array | None = None  # Bigram Cipher: the task's secret π [26]


def text_length(words: int, word_len: int) -> int:
    """Tokens of ``words`` space-separated words plus eos."""
    return words * (word_len + 1)


def _target_len(natural: int, target_len: int | None) -> int:
    if target_len is None:
        return natural
    if target_len < natural:
        raise ValueError(f"target_len={target_len} would truncate targets of {natural} tokens")
    return target_len


def letters_to_tokens(letters: jax.Array, length: int) -> jax.Array:
    """``[..., W, C]`` letter indices (0-25) → tokens of "w1 w2 … wW" + eos, cut or padded to ``length``.

    Cutting keeps the eos as the last token (like :func:`tokenizer.encode`).
    """
    *batch, words, _ = letters.shape
    ids = letters.astype(jnp.int32) + tok.LETTER0
    spaces = jnp.full((*batch, words, 1), tok.SPACE, jnp.int32)
    text = jnp.concatenate([ids, spaces], axis=-1).reshape(*batch, -1)[..., :-1]
    eos = jnp.full((*batch, 1), tok.EOS, jnp.int32)
    if length <= text.shape[-1]:
        return jnp.concatenate([text[..., : length - 1], eos], axis=-1)
    pad = jnp.full((*batch, length - text.shape[-1] - 1), tok.PAD, jnp.int32)
    return jnp.concatenate([text, eos, pad], axis=-1)


def _random_letters(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.randint(key, shape, 0, tok.NUM_LETTERS, dtype=jnp.int32)


def random_seq2seq(key: jax.Array, task, spec: RandomSeq2SeqSpec = RandomSeq2SeqSpec()) -> TextTask:
    """Task ``task`` of Random Seq2Seq: ``num_pairs`` independent (input, target) pairs."""
    k = jax.random.fold_in(key, task)
    x = _random_letters(jax.random.fold_in(k, TRAIN_STREAM), (spec.num_pairs, spec.input_words, spec.word_len))
    y = _random_letters(jax.random.fold_in(k, TARGET_STREAM), (spec.num_pairs, spec.target_words, spec.word_len))
    return TextTask(train_inputs=letters_to_tokens(x, spec.input_len),
                    train_targets=letters_to_tokens(y, spec.output_len))


def cipher_permutation(key: jax.Array, task) -> jax.Array:
    """The secret π of task ``task``: ``[26]`` int32, π[c] is the value of letter c."""
    k = jax.random.fold_in(jax.random.fold_in(key, task), PERM_STREAM)
    return jax.random.permutation(k, tok.NUM_LETTERS).astype(jnp.int32)


def cipher_letters(perm: jax.Array, letters: jax.Array) -> jax.Array:
    """The bigram cipher of a letter stream ``[..., N]`` (indices 0-25; the stream starts after 'a')."""
    prev = jnp.concatenate([jnp.zeros_like(letters[..., :1]), letters[..., :-1]], axis=-1)
    return (perm[letters] + perm[prev]) % tok.NUM_LETTERS


def _cipher_pairs(perm, key, num, spec: BigramCipherSpec):
    x = _random_letters(key, (num, spec.num_words * spec.word_len))
    y = cipher_letters(perm, x)
    shape = (num, spec.num_words, spec.word_len)
    return letters_to_tokens(x.reshape(shape), spec.input_len), letters_to_tokens(y.reshape(shape), spec.output_len)


def bigram_cipher(key: jax.Array, task, spec: BigramCipherSpec = BigramCipherSpec()) -> TextTask:
    """Task ``task`` of Bigram Cipher: train pairs and a test set under the same π."""
    k = jax.random.fold_in(key, task)
    perm = cipher_permutation(key, task)
    train_x, train_y = _cipher_pairs(perm, jax.random.fold_in(k, TRAIN_STREAM), spec.num_train, spec)
    if spec.test_from_train:
        if spec.num_test > spec.num_train:
            raise ValueError("test_from_train needs num_test <= num_train")
        test_x, test_y = train_x[: spec.num_test], train_y[: spec.num_test]
    else:
        test_x, test_y = _cipher_pairs(perm, jax.random.fold_in(k, TEST_STREAM), spec.num_test, spec)
    return TextTask(train_x, train_y, test_x, test_y, cipher_perm=perm)


def input_letter_positions(spec: BigramCipherSpec) -> jax.Array:
    """Positions of the letters (not the spaces) in a cipher input's tokens (static)."""
    stride = spec.word_len + 1
    return jnp.asarray([w * stride + i for w in range(spec.num_words) for i in range(spec.word_len)], jnp.int32)


def encipher_inputs(spec: BigramCipherSpec, perm: jax.Array, inputs: jax.Array) -> jax.Array:
    """The targets that the cipher ``perm`` gives input tokens ``[..., L_in]`` (inputs must not be
    truncated: ``spec.max_input_len`` ≥ their natural length). With a task's own π this rebuilds
    its targets; with the next task's π it is what output interpolation mixes in."""
    if spec.input_len < text_length(spec.num_words, spec.word_len):
        raise ValueError("encipher_inputs needs untruncated inputs (raise max_input_len)")
    letters = inputs[..., input_letter_positions(spec)] - tok.LETTER0
    shape = letters.shape[:-1] + (spec.num_words, spec.word_len)
    return letters_to_tokens(cipher_letters(perm, letters).reshape(shape), spec.output_len)


def sample_task(spec: TextSpec, key: jax.Array, task) -> TextTask:
    """Task ``task`` of the family that ``spec`` describes (what the engine calls per lane)."""
    return spec.sample(key, task)


def random_seq2seq_spec(text) -> RandomSeq2SeqSpec:
    """Random Seq2Seq sized by the config's ``text`` section."""
    return RandomSeq2SeqSpec(num_pairs=text.num_train, input_words=text.input_words, target_words=text.target_words,
                             word_len=text.word_len, max_input_len=text.max_input_len)


def bigram_cipher_spec(text) -> BigramCipherSpec:
    """Bigram Cipher sized by the config's ``text`` section (its targets have ``input_words`` words)."""
    return BigramCipherSpec(num_train=text.num_train, num_test=text.num_test, num_words=text.input_words,
                            word_len=text.word_len, max_input_len=text.max_input_len,
                            test_from_train=text.test_from_train)


_NOT_IMAGES = "{schedule} needs image inputs (task.family=permuted_pixels)"
families.register(families.Family(
    "random_seq2seq", kind="text", moves=("examples",),
    metrics=("online_train_acc", "train_acc", "train_bleu2", "train_bleu2_greedy"), make=random_seq2seq_spec,
    cannot_move={"targets": "output interpolation needs task t+1's target for task t's inputs, which only the "
                            "cipher has", "inputs": _NOT_IMAGES},
    words="Random Seq2Seq", caption="random input words mapped to random target words, memorised"))
families.register(families.Family(
    "bigram_cipher", kind="text", moves=("examples", "targets"),
    metrics=("online_train_acc", "train_acc", "test_acc", "train_bleu2", "test_bleu2", "train_bleu2_greedy",
             "test_bleu2_greedy"), make=bigram_cipher_spec, cannot_move={"inputs": _NOT_IMAGES},
    words="Bigram Cipher", caption="each task a fresh secret letter permutation, enciphering letter pairs"))
