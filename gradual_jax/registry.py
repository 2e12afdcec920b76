"""The one shape of every pluggable part's registry: schedules, models, mitigations, task families.

A :class:`Registry` holds entries that each have a ``name``, in the order they were registered
(an entry's place is its id: a lane's schedule id is its schedule's place). The built-ins are
registered by the package and cannot be replaced or removed; a researcher's entry joins from
any file with ``register`` and replaces an earlier one of its name in place, so re-running the
file keeps its id. ``load`` names the modules whose import registers the built-ins, imported the
first time the registry is read, so importing a light module alone stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one type, in registration order. ``Registry.changes`` counts the
    registrations and removals of every registry, so a result that depends on what is
    registered (a validated config) can tell whether it still holds."""

    changes = 0

    def __init__(self, kind: str, entry_type: type, *, load: Sequence[str] = ()):
        self.kind, self.entry_type, self._load = kind, entry_type, tuple(load)
        self._entries: dict[str, T] = {}
        self._built_in: tuple[str, ...] = ()

    def _all(self) -> dict[str, T]:
        for module in self._load:
            importlib.import_module(module)
        return self._entries

    def register(self, entry: T) -> T:
        """Adds ``entry`` after those registered, or replaces the one of its name in place."""
        if not isinstance(entry, self.entry_type):
            raise TypeError(f"register() takes a {self.entry_type.__name__}, not {type(entry).__name__}")
        if entry.name in self._built_in:
            raise ValueError(f"{entry.name} is a built-in {self.kind}; register yours under another name")
        self._entries[entry.name] = entry
        Registry.changes += 1
        return entry

    def seal(self) -> None:
        """The entries registered so far are the built-ins: they keep their names and ids."""
        self._built_in = tuple(self._all())

    @property
    def built_in(self) -> tuple[str, ...]:
        self._all()
        return self._built_in

    def unregister(self, name: str) -> None:
        """Removes a registered entry (not a built-in); the ids after it move down by one."""
        if name in self.built_in:
            raise ValueError(f"{name} is a built-in {self.kind} and stays registered")
        del self._entries[self.get(name).name]
        Registry.changes += 1

    def registered(self) -> tuple[T, ...]:
        """Every entry, in id order."""
        return tuple(self._all().values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._all())

    def index(self, name: str) -> int:
        """The entry's id: its place in the registry."""
        return self.names().index(self.get(name).name)

    def get(self, name: str) -> T:
        entries = self._all()
        if name not in entries:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {', '.join(entries)}")
        return entries[name]
