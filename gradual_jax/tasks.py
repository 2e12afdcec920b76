"""Task families: a task is a pure function of (lane key, task index).

A family draws the task's parameters from a key (``sample``) and turns base examples
into the task's examples (``inputs`` / ``labels``). Nothing is stored per task: task t
of a lane is always ``sample(fold_in(task_key, t))``, so any task can be rebuilt from
the lane's seed alone, and lanes with the same seed see the same task sequence (paired
comparisons between schedules).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp


class TaskFamily(Protocol):
    name: str
    changes_inputs: bool
    changes_labels: bool

    def sample(self, key: jax.Array, y_train: jax.Array, num_features: int) -> Any: ...

    def inputs(self, task: Any, x: jax.Array) -> jax.Array: ...

    def labels(self, task: Any, index: jax.Array, y: jax.Array) -> jax.Array: ...


@dataclasses.dataclass(frozen=True)
class RandomLabels:
    """Random image labeling: the task's labels are a random permutation of the label array.

    Permuting the array (rather than drawing fresh labels) keeps every class count of the
    balanced subset. There is no meaningful test split for random labels.
    """

    name: str = "random_labels"
    changes_inputs: bool = False
    changes_labels: bool = True

    def sample(self, key, y_train, num_features):
        return jax.random.permutation(key, y_train)

    def inputs(self, task, x):
        return x

    def labels(self, task, index, y):
        return task[index]


@dataclasses.dataclass(frozen=True)
class PermutedPixels:
    """Random pixel permuting: one fixed permutation of the flattened pixels per task.

    The same permutation applies to the training and test images of the task.
    """

    name: str = "permuted_pixels"
    changes_inputs: bool = True
    changes_labels: bool = False

    def sample(self, key, y_train, num_features):
        return jax.random.permutation(key, num_features)

    def inputs(self, task, x):
        flat = x.reshape(x.shape[0], -1)
        return jnp.take(flat, task, axis=1).reshape(x.shape)

    def labels(self, task, index, y):
        return y


FAMILIES: dict[str, TaskFamily] = {f.name: f for f in (RandomLabels(), PermutedPixels())}


def get_family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        raise ValueError(f"task.family={name!r} is not allowed; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]
