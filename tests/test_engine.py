"""The compiled engine: vmapped lanes equal lanes run alone, learning, masking, NaN detection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax.core import engine
from gradual_jax.envs import image
from gradual_jax.envs import schedules
from gradual_jax.envs.problem import Batch
from gradual_jax.runner.sweep import Lane, to_hparams
from tests.conftest import tiny_data, tiny_program


_TASK_FNS = {}


def run_tasks(program, data, lanes, num_tasks, lane_groups=1):
    """Run lanes for some tasks; one jitted function per program, so shapes seen before reuse
    their executable (the lane-alone runs below share one compilation)."""
    hp = to_hparams(lanes)
    state = engine.init_lanes(program, hp)
    run_task = _TASK_FNS.setdefault((program, lane_groups), engine.make_task_fn(program, lane_groups))
    history = []
    for t in range(num_tasks):
        state, m = run_task(hp, state, data, jnp.int32(t))
        history.append(jax.device_get(m))
    return jax.device_get(state), history


LANES = [
    Lane(seed=0, schedule="abrupt", delta=None, learning_rate=1e-3),
    Lane(seed=1, schedule="output_interp", delta=0.5, learning_rate=3e-3),
    Lane(seed=0, schedule="task_sampling", delta=0.25, learning_rate=1e-3),
    Lane(seed=2, schedule="output_mix", delta=0.5, learning_rate=2e-3),
]


@pytest.mark.slow
def test_vmapped_sweep_equals_each_lane_alone():
    program, data = tiny_program(), tiny_data()
    state, history = run_tasks(program, data, LANES, num_tasks=2)
    for i, lane in enumerate(LANES):
        alone_state, alone = run_tasks(program, data, [lane], num_tasks=2)
        for t in range(2):
            for name in ("online_train_acc", "train_acc", "test_acc", "train_loss", "epoch_loss"):
                np.testing.assert_allclose(np.asarray(getattr(history[t], name))[i],
                                           np.asarray(getattr(alone[t], name))[0], rtol=1e-4, atol=1e-5,
                                           err_msg=f"lane {i} task {t} {name}")
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b[0], rtol=1e-4, atol=1e-5),
                     state.params, alone_state.params)


@pytest.mark.parametrize("lane_groups", [2, 4])
@pytest.mark.slow
def test_lanes_trained_in_groups_equal_one_vmap(lane_groups):
    """Groups of lanes run one after another (lane r in group r % G) compute what one vmap does."""
    program, data = tiny_program(), tiny_data()
    state, history = run_tasks(program, data, LANES, num_tasks=2)
    grouped_state, grouped = run_tasks(program, data, LANES, num_tasks=2, lane_groups=lane_groups)
    for t in range(2):
        for name in ("online_train_acc", "train_acc", "test_acc", "train_loss", "epoch_loss", "finite"):
            np.testing.assert_allclose(np.asarray(getattr(grouped[t], name)), np.asarray(getattr(history[t], name)),
                                       rtol=1e-5, atol=1e-6, err_msg=f"task {t} {name}")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), grouped_state, state)
    # the lanes really differ, so a mix-up of lanes between groups could not pass unseen
    assert len({round(float(x), 6) for x in history[1].train_loss}) == len(LANES)


@pytest.mark.slow
def test_permuted_pixels_input_interp_lanes_equal_alone():
    program, data = tiny_program("permuted_pixels"), tiny_data()
    lanes = [Lane(0, "abrupt", None, 1e-3), Lane(0, "input_interp", 0.25, 1e-3)]
    _, history = run_tasks(program, data, lanes, num_tasks=2)
    for i, lane in enumerate(lanes):
        _, alone = run_tasks(program, data, [lane], num_tasks=2)
        np.testing.assert_allclose(history[1].test_acc[i], alone[1].test_acc[0], rtol=1e-5)
        np.testing.assert_allclose(history[1].epoch_loss[i], alone[1].epoch_loss[0], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_same_seed_same_init_and_tasks_across_schedules():
    """Lanes differing only in schedule start from the same parameters (paired comparison)
    and train identically until the first transition begins."""
    program, data = tiny_program(), tiny_data()
    lanes = [Lane(7, "abrupt", None, 1e-3), Lane(7, "output_interp", 0.5, 1e-3)]
    _, history = run_tasks(program, data, lanes, num_tasks=1)
    pure = program.epochs_per_task
    np.testing.assert_allclose(history[0].epoch_loss[0, :pure], history[0].epoch_loss[1, :pure], rtol=1e-6)
    assert not np.allclose(history[0].epoch_loss[0, pure:], history[0].epoch_loss[1, pure:])


def test_learns_a_tiny_random_label_task():
    """64 random-labelled points: the MLP memorises them (train accuracy >= 0.95)."""
    program = tiny_program(num_train=64, hidden=(64, 64), epochs_per_task=60, transition_epochs=0,
                           batch_size=16, eval_batch_size=64)
    data = tiny_data(num_train=64)
    _, history = run_tasks(program, data, [Lane(0, "abrupt", None, 3e-3)], num_tasks=1)
    assert history[0].train_acc[0] >= 0.95
    assert history[0].epoch_loss[0, -1] < history[0].epoch_loss[0, 0]


def test_epoch_visits_every_example_once_with_a_short_last_batch():
    """drop_last=False: 48 examples in batches of 10 are four full batches and one of 8
    real rows; the 2 padded rows are masked out of the loss (see the next test)."""
    program = tiny_program(num_train=48, batch_size=10)  # last batch: 8 real rows, 2 padded
    index, valid = engine._epoch_batches(program, jax.random.key(0))
    assert valid.sum() == 48 and valid[-1].sum() == 8
    assert sorted(np.asarray(index)[np.asarray(valid)].tolist()) == list(range(48))


def test_padded_rows_add_nothing_to_the_training_loss():
    """The classification loss the engine divides by the real-row count: padded rows (any
    logits, any targets) contribute neither cross-entropy nor correct predictions."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    logits[3] = [1e4, -1e4, 0.0]  # a padded row with extreme values
    labels = np.array([0, 2, 1, 1])
    targets = np.eye(3, dtype=np.float32)[labels]
    valid = np.array([True, True, True, False])
    problem = image.Classification(image.get_family("random_labels"), 3)
    batch = Batch(inputs=None, targets=jnp.asarray(targets), labels=jnp.asarray(labels))
    loss_sum, correct, count = problem.loss(jnp.asarray(logits), batch, jnp.asarray(valid))
    log_softmax = logits[:3] - np.log(np.exp(logits[:3]).sum(-1, keepdims=True))
    assert float(loss_sum) == pytest.approx(-log_softmax[np.arange(3), labels[:3]].sum(), rel=1e-5)
    assert float(correct) == (logits[:3].argmax(-1) == labels[:3]).sum() and float(count) == 3


@pytest.mark.slow
def test_nonfinite_loss_is_flagged_per_lane():
    program, data = tiny_program(), tiny_data()
    lanes = [Lane(0, "abrupt", None, 1e-3), Lane(0, "abrupt", None, 1e38)]
    _, history = run_tasks(program, data, lanes, num_tasks=1)
    assert history[0].finite.tolist() == [True, False]


def test_readout_epoch():
    assert int(schedules.readout_epoch(schedules.ABRUPT, 8, 16)) == 23
    assert int(schedules.readout_epoch(schedules.OUTPUT_INTERP, 8, 16)) == 7


@pytest.mark.slow
def test_metrics_are_read_at_the_end_of_the_pure_phase():
    """A gradual lane's online accuracy is that of epoch E-1, an abrupt lane's that of the last epoch."""
    program, data = tiny_program(), tiny_data()
    _, history = run_tasks(program, data, LANES[:2], num_tasks=1)
    m = history[0]
    assert m.online_train_acc[0] == m.epoch_acc[0, program.epochs_per_segment - 1]
    assert m.online_train_acc[1] == m.epoch_acc[1, program.epochs_per_task - 1]


@pytest.mark.slow
def test_readout_timing_control_is_epoch_E_in_every_lane():
    """The control columns are the online numbers of epoch E (0-based E-1) of the segment: the
    readout for a gradual lane, E epochs into the (1+k)·E of an abrupt one."""
    program, data = tiny_program(), tiny_data()
    _, history = run_tasks(program, data, LANES[:2], num_tasks=1)
    m, e = history[0], program.epochs_per_task - 1
    np.testing.assert_array_equal(m.online_train_acc_at_E, m.epoch_acc[:, e])
    np.testing.assert_array_equal(m.online_train_loss_at_E, m.epoch_loss[:, e])
    assert m.online_train_acc_at_E[1] == m.online_train_acc[1]  # the gradual lane: its readout
    assert not np.isclose(m.online_train_loss_at_E[0], m.online_train_loss[0])  # abrupt: read later
