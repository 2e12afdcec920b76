"""Output mixing: the targets move straight from task t's labels to task t+1's.

n = 1/Δ stages; stage q: targets (1-α)·onehot(y_t) + α·onehot(y_t+1), α = q/n, on task t's
inputs. Stage 0 is task t itself, so the mixing stages are α = Δ, …, 1-Δ.
"""

from gradual_jax.envs.schedules.base import At, Mix, Schedule, linear_alpha, targets_toward_new


def stages(n):
    return n


def mix(at: At) -> Mix:
    return targets_toward_new(linear_alpha(at), at.max_batch)


SCHEDULE = Schedule("output_mix", moves="targets", stages=stages, mix=mix, words="direct label mix",
                    caption="targets mix the two tasks' labels directly")
