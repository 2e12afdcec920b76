"""A sweep's lanes as compiled programs: one per static structure its lanes need.

Lanes of different mitigation methods need different static structure (ReDo's unit scores,
continual backprop's utilities, spectral regularisation's power iteration). Compiled into one
program, every lane would do every method's work with its own strengths set to "off"; compiled
per structure, a lane does only its own. Each group of lanes gets its program, its lane layout
over the devices (chunks of ``run.lanes_per_chunk``) and its hyperparameters; the groups'
metrics are put back in the sweep's lane order, so a run has one results table, one resume
point and one checkpoint, whatever the grouping. A lane's numbers are its own in either case: its
data and keys come from its seed, and a method switched off is an exact no-op.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from gradual_jax.config import ExperimentConfig
from gradual_jax.core import engine
from gradual_jax.runner import build, sharding, sweep


@dataclasses.dataclass(frozen=True)
class LaneProgram:
    """One compiled program's share of the sweep."""

    lanes: tuple[int, ...]  # the lanes it trains: places in ``sweep.expand``'s list
    program: engine.Program
    layout: sharding.LaneLayout
    hparams: tuple[Any, ...]  # each chunk's LaneHParams, placed on the devices

    @property
    def offload(self) -> bool:
        """Whether idle chunks wait in host memory (more than one chunk)."""
        return self.layout.num_chunks > 1


def structure_groups(lanes: Sequence[sweep.Lane], cfg: ExperimentConfig) -> list[tuple[int, ...]]:
    """The lanes' places grouped by the static structure their method needs, groups in the order
    each first appears and lanes in sweep order within a group. ``run.split_programs=false``
    keeps every lane in one group (one program with every method of the sweep)."""
    if not cfg.run.split_programs:
        return [tuple(range(len(lanes)))]
    groups: dict[Any, list[int]] = {}
    for i, lane in enumerate(lanes):
        key = sweep.mitigation_structure([lane], cfg.mitigations, model=cfg.model.name)
        groups.setdefault(key, []).append(i)
    return [tuple(group) for group in groups.values()]


def build_all(cfg: ExperimentConfig, lanes: Sequence[sweep.Lane], prepared: build.PreparedData,
              groups: Sequence[Sequence[int]] | None = None) -> list[LaneProgram]:
    """Every group's program, layout and placed hyperparameters; ``groups`` (default:
    :func:`structure_groups`) as a finished run recorded them, to read its saved states."""
    made = []
    for group in (structure_groups(lanes, cfg) if groups is None else [tuple(g) for g in groups]):
        own = [lanes[i] for i in group]
        layout = sharding.LaneLayout.create(len(own), cfg.run.lanes_per_chunk)
        sharding.check_cpu_devices(layout, cfg.diagnostics.enabled)
        hparams = tuple(layout.to_devices(h) for h in layout.split(sweep.to_hparams(own, cfg.mitigations)))
        made.append(LaneProgram(lanes=group, program=build.build_program(cfg, prepared, own), layout=layout,
                                hparams=hparams))
    return made


def first_chunks(programs: Sequence[LaneProgram]) -> list[int]:
    """Where each program's chunks start in the run's flat list of lane states (each program's
    chunks in turn, programs in order: the order of the checkpoints)."""
    return np.cumsum([0] + [p.layout.num_chunks for p in programs[:-1]]).tolist()


def place_data(programs: Sequence[LaneProgram], data: Any) -> list[Any]:
    """``data`` replicated on each program's devices, in ``programs`` order; programs on the same
    devices share one copy (a program of few lanes may use fewer devices than the others)."""
    placed: dict[tuple[int, ...], Any] = {}
    for p in programs:
        devices = tuple(d.id for d in p.layout.mesh.devices.flat)
        if devices not in placed:
            placed[devices] = p.layout.replicate(data)
    return [placed[tuple(d.id for d in p.layout.mesh.devices.flat)] for p in programs]


def init_states(programs: Sequence[LaneProgram]) -> list[Any]:
    """Fresh lane states of every chunk, in :func:`first_chunks` order (idle chunks on the host)."""
    states = []
    for p in programs:
        init = jax.jit(jax.vmap(lambda hp, program=p.program: engine.init_lane(program, hp)),
                       out_shardings=p.layout.lane_sharding)
        states += [jax.device_get(init(h)) if p.offload else init(h) for h in p.hparams]
    return states


def in_lane_order(programs: Sequence[LaneProgram], values: Sequence[Any]) -> Any:
    """One host pytree over all lanes (leaves [lanes, ...], sweep order) from each program's own
    (leaves [its lanes, ...]), given in ``programs`` order."""
    order = np.argsort(np.concatenate([np.asarray(p.lanes, np.int64) for p in programs]), kind="stable")
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[order], *values)
