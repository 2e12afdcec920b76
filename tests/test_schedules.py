"""Transition schedules against hand-worked stage tables and the definitions in docs/protocol.md."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradual_jax.core import engine
from gradual_jax.envs import families, image, schedules
from gradual_jax.envs.schedules import ABRUPT, INPUT_INTERP, OUTPUT_INTERP, OUTPUT_MIX, TASK_SAMPLING
from tests.conftest import tiny_data, tiny_program

B = 8


def mix_at(schedule, delta, step, pure_steps=10, transition_steps=40, batch=B):
    return schedules.batch_mix(jnp.int32(schedule), jnp.float32(delta), jnp.int32(step), pure_steps,
                               transition_steps, jnp.int32(batch), B)


def targets(mix, y_old, y_new, classes=4):
    return np.asarray(schedules.mixed_targets(jnp.asarray(y_old), jnp.asarray(y_new), mix, classes))


Y_OLD = np.array([0, 1, 2, 3, 0, 1, 2, 3])
Y_NEW = np.array([3, 2, 1, 0, 1, 1, 0, 2])


class OutputInterpolationTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_first_stage_is_one_hot_old_labels(self):
        mix = self.variant(mix_at)(OUTPUT_INTERP, 0.5, 10)  # first transition step: α = 0
        np.testing.assert_array_equal(targets(mix, Y_OLD, Y_NEW), np.eye(4)[Y_OLD])

    def test_alpha_one_is_uniform(self):
        # Δ = 0.5: 4 stages of 10 steps: α = 0, 0.5 (old labels), 1, 0.5 (new labels)
        mix = mix_at(OUTPUT_INTERP, 0.5, 10 + 20)
        np.testing.assert_allclose(targets(mix, Y_OLD, Y_NEW), np.full((B, 4), 0.25), atol=1e-7)

    def test_stage_table(self):
        expected = {  # transition step -> (labels, α), worked out by hand for Δ = 0.5
            0: ("old", 0.0), 9: ("old", 0.0), 10: ("old", 0.5), 19: ("old", 0.5),
            20: ("new", 1.0), 29: ("new", 1.0), 30: ("new", 0.5), 39: ("new", 0.5)}
        for i, (which, alpha) in expected.items():
            y = Y_OLD if which == "old" else Y_NEW
            want = (1 - alpha) * np.eye(4)[y] + alpha / 4
            np.testing.assert_allclose(targets(mix_at(OUTPUT_INTERP, 0.5, 10 + i), Y_OLD, Y_NEW), want,
                                       atol=1e-7, err_msg=f"transition step {i}")

    def test_every_soft_target_sums_to_one(self):
        for sid in (ABRUPT, OUTPUT_INTERP, OUTPUT_MIX, INPUT_INTERP, TASK_SAMPLING):
            for delta in (1.0, 0.5, 0.25, 0.1):
                for step in range(0, 50, 3):
                    sums = targets(mix_at(sid, delta, step), Y_OLD, Y_NEW).sum(-1)
                    np.testing.assert_allclose(sums, 1.0, atol=1e-6)

    def test_direct_mix(self):
        # Δ = 0.25: 4 stages of 10 steps, α = 0, .25, .5, .75 between the two one-hot labels
        for stage, alpha in enumerate((0.0, 0.25, 0.5, 0.75)):
            want = (1 - alpha) * np.eye(4)[Y_OLD] + alpha * np.eye(4)[Y_NEW]
            np.testing.assert_allclose(targets(mix_at(OUTPUT_MIX, 0.25, 10 + 10 * stage + 5), Y_OLD, Y_NEW),
                                       want, atol=1e-7)

    def test_pure_phase_and_abrupt_are_one_hot(self):
        for sid in (OUTPUT_INTERP, OUTPUT_MIX, TASK_SAMPLING, ABRUPT):
            np.testing.assert_array_equal(targets(mix_at(sid, 0.5, 3), Y_OLD, Y_NEW), np.eye(4)[Y_OLD])
        for step in (10, 25, 49):  # abrupt never enters a transition
            np.testing.assert_array_equal(targets(mix_at(ABRUPT, 0.5, step), Y_OLD, Y_NEW), np.eye(4)[Y_OLD])


class TaskSamplingTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_exact_new_task_counts(self):
        # Δ = 0.1 over 40 steps: 10 stages of 4 steps, s = 0, 0.1, ..., 0.9
        fn = self.variant(lambda step, b: mix_at(TASK_SAMPLING, 0.1, step, batch=b))
        for stage in range(10):
            for b in (8, 5, 3):
                mix = fn(10 + 4 * stage, b)
                new = np.asarray(mix.input_new)
                expected = int(np.floor(b * stage / 10 + 0.5))  # round(b·s), halves up
                self.assertEqual(int(new[:b].sum()), expected, (stage, b))
                self.assertEqual(int(new[b:].sum()), 0)  # padding rows are never "new"
                np.testing.assert_array_equal(np.asarray(mix.target_new), new)
                np.testing.assert_array_equal(np.asarray(mix.target_old)[:b], 1 - new[:b])

    def test_hand_worked_counts(self):
        # B = 8: s = 0.5 -> 4 new; Δ = 0.25, s = 0.75 -> 6 new
        self.assertEqual(int(mix_at(TASK_SAMPLING, 0.5, 10 + 20).input_new.sum()), 4)
        self.assertEqual(int(mix_at(TASK_SAMPLING, 0.25, 10 + 30).input_new.sum()), 6)


@pytest.mark.parametrize("name,delta,k,epochs,stages,per_stage", [
    ("output_interp", 0.5, 2, 80, 4, 40),      # random-label MNIST: k·E·Δ/2 = 40
    ("output_interp", 0.05, 2, 40, 40, 2),     # CIFAR-10: 2 epochs per stage
    ("input_interp", 0.05, 1, 100, 20, 5),     # permuted EMNIST: k·E·Δ = 5
    ("task_sampling", 0.02, 2, 300, 50, 12),   # Random Seq2Seq: k·E/(1/Δ) = 12
    ("task_sampling", 0.02, 1, 100, 50, 2),    # Bigram Cipher
    ("output_mix", 0.25, 1, 8, 4, 2),
])
def test_stages_and_epochs_per_stage(name, delta, k, epochs, stages, per_stage):
    sid = schedules.schedule_id(name)
    assert schedules.num_stages(sid, delta) == stages
    assert schedules.epochs_per_stage(sid, delta, epochs, k) == per_stage
    # the engine's step-level stage index agrees: stage q covers per_stage epochs exactly
    steps_per_epoch = 3
    transition = k * epochs * steps_per_epoch
    stage_of = [int(schedules.stage_at(sid, delta, i, transition)) for i in range(transition)]
    assert stage_of == [i // (per_stage * steps_per_epoch) for i in range(transition)]


@pytest.mark.parametrize("delta", [0.0, -0.5, 1.5, 0.3, 0.07])
def test_bad_delta_is_refused(delta):
    with pytest.raises(ValueError, match="Δ"):
        schedules.check_delta(delta)


def test_input_interpolation_endpoints():
    """α = 0 is task t's permuted input; the stage after the last is task t+1's, exactly."""
    program = tiny_program("permuted_pixels")
    data = tiny_data()
    family = image.get_family("permuted_pixels")
    seed = jnp.int32(3)
    sample = lambda t: engine.sample_task(program, seed, t, data)  # noqa: E731
    old, new = sample(5), sample(6)
    index = jnp.arange(10)
    x_t = np.asarray(family.inputs(old, data.x_train[index]))
    x_next = np.asarray(family.inputs(new, data.x_train[index]))
    assert not np.array_equal(x_t, x_next)
    pure = program.epochs_per_task * program.steps_per_epoch
    transition = program.transition_epochs * program.steps_per_epoch

    def batch_at(step):
        mix = schedules.batch_mix(jnp.int32(INPUT_INTERP), jnp.float32(0.25), jnp.int32(step), pure,
                                  transition, jnp.int32(10), 10)
        return np.asarray(engine.make_batch(program, data, old, new, index, mix).inputs)

    np.testing.assert_array_equal(batch_at(pure), x_t)  # first transition stage, α = 0
    last_stage = batch_at(pure + transition - 1)  # α = 1 - Δ = 0.75
    np.testing.assert_allclose(last_stage, 0.25 * x_t + 0.75 * x_next, rtol=1e-6, atol=1e-6)
    # The next segment's pure phase is task t+1 itself: its "old" task is this segment's "new".
    np.testing.assert_array_equal(np.asarray(sample(6)), np.asarray(new))
    mix_one = schedules.Mix(*(jnp.full(10, v, jnp.float32) for v in (1.0, 1.0, 0.0, 0.0)))
    np.testing.assert_array_equal(np.asarray(engine.make_batch(program, data, old, new, index, mix_one).inputs),
                                  x_next)


@pytest.mark.slow
def test_arms_see_the_same_samples_per_task():
    """Abrupt and gradual lanes of one program run the same epochs per task, each epoch
    visiting all N examples once, so both process (1+k)·E·N examples per task."""
    from gradual_jax.runner.sweep import Lane, to_hparams
    program, data = tiny_program(), tiny_data()
    lanes = [Lane(0, "abrupt", None, 1e-3), Lane(0, "output_interp", 0.5, 1e-3), Lane(0, "task_sampling", 0.5, 1e-3)]
    hp = to_hparams(lanes)
    _, m = engine.make_task_fn(program)(hp, engine.init_lanes(program, hp), data, jnp.int32(0))
    assert np.asarray(m.epoch_loss).shape == (3, 2 + 4)  # (1+k)·E epochs for every lane
    _, valid = engine._epoch_batches(program, jax.random.key(0))
    assert int(valid.sum()) == program.num_train == 48
    assert program.steps_per_epoch == 5  # 48 examples, batch 10: four full batches and one of 8


# --- the registries -----------------------------------------------------------------------------

def halfway(name="halfway_test"):
    """A throwaway schedule: one stage of half old, half new targets."""
    return schedules.Schedule(name, moves="targets", stages=lambda n: 1,
                              mix=lambda at: schedules.targets_toward_new(jnp.float32(0.5), at.max_batch))


def test_built_ins_keep_their_ids():
    assert schedules.BUILT_IN == schedules.NAMES[:5] == (
        "abrupt", "output_interp", "output_mix", "input_interp", "task_sampling")
    assert (ABRUPT, OUTPUT_INTERP, OUTPUT_MIX, INPUT_INTERP, TASK_SAMPLING) == (0, 1, 2, 3, 4)
    assert schedules.GRADUAL == frozenset(schedules.BUILT_IN[1:])


def test_a_registered_schedule_leaves_the_built_ins_bit_identical():
    def every_mix():
        lanes = [(sid, delta, step, b) for sid in range(5) for delta in (1.0, 0.5, 0.1) for step in range(0, 52, 3)
                 for b in (8, 5)]
        fn = jax.jit(jax.vmap(lambda s, d, i, b: schedules.batch_mix(s, d, i, 10, 40, b, B)))
        s, d, i, b = (jnp.asarray(v) for v in zip(*lanes))
        return [np.asarray(m) for m in fn(s.astype(jnp.int32), d.astype(jnp.float32), i.astype(jnp.int32),
                                          b.astype(jnp.int32))]

    before = every_mix()
    schedules.register(halfway())
    try:
        sid = schedules.schedule_id("halfway_test")
        assert sid == 5 and "halfway_test" in schedules.NAMES and "halfway_test" in schedules.GRADUAL
        for got, want in zip(every_mix(), before):
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(mix_at(sid, 0.5, 25).target_new, np.full(B, 0.5))
        np.testing.assert_array_equal(mix_at(sid, 0.5, 5).target_new, np.zeros(B))  # pure phase
        assert int(schedules.readout_epoch(sid, 8, 16)) == 7  # read after the pure phase, like the built-ins
        schedules.register(halfway())  # again (the file re-run): replaced, same id
        assert schedules.schedule_id("halfway_test") == sid and len(schedules.NAMES) == 6
    finally:
        schedules.unregister("halfway_test")
    assert schedules.NAMES == schedules.BUILT_IN


def test_registration_is_checked():
    with pytest.raises(ValueError, match="built-in"):
        schedules.register(halfway("output_mix"))
    with pytest.raises(ValueError, match="built-in"):
        schedules.unregister("abrupt")
    with pytest.raises(TypeError):
        schedules.register("halfway")
    with pytest.raises(ValueError, match="moves="):
        schedules.Schedule("sideways", moves="labels", stages=lambda n: n, mix=lambda at: None)
    with pytest.raises(ValueError, match="needs stages and mix"):
        schedules.Schedule("incomplete", moves="targets")


def test_families_declare_what_their_tasks_change():
    for name in families.names("image"):
        family = families.get(name)
        assert image.get_family(name) is family.make
        assert ("inputs" in family.moves) == family.make.changes_inputs, name
        assert ("targets" in family.moves) == family.make.changes_labels, name
    assert families.names() == ("random_labels", "permuted_pixels", "random_seq2seq", "bigram_cipher")


def test_a_family_without_a_reason_says_what_it_can_move():
    families.register(families.Family("shifted_test", kind="image", moves=("inputs",), metrics=("train_acc",),
                                      make=image.get_family("permuted_pixels")))
    try:
        assert families.schedules_for("shifted_test") == ("abrupt", "input_interp")
        assert families.refusal("shifted_test", "output_mix") == (
            "output_mix moves the targets, which task.family=shifted_test does not change (it can move the inputs)")
        assert families.refusal("shifted_test", "input_interp") is None
    finally:
        families.unregister("shifted_test")
