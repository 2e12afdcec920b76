"""Spreading a sweep's lanes over devices (and hosts), and cutting big sweeps into chunks.

Lanes are independent, so the lane axis is split over a 1-D device mesh with
``NamedSharding``: every device trains its own lanes in a program of its own
(``engine.make_task_fn``) and no collective is needed inside a task. The data set is
replicated. A chunk uses as few devices as give each the fewest lanes (:func:`devices_for`),
its lane count padded up to a multiple of them (padding lanes repeat the first lane and are
dropped from results). On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` makes
N devices, and a sweep's lanes then run side by side on the cores.

A sweep larger than the device memory runs in chunks of ``lanes_per_chunk`` lanes that
share one compiled executable; between tasks the idle chunks' states wait in host memory.

Across hosts, ``jax.distributed.initialize()`` (opt-in) joins the processes into one
runtime; the mesh then covers every device of every host, Orbax writes each process's
shards, and process 0 writes the results. Every process computes the same host values (lanes,
hyperparameters, data) from the config, so global arrays are placed from those host copies;
metrics come back to every process with an all-gather. Outside the compiled step the processes
meet only where they must agree (a checkpoint to restore, a write that failed on process 0), so
that none waits in a collective for one that has stopped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradual_jax.config import ConfigError

LANES = "lanes"
DISTRIBUTED_ENV = "GRADUAL_JAX_DISTRIBUTED"
# Where the processes of a run find each other when no cluster manager says (one machine, or
# hosts started by hand). jax itself reads only the coordinator (JAX_COORDINATOR_ADDRESS) and
# otherwise a cluster's variables (SLURM, Open MPI, Kubernetes, Cloud TPU).
COORDINATOR_ENV = "GRADUAL_JAX_COORDINATOR"
NUM_PROCESSES_ENV = "GRADUAL_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "GRADUAL_JAX_PROCESS_ID"
CLUSTER_ENV = (COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV)


def distributed_requested(enabled: bool, environ: Mapping[str, str]) -> bool:
    """``--distributed`` / ``run.distributed``, or ``GRADUAL_JAX_DISTRIBUTED=1``."""
    flag = environ.get(DISTRIBUTED_ENV, "")
    if flag not in ("", "0", "1"):
        raise ConfigError(f"{DISTRIBUTED_ENV}={flag}: expected 1 (join a multi-host run) or 0")
    return enabled or flag == "1"


def cluster_arguments(environ: Mapping[str, str]) -> dict[str, Any]:
    """``jax.distributed.initialize`` arguments from ``GRADUAL_JAX_COORDINATOR``,
    ``GRADUAL_JAX_NUM_PROCESSES`` and ``GRADUAL_JAX_PROCESS_ID``; none of them set gives ``{}``,
    which leaves jax to read the cluster's own environment. A half-given set is refused, since
    jax would silently fill the rest from elsewhere (or wait for processes that never come)."""
    given = {name: environ[name] for name in CLUSTER_ENV if environ.get(name)}
    if not given:
        return {}
    missing = [name for name in CLUSTER_ENV if name not in given]
    if missing:
        raise ConfigError(f"{missing[0]} is not set: {', '.join(CLUSTER_ENV)} go together (set all three, or "
                          "none to use the cluster's own environment, e.g. SLURM)")
    coordinator = given[COORDINATOR_ENV]
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{COORDINATOR_ENV}={coordinator}: expected HOST:PORT of process 0, e.g. localhost:12355")
    count = _whole_number(NUM_PROCESSES_ENV, given[NUM_PROCESSES_ENV])
    if count < 1:
        raise ConfigError(f"{NUM_PROCESSES_ENV}={count}: expected at least 1")
    index = _whole_number(PROCESS_ID_ENV, given[PROCESS_ID_ENV])
    if not 0 <= index < count:
        raise ConfigError(f"{PROCESS_ID_ENV}={index}: expected 0 to {count - 1} ({NUM_PROCESSES_ENV}={count})")
    return {"coordinator_address": coordinator, "num_processes": count, "process_id": index}


def _whole_number(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text}: expected a whole number") from None


def maybe_initialize_distributed(enabled: bool, environ: Mapping[str, str] = os.environ) -> None:
    """Join a multi-host run when asked (flag or ``GRADUAL_JAX_DISTRIBUTED=1``).

    The processes find each other through ``GRADUAL_JAX_COORDINATOR``/``_NUM_PROCESSES``/
    ``_PROCESS_ID`` when set, otherwise through what ``jax.distributed.initialize()`` detects
    (SLURM, Open MPI, Kubernetes, Cloud TPU). Those variables without a distributed run are
    refused: each process would train every lane alone, into the same folder.
    """
    arguments = cluster_arguments(environ)
    if not distributed_requested(enabled, environ):
        if arguments:
            given = next(name for name in CLUSTER_ENV if environ.get(name))
            raise ConfigError(f"{given} is set but the run is not distributed: pass --distributed (or set "
                              f"{DISTRIBUTED_ENV}=1), or unset it")
        return
    if jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(**arguments)
    except ValueError as err:  # nothing said where process 0 is, or how many processes there are
        if arguments:
            raise
        raise ConfigError(f"--distributed: no cluster environment found ({err}); on machines without one set "
                          f"{', '.join(CLUSTER_ENV)}") from None


def is_main_process() -> bool:
    return jax.process_index() == 0


def processes_where(flag: bool) -> list[int]:
    """The indices of the processes on which ``flag`` holds (every process calls this together)."""
    if jax.process_count() == 1:
        return [0] if flag else []
    flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
    return [int(i) for i in np.flatnonzero(np.asarray(flags).reshape(-1))]


def barrier(name: str) -> None:
    """Wait until every process has got here (nothing to wait for in a one-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def broadcast_from_main(value: int) -> int:
    """Process 0's ``value``, on every process."""
    if jax.process_count() == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64)))


class OtherProcessError(OSError):
    """Process 0 failed to write the output; the other processes stop with it (exit 4: the same
    command resumes from the last checkpoint, as on process 0)."""


def on_main_process(write: Callable[[], None], what: str) -> None:
    """Run ``write`` on process 0 only. If it raises, every process raises (process 0 its own
    error, the others :class:`OtherProcessError`), so no process trains on into a collective
    that process 0 will never reach."""
    if jax.process_count() == 1:
        write()
        return
    error = None
    if is_main_process():
        try:
            write()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the others have heard
            error = err
    failed = processes_where(error is not None)
    if error is not None:
        raise error
    if failed:
        raise OtherProcessError(f"process 0 could not {what} (see its error)")


# Lanes one vectorised step trains at once on a CPU (run.vmap_lanes = 0) unless the model says
# otherwise (ModelSpec.cpu_vmap_lanes): small groups ran more lane-steps/s than one vmap of all
# lanes for the MNIST MLP, at the cost of about one more copy of the state
# (`python -m benchmarks.throughput --vmap-lanes ...`; docs/guide.md has the numbers).
CPU_VMAP_LANES = 4


def devices_for(lanes: int, available: int) -> int:
    """How many of ``available`` devices a chunk of ``lanes`` lanes is spread over: the fewest that
    give each device as few lanes as all of them would. A device's lanes take the chunk's time, so
    more devices only add padding lanes (1 lane on 2 devices: one padding lane doing the same work
    again; 6 lanes on 4 devices: 3 devices of 2 lanes, not 4 with 2 padding lanes)."""
    per_device = -(-lanes // available)
    return -(-lanes // per_device)


@dataclasses.dataclass(frozen=True)
class LaneLayout:
    """How ``num_lanes`` real lanes map onto chunks of ``chunk_size`` lanes each."""

    num_lanes: int
    chunk_size: int  # a multiple of the devices it uses (mesh.size)
    num_chunks: int
    mesh: Mesh

    @classmethod
    def create(cls, num_lanes: int, lanes_per_chunk: int = 0) -> "LaneLayout":
        devices = np.asarray(jax.devices())
        wanted = min(lanes_per_chunk if lanes_per_chunk > 0 else num_lanes, num_lanes)
        if jax.process_count() == 1:  # across hosts every process needs its share of the mesh
            devices = devices[:devices_for(wanted, devices.size)]
        chunk = -(-wanted // devices.size) * devices.size
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

    def lane_groups(self, vmap_lanes: int, cpu_vmap_lanes: int = CPU_VMAP_LANES) -> int:
        """How many groups of at most ``vmap_lanes`` lanes each device's lanes are trained in.

        ``vmap_lanes`` 0 means automatic: ``cpu_vmap_lanes`` (the model's) on a CPU, all lanes
        on an accelerator (where wide vmaps are what makes it fast). The groups split each
        device's lanes evenly (no padding lanes are added), so the group size may come out
        smaller than asked; automatic groups of several lanes are given up for one vmap where
        the split would leave single-lane groups.
        """
        local = self.chunk_size // self.mesh.size
        automatic = vmap_lanes == 0
        if automatic:
            vmap_lanes = cpu_vmap_lanes if self.mesh.devices.flat[0].platform == "cpu" else local
        wanted = -(-local // min(vmap_lanes, local))
        groups = next(g for g in range(wanted, local + 1) if local % g == 0)
        if automatic and vmap_lanes > 1 and groups == local and local > 1:
            return 1
        return groups

    def to_devices(self, tree: Any) -> Any:
        return to_global(tree, self.lane_sharding)

    def replicate(self, tree: Any) -> Any:
        return to_global(tree, self.replicated)


def check_cpu_devices(layout: LaneLayout, diagnostics_enabled: bool) -> None:
    """Refuse what cannot finish: the readout diagnostics' SVD (LAPACK) on several CPU devices at
    once. In jaxlib 0.10.2 the program then waits forever (seen from the first task, with either
    of XLA:CPU's SVD algorithms); one device per process, or the diagnostics off, run."""
    own = [d for d in layout.mesh.devices.flat if d.process_index == jax.process_index()]
    if diagnostics_enabled and len(own) > 1 and own[0].platform == "cpu":
        raise ConfigError(f"diagnostics.enabled=true on {len(own)} CPU devices: the diagnostics' SVD "
                          "never finishes when CPU devices run it side by side; set diagnostics.enabled=false, or "
                          "use one CPU device (XLA_FLAGS=--xla_force_host_platform_device_count=1)")


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Place a host pytree, the same on every process, with ``sharding``.

    Across processes ``jax.device_put`` builds a global array from a host (numpy) value that
    every process holds, each keeping its own devices' slices; it refuses a value already on
    one device (``jnp`` arrays), so those come back to the host first.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    return jax.device_put(jax.tree.map(np.asarray, tree), sharding)


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
