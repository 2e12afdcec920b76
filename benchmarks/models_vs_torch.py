"""ResNet-18 and T5 training steps in gradual-jax and in PyTorch, side by side: lane-steps/s and
peak memory at 1 and 4 lanes.

    python -m benchmarks.models_vs_torch --json results/benchmarks/models_vs_torch-cpu.json
    python -m benchmarks.models_vs_torch --models resnet18 --resnet-width 1 --lanes 1 --json OUT.json
    python -m benchmarks.models_vs_torch --quick --json /tmp/models_vs_torch.json   # tiny sizes (the test)

Cases (defaults): ResNet-18 at the paper's batch 250 with width multiplier ``--resnet-width``
(0.25: widths 16/32/64/128; ``1`` is the paper's model, a few seconds a step on 2 cores), ImageNet
stem, 32×32×3 inputs, 10 classes; T5 at the paper's dims (d_model 256, 4 heads × 64, d_ff 2048,
1 + 1 layers, 30-token vocabulary, 128 input / 30 target tokens) at batch 64 (the paper's) and 16
(``--t5-batches``). Both sides use AdamW (1e-4, weight decay 0) and random inputs.

Every cell (model × framework × lane count × arrangement) runs in a fresh process of its own, so
its peak RSS is its own: gradual-jax is ``model_steps.measure`` (one ``jit(vmap(step))`` of R
lanes, state donated; the command's XLA flags; from R = 2 also the lanes one at a time,
``lax.map`` over the lanes in one program, each lane's ``--scan`` K steps in its ``lax.scan``
before the next lane's, what ``run.vmap_lanes=1`` runs; and where ``XLA_FLAGS`` gives several
CPU devices, "over the cores": the lanes spread over the devices as a run spreads them,
each device's lanes one at a time in that way), PyTorch is ``torch_steps.py`` (``loop``: the R
models one after another; ``compile``: that loop with each model ``torch.compile``-d, its
compilation in the warm-up; ``vmap``: torch.func over stacked lanes, which at R = 1 is the plain
step, so it runs only from R = 2), all torch threads; ``--torch`` picks the arrangements. Steps are calibrated to about
``--seconds`` a measurement, best of ``--repeats``. "jax / best torch" divides gradual-jax's rate
by the faster PyTorch arrangement, from the faster gradual-jax one. Memory: each process's peak RSS, and for gradual-jax also the
compiled program's own bytes (``compiled.memory_analysis()``: arguments + outputs + temporaries).
FLOPs per lane-step: XLA's cost analysis (JAX), FlopCounterMode (PyTorch, dense, forward +
backward) and the analytic count (6 × forward MACs × batch), against a float32 matmul timed by
XLA in the same run.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks import common, model_sizes

RESNET_BATCH = 250  # the paper's
T5_BATCHES = "64,16"  # the paper's, and the CPU-sized one of model_steps.py


def cases(args) -> list[tuple[str, dict]]:
    """(model, size overrides) of every case the flags ask for."""
    out = []
    for model in args.models.split(","):
        if model == "resnet18":
            out.append(("resnet18", {"resnet_batch": args.resnet_batch}))
        elif model == "t5":
            out += [("t5", {"t5_batch": b}) for b in common.parse_ints(args.t5_batches)]
        else:
            raise SystemExit(f"--models: unknown model {model!r}; choose from resnet18, t5")
    return out


def case_label(model: str, overrides: dict) -> str:
    return f"{model} b{overrides.get('resnet_batch', overrides.get('t5_batch'))}"


def timing_argv(args) -> list[str]:
    return ["--seconds", str(args.seconds), "--min-steps", str(args.min_steps), "--max-steps", str(args.max_steps),
            "--repeats", str(args.repeats)]


def jax_worker(args) -> dict:
    """In a fresh process: gradual-jax's step of ``args.model`` at ``args.lanes`` lanes."""
    from benchmarks import model_steps

    case = model_steps.build_case(args.model, args)
    row = model_steps.measure(case, int(args.lanes), seconds=args.seconds, min_steps=args.min_steps,
                              max_steps=args.max_steps, peak=float("inf"), repeats=args.repeats,
                              groups=int(args.groups), steps_per_call=int(args.steps_per_call),
                              devices=int(args.devices))
    for key in ("model_flops_per_s", "fraction_of_matmul", "analytic_fraction_of_matmul"):
        row.pop(key)  # against the orchestrator's matmul reference instead
    return {"framework": "gradual-jax", "model": args.model, "sizes": case.sizes,
            "analytic_flops": case.analytic_source, **row}


def lane_devices(lanes: int) -> int:
    """The devices the engine spreads ``lanes`` lanes over (``sharding.devices_for``)."""
    import jax

    from gradual_jax.runner import sharding

    return sharding.devices_for(lanes, jax.device_count())


def run_cell(framework: str, model: str, lanes: int, arrangement: str, args, overrides: dict) -> dict:
    cell = argparse.Namespace(**{**vars(args), **overrides})
    sizes = model_sizes.size_argv(cell)
    if framework == "jax":
        devices = lane_devices(lanes) if arrangement == "devices" else 1
        groups = lanes // devices if arrangement in ("map", "devices") else 1
        steps_per_call = args.scan if arrangement in ("scan", "map", "devices") else 1
        cmd = common.module_cmd("models_vs_torch", "--jax-worker", "--model", model, "--lanes", lanes,
                                "--groups", groups, "--steps-per-call", steps_per_call, "--devices", devices,
                                *sizes, *timing_argv(args))
    else:
        cmd = common.module_cmd("torch_steps", "--model", model, "--lanes", lanes, "--arrangement", arrangement,
                                *sizes, *timing_argv(args))
    return common.measured(lambda: common.run_worker(cmd))


def compare_case(model: str, overrides: dict, lane_counts: list[int], args, peak: float, echo=print) -> dict:
    rows = []
    for r in lane_counts:
        row = {"lanes": r, "jax": run_cell("jax", model, r, "vmap", args, overrides)}
        if args.scan > 1:
            row["jax_scan"] = run_cell("jax", model, r, "scan", args, overrides)
        if r > 1:
            row["jax_map"] = run_cell("jax", model, r, "map", args, overrides)
            if lane_devices(r) > 1:
                row["jax_devices"] = run_cell("jax", model, r, "devices", args, overrides)
        for arrangement in (a for a in args.torch.split(",") if r > 1 or a != "vmap"):
            row[f"torch_{arrangement}"] = run_cell("torch", model, r, arrangement, args, overrides)
        torch_rates = {k: v["lane_steps_per_s"] for k, v in row.items()
                       if k.startswith("torch_") and "lane_steps_per_s" in v}
        jax_rates = {k: row[k]["lane_steps_per_s"] for k in ("jax", "jax_scan", "jax_map", "jax_devices")
                     if "lane_steps_per_s" in row.get(k, {})}
        for key in jax_rates:
            v = row[key]
            v["model_flops_per_s"] = v["lane_steps_per_s"] * v["xla_flops_per_lane_step"]
            v["fraction_of_matmul"] = v["model_flops_per_s"] / peak
        row["best_jax"] = max(jax_rates, key=jax_rates.get, default="jax")
        jx = row[row["best_jax"]]
        for key in torch_rates:
            v = row[key]
            v["model_flops_per_s"] = v["lane_steps_per_s"] * v["flops_per_lane_step"]
            v["fraction_of_matmul"] = v["model_flops_per_s"] / peak
        if torch_rates and jax_rates:
            row["best_torch"] = max(torch_rates, key=torch_rates.get)
            row["jax_over_best_torch"] = jx["lane_steps_per_s"] / torch_rates[row["best_torch"]]
        row["others_cpu_max"] = max(v.get("others_cpu", 0.0) for k, v in row.items() if isinstance(v, dict))
        rows.append(row)
        echo(f"  R = {r}: gradual-jax " + ", ".join(f"{k} {v:,.2f}" for k, v in jax_rates.items()) + ", "
             + ", ".join(f"{k} {row[k]['lane_steps_per_s']:,.2f}" if "lane_steps_per_s" in row[k]
                         else f"{k} failed ({row[k].get('error', '')[:80]})" for k in row if k.startswith("torch_"))
             + " lane-steps/s", flush=True)
    first = rows[0]
    return {"model": model, "overrides": overrides, "jax_sizes": first["jax"]["sizes"],
            "torch_sizes": first["torch_loop"].get("sizes"), "rows": rows}


def _mb(v) -> str:
    return f"{v:,.0f} MB" if v else "–"


def table(result: dict) -> str:
    lines = ["| case | lanes | gradual-jax vmap | gradual-jax vmap in a scan | gradual-jax one at a time | "
             "gradual-jax over the cores | torch loop | "
             "torch compile | torch vmap | best jax / best torch | scan / best torch | GFLOP / lane-step (XLA; torch; analytic) | % of matmul (best jax; best torch) | "
             "RSS jax (program) | RSS torch loop | RSS torch vmap | others' CPU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case in result["cases"]:
        for row in case["rows"]:
            jx = row[row.get("best_jax", "jax")]
            loop, compiled, vm = (row.get(f"torch_{a}", {}) for a in ("loop", "compile", "vmap"))

            def rate(v):
                return "–" if not v else ("failed" if "error" in v else f"{v['lane_steps_per_s']:,.2f}")

            best = row.get(row.get("best_torch", ""), {})
            ratio = f"{row['jax_over_best_torch']:.2f}×" if "jax_over_best_torch" in row else "–"
            scan = row.get("jax_scan", {})
            scan_ratio = (f"{scan['lane_steps_per_s'] / best['lane_steps_per_s']:.2f}×"
                          if "lane_steps_per_s" in scan and "lane_steps_per_s" in best else "–")
            flops = (f"{jx['xla_flops_per_lane_step'] / 1e9:,.3f}; {loop.get('flops_per_lane_step', 0) / 1e9:,.3f}; "
                     f"{jx['analytic_flops_per_lane_step'] / 1e9:,.3f}")
            share = f"{100 * jx['fraction_of_matmul']:.0f}%; " + (f"{100 * best['fraction_of_matmul']:.0f}%"
                                                                   if "fraction_of_matmul" in best else "–")
            lines.append(f"| {case['label']} | {row['lanes']} | {rate(row['jax'])} | {rate(scan)} | "
                         f"{rate(row.get('jax_map'))} | {rate(row.get('jax_devices'))} | {rate(loop)} | {rate(compiled)} | "
                         f"{rate(vm)} | {ratio} | {scan_ratio} | "
                         f"{flops} | {share} | {_mb(jx['peak_rss_mb'])} ({_mb(jx.get('device_memory_mb'))}) | "
                         f"{_mb(loop.get('peak_rss_mb'))} | {_mb(vm.get('peak_rss_mb'))} | "
                         f"{100 * row['others_cpu_max']:.0f}% |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,t5")
    parser.add_argument("--lanes", default="1,4", help="lane counts R (comma separated)")
    model_sizes.add_size_arguments(parser)
    parser.set_defaults(resnet_batch=RESNET_BATCH)
    parser.add_argument("--torch", default="loop,compile,vmap",
                        help="PyTorch arrangements (comma separated): loop, compile, vmap")
    parser.add_argument("--t5-batches", default=T5_BATCHES, help="T5 batches per lane, one case each")
    parser.add_argument("--seconds", type=float, default=3.0, help="target time of one timed measurement")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2, help="timed measurements per cell; the fastest is kept")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: a smoke test")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--groups", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--steps-per-call", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--scan", type=int, default=20, metavar="K",
                        help="also time gradual-jax's steps K at a time in a lax.scan, as its engine runs them "
                             "(an epoch of the MNIST presets is 20 steps; 1: skip)")
    args = parser.parse_args(argv)
    unknown = set(args.torch.split(",")) - {"loop", "compile", "vmap"}
    if unknown or "loop" not in args.torch.split(","):
        parser.error(f"--torch: {args.torch!r}; choose a comma separated list of loop, compile, vmap that "
                     "includes loop")
    if args.jax_worker:
        print(json.dumps(jax_worker(args)))
        return None
    if args.quick:
        model_sizes.apply_preset(args, model_sizes.QUICK)
        args.t5_batches = str(model_sizes.QUICK["t5_batch"])
        args.lanes = "1,2" if args.lanes == parser.get_default("lanes") else args.lanes
        args.seconds, args.min_steps, args.max_steps, args.repeats = 0.05, 2, 3, 1
    matmul = common.matmul_flops_per_second(256 if args.quick else None, 0.1 if args.quick else 1.0)
    print(f"machine: {common.cpu_model()}, {common.cores()} cores; XLA_FLAGS={common.xla_flags()!r}")
    print(f"reference: float32 {matmul['n']}² matmul, XLA {matmul['flops_per_s'] / 1e9:,.1f} GFLOP/s")
    start = time.perf_counter()
    result = {"matmul": matmul, "quick": args.quick, "lanes": common.parse_ints(args.lanes),
              "selection": f"best of {args.repeats} timed measurement(s) of about {args.seconds} s per cell",
              "memory": "peak RSS of each cell's own process (ru_maxrss); gradual-jax also the compiled "
                        "program's bytes (memory_analysis: arguments + outputs + temporaries)",
              "cases": []}
    for model, overrides in cases(args):
        label = case_label(model, overrides)
        print(f"\n{label}:", flush=True)
        case = compare_case(model, overrides, result["lanes"], args, matmul["flops_per_s"])
        result["cases"].append({"label": label, **case})
    result["total_seconds"] = time.perf_counter() - start
    print()
    print(table(result))
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "models_vs_torch", result)
    return result


if __name__ == "__main__":
    main()
