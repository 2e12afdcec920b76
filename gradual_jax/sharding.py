"""Spreading a sweep's lanes over devices (and hosts), and cutting big sweeps into chunks.

Lanes are independent, so the lane axis is split over a 1-D device mesh with
``NamedSharding``: every device trains its own lanes and no collective is needed
inside the step. The data set is replicated. The lane count is padded up to a multiple
of the device count (padding lanes repeat the first lane and are dropped from results).

A sweep larger than the device memory runs in chunks of ``lanes_per_chunk`` lanes that
share one compiled executable; between tasks the idle chunks' states wait in host memory.

Across hosts, ``jax.distributed.initialize()`` (opt-in) joins the processes into one
runtime; the mesh then covers every device of every host, Orbax writes each process's
shards, and process 0 writes the results.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LANES = "lanes"
DISTRIBUTED_ENV = "GRADUAL_JAX_DISTRIBUTED"


def maybe_initialize_distributed(enabled: bool) -> None:
    """Join a multi-host run when asked (flag or ``GRADUAL_JAX_DISTRIBUTED=1``).

    ``jax.distributed.initialize()`` reads the coordinator address, process count and
    id from the cluster environment (SLURM, Cloud TPU, ...) or its own env variables.
    """
    if (enabled or os.environ.get(DISTRIBUTED_ENV) == "1") and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def is_main_process() -> bool:
    return jax.process_index() == 0


# Lanes one vectorised step trains at once on a CPU (run.vmap_lanes = 0). Measured on a 2-core
# EPYC with the paper's MNIST MLP (benchmarks/throughput.py --vmap-lanes 1024,0,...): groups of 4
# ran 2-10% more lane-steps/s than one vmap of 32 lanes (4 of 4 pairs), 0-16% at 64, within noise
# at 8-16; the program holds about one more copy of the state (temporaries 177 vs 98 MiB at 32).
CPU_VMAP_LANES = 4


@dataclasses.dataclass(frozen=True)
class LaneLayout:
    """How ``num_lanes`` real lanes map onto chunks of ``chunk_size`` lanes each."""

    num_lanes: int
    chunk_size: int  # a multiple of the device count
    num_chunks: int
    mesh: Mesh

    @classmethod
    def create(cls, num_lanes: int, lanes_per_chunk: int = 0) -> "LaneLayout":
        devices = np.asarray(jax.devices())
        wanted = lanes_per_chunk if lanes_per_chunk > 0 else num_lanes
        chunk = -(-min(wanted, num_lanes) // devices.size) * devices.size
        return cls(num_lanes=num_lanes, chunk_size=chunk, num_chunks=-(-num_lanes // chunk),
                   mesh=Mesh(devices, (LANES,)))

    @property
    def padded_lanes(self) -> int:
        return self.chunk_size * self.num_chunks

    @property
    def lane_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(LANES))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def split(self, tree: Any) -> list[Any]:
        """Pad a [lanes, ...] host pytree to the padded lane count and cut it into chunks."""
        pad = self.padded_lanes - self.num_lanes

        def padded(x):
            x = np.asarray(x)
            return np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x

        full = jax.tree.map(padded, tree)
        return [jax.tree.map(lambda x, c=c: x[c * self.chunk_size:(c + 1) * self.chunk_size], full)
                for c in range(self.num_chunks)]

    def join(self, chunks: list[Any]) -> Any:
        """Inverse of :meth:`split` on host arrays: concatenate chunks, drop the padding lanes."""
        return jax.tree.map(lambda *xs: np.concatenate(xs)[:self.num_lanes], *chunks)

    def lane_groups(self, vmap_lanes: int) -> int:
        """How many groups of at most ``vmap_lanes`` lanes each device's lanes are trained in.

        ``vmap_lanes`` 0 means automatic: :data:`CPU_VMAP_LANES` on a CPU, all lanes on an
        accelerator (where wide vmaps are what makes it fast). The groups split each device's
        lanes evenly (no padding lanes are added), so the group size may come out smaller than
        asked; automatic grouping is skipped where it would leave single-lane groups.
        """
        local = self.chunk_size // self.mesh.size
        automatic = vmap_lanes == 0
        if automatic:
            vmap_lanes = CPU_VMAP_LANES if self.mesh.devices.flat[0].platform == "cpu" else local
        wanted = -(-local // min(vmap_lanes, local))
        groups = next(g for g in range(wanted, local + 1) if local % g == 0)
        if automatic and groups == local and local > 1:
            return 1
        return groups

    def to_devices(self, tree: Any) -> Any:
        return jax.device_put(tree, self.lane_sharding)

    def replicate(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)


def to_host(tree: Any) -> Any:
    """Bring a lane-sharded pytree to host numpy on this process (gathering across hosts)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def device_memory_limit() -> int | None:
    """Bytes of memory of one device, where the backend reports it (GPU/TPU; not CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return None if not stats else stats.get("bytes_limit")


def program_bytes(compiled: Any) -> int | None:
    """Device bytes a compiled executable needs (arguments, outputs and temporaries)."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
               + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
