"""Lanes: the Cartesian product of a sweep's per-lane numbers, and their pytree form."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp

from gradual_jax.envs import schedules
from gradual_jax.config import ExperimentConfig, MitigationsConfig, SweepConfig
from gradual_jax.core.engine import LaneHParams
from gradual_jax import models
from gradual_jax.mitigations import MitigationStructure, MitigationHParams
from gradual_jax.mitigations.methods import METHODS, hooked


@dataclasses.dataclass(frozen=True)
class Lane:
    """One training run of a sweep. ``delta`` is None for a schedule without a transition
    (abrupt: Δ has no meaning there)."""

    seed: int
    schedule: str
    delta: float | None
    learning_rate: float
    method: str = "none"  # mitigation (config.METHODS)

    def label(self) -> str:
        delta = "" if self.delta is None else f", Δ={self.delta:g}"
        method = "" if self.method == "none" else f" + {self.method}"
        return f"{self.schedule}{method}{delta}, lr={self.learning_rate:g}, seed={self.seed}"


def expand(sweep: SweepConfig) -> list[Lane]:
    """Lanes in a stable order: schedule, method, Δ, learning rate, then seed (innermost).

    Lanes of a schedule without a transition (abrupt) are not multiplied by the Δ axis, gradual
    lanes not by the methods axis (unless ``mitigate_gradual``); duplicate entries are dropped.
    """
    lanes: list[Lane] = []
    for name in dict.fromkeys(sweep.schedules):
        gradual = schedules.get(name).gradual
        deltas = list(dict.fromkeys(sweep.deltas)) if gradual else [None]
        methods = dict.fromkeys(sweep.methods) if not gradual or sweep.mitigate_gradual else ["none"]
        for method, delta, lr, seed in itertools.product(methods, deltas, dict.fromkeys(sweep.learning_rates),
                                                         dict.fromkeys(sweep.seeds)):
            lanes.append(Lane(seed=seed, schedule=name, delta=delta, learning_rate=lr, method=method))
    return lanes


def lane_mitigation(method: str, m: MitigationsConfig) -> MitigationHParams:
    """A lane's mitigation numbers: its method's strengths from the config, every other off
    (a hooked method's: its numbers from ``mitigations.custom``, switched on)."""
    entry = METHODS.get(method)
    if entry.hooks is not None:
        return MitigationHParams.create(custom={method: entry.custom_lane(m, on=True)})
    return MitigationHParams.create(**entry.strengths(m))


def mitigation_structure(lanes: list[Lane], m: MitigationsConfig, model: str = "mlp") -> MitigationStructure:
    """The static part: every method some lane uses is compiled into the one program, in the
    model's variant (``ModelSpec.mitigation``). The unit layers of ReDo and continual backprop
    are the model's (``build.build_program`` fills them in from its parameters)."""
    used = {lane.method for lane in lanes}
    switched_on = {key: value for method in METHODS.registered() if method.name in used
                   for key, value in method.structure(m).items()}
    settings = {"spectral_target": m.spectral_target, "shrink_perturb_at": m.shrink_perturb_at}
    custom = tuple((method.name, method.hooks) for method in hooked(used))
    return MitigationStructure(**models.get(model).mitigation, **{**settings, **switched_on}, custom=custom)


def to_hparams(lanes: list[Lane], mitigations: MitigationsConfig = MitigationsConfig()) -> LaneHParams:
    """Stack lanes into the vmappable pytree (abrupt lanes carry Δ = 1, never read). Every lane
    carries every hooked method of the program: its own switched on, the others off."""
    off = {method.name: method.custom_lane(mitigations, on=False) for method in hooked(lane.method for lane in lanes)}
    numbers = [lane_mitigation(lane.method, mitigations) for lane in lanes]
    return LaneHParams(
        mitigation=MitigationHParams.stack([n.replace(custom={**off, **n.custom}) for n in numbers]),
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
            for delta in (dict.fromkeys(cfg.sweep.deltas) if schedules.get(name).gradual else [1.0])]
