"""Text tasks: vocabulary, task generators (against a string-based reference), BLEU, decoding."""

from __future__ import annotations

import dataclasses
import string
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax.envs.text import bleu, decoding
from gradual_jax.envs.text import tasks
from gradual_jax.envs.text import tokenizer as tok

KEY = jax.random.key(7)
# Jitted generators: one compilation per spec instead of one per eager op.
sample = jax.jit(tasks.sample_task, static_argnums=0)


# --- vocabulary -------------------------------------------------------------------------

def test_vocabulary_ids():
    assert (tok.PAD, tok.BOS, tok.EOS, tok.SPACE, tok.VOCAB_SIZE) == (0, 1, 2, 3, 30)
    np.testing.assert_array_equal(tok.encode("ab z", 8), [4, 5, 3, 29, 2, 0, 0, 0])
    assert tok.decode([1, 4, 5, 3, 29, 2, 6, 6]) == "ab z"  # bos skipped, stops at eos
    assert tok.decode([4, 0, 5]) == "ab"  # pad skipped


def test_encode_truncates_keeping_eos():
    ids = tok.encode("a" * 300)
    assert ids.shape == (128,) and ids.dtype == np.int32
    assert ids[-1] == tok.EOS and (ids[:-1] == 4).all()
    assert tok.decode(ids) == "a" * 127
    with pytest.raises(ValueError):
        tok.encode("A")


# --- task generators --------------------------------------------------------------------

def reference_cipher(perm: np.ndarray, text: str) -> str:
    """String-based reference of the bigram cipher (independent of the JAX code)."""
    letters = string.ascii_lowercase
    prev, out = "a", []
    for c in text.replace(" ", ""):
        out.append(letters[(perm[letters.index(c)] + perm[letters.index(prev)]) % 26])
        prev = c
    words = [len(w) for w in text.split(" ")]
    chunks, i = [], 0
    for n in words:
        chunks.append("".join(out[i:i + n]))
        i += n
    return " ".join(chunks)


def test_cipher_hand_worked_example():
    # π(i) = (7i + 3) mod 26 is a permutation (7 is coprime to 26), so
    # out_i = (7(c_i + c_{i-1}) + 6) mod 26, with c_0 = 'a' = 0. Input "hello world":
    #   (a0,h7): 7·7+6=55→3 d    (h7,e4): 7·11+6=83→5 f   (e4,l11): 7·15+6=111→7 h
    #   (l11,l11): 7·22+6=160→4 e (l11,o14): 7·25+6=181→25 z
    #   (o14,w22): 7·36+6=258→24 y (the stream runs across the space)
    #   (w22,o14): 258→24 y      (o14,r17): 7·31+6=223→15 p (r17,l11): 7·28+6=202→20 u
    #   (l11,d3): 7·14+6=104→0 a
    perm = (7 * np.arange(26) + 3) % 26
    assert sorted(perm) == list(range(26))
    letters = jnp.asarray([string.ascii_lowercase.index(c) for c in "helloworld"])
    out = tasks.cipher_letters(jnp.asarray(perm), letters)
    assert "".join(string.ascii_lowercase[i] for i in np.asarray(out)) == "dfhezyypua"
    assert reference_cipher(perm, "hello world") == "dfhez yypua"
    tokens = tasks.letters_to_tokens(out.reshape(1, 2, 5), 12)
    assert tok.decode_batch(tokens) == ["dfhez yypua"]


@pytest.mark.slow
def test_cipher_task_matches_string_reference():
    spec = tasks.BigramCipherSpec(num_train=64, num_test=32, num_words=4, word_len=3)
    task = sample(spec, KEY, 3)
    perm = np.asarray(tasks.cipher_permutation(KEY, 3))
    assert task.train_inputs.shape == (64, 16) and task.train_targets.shape == (64, 16)
    assert task.test_inputs.shape == (32, 16) and task.train_inputs.dtype == jnp.int32
    for x, y in [(task.train_inputs, task.train_targets), (task.test_inputs, task.test_targets)]:
        for src, tgt in zip(tok.decode_batch(x), tok.decode_batch(y)):
            assert [len(w) for w in src.split(" ")] == [3] * 4
            assert tgt == reference_cipher(perm, src)
    assert (np.asarray(task.train_targets)[:, -1] == tok.EOS).all()


def test_cipher_permutation_per_task_and_key():
    perms = [np.asarray(tasks.cipher_permutation(KEY, t)) for t in range(5)]
    for p in perms:
        assert sorted(p) == list(range(26))
    assert len({p.tobytes() for p in perms}) == 5  # a different π for every task
    np.testing.assert_array_equal(tasks.cipher_permutation(KEY, 2), perms[2])  # same key, same π
    jitted = jax.jit(tasks.cipher_permutation)(KEY, jnp.int32(2))  # task index may be traced
    np.testing.assert_array_equal(jitted, perms[2])
    other = tasks.cipher_permutation(jax.random.key(8), 2)
    assert not np.array_equal(other, perms[2])


@pytest.mark.slow
def test_cipher_test_set_fresh_or_from_train():
    spec = tasks.BigramCipherSpec(num_train=40, num_test=16, num_words=3, word_len=4)
    fresh = sample(spec, KEY, 0)
    train = set(tok.decode_batch(fresh.train_inputs))
    assert not train & set(tok.decode_batch(fresh.test_inputs))
    released = sample(dataclasses.replace(spec, test_from_train=True), KEY, 0)
    np.testing.assert_array_equal(released.test_inputs, fresh.train_inputs[:16])
    np.testing.assert_array_equal(released.test_targets, fresh.train_targets[:16])


@pytest.mark.slow
def test_random_seq2seq_shapes_truncation_and_determinism():
    spec = tasks.RandomSeq2SeqSpec(num_pairs=32)
    task = sample(spec, KEY, 4)
    assert task.train_inputs.shape == (32, 128) and task.train_targets.shape == (32, 30)
    assert task.test_inputs is None
    src, tgt = tok.decode_batch(task.train_inputs), tok.decode_batch(task.train_targets)
    for s, t, ids in zip(src, tgt, np.asarray(task.train_inputs)):
        assert len(s) == 127 and ids[-1] == tok.EOS  # 50 words = 299 chars, cut to 127 + eos
        np.testing.assert_array_equal(ids, tok.encode(s))
        assert [len(w) for w in t.split(" ")] == [5] * 5
    again = tasks.random_seq2seq(KEY, 4, spec)  # eager, Python task index: the same task
    np.testing.assert_array_equal(again.train_targets, task.train_targets)
    np.testing.assert_array_equal(again.train_inputs, task.train_inputs)
    other = sample(spec, KEY, 5)
    assert not np.array_equal(other.train_targets, task.train_targets)


def test_target_padding_and_short_inputs():
    spec = tasks.RandomSeq2SeqSpec(num_pairs=4, input_words=3, target_words=2, word_len=2, target_len=10)
    task = sample(spec, KEY, 0)
    assert task.train_inputs.shape == (4, 9) and task.train_targets.shape == (4, 10)
    # targets "ab cd" + eos are 6 tokens, padded to 10
    np.testing.assert_array_equal(np.asarray(task.train_targets)[:, 5:], [[tok.EOS, 0, 0, 0, 0]] * 4)
    with pytest.raises(ValueError):
        tasks.RandomSeq2SeqSpec(target_len=3).output_len


@pytest.mark.slow
def test_tasks_vmap_over_lanes():
    spec = tasks.BigramCipherSpec(num_train=8, num_test=4, num_words=2, word_len=3)
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    batched = jax.jit(jax.vmap(lambda k: tasks.sample_task(spec, k, 1)))(keys)
    single = sample(spec, jax.random.key(2), 1)
    np.testing.assert_array_equal(batched.test_targets[2], single.test_targets)


# --- BLEU ---------------------------------------------------------------------------------

CORPORA = {
    "perfect": (["abc def ghi", "jkl mno"], ["abc def ghi", "jkl mno"]),
    "partial": (["abc def xyz qqq", "jkl mno pqr", "a b c d e"], ["abc def ghi", "jkl mno", "a b c d e f g"]),
    "repeats": (["the the the the", "ab ab cd"], ["the cat the mat", "ab cd ab cd"]),
    "empty_hyp": (["", "abc def ghi jkl"], ["abc def ghi", "abc def ghi jkl"]),
    "one_word_hyp": (["abc", "def ghi jkl", "q"], ["abc def", "def ghi jkl", "q r"]),
    "no_bigram_match": (["abc xyz def", "ghi"], ["abc def", "ghi jkl"]),
    "no_match": (["xx yy", "zz"], ["abc def", "ghi"]),
    "all_empty": (["", ""], ["abc def", "ghi"]),
}


def random_corpus(seed, n=40):
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list("abc"), 2)) for _ in range(6)]

    def sent():
        return " ".join(rng.choice(words, rng.integers(0, 8)))

    return [sent() for _ in range(n)], [sent() for _ in range(n)]


@pytest.mark.parametrize("name", [*CORPORA, "random0", "random1"])
def test_bleu2_matches_nltk(name):
    nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")
    hyps, refs = CORPORA[name] if name in CORPORA else random_corpus(int(name[-1]))
    with warnings.catch_warnings():  # nltk warns about zero-count precisions
        warnings.simplefilter("ignore")
        expected = nltk_bleu.corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps], weights=(0.5, 0.5))
    assert bleu.corpus_bleu2(hyps, refs) == pytest.approx(float(expected), rel=1e-12, abs=0)


@pytest.mark.parametrize("name", [*CORPORA, "random0", "random1"])
def test_bleu2_matches_sacrebleu(name):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = CORPORA[name] if name in CORPORA else random_corpus(int(name[-1]))
    metric = sacrebleu.metrics.BLEU(max_ngram_order=2, smooth_method="none", tokenize="none")
    expected = metric.corpus_score(hyps, [refs]).score / 100
    assert bleu.corpus_bleu2(hyps, refs, convention="sacrebleu") == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_bleu2_hand_values():
    assert bleu.corpus_bleu2(["abc def ghi"], ["abc def ghi"]) == 1.0
    # unigrams 3/4 (x unmatched), bigrams 1/3 (only "abc def"), c = 4 > r = 3: BP = 1,
    # BLEU = sqrt(3/4 · 1/3) = 0.5
    assert bleu.corpus_bleu2(["abc def x ghi"], ["abc def ghi"]) == pytest.approx(0.5)
    ids = np.stack([tok.encode("abc def ghi", 16), tok.encode("abc def ghi", 16)])
    assert bleu.bleu2_from_ids(ids, ids) == 1.0
    with pytest.raises(ValueError):
        bleu.corpus_bleu2(["a"], ["a"], convention="x")


# --- decoding ---------------------------------------------------------------------------

# A fake "model" whose next-token logits depend only on the previous token (a Markov chain
# given by ``params``, a [V, V] table of log-probabilities), so the best sequence is known.
V = 6
A, B_, C = 3, 4, 5


def fake_decoder():
    def encode_fn(params, inputs):
        return jnp.zeros(inputs.shape + (1,)), inputs != tok.PAD

    def decode_fn(params, encoded, mask, decoder_inputs):
        return params[decoder_inputs]  # [N, L, V]

    return decoding.prefix_decoder(encode_fn, decode_fn)


def markov_table():
    """From bos: A 0.6, B 0.4. After A: eos 0.3, C 0.29, A 0.2, B 0.2. After B: eos 0.9, C 0.1.
    After C: eos. Greedy picks A then eos (p = 0.18); the best sequence is B eos (p = 0.36)."""
    p = np.full((V, V), 1e-6)
    p[tok.BOS, [A, B_]] = [0.6, 0.4]
    p[A, [tok.EOS, C, A, B_]] = [0.3, 0.29, 0.2, 0.2]
    p[B_, [tok.EOS, C]] = [0.9, 0.1]
    p[C, tok.EOS] = 1.0
    p[tok.EOS, tok.EOS] = 1.0
    p[tok.PAD, tok.EOS] = 1.0
    return jnp.log(jnp.asarray(p / p.sum(1, keepdims=True), jnp.float32))


def test_beam_search_finds_best_sequence_greedy_misses():
    dec = fake_decoder()
    params, inputs = markov_table(), jnp.ones((2, 3), jnp.int32)
    greedy = decoding.greedy_decode(dec, params, inputs, 4)
    beam = decoding.beam_search(dec, params, inputs, 4, beam_size=2)
    np.testing.assert_array_equal(greedy, [[A, tok.EOS, 0, 0]] * 2)
    np.testing.assert_array_equal(beam, [[B_, tok.EOS, 0, 0]] * 2)
    _, score = decoding.beam_search(dec, params, inputs, 4, beam_size=2, return_scores=True)
    table = np.asarray(params)  # the best sequence's log-probability: bos → B → eos, then pad at no cost
    np.testing.assert_allclose(score, [table[tok.BOS, B_] + table[B_, tok.EOS]] * 2, rtol=1e-6)


def test_beam_one_equals_greedy_on_random_model():
    dec = fake_decoder()
    params = jax.random.normal(jax.random.key(0), (V, V)) * 2
    inputs = jnp.ones((3, 2), jnp.int32)
    greedy = decoding.greedy_decode(dec, params, inputs, 7)
    beam1 = decoding.beam_search(dec, params, inputs, 7, beam_size=1)
    np.testing.assert_array_equal(greedy, beam1)


def test_decoders_vmap_over_lanes():
    dec = fake_decoder()
    params = jnp.stack([markov_table(), jax.random.normal(jax.random.key(1), (V, V))])
    inputs = jnp.ones((2, 3, 2), jnp.int32)
    for beam_size in (1, 3):
        run = decoding.make_decoder(dec, 5, beam_size=beam_size, lanes=True)
        single = decoding.make_decoder(dec, 5, beam_size=beam_size)
        out = run(params, inputs)
        assert out.shape == (2, 3, 5)
        for lane in range(2):
            np.testing.assert_array_equal(out[lane], single(params[lane], inputs[lane]))
