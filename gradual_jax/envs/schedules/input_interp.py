"""Input interpolation: the inputs move from task t's to task t+1's, the labels stay task t's.

n = 1/Δ stages; stage q: inputs (1-α)·x_t + α·x_t+1, α = q/n. Only a family whose inputs
change per task (permuted pixels) moves at all under it.
"""

import jax.numpy as jnp

from gradual_jax.envs.schedules.base import At, Mix, Schedule, linear_alpha


def stages(n):
    return n


def mix(at: At) -> Mix:
    zeros, ones = jnp.zeros(at.max_batch, jnp.float32), jnp.ones(at.max_batch, jnp.float32)
    return Mix(linear_alpha(at) * ones, ones, zeros, zeros)


SCHEDULE = Schedule("input_interp", moves="inputs", stages=stages, mix=mix, words="input interpolation",
                    caption="inputs interpolate toward the next task's")
