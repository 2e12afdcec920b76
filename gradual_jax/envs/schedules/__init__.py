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

Each schedule is one module here (a :class:`Schedule`: its name, what it moves, its stage
count and its batch :class:`Mix`), listed once in :mod:`.registry`. A new schedule is a
``Schedule`` and one ``register(...)`` line, in this package or in a researcher's own file
(``docs/examples/exponential_schedule.py``). Everything is a pure function of per-lane numbers
(schedule id, Δ) and the step position, so lanes with different schedules share one vmapped
program. ``NAMES`` and ``GRADUAL`` are read from the registry whenever they are asked for.
"""

from __future__ import annotations

from gradual_jax.envs.schedules.base import MOVES, At, Mix, Schedule, linear_alpha, mixed_targets, one_over, pure, \
    targets_toward_new
from gradual_jax.envs.schedules.mixing import batch_mix, is_gradual, readout_epoch
from gradual_jax.envs.schedules.registered import BUILT_IN, SCHEDULES, get, names, register, registered, schedule_id, \
    unregister
from gradual_jax.envs.schedules.stages import check_delta, describe, epochs_per_stage, num_stages, stage_at
from gradual_jax.envs.schedules.task_sampling import new_task_count

# The built-ins' ids, fixed by their place in the registry.
ABRUPT, OUTPUT_INTERP, OUTPUT_MIX, INPUT_INTERP, TASK_SAMPLING = (schedule_id(name) for name in BUILT_IN)


def __getattr__(attr: str):
    """``NAMES``: every registered schedule's name, in id order; ``GRADUAL``: those with a transition."""
    if attr == "NAMES":
        return names()
    if attr == "GRADUAL":
        return frozenset(s.name for s in registered() if s.gradual)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "MOVES", "At", "Mix", "Schedule", "linear_alpha", "mixed_targets", "one_over", "pure", "targets_toward_new",
    "batch_mix", "is_gradual", "readout_epoch",
    "BUILT_IN", "SCHEDULES", "get", "names", "register", "registered", "schedule_id", "unregister",
    "check_delta", "describe", "epochs_per_stage", "num_stages", "stage_at", "new_task_count",
    "ABRUPT", "OUTPUT_INTERP", "OUTPUT_MIX", "INPUT_INTERP", "TASK_SAMPLING", "NAMES", "GRADUAL",
]
