"""ResNet-18 in the engine: BatchNorm statistics carried per lane, readout in evaluation mode."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from gradual_jax import cli, engine
from gradual_jax.config import ConfigError, apply_overrides, validate
from gradual_jax.models.resnet import ResNet18
from gradual_jax.sweep import Lane, to_hparams
from tests.conftest import tiny_program
from tests.test_cli import needs_mnist


def resnet_setup():
    rng = np.random.default_rng(0)
    data = engine.TaskData(x_train=jnp.asarray(rng.normal(size=(24, 8, 8, 1)), jnp.float32),
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


@pytest.mark.parametrize("override,field", [("diagnostics.enabled=true", "diagnostics"),
                                            ("sweep.methods=none,redo", "sweep.methods")])
def test_resnet_limits_are_clear_errors(override, field):
    with pytest.raises(ConfigError, match=field):
        validate(apply_overrides(experiments.get_config("fig1-cifar", "cpu"), [override]))


def test_cifar_presets():
    paper = experiments.get_config("fig1-cifar", "paper")
    assert (paper.data.dataset, paper.data.train_per_class, paper.protocol.batch_size) == ("cifar10", 5000, 250)
    assert (paper.protocol.epochs_per_task, paper.protocol.transition_ratio, paper.sweep.deltas) == (40, 2.0, (0.05,))
    assert (paper.optim.name, paper.optim.weight_decay, paper.sweep.learning_rates) == ("adamw", 0.0, (1e-4,))
    assert paper.mitigations.l2 == 1e-5 and paper.mitigations.shrink_perturb_at == "before"
    assert set(experiments.get_config("fig1-cifar", "cpu-baselines").sweep.methods) == {
        "none", "l2", "l2_init", "shrink_perturb", "spectral"}


@needs_mnist
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
