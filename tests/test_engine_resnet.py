"""ResNet-18 in the engine: BatchNorm statistics carried per lane, readout in evaluation mode."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax import experiments
from flax import nnx

from gradual_jax import cli
from gradual_jax.core import engine
from gradual_jax.core.diagnostics import DiagnosticsSpec
from gradual_jax.mitigations import MitigationStructure, MitigationHParams
from gradual_jax.models.paths import leaf_dict
from gradual_jax.models import resnet
from gradual_jax.models.resnet import ResNet18
from gradual_jax.runner.sweep import Lane, to_hparams
from tests.conftest import tiny_program


def resnet_setup():
    rng = np.random.default_rng(0)
    data = engine.BaseData(x_train=jnp.asarray(rng.normal(size=(24, 8, 8, 1)), jnp.float32),
                           y_train=jnp.asarray(np.tile(np.arange(4), 6), jnp.int32))
    program = dataclasses.replace(
        tiny_program(num_train=24, num_features=64, batch_size=10, epochs_per_task=1, transition_epochs=2),
        model_factory=lambda rngs: ResNet18(4, in_channels=1, width_multiplier=1 / 16, rngs=rngs))
    return program, data


def run(program, data, lanes, tasks=1):
    hp = to_hparams(lanes)
    state = engine.init_lanes(program, hp)
    fn = engine.make_task_fn(program)
    history = []
    for t in range(tasks):
        state, m = fn(hp, state, data, jnp.int32(t))
        history.append(jax.device_get(m))
    return jax.device_get(state), history


@pytest.mark.slow
def test_lanes_keep_separate_batch_statistics_and_equal_lanes_alone():
    program, data = resnet_setup()
    lanes = [Lane(0, "abrupt", None, 1e-3), Lane(1, "output_interp", 0.5, 1e-3)]
    state, together = run(program, data, lanes)
    stats = jax.tree.leaves(state.batch_stats)
    assert stats and all(not np.allclose(s[0], s[1]) for s in stats[:4])  # each lane its own statistics
    init_stats = jax.tree.leaves(engine.init_variables(program, jnp.int32(0))[1])
    assert any(not np.allclose(s[0], i) for s, i in zip(stats, init_stats))  # they were updated
    for i, lane in enumerate(lanes):
        alone_state, alone = run(program, data, [lane])
        np.testing.assert_allclose(together[0].epoch_loss[i], alone[0].epoch_loss[0], rtol=1e-4, atol=1e-5)
        # batched and unbatched convolutions round differently; training amplifies it slightly
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b[0], rtol=1e-3, atol=1e-4),
                     state.batch_stats, alone_state.batch_stats)


@pytest.mark.slow
def test_readout_is_evaluated_with_the_readout_running_statistics():
    program, data = resnet_setup()
    state, history = run(program, data, [Lane(0, "output_interp", 0.5, 1e-3)])
    family_task = engine.sample_task(program, jnp.int32(0), 0, data)
    params = jax.tree.map(lambda a: a[0], state.readout_params)
    stats = jax.tree.map(lambda a: a[0], state.readout_batch_stats)
    acc, loss = engine.evaluate(program, params, stats, family_task, data, "train")
    np.testing.assert_allclose(history[0].train_acc[0], acc, rtol=1e-6)
    np.testing.assert_allclose(history[0].train_loss[0], loss, rtol=1e-5)
    # the gradual lane is read after its pure phase: its readout statistics differ from the end of the task
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.readout_batch_stats),
                                                    jax.tree.leaves(state.batch_stats)))


def resnet_unit_program(**mitigation):
    program, data = resnet_setup()
    abstract = nnx.state(nnx.eval_shape(lambda: program.model_factory(nnx.Rngs(0))), nnx.Param)
    static = MitigationStructure(unit_layers=resnet.unit_layers(abstract), **mitigation)
    return dataclasses.replace(program, mitigation=static), data


@pytest.mark.slow
def test_redo_resets_resnet_filters_and_leaves_other_lanes_alone():
    """Everything is dormant under a huge threshold: every step resets the capped half of each
    block's conv1 filters, so after the last step those filters' outgoing conv2 channels are 0."""
    program, data = resnet_unit_program(redo_every=1)
    on = MitigationHParams.create(redo_threshold=1e9, redo_max_fraction=0.5)
    hp = to_hparams([Lane(0, "abrupt", None, 1e-3), Lane(0, "abrupt", None, 1e-3)])
    hp = hp.replace(mitigation=MitigationHParams.stack([MitigationHParams.create(), on]))
    state, m = jax.device_get(engine.make_task_fn(program)(hp, engine.init_lanes(program, hp), data, jnp.int32(0)))
    assert m.finite.all()
    layers = program.mitigation.unit_layers
    resets = np.asarray(state.mitigation.redo_resets)
    assert (resets[0] == 0).all()
    leaves = leaf_dict(state.params)
    for j, layer in enumerate(layers):
        units = leaves[layer.kernel].shape[-1]
        assert resets[1, j] == program.steps_per_task * (units // 2)
        out = np.asarray(leaves[layer.out_kernel][1])  # [3, 3, units, C]
        zero_channels = np.all(out == 0, axis=(0, 1, 3)).sum()
        assert zero_channels >= units // 2
        assert not np.all(np.asarray(leaves[layer.out_kernel][0]) == 0, axis=(0, 1, 3)).any()


@pytest.mark.slow
def test_continual_backprop_replaces_resnet_filters():
    program, data = resnet_unit_program(cbp=True)
    hp = to_hparams([Lane(0, "abrupt", None, 1e-3)])
    hp = hp.replace(mitigation=MitigationHParams.stack(
        [MitigationHParams.create(cbp_rate=0.5, cbp_maturity=0.0, cbp_decay=0.9)]))
    state, m = jax.device_get(engine.make_task_fn(program)(hp, engine.init_lanes(program, hp), data, jnp.int32(0)))
    assert m.finite.all() and (np.asarray(state.mitigation.cbp_replacements) > 0).all()


@pytest.mark.slow
def test_resnet_diagnostics_use_the_readout_running_statistics():
    program, data = resnet_setup()
    program = dataclasses.replace(program, diagnostics=DiagnosticsSpec(probe_size=12, dormant_taus=(0.0,), redo_threshold=0.1,
                                                                       hessian=False, hessian_iters=1))
    state, history = run(program, data, [Lane(0, "abrupt", None, 1e-3)])
    params = jax.tree.map(lambda a: a[0], state.readout_params)
    stats = jax.tree.map(lambda a: a[0], state.readout_batch_stats)
    index = engine.probe_indices(program)
    task = engine.sample_task(program, jnp.int32(0), 0, data)
    model = nnx.merge(program.graphdef, params, stats)
    features = [np.asarray(h) for h in model.features(data.x_train[index], train=False)]
    dormant = sum((np.mean(h > 0, axis=0) <= 0).sum() for h in features) / sum(h.shape[1] for h in features)
    np.testing.assert_allclose(history[0].diagnostics["dormant_fraction_tau0"][0], dormant)
    logits = np.asarray(model(data.x_train[index], train=False), np.float64)
    labels = np.asarray(task)[np.asarray(index)]
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    np.testing.assert_allclose(history[0].diagnostics["probe_loss"][0], -log_p[np.arange(12), labels].mean(),
                               rtol=1e-4)


def test_cifar_presets():
    paper = experiments.get_config("fig1-cifar", "paper")
    assert (paper.data.dataset, paper.data.train_per_class, paper.protocol.batch_size) == ("cifar10", 5000, 250)
    assert (paper.protocol.epochs_per_task, paper.protocol.transition_ratio, paper.sweep.deltas) == (40, 2.0, (0.05,))
    assert (paper.optim.name, paper.optim.weight_decay, paper.sweep.learning_rates) == ("adamw", 0.0, (1e-4,))
    assert paper.mitigations.l2 == 1e-5 and paper.mitigations.shrink_perturb_at == "before"
    assert set(experiments.get_config("fig1-cifar", "cpu-baselines").sweep.methods) == {
        "none", "l2", "l2_init", "shrink_perturb", "spectral", "redo", "cbp"}


@pytest.mark.needs_mnist
@pytest.mark.slow
def test_tiny_resnet_run_through_the_cli(tmp_path):
    import pandas as pd
    argv = ["run", "fig1-cifar", "--preset", "cpu", "--out", str(tmp_path), "--no-progress",
            "--set", "task.num_tasks=1", "--set", "data.train_per_class=4", "--set", "protocol.epochs_per_task=1",
            "--set", "sweep.seeds=0", "--set", "model.width_multiplier=0.0625", "--set", "protocol.batch_size=16",
            "--set", "sweep.methods=none,l2"]
    assert cli.main(argv) == 0
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 3  # abrupt × (none, l2) + output_interp, 1 task
    assert table["finite"].all() and table["dataset"].str.startswith("mnist").all()
