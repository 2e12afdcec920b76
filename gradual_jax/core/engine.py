"""The compiled engine: one task segment for every lane of a sweep, in one XLA program.

A *lane* is one training run (a seed, a schedule, a Δ, a learning rate). Its numeric
hyperparameters live in :class:`LaneHParams`, its training state in :class:`LaneState`;
both are pytrees whose leaves carry a leading lane axis. :func:`make_task_fn` builds
``run_task(hparams, state, data, task) -> (state, TaskMetrics)``: (1+k)·E epochs of
task ``task`` (and the transition to ``task + 1`` for gradual lanes), as a ``lax.scan``
over epochs of a ``lax.scan`` over minibatches, ``vmap``-ed over lanes (optionally in groups
run one after another) and ``jit``-ed once; the task index is a traced scalar, so all tasks
reuse the same executable.

All randomness is derived from the lane seed: ``key(seed)`` folded with a stream id
(init, tasks, shuffles) and then with the task and epoch index. The state therefore
holds only parameters and optimizer state, and any task can be replayed exactly.

What is being learned is the program's :class:`~gradual_jax.envs.problem.Problem` (image
classification, or sequence-to-sequence text): it samples tasks, builds minibatches and
scores the model's output; the engine only schedules, steps and reads out.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from gradual_jax.core import diagnostics
from gradual_jax import mitigations
from gradual_jax.envs import schedules
from gradual_jax.mitigations import MitigationStructure, MitigationHParams
from gradual_jax.envs.problem import Batch, Problem

# The layout of LaneState in checkpoints; a run resumes only from checkpoints of its own format.
STATE_FORMAT = 2
STATE_FORMAT_CHANGE = "format 2: the optimizer state no longer holds a copy of the learning rate"

INIT_STREAM, TASK_STREAM, SHUFFLE_STREAM, DIAGNOSTICS_STREAM, MITIGATION_STREAM = 0, 1, 2, 3, 4


@struct.dataclass
class LaneHParams:
    """Per-lane numbers: each leaf is shaped [lanes]. vmap maps over all of them."""

    seed: jax.Array  # int32
    schedule: jax.Array  # int32, index into schedules.NAMES
    delta: jax.Array  # float32, Δ (ignored by abrupt lanes)
    learning_rate: jax.Array  # float32
    mitigation: MitigationHParams  # strengths of the mitigations (all off: an exact no-op)


@struct.dataclass
class LaneState:
    params: Any
    opt_state: Any
    readout_params: Any  # parameters at the previous task's readout (at init before task 0)
    batch_stats: Any  # BatchNorm running statistics (an empty State for models without them)
    readout_batch_stats: Any  # the statistics at the previous task's readout
    mitigation: mitigations.MState  # power-iteration vectors, unit utilities and ages, counters


@struct.dataclass
class BaseData:
    """The base data set, placed on the device once and shared by every lane (empty for
    problems that generate each task whole, like the text tasks)."""

    x_train: jax.Array | None = None  # float32 [N, ...], normalised
    y_train: jax.Array | None = None  # int32 [N]
    x_test: jax.Array | None = None  # float32 [M, ...]
    y_test: jax.Array | None = None  # int32 [M]


@struct.dataclass
class TaskMetrics:
    """Per-lane metrics of one task, read at the end of its pure phase (each leaf [lanes])."""

    online_train_acc: jax.Array  # predictions before each update, over the last pure epoch
    online_train_loss: jax.Array
    # The readout-timing control: the same online numbers at epoch E (0-based E-1) of every lane's
    # segment. For gradual lanes they equal the readout; abrupt lanes are read after (1+k)·E epochs,
    # so these let the arms be compared after the same number of epochs on the task.
    online_train_acc_at_E: jax.Array
    online_train_loss_at_E: jax.Array
    train_acc: jax.Array  # a full pass over the task's training set (text: teacher-forced token accuracy)
    train_loss: jax.Array
    test_acc: jax.Array  # NaN when there is no test split
    test_loss: jax.Array
    finite: jax.Array  # bool: every training loss of the segment was finite
    epoch_loss: jax.Array  # [lanes, (1+k)E] mean online loss of every epoch of the segment
    epoch_acc: jax.Array  # [lanes, (1+k)E] online accuracy (against the dominant label)
    diagnostics: dict[str, jax.Array]  # name -> [lanes]; empty when diagnostics are off
    readout: dict[str, jax.Array]  # problem-specific arrays for host metrics (text: decoded ids)


@dataclasses.dataclass(frozen=True)
class Program:
    """Static structure of a sweep: everything that fixes the compiled program's shape."""

    model_factory: Callable[[nnx.Rngs], nnx.Module]
    problem: Problem
    num_train: int
    epochs_per_task: int  # E
    transition_epochs: int  # k·E
    batch_size: int
    eval_batch_size: int
    # learning rate -> optimizer; built from the lane's rate in every step (the rate's only home)
    make_optimizer: Callable[[Any], optax.GradientTransformation]
    diagnostics: diagnostics.DiagnosticsSpec | None = None  # None: no diagnostics
    mitigation: MitigationStructure = MitigationStructure()  # which mitigations are compiled in
    reset_optimizer: bool = False  # re-initialise the optimizer state at the start of every task

    @property
    def epochs_per_segment(self) -> int:
        return self.epochs_per_task + self.transition_epochs

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)  # drop_last=False: a short last batch

    @property
    def steps_per_task(self) -> int:
        return self.epochs_per_segment * self.steps_per_epoch

    @functools.cached_property
    def graphdef(self) -> nnx.GraphDef:
        """The model's structure (no arrays), built once from an abstract init; its variables
        come in two states, parameters and batch statistics (empty for the MLPs)."""
        return nnx.split(nnx.eval_shape(lambda: self.model_factory(nnx.Rngs(0))), nnx.Param, nnx.BatchStat)[0]


def lane_keys(seed: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    root = jax.random.key(seed)
    return tuple(jax.random.fold_in(root, s) for s in (INIT_STREAM, TASK_STREAM, SHUFFLE_STREAM))


def sample_task(program: Program, seed: jax.Array, task, data: BaseData) -> Any:
    """Task ``task`` of a lane: a pure function of its seed (the task stream)."""
    return program.problem.sample(lane_keys(seed)[1], task, data)


def init_variables(program: Program, seed: jax.Array) -> tuple[Any, Any]:
    """A lane's initial parameters and batch statistics, a pure function of its seed."""
    init_key, _, _ = lane_keys(seed)
    _, params, batch_stats = nnx.split(program.model_factory(nnx.Rngs(params=init_key)), nnx.Param, nnx.BatchStat)
    return params, batch_stats


def init_params(program: Program, seed: jax.Array) -> Any:
    return init_variables(program, seed)[0]


def init_lane(program: Program, hp: LaneHParams) -> LaneState:
    """Initial state of one lane (vmap this over lanes)."""
    params, batch_stats = init_variables(program, hp.seed)
    opt_state = program.make_optimizer(hp.learning_rate).init(params)
    return LaneState(params=params, opt_state=opt_state, readout_params=params, batch_stats=batch_stats,
                     readout_batch_stats=batch_stats, mitigation=mitigations.init_state(params, program.mitigation))


def init_lanes(program: Program, hparams: LaneHParams) -> LaneState:
    return jax.jit(jax.vmap(lambda hp: init_lane(program, hp)))(hparams)


def merge_model(program: Program, params: Any, batch_stats: Any) -> nnx.Module:
    return nnx.merge(program.graphdef, params, batch_stats, copy=True)


def apply_model(program: Program, params: Any, batch_stats: Any, inputs: Any, *, train: bool = False,
                mask: jax.Array | None = None) -> tuple[jax.Array, Any]:
    """Logits and the batch statistics after the call (updated in training mode only)."""
    model = merge_model(program, params, batch_stats)
    logits, _ = program.problem.forward(model, inputs, train=train, mask=mask, with_features=False)
    return logits, nnx.state(model, nnx.BatchStat)


def make_batch(program: Program, data: BaseData, old, new, index, mix: schedules.Mix) -> Batch:
    """One minibatch under a mixing of two tasks (the problem decides what mixing means)."""
    return program.problem.batch(data, old, new, index, mix)


def _train_step(program, data, hp, old, new, start_params, task, state: LaneState, step, index, valid):
    static = program.mitigation
    mix = schedules.batch_mix(
        hp.schedule, hp.delta, step,
        pure_steps=program.epochs_per_task * program.steps_per_epoch,
        transition_steps=program.transition_epochs * program.steps_per_epoch,
        batch_size=valid.sum(), max_batch=program.batch_size)
    batch = make_batch(program, data, old, new, index, mix)

    def loss_fn(params):
        model = merge_model(program, params, state.batch_stats)
        # ReDo and continual backprop read the unit features of this same forward pass
        logits, features = program.problem.forward(model, batch.inputs, train=True, mask=valid,
                                                   with_features=static.needs_features)
        loss_sum, correct, count = program.problem.loss(logits, batch, valid)
        loss = loss_sum / jnp.maximum(count, 1.0)
        extra, mstate = mitigations.loss_terms(params, start_params, state.mitigation, hp.mitigation, static)
        return loss + extra, (loss, correct, count, features, mstate, nnx.state(model, nnx.BatchStat))

    (_, (loss, correct, count, features, mstate, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    tx = program.make_optimizer(hp.learning_rate)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    global_step = task * program.steps_per_task + step  # over the lane's whole run
    key = jax.random.fold_in(jax.random.fold_in(mitigation_key(hp.seed), task), step)
    params, opt_state, mstate = mitigations.after_step(params, opt_state, mstate, features, global_step, key,
                                                       hp.mitigation, static, optimizer=tx, valid=valid)
    new_state = state.replace(params=params, opt_state=opt_state, mitigation=mstate, batch_stats=batch_stats)
    return new_state, (loss * count, correct, count)  # the logged loss excludes regularisers


def mitigation_key(seed: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), MITIGATION_STREAM)


def _epoch_batches(program: Program, key: jax.Array):
    """A fresh shuffle, cut into [steps, B] indices; the short last batch is padded and masked."""
    n, b, steps = program.num_train, program.batch_size, program.steps_per_epoch
    order = jax.random.permutation(key, n)
    order = jnp.pad(order, (0, steps * b - n))
    valid = jnp.arange(steps * b) < n
    return order.reshape(steps, b), valid.reshape(steps, b)


def evaluate(program: Program, params, batch_stats, task, data: BaseData, split: str) -> tuple[jax.Array, jax.Array]:
    """Accuracy and mean loss of ``params`` (evaluation mode: running statistics) on a whole
    split of one task, in chunks (averaged over what the problem counts: examples or tokens)."""
    n = program.problem.num_examples(data, split)
    chunk = min(program.eval_batch_size, n)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n
    index = jnp.pad(jnp.arange(n), (0, pad)).reshape(chunks, chunk)
    valid = (jnp.arange(chunks * chunk) < n).reshape(chunks, chunk)

    def one(args):
        idx, ok = args
        batch = program.problem.examples(data, task, idx, split)
        logits, _ = apply_model(program, params, batch_stats, batch.inputs)
        return program.problem.loss(logits, batch, ok)

    loss, correct, count = jax.lax.map(one, (index, valid))
    total = jnp.maximum(count.sum(), 1.0)
    return correct.sum() / total, loss.sum() / total


def probe_indices(program: Program) -> jax.Array:
    """The fixed probe: ``probe_size`` evenly spaced indices of the training subset (all of it
    when it is smaller)."""
    size = min(program.diagnostics.probe_size, program.num_train)
    return jnp.arange(size) * (program.num_train // size)


def diagnose_readout(program: Program, seed, params, prev_params, task, data: BaseData,
                     batch_stats=None, prev_batch_stats=None) -> dict[str, jax.Array]:
    """Diagnostics of one lane at the readout of ``task`` (shared by the run and ``analyze``).

    The probe inputs and labels are task ``task``'s; representation change compares the
    last hidden layer under ``params`` with that under ``prev_params`` (the previous task's
    readout parameters) on the same inputs. Models with batch statistics are evaluated with
    their running statistics (``batch_stats``, ``prev_batch_stats``: those of each readout;
    ``None`` for models without any).
    """
    spec = program.diagnostics
    problem = program.problem

    def features_fn(p, stats, inputs):
        return [h.reshape(-1, h.shape[-1]) for h in problem.features(merge_model(program, p, stats), inputs)]

    def loss_fn(p, batch):
        logits, _ = apply_model(program, p, batch_stats, batch.inputs)
        loss_sum, _, count = problem.loss(logits, batch, jnp.ones(batch.labels.shape[:1], bool))
        return loss_sum / jnp.maximum(count, 1.0)

    batch = problem.examples(data, sample_task(program, seed, task, data), probe_indices(program), "train")
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), DIAGNOSTICS_STREAM), task)
    prev_features = features_fn(prev_params, prev_batch_stats, batch.inputs)[-1]
    return diagnostics.diagnose(
        lambda p, probe: features_fn(p, batch_stats, probe.inputs), loss_fn, params, init_params(program, seed),
        prev_features, batch, key, taus=spec.dormant_taus, redo_threshold=spec.redo_threshold,
        hessian_iters=spec.hessian_iters, costly=spec.hessian)


def diagnostics_enabled(program: Program) -> bool:
    return program.diagnostics is not None


def run_lane_task(program: Program, hp: LaneHParams, state: LaneState, data: BaseData, task):
    """One lane, one task segment: (1+k)·E epochs, then the readout of the task's metrics."""
    _, _, shuffle_root = lane_keys(hp.seed)
    old = sample_task(program, hp.seed, task, data)
    new = sample_task(program, hp.seed, task + 1, data)
    shuffle_key = jax.random.fold_in(shuffle_root, task)
    readout = schedules.readout_epoch(hp.schedule, program.epochs_per_task, program.transition_epochs)
    steps = program.steps_per_epoch
    static = program.mitigation
    start_params = init_params(program, hp.seed) if static.needs_init_params else None
    # the boundary's key: the step index one past the task's last step, used by no step
    boundary_key = jax.random.fold_in(jax.random.fold_in(mitigation_key(hp.seed), task), program.steps_per_task)
    if static.acts_at("before"):
        state = state.replace(params=mitigations.at_task_boundary(state.params, boundary_key, hp.mitigation, static,
                                                                  at="before"))
    if program.reset_optimizer:  # a fresh optimizer per task (the released text code's abrupt arm)
        state = state.replace(opt_state=program.make_optimizer(hp.learning_rate).init(state.params))

    def epoch(carry, e):
        state, snapshot = carry  # snapshot: (params, batch statistics) at the readout epoch
        index, valid = _epoch_batches(program, jax.random.fold_in(shuffle_key, e))
        step_ids = e * steps + jnp.arange(steps)

        def step(state, xs):
            return _train_step(program, data, hp, old, new, start_params, task, state, *xs)

        state, (loss_sum, correct, count) = jax.lax.scan(step, state, (step_ids, index, valid))
        snapshot = jax.tree.map(lambda s, p: jnp.where(e == readout, p, s), snapshot,
                                (state.params, state.batch_stats))
        seen = count.sum()
        return (state, snapshot), (loss_sum.sum() / seen, correct.sum() / seen)

    epochs = jnp.arange(program.epochs_per_segment)
    (state, (snapshot, snapshot_stats)), (epoch_loss, epoch_acc) = jax.lax.scan(
        epoch, (state, (state.params, state.batch_stats)), epochs)

    train_acc, train_loss = evaluate(program, snapshot, snapshot_stats, old, data, "train")
    if program.problem.num_examples(data, "test") > 0:
        test_acc, test_loss = evaluate(program, snapshot, snapshot_stats, old, data, "test")
    else:
        test_acc = test_loss = jnp.float32(jnp.nan)
    diag = (diagnose_readout(program, hp.seed, snapshot, state.readout_params, task, data,
                             snapshot_stats, state.readout_batch_stats)
            if diagnostics_enabled(program) else {})
    result = TaskMetrics(
        online_train_acc=epoch_acc[readout], online_train_loss=epoch_loss[readout],
        online_train_acc_at_E=epoch_acc[program.epochs_per_task - 1],
        online_train_loss_at_E=epoch_loss[program.epochs_per_task - 1],
        train_acc=train_acc, train_loss=train_loss, test_acc=test_acc, test_loss=test_loss,
        finite=jnp.isfinite(epoch_loss).all(), epoch_loss=epoch_loss, epoch_acc=epoch_acc, diagnostics=diag,
        readout=program.problem.readout(merge_model(program, snapshot, snapshot_stats), old, data))
    if static.acts_at("after"):  # after the readout
        state = state.replace(params=mitigations.at_task_boundary(state.params, boundary_key, hp.mitigation, static,
                                                                  at="after"))
    return state.replace(readout_params=snapshot, readout_batch_stats=snapshot_stats), result


def make_task_fn(program: Program, lane_groups: int = 1, mesh: jax.sharding.Mesh | None = None):
    """``run_task(hparams, state, data, task)`` for all lanes, jitted (state donated).

    With a ``mesh`` (one axis, over which the lane axis of ``hparams`` and ``state`` is split in
    contiguous blocks) each device trains its own block of lanes in a program of its own
    (``shard_map``): lanes are independent, so no device waits for another or copies anything
    inside the task, and the data and task index are the same on every device. With
    ``lane_groups`` G > 1 each device's lanes are trained in G groups one after another
    (``lax.map``), each group ``vmap``-ed; a device's L lanes ``g·(L/G) + i`` form group ``g``, so a
    group is contiguous in its memory (no copies). Lanes are independent, so neither changes what a
    lane computes, only the order and place of the work (see ``run.vmap_lanes``).
    """
    batched = jax.vmap(lambda hp, st, data, t: run_lane_task(program, hp, st, data, t),
                       in_axes=(0, 0, None, None))

    def own_lanes(hparams, state, data, task):
        if lane_groups == 1:
            return batched(hparams, state, data, task)

        def split(x):  # [G·n, ...] -> [G, n, ...]
            return x.reshape(lane_groups, -1, *x.shape[1:])

        out = jax.lax.map(lambda group: batched(*group, data, task), jax.tree.map(split, (hparams, state)))
        return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), out)

    if mesh is None:
        return jax.jit(own_lanes, donate_argnums=1)
    lanes, whole = jax.sharding.PartitionSpec(mesh.axis_names), jax.sharding.PartitionSpec()
    per_device = jax.shard_map(own_lanes, mesh=mesh, in_specs=(lanes, lanes, whole, whole),
                               out_specs=(lanes, lanes), check_vma=False)
    return jax.jit(per_device, donate_argnums=1)
