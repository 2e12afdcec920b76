"""What a run not yet made will cost: lanes, lane-steps, and time at a measured rate.

A lane-step is one optimizer step of one lane; a run's cost is its lanes × tasks × steps per
task. The time is that over the lane-steps per second that finished runs of the same model and
task family recorded (``config.json``'s ``lane_steps_per_second``), the median where there are
several: a measured rate of this machine, not a guess.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence

from gradual_jax import config as config_lib
from gradual_jax.analysis.runs import RunPart, is_text
from gradual_jax.envs.data import NUM_CLASSES


@dataclasses.dataclass(frozen=True)
class Cost:
    lanes: int
    lane_steps: int
    rate: float | None  # measured lane-steps per second of a comparable finished run
    rate_from: str  # the runs the rate comes from

    @property
    def seconds(self) -> float | None:
        return None if not self.rate else self.lane_steps / self.rate

    def text(self) -> str:
        steps = f"{self.lanes} lanes, {self.lane_steps / 1e6:.2f} M lane-steps"
        if self.seconds is None:
            return steps + ", no comparable finished run to time it by yet (same model, task family, batch and " \
                           "mitigations or none)"
        return f"{steps}, ~{_duration(self.seconds)} at {self.rate:,.0f} lane-steps/s ({self.rate_from})"


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def num_train(cfg: config_lib.ExperimentConfig) -> int:
    """Training examples per task: the text pairs, or the images per class × classes."""
    if is_text(cfg.task.family):
        return cfg.text.num_train
    return cfg.data.train_per_class * NUM_CLASSES[cfg.data.dataset]


def steps_per_task(cfg: config_lib.ExperimentConfig) -> int:
    """(1+k)·E epochs of ⌈examples / batch⌉ steps (the engine keeps a short last batch)."""
    p = cfg.protocol
    epochs = p.epochs_per_task + round(p.transition_ratio * p.epochs_per_task)
    return epochs * math.ceil(num_train(cfg) / p.batch_size)


def num_lanes(cfg: config_lib.ExperimentConfig) -> int:
    from gradual_jax.runner import sweep  # imports JAX: only plans need it

    return len(sweep.expand(cfg.sweep))


def _mitigated(methods: Sequence[str]) -> bool:
    """Whether a sweep compiles mitigations in (every lane then does every method's work)."""
    return any(m != "none" for m in methods)


def _comparable(part: RunPart, cfg: config_lib.ExperimentConfig) -> bool:
    """The same model, task family and batch, with or without mitigations compiled in, as ``cfg``."""
    config = part.config
    model = json.loads(json.dumps(config_lib.to_dict(cfg)["model"], default=str))  # as config.json holds it
    return bool(config) and config["model"] == model \
        and config["task"]["family"] == cfg.task.family and bool(part.meta.get("lane_steps_per_second")) \
        and config["protocol"]["batch_size"] == cfg.protocol.batch_size \
        and _mitigated(config["sweep"]["methods"]) == _mitigated(cfg.sweep.methods)


def cost(cfg: config_lib.ExperimentConfig, finished: Sequence[RunPart]) -> Cost:
    """The cost of ``cfg`` at the median rate of the comparable ``finished`` runs."""
    lanes = num_lanes(cfg)
    same = [p for p in finished if _comparable(p, cfg)]
    rate = statistics.median(p.meta["lane_steps_per_second"] for p in same) if same else None
    source = ", ".join(p.label for p in same[:3]) + (" …" if len(same) > 3 else "")
    return Cost(lanes, lanes * cfg.task.num_tasks * steps_per_task(cfg), rate, source)
