"""The registered task families: what each is, what a transition can move in it, what it measures.

A family declares its kind (``image``: the :class:`~gradual_jax.envs.image.Classification`
problem over an image data set; ``text``: the T5's seq2seq problem), which of the schedules'
:data:`~gradual_jax.envs.schedules.MOVES` it can move toward task t+1, the metric columns it
has, and ``make``, what builds its tasks (an image family: the
:class:`~gradual_jax.envs.image.TaskFamily`; a text family: ``make(text)``, its task spec from
the config's ``text`` section, :class:`~gradual_jax.envs.text.tasks.TextSpec`). The schedules a
family runs are those that move something it can move, plus abrupt; the config's family
tables and its refusals are read from here, so a family is one registration next to its code
(``gradual_jax/envs/image.py``, ``gradual_jax/envs/text/tasks.py``). Those modules are
imported the first time the registry is read, so importing the data layer alone stays light.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gradual_jax.envs import schedules
from gradual_jax.registry import Registry

KINDS = ("image", "text")
# Where the built-in families register themselves.
BUILT_IN_MODULES = ("gradual_jax.envs.image", "gradual_jax.envs.text.tasks")


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """A task family.

    moves: what a transition can move in it, in the order its schedules are listed.
    cannot_move: for a thing it cannot move, why a schedule moving it means nothing here
      (``{schedule}`` is replaced by the schedule's name); without one the refusal says what it
      can move instead.
    make: what builds its tasks: an image family's :class:`~gradual_jax.envs.image.TaskFamily`;
      a text family's spec from the config's ``text`` section (``make(text) -> spec``, a
      :class:`~gradual_jax.envs.text.tasks.TextSpec`: sizes and ``sample(key, task)``).
    """

    name: str
    kind: str
    moves: tuple[str, ...]
    metrics: tuple[str, ...]
    make: Any
    cannot_move: Mapping[str, str] = dataclasses.field(default_factory=dict)
    words: str = ""  # its name in figures: "random-label" (an image family, before its data set), "Bigram Cipher"
    caption: str = ""  # what one of its tasks is, for a figure's caption
    no_test: str = ""  # why its tasks have no test split, for a family without one (the refusals quote it)

    @property
    def display(self) -> str:
        return self.words or self.name.replace("_", " ")

    @property
    def has_test(self) -> bool:
        """Whether its tasks have a test split: it measures ``test_acc``."""
        return "test_acc" in self.metrics

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"family {self.name}: kind={self.kind!r}; expected one of {', '.join(KINDS)}")
        unknown = [m for m in (*self.moves, *self.cannot_move) if m not in schedules.MOVES]
        if unknown:
            raise ValueError(f"family {self.name}: cannot move {', '.join(unknown)}; "
                             f"the schedules move {', '.join(schedules.MOVES)}")
        object.__setattr__(self, "moves", tuple(self.moves))
        object.__setattr__(self, "cannot_move", MappingProxyType(dict(self.cannot_move)))


FAMILIES: Registry[Family] = Registry("task family", Family, load=BUILT_IN_MODULES)
register, unregister = FAMILIES.register, FAMILIES.unregister


def names(kind: str | None = None) -> tuple[str, ...]:
    """The registered families (of one kind): image families first, each kind in registration order."""
    return tuple(f.name for k in (KINDS if kind is None else (kind,)) for f in FAMILIES.registered() if f.kind == k)


def with_test(kind: str) -> tuple[str, ...]:
    """The registered families of ``kind`` whose tasks have a test split."""
    return tuple(name for name in names(kind) if FAMILIES.get(name).has_test)


def get(name: str) -> Family:
    if name not in FAMILIES.names():
        raise ValueError(f"task.family={name!r} is not allowed; choose one of: {', '.join(names())}")
    return FAMILIES.get(name)


def schedules_for(name: str) -> tuple[str, ...]:
    """The registered schedules that mean something for family ``name``: those without a
    transition (abrupt), then for each thing it can move, the schedules moving it."""
    family, registered = get(name), schedules.registered()
    return (*(s.name for s in registered if not s.gradual),
            *(s.name for moved in family.moves for s in registered if s.moves == moved))


def refusal(name: str, schedule: str) -> str | None:
    """Why ``schedule`` means nothing for family ``name`` (None when it applies)."""
    if schedule in schedules_for(name):
        return None
    family, moved = get(name), schedules.get(schedule).moves
    if moved in family.cannot_move:
        return family.cannot_move[moved].format(schedule=schedule)
    return (f"{schedule} moves the {moved}, which task.family={name} does not change (it can move the "
            f"{' or the '.join(family.moves)})")
