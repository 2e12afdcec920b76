"""The text tasks in the engine: batches under the schedules, the masked token loss, BLEU readout."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from gradual_jax import experiments
from gradual_jax.core import engine
from gradual_jax.envs import schedules
from gradual_jax.runner import build
from gradual_jax.config import ConfigError, apply_overrides, validate
from gradual_jax.mitigations import MitigationStructure, MitigationHParams
from gradual_jax.models.paths import leaf_dict
from gradual_jax.models import t5
from gradual_jax.models.init import normal_fan_in
from gradual_jax.runner.sweep import Lane, to_hparams
from gradual_jax.envs.text import bleu, decoding
from gradual_jax.envs.text import tasks
from gradual_jax.envs.text import tokenizer as tok
from gradual_jax.envs.text.seq2seq import Seq2Seq, counted_tokens, teacher_forced, token_loss

CIPHER = tasks.BigramCipherSpec(num_train=24, num_test=8, num_words=3, word_len=3)
SEQ2SEQ = tasks.RandomSeq2SeqSpec(num_pairs=16, input_words=4, target_words=5, word_len=3)


def text_program(spec, *, model=t5.T5Config(d_model=32, num_heads=2, d_kv=8, d_ff=64), epochs=2,
                 transition=2, batch_size=8, **problem):
    return engine.Program(
        model_factory=lambda rngs: t5.T5(model, rngs=rngs), problem=Seq2Seq(spec, **problem),
        num_train=Seq2Seq(spec).num_examples(None, "train"), epochs_per_task=epochs, transition_epochs=transition,
        batch_size=batch_size, eval_batch_size=16,
        make_optimizer=lambda lr: optax.adam(learning_rate=lr))


def mix_at(program, schedule, delta, step, batch):
    return schedules.batch_mix(jnp.int32(schedules.schedule_id(schedule)), jnp.float32(delta), jnp.int32(step),
                               program.epochs_per_task * program.steps_per_epoch,
                               program.transition_epochs * program.steps_per_epoch, jnp.int32(batch), batch)


@pytest.mark.slow
def test_cipher_targets_rebuilt_from_inputs():
    task = tasks.bigram_cipher(jax.random.key(3), 2, CIPHER)
    for x, y in ((task.train_inputs, task.train_targets), (task.test_inputs, task.test_targets)):
        np.testing.assert_array_equal(tasks.encipher_inputs(CIPHER, task.cipher_perm, x), y)
    other = tasks.bigram_cipher(jax.random.key(3), 3, CIPHER)
    assert not np.array_equal(tasks.encipher_inputs(CIPHER, other.cipher_perm, task.train_inputs), task.train_targets)


@pytest.mark.slow
def test_task_sampling_batch_draws_exact_counts_from_the_next_task():
    program = text_program(SEQ2SEQ, epochs=1, transition=5, batch_size=8)  # 2 steps/epoch, 10 transition steps
    old, new = (engine.sample_task(program, jnp.int32(0), t, engine.BaseData()) for t in (4, 5))
    index = jnp.arange(8) + 4
    pure = program.epochs_per_task * program.steps_per_epoch
    for stage, step in enumerate(range(pure, pure + 10, 2)):  # Δ = 0.2: 5 stages of 2 steps
        batch = program.problem.batch(None, old, new, index, mix_at(program, "task_sampling", 0.2, step, 8))
        inputs, decoder_inputs = batch.inputs
        from_new = np.all(np.asarray(inputs) == np.asarray(new.train_inputs[index]), axis=1)
        from_old = np.all(np.asarray(inputs) == np.asarray(old.train_inputs[index]), axis=1)
        assert from_new.sum() == round(8 * stage / 5 + 1e-9) and np.all(from_new ^ from_old)
        expected = np.where(from_new[:, None], np.asarray(new.train_targets[index]),
                            np.asarray(old.train_targets[index]))
        np.testing.assert_array_equal(batch.labels, expected)
        np.testing.assert_array_equal(batch.targets, np.eye(tok.VOCAB_SIZE)[expected])
        np.testing.assert_array_equal(decoder_inputs, tok.shift_right(jnp.asarray(expected)))


def test_cipher_output_interpolation_mixes_the_two_ciphers_of_the_same_inputs():
    program = text_program(CIPHER, epochs=1, transition=4, batch_size=8)
    old, new = (engine.sample_task(program, jnp.int32(1), t, engine.BaseData()) for t in (0, 1))
    index = jnp.arange(8)
    pure, steps = program.epochs_per_task * program.steps_per_epoch, program.steps_per_epoch
    batch = program.problem.batch(None, old, new, index, mix_at(program, "output_interp", 0.5, pure + steps, 8))
    # stage 1 of 4 (Δ = 0.5): α = 0.5 fading task t out towards uniform
    y_old = np.asarray(old.train_targets[index])
    np.testing.assert_array_equal(batch.inputs[0], old.train_inputs[index])
    np.testing.assert_allclose(batch.targets, 0.5 * np.eye(tok.VOCAB_SIZE)[y_old] + 0.5 / tok.VOCAB_SIZE, atol=1e-7)
    batch = program.problem.batch(None, old, new, index, mix_at(program, "output_interp", 0.5, pure + 3 * steps, 8))
    # stage 3: α = 0.5 fading task t+1's cipher of the same inputs in
    y_next = np.asarray(tasks.encipher_inputs(CIPHER, new.cipher_perm, old.train_inputs[index]))
    np.testing.assert_allclose(batch.targets, 0.5 * np.eye(tok.VOCAB_SIZE)[y_next] + 0.5 / tok.VOCAB_SIZE, atol=1e-7)
    np.testing.assert_array_equal(batch.labels, y_next)


def test_teacher_forcing_and_the_token_loss_by_hand():
    targets = jnp.asarray([[5, 6, tok.EOS, tok.PAD]])
    batch = teacher_forced(jnp.asarray([[7, tok.EOS]]), targets)
    np.testing.assert_array_equal(batch.inputs[1], [[tok.BOS, 5, 6, tok.EOS]])
    # uniform logits but 10 on the right token at position 0: p = e^10 / (e^10 + 29) there, 1/30 elsewhere
    logits = jnp.zeros((1, 4, tok.VOCAB_SIZE)).at[0, 0, 5].set(10.0)
    first, rest = -np.log(np.exp(10) / (np.exp(10) + 29)), np.log(30)
    valid = jnp.asarray([True])
    loss_sum, correct, count = token_loss(logits, batch, counted_tokens(targets, valid))
    assert (float(count), float(correct)) == (3, 1)  # pad left out; only position 0's argmax is right
    np.testing.assert_allclose(float(loss_sum), first + 2 * rest, rtol=1e-6)
    loss_sum, _, count = token_loss(logits, batch, counted_tokens(targets, valid, mask_pad=False))
    assert float(count) == 4
    np.testing.assert_allclose(float(loss_sum), first + 3 * rest, rtol=1e-6)
    # a padding row counts nothing; a half-and-half soft target costs the mean of the two tokens' costs
    two = teacher_forced(jnp.zeros((2, 2), jnp.int32), jnp.concatenate([targets, targets]))
    first_row_only = counted_tokens(two.labels, jnp.asarray([True, False]))
    _, _, count = token_loss(jnp.zeros((2, 4, tok.VOCAB_SIZE)), two, first_row_only)
    assert float(count) == 3
    soft = batch.replace(targets=batch.targets.at[0, 0].set(0.5 * (jax.nn.one_hot(5, 30) + jax.nn.one_hot(6, 30))))
    loss_sum, _, _ = token_loss(logits, soft, counted_tokens(targets, valid))
    other = -np.log(1 / (np.exp(10) + 29))
    np.testing.assert_allclose(float(loss_sum), 0.5 * (first + other) + 2 * rest, rtol=1e-6)


@pytest.mark.parametrize("mask_pad", [True, False])
def test_token_loss_counts_pad_only_when_asked(mask_pad):
    spec = dataclasses.replace(SEQ2SEQ, target_len=23)  # 20 real tokens (5 words of 3, 4 spaces, eos) + 3 pad
    problem = Seq2Seq(spec, mask_pad=mask_pad)
    task = tasks.random_seq2seq(jax.random.key(0), 0, spec)
    batch = problem.examples(None, task, jnp.arange(4), "train")
    logits = jnp.zeros((4, 23, tok.VOCAB_SIZE)).at[:, :, tok.PAD].set(1.0)  # predicts pad everywhere
    valid = jnp.array([True, True, True, False])
    loss_sum, correct, count = problem.loss(logits, batch, valid)
    per_token = np.log(tok.VOCAB_SIZE - 1 + np.e)
    tokens = 3 * (20 if mask_pad else 23)
    assert float(count) == tokens
    assert float(correct) == (0 if mask_pad else 3 * 3)
    np.testing.assert_allclose(float(loss_sum), 3 * 20 * per_token + (0 if mask_pad else 3 * 3 * (per_token - 1)),
                               rtol=1e-5)


@pytest.mark.slow
def test_engine_memorises_a_tiny_seq2seq_and_reports_its_bleu():
    """300 Adam steps through the engine fit 16 pairs; the BLEU-2 column equals BLEU-2 of
    decoding the readout parameters directly, and greedy equals beam 1."""
    cfg = t5.T5Config(d_model=64, num_heads=4, d_kv=16, d_ff=512)
    program = text_program(SEQ2SEQ, model=cfg, epochs=300, transition=0, batch_size=16, bleu_examples=8, beam_size=3)
    hp = to_hparams([Lane(0, "abrupt", None, 1e-3)])
    state, metrics = engine.make_task_fn(program)(hp, engine.init_lanes(program, hp), engine.BaseData(), jnp.int32(0))
    metrics = jax.device_get(metrics)
    scores = program.problem.host_metrics(metrics.readout)
    assert set(scores) == {"train_bleu2", "train_bleu2_greedy"}
    assert scores["train_bleu2"][0] >= 0.9 and metrics.train_acc[0] > 0.95

    task = engine.sample_task(program, jnp.int32(0), 0, engine.BaseData())
    params = jax.tree.map(lambda a: a[0], state.readout_params)
    dec = decoding.t5_decoder(nnx.split(program.model_factory(nnx.Rngs(0)), nnx.Param)[0], cache=False)
    hyp = decoding.make_decoder(dec, SEQ2SEQ.output_len, beam_size=1)(params, task.train_inputs[:8])
    np.testing.assert_allclose(scores["train_bleu2_greedy"][0], bleu.bleu2_from_ids(hyp, task.train_targets[:8]))
    np.testing.assert_array_equal(metrics.readout["train_greedy"][0], hyp)


@pytest.mark.slow
def test_reset_each_task_restarts_the_optimizer():
    program = text_program(SEQ2SEQ, epochs=1, transition=0, batch_size=8)
    hp = to_hparams([Lane(0, "abrupt", None, 1e-3)])

    def adam_count(reset):
        p = dataclasses.replace(program, reset_optimizer=reset)
        fn, state = engine.make_task_fn(p), engine.init_lanes(p, hp)
        for t in range(2):
            state, _ = fn(hp, state, engine.BaseData(), jnp.int32(t))
        return int(state.opt_state[0].count[0])  # Adam's count: every update

    assert adam_count(False) == 2 * program.steps_per_task
    assert adam_count(True) == program.steps_per_task


@pytest.mark.parametrize("overrides,field", [
    (["model.name=mlp"], "model.name"),
    (["sweep.schedules=abrupt,output_interp"], "sweep.schedules"),
    (["sweep.schedules=abrupt,input_interp"], "sweep.schedules"),
    (["metric=test_bleu2"], "metric"),
    (["text.num_train=16"], "protocol.batch_size"),
    (["text.beam_size=0"], "text.beam_size"),
])
def test_bad_text_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        validate(apply_overrides(experiments.get_config("fig2-seq2seq", "cpu"), overrides))


def test_image_family_refuses_t5_and_bleu():
    with pytest.raises(ConfigError, match="model.name"):
        validate(apply_overrides(experiments.get_config("fig1-mnist", "cpu"), ["model.name=t5"]))
    with pytest.raises(ConfigError, match="metric"):
        validate(apply_overrides(experiments.get_config("fig1-mnist", "cpu"), ["metric=train_bleu2"]))


@pytest.mark.parametrize("name", ["fig2-seq2seq", "fig4-cipher"])
def test_text_presets(name):
    paper = experiments.get_config(name, "paper")
    assert (paper.model.d_model, paper.model.num_heads, paper.model.d_kv, paper.model.d_ff) == (256, 4, 64, 2048)
    assert paper.optim.name == "adamw" and paper.protocol.batch_size == 64 and paper.sweep.deltas == (0.02,)
    assert paper.sweep.schedules == ("abrupt", "task_sampling") and not paper.optim.reset_each_task
    if name == "fig2-seq2seq":
        assert (paper.text.num_train, paper.protocol.epochs_per_task, paper.protocol.transition_ratio) == (5120, 300, 2)
        assert paper.sweep.learning_rates == (1e-4,) and paper.metric == "train_bleu2"
    else:
        assert (paper.text.num_train, paper.text.num_test, paper.protocol.epochs_per_task) == (1280, 512, 100)
        assert paper.sweep.learning_rates == (1e-3,) and paper.metric == "test_bleu2"
    baselines = experiments.get_config(name, "cpu-baselines")
    assert set(baselines.sweep.methods) == {"none", "l2", "shrink_perturb", "redo", "spectral", "cbp"}
    for preset in experiments.presets(name):
        validate(experiments.get_config(name, preset))


def test_t5_and_resnet_unit_layers_are_filled_in():
    cfg = apply_overrides(experiments.get_config("fig2-seq2seq", "cpu-baselines"), [])
    program = build.build_program(cfg, build.prepare_data(cfg))
    names = [layer.kernel for layer in program.mitigation.unit_layers]
    assert names == ["encoder_layers/0/ffn/wi/kernel", "decoder_layers/0/ffn/wi/kernel"]
    assert not program.mitigation.redo_normalize and program.mitigation.redo_every == 100


@pytest.mark.slow
def test_redo_resets_t5_ffn_units_in_the_engine():
    """Everything dormant under a huge threshold, no cap: every 2 steps each FFN layer's units are
    all reset, so after the task's last step their outgoing weights are zero (T5 preset shape)."""
    program = text_program(SEQ2SEQ, epochs=1, transition=0, batch_size=8)  # 2 steps
    abstract = nnx.state(nnx.eval_shape(lambda: program.model_factory(nnx.Rngs(0))), nnx.Param)
    static = MitigationStructure(redo_every=2, redo_normalize=False, init_fn=normal_fan_in,
                              unit_layers=t5.unit_layers(abstract))
    program = dataclasses.replace(program, mitigation=static)
    hp = to_hparams([Lane(0, "abrupt", None, 1e-3)] * 2)
    hp = hp.replace(mitigation=MitigationHParams.stack(
        [MitigationHParams.create(), MitigationHParams.create(redo_threshold=1e9, redo_max_fraction=1.0)]))
    state, m = jax.device_get(engine.make_task_fn(program)(hp, engine.init_lanes(program, hp), engine.BaseData(),
                                                           jnp.int32(0)))
    assert m.finite.all()
    np.testing.assert_array_equal(np.asarray(state.mitigation.redo_resets), [[0, 0], [64, 64]])
    leaves = leaf_dict(state.params)
    for layer in static.unit_layers:
        assert np.all(np.asarray(leaves[layer.out_kernel][1]) == 0)
        assert np.any(np.asarray(leaves[layer.out_kernel][0]) != 0)


@pytest.mark.slow
def test_tiny_cipher_run_through_the_cli(tmp_path):
    import pandas as pd

    from gradual_jax import cli
    sets = ["task.num_tasks=1", "text.num_train=16", "text.num_test=8", "protocol.batch_size=8",
            "protocol.epochs_per_task=1", "sweep.seeds=0", "model.d_model=16", "model.d_ff=32", "model.num_heads=2",
            "model.d_kv=8", "text.bleu_examples=4", "text.beam_size=2", "optim.reset_each_task=true"]
    argv = ["run", "fig4-cipher", "--preset", "cpu", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv + [a for s in sets for a in ("--set", s)]) == 0
    table = pd.read_csv(tmp_path / "results.csv")
    assert len(table) == 2 and table["reset_each_task"].all()  # abrupt + task_sampling, 1 task
    assert set(table["dataset"]) == {"bigram_cipher"} and set(table["source"]) == {"generated"}
    for column in ("train_bleu2", "train_bleu2_greedy", "test_bleu2", "test_bleu2_greedy", "test_acc"):
        assert table[column].between(0, 1).all(), column
    assert (tmp_path / "figure.png").exists()
