"""PyTorch versions of gradual-jax's ResNet-18 and T5, for benchmarking the two frameworks on the
same models (``models_vs_torch.py``).

They follow ``gradual_jax/models/resnet.py`` and ``gradual_jax/models/t5.py`` layer for layer
(tests/test_benchmarks.py ports the JAX weights into them and compares logits, and checks the
parameter and FLOP counts against hand counts):

* :class:`ResNet18`: torchvision's layout (ImageNet stem 7×7/2 conv + 3×3/2 max-pool, or the
  3×3/1 CIFAR stem; four stages of two BasicBlocks; 1×1 projection shortcuts; global average
  pool; linear head), widths 64/128/256/512 × a width multiplier, BatchNorm2d in training mode,
  PyTorch's default initialisation (the project's ``model.init=torch``). NCHW inputs.
* :class:`T5`: the compact T5 (pre-norm RMS layer norms, bias-free projections, no score
  scaling, bucketed relative position bias shared by a stack's layers, a tied embedding with the
  decoder output scaled by d_model^-½, ReLU feed-forward, no dropout), initialised as
  Mesh TensorFlow / Hugging Face T5.

This module imports neither JAX nor gradual_jax, so a PyTorch worker's peak memory is PyTorch's
own; the few constants it shares with gradual_jax are checked equal in the tests.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512)  # gradual_jax.models.resnet.WIDTHS
PAD, BOS, EOS, SPACE, VOCAB_SIZE = 0, 1, 2, 3, 30  # gradual_jax.envs.text.tokenizer
NEG_INF = -1e9  # gradual_jax.models.t5.NEG_INF


# --------------------------------------------------------------------------- ResNet-18
def scaled_width(width: int, multiplier: float) -> int:
    """``round(width × multiplier)``, at least 1 (as gradual_jax.models.resnet.scaled_width)."""
    return max(1, round(width * multiplier))


class BasicBlock(nn.Module):
    """3×3 conv → BN → ReLU → 3×3 conv → BN, + shortcut, → ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """``model(x [N, C, H, W]) -> logits [N, num_classes]``."""

    def __init__(self, num_classes: int = 10, *, in_channels: int = 3, width_multiplier: float = 1.0,
                 cifar_stem: bool = False):
        super().__init__()
        widths = [scaled_width(w, width_multiplier) for w in WIDTHS]
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        channels, stages = widths[0], []
        for i, width in enumerate(widths):
            blocks = []
            for j in range(2):
                blocks.append(BasicBlock(channels, width, 2 if (i > 0 and j == 0) else 1))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        h = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(h.mean(dim=(2, 3)))


# --------------------------------------------------------------------------- T5
@dataclasses.dataclass(frozen=True)
class T5Config:
    """gradual_jax.models.t5.T5Config's fields and defaults (the paper's compact T5)."""

    vocab_size: int = VOCAB_SIZE
    d_model: int = 256
    num_heads: int = 4
    d_kv: int = 64
    d_ff: int = 2048
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    num_buckets: int = 32
    max_distance: int = 128
    layer_norm_eps: float = 1e-6
    pad_id: int = PAD


def relative_position_bucket(rel: torch.Tensor, *, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of each offset ``key_position - query_position`` (gradual_jax.models.t5's)."""
    if bidirectional:
        num_buckets //= 2
        base = torch.where(rel > 0, num_buckets, 0)
        distance = rel.abs()
    else:
        base = torch.zeros_like(rel)
        distance = (-rel).clamp(min=0)
    max_exact = num_buckets // 2
    scaled = (torch.log(distance.clamp(min=max_exact).float() / max_exact)
              / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    large = (max_exact + scaled.long()).clamp(max=num_buckets - 1)
    return base + torch.where(distance < max_exact, distance, large)


def _dense(d_in: int, d_out: int, std: float) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=False)
    nn.init.normal_(layer.weight, std=std)
    return layer


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


class Attention(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.q = _dense(cfg.d_model, inner, (cfg.d_model * cfg.d_kv) ** -0.5)
        self.k = _dense(cfg.d_model, inner, cfg.d_model ** -0.5)
        self.v = _dense(cfg.d_model, inner, cfg.d_model ** -0.5)
        self.o = _dense(inner, cfg.d_model, inner ** -0.5)

    def forward(self, x, memory, bias):
        def heads(h):
            return h.view(*h.shape[:-1], self.num_heads, self.d_kv)

        q, k, v = heads(self.q(x)), heads(self.k(memory)), heads(self.v(memory))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) + bias
        out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)
        return self.o(out.reshape(*out.shape[:-2], -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.wi = _dense(cfg.d_model, cfg.d_ff, cfg.d_model ** -0.5)
        self.wo = _dense(cfg.d_ff, cfg.d_model, cfg.d_ff ** -0.5)

    def forward(self, x):
        return self.wo(F.relu(self.wi(x)))


class RelativeBias(nn.Module):
    def __init__(self, cfg: T5Config, bidirectional: bool):
        super().__init__()
        self.table = nn.Embedding(cfg.num_buckets, cfg.num_heads)
        nn.init.normal_(self.table.weight, std=cfg.d_model ** -0.5)
        self.bidirectional, self.num_buckets, self.max_distance = bidirectional, cfg.num_buckets, cfg.max_distance

    def forward(self, q_len: int, k_len: int):
        """``[H, q_len, k_len]``."""
        device = self.table.weight.device
        rel = torch.arange(k_len, device=device)[None, :] - torch.arange(q_len, device=device)[:, None]
        buckets = relative_position_bucket(rel, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                                           max_distance=self.max_distance)
        return self.table(buckets).permute(2, 0, 1)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(cfg.d_model, cfg.layer_norm_eps), Attention(cfg)
        self.ffn_norm, self.ffn = RMSNorm(cfg.d_model, cfg.layer_norm_eps), FeedForward(cfg)

    def forward(self, x, bias):
        h = self.attn_norm(x)
        x = x + self.attn(h, h, bias)
        return x + self.ffn(self.ffn_norm(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.self_norm, self.self_attn = RMSNorm(cfg.d_model, cfg.layer_norm_eps), Attention(cfg)
        self.cross_norm, self.cross_attn = RMSNorm(cfg.d_model, cfg.layer_norm_eps), Attention(cfg)
        self.ffn_norm, self.ffn = RMSNorm(cfg.d_model, cfg.layer_norm_eps), FeedForward(cfg)

    def forward(self, y, encoded, self_bias, cross_bias):
        h = self.self_norm(y)
        y = y + self.self_attn(h, h, self_bias)
        y = y + self.cross_attn(self.cross_norm(y), encoded, cross_bias)
        return y + self.ffn(self.ffn_norm(y))


def _mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """``[B, Lk]`` bool (True = attend) → additive ``[B, 1, 1, Lk]``."""
    return torch.where(mask, 0.0, NEG_INF)[:, None, None, :]


class T5(nn.Module):
    """``model(inputs [B, L_in], decoder_inputs [B, L_dec]) -> logits [B, L_dec, vocab]``."""

    def __init__(self, cfg: T5Config = T5Config()):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.shared.weight, std=1.0)
        self.encoder_bias = RelativeBias(cfg, bidirectional=True)
        self.encoder_layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers)])
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)
        self.decoder_bias = RelativeBias(cfg, bidirectional=False)
        self.decoder_layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_decoder_layers)])
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.layer_norm_eps)

    def forward(self, inputs, decoder_inputs):
        mask = inputs != self.cfg.pad_id
        x = self.shared(inputs)
        bias = self.encoder_bias(inputs.shape[-1], inputs.shape[-1])[None] + _mask_bias(mask)
        for layer in self.encoder_layers:
            x = layer(x, bias)
        encoded = self.encoder_norm(x)
        length = decoder_inputs.shape[-1]
        causal = torch.arange(length)[None, :] <= torch.arange(length)[:, None]
        self_bias = (self.decoder_bias(length, length) + torch.where(causal, 0.0, NEG_INF))[None]
        y = self.shared(decoder_inputs)
        for layer in self.decoder_layers:
            y = layer(y, encoded, self_bias, _mask_bias(mask))
        return (self.decoder_norm(y) * self.cfg.d_model ** -0.5) @ self.shared.weight.T


def shift_right(targets: torch.Tensor, start_id: int = BOS) -> torch.Tensor:
    """Teacher-forcing decoder inputs: ``[start, t_0, …, t_{L-2}]``."""
    return torch.cat([torch.full_like(targets[..., :1], start_id), targets[..., :-1]], dim=-1)


def seq2seq_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = PAD) -> torch.Tensor:
    """Token cross-entropy averaged over the non-pad target tokens (gradual_jax's ``mask_pad=True``)."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), ignore_index=pad_id)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
