"""A mitigation written outside the package: up to three pure functions of one lane.

A registered :class:`~gradual_jax.mitigations.methods.Method` with :class:`Hooks` joins the
compiled program without touching the engine. Each hook sees the lane's parameters and the
lane's own numbers (``numbers``: the names its entry declares, each a float32 scalar, traced
under ``vmap`` so a sweep can vary them):

* ``penalty(params, numbers) -> scalar``: added to the training loss, inside ``value_and_grad``
  (the logged loss leaves it out, as it leaves out the built-in regularisers);
* ``after_update(params, numbers, key) -> params``: applied after every optimizer update;
* ``at_boundary(params, numbers, key) -> params``: applied after each task's readout.

A lane carries, for every hooked method compiled into its program, a :class:`CustomLane`: the
method's numbers and whether the lane uses it. A lane that does not use a compiled-in method
keeps its parameters bit for bit (the hook's output is selected away) and adds nothing to its
loss, so "off" is an exact no-op as it is for the built-ins. The keys are the lane's mitigation
keys folded with a stream fixed by the method's name, so a lane's randomness does not depend
on which other methods share its program.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Numbers = Mapping[str, jax.Array]  # one lane's numbers of one method: declared name -> float32 scalar


@dataclasses.dataclass(frozen=True)
class Hooks:
    """The pure functions a method adds to a lane's training (any of them may be left out)."""

    penalty: Callable[[Any, Numbers], jax.Array] | None = None
    after_update: Callable[[Any, Numbers, jax.Array], Any] | None = None
    at_boundary: Callable[[Any, Numbers, jax.Array], Any] | None = None

    def __post_init__(self):
        if self.penalty is None and self.after_update is None and self.at_boundary is None:
            raise ValueError("Hooks needs at least one of penalty, after_update, at_boundary")


@struct.dataclass
class CustomLane:
    """One lane's share of one hooked method (each leaf ``[lanes]`` once stacked)."""

    on: jax.Array  # bool: the lane uses the method (False: its hooks leave the lane untouched)
    numbers: dict[str, jax.Array]  # float32 scalars, by the names the method declares

    @classmethod
    def create(cls, numbers: Mapping[str, float], *, on: bool) -> CustomLane:
        return cls(on=jnp.asarray(on), numbers={k: jnp.asarray(v, jnp.float32) for k, v in numbers.items()})


Compiled = Sequence[tuple[str, Hooks]]  # the hooked methods of a program: (name, hooks), in registry order


def stream(name: str) -> int:
    """The key stream of a method, fixed by its name (31 bits, clear of the built-ins' 0 and 1
    for any name but a pathological one)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _keep_unless(on: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(on, n, o), new, old)


def penalty(params: Any, compiled: Compiled, lanes: Mapping[str, CustomLane]) -> jax.Array:
    """Σ over the compiled methods' penalties, each counted only where the lane uses it."""
    total = jnp.zeros((), jnp.float32)
    for name, hooks in compiled:
        if hooks.penalty is not None:
            lane = lanes[name]
            total = total + jnp.where(lane.on, hooks.penalty(params, lane.numbers), 0.0)
    return total


def after_update(params: Any, compiled: Compiled, lanes: Mapping[str, CustomLane], key: jax.Array) -> Any:
    """Each compiled method's ``after_update``, where the lane uses it."""
    return _transform("after_update", params, compiled, lanes, key)


def at_boundary(params: Any, compiled: Compiled, lanes: Mapping[str, CustomLane], key: jax.Array) -> Any:
    """Each compiled method's ``at_boundary``, where the lane uses it."""
    return _transform("at_boundary", params, compiled, lanes, key)


def _transform(hook: str, params: Any, compiled: Compiled, lanes: Mapping[str, CustomLane], key: jax.Array) -> Any:
    """The compiled methods' ``hook`` transforms in turn, each kept only where the lane uses it,
    each with the key folded with its method's own stream."""
    for name, hooks in compiled:
        transform = getattr(hooks, hook)
        if transform is not None:
            lane = lanes[name]
            params = _keep_unless(lane.on, transform(params, lane.numbers, jax.random.fold_in(key, stream(name))),
                                  params)
    return params


def uses_boundary(compiled: Compiled) -> bool:
    return any(hooks.at_boundary is not None for _, hooks in compiled)
