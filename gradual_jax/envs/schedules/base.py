"""What a schedule is: a name, what it moves, its stages, and the batch's mixing coefficients.

A schedule only says how one batch of a transition mixes tasks t and t+1 (:class:`Mix`); the
problem (image or text) turns that into inputs and targets, and the engine decides where the
transition starts and which stage a step is in. So a schedule is a few pure functions of
per-lane numbers, and lanes with different schedules share one vmapped program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# What a gradual schedule moves toward task t+1; a task family lists those it can move.
MOVES = ("targets", "inputs", "examples")


class Mix(NamedTuple):
    """Per-example mixing coefficients of one batch (each shaped [B]).

    The batch is built as
      x      = (1 - input_new)·x_t + input_new·x_t+1
      target = target_old·onehot(y_t) + target_new·onehot(y_t+1) + target_uniform/C
    and every schedule keeps target_old + target_new + target_uniform = 1.
    """

    input_new: jax.Array
    target_old: jax.Array
    target_new: jax.Array
    target_uniform: jax.Array


class At(NamedTuple):
    """Where a batch lies in a transition: what a schedule's ``mix`` reads (traced)."""

    stage: jax.Array  # int32 q: the constant-α stage, 0-based
    n: jax.Array  # int32 1/Δ
    batch_size: jax.Array  # int32: real examples in the batch (the last batch of an epoch may be short)
    max_batch: int  # static padded batch length B


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A transition schedule.

    name: what ``sweep.schedules`` calls it.
    moves: what it moves toward task t+1, one of :data:`MOVES`, which decides the task families it
      applies to; None: nothing moves, the lane spends all (1+k)·E epochs on task t (abrupt).
    stages: n = 1/Δ -> the number of constant-α stages of one transition (int or traced int32).
    mix: :class:`At` -> the batch's :class:`Mix` (pure and traceable; arrays of length ``max_batch``).
    words, caption: how figures name it and say what it does.
    """

    name: str
    moves: str | None
    stages: Callable[[jax.Array], jax.Array] | None = None
    mix: Callable[[At], Mix] | None = None
    words: str = ""  # its name in figures and tables; "" reads the name with spaces
    caption: str = ""  # what it does, for a figure's caption

    @property
    def display(self) -> str:
        return self.words or self.name.replace("_", " ")

    def __post_init__(self):
        if self.moves is not None and self.moves not in MOVES:
            raise ValueError(f"schedule {self.name}: moves={self.moves!r}; expected one of {', '.join(MOVES)} "
                             "or None (abrupt)")
        if self.gradual and (self.stages is None or self.mix is None):
            raise ValueError(f"schedule {self.name} moves the {self.moves}, so it needs stages and mix")

    @property
    def gradual(self) -> bool:
        """A gradual schedule has a transition: E pure epochs on task t, then k·E epochs of stages."""
        return self.moves is not None


def one_over(delta):
    """n = 1/Δ, the whole number of steps of size Δ from 0 to 1 (Δ must divide 1: ``check_delta``).
    A Python Δ gives an int, a traced one a traced int32."""
    if isinstance(delta, (int, float)):
        return round(1 / delta)
    return jnp.round(1.0 / delta).astype(jnp.int32)


def pure(max_batch: int) -> Mix:
    """Task t alone: its inputs and one-hot targets."""
    zeros, ones = jnp.zeros(max_batch, jnp.float32), jnp.ones(max_batch, jnp.float32)
    return Mix(zeros, ones, zeros, zeros)


def linear_alpha(at: At) -> jax.Array:
    """α = q/n: stage q of n evenly spaced stages, from 0 (task t) toward 1 (task t+1)."""
    return (at.stage / at.n).astype(jnp.float32)


def targets_toward_new(alpha: jax.Array, max_batch: int) -> Mix:
    """Targets (1-α)·onehot(y_t) + α·onehot(y_t+1) on task t's inputs."""
    zeros = jnp.zeros(max_batch, jnp.float32)
    a = alpha * jnp.ones(max_batch, jnp.float32)
    return Mix(zeros, 1.0 - a, a, zeros)


def mixed_targets(y_old: jax.Array, y_new: jax.Array, mix: Mix, num_classes: int) -> jax.Array:
    """Soft targets ``target_old·onehot(y_old) + target_new·onehot(y_new) + target_uniform/C``
    (each row sums to 1), shared by the image and text problems."""
    def col(w):
        return w[:, None]

    return (col(mix.target_old) * jax.nn.one_hot(y_old, num_classes)
            + col(mix.target_new) * jax.nn.one_hot(y_new, num_classes)
            + col(mix.target_uniform) / num_classes)
