"""Models, written in Flax NNX and used functionally (``nnx.split`` / ``nnx.merge``), and the
registry that tells the rest of the project what each one is.

A model is one module (its network, its ``unit_layers``) plus one :class:`ModelSpec` line in
:data:`MODELS`, a :class:`~gradual_jax.registry.Registry` like the schedules', families' and
methods': how to build it from the config's ``model`` section, which of that section's keys it
reads, what it takes as input, how to name it, and how the mitigations adapt to it. A model
from outside the package joins with :func:`register` (and leaves with :func:`unregister`); the
built-ins cannot be replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import jax.numpy as jnp
from flax import nnx

from gradual_jax.models import mlp, resnet, t5
from gradual_jax.models.init import normal_fan_in
from gradual_jax.models.mlp import MLP
from gradual_jax.models.units import UnitLayer
from gradual_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class DataShape:
    """What the data gives a model: one example's shape and the number of classes (tokens for
    the text tasks)."""

    input_shape: tuple[int, ...]
    num_classes: int


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model, as the runner, the config and the figures see it.

    ``build(model_config, data_shape, rngs)`` makes the network; ``unit_layers(params)`` names
    its hidden units (ReDo, continual backprop); ``keys`` are the ``model.*`` keys it reads;
    ``inputs`` is ``"images"`` or ``"text"``; ``short(model)`` names it in results tables and
    ``words(model)`` in figures (both from the config's ``model`` section as a dict);
    ``mitigation`` holds the fields of :class:`~gradual_jax.mitigations.MitigationStructure` in
    which its mitigations differ from the MLP's (docs/protocol.md). ``cpu_vmap_lanes`` is how
    many lanes one vectorised step trains at once on a CPU when ``run.vmap_lanes`` is 0
    (automatic): groups of 4 for the MLPs, whose batch-64 matmuls gain from a few lanes side by
    side, one lane at a time for the ResNet and the T5, whose single lane already keeps the cores
    busy (docs/guide.md, "Lane groups").
    """

    name: str
    build: Callable[[Any, DataShape, nnx.Rngs], nnx.Module]
    unit_layers: Callable[[Any], tuple[UnitLayer, ...]]
    keys: tuple[str, ...]
    inputs: str
    short: Callable[[Mapping[str, Any]], str]
    words: Callable[[Mapping[str, Any]], str]
    caption: str
    mitigation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cpu_vmap_lanes: int = 4


def _mlp_shape(model: Mapping[str, Any], sep: str) -> str:
    sizes = list(model.get("hidden_sizes", ()))
    if sizes and len(set(sizes)) == 1:
        return f"{sizes[0]}x{len(sizes)}" if sep == "x" else f"{len(sizes)}×{sizes[0]}"
    return "-".join(map(str, sizes))


def _mlp(activation: str, name: str, words: str, caption: str) -> ModelSpec:
    def build(m, shape: DataShape, rngs: nnx.Rngs) -> nnx.Module:
        in_features = 1
        for size in shape.input_shape:
            in_features *= size
        return MLP(in_features, m.hidden_sizes, shape.num_classes, activation=activation, rngs=rngs)

    return ModelSpec(name=name, build=build, unit_layers=mlp.unit_layers, keys=("hidden_sizes",), inputs="images",
                     short=lambda m: f"{name} {_mlp_shape(m, 'x')}", words=lambda m: f"{words} {_mlp_shape(m, '×')}",
                     caption=caption)


def _build_resnet(m, shape: DataShape, rngs: nnx.Rngs) -> nnx.Module:
    return resnet.ResNet18(shape.num_classes, in_channels=shape.input_shape[-1], width_multiplier=m.width_multiplier,
                           cifar_stem=m.cifar_stem, init=m.init,
                           dtype=jnp.bfloat16 if m.compute_dtype == "bfloat16" else None, rngs=rngs)


def _resnet_words(m: Mapping[str, Any]) -> str:
    width = m.get("width_multiplier", 1.0)
    return "ResNet-18" if width == 1 else f"ResNet-18 at {Fraction(width).limit_denominator(64)} width"


def _build_t5(m, shape: DataShape, rngs: nnx.Rngs) -> nnx.Module:
    return t5.T5(t5.T5Config(d_model=m.d_model, num_heads=m.num_heads, d_kv=m.d_kv, d_ff=m.d_ff,
                             num_encoder_layers=m.num_layers, num_decoder_layers=m.num_layers), rngs=rngs)


MODELS: Registry[ModelSpec] = Registry("model", ModelSpec)


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (``model.name`` then accepts its name)."""
    if spec.inputs not in ("images", "text"):
        raise ValueError(f"ModelSpec.inputs must be 'images' or 'text', got {spec.inputs!r}")
    return MODELS.register(spec)


unregister = MODELS.unregister


def names(inputs: str | None = None) -> tuple[str, ...]:
    """The registered models, or those taking ``inputs`` ("images" or "text")."""
    return tuple(spec.name for spec in MODELS.registered() if inputs is None or spec.inputs == inputs)


def reading(key: str) -> tuple[str, ...]:
    """The models that read the config key ``model.<key>``."""
    return tuple(spec.name for spec in MODELS.registered() if key in spec.keys)


def get(name: str) -> ModelSpec:
    if name not in MODELS.names():
        raise KeyError(f"model.name={name!r}: unknown model; known: {', '.join(names())}")
    return MODELS.get(name)


register(_mlp("relu", "mlp", "MLP", "the LayerNorm MLP (Linear → LayerNorm → ReLU), PyTorch's init"))
register(_mlp("crelu", "crelu_mlp", "CReLU MLP",
              "the LayerNorm MLP with CReLU activations (each layer's output width doubles)"))
register(ModelSpec(
    name="resnet18", build=_build_resnet, unit_layers=resnet.unit_layers,
    keys=("width_multiplier", "cifar_stem", "init", "compute_dtype"), inputs="images",
    short=lambda m: f"resnet18 x{m.get('width_multiplier', 1.0):g}", words=_resnet_words,
    caption="ResNet-18 (torchvision's layout, BatchNorm)",
    # L2 on kernels only (ndim > 1); the spectral term without biases and normalisation layers
    mitigation={"l2_kernels_only": True, "spectral_bias_l2": False, "spectral_exclude": ("norm", "bn")},
    cpu_vmap_lanes=1))
register(ModelSpec(
    name="t5", build=_build_t5, unit_layers=t5.unit_layers,
    keys=("d_model", "num_heads", "d_kv", "d_ff", "num_layers"), inputs="text",
    short=lambda m: f"t5 d{m.get('d_model')}", words=lambda m: f"T5 (d_model {m.get('d_model')})",
    caption="the customised T5-small (encoder–decoder, relative position buckets)",
    # ReDo scores are the raw mean activation (the released code's absolute threshold); redrawn
    # FFN weights follow T5's N(0, 1/fan_in); no biases for the spectral term
    mitigation={"redo_normalize": False, "init_fn": normal_fan_in, "spectral_bias_l2": False},
    cpu_vmap_lanes=1))
MODELS.seal()

__all__ = ["MLP", "MODELS", "DataShape", "ModelSpec", "get", "names", "reading", "register", "unregister"]
