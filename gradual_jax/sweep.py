"""Lanes: the Cartesian product of a sweep's per-lane numbers, and their pytree form."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp

from gradual_jax import schedules
from gradual_jax.config import ExperimentConfig, SweepConfig
from gradual_jax.engine import LaneHParams


@dataclasses.dataclass(frozen=True)
class Lane:
    """One training run of a sweep. ``delta`` is None for abrupt lanes (Δ has no meaning there)."""

    seed: int
    schedule: str
    delta: float | None
    learning_rate: float

    def label(self) -> str:
        delta = "" if self.delta is None else f", Δ={self.delta:g}"
        return f"{self.schedule}{delta}, lr={self.learning_rate:g}, seed={self.seed}"


def expand(sweep: SweepConfig) -> list[Lane]:
    """Lanes in a stable order: schedule, Δ, learning rate, then seed (innermost).

    Abrupt lanes are not multiplied by the Δ axis; duplicate entries are dropped.
    """
    lanes: list[Lane] = []
    for name in dict.fromkeys(sweep.schedules):
        deltas = [None] if name == "abrupt" else list(dict.fromkeys(sweep.deltas))
        for delta, lr, seed in itertools.product(deltas, dict.fromkeys(sweep.learning_rates),
                                                 dict.fromkeys(sweep.seeds)):
            lanes.append(Lane(seed=seed, schedule=name, delta=delta, learning_rate=lr))
    return lanes


def to_hparams(lanes: list[Lane]) -> LaneHParams:
    """Stack lanes into the vmappable pytree (abrupt lanes carry Δ = 1, never read)."""
    return LaneHParams(
        seed=jnp.asarray([lane.seed for lane in lanes], jnp.int32),
        schedule=jnp.asarray([schedules.schedule_id(lane.schedule) for lane in lanes], jnp.int32),
        delta=jnp.asarray([1.0 if lane.delta is None else lane.delta for lane in lanes], jnp.float32),
        learning_rate=jnp.asarray([lane.learning_rate for lane in lanes], jnp.float32),
    )


def describe_schedules(cfg: ExperimentConfig) -> list[str]:
    """One line per (schedule, Δ) of the sweep: its pure epochs and transition stages."""
    p = cfg.protocol
    return [schedules.describe(name, delta, p.epochs_per_task, p.transition_ratio)
            for name in dict.fromkeys(cfg.sweep.schedules)
            for delta in ([1.0] if name == "abrupt" else dict.fromkeys(cfg.sweep.deltas))]
