"""Task families and the problems the engine trains on.

A task is a pure function of (lane key, task index). An image family draws the task's
parameters from a key (``sample``) and turns base examples into the task's examples
(``inputs`` / ``labels``). Nothing is stored per task: task t of a lane is always
``sample(fold_in(task_stream_key, t))``, so any task can be rebuilt from the lane's seed alone,
and lanes with the same seed see the same task sequence (paired comparisons between
schedules).

A :class:`Problem` is what the engine sees: it samples a task, builds a (mixed) minibatch,
runs the model and scores its output. :class:`Classification` wraps an image family;
:class:`gradual_jax.envs.text.seq2seq.Seq2Seq` is the text tasks' problem. The engine never looks
inside a batch, so a new kind of task needs a new problem and nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import optax

from gradual_jax.envs import families
from gradual_jax.envs import schedules
from gradual_jax.envs.problem import Batch


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


families.register(families.Family(
    "random_labels", kind="image", moves=("targets", "examples"), metrics=("online_train_acc", "train_acc"),
    make=RandomLabels(), cannot_move={
        "inputs": "{schedule} needs a task family whose inputs change (task.family=permuted_pixels); "
                  "random_labels only changes the labels"},
    words="random-label", caption="each task a fresh random permutation of the labels",
    no_test="its labels are per-task permutations of the training labels, so a test split has no meaningful label"))
families.register(families.Family(
    "permuted_pixels", kind="image", moves=("inputs", "examples"),
    metrics=("online_train_acc", "train_acc", "test_acc"), make=PermutedPixels(), cannot_move={
        "targets": "{schedule} only moves the labels, but permuted_pixels keeps the labels and changes the "
                   "inputs, so it would never move toward task t+1"},
    words="permuted-pixel", caption="each task a fresh random permutation of the pixels"))


def get_family(name: str) -> TaskFamily:
    """The image family registered as ``name`` (its ``make``)."""
    image = families.names("image")
    if name not in image:
        raise ValueError(f"task.family={name!r} is not allowed; choose one of: {', '.join(image)}")
    return families.get(name).make


# --------------------------------------------------------------------------- problems
@dataclasses.dataclass(frozen=True)
class Classification:
    """An image family as a problem: soft-target cross-entropy over ``num_classes``.

    Models take ``model(x, train=, mask=)``; ReDo and continual backprop read their unit
    features from ``model.logits_and_unit_features`` (the same forward pass), diagnostics
    from ``model.features``.
    """

    family: TaskFamily
    num_classes: int

    @property
    def name(self) -> str:
        return self.family.name

    def num_examples(self, data, split):
        x = data.x_train if split == "train" else data.x_test
        return 0 if x is None else int(x.shape[0])

    def sample(self, key, task, data):
        return self.family.sample(jax.random.fold_in(key, task), data.y_train, data.x_train[0].size)

    def batch(self, data, old, new, index, mix):
        """The examples at ``index`` under a mixing of tasks ``old`` and ``new``."""
        family = self.family
        x_base, y_base = data.x_train[index], data.y_train[index]
        x_old = family.inputs(old, x_base)
        if family.changes_inputs:
            x_new = family.inputs(new, x_base)
            a = mix.input_new.reshape((-1,) + (1,) * (x_base.ndim - 1))
            x = (1.0 - a) * x_old + a * x_new
        else:
            x = x_old
        y_old = family.labels(old, index, y_base)
        y_new = family.labels(new, index, y_base) if family.changes_labels else y_old
        target = schedules.mixed_targets(y_old, y_new, mix, self.num_classes)
        hard = jnp.where(mix.target_new > mix.target_old, y_new, y_old)
        return Batch(inputs=x, targets=target, labels=hard)

    def examples(self, data, task, index, split):
        x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
        labels = self.family.labels(task, index, y[index])
        return Batch(inputs=self.family.inputs(task, x[index]), targets=jax.nn.one_hot(labels, self.num_classes),
                     labels=labels)

    def forward(self, model, inputs, *, train, mask, with_features):
        if with_features:
            return model.logits_and_unit_features(inputs, train=train, mask=mask)
        return model(inputs, train=train, mask=mask), None

    def features(self, model, inputs):
        return model.features(inputs, train=False)

    def loss(self, logits, batch, valid):
        ce = optax.softmax_cross_entropy(logits.astype(jnp.float32), batch.targets)
        correct = ((jnp.argmax(logits, -1) == batch.labels) & valid).sum()
        return jnp.where(valid, ce, 0.0).sum(), correct.astype(jnp.float32), valid.sum().astype(jnp.float32)

    def readout(self, model, task, data):
        return {}

    def host_metrics(self, readout):
        return {}
