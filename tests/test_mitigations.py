"""Plasticity mitigations: each piece against a hand-computed or constructed case,
strength 0 as an exact no-op, and vmap over lanes equal to each lane alone."""

from __future__ import annotations

import functools
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gradual_jax import mitigations as mit
from gradual_jax.models.paths import leaf_dict, map_named, path_tree
from gradual_jax.models import MLP, mlp


# --------------------------------------------------------------------------- helpers
def _adam(lr=1e-3):
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr)


@functools.cache
def _mlp(in_features=6, hidden=(20, 20), classes=3, seed=0, **kw):
    graphdef, params = nnx.split(MLP(in_features, hidden, classes, rngs=nnx.Rngs(seed), **kw), nnx.Param)
    return graphdef, params


def _set(params, name, fn):
    """Functional update of one named leaf: ``fn(old) -> new``."""
    return map_named(lambda n, x: fn(x) if n == name else x, params)


def _random_moments(tx, opt_state, params, key):
    """Fill Adam's mu (random) and nu (random positive) so that zeroing is visible."""
    names = path_tree(params)

    def fill(m, name):
        k = jax.random.fold_in(key, zlib.crc32(name.encode()) % 2**31)
        return jax.random.uniform(k, m.shape, m.dtype, 0.5, 1.5)

    return optax.tree_utils.tree_map_params(tx, fill, opt_state, names)


def _moments(tx, opt_state, params) -> dict[str, list[np.ndarray]]:
    """name -> [mu, nu] (every parameter-shaped tree of the optimizer state, in order)."""
    got: dict[str, list] = {}

    def record(m, name):
        got.setdefault(name, []).append(np.asarray(m))
        return m

    optax.tree_utils.tree_map_params(tx, record, opt_state, path_tree(params))
    return got


def _np_leaves(tree) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in leaf_dict(tree).items()}


def _assert_trees_bitwise(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
        assert x.tobytes() == y.tobytes()  # bit for bit, signed zeros included


def _rotation(t):
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)


# --------------------------------------------------------------------------- loss terms
def test_l2_and_l2_init_gradients_match_hand_computed():
    w = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    b = np.array([0.25, -1.5], np.float32)
    params = {"dense": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
    s = 0.7
    value, grads = jax.value_and_grad(lambda p: mit.l2(p, s))(params)
    np.testing.assert_allclose(value, s * (np.sum(w ** 2) + np.sum(b ** 2)), rtol=1e-6)
    np.testing.assert_allclose(grads["dense"]["kernel"], 2 * s * w, rtol=1e-6)
    np.testing.assert_allclose(grads["dense"]["bias"], 2 * s * b, rtol=1e-6)

    grads = jax.grad(lambda p: mit.l2(p, s, kernels_only=True))(params)  # the ResNet variant
    np.testing.assert_allclose(grads["dense"]["kernel"], 2 * s * w, rtol=1e-6)
    np.testing.assert_array_equal(grads["dense"]["bias"], 0.0)

    w0, b0 = w - 0.5, b + 1.0
    init = {"dense": {"kernel": jnp.asarray(w0), "bias": jnp.asarray(b0)}}
    value, grads = jax.value_and_grad(lambda p: mit.l2_init(p, init, s))(params)
    np.testing.assert_allclose(value, s * (np.sum((w - w0) ** 2) + np.sum((b - b0) ** 2)), rtol=1e-6)
    np.testing.assert_allclose(grads["dense"]["kernel"], 2 * s * (w - w0), rtol=1e-6)
    np.testing.assert_allclose(grads["dense"]["bias"], 2 * s * (b - b0), rtol=1e-6)


@pytest.mark.parametrize("target", ["init", "one"])
def test_spectral_gradient_matches_hand_computed(target):
    """W = U diag(3, 0.5) Vᵀ with converged vectors: d/dW s(σ²-σ₀²)² = 4s(σ²-σ₀²)σ·u vᵀ,
    and the MLP variant's bias term adds 2s·b."""
    U, V = _rotation(0.3), _rotation(-1.1)
    w = U @ np.diag([3.0, 0.5]).astype(np.float32) @ V.T
    b = np.array([0.25, -1.5], np.float32)
    params = {"dense": {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}}
    u, v, sigma, sigma0 = U[:, 0], V[:, 0], 3.0, 2.0
    state = (mit.SpectralVectors(u=jnp.asarray(u), v=jnp.asarray(v), sigma0=jnp.float32(sigma0)),)
    s = 0.3

    def loss(p):
        return mit.spectral(p, state, s, target=target, bias_l2=True)

    (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    goal = sigma0 if target == "init" else 1.0
    np.testing.assert_allclose(value, s * ((sigma ** 2 - goal ** 2) ** 2 + np.sum(b ** 2)), rtol=1e-5)
    expected = 4 * s * (sigma ** 2 - goal ** 2) * sigma * np.outer(u, v)
    np.testing.assert_allclose(grads["dense"]["kernel"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads["dense"]["bias"], 2 * s * b, rtol=1e-6)
    # converged vectors stay put under the persistent power iteration
    np.testing.assert_allclose(new_state[0].u, u, atol=1e-6)
    np.testing.assert_allclose(new_state[0].v, v, atol=1e-6)

    # without the bias term (ResNet / T5 variants) the bias gets no gradient
    grads = jax.grad(lambda p: mit.spectral(p, state, s, target=target, bias_l2=False)[0])(params)
    np.testing.assert_array_equal(grads["dense"]["bias"], 0.0)


def test_spectral_power_iteration_converges_to_svd_including_conv_kernel():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(40, 24)), jnp.float32),
                        "bias": jnp.zeros((24,), jnp.float32)},
              "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 8, 16)), jnp.float32)},
              "norm": {"scale": jnp.ones((24,), jnp.float32)}}
    state = mit.spectral_init(params, key=jax.random.key(1))  # random unit start vectors
    names = [n for n, _ in mit.spectral_matrices(params)]
    assert names == ["conv/kernel", "dense/kernel"]  # ndim >= 2 only; norm left out
    svd_sigma = [np.linalg.svd(np.asarray(w).reshape(-1, w.shape[-1]), compute_uv=False)[0]
                 for _, w in mit.spectral_matrices(params)]
    np.testing.assert_allclose([float(s.sigma0) for s in state], svd_sigma, rtol=1e-5)  # σ₀ exact

    step = jax.jit(lambda st: mit.spectral(params, st, 1.0)[1])
    for _ in range(200):  # one persistent step per "training step"
        state = step(state)
    for (_, w), s, ref in zip(mit.spectral_matrices(params), state, svd_sigma):
        est = float(mit.sigma_estimate(w, s.u, s.v))
        assert abs(est - ref) / ref < 0.01, (est, ref)


# --------------------------------------------------------------------------- shrink & perturb
def test_shrink_perturb_scaling_and_reproducible_noise():
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(64, 80)), jnp.float32),
                        "bias": jnp.asarray(rng.normal(size=(80,)), jnp.float32)}}
    sp = jax.jit(mit.shrink_perturb)
    scaled = sp(params, jax.random.key(0), 0.9, 0.0)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.float32(0.9) * np.asarray(b)), scaled, params)
    _assert_trees_bitwise(sp(params, jax.random.key(0), 1.0, 0.0), params)

    a = sp(params, jax.random.key(3), 0.8, 0.01)
    b = sp(params, jax.random.key(3), 0.8, 0.01)
    c = sp(params, jax.random.key(4), 0.8, 0.01)
    _assert_trees_bitwise(a, b)
    noise = np.concatenate([((np.asarray(x) - np.float32(0.8) * np.asarray(p)) / 0.01).ravel()
                            for x, p in zip(jax.tree.leaves(a), jax.tree.leaves(params))])
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05  # ε ~ N(0, 1), 5,200 draws
    assert not np.allclose(jax.tree.leaves(a)[0], jax.tree.leaves(c)[0])


# --------------------------------------------------------------------------- ReDo
def test_should_apply():
    assert [bool(mit.should_apply(s, 1000, 1000)) for s in (999, 1000, 1500, 2000, 3000)] == \
        [False, False, False, True, True]
    assert bool(mit.should_apply(100, 100, 0)) and not bool(mit.should_apply(150, 100, 0))
    assert not bool(mit.should_apply(1000, 0, 0))  # every = 0: off


def _make_dormant(params, layer, units):
    """Unit j of hidden layer ``layer`` outputs exactly 0 on every input: its incoming weights
    and bias are 0 and its LayerNorm γ, β are 0."""
    idx = jnp.asarray(units)
    params = _set(params, f"hidden/{layer}/kernel", lambda k: k.at[:, idx].set(0.0))
    params = _set(params, f"hidden/{layer}/bias", lambda k: k.at[idx].set(0.0))
    params = _set(params, f"norms/{layer}/scale", lambda k: k.at[idx].set(0.0))
    return _set(params, f"norms/{layer}/bias", lambda k: k.at[idx].set(0.0))


@pytest.mark.slow
def test_redo_resets_exactly_the_dormant_units_and_their_moments():
    graphdef, params = _mlp()
    dormant = {0: [2, 5], 1: [7]}
    for layer, units in dormant.items():
        # β = 5 keeps every other unit active: a LayerNorm output over 20 units is >= -√19 > -5
        params = _set(params, f"norms/{layer}/bias", lambda b: jnp.full_like(b, 5.0))
        params = _make_dormant(params, layer, units)
    x = jax.random.normal(jax.random.key(1), (64, 6))
    features = nnx.merge(graphdef, params).features(x)
    scores = mit.redo_scores(features)
    for layer, units in dormant.items():  # precondition: exactly the constructed units are dormant
        assert sorted(np.flatnonzero(np.asarray(scores[layer]) <= 0.1)) == units

    tx = _adam()
    opt_state = _random_moments(tx, tx.init(params), params, jax.random.key(2))
    before, mom_before = _np_leaves(params), _moments(tx, opt_state, params)
    redo = jax.jit(functools.partial(mit.redo_reset, optimizer=tx))
    new_params, new_opt, masks = redo(params, opt_state, features, jax.random.key(3), threshold=0.1,
                                      max_fraction=0.1)  # cap 2 of 20
    assert [sorted(np.flatnonzero(m)) for m in masks] == [dormant[0], dormant[1]]
    after, mom_after = _np_leaves(new_params), _moments(tx, new_opt, new_params)

    # entries that belong to a reset unit (incoming column, bias, LayerNorm, outgoing row)
    touched = {name: np.zeros(x.shape, bool) for name, x in before.items()}
    outgoing = {0: "hidden/1/kernel", 1: "head/kernel"}
    for layer, units in dormant.items():
        touched[f"hidden/{layer}/kernel"][:, units] = True
        for name in (f"hidden/{layer}/bias", f"norms/{layer}/scale", f"norms/{layer}/bias"):
            touched[name][units] = True
        touched[outgoing[layer]][units, :] = True
        np.testing.assert_array_equal(after[outgoing[layer]][units, :], 0.0)  # outgoing zeroed
        np.testing.assert_array_equal(after[f"norms/{layer}/scale"][units], 1.0)
        np.testing.assert_array_equal(after[f"norms/{layer}/bias"][units], 0.0)
        fan_in = before[f"hidden/{layer}/kernel"].shape[0]
        col = after[f"hidden/{layer}/kernel"][:, units]
        keep = np.ones(fan_in, bool)
        if layer == 1:
            keep[dormant[0]] = False  # rows crossing a reset unit of layer 0 stay zero
        col = col[keep]
        assert np.all(col != 0) and np.all(np.abs(col) <= 1 / math.sqrt(fan_in))  # redrawn, U(±1/√fan_in)
        bias = after[f"hidden/{layer}/bias"][units]
        assert np.all(bias != 0) and np.all(np.abs(bias) <= 1 / math.sqrt(fan_in))
    for name in before:
        np.testing.assert_array_equal(after[name][~touched[name]], before[name][~touched[name]], err_msg=name)
        for m_before, m_after in zip(mom_before[name], mom_after[name]):
            np.testing.assert_array_equal(m_after, np.where(touched[name], 0.0, m_before), err_msg=name)
    assert len(mom_after["head/kernel"]) == 2  # both Adam moments (mu, nu) were reached


def test_redo_respects_the_cap_lowest_scores_first_and_threshold_zero_is_off():
    _, params = _mlp()
    h0 = np.ones((8, 20), np.float32)
    low = {3: 0.04, 8: 0.0, 11: 0.03, 15: 0.01, 19: 0.02}  # five dormant units
    for j, a in low.items():
        h0[:, j] = a
    features = [jnp.asarray(h0), jnp.ones((8, 20), jnp.float32)]
    tx = _adam()
    opt_state = _random_moments(tx, tx.init(params), params, jax.random.key(0))
    redo = jax.jit(functools.partial(mit.redo_reset, optimizer=tx))  # threshold, max_fraction traced
    _, _, masks = redo(params, opt_state, features, jax.random.key(1), threshold=0.1, max_fraction=0.1)
    assert sorted(np.flatnonzero(masks[0])) == [8, 15] and not np.any(masks[1])  # cap floor(0.1·20) = 2
    _, _, masks = redo(params, opt_state, features, jax.random.key(1), threshold=0.1, max_fraction=1.0)
    assert sorted(np.flatnonzero(masks[0])) == sorted(low)
    out_params, out_opt, masks = redo(params, opt_state, features, jax.random.key(1), threshold=0.0,
                                      max_fraction=1.0)
    assert not any(np.any(m) for m in masks)
    _assert_trees_bitwise(out_params, params)
    _assert_trees_bitwise(out_opt, opt_state)


# --------------------------------------------------------------------------- continual backprop
def test_continual_backprop_rate_maturity_and_reset():
    _, params = _mlp()
    tx = _adam()
    opt_state = _random_moments(tx, tx.init(params), params, jax.random.key(0))
    rng = np.random.default_rng(0)
    h0 = rng.uniform(0.5, 1.5, size=(16, 20)).astype(np.float32)
    h0[:, 4] = 1e-3  # the least useful unit of layer 0
    features = [jnp.asarray(h0), jnp.asarray(rng.uniform(0.5, 1.5, size=(16, 20)), jnp.float32)]
    rate, maturity, decay = 0.05, 10, 0.9

    step = jax.jit(functools.partial(mit.cbp_step, maturity=maturity, decay=decay, optimizer=tx))
    state = mit.cbp_init(params)
    acc = [np.float32(0.0)] * 2
    total = np.zeros(2, int)
    first = None
    for t in range(1, 61):
        ages_before = [np.asarray(s.age) for s in state]
        new_params, new_opt, state, masks = step(params, opt_state, state, features, jax.random.key(t), rate=rate)
        for i, (mask, age) in enumerate(zip(masks, ages_before)):
            mask = np.asarray(mask)
            mature = age + 1 > maturity
            assert not np.any(mask & ~mature)  # never a unit younger than the threshold
            acc[i] = np.float32(acc[i] + np.float32(rate) * np.float32(mature.sum()))
            k = int(np.floor(acc[i]))
            acc[i] = np.float32(acc[i] - k)
            assert mask.sum() == min(k, mature.sum()), (t, i)  # the expected number, fractions carried
            total[i] += mask.sum()
            np.testing.assert_array_equal(np.asarray(state[i].age)[mask], 0)
            np.testing.assert_array_equal(np.asarray(state[i].utility)[mask], 0.0)
        if first is None and np.asarray(masks[0]).any():
            first = (t, [np.asarray(m) for m in masks], params, opt_state, new_params, new_opt)
        params, opt_state = new_params, new_opt
    assert total.sum() > 5  # replacements did happen: 20·0.05 = 1 per step per layer while all are mature

    t, masks, _, _, p_after, o_after = first
    assert t == maturity + 1  # no unit is mature before step m + 1
    assert list(np.flatnonzero(masks[0])) == [4]  # the lowest-utility unit goes first
    after, mom = _np_leaves(p_after), _moments(tx, o_after, p_after)
    outgoing = {0: "hidden/1/kernel", 1: "head/kernel"}
    for layer, mask in enumerate(masks):
        np.testing.assert_array_equal(after[outgoing[layer]][mask, :], 0.0)
        np.testing.assert_array_equal(after[f"hidden/{layer}/bias"][mask], 0.0)  # Dohare et al.: bias 0
        for m in mom[outgoing[layer]]:
            np.testing.assert_array_equal(m[mask, :], 0.0)
        for m in mom[f"hidden/{layer}/kernel"]:
            np.testing.assert_array_equal(m[:, mask], 0.0)

    # rate 0: nothing is ever replaced, parameters and moments bit for bit
    state = mit.cbp_init(params)
    for t in range(maturity + 5):
        out_p, out_o, state, masks = step(params, opt_state, state, features, jax.random.key(t), rate=0.0)
        assert not any(np.any(m) for m in masks)
    _assert_trees_bitwise(out_p, params)
    _assert_trees_bitwise(out_o, opt_state)


# --------------------------------------------------------------------------- all together
STATIC = mit.MitigationStructure(l2=True, l2_init=True, spectral=True, shrink_perturb=True, redo_every=1,
                              cbp=True)
LANES = [
    mit.MitigationHParams.create(),  # every method off
    mit.MitigationHParams.create(l2=1e-3, spectral=0.1, redo_threshold=0.5, redo_max_fraction=0.25),
    mit.MitigationHParams.create(l2_init=0.1, shrink=0.9, perturb=0.01, cbp_rate=0.2, cbp_maturity=0.0,
                                 cbp_decay=0.9),
]


def _train_step(graphdef, tx, static, params, opt_state, mstate, init_params, x, y, step, key, mhp,
                mitigate=True):
    """A training step as the engine is to run it (or a plain one with ``mitigate=False``)."""
    def loss_fn(p):
        logits, features = nnx.merge(graphdef, p).logits_and_unit_features(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        if not mitigate:
            return loss, (features, mstate)
        extra, new_mstate = mit.loss_terms(p, init_params, mstate, mhp, static)
        return loss + extra, (features, new_mstate)

    (_, (features, mstate)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if mitigate:
        params, opt_state, mstate = mit.after_step(params, opt_state, mstate, features, step, key, mhp, static,
                                                   optimizer=tx)
        params = mit.at_task_boundary(params, jax.random.fold_in(key, 99), mhp, static)
    return params, opt_state, mstate


@functools.cache
def _setup():
    graphdef, params = _mlp()
    params = _make_dormant(params, 0, [1, 6])
    tx = _adam()
    x = jax.random.normal(jax.random.key(5), (16, 6))
    y = jnp.arange(16) % 3
    return graphdef, params, tx, x, y


@functools.cache
def _compiled_step(mitigate=True):
    graphdef, _, tx, _, _ = _setup()
    return jax.jit(functools.partial(_train_step, graphdef, tx, STATIC, mitigate=mitigate))


@pytest.mark.slow
def test_strength_zero_is_an_exact_no_op_for_every_method():
    graphdef, params, tx, x, y = _setup()
    off = LANES[0]
    mit.check_lanes(STATIC, off)
    # the loss terms add an exactly zero gradient
    mstate = jax.jit(mit.init_state, static_argnums=1)(params, STATIC)
    shifted = jax.tree.map(lambda v: v + 0.1, params)  # θ ≠ θ₀
    value, grads = jax.jit(jax.value_and_grad(
        lambda p: mit.loss_terms(p, params, mstate, off, STATIC)[0]))(shifted)
    assert float(value) == 0.0 and all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))
    # after_step (ReDo due at this step, every CBP unit mature) and the task boundary give back
    # the parameters and the optimizer state bit for bit
    opt_state = _random_moments(tx, tx.init(params), params, jax.random.key(1))
    features = nnx.merge(graphdef, params).features(x)
    mature = mstate.replace(cbp=tuple(c.replace(age=c.age + 1000) for c in mstate.cbp))

    @jax.jit
    def after(p, o, m, key):
        p, o, m = mit.after_step(p, o, m, features, 0, key, off, STATIC, optimizer=tx)
        return mit.at_task_boundary(p, key, off, STATIC), o, m

    out_p, out_o, _ = after(params, opt_state, mature, jax.random.key(2))
    _assert_trees_bitwise((out_p, out_o), (params, opt_state))

    # whole training steps: with every strength off the run follows the plain one. Two different
    # compiled programs may contract a multiply-add differently, so this is to within 1e-6
    # (observed: 1 ulp on a few entries), while the pieces above are exact.
    a = b = (params, tx.init(params))
    for step in range(3):
        key = jax.random.key(step)
        *a, mstate = _compiled_step()(*a, mstate, params, x, y, step, key, off)
        *b, _ = _compiled_step(False)(*b, mstate, params, x, y, step, key, off)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-9), a, b)


@pytest.mark.slow
def test_vmapped_lanes_equal_each_lane_alone():
    graphdef, params, tx, x, y = _setup()
    opt_state = tx.init(params)
    mstate = jax.jit(mit.init_state, static_argnums=1)(params, STATIC)
    step_fn = functools.partial(_train_step, graphdef, tx, STATIC)
    n = len(LANES)
    hps = mit.MitigationHParams.stack(LANES)
    mit.check_lanes(STATIC, hps)
    with pytest.raises(ValueError, match="cbp"):
        mit.check_lanes(mit.MitigationStructure(l2=True, l2_init=True, spectral=True, shrink_perturb=True,
                                             redo_every=1), hps)
    lanes = jax.tree.map(lambda v: jnp.stack([v] * n), (params, opt_state, mstate))
    keys = jax.random.split(jax.random.key(0), n)
    batched = jax.jit(jax.vmap(step_fn, in_axes=(0, 0, 0, None, None, None, None, 0, 0)))
    singles = [(params, opt_state, mstate)] * n
    for step in range(3):
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)
        lanes = batched(*lanes, params, x, y, step, step_keys, hps)
        singles = [_compiled_step()(*s, params, x, y, step, step_keys[i], LANES[i]) for i, s in enumerate(singles)]
    for i, single in enumerate(singles):
        lane = jax.tree.map(lambda v, i=i: np.asarray(v)[i], lanes)
        jax.tree.map(lambda v, s: np.testing.assert_allclose(v, np.asarray(s), rtol=1e-5, atol=1e-6), lane, single)
    ms = lanes[2]
    assert int(ms.redo_resets[0].sum()) == 0 and int(ms.redo_resets[1].sum()) > 0  # lane 1's ReDo acted
    assert int(ms.cbp_replacements[2].sum()) > 0 and int(ms.cbp_replacements[:2].sum()) == 0  # lane 2's CBP


# --------------------------------------------------------------------------- CReLU
@pytest.mark.slow
def test_crelu_mlp_shapes_and_parameter_count():
    np.testing.assert_array_equal(mlp.crelu(jnp.array([[-1.0, 2.0]])), [[0.0, 2.0, 1.0, 0.0]])
    graphdef, params = _mlp(6, (5, 4), 3, activation="crelu")
    model = nnx.merge(graphdef, params)
    assert nnx.eval_shape(lambda: model(jnp.ones((7, 6)))).shape == (7, 3)
    assert [f.shape for f in nnx.eval_shape(lambda: model.features(jnp.ones((7, 6))))] == [(7, 10), (7, 8)]
    # Linear 6→5, LN(5), Linear 10→4, LN(4), head 8→3
    count = (6 * 5 + 5) + 2 * 5 + (10 * 4 + 4) + 2 * 4 + (8 * 3 + 3)
    assert sum(v.size for v in jax.tree.leaves(params)) == count == 124

    # ReDo on CReLU: unit j feeds rows j and w + j of the next kernel
    layers = mlp.unit_layers(params)
    assert [layer.copies for layer in layers] == [2, 2]
    params = _make_dormant(params, 0, [3])

    @jax.jit
    def redo(p, x, key):
        return mit.redo_reset(p, None, nnx.merge(graphdef, p).features(x), key, threshold=0.1, max_fraction=0.5)

    new, _, masks = redo(params, jax.random.normal(jax.random.key(0), (32, 6)), jax.random.key(1))
    assert list(np.flatnonzero(masks[0])) == [3]
    np.testing.assert_array_equal(np.asarray(leaf_dict(new)["hidden/1/kernel"])[[3, 8]], 0.0)


def test_unit_layers_of_resnet_and_t5():
    """ReDo / CBP unit layers of the other models, read off abstract parameters (no compute)."""
    from gradual_jax.models import resnet, t5

    def abstract(make):
        return nnx.state(nnx.eval_shape(make), nnx.Param)

    params = abstract(lambda: resnet.ResNet18(10, width_multiplier=0.125, rngs=nnx.Rngs(0)))
    layers = resnet.unit_layers(params)
    assert len(layers) == 8 and layers[0].out_kernel == "layer1/0/conv2/kernel"
    shapes = leaf_dict(params)
    for layer in layers:  # units: last axis of conv1, input-channel axis (-2) of conv2
        assert shapes[layer.kernel].shape[-1] == shapes[layer.out_kernel].shape[-2] == shapes[layer.norm_scale].shape[0]
    params = abstract(lambda: t5.T5(t5.T5Config(d_model=16, num_heads=2, d_kv=8, d_ff=32), rngs=nnx.Rngs(0)))
    assert [layer.kernel for layer in t5.unit_layers(params)] == [
        "encoder_layers/0/ffn/wi/kernel", "decoder_layers/0/ffn/wi/kernel"]


# --------------------------------------------------------------------------- hooked methods
def _sum_of_squares(params, numbers):
    return numbers["s"] * sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(params))


def _add_noise(params, numbers, key):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return tree.unflatten([x + numbers["sigma"] * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _halve(params, numbers, key):
    return jax.tree.map(lambda x: x * 0.5, params)


PENALTY = ("penalty", mit.Hooks(penalty=_sum_of_squares))
NOISE = ("noise", mit.Hooks(after_update=_add_noise))
HALVE = ("halve", mit.Hooks(at_boundary=_halve))


def _lanes(on: set[str], **numbers) -> dict:
    declared = {"penalty": {"s": numbers.get("s", 0.5)}, "noise": {"sigma": numbers.get("sigma", 0.1)}, "halve": {}}
    return {name: mit.CustomLane.create(declared[name], on=name in on) for name in declared}


def test_a_hooked_penalty_counts_only_where_the_lane_uses_it():
    params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([3.0])}
    static = mit.MitigationStructure(custom=(PENALTY, NOISE, HALVE))
    on = mit.MitigationHParams.create(custom=_lanes({"penalty"}, s=0.5))
    value, _ = mit.loss_terms(params, None, mit.MState(), on, static)
    assert float(value) == 0.5 * (1 + 4 + 9)  # s·Σθ² by hand
    grads = jax.grad(lambda p: mit.loss_terms(p, None, mit.MState(), on, static)[0])(params)
    np.testing.assert_array_equal(grads["w"], [1.0, -2.0])  # 2s·θ
    off = mit.MitigationHParams.create(custom=_lanes(set(), s=0.5))
    value, grads = jax.value_and_grad(lambda p: mit.loss_terms(p, None, mit.MState(), off, static)[0])(params)
    assert float(value) == 0.0 and all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def test_hooks_leave_a_lane_that_does_not_use_them_bit_for_bit():
    params = {"w": jax.random.normal(jax.random.key(0), (5, 3))}
    static = mit.MitigationStructure(custom=(PENALTY, NOISE, HALVE))
    off = mit.MitigationHParams.create(custom=_lanes(set()))
    out, _, _ = mit.after_step(params, None, mit.MState(), None, 0, jax.random.key(1), off, static)
    out = mit.at_task_boundary(out, jax.random.key(2), off, static, at="after")
    np.testing.assert_array_equal(out["w"], params["w"])
    halve = mit.MitigationHParams.create(custom=_lanes({"halve"}))
    np.testing.assert_array_equal(mit.at_task_boundary(params, jax.random.key(2), halve, static, at="after")["w"],
                                  params["w"] * 0.5)
    # the boundary hooks act after each task's readout, never before its training
    np.testing.assert_array_equal(mit.at_task_boundary(params, jax.random.key(2), halve, static, at="before")["w"],
                                  params["w"])
    assert static.acts_at("after") and not static.acts_at("before")
    assert not mit.MitigationStructure(custom=(PENALTY,)).acts_at("after")


def test_a_hooks_key_is_its_own_whatever_else_is_compiled_in():
    """The noise a lane draws depends on its method's name, not on the other methods of its program."""
    params = {"w": jnp.zeros((4, 2))}
    key = jax.random.key(3)
    alone = mit.MitigationStructure(custom=(NOISE,))
    shared = mit.MitigationStructure(custom=(PENALTY, NOISE, HALVE))
    lanes = _lanes({"noise"}, sigma=1.0)
    a, _, _ = mit.after_step(params, None, mit.MState(), None, 0, key, mit.MitigationHParams.create(
        custom={"noise": lanes["noise"]}), alone)
    b, _, _ = mit.after_step(params, None, mit.MState(), None, 0, key, mit.MitigationHParams.create(custom=lanes),
                             shared)
    np.testing.assert_array_equal(a["w"], b["w"])
    want = _add_noise(params, {"sigma": 1.0}, jax.random.fold_in(key, zlib.crc32(b"noise") & 0x7FFFFFFF))
    np.testing.assert_array_equal(a["w"], want["w"])
    assert np.std(np.asarray(a["w"])) > 0


def test_a_hooked_method_is_vmapped_with_its_numbers_per_lane():
    params = {"w": jnp.asarray([1.0, -2.0])}
    static = mit.MitigationStructure(custom=(PENALTY,))
    hps = mit.MitigationHParams.stack([mit.MitigationHParams.create(custom={"penalty": mit.CustomLane.create(
        {"s": s}, on=on)}) for s, on in ((0.5, True), (2.0, True), (2.0, False))])
    values = jax.vmap(lambda hp: mit.loss_terms(params, None, mit.MState(), hp, static)[0])(hps)
    np.testing.assert_array_equal(values, [2.5, 10.0, 0.0])
    mit.check_lanes(static, hps)
    with pytest.raises(ValueError, match="penalty"):
        mit.check_lanes(mit.MitigationStructure(), hps)


def test_hooks_need_something_to_do():
    with pytest.raises(ValueError, match="at least one"):
        mit.Hooks()
