"""The traced side: a lane's batch mix and readout epoch, selected among the registered schedules.

A lane's schedule is a traced int32, so every registered gradual schedule's :class:`Mix` is
computed and the lane's is selected with ``jnp.where``: selection copies values, so a lane's
numbers do not depend on which other schedules are registered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradual_jax.envs.schedules.registered import registered
from gradual_jax.envs.schedules.base import At, one_over, pure
from gradual_jax.envs.schedules.stages import stage_of


def is_gradual(schedule) -> jax.Array:
    """Whether the schedule with id ``schedule`` (may be traced) has a transition."""
    return jnp.asarray([s.gradual for s in registered()])[schedule]


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
    n = one_over(jnp.asarray(delta))
    transition_step = jnp.maximum(i, 0)
    plain = pure(max_batch)
    mixed = plain
    for sid, s in enumerate(registered()):
        if s.gradual:
            at = At(stage_of(s, n, transition_step, transition_steps), n, batch_size, max_batch)
            mixed = jax.tree.map(lambda m, cur, sid=sid: jnp.where(schedule == sid, m, cur), s.mix(at), mixed)
    in_transition = is_gradual(schedule) & (i >= 0) & (transition_steps > 0)
    return jax.tree.map(lambda m, p: jnp.where(in_transition, m, p), mixed, plain)


def readout_epoch(schedule, epochs_per_task: int, transition_epochs: int):
    """Last epoch of the pure phase, where a task's metrics are read (0-based); a schedule
    without a transition (abrupt) is read at the end of its (1+k)·E epochs."""
    return jnp.where(is_gradual(schedule), epochs_per_task - 1, epochs_per_task + transition_epochs - 1)
