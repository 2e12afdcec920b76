"""What every benchmark shares: the command's XLA flags, the machine and its load, timing, the
float32 matmul reference, worker subprocesses and the JSON record.

Nothing here imports JAX or PyTorch at module level: PyTorch workers import this module too, and
XLA reads ``XLA_FLAGS`` only once, when JAX starts, so :func:`apply_cli_xla_flags` must be able to
run before anything imports JAX (``benchmarks/__init__.py`` calls it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- XLA flags
def apply_cli_xla_flags() -> str | None:
    """Set ``XLA_FLAGS`` as the ``gradual-jax`` command does (gradual_jax/runner/xla_flags.py), so a
    benchmark measures what the command runs. A no-op once JAX is imported (the test suite sets
    the same flags in its conftest); ``GRADUAL_JAX_KEEP_XLA_FLAGS=1`` measures JAX's defaults."""
    from gradual_jax.runner.xla_flags import set_default_xla_flags

    return set_default_xla_flags()


def xla_flags() -> str:
    """The ``XLA_FLAGS`` in effect for this process (recorded in every JSON)."""
    return os.environ.get("XLA_FLAGS", "")


# --------------------------------------------------------------------------- the machine
def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The host CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes; Linux /proc/stat, NaN elsewhere)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished (waited-for) children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def others_cpu_share(busy_before: float, own_before: float, wall: float) -> float:
    """Share of the machine's CPU that processes other than this one and its children used over
    ``wall`` seconds since the two readings (0 on a quiet machine; above 0.05 a measurement is
    disturbed by someone else's work)."""
    others = (busy_cpu_seconds() - busy_before) - (own_cpu_seconds() - own_before)
    return max(0.0, others) / (wall * cores()) if wall > 0 else float("nan")


def measured(fn: Callable[[], dict]) -> dict:
    """``fn()``'s dict with ``others_cpu`` added (see :func:`others_cpu_share`)."""
    wall, busy, own = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    out = fn()
    out["others_cpu"] = others_cpu_share(busy, own, time.perf_counter() - wall)
    return out


# --------------------------------------------------------------------------- timing
def best_time(run: Callable[[], Any], *, repeats: int = 1, warmup: int = 1) -> dict:
    """Seconds of ``run()`` (which must block until its work is done: ``jax.block_until_ready``),
    after ``warmup`` untimed calls, best of ``repeats`` timed calls. Each timed call also records
    the share of the CPU other processes used meanwhile; the best call's share is kept with it."""
    for _ in range(warmup):
        run()
    timings = []
    for _ in range(max(1, repeats)):
        busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
        run()
        wall = time.perf_counter() - start
        timings.append((wall, others_cpu_share(busy, own, wall)))
    best, others = min(timings)
    return {"seconds": best, "others_cpu": others, "all_seconds": [t for t, _ in timings]}


def calibrated_steps(one_step_s: float, seconds: float, min_steps: int, max_steps: int) -> int:
    """How many steps make a timed measurement of about ``seconds``, within [min_steps, max_steps]."""
    return int(min(max_steps, max(min_steps, math.ceil(seconds / max(one_step_s, 1e-6)))))


def matmul_flops_per_second(n: int | None = None, seconds: float = 1.0) -> dict:
    """A float32 n×n @ n×n timed by XLA, best of 3 batches of calls: the reference rate every
    benchmark reports its FLOP/s against, measured in the same run. n defaults to 2048 on a CPU
    and 8192 elsewhere (where JAX's default float32 precision may use TF32, in the reference and
    in the models alike)."""
    import jax
    import jax.numpy as jnp

    if n is None:
        n = 2048 if jax.devices()[0].platform == "cpu" else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    start = time.perf_counter()
    f(a, b).block_until_ready()
    calls = max(1, min(1000, int(seconds / 3 / max(time.perf_counter() - start, 1e-6))))

    def batch():
        for _ in range(calls):
            out = f(a, b)
        out.block_until_ready()

    timing = best_time(batch, repeats=3, warmup=0)
    return {"n": n, "dtype": "float32", "flops_per_s": 2.0 * n ** 3 * calls / timing["seconds"],
            "others_cpu": timing["others_cpu"]}


# --------------------------------------------------------------------------- worker processes
def module_cmd(module: str, *args: Any) -> list[str]:
    """``python -m benchmarks.<module> args...``: a worker in a fresh process (its own peak RSS,
    its own XLA flags)."""
    return [sys.executable, "-m", f"benchmarks.{module}", *(str(a) for a in args)]


def last_json_line(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON in the worker's output:\n{stdout[-2000:]}")


def run_worker(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run a worker from the repository root and return the JSON object it printed last."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return last_json_line(proc.stdout)


def thread_env(threads: int) -> dict:
    """The environment of a PyTorch worker limited to ``threads`` OpenMP/MKL threads."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def parse_ints(text: str) -> list[int]:
    """``"1,8,32"`` -> ``[1, 8, 32]``."""
    return [int(v) for v in str(text).split(",") if v.strip()]


# --------------------------------------------------------------------------- the JSON record
def provenance() -> dict:
    """The gradual_jax being measured: its path, and the git commit (and whether the package or
    the benchmarks have uncommitted changes) where it is a checkout."""
    info: dict[str, Any] = {"gradual_jax": str(ROOT)}
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gradual_jax", "benchmarks"],
                               capture_output=True, text=True)
        if commit.returncode == 0:
            info.update(commit=commit.stdout.strip(), modified=bool(dirty.stdout.strip()))
    except OSError:
        pass
    return info


def versions() -> dict:
    """Versions of the libraries this process has imported (never imports one itself)."""
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", "?")
    return out


def environment() -> dict:
    """Machine, device, versions, XLA flags, load and commit: what a number was measured on."""
    env = {"processor": cpu_model(), "cores": cores(), "load_average": load_average(),
           "xla_flags": xla_flags(), "versions": versions(), **provenance()}
    if "jax" in sys.modules:
        import jax

        device = jax.devices()[0]
        env.update(device=f"{device.platform} {device.device_kind}", device_count=jax.device_count())
    return env


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: non-finite floats are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def invocation() -> str:
    """This process's command line as a user types it: ``python -m benchmarks.x ...``."""
    script = Path(sys.argv[0]).resolve()
    if script.suffix == ".py" and ROOT in script.parents:
        module = ".".join(script.relative_to(ROOT).with_suffix("").parts)
        return " ".join(["python", "-m", module, *sys.argv[1:]])
    return " ".join(sys.argv)


def record(benchmark: str, result: dict, command: str | None = None) -> dict:
    """``result`` with the benchmark's name, the command line and the environment added."""
    return {"benchmark": benchmark, "command": command or invocation(), "environment": environment(), **result}


def write_json(path: str | Path, benchmark: str, result: dict, command: str | None = None) -> dict:
    """Write :func:`record` as strict JSON (NaN -> null) to ``path``; return what was written."""
    out = _finite_or_none(record(benchmark, result, command))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, allow_nan=False) + "\n")
    return out


# --------------------------------------------------------------------------- runs of the command
def command_run(experiment: str, preset: str, overrides: list[str]) -> dict:
    """One ``gradual-jax run`` of ``experiment``'s ``preset`` with ``overrides``: :func:`config_run`'s
    record."""
    from gradual_jax import experiments
    from gradual_jax.config import apply_overrides

    return config_run(apply_overrides(experiments.get_config(experiment, preset), overrides))[0]


def config_run(cfg) -> tuple[dict, Any]:
    """One run of ``cfg`` through the runner's own code into a temporary folder: what its
    ``config.json`` records (lanes, programs, compile and training seconds, lane-steps/s; compile
    apart) with the share of the CPU other processes used meanwhile, and its results table."""
    import tempfile

    import pandas as pd

    from gradual_jax.runner import train

    with tempfile.TemporaryDirectory() as out:
        def run() -> dict:
            train.run(cfg, out, progress=False, echo=lambda *_: None)
            meta = json.loads((Path(out) / "config.json").read_text())
            return {"lanes": len(meta["lanes"]), "programs": len(meta["program_lanes"]),
                    "compile_seconds": meta["compile_seconds"], "train_seconds": meta["train_seconds"],
                    "lane_steps_per_second": meta["lane_steps_per_second"]}

        return measured(run), pd.read_csv(Path(out) / "results.csv")
