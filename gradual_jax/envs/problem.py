"""What the engine asks of a learning problem: a :class:`Batch` of inputs and (possibly mixed)
targets, and the :class:`Problem` protocol that samples tasks, builds batches and scores the
model's outputs. The image problem is :class:`gradual_jax.envs.image.Classification`, the text
one :class:`gradual_jax.envs.text.seq2seq.Seq2Seq`."""

from __future__ import annotations

from typing import Any, Protocol

import jax
import numpy as np
from flax import struct


@struct.dataclass
class Batch:
    """One minibatch as the engine passes it around (it never looks inside)."""

    inputs: Any  # the model's inputs (an array, or a tuple for encoder-decoders)
    targets: jax.Array  # soft targets [..., C]: a schedule may mix two tasks' outputs
    labels: jax.Array  # int32 [...]: the dominant target, for accuracy


class Problem(Protocol):
    """What the engine needs of a task family (all methods are traceable, ``split`` is static).

    ``loss`` returns sums, ``(loss_sum, correct, count)``, over the counted positions of a
    batch (examples for classification, target tokens for text), so the engine can average
    over an epoch or a whole split without knowing which.
    """

    name: str

    def num_examples(self, data: Any, split: str) -> int: ...

    def sample(self, key: jax.Array, task: jax.Array, data: Any) -> Any: ...

    def batch(self, data: Any, old: Any, new: Any, index: jax.Array, mix: Any) -> Batch: ...

    def examples(self, data: Any, task: Any, index: jax.Array, split: str) -> Batch: ...

    def forward(self, model: Any, inputs: Any, *, train: bool, mask: jax.Array | None,
                with_features: bool) -> tuple[jax.Array, list[jax.Array] | None]: ...

    def features(self, model: Any, inputs: Any) -> list[jax.Array]: ...

    def loss(self, logits: jax.Array, batch: Batch, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]: ...

    def readout(self, model: Any, task: Any, data: Any) -> dict[str, jax.Array]: ...

    def host_metrics(self, readout: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
