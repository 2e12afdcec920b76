"""An exponential output schedule, registered from this file, and an experiment that runs it.

``exp_output_mix`` moves the targets as ``output_mix`` does, (1-α)·onehot(y_t) + α·onehot(y_t+1)
on task t's inputs in n = 1/Δ stages, but α grows exponentially: α = 2^(q/n) − 1 at stage q
(0-based). Stage 0 is task t itself (α = 0), α creeps first and hurries last, and the stage after
the last would be 2^1 − 1 = 1: task t+1, whose pure phase comes next.
"""

import dataclasses

import jax.numpy as jnp

from gradual_jax import experiments
from gradual_jax.analysis.claims import ANY, Arm, Claim, Question, Run, Versus
from gradual_jax.envs import schedules


def exponential_mix(at: schedules.At) -> schedules.Mix:
    alpha = jnp.exp2(at.stage / at.n) - 1.0
    return schedules.targets_toward_new(alpha, at.max_batch)


schedules.register(schedules.Schedule("exp_output_mix", moves="targets", stages=lambda n: n, mix=exponential_mix))

DESCRIPTION = "Random-label MNIST, MLP 64x4: abrupt vs output mixing with a linear and an exponential α"
CLAIMS = (Claim("exp-schedule", "this example", "An exponential schedule preserves trainability.", questions=(
    Question("exponential output mixing − abrupt", "online_train_acc", Versus(Arm("exp_output_mix", ANY), Arm("abrupt")),
             (Run("exp-schedule", "cpu"),)),)),)


def cpu():
    cfg = experiments.get_config("fig1-mnist", "cpu")
    return dataclasses.replace(cfg, name="exp-schedule", preset="cpu", description=DESCRIPTION,
                               sweep=dataclasses.replace(cfg.sweep, schedules=("abrupt", "output_mix",
                                                                               "exp_output_mix")))


PRESETS = {"cpu": cpu}
