"""What share of a text run the BLEU readouts take, decoding with and without the key/value cache.

    python -m benchmarks.readout_share --json results/benchmarks/readout_share-cpu.json
    python -m benchmarks.readout_share --experiments fig2-seq2seq:cpu --set protocol.epochs_per_task=5
    python -m benchmarks.readout_share --quick --json /tmp/readout_share.json    # tiny sizes (the test)

A text run's task segment is (1 + k)·E epochs of training, then one readout: the first
``text.bleu_examples`` pairs of each split decoded by beam search (and greedily), in the same
compiled program. For each experiment preset (with ``--set`` overrides applied), on one lane
of the abrupt arm, this times

* the whole task segment, as the run compiles it (``engine.make_task_fn``), once with the
  T5's key/value cache and once re-running the decoder over the whole prefix at every step;
* the readout alone (``problem.readout`` of the same parameters, jitted), both ways;

each after a warm-up call, best of ``--repeats``. The readout's share of a segment is
readout / segment. Fewer epochs per task (the search for a cheaper regime) make the share
grow, since the readout's cost does not depend on E.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp

from benchmarks import common
from gradual_jax import config as config_lib
from gradual_jax.core import engine
from gradual_jax.runner import build, sweep

from gradual_jax import experiments

DEFAULT = ("fig2-seq2seq:cpu", "fig4-cipher:cpu")
QUICK = ["task.num_tasks=1", "text.num_train=16", "text.num_test=8", "text.bleu_examples=8",
         "protocol.epochs_per_task=1", "protocol.batch_size=8", "model.d_model=16", "model.num_heads=2",
         "model.d_kv=8", "model.d_ff=32", "text.beam_size=2"]


def config_of(spec: str, overrides: list[str]) -> config_lib.ExperimentConfig:
    name, _, preset = spec.partition(":")
    cfg = config_lib.apply_overrides(experiments.get_config(name, preset or "cpu"), overrides)
    config_lib.validate(cfg)
    return cfg


def measure(cfg: config_lib.ExperimentConfig, repeats: int) -> dict:
    prepared = build.prepare_data(cfg)
    lane = next(l for l in sweep.expand(cfg.sweep) if l.schedule == "abrupt")
    hp = sweep.to_hparams([lane], cfg.mitigations)
    base = build.build_program(cfg, prepared, [lane])
    out = {"experiment": cfg.name, "preset": cfg.preset, "epochs_per_task": cfg.protocol.epochs_per_task,
           "steps_per_task": base.steps_per_epoch * (base.epochs_per_task + base.transition_epochs),
           "bleu_examples": cfg.text.bleu_examples, "beam_size": cfg.text.beam_size,
           "output_len": base.problem.spec.output_len}
    for cache in (True, False):
        program = dataclasses.replace(base, problem=dataclasses.replace(base.problem, kv_cache=cache))
        task_fn = engine.make_task_fn(program)
        init = jax.jit(jax.vmap(lambda h: engine.init_lane(program, h)))
        state = init(hp)
        fresh = iter([init(hp) for _ in range(repeats + 1)])  # the segment donates its state
        segment = common.best_time(lambda: jax.block_until_ready(
            task_fn(hp, next(fresh), prepared.task_data, jnp.int32(0))), repeats=repeats)
        params, stats = jax.tree.map(lambda a: a[0], (state.params, state.batch_stats))
        task = engine.sample_task(program, hp.seed[0], jnp.int32(0), prepared.task_data)
        readout_fn = jax.jit(lambda p: program.problem.readout(engine.merge_model(program, p, stats), task,
                                                               prepared.task_data))
        readout = common.best_time(lambda: jax.block_until_ready(readout_fn(params)), repeats=repeats)
        key = "cached" if cache else "prefix"
        out[key] = {"segment_seconds": segment["seconds"], "readout_seconds": readout["seconds"],
                    "readout_share": readout["seconds"] / segment["seconds"],
                    "others_cpu": max(segment["others_cpu"], readout["others_cpu"])}
    out["readout_speedup"] = out["prefix"]["readout_seconds"] / out["cached"]["readout_seconds"]
    out["segment_speedup"] = out["prefix"]["segment_seconds"] / out["cached"]["segment_seconds"]
    return out


def table(rows: list[dict]) -> str:
    lines = ["| experiment | E | steps/task | decoded pairs × beam | readout share, no cache | with cache | "
             "readout speed-up | segment speed-up |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['experiment']}:{r['preset']} | {r['epochs_per_task']} | {r['steps_per_task']} | "
                     f"{r['bleu_examples']} × {r['beam_size']} (+ greedy) | {r['prefix']['readout_share']:.1%} | "
                     f"{r['cached']['readout_share']:.1%} | {r['readout_speedup']:.2f}× | "
                     f"{r['segment_speedup']:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", default=",".join(DEFAULT),
                        help="comma-separated experiment:preset (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds): the test")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    overrides = (QUICK if args.quick else []) + args.set
    rows = [common.measured(lambda: measure(config_of(spec, overrides), args.repeats))
            for spec in args.experiments.split(",")]
    print(table(rows))
    result = {"rows": rows, "overrides": overrides}
    if args.json:
        common.write_json(args.json, "readout_share", result)
    return result


if __name__ == "__main__":
    main()
