"""The registered schedules: a lane's schedule id is its schedule's place in this registry.

The built-ins come first and keep their ids. A researcher's schedule is registered from any
file, before a config naming it is validated (``register(Schedule(...))``); it is then a
``sweep.schedules`` value like the built-ins, and compiled into the same program.
"""

from __future__ import annotations

from gradual_jax.envs.schedules import abrupt, input_interp, output_interp, output_mix, task_sampling
from gradual_jax.envs.schedules.base import Schedule

_REGISTERED: list[Schedule] = [
    abrupt.SCHEDULE,
    output_interp.SCHEDULE,
    output_mix.SCHEDULE,
    input_interp.SCHEDULE,
    task_sampling.SCHEDULE,
]
BUILT_IN = tuple(s.name for s in _REGISTERED)


def register(schedule: Schedule) -> Schedule:
    """Adds ``schedule`` after those registered (its id is the next one) and returns it.

    Registering a name again (re-running the file that registers it) replaces the earlier
    schedule and keeps its id; the built-ins cannot be replaced.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"register() takes a Schedule, not {type(schedule).__name__}")
    if schedule.name in BUILT_IN:
        raise ValueError(f"{schedule.name} is a built-in schedule; register yours under another name")
    names_now = names()
    if schedule.name in names_now:
        _REGISTERED[names_now.index(schedule.name)] = schedule
    else:
        _REGISTERED.append(schedule)
    return schedule


def unregister(name: str) -> None:
    """Removes a registered schedule (not a built-in); the ids after it move down by one."""
    if name in BUILT_IN:
        raise ValueError(f"{name} is a built-in schedule and stays registered")
    del _REGISTERED[schedule_id(name)]


def registered() -> tuple[Schedule, ...]:
    """Every schedule, in id order."""
    return tuple(_REGISTERED)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in _REGISTERED)


def schedule_id(name: str) -> int:
    names_now = names()
    if name not in names_now:
        raise ValueError(f"unknown schedule {name!r}; registered: {', '.join(names_now)}")
    return names_now.index(name)


def get(schedule: int | str) -> Schedule:
    """A schedule by its name or its id."""
    return _REGISTERED[schedule_id(schedule) if isinstance(schedule, str) else int(schedule)]
