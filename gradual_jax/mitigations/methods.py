"""The registered mitigation methods: what ``sweep.methods`` names, and how a lane uses each.

A built-in's entry says which keys of the config's ``mitigations`` section it reads (``reads``),
how a lane's strengths come from them (``strengths(m)``:
:class:`~gradual_jax.mitigations.MitigationHParams` values, every other method off), which parts
of :class:`~gradual_jax.mitigations.MitigationStructure` it compiles in (``structure(m)``), and
how figures name it (``words``, ``caption``, ``color``). A method written outside the package
declares its own ``numbers`` instead (the names of ``mitigations.custom`` it reads) and its
:class:`~gradual_jax.mitigations.hooks.Hooks`, pure functions of the lane's parameters and those
numbers; one ``METHODS.register(Method(...))`` line makes it a ``sweep.methods`` value
(``docs/examples/weight_clipping.py``). The runner reads only these entries, so a lane's
numbers and the program's structure come from one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gradual_jax.mitigations.hooks import CustomLane, Hooks
from gradual_jax.registry import Registry


def _none(m) -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class Method:
    """A mitigation as a sweep names it. ``m`` is the config's ``mitigations`` section."""

    name: str
    words: str
    strengths: Callable[[Any], Mapping[str, float]] = _none
    structure: Callable[[Any], Mapping[str, Any]] = _none
    caption: str = ""
    color: str = "tab:gray"
    reads: tuple[str, ...] = ()  # the mitigations.* strengths it needs set (a built-in's)
    numbers: tuple[str, ...] = ()  # the mitigations.custom names it needs set (a hooked method's)
    hooks: Hooks | None = None  # a method from outside the package: what it does to a lane

    def __post_init__(self):
        if self.numbers and self.hooks is None:
            raise ValueError(f"method {self.name}: numbers are read by hooks; give it Hooks(...)")

    @property
    def display(self) -> str:
        return self.words

    def custom_lane(self, m, *, on: bool) -> CustomLane:
        """A lane's numbers of this hooked method, from ``m.custom`` (the config's ``mitigations``)."""
        return CustomLane.create({name: m.custom[name] for name in self.numbers}, on=on)


def hooked(names: Iterable[str]) -> tuple[Method, ...]:
    """The hooked methods among ``names``, in registry order (the order a program applies them)."""
    wanted = set(names)
    return tuple(method for method in METHODS.registered() if method.name in wanted and method.hooks is not None)


METHODS: Registry[Method] = Registry("mitigation", Method)
for _method in (
    Method("none", "none", caption="no mitigation", color="black"),
    Method("l2", "L2", lambda m: {"l2": m.l2}, lambda m: {"l2": True}, "an L2 penalty on the weights", "tab:red",
           reads=("l2",)),
    Method("l2_init", "L2-init", lambda m: {"l2_init": m.l2_init}, lambda m: {"l2_init": True},
           "an L2 penalty toward the initial weights", "tab:orange", reads=("l2_init",)),
    Method("shrink_perturb", "Shrink & Perturb", lambda m: {"shrink": m.shrink, "perturb": m.perturb},
           lambda m: {"shrink_perturb": True, "shrink_perturb_at": m.shrink_perturb_at},
           "weights shrunk and perturbed at each task boundary", "tab:brown", reads=("shrink", "perturb")),
    Method("redo", "ReDo", lambda m: {"redo_threshold": m.redo_threshold, "redo_max_fraction": m.redo_max_fraction},
           lambda m: {"redo_every": m.redo_every, "redo_after": m.redo_after},
           "dormant units recycled every few steps", "tab:pink",
           reads=("redo_threshold", "redo_max_fraction", "redo_every", "redo_after")),
    Method("spectral", "spectral", lambda m: {"spectral": m.spectral},
           lambda m: {"spectral": True, "spectral_target": m.spectral_target},
           "a penalty on each weight matrix's largest singular value", "tab:blue", reads=("spectral",)),
    Method("cbp", "continual backprop",
           lambda m: {"cbp_rate": m.cbp_rate, "cbp_maturity": m.cbp_maturity, "cbp_decay": m.cbp_decay},
           lambda m: {"cbp": True}, "low-utility mature units replaced every step", "tab:olive",
           reads=("cbp_rate", "cbp_maturity", "cbp_decay")),
):
    METHODS.register(_method)
METHODS.seal()
