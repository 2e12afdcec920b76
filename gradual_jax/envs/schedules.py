"""Transition schedules: how the world moves from task t to task t+1.

Every lane trains (1+k)·E epochs per task. The abrupt schedule spends all of them on
task t. A gradual schedule spends E epochs on task t (the "pure phase") and then
k·E epochs in a transition to task t+1, split into stages of constant α:

=================  ==========================================================  ==========
schedule           stage q (0-based), n = 1/Δ                                   stages
=================  ==========================================================  ==========
output_interp      q < n: targets (1-α)·onehot(y_t) + α/C,  α = q/n (fade out)  2n
                   q ≥ n: targets (1-α)·onehot(y_t+1) + α/C, α = 1-(q-n)/n
output_mix         targets (1-α)·onehot(y_t) + α·onehot(y_t+1), α = q/n          n
input_interp       inputs (1-α)·x_t + α·x_t+1, labels of task t, α = q/n        n
task_sampling      each batch: round(b·s) examples of task t+1, the rest of t,  n
                   s = q/n (stratified: exact counts, positions random)
=================  ==========================================================  ==========

The first stage of ``output_mix``, ``input_interp`` and ``task_sampling`` (α = 0) is
task t itself, so the transition is exactly k·E epochs and both arms are
compute-matched; the mixing stages are α = Δ, …, 1-Δ as in the paper. The stage after
the last is the next task's pure phase, i.e. α = 1 exactly. Stages are counted in
optimisation steps, so when k·E·Δ is not a whole number of epochs a stage boundary
falls inside an epoch rather than being rounded away (the released code floors it,
which silently shortens the transition).

Everything here is a pure function of per-lane numbers (schedule id, Δ) and the step
position, so lanes with different schedules share one vmapped program.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

NAMES = ("abrupt", "output_interp", "output_mix", "input_interp", "task_sampling")
ABRUPT, OUTPUT_INTERP, OUTPUT_MIX, INPUT_INTERP, TASK_SAMPLING = range(len(NAMES))
GRADUAL = frozenset(NAMES[1:])


def schedule_id(name: str) -> int:
    return NAMES.index(name)


def check_delta(delta: float, *, key: str = "delta", error: type[Exception] = ValueError) -> None:
    """Δ must lie in (0, 1] and divide 1 into a whole number of stages."""
    if not (isinstance(delta, (int, float)) and 0 < delta <= 1):
        raise error(f"{key}: Δ={delta!r} must lie in (0, 1]")
    if abs(1 / delta - round(1 / delta)) > 1e-6:
        raise error(f"{key}: Δ={delta!r} must divide 1 into whole stages (1/Δ = {1 / delta:.4g}); "
                    "e.g. 1, 0.5, 0.25, 0.2, 0.1, 0.05, 0.02")


def num_stages(schedule: int, delta: float) -> int:
    """Number of constant-α stages in one transition (host-side, for docs and checks)."""
    n = round(1 / delta)
    if schedule == ABRUPT:
        return 0
    return 2 * n if schedule == OUTPUT_INTERP else n


def epochs_per_stage(schedule: int, delta: float, epochs_per_task: int, transition_ratio: float) -> float:
    """k·E·Δ/2 for output interpolation, k·E·Δ otherwise (docs/protocol.md)."""
    stages = num_stages(schedule, delta)
    return transition_ratio * epochs_per_task / stages if stages else 0.0


class Mix(NamedTuple):
    """Per-example mixing coefficients of one batch (each shaped [B]).

    The batch is built as
      x      = (1 - input_new)·x_t + input_new·x_t+1
      target = target_old·onehot(y_t) + target_new·onehot(y_t+1) + target_uniform/C
    """

    input_new: jax.Array
    target_old: jax.Array
    target_new: jax.Array
    target_uniform: jax.Array


def stage_and_alpha(schedule, delta, transition_step, transition_steps):
    """Stage index and α at a step of the transition (all arguments may be traced).

    Integer arithmetic keeps stage boundaries exact: stage = ⌊i·S / T⌋ with S stages
    over T transition steps.
    """
    n = jnp.round(1.0 / delta).astype(jnp.int32)
    stages = jnp.where(schedule == OUTPUT_INTERP, 2 * n, n)
    stage = (transition_step * stages) // jnp.maximum(transition_steps, 1)
    fade_in = (schedule == OUTPUT_INTERP) & (stage >= n)
    alpha = jnp.where(fade_in, 1.0 - (stage - n) / n, stage / n).astype(jnp.float32)
    return stage, alpha, fade_in


def new_task_count(batch_size, stage, n):
    """round(b·s) with s = stage/n, rounding halves up, in exact integer arithmetic."""
    return (2 * batch_size * stage + n) // (2 * n)


def batch_mix(schedule, delta, step, pure_steps, transition_steps, batch_size, max_batch):
    """Mixing coefficients for the batch at ``step`` of a task segment.

    Args:
      schedule, delta: the lane's schedule id and Δ (scalars, may be traced).
      step: index of this optimisation step within the task's (1+k)·E epochs.
      pure_steps: steps of the pure phase (E epochs).
      transition_steps: steps of the transition (k·E epochs).
      batch_size: number of real examples in this batch (the last batch of an epoch may be short).
      max_batch: static padded batch length B.
    """
    i = step - pure_steps
    in_transition = (schedule != ABRUPT) & (i >= 0) & (transition_steps > 0)
    stage, alpha, fade_in = stage_and_alpha(schedule, delta, jnp.maximum(i, 0), transition_steps)
    n = jnp.round(1.0 / delta).astype(jnp.int32)

    position = jnp.arange(max_batch)
    sampled_new = position >= batch_size - new_task_count(batch_size, stage, n)
    sampled_new = sampled_new & (position < batch_size)

    zeros = jnp.zeros(max_batch, jnp.float32)
    ones = jnp.ones(max_batch, jnp.float32)
    a = alpha * ones
    by_schedule = {
        OUTPUT_INTERP: Mix(zeros, jnp.where(fade_in, 0.0, 1.0 - a), jnp.where(fade_in, 1.0 - a, 0.0), a),
        OUTPUT_MIX: Mix(zeros, 1.0 - a, a, zeros),
        INPUT_INTERP: Mix(a, ones, zeros, zeros),
        TASK_SAMPLING: Mix(sampled_new.astype(jnp.float32), 1.0 - sampled_new, sampled_new.astype(jnp.float32), zeros),
    }
    pure = Mix(zeros, ones, zeros, zeros)
    mixed = pure
    for sid, mix in by_schedule.items():
        mixed = jax.tree.map(lambda m, cur, sid=sid: jnp.where(schedule == sid, m, cur), mix, mixed)
    return jax.tree.map(lambda m, p: jnp.where(in_transition, m, p), mixed, pure)


def readout_epoch(schedule, epochs_per_task: int, transition_epochs: int):
    """Last epoch of the pure phase, where a task's metrics are read (0-based)."""
    return jnp.where(schedule == ABRUPT, epochs_per_task + transition_epochs - 1, epochs_per_task - 1)


def describe(name: str, delta: float, epochs_per_task: int, transition_ratio: float) -> str:
    """One human-readable line on a schedule's stages, for ``gradual-jax show``."""
    sid = schedule_id(name)
    if sid == ABRUPT:
        total = epochs_per_task * (1 + transition_ratio)
        return f"abrupt: {total:g} epochs on each task"
    stages = num_stages(sid, delta)
    per = epochs_per_stage(sid, delta, epochs_per_task, transition_ratio)
    whole = "" if math.isclose(per, round(per)) else " (stage boundaries fall inside epochs)"
    return (f"{name}: {epochs_per_task} pure epochs, then {stages} stages × {per:g} epochs "
            f"(Δ={delta:g}){whole}")
