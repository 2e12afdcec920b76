"""ResNet-18: parameter counts by hand, spatial sizes, init, lanes, bf16."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradual_jax.models import resnet
from gradual_jax.models.resnet import ResNet18

TINY = 1 / 16  # widths 4/8/16/32


def count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny():
    """Widths 4/8/16/32, PyTorch-default init, ImageNet stem (not to be mutated by tests)."""
    return ResNet18(10, width_multiplier=TINY, rngs=nnx.Rngs(0))


def abstract(**kwargs):
    return nnx.eval_shape(lambda: ResNet18(rngs=nnx.Rngs(0), **kwargs))


def torch_out(size, kernel, stride, padding):
    """PyTorch's Conv2d / MaxPool2d output size: floor((H + 2p - k) / s) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------- sizes
def test_parameter_count_by_hand():
    def conv(c_in, c_out, k):
        return c_in * c_out * k * k

    def bn(c):
        return 2 * c  # γ and β; the running mean and variance are BatchStat, not Param

    def block(c_in, c_out):
        n = conv(c_in, c_out, 3) + bn(c_out) + conv(c_out, c_out, 3) + bn(c_out)
        if c_in != c_out:
            n += conv(c_in, c_out, 1) + bn(c_out)  # projection shortcut
        return n

    assert conv(3, 64, 7) == 9_408 and block(64, 64) == 73_984 and block(64, 128) == 230_144
    stages = (2 * block(64, 64) + block(64, 128) + block(128, 128) + block(128, 256) + block(256, 256)
              + block(256, 512) + block(512, 512))
    assert stages == 147_968 + 525_568 + 2_099_712 + 8_393_728
    head = 512 * 10 + 10
    imagenet_stem = conv(3, 64, 7) + bn(64)
    cifar_stem = conv(3, 64, 3) + bn(64)
    assert imagenet_stem + stages + head == 11_181_642
    assert cifar_stem + stages + head == 11_173_962

    _, params, stats = resnet.split(abstract())
    assert count(params) == 11_181_642
    # running mean + variance of the 20 BatchNorms: 2 × (64 + 4·64 + 5·128 + 5·256 + 5·512)
    assert count(stats) == 2 * (64 + 4 * 64 + 5 * 128 + 5 * 256 + 5 * 512) == 9_600
    assert count(nnx.state(abstract(), nnx.Param)) == 11_181_642  # Param alone excludes the stats
    assert count(nnx.state(abstract(cifar_stem=True), nnx.Param)) == 11_173_962
    # torchvision's resnet18() (1000 classes) has 11,689,512 parameters
    assert count(nnx.state(abstract(num_classes=1000), nnx.Param)) == 11_689_512


@pytest.mark.parametrize("size, cifar_stem", [(32, False), (224, False), (32, True)])
def test_spatial_sizes_match_pytorch_formula(size, cifar_stem):
    graphdef, params, stats = resnet.split(abstract(width_multiplier=TINY, cifar_stem=cifar_stem))
    x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
    maps = jax.eval_shape(lambda p, s, x: nnx.merge(graphdef, p, s).activation_maps(x, False), params, stats, x)
    h = torch_out(size, 3, 1, 1) if cifar_stem else torch_out(size, 7, 2, 3)
    assert maps["stem"].shape == (2, h, h, 4)
    if not cifar_stem:
        h = torch_out(h, 3, 2, 1)  # max-pool
    for i, width in enumerate((4, 8, 16, 32)):
        for j in range(2):
            h = torch_out(h, 3, 2 if (i and not j) else 1, 1)
            assert maps[f"layer{i + 1}.{j}.relu1"].shape == (2, h, h, width)
            assert maps[f"layer{i + 1}.{j}"].shape == (2, h, h, width)
    expected = {(32, False): 1, (224, False): 7, (32, True): 4}[(size, cifar_stem)]
    assert h == expected
    logits, _ = jax.eval_shape(lambda p, s, x: resnet.apply(graphdef, p, s, x, train=True), params, stats, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32


def test_max_pool_pads_with_minus_infinity():
    # All-negative input: zero padding would put 0 on the border; -inf padding never wins.
    x = -1.0 - jnp.arange(16.0).reshape(1, 4, 4, 1)
    y = resnet.max_pool(x, 3, 2, 1)
    np.testing.assert_array_equal(np.asarray(y)[0, :, :, 0], [[-1.0, -2.0], [-5.0, -6.0]])


def test_max_pool_gradient_goes_to_the_first_maximum_by_hand():
    # 2×2 map, 3×3 window, stride 2, padding 1: one output whose window is the whole map.
    x = jnp.array([[3.0, 5.0], [5.0, 1.0]]).reshape(1, 2, 2, 1)  # the max 5 twice: (0, 1) comes first
    grad = jax.grad(lambda x: resnet.max_pool(x, 3, 2, 1).sum())(x)
    np.testing.assert_array_equal(np.asarray(grad)[0, :, :, 0], [[0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("shape", [(3, 16, 16, 4), (2, 7, 9, 3), (2, 2, 2, 1)])
def test_max_pool_equals_reduce_window_and_its_gradient(shape):
    """Against lax.reduce_window (what nnx.max_pool runs) and its select_and_scatter gradient, on
    post-ReLU inputs (ties at zero in most windows) and on inputs with ties between positive values."""
    x = jax.nn.relu(jax.random.normal(jax.random.key(0), shape))
    x = x.at[:, ::2].set(jnp.round(x[:, ::2]))  # windows holding equal positive maxima too

    def reference(x):
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    want, want_vjp = jax.vjp(reference, x)
    got, got_vjp = jax.vjp(lambda x: resnet.max_pool(x, 3, 2, 1), x)
    np.testing.assert_array_equal(got, want)
    cotangent = jax.random.normal(jax.random.key(1), want.shape)
    np.testing.assert_allclose(got_vjp(cotangent)[0], want_vjp(cotangent)[0], rtol=1e-6, atol=1e-6)
    lanes = jnp.stack([x, 2.0 * x])  # vmapped over lanes, as the engine runs it
    np.testing.assert_allclose(jax.vmap(jax.grad(lambda x: jnp.sum(resnet.max_pool(x, 3, 2, 1) ** 2)))(lanes)[1],
                               jax.grad(lambda x: jnp.sum(reference(x) ** 2))(2.0 * x), rtol=1e-6)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: resnet.max_pool(x, 3, 2, 1).sum()))(x))
    assert "reduce_window" not in jaxpr and "select_and_scatter" not in jaxpr


@pytest.mark.slow
def test_forward_and_features_shapes(tiny):
    x = jax.random.normal(jax.random.key(0), (3, 32, 32, 3))
    logits, feats, maps, head = nnx.jit(lambda m, x: (m(x, False), m.features(x, False), m.feature_maps(x, False),
                                                       m.fc(m.features(x, False)[-1])))(tiny, x)
    assert logits.shape == (3, 10)
    assert [f.shape for f in feats] == [(3, w) for w in (4, 4, 8, 8, 16, 16, 32, 32)]
    assert all(bool((f >= 0).all()) for f in feats)
    np.testing.assert_allclose(feats[-1], maps[-1].mean((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(head, logits, rtol=1e-5, atol=1e-6)  # the last feature is the head's input


# --------------------------------------------------------------------------- init
def test_torch_default_init(tiny):
    checks = [(tiny.conv1.kernel, 3 * 49), (tiny.layer4[1].conv2.kernel, 32 * 9),
              (tiny.layer3[0].downsample.conv.kernel, 8), (tiny.fc.kernel, 32)]
    for w, fan_in in checks:
        w, bound = np.asarray(w[...]), 1 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
        np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.2)  # U(±b): variance b²/3
    assert np.abs(np.asarray(tiny.fc.bias[...])).max() <= 1 / np.sqrt(32)
    assert np.asarray(tiny.fc.bias[...]).std() > 0.1 / np.sqrt(32)
    for name, value in nnx.to_flat_state(nnx.state(tiny, nnx.BatchStat)):
        np.testing.assert_array_equal(value[...], 0.0 if name[-1] == "mean" else 1.0)
    bns = [tiny.bn1] + [b.bn1 for _, b in tiny.blocks] + [b.bn2 for _, b in tiny.blocks]
    for bn in bns:
        np.testing.assert_array_equal(bn.scale[...], 1.0)
        np.testing.assert_array_equal(bn.bias[...], 0.0)


def test_torchvision_init():
    # one projection block is enough to see the rule (the full model threads `init` to every conv)
    block = resnet.BasicBlock(16, 32, 2, init="torchvision", rngs=nnx.Rngs(2))
    for w, fan_out in ((block.conv1.kernel, 32 * 9), (block.conv2.kernel, 32 * 9), (block.downsample.conv.kernel, 32)):
        w = np.asarray(w[...])
        np.testing.assert_allclose(w.std(), np.sqrt(2 / fan_out), rtol=0.1)  # kaiming_normal, fan_out, relu
        assert abs(w.mean()) < 0.1 * w.std()
    np.testing.assert_array_equal(block.bn1.scale[...], 1.0)
    np.testing.assert_array_equal(block.bn1.bias[...], 0.0)
    model = abstract(init="torchvision")
    assert model.init == "torchvision"
    with pytest.raises(ValueError, match="init"):
        ResNet18(10, init="xavier", rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------- lanes
@pytest.mark.slow
def test_vmapped_lanes_keep_separate_statistics(tiny):
    graphdef, params, stats = resnet.split(tiny)

    def step(params, stats, x):  # the engine's pattern: a train-mode forward returns the new statistics
        return resnet.apply(graphdef, params, stats, x, train=True)

    xs = jax.random.normal(jax.random.key(3), (2, 4, 16, 16, 3)) * jnp.array([1.0, 3.0]).reshape(2, 1, 1, 1, 1)
    def lanes(tree):
        return jax.tree.map(lambda a: jnp.stack([a, a]), tree)

    logits, new_stats = jax.jit(jax.vmap(step))(lanes(params), lanes(stats), xs)
    single = jax.jit(step)
    for lane in range(2):
        want_logits, want_stats = single(params, stats, xs[lane])
        np.testing.assert_allclose(logits[lane], want_logits, rtol=1e-4, atol=1e-5)
        got_stats = jax.tree.map(lambda a, i=lane: a[i], new_stats)
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6), got_stats, want_stats)
    flat = [np.asarray(v[...]) for _, v in nnx.to_flat_state(new_stats)]
    old = [np.asarray(v[...]) for _, v in nnx.to_flat_state(stats)]
    assert len(flat) == 40
    assert all(not np.allclose(v[0], v[1]) for v in flat)  # each lane has its own statistics
    assert all(not np.allclose(v[0], o) for v, o in zip(flat, old))  # and they moved
    # eval mode returns the statistics unchanged
    _, same = resnet.apply(graphdef, params, stats, xs[0], train=False)
    jax.tree.map(np.testing.assert_array_equal, same, stats)


# --------------------------------------------------------------------------- bfloat16
@pytest.mark.slow
def test_bfloat16_compute_is_close_to_float32(tiny):
    x = jax.random.normal(jax.random.key(4), (32, 32, 32, 3))
    bf16 = ResNet18(10, width_multiplier=TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    graphdef, params, stats = resnet.split(bf16)
    _, p32, _ = resnet.split(tiny)
    jax.tree.map(np.testing.assert_array_equal, params, p32)  # the same float32 parameters
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))
    f32_graphdef = resnet.split(tiny)[0]

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def run(graphdef, params, stats, x, train):
        logits, new_stats = resnet.apply(graphdef, params, stats, x, train=train)
        return logits, new_stats

    maps = jax.eval_shape(lambda p, s, x: nnx.merge(graphdef, p, s).feature_maps(x, False), params, stats, x)
    assert all(m.dtype == jnp.bfloat16 for m in maps)
    for train in (True, False):
        a, sa = run(f32_graphdef, p32, stats, x, train)
        b, sb = run(graphdef, params, stats, x, train)
        assert b.dtype == jnp.float32
        # eval: ~0.2 % of the logits' scale. Train-mode BN re-centres every layer on the batch, which
        # magnifies bf16 rounding where the batch spread is small next to the mean: ~3 % at batch 32.
        np.testing.assert_allclose(b, a, atol=(0.08 if train else 0.01) * float(jnp.abs(a).max()))
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=0.05, atol=0.05), sb, sa)


# --------------------------------------------------------------------------- PyTorch reference
@pytest.mark.slow
@pytest.mark.needs_torch
def test_matches_pytorch_reference():
    """A hand-built PyTorch ResNet-18 (torchvision's layout) with our weights: logits in train
    and eval mode, gradients, and running statistics after one training forward."""
    import torch
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(c_out)
            self.conv2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(c_out)
            self.downsample = (tnn.Sequential(tnn.Conv2d(c_in, c_out, 1, stride, bias=False), tnn.BatchNorm2d(c_out))
                               if stride != 1 or c_in != c_out else None)

        def forward(self, x):
            h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(h + (x if self.downsample is None else self.downsample(x)))

    widths = (4, 8, 16, 32)
    blocks, c = [], widths[0]
    for i, w in enumerate(widths):
        for j in range(2):
            blocks.append(Block(c, w, 2 if (i and not j) else 1))
            c = w
    net = tnn.Sequential(tnn.Conv2d(3, 4, 7, 2, 3, bias=False), tnn.BatchNorm2d(4), tnn.ReLU(),
                         tnn.MaxPool2d(3, 2, 1), *blocks, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
                         tnn.Linear(32, 10)).double()

    model = ResNet18(10, width_multiplier=TINY, rngs=nnx.Rngs(0))  # same shapes as `tiny`: no new compiles
    ours_convs = [model.conv1] + [m for _, b in model.blocks for m in (b.conv1, b.conv2)
                                  + ((b.downsample.conv,) if b.downsample is not None else ())]
    ours_bns = [model.bn1] + [m for _, b in model.blocks for m in (b.bn1, b.bn2)
                              + ((b.downsample.bn,) if b.downsample is not None else ())]
    torch_convs = [m for m in net.modules() if isinstance(m, tnn.Conv2d)]
    torch_bns = [m for m in net.modules() if isinstance(m, tnn.BatchNorm2d)]
    assert len(ours_convs) == len(torch_convs) == 20 and len(ours_bns) == len(torch_bns) == 20
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for ours, theirs in zip(ours_convs, torch_convs):
            theirs.weight.copy_(torch.from_numpy(np.asarray(ours.kernel[...]).transpose(3, 2, 0, 1).astype(np.float64)))
        for ours, theirs in zip(ours_bns, torch_bns):  # non-trivial γ, β to exercise the affine part
            gamma, beta = rng.uniform(0.5, 1.5, ours.num_features), rng.normal(0, 0.1, ours.num_features)
            ours.scale[...], ours.bias[...] = jnp.asarray(gamma, jnp.float32), jnp.asarray(beta, jnp.float32)
            theirs.weight.copy_(torch.from_numpy(gamma))
            theirs.bias.copy_(torch.from_numpy(beta))
        net[-1].weight.copy_(torch.from_numpy(np.asarray(model.fc.kernel[...]).T.astype(np.float64)))
        net[-1].bias.copy_(torch.from_numpy(np.asarray(model.fc.bias[...]).astype(np.float64)))

    x = rng.normal(size=(6, 32, 32, 3)).astype(np.float32)
    y = np.arange(6) % 10
    graphdef, params, stats = resnet.split(model)

    def loss_fn(p):
        logits, new_stats = resnet.apply(graphdef, p, stats, jnp.asarray(x), train=True)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y]), (logits, new_stats)

    (_, (logits, new_stats)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64))
    net.train()
    tlogits = net(xt)
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(y))
    tloss.backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-4, atol=1e-4)
    model = nnx.merge(graphdef, params, new_stats)
    ours_bns = [model.bn1] + [m for _, b in model.blocks for m in (b.bn1, b.bn2)
                              + ((b.downsample.bn,) if b.downsample is not None else ())]
    for ours, theirs in zip(ours_bns, torch_bns):
        np.testing.assert_allclose(ours.mean[...], theirs.running_mean.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ours.var[...], theirs.running_var.numpy(), rtol=1e-4, atol=1e-5)
    grad_model = nnx.merge(graphdef, grads, new_stats)
    for ours, theirs in ((np.asarray(grad_model.conv1.kernel[...]).transpose(3, 2, 0, 1), torch_convs[0].weight.grad),
                         (np.asarray(grad_model.layer3[0].conv1.kernel[...]).transpose(3, 2, 0, 1),
                          torch_convs[10].weight.grad),
                         (np.asarray(grad_model.bn1.scale[...]), torch_bns[0].weight.grad),
                         (np.asarray(grad_model.fc.kernel[...]).T, net[-1].weight.grad)):
        theirs = theirs.numpy()  # float32 vs float64: compare relative to the gradient's scale
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())
    net.eval()
    with torch.no_grad():
        eval_logits, _ = jax.jit(lambda p, s, x: resnet.apply(graphdef, p, s, x, train=False))(params, new_stats, x)
        np.testing.assert_allclose(eval_logits, net(xt).numpy(), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- small maps as dots
# (input side, kernel, stride, padding): every convolution of layers 3-4 at 28- or 32-pixel inputs
SMALL_MAPS = {
    "1x1 map, 3x3 stride 1": (1, 3, 1, 1),
    "2x2 to 1x1, 3x3 stride 2": (2, 3, 2, 1),
    "2x2 map, 3x3 stride 1": (2, 3, 1, 1),
    "2x2 to 1x1, 1x1 downsample": (2, 1, 2, 0),
    "4x4 to 2x2, 3x3 stride 2": (4, 3, 2, 1),
    "4x4 to 2x2, 1x1 downsample": (4, 1, 2, 0),
}
BIG_MAPS = {"4x4 map, 3x3 stride 1": (4, 3, 1, 1), "8x8 to 4x4, 3x3 stride 2": (8, 3, 2, 1),
            "7x7 map, 3x3 stride 1": (7, 3, 1, 1)}


def conv_args(side, kernel, stride, padding, channels=(5, 6), batch=3):
    x = jax.random.normal(jax.random.key(0), (batch, side, side, channels[0]))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, *channels))
    return x, w, (stride, stride), ((padding, padding), (padding, padding))


def lax_conv(x, w, strides, padding):
    return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=resnet.NHWC_HWIO)


def model_conv(x, w, strides, padding):
    return resnet.conv_general_dilated(x, w, strides, padding, dimension_numbers=resnet.NHWC_HWIO)


def has_convolution(fn, *args) -> bool:
    return "conv_general_dilated" in str(jax.make_jaxpr(fn)(*args))


def test_window_spans_by_hand():
    # (first input index, first tap, taps) per output index
    assert resnet.window_spans(1, 3, 1, (1, 1)) == [(0, 1, 1)]  # 1×1 map: the centre tap only
    assert resnet.window_spans(2, 3, 2, (1, 1)) == [(0, 1, 2)]  # 2 → 1, stride 2: taps 1 and 2
    assert resnet.window_spans(2, 3, 1, (1, 1)) == [(0, 1, 2), (0, 0, 2)]
    assert resnet.window_spans(4, 3, 2, (1, 1)) == [(0, 1, 2), (1, 0, 3)]
    assert resnet.window_spans(2, 1, 2, (0, 0)) == [(0, 0, 1)]
    assert resnet.window_spans(1, 3, 1, (3, 3)) == [(0, 0, 0), (0, 2, 1), (0, 1, 1), (0, 0, 1), (0, 0, 0)]
    x, w, strides, padding = conv_args(1, 3, 1, 3)  # windows wholly on padding give zeros
    np.testing.assert_allclose(resnet.conv_by_dots(x, w, strides, padding), lax_conv(x, w, strides, padding),
                               rtol=1e-6, atol=1e-6)


def test_one_pixel_map_is_the_centre_tap_as_a_dense_layer():
    x, w, strides, padding = conv_args(*SMALL_MAPS["1x1 map, 3x3 stride 1"])
    np.testing.assert_allclose(model_conv(x, w, strides, padding)[:, 0, 0], x[:, 0, 0] @ w[1, 1], rtol=1e-6)
    x, w, strides, padding = conv_args(*SMALL_MAPS["2x2 to 1x1, 3x3 stride 2"])
    by_hand = sum(x[:, i, j] @ w[1 + i, 1 + j] for i in range(2) for j in range(2))
    np.testing.assert_allclose(model_conv(x, w, strides, padding)[:, 0, 0], by_hand, rtol=1e-5)


@pytest.mark.parametrize("case", list(SMALL_MAPS))
def test_small_maps_are_dots_equal_to_the_convolution(case):
    args = conv_args(*SMALL_MAPS[case])
    x, w, strides, padding = args
    assert resnet.uses_dots(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    want, want_vjp = jax.vjp(lambda x, w: lax_conv(x, w, strides, padding), x, w)
    got, got_vjp = jax.vjp(lambda x, w: model_conv(x, w, strides, padding), x, w)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cotangent = jax.random.normal(jax.random.key(2), want.shape)
    for g, h in zip(got_vjp(cotangent), want_vjp(cotangent)):
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda x, w: jnp.sum(jnp.sin(model_conv(x, w, strides, padding))), argnums=(0, 1))
    assert not has_convolution(grad, x, w)  # forward and backward: products only


@pytest.mark.parametrize("case", list(BIG_MAPS))
def test_big_maps_stay_convolutions(case):
    x, w, strides, padding = conv_args(*BIG_MAPS[case])
    assert not resnet.uses_dots(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    assert has_convolution(lambda x, w: model_conv(x, w, strides, padding), x, w)
    np.testing.assert_array_equal(model_conv(x, w, strides, padding), lax_conv(x, w, strides, padding))


def test_only_layers_3_and_4_become_dots_at_32_pixels(tiny):
    """Stem, layer1 (8×8) and layer2 (4×4: conv1, conv2, conv1, conv2, downsample) stay 10
    convolutions; the 10 convolutions of layers 3-4 (2×2 and 1×1 outputs) are products."""
    graphdef, params, stats = resnet.split(tiny)
    jaxpr = str(jax.make_jaxpr(lambda p: resnet.apply(graphdef, p, stats, jnp.zeros((2, 32, 32, 3)),
                                                      train=True)[0])(params))
    assert jaxpr.count("conv_general_dilated[") == 10


def test_dots_keep_the_compute_dtype():
    x, w, strides, padding = conv_args(*SMALL_MAPS["2x2 map, 3x3 stride 1"])
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    got = model_conv(x, w, strides, padding)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), lax_conv(x, w, strides, padding).astype(jnp.float32),
                               rtol=2e-2, atol=5e-2)


# --------------------------------------------------------------------------- one input channel as patches
# (input side, kernel, stride, padding): the ImageNet stem on 28×28 and 32×32 grey-scale images, the
# CIFAR stem, and a stride that does not divide the padded side
ONE_CHANNEL = {"28x28 ImageNet stem": (28, 7, 2, 3), "32x32 ImageNet stem": (32, 7, 2, 3),
               "CIFAR stem": (9, 3, 1, 1), "uneven stride": (10, 3, 3, 0)}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if "ImageNet" in c else c for c in ONE_CHANNEL])
def test_one_channel_convolutions_are_products_equal_to_the_convolution(case):
    x, w, strides, padding = conv_args(*ONE_CHANNEL[case], channels=(1, 6))
    assert resnet.uses_patches(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    want, want_vjp = jax.vjp(lambda x, w: lax_conv(x, w, strides, padding), x, w)
    got, got_vjp = jax.vjp(lambda x, w: resnet.conv_by_patches(x, w, strides, padding), x, w)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    cotangent = jax.random.normal(jax.random.key(2), want.shape)
    for g, h in zip(got_vjp(cotangent), want_vjp(cotangent)):
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-5)
    grad = jax.grad(lambda x, w: jnp.sum(jnp.sin(resnet.conv_by_patches(x, w, strides, padding))), argnums=(0, 1))
    assert not has_convolution(grad, x, w)  # forward and backward: products, slices and pads


def test_one_channel_rule_by_shape():
    x, w, strides, padding = conv_args(28, 7, 2, 3, channels=(1, 4))
    assert resnet.uses_patches(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    x3, w3, *_ = conv_args(28, 7, 2, 3, channels=(3, 4))  # colour images keep the convolution
    assert not resnet.uses_patches(x3.shape, w3.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    x1, w1, s1, p1 = conv_args(*SMALL_MAPS["1x1 map, 3x3 stride 1"], channels=(1, 4))  # small maps: dots
    assert not resnet.uses_patches(x1.shape, w1.shape, s1, p1, dimension_numbers=resnet.NHWC_HWIO)
    assert not resnet.uses_patches(x.shape, w.shape, strides, "SAME", dimension_numbers=resnet.NHWC_HWIO)


def test_grey_scale_stem_on_cpu_is_a_product():
    """On CPU the model's stem on 28×28×1 images has no convolution; layer1 and layer2's 10 stay."""
    model = ResNet18(10, in_channels=1, width_multiplier=TINY, rngs=nnx.Rngs(0))
    graphdef, params, stats = resnet.split(model)
    jaxpr = str(jax.make_jaxpr(lambda p: resnet.apply(graphdef, p, stats, jnp.zeros((2, 28, 28, 1)),
                                                      train=True)[0])(params))
    want = 9 if jax.default_backend() == "cpu" else 10
    assert jaxpr.count("conv_general_dilated[") == want


def test_patches_keep_the_compute_dtype():
    x, w, strides, padding = conv_args(*ONE_CHANNEL["CIFAR stem"], channels=(1, 6))
    x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    got = resnet.conv_by_patches(x, w, strides, padding)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), lax_conv(x, w, strides, padding).astype(jnp.float32),
                               rtol=2e-2, atol=1e-1)


# --------------------------------------------------------------------------- colour stem by space-to-depth
# (input side, kernel, stride, padding): the ImageNet stem at 32 and 28 pixels, an odd side, a
# stride-2 3×3, and an even kernel whose last input row no output reads
STRIDE_TWO = {"32x32 ImageNet stem": (32, 7, 2, 3), "28x28 ImageNet stem": (28, 7, 2, 3),
              "odd side": (9, 7, 2, 3), "3x3 stride 2": (10, 3, 2, 1), "even kernel": (11, 4, 2, 0)}


@pytest.mark.parametrize("case, channels", [
    *[pytest.param(c, 3, marks=pytest.mark.slow) if c == "28x28 ImageNet stem" else (c, 3) for c in STRIDE_TWO],
    ("32x32 ImageNet stem", 2), ("3x3 stride 2", 4)])
def test_space_to_depth_is_the_convolution_and_its_gradients(case, channels):
    x, w, strides, padding = conv_args(*STRIDE_TWO[case], channels=(channels, 5))
    assert resnet.uses_space_to_depth(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    want, want_vjp = jax.vjp(lambda x, w: lax_conv(x, w, strides, padding), x, w)
    got, got_vjp = jax.vjp(lambda x, w: resnet.conv_by_space_to_depth(x, w, padding), x, w)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    cotangent = jax.random.normal(jax.random.key(2), want.shape)
    for g, h in zip(got_vjp(cotangent), want_vjp(cotangent)):
        np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-4)


def test_space_to_depth_rule_by_shape():
    x, w, strides, padding = conv_args(32, 7, 2, 3, channels=(3, 4))
    assert resnet.uses_space_to_depth(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    for channels in (1, 8):  # grey-scale images take patches; a block's convolutions stay themselves
        x, w, *_ = conv_args(32, 7, 2, 3, channels=(channels, 4))
        assert not resnet.uses_space_to_depth(x.shape, w.shape, strides, padding, dimension_numbers=resnet.NHWC_HWIO)
    x, w, *_ = conv_args(32, 3, 1, 1, channels=(3, 4))  # stride 1
    assert not resnet.uses_space_to_depth(x.shape, w.shape, (1, 1), ((1, 1), (1, 1)), dimension_numbers=resnet.NHWC_HWIO)
    x, w, s, p = conv_args(*SMALL_MAPS["2x2 to 1x1, 3x3 stride 2"], channels=(3, 4))  # small maps: dots
    assert not resnet.uses_space_to_depth(x.shape, w.shape, s, p, dimension_numbers=resnet.NHWC_HWIO)


def test_colour_stem_on_cpu_goes_by_space_to_depth(monkeypatch):
    """At width 1/8 (blocks of 8 channels and more) the stem is the one stride-2 convolution of
    at most 4 channels."""
    calls = []
    monkeypatch.setattr(resnet, "conv_by_space_to_depth",
                        lambda *a, fn=resnet.conv_by_space_to_depth: calls.append(a[0].shape) or fn(*a))
    model = ResNet18(10, width_multiplier=1 / 8, rngs=nnx.Rngs(0))
    graphdef, params, stats = resnet.split(model)
    jax.make_jaxpr(lambda p: resnet.apply(graphdef, p, stats, jnp.zeros((2, 32, 32, 3)), train=True)[0])(params)
    assert calls == ([(2, 32, 32, 3)] if jax.default_backend() == "cpu" else [])
