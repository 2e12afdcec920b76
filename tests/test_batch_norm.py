"""BatchNorm: PyTorch's running statistics by hand, evaluation mode, masks, and the training-mode
arithmetic's closed-form gradient against JAX's derivative of the same formula."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import nnx

from gradual_jax.models import batch_norm
from gradual_jax.models.batch_norm import BatchNorm, count, mask_weights, normalize


@pytest.mark.slow
def test_batchnorm_train_normalises_with_batch_statistics():
    x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (16, 5, 5, 6))
    bn = BatchNorm(6)
    y = np.asarray(bn(x, train=True))
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    var = np.asarray(x).var((0, 1, 2))  # biased variance normalises: y.var = var / (var + eps)
    np.testing.assert_allclose(y.var((0, 1, 2)), var / (var + 1e-5), rtol=1e-4)


def test_batchnorm_running_statistics_pytorch_formula():
    # 2 examples × 1×2 pixels × 2 channels: n = 4 values per channel
    x1 = np.array([[[[1.0, -2.0], [3.0, 0.0]]], [[[5.0, 2.0], [7.0, 6.0]]]], np.float32)
    x2 = np.array([[[[0.0, 1.0], [0.0, 1.0]]], [[[2.0, 1.0], [2.0, 5.0]]]], np.float32)
    bn = BatchNorm(2)
    bn(jnp.asarray(x1), train=True)
    # by hand: channel 0 = {1, 3, 5, 7}: mean 4, unbiased var (9+1+1+9)/3 = 20/3;
    #          channel 1 = {-2, 0, 2, 6}: mean 1.5, unbiased var (12.25+2.25+0.25+20.25)/3 = 35/3
    np.testing.assert_allclose(bn.mean[...], [0.1 * 4.0, 0.1 * 1.5], rtol=1e-6)
    np.testing.assert_allclose(bn.var[...], [0.9 + 0.1 * 20 / 3, 0.9 + 0.1 * 35 / 3], rtol=1e-6)
    # a second step by PyTorch's formula in numpy
    rm = 0.9 * np.array([0.4, 0.15]) + 0.1 * x2.reshape(-1, 2).mean(0)
    rv = 0.9 * np.array([0.9 + 2 / 3, 0.9 + 3.5 / 3]) + 0.1 * x2.reshape(-1, 2).var(0, ddof=1)
    bn(jnp.asarray(x2), train=True)
    np.testing.assert_allclose(bn.mean[...], rm, rtol=1e-6)
    np.testing.assert_allclose(bn.var[...], rv, rtol=1e-6)
    # flax's own nnx.BatchNorm uses the biased variance (8.75 for channel 1) for the running
    # update: the reason this module has its own BatchNorm
    flax_bn = nnx.BatchNorm(2, momentum=0.9, epsilon=1e-5, use_fast_variance=False, rngs=nnx.Rngs(0))
    flax_bn(jnp.asarray(x1))
    np.testing.assert_allclose(flax_bn.var[...], [0.9 + 0.1 * 5.0, 0.9 + 0.1 * 8.75], rtol=1e-6)


def test_batchnorm_eval_uses_running_statistics():
    bn = BatchNorm(3)
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.5])
    gamma, beta = np.array([1.5, -0.5, 2.0]), np.array([0.1, 0.2, -0.3])
    bn.mean[...], bn.var[...] = jnp.asarray(rm, jnp.float32), jnp.asarray(rv, jnp.float32)
    bn.scale[...], bn.bias[...] = jnp.asarray(gamma, jnp.float32), jnp.asarray(beta, jnp.float32)
    x = np.asarray(jax.random.normal(jax.random.key(1), (4, 3, 3, 3)))
    y = bn(jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(bn.mean[...], rm.astype(np.float32))  # eval leaves them alone
    np.testing.assert_array_equal(bn.var[...], rv.astype(np.float32))


def test_batchnorm_mask_ignores_padded_examples():
    x = jax.random.normal(jax.random.key(2), (6, 2, 2, 3))
    valid = jnp.array([True, True, True, True, False, False])
    masked, plain = BatchNorm(3), BatchNorm(3)
    y = masked(x.at[4:].set(100.0), train=True, mask=valid)
    want = plain(x[:4], train=True)
    np.testing.assert_allclose(y[:4], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(masked.mean[...], plain.mean[...], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(masked.var[...], plain.var[...], rtol=1e-5)


# --------------------------------------------------------------------------- the closed-form gradient
def stepwise(x, scale, bias, weights, epsilon):
    """The two-pass formula, for JAX to differentiate operation by operation."""
    axes = tuple(range(x.ndim - 1))
    kept = 1.0 if weights is None else weights
    n = count(x, weights)
    mean = (x * kept).sum(axes) / n
    var = (jnp.square(x - mean) * kept).sum(axes) / n
    return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias, mean, var


class NormalizeGradientTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("maps", (6, 3, 3, 4), None),
        ("maps_masked", (6, 3, 3, 4), (1, 1, 0, 1, 0, 1)),
        ("vectors", (7, 5), None),
        ("vectors_masked", (7, 5), (1, 0, 1, 1, 1, 1, 0)),
    )
    def test_values_and_gradients_equal_the_stepwise_formula(self, shape, mask):
        with jax.enable_x64(True):
            x = 1.0 + 2.0 * jax.random.normal(jax.random.key(0), shape, jnp.float64)
            scale = jnp.linspace(0.5, 1.5, shape[-1], dtype=jnp.float64)
            bias = jnp.linspace(-1.0, 1.0, shape[-1], dtype=jnp.float64)
            weights = None if mask is None else mask_weights(x, jnp.asarray(mask, bool)).astype(jnp.float64)
            want = stepwise(x, scale, bias, weights, 1e-5)
            # a cotangent on every output, the statistics included
            cotangents = [jax.random.normal(jax.random.key(i), w.shape, jnp.float64) for i, w in enumerate(want, 1)]

            def pulled(fn):
                return lambda *a: sum(jnp.vdot(o, c) for o, c in zip(fn(*a, weights, 1e-5), cotangents))

            got = self.variant(normalize, static_argnums=4)(x, scale, bias, weights, 1e-5)
            chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-12)
            grads = self.variant(jax.grad(pulled(normalize), (0, 1, 2)))(x, scale, bias)
            chex.assert_trees_all_close(grads, jax.grad(pulled(stepwise), (0, 1, 2))(x, scale, bias),
                                        rtol=1e-10, atol=1e-12)

    def test_gradient_matches_finite_differences(self):
        with jax.enable_x64(True):
            x = jax.random.normal(jax.random.key(3), (5, 2, 2, 3), jnp.float64)
            weights = mask_weights(x, jnp.array([True, True, False, True, True]))
            jax.test_util.check_grads(lambda x, s, b: normalize(x, s, b, weights, 1e-5),
                                      (x, jnp.ones(3, jnp.float64), jnp.zeros(3, jnp.float64)),
                                      order=1, modes=("rev",))


def test_an_example_left_out_of_the_statistics_is_normalised_by_them_alone():
    # its input's gradient is only its own output's, γ·r·g: the statistics do not depend on it
    x = jax.random.normal(jax.random.key(4), (5, 2, 2, 3))
    mask = jnp.array([True, True, True, False, True])
    scale = jnp.array([1.5, 0.5, 2.0])
    _, pull = jax.vjp(lambda x: normalize(x, scale, jnp.zeros(3), mask_weights(x, mask), 1e-5)[0], x)
    kept = np.asarray(x)[np.asarray(mask)].reshape(-1, 3)
    inv_std = 1 / np.sqrt(kept.var(0) + 1e-5)
    (own,) = pull(jnp.zeros((5, 2, 2, 3)).at[3].set(1.0))  # a cotangent on the left-out example only
    np.testing.assert_allclose(own[3], np.broadcast_to(np.asarray(scale) * inv_std, (2, 2, 3)), rtol=1e-5)
    (others,) = pull(jax.random.normal(jax.random.key(5), (5, 2, 2, 3)).at[3].set(0.0))  # on the kept ones
    np.testing.assert_array_equal(others[3], 0.0)


@pytest.mark.parametrize("shape", [(250, 16, 16, 8), (250, 1, 1, 64), (7, 3)])
def test_channel_sum_is_the_sum_over_all_but_the_channels(shape):
    # an offset, so that the float32 sum's rounding shows: the reduction's tree is within 1e-6 of
    # the float64 sum at 64,000 values (a product with a vector of ones is within 1e-5 only)
    x = 3.0 + np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    want = x.astype(np.float64).sum(axis=tuple(range(len(shape) - 1)))
    got = batch_norm.channel_sum(jnp.asarray(x))
    assert got.shape == (shape[-1],) and got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
