"""Plasticity diagnostics, each against a hand-built case whose answer is known."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import optax
from flax import nnx

from gradual_jax.core import diagnostics as dg
from gradual_jax.mitigations.redo import redo_scores
from gradual_jax.models import MLP


# --------------------------------------------------------------------------- dormant units
def _layer_with_known_units(n=10_000, units=8, seed=0):
    """Units 0-1 never active, unit 2 active on exactly one input out of n, the rest active on
    about half the inputs (and negative activations count as inactive)."""
    rng = np.random.default_rng(seed)
    h = np.abs(rng.normal(size=(n, units))) * rng.choice([-1.0, 1.0], size=(n, units))
    h[:, 3:] = np.abs(h[:, 3:]) * (rng.random((n, units - 3)) < 0.5)
    h[:, 3:][0] = 1.0  # certainly active somewhere
    h[:, 0] = 0.0
    h[:, 1] = -np.abs(h[:, 1])
    h[:, 2] = 0.0
    h[1234, 2] = 0.7
    return jnp.asarray(h, jnp.float32)


def test_dormant_fraction_distinguishes_the_two_taus():
    h = _layer_with_known_units()  # n = 10_000: one active input is exactly 0.01 %
    assert float(dg.dormant_fraction([h], 1e-4)) == 3 / 8  # units 0, 1, 2
    assert float(dg.dormant_fraction([h], 0.0)) == 2 / 8  # units 0, 1 only
    # a unit active on 2 of 10_000 inputs is over the 0.01 % line
    h2 = h.at[4321, 2].set(0.1)
    assert float(dg.dormant_fraction([h2], 1e-4)) == 2 / 8


def test_dormant_fraction_pools_units_over_layers():
    n = 100
    a = jnp.ones((n, 4)).at[:, 0].set(0.0)  # 1 dead of 4
    b = jnp.ones((n, 6)).at[:, :3].set(-1.0)  # 3 dead of 6
    np.testing.assert_array_equal(dg.dormant_fraction_per_layer([a, b], 0.0), [0.25, 0.5])
    assert float(dg.dormant_fraction([a, b], 0.0)) == pytest.approx(4 / 10)


def test_redo_scores_by_hand():
    # mean |h| per unit = [0, 1, 2, 5]; layer mean = 2 -> scores [0, 0.5, 1, 2.5]
    h = jnp.array([[0.0, 1.0, 1.0, 4.0],
                   [0.0, 1.0, 3.0, 6.0]])
    (scores,) = redo_scores([h])
    np.testing.assert_allclose(scores, [0.0, 0.5, 1.0, 2.5], rtol=1e-6)
    assert float(dg.redo_dormant_fraction([h], 0.1)) == 1 / 4
    assert float(dg.redo_dormant_fraction([h], 0.5)) == 2 / 4  # <= threshold is dormant
    # an all-silent layer: scores 0 (not NaN), every unit dormant; pooled with the layer above
    silent = jnp.zeros((2, 4))
    np.testing.assert_array_equal(redo_scores([silent])[0], 0.0)
    assert float(dg.redo_dormant_fraction([h, silent], 0.1)) == 5 / 8


# --------------------------------------------------------------------------- rank
def test_effective_rank_of_equal_singular_values_is_the_rank():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(50, 50)))
    for k in (1, 3, 7):
        h = 2.5 * q[:, :k] @ np.eye(k, 10)  # k orthogonal columns of norm 2.5, the rest zero
        assert float(dg.effective_rank(jnp.asarray(h))) == pytest.approx(k, rel=1e-5)
    assert float(dg.effective_rank(jnp.zeros((5, 3)))) == 0.0


def test_effective_rank_and_srank_of_chosen_singular_values():
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(30, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    s = np.array([5.0, 3.0, 1.5, 0.5])  # sum 10; prefixes 0.5, 0.8, 0.95, 1.0
    h = jnp.asarray(u @ np.diag(s) @ v.T, jnp.float32)
    p = s / s.sum()
    assert float(dg.effective_rank(h)) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-5)
    assert int(dg.srank(h, 0.01)) == 4  # needs 0.99
    assert int(dg.srank(h, 0.1)) == 3  # needs 0.9: 0.95 is the first prefix over it
    assert int(dg.srank(h, 0.3)) == 2  # needs 0.7
    assert int(dg.srank(h, 0.6)) == 1  # needs 0.4
    assert int(dg.srank(jnp.zeros((4, 4)))) == 0


# --------------------------------------------------------------------------- curvature
def test_max_hessian_eigenvalue_of_a_quadratic():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    eig = np.array([-1.5, 0.2, 1.0, 2.0, 3.0, 7.0])
    a = jnp.asarray(q @ np.diag(eig) @ q.T, jnp.float32)
    # params as a pytree (a dict of two leaves) to exercise the flattening
    def loss(p):
        x = jnp.concatenate([p["u"], p["w"].ravel()])
        return 0.5 * x @ a @ x

    params = {"u": jnp.ones(2), "w": jnp.full((2, 2), 0.3)}
    est = dg.max_hessian_eigenvalue(loss, params, jax.random.key(0), num_iters=20)
    assert float(est) == pytest.approx(np.abs(eig).max(), abs=1e-4)
    # dominant curvature negative: the Rayleigh quotient keeps the sign
    neg = dg.max_hessian_eigenvalue(lambda p: -loss(p), params, jax.random.key(1), num_iters=30)
    assert float(neg) == pytest.approx(-7.0, abs=1e-4)
    # a zero Hessian gives 0, not NaN
    flat = dg.max_hessian_eigenvalue(lambda p: jnp.sum(p["u"]), params, jax.random.key(0))
    assert float(flat) == 0.0


# --------------------------------------------------------------------------- representation
def test_representation_change_by_hand():
    h = jnp.asarray(np.random.default_rng(3).normal(size=(20, 5)), jnp.float32)
    assert float(dg.representation_change(h, h)) == 0.0
    assert float(dg.representation_change(2 * h, h)) == pytest.approx(1.0, rel=1e-6)
    # rows [3,4] -> [0,0] (change 1) and [1,0] -> [1,1] (change 1/1 = 1) and a zero previous
    # row that is left out of the mean
    prev = jnp.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    now = jnp.array([[0.0, 0.0], [1.0, 2.0], [5.0, 5.0]])
    assert float(dg.representation_change(now, prev)) == pytest.approx((1.0 + 2.0) / 2)
    assert np.isnan(float(dg.representation_change(now, jnp.zeros_like(prev))))


def test_distance_from_init_and_norms_by_hand():
    init = {"a": jnp.zeros((2, 2)), "b": jnp.ones(3)}
    assert float(dg.distance_from_init(init, init)) == 0.0
    moved = {"a": init["a"].at[0, 0].add(3.0), "b": init["b"] + jnp.array([0.0, 4.0, 0.0])}
    assert float(dg.distance_from_init(moved, init)) == pytest.approx(5.0)
    assert float(dg.weight_norm(init)) == pytest.approx(np.sqrt(3.0))
    assert float(dg.grad_norm({"g": jnp.array([1.0, 2.0, 2.0])})) == pytest.approx(3.0)


# --------------------------------------------------------------------------- diagnose
@functools.cache
def _tiny_mlp():
    """The graph of a 6-8-8-3 MLP and two parameter sets (seeds 1 and 2)."""
    (graphdef, p1), (_, p2) = (nnx.split(MLP(6, (8, 8), 3, rngs=nnx.Rngs(s)), nnx.Param) for s in (1, 2))
    return graphdef, (p1, p2)


def _model_fns(graphdef):
    """The MLP on a probe ``(x, y)``: its hidden layers, and its mean cross-entropy."""
    def features_fn(params, probe):
        return nnx.merge(graphdef, params).features(probe[0])

    def loss_fn(params, probe):
        x, y = probe
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x), y))

    return features_fn, loss_fn


@pytest.mark.slow
def test_diagnose_is_jit_and_vmap_compatible():
    graphdef, (p1, p2) = _tiny_mlp()
    features_fn, loss_fn = _model_fns(graphdef)
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=32), jnp.int32)
    shift = lambda p, c: jax.tree.map(lambda a: a + c, p)  # noqa: E731
    params = [shift(p1, 0.05), shift(p2, -0.02)]
    prev = [features_fn(p, (x, y))[-1] for p in (p1, p2)]
    keys = jax.random.split(jax.random.key(0), 2)

    def one(params, init, prev, key):
        return dg.diagnose(features_fn, loss_fn, params, init, prev, (x, y), key, hessian_iters=10)

    stack = lambda *t: jax.tree.map(lambda *a: jnp.stack(a), *t)  # noqa: E731
    batched = jax.jit(jax.vmap(one))(stack(*params), stack(p1, p2), jnp.stack(prev), keys)
    expected_keys = {"dormant_fraction_tau0", "redo_dormant_fraction",
                     "effective_rank", "srank", "representation_change", "distance_from_init",
                     "weight_norm", "grad_norm", "probe_loss", "max_hessian_eigenvalue"}
    assert set(batched) == expected_keys
    one_jit = jax.jit(one)  # the same function called on each lane alone (jitted: eager is slow)
    for i in range(2):
        alone = one_jit(params[i], (p1, p2)[i], prev[i], keys[i])
        for name, value in alone.items():
            assert np.shape(value) == () and batched[name].shape == (2,)
            np.testing.assert_allclose(batched[name][i], value, rtol=2e-4, atol=1e-5, err_msg=name)
    # a uniform shift of every leaf by 0.05: distance = 0.05·sqrt(#params)
    count = sum(a.size for a in jax.tree.leaves(p1))
    np.testing.assert_allclose(batched["distance_from_init"][0], 0.05 * np.sqrt(count), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(batched["max_hessian_eigenvalue"])))


def test_diagnose_at_init_and_without_costly_parts():
    graphdef, (p1, _) = _tiny_mlp()
    features_fn, loss_fn = _model_fns(graphdef)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(16, 6)), jnp.float32)
    y = jnp.zeros(16, jnp.int32)
    out = jax.jit(lambda p: dg.diagnose(features_fn, loss_fn, p, p, features_fn(p, (x, y))[-1], (x, y),
                                        jax.random.key(0), costly=False))(p1)
    assert float(out["distance_from_init"]) == 0.0
    assert float(out["representation_change"]) == 0.0
    assert np.isnan(float(out["max_hessian_eigenvalue"]))
    assert 1 <= int(out["srank"]) <= 8 and 0 < float(out["effective_rank"]) <= 8
