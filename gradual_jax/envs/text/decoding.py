"""Greedy decoding and beam search with a static length limit, as pure traceable functions.

Both take the model as two functions of its parameters,

* ``encode_fn(params, inputs) -> (encoded, encoder_mask)``,
* ``decode_fn(params, encoded, encoder_mask, decoder_inputs [N, max_len]) -> logits [N, max_len, V]``,

so they can be ``jit``-ed, ``vmap``-ed over a leading lanes axis of ``params`` (and of
``inputs``), and tested against a fake model. :func:`t5_fns` builds the pair for
:class:`gradual_jax.models.t5.T5`.

The decoder is re-run over the whole fixed-size prefix buffer at every step (no key/value
cache): with a causal decoder, position t only sees tokens up to t, so the pad tokens still
in the buffer beyond t cannot change step t's logits. This costs ``max_len`` full decoder
passes but keeps every shape static, which is what ``jit``/``vmap``/``scan`` need; the text
tasks' targets are at most a few dozen tokens.

Outputs are ``[B, max_len]`` token ids without the start token; after a sequence's eos every
token is pad.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.envs.text import tokenizer as tok

NEG = -1e9  # score of impossible continuations (finite, so sums stay finite)


def t5_fns(graphdef: nnx.GraphDef):
    """``(encode_fn, decode_fn)`` of a T5 given its graphdef; ``params`` is its ``nnx.Param`` state."""

    def encode_fn(params, inputs):
        model = nnx.merge(graphdef, params)
        return model.encode(inputs), model.padding_mask(inputs)

    def decode_fn(params, encoded, encoder_mask, decoder_inputs):
        return nnx.merge(graphdef, params).decode(encoded, encoder_mask, decoder_inputs)

    return encode_fn, decode_fn


def _step_logits(decode_fn, params, encoded, mask, buffer, t, max_len):
    logits = decode_fn(params, encoded, mask, buffer[:, :max_len])
    return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False).astype(jnp.float32)


def greedy_decode(encode_fn, decode_fn, params, inputs, max_len: int, *,
                  bos: int = tok.BOS, eos: int = tok.EOS, pad: int = tok.PAD) -> jax.Array:
    """Arg-max decoding: ``[B, L_in]`` inputs → ``[B, max_len]`` ids."""
    encoded, mask = encode_fn(params, inputs)
    batch = inputs.shape[0]
    buffer = jnp.full((batch, max_len + 1), pad, jnp.int32).at[:, 0].set(bos)

    def step(t, carry):
        buffer, done = carry
        logits = _step_logits(decode_fn, params, encoded, mask, buffer, t, max_len)
        token = jnp.where(done, pad, jnp.argmax(logits, -1).astype(jnp.int32))
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, token, t + 1, axis=1)
        return buffer, done | (token == eos)

    buffer, _ = jax.lax.fori_loop(0, max_len, step, (buffer, jnp.zeros((batch,), bool)))
    return buffer[:, 1:]


def beam_search(encode_fn, decode_fn, params, inputs, max_len: int, *, beam_size: int = 5,
                bos: int = tok.BOS, eos: int = tok.EOS, pad: int = tok.PAD) -> jax.Array:
    """Beam search by total log-probability: ``[B, L_in]`` inputs → ``[B, max_len]`` best ids.

    Each step extends every live beam by every token and keeps the ``beam_size`` best
    candidates; a beam that has emitted eos stays in the pool with its score frozen (its only
    continuation is pad at no cost), so finished and live hypotheses compete on the same
    score. There is no length normalisation (Hugging Face's default ``length_penalty=1``
    divides finished scores by their length; for the fixed-length targets of the text tasks
    the two rarely differ). With ``beam_size=1`` this is exactly :func:`greedy_decode`.
    """
    encoded, mask = encode_fn(params, inputs)
    batch, k = inputs.shape[0], beam_size

    def tile(a):
        return jnp.repeat(a, k, axis=0)  # [B, ...] -> [B*K, ...], beams of one example adjacent

    encoded, mask = jax.tree.map(tile, (encoded, mask))
    buffer = jnp.full((batch, k, max_len + 1), pad, jnp.int32).at[:, :, 0].set(bos)
    scores = jnp.full((batch, k), NEG, jnp.float32).at[:, 0].set(0.0)  # one live beam at first
    done = jnp.zeros((batch, k), bool)

    def step(t, carry):
        buffer, scores, done = carry
        logits = _step_logits(decode_fn, params, encoded, mask, buffer.reshape(batch * k, -1), t, max_len)
        logp = jax.nn.log_softmax(logits, -1).reshape(batch, k, -1)
        vocab = logp.shape[-1]
        only_pad = jnp.where(jnp.arange(vocab) == pad, 0.0, NEG)
        logp = jnp.where(done[..., None], only_pad, logp)
        scores, flat = jax.lax.top_k((scores[..., None] + logp).reshape(batch, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        buffer = jnp.take_along_axis(buffer, parent[..., None], axis=1)
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, token, t + 1, axis=2)
        done = jnp.take_along_axis(done, parent, axis=1) | (token == eos)
        return buffer, scores, done

    buffer, scores, _ = jax.lax.fori_loop(0, max_len, step, (buffer, scores, done))
    return buffer[:, 0, 1:]  # top_k sorts descending: beam 0 is the best


def make_decoder(encode_fn, decode_fn, max_len: int, *, beam_size: int = 5, lanes: bool = False, **ids):
    """A jitted ``decode(params, inputs) -> ids``: greedy when ``beam_size == 1``, else beam search.

    ``lanes=True`` maps it over a leading lanes axis of both ``params`` and ``inputs``.
    """
    if beam_size == 1:
        fn = functools.partial(greedy_decode, encode_fn, decode_fn, max_len=max_len, **ids)
    else:
        fn = functools.partial(beam_search, encode_fn, decode_fn, max_len=max_len, beam_size=beam_size, **ids)
    return jax.jit(jax.vmap(fn) if lanes else fn)
