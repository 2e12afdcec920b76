"""The registered schedules: a lane's schedule id is its schedule's place in this registry.

The built-ins come first and keep their ids. A researcher's schedule is registered from any
file, before a config naming it is validated (``register(Schedule(...))``); it is then a
``sweep.schedules`` value like the built-ins, and compiled into the same program.
"""

from __future__ import annotations

from gradual_jax.envs.schedules import abrupt, input_interp, output_interp, output_mix, task_sampling
from gradual_jax.envs.schedules.base import Schedule
from gradual_jax.registry import Registry

SCHEDULES: Registry[Schedule] = Registry("schedule", Schedule)
for _schedule in (abrupt.SCHEDULE, output_interp.SCHEDULE, output_mix.SCHEDULE, input_interp.SCHEDULE,
                  task_sampling.SCHEDULE):
    SCHEDULES.register(_schedule)
SCHEDULES.seal()
BUILT_IN = SCHEDULES.built_in
register, unregister, registered, names = SCHEDULES.register, SCHEDULES.unregister, SCHEDULES.registered, \
    SCHEDULES.names
schedule_id = SCHEDULES.index


def get(schedule: int | str) -> Schedule:
    """A schedule by its name or its id."""
    return SCHEDULES.get(schedule) if isinstance(schedule, str) else registered()[int(schedule)]
