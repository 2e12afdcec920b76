"""How the MNIST MLP sweep's cost grows with its lanes: lane-steps/s and memory for R = 1, 2, 4, …
lanes in one program, and the same sweeps cut into chunks (``--lanes-per-chunk``).

    python -m benchmarks.lane_scaling --json results/benchmarks/lane_scaling-cpu.json
    python -m benchmarks.plots results/benchmarks/lane_scaling-cpu.json      # -> lane_scaling-cpu.png

The program is ``throughput.py``'s (LayerNorm MLP 784-256×4-10, Adam, batch 64, 5,120
MNIST-shaped examples, 160-step tasks, lanes alternating abrupt / output_interp), lane groups as
the command makes them (``run.vmap_lanes`` 0). Every cell runs in a fresh process (its own peak
RSS): compile, one untimed warm-up task, then ``--tasks`` timed tasks, best of ``--repeats``.

* **one program**: all R lanes in one compiled program, R doubling while the next doubling is
  predicted to fit ``--memory-budget-gb`` (the program's bytes grow about linearly in R, so the
  prediction is twice the last measured; default budget: 90% of a device's memory on an
  accelerator, half the machine's RAM on a CPU) and R ≤ ``--max-lanes``;
* **chunked**: R lanes in chunks of ``--lanes-per-chunk`` lanes sharing one executable, as
  ``gradual-jax run --lanes-per-chunk N`` trains them (gradual_jax/runner/train.py: each task runs the
  chunks one after another; between tasks the idle chunks' states wait in host memory), for every
  R above the chunk size up to ``--max-lanes``.

Memory per cell: the compiled program's bytes (``compiled.memory_analysis()``: arguments +
outputs + temporaries, what a device must hold; the number ``gradual-jax run`` prints and checks
against the device), the lanes' state held in host memory between tasks (chunked), and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks import common

MAX_LANES = 128
LANES_PER_CHUNK = 16


def default_budget_bytes() -> int:
    """90% of one device's memory where the backend reports it, else half the machine's RAM."""
    from gradual_jax.runner import sharding

    limit = sharding.device_memory_limit()
    if limit:
        return int(0.9 * limit)
    return int(0.5 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def lane_counts(max_lanes: int) -> list[int]:
    """1, 2, 4, … up to ``max_lanes`` (and ``max_lanes`` itself if it is not a power of two)."""
    out, r = [], 1
    while r <= max_lanes:
        out.append(r)
        r *= 2
    return out if out[-1] == max_lanes else out + [max_lanes]


def tree_bytes(tree) -> int:
    import jax

    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def measure(num_lanes: int, lanes_per_chunk: int, tasks: int, repeats: int, num_train: int, hidden) -> dict:
    """One cell, in this process: the sweep of ``num_lanes`` lanes, chunked as ``gradual-jax run``
    chunks it (``lanes_per_chunk`` 0: one program)."""
    import jax
    import jax.numpy as jnp

    from benchmarks import throughput
    from gradual_jax.core import engine
    from gradual_jax.runner import sharding
    from gradual_jax.runner.sweep import to_hparams

    program, data = throughput.make_program(num_train, hidden), throughput.make_data(num_train)
    layout = sharding.LaneLayout.create(num_lanes, lanes_per_chunk)
    hparams = [layout.to_devices(h) for h in layout.split(to_hparams(throughput.make_lanes(num_lanes)))]
    data = layout.replicate(data)
    init = jax.jit(jax.vmap(lambda hp: engine.init_lane(program, hp)), out_shardings=layout.lane_sharding)
    states = [init(h) for h in hparams]
    offload = layout.num_chunks > 1  # as train.py: idle chunks wait in host memory
    if offload:
        states = [jax.device_get(s) for s in states]
    start = time.perf_counter()
    groups = layout.lane_groups(0)
    example = layout.to_devices(states[0]) if offload else states[0]
    run_task = engine.make_task_fn(program, groups, layout.mesh).lower(
        hparams[0], example, data, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - start
    box = {"task": 0}

    def one_task():
        for c in range(layout.num_chunks):
            state = layout.to_devices(states[c]) if offload else states[c]
            state, m = run_task(hparams[c], state, data, jnp.int32(box["task"]))
            states[c] = jax.device_get(state) if offload else state
            sharding.to_host(m)
        box["task"] += 1

    one_task()  # warm-up
    timing = common.best_time(lambda: [one_task() for _ in range(tasks)], repeats=repeats, warmup=0)
    lane_steps = num_lanes * program.steps_per_task * tasks
    state_bytes = tree_bytes(states[0]) / layout.chunk_size
    return {"lanes": num_lanes, "lanes_per_chunk": lanes_per_chunk, "chunks": layout.num_chunks,
            "chunk_size": layout.chunk_size, "lane_groups": groups, "compile_s": compile_s,
            "seconds": timing["seconds"], "others_cpu": timing["others_cpu"],
            "lane_steps_per_s": lane_steps / timing["seconds"],
            "all_lane_steps_per_s": [lane_steps / t for t in timing["all_seconds"]],
            "program_mb": (sharding.program_bytes(run_task) or 0) / 2 ** 20,
            "state_mb_per_lane": state_bytes / 2 ** 20,
            "host_state_mb": (layout.padded_lanes * state_bytes if offload else 0) / 2 ** 20,
            "peak_rss_mb": common.peak_rss_mb()}


def run_cell(num_lanes: int, lanes_per_chunk: int, args) -> dict:
    cmd = common.module_cmd("lane_scaling", "--worker", num_lanes, "--lanes-per-chunk", lanes_per_chunk,
                            "--tasks", args.tasks, "--repeats", args.repeats, "--num-train", args.num_train,
                            "--hidden", args.hidden)
    return common.measured(lambda: common.run_worker(cmd))


def sweep(args, budget: int, echo=print) -> dict:
    """Both series: one program while the next doubling fits the budget; chunked above the chunk size."""
    one_program, chunked, stop = [], [], None
    for r in lane_counts(args.max_lanes):
        if stop is None:
            row = run_cell(r, 0, args)
            one_program.append(row)
            echo(f"R = {r}, one program: {row['lane_steps_per_s']:,.0f} lane-steps/s, program "
                 f"{row['program_mb']:,.1f} MiB, peak RSS {row['peak_rss_mb']:,.0f} MB", flush=True)
            if 2 * row["program_mb"] * 2 ** 20 > budget:
                stop = {"after_lanes": r, "predicted_next_mb": 2 * row["program_mb"],
                        "reason": "twice this program's bytes would exceed the memory budget"}
                echo(f"one program stops at R = {r}: {stop['reason']}")
        if r > args.lanes_per_chunk:
            row = run_cell(r, args.lanes_per_chunk, args)
            chunked.append(row)
            echo(f"R = {r}, chunks of {args.lanes_per_chunk}: {row['lane_steps_per_s']:,.0f} lane-steps/s, program "
                 f"{row['program_mb']:,.1f} MiB + host state {row['host_state_mb']:,.1f} MiB, "
                 f"peak RSS {row['peak_rss_mb']:,.0f} MB", flush=True)
    return {"one_program": one_program, "chunked": chunked, "one_program_stopped": stop}


def table(result: dict) -> str:
    chunked = {row["lanes"]: row for row in result["chunked"]}
    lines = [f"| lanes | one program | program MiB | peak RSS | chunks of {result['lanes_per_chunk']} | "
             "chunk program MiB + host state | peak RSS | chunked / one | others' CPU |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    one = {row["lanes"]: row for row in result["one_program"]}
    for r in sorted(set(one) | set(chunked)):
        a, b = one.get(r), chunked.get(r)
        left = (f"{a['lane_steps_per_s']:,.0f} | {a['program_mb']:,.1f} | {a['peak_rss_mb']:,.0f} MB" if a
                else "– | – | –")
        right = (f"{b['lane_steps_per_s']:,.0f} | {b['program_mb']:,.1f} + {b['host_state_mb']:,.1f} | "
                 f"{b['peak_rss_mb']:,.0f} MB" if b else "– | – | –")
        ratio = f"{b['lane_steps_per_s'] / a['lane_steps_per_s']:.2f}×" if a and b else "–"
        others = max(v["others_cpu"] for v in (a, b) if v)
        lines.append(f"| {r} | {left} | {right} | {ratio} | {100 * others:.0f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-lanes", type=int, default=MAX_LANES)
    parser.add_argument("--memory-budget-gb", type=float,
                        help="one program stops where the next doubling would exceed this (default: 90%% of a "
                             "device's memory, or half the RAM on a CPU)")
    parser.add_argument("--lanes-per-chunk", type=int, default=LANES_PER_CHUNK)
    parser.add_argument("--tasks", type=int, default=1, help="timed tasks (160 steps each) per cell")
    parser.add_argument("--repeats", type=int, default=1, help="timed measurements per cell; the fastest is kept")
    parser.add_argument("--num-train", type=int, default=5120, help="examples (smaller only for smoke tests)")
    parser.add_argument("--hidden", default="256,256,256,256", help="hidden widths (smaller only for smoke tests)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.lanes_per_chunk, args.tasks, args.repeats, args.num_train,
                                 tuple(common.parse_ints(args.hidden)))))
        return None
    if args.lanes_per_chunk < 1:
        parser.error("--lanes-per-chunk must be >= 1")
    budget = int(args.memory_budget_gb * 2 ** 30) if args.memory_budget_gb else default_budget_bytes()
    print(f"machine: {common.cpu_model()}, {common.cores()} cores; XLA_FLAGS={common.xla_flags()!r}; "
          f"memory budget {budget / 2 ** 30:,.2f} GiB")
    start = time.perf_counter()
    result = {"protocol": {"model": f"LayerNorm MLP 784-{args.hidden.replace(',', '-')}-10", "optimizer": "adam 1e-3",
                           "batch": 64, "num_train": args.num_train, "epochs_per_task": 1, "transition_ratio": 1},
              "tasks": args.tasks, "repeats": args.repeats, "lanes_per_chunk": args.lanes_per_chunk,
              "max_lanes": args.max_lanes, "memory_budget_bytes": budget,
              "memory": "program_mb: compiled.memory_analysis() of the (chunk's) program; host_state_mb: the lanes' "
                        "states waiting in host memory between chunks; peak_rss_mb: the cell's own process",
              **sweep(args, budget)}
    result["total_seconds"] = time.perf_counter() - start
    print()
    print(table(result))
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "lane_scaling", result)
    return result


if __name__ == "__main__":
    main()
