"""A compact T5-style encoder–decoder (Raffel et al., 2020) in Flax NNX, for the text tasks.

What makes it T5 rather than the original Transformer, all kept here:

* pre-norm residual blocks with RMS layer norm (no mean subtraction, no bias, eps 1e-6),
  and one final RMS norm per stack;
* attention and feed-forward projections without biases; no 1/√d_kv score scaling (T5
  folds it into the query initialisation instead);
* relative position bias instead of position embeddings: offsets are bucketed (exact for
  small offsets, logarithmic up to ``max_distance``), each bucket has one learned scalar per
  head, and one table is shared by all layers of a stack (bidirectional buckets for the
  encoder, causal ones for the decoder; cross-attention has none);
* one embedding matrix shared by the encoder input, the decoder input and the output
  projection, with the decoder output scaled by ``d_model**-0.5`` before the tied projection;
* initialisation as Mesh TensorFlow / Hugging Face T5: embeddings N(0, 1), query
  N(0, (d_model·d_kv)^-½), key and value N(0, d_model^-½), attention output N(0, (H·d_kv)^-½),
  FFN in N(0, d_model^-½) and out N(0, d_ff^-½), relative bias N(0, d_model^-½).

There is no dropout: the paper turns it off. The model is used functionally like the MLP:
``nnx.split`` once, then ``nnx.merge(graphdef, params)`` inside jitted code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.models.paths import leaf_dict
from gradual_jax.models.units import UnitLayer

NEG_INF = -1e9  # added to masked scores; finite so that sums with the bias never overflow


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Model sizes. Defaults are the paper's 'customised T5-small' with our 30-token vocabulary."""

    vocab_size: int = tok.VOCAB_SIZE
    d_model: int = 256
    num_heads: int = 4
    d_kv: int = 64
    d_ff: int = 2048
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    num_buckets: int = 32
    max_distance: int = 128
    layer_norm_eps: float = 1e-6  # the released code sets 0.0; T5's default is 1e-6
    pad_id: int = tok.PAD


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool,
                             num_buckets: int = 32, max_distance: int = 128) -> jax.Array:
    """T5's bucket of each offset ``key_position - query_position``.

    Bidirectional: half the buckets for keys at or before the query, half for keys after.
    Causal: only keys at or before the query get distinct buckets (later ones share bucket 0,
    and are masked anyway). Within a half, offsets below ``num_buckets / 4`` (resp. ``/ 2``) get
    one bucket each, larger ones share logarithmically wider buckets, and every offset from
    ``max_distance`` on falls into the last one.
    """
    rel = jnp.asarray(relative_position, jnp.int32)
    if bidirectional:
        num_buckets //= 2
        base = jnp.where(rel > 0, num_buckets, 0)
        distance = jnp.abs(rel)
    else:
        base = jnp.zeros_like(rel)
        distance = jnp.maximum(-rel, 0)
    max_exact = num_buckets // 2
    scaled = (jnp.log(jnp.maximum(distance, max_exact).astype(jnp.float32) / max_exact)
              / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    large = jnp.minimum(max_exact + scaled.astype(jnp.int32), num_buckets - 1)
    return base + jnp.where(distance < max_exact, distance, large)


def _normal(std: float):
    return nnx.initializers.normal(stddev=std)


def _dense(d_in: int, d_out: int, std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=False, kernel_init=_normal(std), rngs=rngs)


class RMSNorm(nnx.Module):
    """T5's layer norm: ``x / sqrt(mean(x²) + eps) · scale`` (no centring, no bias), in float32."""

    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


class Attention(nnx.Module):
    """Multi-head attention without biases or score scaling; ``bias`` carries masks and positions."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        inner = cfg.num_heads * cfg.d_kv
        self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.q = _dense(cfg.d_model, inner, (cfg.d_model * cfg.d_kv) ** -0.5, rngs)
        self.k = _dense(cfg.d_model, inner, cfg.d_model ** -0.5, rngs)
        self.v = _dense(cfg.d_model, inner, cfg.d_model ** -0.5, rngs)
        self.o = _dense(inner, cfg.d_model, inner ** -0.5, rngs)

    def _heads(self, h):
        return h.reshape(*h.shape[:-1], self.num_heads, self.d_kv)

    def keys_values(self, memory):
        """``memory [B, Lk, d]`` → keys and values ``[B, Lk, H, d_kv]`` (what a decoding cache keeps)."""
        return self._heads(self.k(memory)), self._heads(self.v(memory))

    def attend(self, x, keys, values, bias):
        """``x [B, Lq, d]`` attends to ``keys``/``values [B, Lk, H, d_kv]``; ``bias`` broadcasts to
        ``[B, H, Lq, Lk]``."""
        scores = jnp.einsum("bqhd,bkhd->bhqk", self._heads(self.q(x)), keys) + bias
        weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(x.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, values)
        return self.o(out.reshape(*out.shape[:-2], -1))

    def __call__(self, x, memory, bias):
        """``x [B, Lq, d]`` attends to ``memory [B, Lk, d]``; ``bias`` broadcasts to ``[B, H, Lq, Lk]``."""
        return self.attend(x, *self.keys_values(memory), bias)


class FeedForward(nnx.Module):
    """ReLU FFN without biases; also returns the hidden activations (for dormancy and ReDo)."""

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.wi = _dense(cfg.d_model, cfg.d_ff, cfg.d_model ** -0.5, rngs)
        self.wo = _dense(cfg.d_ff, cfg.d_model, cfg.d_ff ** -0.5, rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.wi(x))
        return self.wo(h), h


class RelativeBias(nnx.Module):
    """One learned scalar per (bucket, head); one instance per stack, shared by its layers."""

    def __init__(self, cfg: T5Config, *, bidirectional: bool, rngs: nnx.Rngs):
        self.table = nnx.Embed(cfg.num_buckets, cfg.num_heads, embedding_init=_normal(cfg.d_model ** -0.5),
                               rngs=rngs)
        self.bidirectional = bidirectional
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance

    def __call__(self, q_len: int, k_len: int, q_offset=0):
        """``[H, q_len, k_len]`` for queries at positions ``q_offset … q_offset + q_len - 1``."""
        rel = jnp.arange(k_len)[None, :] - (jnp.arange(q_len) + q_offset)[:, None]
        buckets = relative_position_bucket(rel, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        return jnp.moveaxis(self.table(buckets), -1, 0)


class EncoderLayer(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.attn = Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg, rngs=rngs)

    def __call__(self, x, bias):
        h = self.attn_norm(x)
        x = x + self.attn(h, h, bias)
        out, acts = self.ffn(self.ffn_norm(x))
        return x + out, acts


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.self_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.self_attn = Attention(cfg, rngs=rngs)
        self.cross_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.cross_attn = Attention(cfg, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.ffn = FeedForward(cfg, rngs=rngs)

    def __call__(self, y, encoded, self_bias, cross_bias):
        h = self.self_norm(y)
        y = y + self.self_attn(h, h, self_bias)
        y = y + self.cross_attn(self.cross_norm(y), encoded, cross_bias)
        out, acts = self.ffn(self.ffn_norm(y))
        return y + out, acts

    def step(self, y, self_kv, t, cross_kv, self_bias, cross_bias):
        """One decoder position ``y [B, 1, d]`` at index ``t``: its keys and values are written
        into the cache ``self_kv`` (``[B, L, H, d_kv]`` each) before it attends to positions ≤ t."""
        h = self.self_norm(y)
        keys, values = (jax.lax.dynamic_update_slice_in_dim(cache, new, t, axis=1)
                        for cache, new in zip(self_kv, self.self_attn.keys_values(h)))
        y = y + self.self_attn.attend(h, keys, values, self_bias)
        y = y + self.cross_attn.attend(self.cross_norm(y), *cross_kv, cross_bias)
        out, _ = self.ffn(self.ffn_norm(y))
        return y + out, (keys, values)


class DecodingContext(NamedTuple):
    """Per-input constants of step-by-step decoding (each leaf has the batch axis first)."""

    cross_kv: list  # per decoder layer: keys and values of the encoder output [B, L_in, H, d_kv]
    cross_bias: jax.Array  # [B, 1, 1, L_in]: the encoder's padding mask as an additive bias


def _mask_bias(mask):
    """``[B, Lk]`` bool (True = attend) → additive ``[B, 1, 1, Lk]``."""
    return jnp.where(mask, 0.0, NEG_INF)[:, None, None, :]


class T5(nnx.Module):
    """Encoder–decoder: ``model(inputs, decoder_inputs) -> logits [B, L_dec, vocab]``.

    ``inputs`` are token ids with pad = ``cfg.pad_id`` (padding is masked in attention);
    ``decoder_inputs`` are the targets shifted right (:func:`gradual_jax.envs.text.tokenizer.shift_right`).
    """

    def __init__(self, cfg: T5Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.shared = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=_normal(1.0), rngs=rngs)
        self.encoder_bias = RelativeBias(cfg, bidirectional=True, rngs=rngs)
        self.encoder_layers = nnx.List([EncoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_encoder_layers)])
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.decoder_bias = RelativeBias(cfg, bidirectional=False, rngs=rngs)
        self.decoder_layers = nnx.List([DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_decoder_layers)])
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)

    def padding_mask(self, inputs):
        """True where ``inputs`` is a real token (the encoder mask)."""
        return inputs != self.cfg.pad_id

    def _encode(self, inputs):
        x = self.shared(inputs)
        length = inputs.shape[-1]
        bias = self.encoder_bias(length, length)[None] + _mask_bias(self.padding_mask(inputs))
        acts = []
        for layer in self.encoder_layers:
            x, a = layer(x, bias)
            acts.append(a)
        return self.encoder_norm(x), acts

    def _decode(self, encoded, encoder_mask, decoder_inputs):
        y = self.shared(decoder_inputs)
        length = decoder_inputs.shape[-1]
        causal = jnp.arange(length)[None, :] <= jnp.arange(length)[:, None]
        self_bias = (self.decoder_bias(length, length) + jnp.where(causal, 0.0, NEG_INF))[None]
        cross_bias = _mask_bias(encoder_mask)
        acts = []
        for layer in self.decoder_layers:
            y, a = layer(y, encoded, self_bias, cross_bias)
            acts.append(a)
        y = self.decoder_norm(y) * self.cfg.d_model ** -0.5
        return self.shared.attend(y), acts

    def encode(self, inputs):
        """``[B, L_in]`` ids → ``[B, L_in, d_model]`` (after the encoder's final norm)."""
        return self._encode(inputs)[0]

    def decode(self, encoded, encoder_mask, decoder_inputs):
        """Logits ``[B, L_dec, vocab]`` of the decoder over a full prefix buffer (causal, so
        position i depends only on ``decoder_inputs[:, :i+1]``)."""
        return self._decode(encoded, encoder_mask, decoder_inputs)[0]

    def __call__(self, inputs, decoder_inputs):
        return self.decode(self.encode(inputs), self.padding_mask(inputs), decoder_inputs)

    # ---------------------------------------------------------- decoding one position at a time
    def start_decoding(self, encoded, encoder_mask, max_len: int) -> tuple[DecodingContext, list]:
        """What :meth:`decode_step` needs: the cross-attention keys and values of every decoder
        layer (computed once per input) and an empty self-attention cache of ``max_len`` positions."""
        batch = encoded.shape[0]
        context = DecodingContext(cross_kv=[layer.cross_attn.keys_values(encoded) for layer in self.decoder_layers],
                                  cross_bias=_mask_bias(encoder_mask))
        empty = jnp.zeros((batch, max_len, self.cfg.num_heads, self.cfg.d_kv), encoded.dtype)
        return context, [(empty, empty) for _ in self.decoder_layers]

    def decode_step(self, context: DecodingContext, cache: list, tokens, t):
        """Logits ``[B, vocab]`` of position ``t`` given its input ``tokens [B]`` and the cache of
        positions < t; equals ``decode(...)[:, t]`` over the full prefix, in one position's work."""
        max_len = cache[0][0].shape[1]
        y = self.shared(tokens[:, None])
        causal = jnp.arange(max_len) <= t
        self_bias = (self.decoder_bias(1, max_len, q_offset=t) + jnp.where(causal, 0.0, NEG_INF))[None]
        new_cache = []
        for layer, self_kv, cross_kv in zip(self.decoder_layers, cache, context.cross_kv):
            y, self_kv = layer.step(y, self_kv, t, cross_kv, self_bias, context.cross_bias)
            new_cache.append(self_kv)
        y = self.decoder_norm(y) * self.cfg.d_model ** -0.5
        return self.shared.attend(y)[:, 0], new_cache

    def logits_and_unit_features(self, inputs, decoder_inputs) -> tuple[jax.Array, list[jax.Array]]:
        """Logits and the post-ReLU FFN activations ``[B, L, d_ff]`` of every encoder then decoder
        layer, from one forward pass (the units of ReDo and continual backprop:
        see :func:`unit_layers`)."""
        encoded, enc_acts = self._encode(inputs)
        logits, dec_acts = self._decode(encoded, self.padding_mask(inputs), decoder_inputs)
        return logits, enc_acts + dec_acts

    def ffn_activations(self, inputs, decoder_inputs) -> list[jax.Array]:
        """Post-ReLU FFN activations of every encoder then decoder layer (for dormancy / ReDo)."""
        return self.logits_and_unit_features(inputs, decoder_inputs)[1]


def unit_layers(params) -> tuple[UnitLayer, ...]:
    """The FFN units (``ffn/wi`` → ``ffn/wo``, no bias, no norm), encoder layers then decoder
    layers: the order of :meth:`T5.ffn_activations`."""
    leaves = leaf_dict(params)
    layers = []
    for stack in ("encoder_layers", "decoder_layers"):
        i = 0
        while f"{stack}/{i}/ffn/wi/kernel" in leaves:
            layers.append(UnitLayer(kernel=f"{stack}/{i}/ffn/wi/kernel", out_kernel=f"{stack}/{i}/ffn/wo/kernel"))
            i += 1
    if not layers:
        raise ValueError("no '<stack>_layers/<i>/ffn/wi/kernel' leaves: not a T5")
    return tuple(layers)


def count_params(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
