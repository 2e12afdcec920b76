"""The registered mitigation methods: what ``sweep.methods`` names, and how a lane uses each.

A method's entry says how a lane's strengths come from the config's ``mitigations`` section
(``strengths(m)``: :class:`~gradual_jax.mitigations.MitigationHParams` values, every other
method off), which parts of :class:`~gradual_jax.mitigations.MitigationStructure` it compiles
in (``structure(m)``), and how figures name it (``words``, ``caption``, ``color``). The runner
reads only these entries, so a lane's numbers and the program's structure come from one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

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

    @property
    def display(self) -> str:
        return self.words


METHODS: Registry[Method] = Registry("mitigation", Method)
for _method in (
    Method("none", "none", caption="no mitigation", color="black"),
    Method("l2", "L2", lambda m: {"l2": m.l2}, lambda m: {"l2": True}, "an L2 penalty on the weights", "tab:red"),
    Method("l2_init", "L2-init", lambda m: {"l2_init": m.l2_init}, lambda m: {"l2_init": True},
           "an L2 penalty toward the initial weights", "tab:orange"),
    Method("shrink_perturb", "Shrink & Perturb", lambda m: {"shrink": m.shrink, "perturb": m.perturb},
           lambda m: {"shrink_perturb": True, "shrink_perturb_at": m.shrink_perturb_at},
           "weights shrunk and perturbed at each task boundary", "tab:brown"),
    Method("redo", "ReDo", lambda m: {"redo_threshold": m.redo_threshold, "redo_max_fraction": m.redo_max_fraction},
           lambda m: {"redo_every": m.redo_every, "redo_after": m.redo_after},
           "dormant units recycled every few steps", "tab:pink"),
    Method("spectral", "spectral", lambda m: {"spectral": m.spectral},
           lambda m: {"spectral": True, "spectral_target": m.spectral_target},
           "a penalty on each weight matrix's largest singular value", "tab:blue"),
    Method("cbp", "continual backprop",
           lambda m: {"cbp_rate": m.cbp_rate, "cbp_maturity": m.cbp_maturity, "cbp_decay": m.cbp_decay},
           lambda m: {"cbp": True}, "low-utility mature units replaced every step", "tab:olive"),
):
    METHODS.register(_method)
METHODS.seal()
