"""Mitigations inside the engine: several methods share one vmapped program, Shrink & Perturb
acts only at its task boundary, and the results name each lane's method."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax.core import engine
from gradual_jax.experiments import MLP_MITIGATIONS
from gradual_jax.runner.sweep import Lane, mitigation_structure, to_hparams
from tests.conftest import tiny_data, tiny_program

# the MLP's strengths, with ReDo and continual backprop acting within a few steps
SETTINGS = dataclasses.replace(MLP_MITIGATIONS, redo_every=4, redo_after=4, cbp_maturity=5.0, cbp_rate=0.05)
METHODS = ("none", "l2", "l2_init", "shrink_perturb", "redo", "spectral", "cbp")


def run(program, lanes, tasks=2, settings=SETTINGS):
    hp = to_hparams(lanes, settings)
    state = engine.init_lanes(program, hp)
    fn = engine.make_task_fn(program)
    out = []
    for t in range(tasks):
        state, m = fn(hp, state, tiny_data(), jnp.int32(t))
        out.append(jax.device_get(m))
    return jax.device_get(state), out


def program_for(lanes, settings=SETTINGS):
    return tiny_program(mitigation=mitigation_structure(lanes, settings))


@pytest.mark.slow
def test_methods_in_one_sweep_equal_each_method_alone():
    lanes = [Lane(seed=1, schedule="abrupt", delta=None, learning_rate=3e-3, method=m) for m in METHODS]
    program = program_for(lanes)
    _, together = run(program, lanes)
    for i, lane in enumerate(lanes):
        _, alone = run(program_for([lane]), [lane])
        for t in range(2):
            np.testing.assert_allclose(together[t].epoch_loss[i], alone[t].epoch_loss[0], rtol=2e-4, atol=1e-5,
                                       err_msg=f"{lane.method}, task {t}")
            np.testing.assert_allclose(together[t].train_acc[i], alone[t].train_acc[0], atol=1e-6)


@pytest.mark.slow
def test_methods_change_training_and_none_is_plain_training():
    """Every method acts (ReDo made to fire: with threshold 10 every unit counts as dormant,
    up to half a layer), and "none" is plain training."""
    settings = dataclasses.replace(MLP_MITIGATIONS, redo_every=4, redo_after=4, redo_threshold=10.0, redo_max_fraction=0.5,
                                 cbp_maturity=5.0, cbp_rate=0.05)
    lanes = [Lane(seed=1, schedule="abrupt", delta=None, learning_rate=3e-3, method=m) for m in METHODS]
    state, together = run(program_for(lanes, settings), lanes, settings=settings)
    resets = np.asarray(state.mitigation.redo_resets).sum(-1)
    replaced = np.asarray(state.mitigation.cbp_replacements).sum(-1)
    assert resets[METHODS.index("redo")] > 0 and resets.sum() == resets[METHODS.index("redo")]
    assert replaced[METHODS.index("cbp")] > 0 and replaced.sum() == replaced[METHODS.index("cbp")]
    _, plain = run(tiny_program(), lanes[:1])
    # "none" inside a program with every mitigation compiled in is plain training (to float noise)
    np.testing.assert_allclose(together[1].epoch_loss[0], plain[1].epoch_loss[0], rtol=1e-5, atol=1e-6)
    for i, method in enumerate(METHODS[1:], start=1):
        assert not np.allclose(together[1].epoch_loss[i], together[1].epoch_loss[0]), method


@pytest.mark.parametrize("where", ["after", "before"])
@pytest.mark.slow
def test_shrink_perturb_acts_only_at_its_boundary(where):
    settings = dataclasses.replace(MLP_MITIGATIONS, shrink=0.5, perturb=0.0, shrink_perturb_at=where)
    lanes = [Lane(0, "abrupt", None, 1e-3, "none"), Lane(0, "abrupt", None, 1e-3, "shrink_perturb")]
    program = program_for(lanes, settings)
    state, metrics = run(program, lanes, tasks=1, settings=settings)
    if where == "after":
        # trained identically through the task (same readout), then scaled by exactly 0.5
        assert metrics[0].online_train_acc[0] == metrics[0].online_train_acc[1]
        np.testing.assert_array_equal(metrics[0].epoch_loss[0], metrics[0].epoch_loss[1])
        jax.tree.map(lambda a: np.testing.assert_array_equal(a[1], np.float32(0.5) * a[0]), state.params)
        jax.tree.map(lambda a: np.testing.assert_array_equal(a[1], a[0]), state.readout_params)
    else:
        # scaled before task 0's first step: the first epoch already differs
        assert metrics[0].epoch_loss[0, 0] != metrics[0].epoch_loss[1, 0]


def test_lane_expansion_crosses_methods_with_abrupt_only():
    from gradual_jax.config import SweepConfig
    from gradual_jax.runner.sweep import expand
    lanes = expand(SweepConfig(seeds=(0, 1), schedules=("abrupt", "output_interp"), deltas=(0.5,),
                               methods=("none", "l2", "redo")))
    assert [(l.schedule, l.method) for l in lanes if l.seed == 0] == [
        ("abrupt", "none"), ("abrupt", "l2"), ("abrupt", "redo"), ("output_interp", "none")]
    crossed = expand(SweepConfig(seeds=(0,), schedules=("abrupt", "output_interp"), methods=("none", "l2"),
                                 mitigate_gradual=True))
    assert len(crossed) == 4


def test_baselines_presets():
    from gradual_jax import experiments
    for name in ("fig1-mnist", "fig3-emnist"):
        for preset in ("paper-baselines", "cpu-baselines"):
            cfg = experiments.get_config(name, preset)
            assert set(cfg.sweep.methods) == set(METHODS)
            assert cfg.sweep.schedules[0] == "abrupt" and len(cfg.sweep.schedules) == 2


@pytest.mark.slow
def test_crelu_mlp_trains_in_the_engine_with_diagnostics():
    import dataclasses

    from gradual_jax.core.diagnostics import DiagnosticsSpec
    from gradual_jax.models import MLP
    program = dataclasses.replace(
        tiny_program(diagnostics=DiagnosticsSpec(probe_size=16, dormant_taus=(0.0,), redo_threshold=0.1, hessian=True,
                                                 hessian_iters=3)),
        model_factory=lambda rngs: MLP(12, (16, 16), 4, activation="crelu", rngs=rngs))
    state, metrics = run(program, [Lane(0, "abrupt", None, 3e-3)], tasks=1)
    assert state.params["hidden"][1]["kernel"].shape == (1, 32, 16)  # fan-in doubled by CReLU
    assert np.isfinite(metrics[0].diagnostics["effective_rank"]).all()
    assert metrics[0].epoch_loss[0, -1] < metrics[0].epoch_loss[0, 0]
