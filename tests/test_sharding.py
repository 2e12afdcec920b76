"""How lanes are laid out: chunks, padding to the device count, and groups within a device."""

from __future__ import annotations

import types

import numpy as np
import pytest

from gradual_jax import sharding
from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides, validate


def layout(lanes_per_device: int, devices: int = 1, platform: str = "cpu") -> sharding.LaneLayout:
    device = types.SimpleNamespace(platform=platform)
    mesh = types.SimpleNamespace(size=devices, devices=np.array([device] * devices))
    return sharding.LaneLayout(num_lanes=lanes_per_device * devices, chunk_size=lanes_per_device * devices,
                               num_chunks=1, mesh=mesh)


@pytest.mark.parametrize("lanes, vmap_lanes, groups", [
    # automatic on a CPU: groups of at most 4 lanes that split the device's lanes evenly
    (1, 0, 1), (4, 0, 1), (6, 0, 2), (8, 0, 2), (32, 0, 8), (30, 0, 10), (64, 0, 16),
    (5, 0, 1), (31, 0, 1),  # a prime count would need one-lane groups: one vmap instead
    # asked for explicitly: the fewest even groups of at most that many lanes, one-lane groups included
    (5, 2, 5), (32, 8, 4), (32, 32, 1), (32, 100, 1), (12, 5, 3), (7, 1, 7),
])
def test_lane_groups_on_a_cpu(lanes, vmap_lanes, groups):
    got = layout(lanes).lane_groups(vmap_lanes)
    assert got == groups and lanes % got == 0


def test_lane_groups_per_device_and_on_accelerators():
    assert layout(32, devices=2).lane_groups(0) == 8  # counted per device: 32 lanes on each of 2
    assert layout(32, platform="gpu").lane_groups(0) == 1  # one wide vmap on an accelerator
    assert layout(32, platform="gpu").lane_groups(4) == 8  # unless asked for


def test_vmap_lanes_must_not_be_negative():
    with pytest.raises(ConfigError, match="run.vmap_lanes=-1"):
        validate(apply_overrides(ExperimentConfig(), ["run.vmap_lanes=-1"]))
