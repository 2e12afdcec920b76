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
