"""The text tasks as an engine problem: teacher-forced seq2seq training, BLEU-2 readout.

Each task is generated whole on the device from the lane's key (:mod:`gradual_jax.envs.text.tasks`),
so there is no base data set (``BaseData()`` is empty) and task t+1 is generated beside task t
for the transition. How the schedules read here:

* ``abrupt``: every batch is task t's pairs;
* ``task_sampling``: in stage q a stratified ``round(b·q/n)`` examples of each batch are task
  t+1's pairs (input and target), the rest task t's — the paper's gradual arm for text;
* ``output_interp`` / ``output_mix`` (Bigram Cipher only, an extra): the inputs stay task t's
  and each target token is a mixture of its cipher under π_t and under π_{t+1}; Random
  Seq2Seq has no such target (its task t+1 does not map task t's inputs to anything).

The loss is token cross-entropy over the batch's counted target tokens (``mask_pad``: leave
pad targets out; the released code counted them). Accuracy is teacher-forced token accuracy.
At each readout the first ``bleu_examples`` pairs of every split are decoded (beam search, and
greedy when asked) and BLEU-2 is computed on the host: ``<split>_bleu2`` and
``<split>_bleu2_greedy`` columns.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gradual_jax.envs import schedules
from gradual_jax.envs.problem import Batch
from gradual_jax.envs.text import bleu, decoding
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.envs.text.tokenizer import shift_right
from gradual_jax.envs.text.tasks import TextSpec, TextTask


def teacher_forced(inputs: jax.Array, targets: jax.Array) -> Batch:
    """The batch of (input, target) pairs: the decoder reads the target shifted right, and each
    target token is its own one-hot label."""
    return Batch(inputs=(inputs, shift_right(targets)), targets=jax.nn.one_hot(targets, tok.VOCAB_SIZE),
                 labels=targets)


def counted_tokens(labels: jax.Array, valid: jax.Array, *, mask_pad: bool = True) -> jax.Array:
    """Which target tokens ``[B, L]`` count: those of real examples (``valid [B]``), and with
    ``mask_pad`` only the non-pad ones (the released code counted pad targets too)."""
    weights = jnp.broadcast_to(valid[:, None], labels.shape)
    return weights & (labels != tok.PAD) if mask_pad else weights


def token_loss(logits: jax.Array, batch: Batch, counted: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Token cross-entropy against the (possibly mixed) soft targets, and teacher-forced argmax
    accuracy against the labels, as sums over the ``counted`` tokens: ``(loss_sum, correct,
    count)``, so the engine averages over an epoch or a split as it likes."""
    ce = optax.softmax_cross_entropy(logits.astype(jnp.float32), batch.targets)
    correct = ((jnp.argmax(logits, -1) == batch.labels) & counted).sum()
    return (jnp.where(counted, ce, 0.0).sum(), correct.astype(jnp.float32), counted.sum().astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
    spec: TextSpec  # the family's tasks (``Family.make(text)``)
    mask_pad: bool = True  # leave pad target tokens out of the loss and accuracy
    bleu_examples: int = 256  # pairs of each split decoded at every readout
    beam_size: int = 5  # 1: greedy only
    greedy_bleu: bool = True  # with beam_size > 1, also report greedy decoding's BLEU-2
    decode_batch_size: int = 1024  # pairs decoded at once (beams multiply it)
    kv_cache: bool = True  # decode with the T5's key/value cache (False: re-run the decoder over the prefix)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "test") if self.spec.num_test > 0 else ("train",)

    def num_examples(self, data, split: str) -> int:
        return self.spec.num_train if split == "train" else self.spec.num_test

    def sample(self, key, task, data) -> TextTask:
        return self.spec.sample(key, task)

    @staticmethod
    def _pairs(task: TextTask, split: str):
        return (task.train_inputs, task.train_targets) if split == "train" else (task.test_inputs, task.test_targets)

    def _batch(self, inputs, y_old, y_new, mix) -> Batch:
        """Soft targets ``target_old·onehot(y_old) + target_new·onehot(y_new) + target_uniform/V``
        per token; teacher forcing feeds the dominant target sequence."""
        labels = jnp.where((mix.target_new > mix.target_old)[:, None], y_new, y_old)
        flat = jax.tree.map(lambda a: jnp.repeat(a, y_old.shape[1]), mix)  # one row per token
        targets = schedules.mixed_targets(y_old.reshape(-1), y_new.reshape(-1), flat, tok.VOCAB_SIZE)
        return Batch(inputs=(inputs, shift_right(labels)), targets=targets.reshape(*y_old.shape, -1), labels=labels)

    def batch(self, data, old: TextTask, new: TextTask, index, mix) -> Batch:
        take_new = (mix.input_new > 0.5)[:, None]  # task sampling: this example is one of task t+1's pairs
        inputs = jnp.where(take_new, new.train_inputs[index], old.train_inputs[index])
        y_chosen = jnp.where(take_new, new.train_targets[index], old.train_targets[index])
        # what task t+1 asks of these inputs (the cipher under π_t+1); only output interpolation weighs it
        targets_under = getattr(self.spec, "targets_under", None)
        y_next = y_chosen if targets_under is None else targets_under(new, inputs)
        return self._batch(inputs, y_chosen, y_next, mix)

    def examples(self, data, task: TextTask, index, split: str) -> Batch:
        inputs, targets = self._pairs(task, split)
        return teacher_forced(inputs[index], targets[index])

    def forward(self, model, inputs, *, train, mask, with_features):
        source, decoder_inputs = inputs
        if with_features:
            return model.logits_and_unit_features(source, decoder_inputs)
        return model(source, decoder_inputs), None

    def features(self, model, inputs):
        return model.ffn_activations(*inputs)

    def loss(self, logits, batch: Batch, valid):
        return token_loss(logits, batch, counted_tokens(batch.labels, valid, mask_pad=self.mask_pad))

    # ------------------------------------------------------------------ readout: decoding
    def _decode(self, model, inputs, beam_size: int):
        graphdef, state = nnx.split(model)
        decoder = decoding.t5_decoder(graphdef, cache=self.kv_cache)
        max_len = self.spec.output_len
        if beam_size == 1:
            fn = lambda x: decoding.greedy_decode(decoder, state, x, max_len)  # noqa: E731
        else:
            fn = lambda x: decoding.beam_search(decoder, state, x, max_len, beam_size=beam_size)  # noqa: E731
        n, chunk = inputs.shape[0], min(self.decode_batch_size, inputs.shape[0])
        chunks = -(-n // chunk)
        padded = jnp.pad(inputs, ((0, chunks * chunk - n), (0, 0)), constant_values=tok.EOS)
        out = jax.lax.map(fn, padded.reshape(chunks, chunk, -1))
        return out.reshape(chunks * chunk, -1)[:n]

    def readout(self, model, task: TextTask, data) -> dict[str, jax.Array]:
        """Decoded ids and references of the first ``bleu_examples`` pairs of each split."""
        out = {}
        for split in self.splits:
            inputs, targets = self._pairs(task, split)
            n = min(self.bleu_examples, inputs.shape[0])
            out[f"{split}_reference"] = targets[:n]
            out[f"{split}_beam"] = self._decode(model, inputs[:n], self.beam_size)
            if self.greedy_bleu and self.beam_size > 1:
                out[f"{split}_greedy"] = self._decode(model, inputs[:n], 1)
        return out

    def host_metrics(self, readout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """BLEU-2 per lane (``readout`` arrays are ``[lanes, n, L]`` on the host)."""
        columns = {}
        for split in self.splits:
            refs = readout[f"{split}_reference"]
            columns[f"{split}_bleu2"] = np.array([bleu.bleu2_from_ids(h, r) for h, r in
                                                  zip(readout[f"{split}_beam"], refs)])
            if f"{split}_greedy" in readout:
                columns[f"{split}_bleu2_greedy"] = np.array([bleu.bleu2_from_ids(h, r) for h, r in
                                                             zip(readout[f"{split}_greedy"], refs)])
        return columns
