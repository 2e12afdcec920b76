"""Host-side arithmetic of a transition's stages: Δ's checks, stage counts, ``show``'s lines."""

from __future__ import annotations

import math

import jax.numpy as jnp

from gradual_jax.envs.schedules.registered import get
from gradual_jax.envs.schedules.base import Schedule, one_over


def check_delta(delta: float, *, key: str = "delta", error: type[Exception] = ValueError) -> None:
    """Δ must lie in (0, 1] and divide 1 into a whole number of stages."""
    if not (isinstance(delta, (int, float)) and 0 < delta <= 1):
        raise error(f"{key}: Δ={delta!r} must lie in (0, 1]")
    if abs(1 / delta - one_over(delta)) > 1e-6:
        raise error(f"{key}: Δ={delta!r} must divide 1 into whole stages (1/Δ = {1 / delta:.4g}); "
                    "e.g. 1, 0.5, 0.25, 0.2, 0.1, 0.05, 0.02")


def num_stages(schedule: int | str, delta: float) -> int:
    """Number of constant-α stages in one transition (0 for abrupt)."""
    s = get(schedule)
    return int(s.stages(one_over(delta))) if s.gradual else 0


def epochs_per_stage(schedule: int | str, delta: float, epochs_per_task: int, transition_ratio: float) -> float:
    """k·E / stages: k·E·Δ/2 for output interpolation, k·E·Δ otherwise (docs/protocol.md)."""
    stages = num_stages(schedule, delta)
    return transition_ratio * epochs_per_task / stages if stages else 0.0


def stage_of(schedule: Schedule, n, transition_step, transition_steps):
    """Stage index at a step of the transition: ⌊i·S / T⌋ with S stages over T steps.

    Integer arithmetic keeps stage boundaries exact, so when k·E·Δ is not a whole number of
    epochs a boundary falls inside an epoch instead of being rounded away.
    """
    return (transition_step * schedule.stages(n)) // jnp.maximum(transition_steps, 1)


def stage_at(schedule: int | str, delta, transition_step, transition_steps):
    """:func:`stage_of` for a registered schedule and Δ (all but ``schedule`` may be traced);
    0 for a schedule without stages (abrupt)."""
    s = get(schedule)
    if not s.gradual:
        return jnp.int32(0)
    return stage_of(s, one_over(jnp.asarray(delta)), transition_step, transition_steps)


def describe(name: str, delta: float, epochs_per_task: int, transition_ratio: float) -> str:
    """One human-readable line on a schedule's stages, for ``gradual-jax show``."""
    if not get(name).gradual:
        total = epochs_per_task * (1 + transition_ratio)
        return f"{name}: {total:g} epochs on each task"
    stages = num_stages(name, delta)
    per = epochs_per_stage(name, delta, epochs_per_task, transition_ratio)
    whole = "" if math.isclose(per, round(per)) else " (stage boundaries fall inside epochs)"
    return (f"{name}: {epochs_per_task} pure epochs, then {stages} stages × {per:g} epochs "
            f"(Δ={delta:g}){whole}")
