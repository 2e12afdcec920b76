"""The LayerNorm MLP: parameter count by hand, PyTorch-default init, a NumPy forward reference."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from gradual_jax.models import MLP


def test_parameter_count_by_hand():
    model = MLP(784, (256, 256, 256, 256), 10, rngs=nnx.Rngs(0))
    first = 784 * 256 + 256
    hidden = 3 * (256 * 256 + 256)
    norms = 4 * (256 + 256)
    head = 256 * 10 + 10
    assert first + hidden + norms + head == 402_954
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == 402_954


def test_pytorch_default_init():
    model = MLP(784, (256, 256), 10, rngs=nnx.Rngs(1))
    for layer, fan_in in ((model.hidden[0], 784), (model.hidden[1], 256), (model.head, 256)):
        bound = 1 / np.sqrt(fan_in)
        for w in (np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])):
            assert np.abs(w).max() <= bound
        w = np.asarray(layer.kernel[...])
        # U(±b) has mean 0 and variance b²/3
        assert abs(w.mean()) < 0.05 * bound
        np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.05)
        assert np.abs(w).max() > 0.99 * bound
    for norm in model.norms:
        np.testing.assert_array_equal(np.asarray(norm.scale[...]), 1.0)
        np.testing.assert_array_equal(np.asarray(norm.bias[...]), 0.0)


def test_forward_matches_numpy_reference():
    model = MLP(12, (8, 8), 3, rngs=nnx.Rngs(2))
    x = np.random.default_rng(0).normal(size=(5, 12)).astype(np.float32)
    h = x
    for linear, norm in zip(model.hidden, model.norms):
        h = h @ np.asarray(linear.kernel[...]) + np.asarray(linear.bias[...])
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mu) / np.sqrt(var + 1e-5) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
        h = np.maximum(h, 0)
    want = h @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-5)
    features = model.features(x)
    assert [f.shape for f in features] == [(5, 8), (5, 8)]
    np.testing.assert_allclose(np.asarray(features[-1]), h, rtol=1e-5, atol=1e-5)


def test_crelu_forward_matches_numpy_reference():
    """CReLU: each layer's output is [relu(h), relu(-h)], so the next layer's fan-in doubles."""
    model = MLP(12, (8, 6), 3, activation="crelu", rngs=nnx.Rngs(3))
    assert model.hidden[1].kernel[...].shape == (16, 6) and model.head.kernel[...].shape == (12, 3)
    x = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    h = x
    for linear, norm in zip(model.hidden, model.norms):
        h = h @ np.asarray(linear.kernel[...]) + np.asarray(linear.bias[...])
        mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = (h - mu) / np.sqrt(var + 1e-5) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
        h = np.concatenate([np.maximum(h, 0), np.maximum(-h, 0)], axis=-1)
    want = h @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-5)
    # the paper's 784-256×4-10 with CReLU: the hidden-to-hidden and head matrices double
    big = MLP(784, (256,) * 4, 10, activation="crelu", rngs=nnx.Rngs(0))
    count = (784 * 256 + 256) + 3 * (512 * 256 + 256) + 4 * 512 + (512 * 10 + 10)
    assert sum(v.size for v in jax.tree.leaves(nnx.state(big, nnx.Param))) == count == 602_122


def test_registry_covers_every_model_key_once_and_builds_what_it_names():
    """Every ``model.*`` key but the name is read by some registered model, and each model's
    keys exist; each model builds from the default config section with its unit layers."""
    import dataclasses

    from gradual_jax import models
    from gradual_jax.config import ModelConfig

    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"name"}
    read = set().union(*(set(spec.keys) for spec in models.MODELS.registered()))
    assert read == fields
    shapes = {"images": models.DataShape((28, 28, 1), 10), "text": models.DataShape((), 30)}
    small = ModelConfig(hidden_sizes=(8, 8), width_multiplier=0.0625, d_model=16, num_heads=2, d_kv=8, d_ff=32)
    for name, spec in zip(models.names(), models.MODELS.registered()):
        model = nnx.eval_shape(lambda spec=spec: spec.build(small, shapes[spec.inputs], nnx.Rngs(0)))
        layers = spec.unit_layers(nnx.state(model, nnx.Param))
        assert layers, name
        assert spec.short(dataclasses.asdict(small)).split()[0] == name
    assert models.get("crelu_mlp").words({"hidden_sizes": (256,) * 4}) == "CReLU MLP 4×256"
    assert models.get("resnet18").words({"width_multiplier": 0.125}) == "ResNet-18 at 1/8 width"
