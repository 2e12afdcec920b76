"""How lanes are laid out: chunks, padding to the device count, and groups within a device."""

from __future__ import annotations

import types

import numpy as np
import pytest

from gradual_jax import models
from gradual_jax.runner import sharding
from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides, validate


def layout(lanes_per_device: int, devices: int = 1, platform: str = "cpu", processes: int = 1) -> sharding.LaneLayout:
    """A layout over ``devices`` devices, spread evenly over ``processes`` processes (this one is 0)."""
    device = [types.SimpleNamespace(platform=platform, process_index=i * processes // devices) for i in range(devices)]
    mesh = types.SimpleNamespace(size=devices, devices=np.array(device))
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


@pytest.mark.parametrize("lanes", [1, 5, 6, 15])
def test_automatic_lanes_one_at_a_time_where_the_model_asks(lanes):
    """A model whose ``cpu_vmap_lanes`` is 1 (the ResNet, the T5) trains its lanes one at a time on
    a CPU, a prime count included; on an accelerator still one wide vmap."""
    assert layout(lanes).lane_groups(0, cpu_vmap_lanes=1) == lanes
    assert layout(lanes, platform="gpu").lane_groups(0, cpu_vmap_lanes=1) == 1
    assert layout(lanes).lane_groups(lanes, cpu_vmap_lanes=1) == 1  # an explicit run.vmap_lanes wins
    for name, one_at_a_time in (("resnet18", True), ("t5", True), ("mlp", False), ("crelu_mlp", False)):
        got = layout(lanes).lane_groups(0, models.get(name).cpu_vmap_lanes)
        assert (got == lanes) == (one_at_a_time or lanes == 1), name


def test_lane_groups_per_device_and_on_accelerators():
    assert layout(32, devices=2).lane_groups(0) == 8  # counted per device: 32 lanes on each of 2
    assert layout(32, platform="gpu").lane_groups(0) == 1  # one wide vmap on an accelerator
    assert layout(32, platform="gpu").lane_groups(4) == 8  # unless asked for


@pytest.mark.parametrize("lanes, available, used", [
    (1, 2, 1),  # one lane: the other device would only train a padding lane
    (2, 2, 2), (3, 2, 2), (6, 2, 2), (6, 4, 3), (5, 4, 3), (7, 4, 4), (4, 16, 4), (17, 16, 9), (100, 8, 8),
    (9, 1, 1),
])
def test_a_chunk_uses_the_fewest_devices_that_give_each_the_fewest_lanes(lanes, available, used):
    assert sharding.devices_for(lanes, available) == used
    assert -(-lanes // used) == -(-lanes // available)  # no device has more lanes than with all of them


def test_layouts_use_the_devices_their_lanes_need():
    import jax

    for lanes in (1, 2, 3, 5):
        layout = sharding.LaneLayout.create(lanes)
        assert layout.mesh.size == sharding.devices_for(lanes, jax.device_count())
        assert layout.chunk_size % layout.mesh.size == 0 and layout.padded_lanes - lanes < layout.mesh.size
    assert sharding.LaneLayout.create(1).padded_lanes == 1


def test_diagnostics_on_several_cpu_devices_are_refused_before_compute():
    with pytest.raises(ConfigError, match=r"diagnostics.enabled=true on 2 CPU devices: .*diagnostics.enabled=false"):
        sharding.check_cpu_devices(layout(3, devices=2), diagnostics_enabled=True)
    sharding.check_cpu_devices(layout(3, devices=2), diagnostics_enabled=False)
    sharding.check_cpu_devices(layout(6, devices=1), diagnostics_enabled=True)
    sharding.check_cpu_devices(layout(3, devices=2, platform="gpu"), diagnostics_enabled=True)
    sharding.check_cpu_devices(layout(3, devices=2, processes=2), diagnostics_enabled=True)  # one CPU device each
    with pytest.raises(ConfigError, match="on 2 CPU devices"):  # 2 of this process's own among 4
        sharding.check_cpu_devices(layout(3, devices=4, processes=2), diagnostics_enabled=True)


def test_vmap_lanes_must_not_be_negative():
    with pytest.raises(ConfigError, match="run.vmap_lanes=-1"):
        validate(apply_overrides(ExperimentConfig(), ["run.vmap_lanes=-1"]))


LOCALHOST = {"GRADUAL_JAX_COORDINATOR": "localhost:12355", "GRADUAL_JAX_NUM_PROCESSES": "2",
             "GRADUAL_JAX_PROCESS_ID": "1"}


def test_the_cluster_variables_become_initialize_arguments():
    assert sharding.cluster_arguments(LOCALHOST) == {"coordinator_address": "localhost:12355", "num_processes": 2,
                                                     "process_id": 1}
    assert sharding.cluster_arguments({}) == {}  # none set: jax reads the cluster's own (SLURM, ...)


@pytest.mark.parametrize("change, message", [
    ({"GRADUAL_JAX_PROCESS_ID": ""}, "GRADUAL_JAX_PROCESS_ID is not set: GRADUAL_JAX_COORDINATOR, "),
    ({"GRADUAL_JAX_COORDINATOR": "localhost"}, "GRADUAL_JAX_COORDINATOR=localhost: expected HOST:PORT"),
    ({"GRADUAL_JAX_COORDINATOR": "localhost:99999"}, "GRADUAL_JAX_COORDINATOR=localhost:99999: expected HOST:PORT"),
    ({"GRADUAL_JAX_NUM_PROCESSES": "two"}, "GRADUAL_JAX_NUM_PROCESSES=two: expected a whole number"),
    ({"GRADUAL_JAX_NUM_PROCESSES": "0"}, "GRADUAL_JAX_NUM_PROCESSES=0: expected at least 1"),
    ({"GRADUAL_JAX_PROCESS_ID": "2"}, r"GRADUAL_JAX_PROCESS_ID=2: expected 0 to 1 \(GRADUAL_JAX_NUM_PROCESSES=2\)"),
    ({"GRADUAL_JAX_PROCESS_ID": "-1"}, "GRADUAL_JAX_PROCESS_ID=-1: expected 0 to 1"),
])
def test_bad_cluster_variables_are_named_in_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        sharding.cluster_arguments({**LOCALHOST, **change})
    assert "\n" not in str(err.value)


def test_cluster_variables_without_a_distributed_run_are_refused(monkeypatch):
    monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **_: pytest.fail("must not initialize"))
    with pytest.raises(ConfigError, match="GRADUAL_JAX_COORDINATOR is set but the run is not distributed"):
        sharding.maybe_initialize_distributed(False, LOCALHOST)
    with pytest.raises(ConfigError, match="GRADUAL_JAX_DISTRIBUTED=yes: expected 1"):
        sharding.maybe_initialize_distributed(False, {"GRADUAL_JAX_DISTRIBUTED": "yes"})
    sharding.maybe_initialize_distributed(False, {"GRADUAL_JAX_DISTRIBUTED": "0"})  # a one-process run: nothing


def test_a_distributed_run_passes_the_variables_or_explains_what_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(sharding.jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(sharding.jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
    sharding.maybe_initialize_distributed(False, {**LOCALHOST, "GRADUAL_JAX_DISTRIBUTED": "1"})
    assert calls == [sharding.cluster_arguments(LOCALHOST)]

    def no_cluster(**kwargs):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(sharding.jax.distributed, "initialize", no_cluster)
    with pytest.raises(ConfigError, match="--distributed: no cluster environment found .*GRADUAL_JAX_COORDINATOR"):
        sharding.maybe_initialize_distributed(True, {})


def test_one_process_agrees_with_itself():
    assert sharding.processes_where(True) == [0] and sharding.processes_where(False) == []
    written = []
    sharding.on_main_process(lambda: written.append(1), "write")
    assert written == [1]

    def disk_full():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # process 0's own error, unchanged
        sharding.on_main_process(disk_full, "write")
