"""The language tasks: character vocabulary, task generators, decoding and BLEU.

* :mod:`~gradual_jax.envs.text.tokenizer` — the 30-token character vocabulary, and the decoder's
  teacher-forcing inputs (:func:`~gradual_jax.envs.text.tokenizer.shift_right`);
* :mod:`~gradual_jax.envs.text.tasks` — Random Seq2Seq and Bigram Cipher as pure JAX functions of
  (key, task index), producing token arrays on the device, and the :class:`TextSpec` a text family
  gives the problem;
* :mod:`~gradual_jax.envs.text.decoding` — greedy decoding and beam search (with the T5's key/value
  cache), jittable and vmappable over lanes;
* :mod:`~gradual_jax.envs.text.bleu` — corpus BLEU-2 (host side, plain Python).

The model is :class:`gradual_jax.models.t5.T5`.
"""

from gradual_jax.envs.text import bleu, decoding, tasks, tokenizer
from gradual_jax.envs.text.bleu import bleu2_from_ids, corpus_bleu, corpus_bleu2
from gradual_jax.envs.text.decoding import (StepDecoder, beam_search, greedy_decode, make_decoder, prefix_decoder,
                                             t5_decoder, t5_fns)
from gradual_jax.envs.text.tasks import (BigramCipherSpec, RandomSeq2SeqSpec, TextSpec, TextTask, bigram_cipher,
                                         random_seq2seq, sample_task)

__all__ = [
    "bleu", "decoding", "tasks", "tokenizer",
    "bleu2_from_ids", "corpus_bleu", "corpus_bleu2",
    "StepDecoder", "beam_search", "greedy_decode", "make_decoder", "prefix_decoder", "t5_decoder", "t5_fns",
    "BigramCipherSpec", "RandomSeq2SeqSpec", "TextSpec", "TextTask", "bigram_cipher", "random_seq2seq", "sample_task",
]
