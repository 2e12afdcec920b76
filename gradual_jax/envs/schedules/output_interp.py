"""Output interpolation: the targets fade from task t's labels to uniform, then in to task t+1's.

2n stages, n = 1/Δ. Stage q < n: targets (1-α)·onehot(y_t) + α/C with α = q/n (fade out);
stage q ≥ n: (1-α)·onehot(y_t+1) + α/C with α = 1-(q-n)/n (fade in). Each of the two halves
is k·E/2 epochs, so a stage is k·E·Δ/2 epochs. The inputs stay task t's.
"""

import jax.numpy as jnp

from gradual_jax.envs.schedules.base import At, Mix, Schedule


def stages(n):
    return 2 * n


def mix(at: At) -> Mix:
    n, stage = at.n, at.stage
    fade_in = stage >= n
    alpha = jnp.where(fade_in, 1.0 - (stage - n) / n, stage / n).astype(jnp.float32)
    zeros = jnp.zeros(at.max_batch, jnp.float32)
    a = alpha * jnp.ones(at.max_batch, jnp.float32)
    return Mix(zeros, jnp.where(fade_in, 0.0, 1.0 - a), jnp.where(fade_in, 1.0 - a, 0.0), a)


SCHEDULE = Schedule("output_interp", moves="targets", stages=stages, mix=mix, words="output interpolation",
                    caption="targets fade through uniform to the next task's labels")
