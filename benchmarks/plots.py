"""Figures of benchmark results, drawn from their JSON files alone (nothing is re-measured).

    python -m benchmarks.plots results/benchmarks/lane_scaling-cpu.json [more.json ...] [--out-dir DIR]

Each JSON file becomes ``DIR/<its name>.png`` (default: next to the JSON). What is drawn follows
the file's ``benchmark`` field:

* ``lane_scaling``: lane-steps/s against lanes, and memory against lanes (the program's bytes and
  the process's peak RSS), for one program and for the chunked sweep, the memory budget marked;
* ``compare``: lane-steps/s of gradual-jax and of every PyTorch arrangement at each lane count.

Figures are :class:`matplotlib.figure.Figure` objects of their own, never pyplot's, so drawing
them needs no display and leaves the process's backend alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.figure

SERIES = {"one_program": "one program", "chunked": "chunked"}


def plot_lane_scaling(result: dict) -> matplotlib.figure.Figure:
    """Two panels: throughput and memory against the number of lanes (log2 axis)."""
    fig = matplotlib.figure.Figure(figsize=(10, 4), layout="constrained")
    speed, memory = fig.subplots(1, 2)
    for key, label in SERIES.items():
        rows = result.get(key) or []
        if not rows:
            continue
        if key == "chunked":
            label = f"chunks of {result['lanes_per_chunk']}"
        lanes = [row["lanes"] for row in rows]
        speed.plot(lanes, [row["lane_steps_per_s"] for row in rows], "o-", label=label)
        memory.plot(lanes, [row["program_mb"] + row.get("host_state_mb", 0.0) for row in rows], "o-",
                    label=f"{label}: program + host state")
        memory.plot(lanes, [row["peak_rss_mb"] for row in rows], "s--", alpha=0.7, label=f"{label}: peak RSS")
    budget = result.get("memory_budget_bytes")
    if budget:
        memory.axhline(budget / 2 ** 20, color="grey", lw=1, ls=":", label="memory budget")
    for ax in (speed, memory):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lanes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    memory.set_yscale("log")
    speed.set_ylabel("lane-steps / s")
    memory.set_ylabel("MiB")
    speed.set_ylim(bottom=0)
    fig.suptitle(f"{result.get('protocol', {}).get('model', 'MLP')}: cost against lanes", fontsize=10)
    return fig


def plot_compare(result: dict) -> matplotlib.figure.Figure:
    """Grouped bars: lane-steps/s of every arrangement at each lane count (failed ones left out)."""
    from benchmarks.compare import LABELS, TORCH

    keys = ["jax", *[k for k in TORCH if any(k in row for row in result["rows"])]]
    fig = matplotlib.figure.Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        xs, ys = [], []
        for j, row in enumerate(result["rows"]):
            v = row.get(key, {})
            if "lane_steps_per_s" in v:
                xs.append(j + (i - (len(keys) - 1) / 2) * width)
                ys.append(v["lane_steps_per_s"])
        ax.bar(xs, ys, width, label=LABELS[key])
    ax.set_xticks(range(len(result["rows"])), [str(row["lanes"]) for row in result["rows"]])
    ax.set_xlabel("lanes")
    ax.set_ylabel("lane-steps / s")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("MNIST MLP sweep: gradual-jax and the PyTorch arrangements", fontsize=10)
    return fig


PLOTTERS = {"lane_scaling": plot_lane_scaling, "compare": plot_compare}


def kind_of(result: dict) -> str | None:
    """The result's ``benchmark`` field; files written before it existed are recognised by shape."""
    if "benchmark" in result:
        return result["benchmark"]
    if result.get("rows") and "torch_parallel" in result["rows"][0]:
        return "compare"
    return None


def plot_file(path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Draw one JSON result to ``out_dir/<name>.png``; returns the PNG's path."""
    path = Path(path)
    result = json.loads(path.read_text())
    kind = kind_of(result)
    if kind not in PLOTTERS:
        raise SystemExit(f"{path}: no figure for benchmark {kind!r} (drawn: {', '.join(PLOTTERS)})")
    fig = PLOTTERS[kind](result)
    out = Path(out_dir or path.parent) / f"{path.stem}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="benchmark result files")
    parser.add_argument("--out-dir", help="where the PNGs go (default: next to each JSON)")
    args = parser.parse_args(argv)
    outs = [plot_file(p, args.out_dir) for p in args.json]
    for out in outs:
        print(out)
    return outs


if __name__ == "__main__":
    main()
