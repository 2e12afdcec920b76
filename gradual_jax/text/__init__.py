"""The language tasks: character vocabulary, task generators, decoding and BLEU.

* :mod:`~gradual_jax.text.tokenizer` — the 30-token character vocabulary (NumPy, host side);
* :mod:`~gradual_jax.text.tasks` — Random Seq2Seq and Bigram Cipher as pure JAX functions of
  (key, task index), producing token arrays on the device;
* :mod:`~gradual_jax.text.decoding` — greedy decoding and beam search, jittable and vmappable
  over lanes;
* :mod:`~gradual_jax.text.bleu` — corpus BLEU-2 (host side, plain Python).

The model is :class:`gradual_jax.models.t5.T5`.
"""

from gradual_jax.text import bleu, decoding, tasks, tokenizer
from gradual_jax.text.bleu import bleu2_from_ids, corpus_bleu, corpus_bleu2
from gradual_jax.text.decoding import beam_search, greedy_decode, make_decoder, t5_fns
from gradual_jax.text.tasks import (BigramCipherSpec, RandomSeq2SeqSpec, TextTask, bigram_cipher, random_seq2seq,
                                    sample_task)

__all__ = [
    "bleu", "decoding", "tasks", "tokenizer",
    "bleu2_from_ids", "corpus_bleu", "corpus_bleu2",
    "beam_search", "greedy_decode", "make_decoder", "t5_fns",
    "BigramCipherSpec", "RandomSeq2SeqSpec", "TextTask", "bigram_cipher", "random_seq2seq", "sample_task",
]
