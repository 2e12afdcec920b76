"""The T5 model: relative position buckets, masking, size, and memorisation (with the text problem's loss)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gradual_jax.models import t5
from gradual_jax.envs.text import bleu, decoding
from gradual_jax.envs.text import tasks
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.envs.text.seq2seq import teacher_forced, token_loss

TINY = t5.T5Config(d_model=32, num_heads=2, d_kv=8, d_ff=64, num_encoder_layers=2, num_decoder_layers=2)


def split(cfg=TINY, seed=0):
    graphdef, params = nnx.split(t5.T5(cfg, rngs=nnx.Rngs(seed)), nnx.Param)
    return graphdef, params


def reference_bucket(offset: int, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128) -> int:
    """T5's bucketing of one offset (key position - query position), written from the paper:
    half the buckets per direction when bidirectional (keys after the query in the upper half),
    exact buckets for distances below half a direction's buckets, then logarithmic bins up to
    max_distance, beyond which everything shares the last bin; causal attention only buckets
    keys at or before the query (later ones get bucket 0)."""
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        if offset > 0:
            bucket = num_buckets
        distance = abs(offset)
    else:
        distance = max(-offset, 0)
    exact = num_buckets // 2
    if distance < exact:
        return bucket + distance
    log_bin = exact + int(math.log(distance / exact) / math.log(max_distance / exact) * (num_buckets - exact))
    return bucket + min(log_bin, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 40)])
def test_relative_position_buckets_match_reference(bidirectional, num_buckets, max_distance):
    offsets = np.arange(-200, 201)
    got = t5.relative_position_bucket(jnp.asarray(offsets), bidirectional=bidirectional,
                                      num_buckets=num_buckets, max_distance=max_distance)
    want = [reference_bucket(int(o), bidirectional, num_buckets, max_distance) for o in offsets]
    np.testing.assert_array_equal(np.asarray(got), want)
    assert np.asarray(got).max() == num_buckets - 1  # every bucket up to the last is reachable


@pytest.mark.slow
def test_paper_dims_parameter_count():
    # Paper dims: d_model 256, 4 heads × d_kv 64 (inner 256), d_ff 2048, 1 + 1 layers, vocab 30.
    d, inner, ff, vocab, heads, buckets = 256, 4 * 64, 2048, 30, 4, 32
    attention = 4 * d * inner  # q, k, v, o without biases: 262,144
    ffn = 2 * d * ff  # wi, wo: 1,048,576
    embedding = vocab * d  # shared by encoder, decoder and output: 7,680
    encoder = attention + ffn + 2 * d + heads * buckets + d  # + 2 norms, bias table, final norm: 1,311,616
    decoder = 2 * attention + ffn + 3 * d + heads * buckets + d  # self + cross attention: 1,574,016
    assert embedding + encoder + decoder == 2_893_312
    _, params = split(t5.T5Config())
    assert t5.count_params(params) == 2_893_312


def test_init_scales_follow_t5():
    cfg = t5.T5Config()
    _, params = split(cfg)
    attn = params["encoder_layers"][0]["attn"]
    for name, std in [("q", (256 * 64) ** -0.5), ("k", 256 ** -0.5), ("o", 256 ** -0.5)]:
        assert float(jnp.std(attn[name]["kernel"][...])) == pytest.approx(std, rel=0.02)
    assert float(jnp.std(params["shared"]["embedding"][...])) == pytest.approx(1.0, rel=0.05)
    ffn = params["decoder_layers"][0]["ffn"]
    assert float(jnp.std(ffn["wo"]["kernel"][...])) == pytest.approx(2048 ** -0.5, rel=0.02)
    assert (params["decoder_norm"]["scale"][...] == 1).all()


def test_rms_norm_is_t5_style():
    norm = t5.RMSNorm(4, 1e-6)
    x = jnp.asarray([[1.0, 2.0, 3.0, 6.0]])
    np.testing.assert_allclose(norm(x), x / np.sqrt(np.mean(np.square(x)) + 1e-6), rtol=1e-6)


@pytest.mark.slow
def test_decoder_is_causal_and_encoder_ignores_padding():
    graphdef, params = split()

    @jax.jit
    def model(inputs, decoder_inputs):
        return nnx.merge(graphdef, params)(inputs, decoder_inputs)

    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.integers(3, 30, (2, 9)), jnp.int32)
    targets = jnp.asarray(rng.integers(3, 30, (2, 7)), jnp.int32)
    logits = model(inputs, tok.shift_right(targets))
    for i in range(7):
        changed = targets.at[:, i:].set((targets[:, i:] + 5) % 30)  # decoder input i+1 onwards differ
        other = model(inputs, tok.shift_right(changed))
        np.testing.assert_allclose(other[:, : i + 1], logits[:, : i + 1], rtol=1e-5, atol=1e-5)
        if i < 6:
            assert not np.allclose(other[:, i + 1:], logits[:, i + 1:])
    padded = jnp.concatenate([inputs, jnp.zeros((2, 5), jnp.int32)], axis=1)
    np.testing.assert_allclose(model(padded, tok.shift_right(targets)), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_tiny_model_memorises_random_seq2seq():
    """A tiny T5 fits 16 random pairs (targets of 5 words) to BLEU-2 >= 0.9 in 300 Adam steps.

    (A d_ff of 128 plateaus near loss 0.1: the one-layer decoder's FFN is where the
    (pair, position) -> letter table is stored, so it needs some width.)"""
    spec = tasks.RandomSeq2SeqSpec(num_pairs=16, input_words=4, target_words=5, word_len=3)
    task = jax.jit(tasks.random_seq2seq, static_argnums=2)(jax.random.key(0), 0, spec)
    x, y = task.train_inputs, task.train_targets
    cfg = t5.T5Config(d_model=64, num_heads=4, d_kv=16, d_ff=512)
    graphdef, params = split(cfg)
    tx = optax.adam(1e-3)

    batch = teacher_forced(x, y)

    def loss_fn(p):
        loss_sum, _, count = token_loss(nnx.merge(graphdef, p)(*batch.inputs), batch, y != tok.PAD)
        return loss_sum / count

    @jax.jit
    def train(params):
        def step(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=300)
        return params, losses

    params, losses = train(params)
    assert float(losses[-1]) < 0.05 < float(losses[0])
    for cache in (True, False):
        dec = decoding.t5_decoder(graphdef, cache=cache)
        greedy = decoding.make_decoder(dec, spec.output_len, beam_size=1)(params, x)
        beam = decoding.make_decoder(dec, spec.output_len, beam_size=5)(params, x)
        assert bleu.bleu2_from_ids(greedy, y) >= 0.9
        assert bleu.bleu2_from_ids(beam, y) >= 0.9
        np.testing.assert_array_equal(decoding.beam_search(dec, params, x[:4], spec.output_len, beam_size=1),
                                      greedy[:4])
    assert_cached_decoding_equals_prefix(graphdef, params, x, spec.output_len)


def assert_cached_decoding_equals_prefix(graphdef, params, inputs, max_len):
    """The key/value-cached decoder gives the same ids and beam scores as re-running the
    decoder over the whole prefix at every step (greedy and beam search)."""
    cached, prefix = (decoding.t5_decoder(graphdef, cache=c) for c in (True, False))
    for beam_size in (1, 4):
        if beam_size == 1:
            ids = [jax.jit(decoding.greedy_decode, static_argnums=(0, 3))(d, params, inputs, max_len)
                   for d in (cached, prefix)]
        else:
            run = jax.jit(decoding.beam_search, static_argnums=(0, 3), static_argnames=("beam_size", "return_scores"))
            (ids_c, scores_c), (ids_p, scores_p) = (run(d, params, inputs, max_len, beam_size=beam_size,
                                                        return_scores=True) for d in (cached, prefix))
            ids = [ids_c, ids_p]
            # a beam's score sums up to max_len log-probabilities, each rounded differently by the
            # two decoders' differently shaped products: float32 rounding of a sum of ~30 terms
            np.testing.assert_allclose(scores_c, scores_p, rtol=1e-4, atol=1e-4)
            assert np.all(np.asarray(scores_c) < 0)
        np.testing.assert_array_equal(*ids)


def test_decode_step_equals_full_decoder_at_every_position():
    """Teacher-forced: feeding position t's input to ``decode_step`` with the cache of positions
    < t gives the logits ``decode`` computes at t over the whole sequence."""
    graphdef, params = split()
    model = nnx.merge(graphdef, params)
    inputs = jax.random.randint(jax.random.key(1), (3, 9), 3, tok.VOCAB_SIZE).at[0, 6:].set(tok.PAD)
    decoder_inputs = jax.random.randint(jax.random.key(2), (3, 7), 1, tok.VOCAB_SIZE)
    encoded, mask = model.encode(inputs), model.padding_mask(inputs)
    full = model.decode(encoded, mask, decoder_inputs)
    context, cache = model.start_decoding(encoded, mask, 7)
    for t in range(7):
        logits, cache = model.decode_step(context, cache, decoder_inputs[:, t], t)
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-4, atol=1e-4)


def test_cached_decoding_equals_prefix_decoding_on_a_random_model():
    """Random weights scaled up so that the logits are far from uniform (ties would make the
    comparison meaningless): 8 inputs, padded, through a 2-layer encoder and decoder."""
    graphdef, params = split()
    params = jax.tree.map(lambda a: a * 3.0, params)
    inputs = jax.random.randint(jax.random.key(3), (8, 12), 3, tok.VOCAB_SIZE).at[::2, 8:].set(tok.PAD)
    assert_cached_decoding_equals_prefix(graphdef, params, inputs, 10)
