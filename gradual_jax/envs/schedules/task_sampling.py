"""Task sampling: each batch holds whole examples of both tasks, more of task t+1 each stage.

n = 1/Δ stages; in stage q a batch of b real examples has exactly round(b·s) examples of task
t+1 (input and target), s = q/n, and the rest of task t. The count is exact per batch
(stratified) rather than drawn, and the new examples take the batch's last positions, whose
examples are already in random order.
"""

import jax.numpy as jnp

from gradual_jax.envs.schedules.base import At, Mix, Schedule


def stages(n):
    return n


def new_task_count(batch_size, stage, n):
    """round(b·s) with s = stage/n, rounding halves up, in exact integer arithmetic."""
    return (2 * batch_size * stage + n) // (2 * n)


def mix(at: At) -> Mix:
    position = jnp.arange(at.max_batch)
    new = position >= at.batch_size - new_task_count(at.batch_size, at.stage, at.n)
    new = new & (position < at.batch_size)
    zeros = jnp.zeros(at.max_batch, jnp.float32)
    return Mix(new.astype(jnp.float32), 1.0 - new, new.astype(jnp.float32), zeros)


SCHEDULE = Schedule("task_sampling", moves="examples", stages=stages, mix=mix, words="task sampling",
                    caption="a growing share of each batch is the next task's examples")
