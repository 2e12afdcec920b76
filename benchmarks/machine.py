"""What the whole machine is doing, for benchmarks that report other processes' share of the CPU."""

from __future__ import annotations

import os


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all processes; Linux /proc/stat, NaN elsewhere)."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    except (OSError, ValueError):
        return float("nan")
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
