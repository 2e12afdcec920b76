"""Greedy decoding and beam search with a static length limit, as pure traceable functions.

Both drive a model one output position at a time through a :class:`StepDecoder`:

* ``start(params, inputs, max_len) -> (context, cache)``: what is fixed per input (the encoder
  output) and what each step updates;
* ``step(params, context, cache, tokens [N], t) -> (logits [N, V], cache)``: the logits of
  position ``t`` given its input tokens (the start token at ``t = 0``, then the previous output).

Every leaf of ``context`` and ``cache`` has the batch axis first, so beam search tiles them per
beam and reorders the cache when beams change parents. Two decoders are built here:

* :func:`prefix_decoder` works with any causal model given as ``encode_fn`` / ``decode_fn``: its
  cache is the buffer of decoder inputs so far, and each step re-runs the decoder over the whole
  fixed-size buffer (positions after ``t`` hold pad, which a causal decoder cannot see at ``t``).
  ``max_len`` full decoder passes, every shape static;
* :func:`t5_decoder` keeps each decoder layer's self-attention keys and values (the key/value
  cache) and the cross-attention keys and values of the encoder output, so a step costs one
  position: the same logits in about ``1 / max_len`` of the decoder work.

Both can be ``jit``-ed and ``vmap``-ed over a leading lanes axis of ``params`` and ``inputs``.
Outputs are ``[B, max_len]`` token ids without the start token; after a sequence's eos every
token is pad.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.envs.text import tokenizer as tok

NEG = -1e9  # score of impossible continuations (finite, so sums stay finite)


class StepDecoder(NamedTuple):
    """A model seen one output position at a time (see the module docstring)."""

    start: Callable[[Any, jax.Array, int], tuple[Any, Any]]
    step: Callable[[Any, Any, Any, jax.Array, jax.Array], tuple[jax.Array, Any]]


def prefix_decoder(encode_fn, decode_fn) -> StepDecoder:
    """Decoding without a cache, for any causal model.

    ``encode_fn(params, inputs) -> (encoded, encoder_mask)`` and
    ``decode_fn(params, encoded, encoder_mask, decoder_inputs [N, max_len]) -> logits [N, max_len, V]``.
    """

    def start(params, inputs, max_len):
        context = encode_fn(params, inputs)
        return context, jnp.full((inputs.shape[0], max_len), tok.PAD, jnp.int32)

    def step(params, context, buffer, tokens, t):
        buffer = jax.lax.dynamic_update_index_in_dim(buffer, tokens.astype(jnp.int32), t, axis=1)
        logits = decode_fn(params, *context, buffer)
        return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), buffer

    return StepDecoder(start, step)


def t5_fns(graphdef: nnx.GraphDef):
    """``(encode_fn, decode_fn)`` of a T5 given its graphdef; ``params`` is its state."""

    def encode_fn(params, inputs):
        model = nnx.merge(graphdef, params)
        return model.encode(inputs), model.padding_mask(inputs)

    def decode_fn(params, encoded, encoder_mask, decoder_inputs):
        return nnx.merge(graphdef, params).decode(encoded, encoder_mask, decoder_inputs)

    return encode_fn, decode_fn


def t5_decoder(graphdef: nnx.GraphDef, *, cache: bool = True) -> StepDecoder:
    """A :class:`gradual_jax.models.t5.T5` as a step decoder; ``params`` is its state.

    ``cache=False`` gives the :func:`prefix_decoder` of the same model (the reference the
    cached one is tested against).
    """
    if not cache:
        return prefix_decoder(*t5_fns(graphdef))

    def start(params, inputs, max_len):
        model = nnx.merge(graphdef, params)
        return model.start_decoding(model.encode(inputs), model.padding_mask(inputs), max_len)

    def step(params, context, kv_cache, tokens, t):
        return nnx.merge(graphdef, params).decode_step(context, kv_cache, tokens, t)

    return StepDecoder(start, step)


def _logits(decoder: StepDecoder, params, context, cache, tokens, t):
    logits, cache = decoder.step(params, context, cache, tokens, t)
    return logits.astype(jnp.float32), cache


def greedy_decode(decoder: StepDecoder, params, inputs, max_len: int, *,
                  bos: int = tok.BOS, eos: int = tok.EOS, pad: int = tok.PAD) -> jax.Array:
    """Arg-max decoding: ``[B, L_in]`` inputs → ``[B, max_len]`` ids."""
    batch = inputs.shape[0]
    context, cache = decoder.start(params, inputs, max_len)

    def step(t, carry):
        out, cache, last, done = carry
        logits, cache = _logits(decoder, params, context, cache, last, t)
        token = jnp.where(done, pad, jnp.argmax(logits, -1).astype(jnp.int32))
        out = jax.lax.dynamic_update_index_in_dim(out, token, t, axis=1)
        return out, cache, token, done | (token == eos)

    init = (jnp.full((batch, max_len), pad, jnp.int32), cache, jnp.full((batch,), bos, jnp.int32),
            jnp.zeros((batch,), bool))
    return jax.lax.fori_loop(0, max_len, step, init)[0]


def beam_search(decoder: StepDecoder, params, inputs, max_len: int, *, beam_size: int = 5,
                bos: int = tok.BOS, eos: int = tok.EOS, pad: int = tok.PAD, return_scores: bool = False):
    """Beam search by total log-probability: ``[B, L_in]`` inputs → ``[B, max_len]`` best ids
    (and, with ``return_scores``, the best beam's total log-probability ``[B]``).

    Each step extends every live beam by every token and keeps the ``beam_size`` best
    candidates; a beam that has emitted eos stays in the pool with its score frozen (its only
    continuation is pad at no cost), so finished and live hypotheses compete on the same
    score. There is no length normalisation (Hugging Face's default ``length_penalty=1``
    divides finished scores by their length; for the fixed-length targets of the text tasks
    the two rarely differ). With ``beam_size=1`` this is exactly :func:`greedy_decode`.
    """
    batch, k = inputs.shape[0], beam_size
    context, cache = jax.tree.map(lambda a: jnp.repeat(a, k, axis=0),  # beams of one example adjacent
                                  decoder.start(params, inputs, max_len))

    def by_parent(a, parent):  # [B*K, ...] rows reordered to each new beam's parent
        a = a.reshape(batch, k, *a.shape[1:])
        a = jnp.take_along_axis(a, parent.reshape(batch, k, *([1] * (a.ndim - 2))), axis=1)
        return a.reshape(batch * k, *a.shape[2:])

    def step(t, carry):
        out, cache, last, scores, done = carry
        logits, cache = _logits(decoder, params, context, cache, last.reshape(-1), t)
        logp = jax.nn.log_softmax(logits, -1).reshape(batch, k, -1)
        vocab = logp.shape[-1]
        only_pad = jnp.where(jnp.arange(vocab) == pad, 0.0, NEG)
        logp = jnp.where(done[..., None], only_pad, logp)
        scores, flat = jax.lax.top_k((scores[..., None] + logp).reshape(batch, k * vocab), k)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        out = jnp.take_along_axis(out, parent[..., None], axis=1)
        out = jax.lax.dynamic_update_index_in_dim(out, token, t, axis=2)
        cache = jax.tree.map(lambda a: by_parent(a, parent), cache)
        done = jnp.take_along_axis(done, parent, axis=1) | (token == eos)
        return out, cache, token, scores, done

    init = (jnp.full((batch, k, max_len), pad, jnp.int32), cache, jnp.full((batch, k), bos, jnp.int32),
            jnp.full((batch, k), NEG, jnp.float32).at[:, 0].set(0.0),  # one live beam at first
            jnp.zeros((batch, k), bool))
    out, _, _, scores, _ = jax.lax.fori_loop(0, max_len, step, init)
    best = out[:, 0]  # top_k sorts descending: beam 0 is the best
    return (best, scores[:, 0]) if return_scores else best


def make_decoder(decoder: StepDecoder, max_len: int, *, beam_size: int = 5, lanes: bool = False, **ids):
    """A jitted ``decode(params, inputs) -> ids``: greedy when ``beam_size == 1``, else beam search.

    ``lanes=True`` maps it over a leading lanes axis of both ``params`` and ``inputs``.
    """
    if beam_size == 1:
        fn = functools.partial(greedy_decode, decoder, max_len=max_len, **ids)
    else:
        fn = functools.partial(beam_search, decoder, max_len=max_len, beam_size=beam_size, **ids)
    return jax.jit(jax.vmap(fn) if lanes else fn)
