"""The canonical-gradient convolution: JAX's values and gradients, and canonical convolutions in a scan."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from gradual_jax.models import canonical_conv, resnet

CANONICAL = "b01f_01io->b01f"


def lax_conv(x, w, strides, padding):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=canonical_conv.NHWC_HWIO)


def conv_labels(fn, *args) -> list[str]:
    """The dimension labels of every convolution XLA compiled ``fn`` into."""
    return re.findall(r"convolution\(.*dim_labels=([^,]*)", jax.jit(fn).lower(*args).compile().as_text())


def scan_of_steps(conv):
    """Three gradient steps on a kernel through ``conv``, in a ``lax.scan``: a training run's shape."""
    def step(w, x):
        return w - 1e-3 * jax.grad(lambda w: jnp.sum(jnp.sin(conv(x, w, (2, 2), ((1, 1), (1, 1))))))(w), None
    return lambda w, xs: jax.lax.scan(step, w, xs)[0]


class GradientsTest(parameterized.TestCase):

    @parameterized.named_parameters(
        ("3x3_stride1", 6, 7, 3, 1, 1),
        ("3x3_stride2", 7, 8, 3, 2, 1),
        ("imagenet_stem", 28, 28, 7, 2, 3),
        ("1x1_stride2_shortcut", 7, 9, 1, 2, 0),
        ("last_rows_outside_every_window", 5, 6, 3, 2, 0),  # negative input-gradient padding
        ("stride3_even_kernel", 9, 9, 4, 3, 1),
    )
    def test_values_and_gradients_are_lax_s(self, height, width, kernel, stride, pad):
        x = jax.random.normal(jax.random.key(0), (3, height, width, 4))
        w = jax.random.normal(jax.random.key(1), (kernel, kernel, 4, 5))
        strides, padding = (stride, stride), ((pad, pad), (pad, pad))

        def loss(conv):
            return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding)))

        chex.assert_trees_all_close(canonical_conv.conv(x, w, strides, padding), lax_conv(x, w, strides, padding),
                                    rtol=1e-5, atol=1e-5)
        want = jax.grad(loss(lax_conv), (0, 1))(x, w)
        chex.assert_trees_all_close(jax.grad(loss(canonical_conv.conv), (0, 1))(x, w), want, rtol=1e-5, atol=1e-4)
        # lanes: each lane its own input and kernel
        lanes = (jnp.stack([x, 2 * x]), jnp.stack([w, -w]))
        chex.assert_trees_all_close(jax.vmap(jax.grad(loss(canonical_conv.conv), (0, 1)))(*lanes),
                                    jax.vmap(jax.grad(loss(lax_conv), (0, 1)))(*lanes), rtol=1e-5, atol=1e-4)


def test_example_chunks_by_hand():
    assert canonical_conv.example_chunks(70, 32) == [(0, 32), (32, 64), (64, 70)]
    assert canonical_conv.example_chunks(64, 32) == [(0, 32), (32, 64)]
    assert canonical_conv.example_chunks(5, 32) == [(0, 5)]


def test_kernel_gradient_in_chunks_is_lax_s(monkeypatch):
    """Five examples in chunks of two: three kernel-gradient convolutions, summed, equal to JAX's
    gradient of the one convolution; the input's gradient is untouched."""
    monkeypatch.setattr(canonical_conv, "KERNEL_GRADIENT_EXAMPLES", 2)
    x = jax.random.normal(jax.random.key(0), (5, 7, 8, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    strides, padding = (2, 2), ((1, 1), (1, 1))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, strides, padding)))

    chex.assert_trees_all_close(jax.grad(loss(canonical_conv.conv), (0, 1))(x, w),
                                jax.grad(loss(lax_conv), (0, 1))(x, w), rtol=1e-5, atol=1e-4)
    grad_of_kernel = jax.grad(loss(canonical_conv.conv), 1)
    assert len(conv_labels(grad_of_kernel, x, w)) == 1 + 3  # the forward, then one per chunk


def test_padding_of_the_gradients_by_hand():
    # 3×3 stride 2 padding 1 on 7 pixels → 4 outputs: (4-1)·2+1 = 7 dilated
    assert canonical_conv.input_gradient_padding(7, 3, 2, (1, 1), 4) == (1, 1)
    assert canonical_conv.kernel_gradient_padding(7, 3, 2, (1, 1), 4) == (1, 1)
    # 3×3 stride 2 no padding on 6 pixels → 2 outputs: the last input row is in no window
    assert canonical_conv.input_gradient_padding(6, 3, 2, (0, 0), 2) == (2, 3)
    assert canonical_conv.kernel_gradient_padding(6, 3, 2, (0, 0), 2) == (0, -1)


def test_in_a_scan_every_convolution_is_canonical():
    """Why the module exists: inside a scan XLA:CPU leaves lax's gradient convolutions permuted
    (its canonicalisation visits the top level only); this one's are canonical there too."""
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 5))
    xs = jax.random.normal(jax.random.key(0), (3, 2, 8, 8, 4))
    if jax.default_backend() == "cpu":
        assert set(conv_labels(scan_of_steps(lax_conv), w, xs)) != {CANONICAL}
    labels = conv_labels(scan_of_steps(canonical_conv.conv), w, xs)
    assert len(labels) >= 2 and set(labels) == {CANONICAL}  # the forward and the kernel gradient at least
    np.testing.assert_allclose(scan_of_steps(canonical_conv.conv)(w, xs), scan_of_steps(lax_conv)(w, xs),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the ResNet takes it on CPU only")
def test_the_resnet_takes_it_for_plain_convolutions_on_cpu_and_lax_s_otherwise():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    padding = ((1, 1), (1, 1))
    jaxpr = str(jax.make_jaxpr(lambda x, w: resnet.conv_general_dilated(
        x, w, (1, 1), padding, dimension_numbers=resnet.NHWC_HWIO))(x, w))
    assert "custom_vjp_call" in jaxpr
    dilated = str(jax.make_jaxpr(lambda x, w: resnet.conv_general_dilated(
        x, w, (1, 1), padding, rhs_dilation=(2, 2), dimension_numbers=resnet.NHWC_HWIO))(x, w))
    assert "custom_vjp_call" not in dilated and "conv_general_dilated" in dilated
