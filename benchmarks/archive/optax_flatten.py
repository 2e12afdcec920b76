"""Does ``optax.flatten`` (or flat parameters) speed up the MNIST MLP sweep's step? An A/B in one process.

    python -m benchmarks.archive.optax_flatten [--lanes 1,8,32] [--steps 80] [--repeats 3] [--json OUT.json]

The profile of the engine's step (benchmarks/README.md) puts about a third of the CPU time in
the elementwise fusions of the Adam update, three passes over each of the MLP's 14 parameter
leaves, most of them tiny ([256] biases and LayerNorm scales). ``optax.flatten(adam)`` ravels
the gradients into one vector, runs Adam on it and unravels the update, so the elementwise
work is a few large fusions instead of many small ones (at the price of a concatenation and
slices).

The engine is not changed: this script builds the step itself, the same way (LayerNorm MLP
784-256×4-10 with PyTorch init, ``optax.inject_hyperparams(optax.adam)`` with the learning rate as a
per-lane leaf, softmax cross-entropy, batch 64 gathered from 5,120 MNIST-shaped random examples
by a per-lane permutation, ``--steps`` steps in one ``lax.scan``, ``vmap`` over lanes, ``jit``), in
three variants: the plain optimizer (the engine's way), the optimizer wrapped in ``optax.flatten``,
and parameters *stored* as one flat vector per lane (unravelled inside the loss, so the gradient,
Adam and the parameter update all work on one array). All are compiled, warmed up, then timed
``--repeats`` times, interleaved; the best time of each is kept. After the timing the plain and
flatten variants run the same steps from the same state once more, and the largest parameter
difference is reported (flatten changes no arithmetic, so it is 0 or rounding).

XLA flags are the ``gradual-jax`` command's (set by ``benchmarks/__init__.py``;
GRADUAL_JAX_KEEP_XLA_FLAGS=1 for JAX's defaults). It leaves out what the engine's step also does (schedules, soft targets,
metrics), so its absolute rate is a little higher than ``throughput.py``'s; the ratio is the point.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks import common
from gradual_jax.models import MLP

NUM_TRAIN, BATCH, HIDDEN, CLASSES, FEATURES = 5120, 64, (256, 256, 256, 256), 10, 784


VARIANTS = {"plain adam": "plain", "optax.flatten(adam)": "flatten", "flat params": "flat_params"}


def make_optimizer(variant: str):
    def make(learning_rate):
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
        return optax.flatten(tx) if variant == "flatten" else tx
    return make


def build(variant: str, num_lanes: int, steps: int):
    """(init, run): ``init()`` -> per-lane (params, opt_state, labels); ``run(state, x)`` runs ``steps`` steps.

    ``variant``: ``plain`` (the engine's way), ``flatten`` (the optimizer wrapped in ``optax.flatten``),
    ``flat_params`` (parameters *kept* as one flat vector per lane, unravelled inside the loss: Adam
    and the parameter update then touch one array, with no ravel of the gradients outside autodiff).
    """
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: MLP(FEATURES, HIDDEN, CLASSES, rngs=nnx.Rngs(0))))
    unravel = jax.flatten_util.ravel_pytree(
        jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract))[1]
    make_opt = make_optimizer(variant)

    def init_lane(seed, lr):
        params = nnx.state(MLP(FEATURES, HIDDEN, CLASSES, rngs=nnx.Rngs(jax.random.key(seed))), nnx.Param)
        if variant == "flat_params":
            params = jax.flatten_util.ravel_pytree(params)[0]
        opt_state = make_opt(lr).init(params)
        labels = jax.random.permutation(jax.random.key(seed + 1000), jnp.arange(NUM_TRAIN) % CLASSES)
        return params, opt_state, labels.astype(jnp.int32)

    def lane_run(params, opt_state, labels, x, seed):
        tx = make_opt(1e-3)  # structure only: the rate in use is the one in opt_state
        order = jax.random.permutation(jax.random.key(seed), NUM_TRAIN)

        def step(carry, i):
            params, opt_state = carry
            index = jax.lax.dynamic_slice(order, ((i * BATCH) % (NUM_TRAIN - BATCH + 1),), (BATCH,))
            xb, yb = x[index], labels[index]

            def loss_fn(p):
                logits = nnx.merge(graphdef, unravel(p) if variant == "flat_params" else p)(xb)
                return optax.softmax_cross_entropy(logits, jax.nn.one_hot(yb, CLASSES)).mean()

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
        return params, opt_state, losses.mean()

    seeds = jnp.arange(num_lanes, dtype=jnp.int32)
    lrs = jnp.full((num_lanes,), 1e-3, jnp.float32)
    init = jax.jit(jax.vmap(init_lane))

    @jax.jit
    def run(params, opt_state, labels, x):
        return jax.vmap(lane_run, in_axes=(0, 0, 0, None, 0))(params, opt_state, labels, x, seeds)

    return (lambda: init(seeds, lrs)), run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", default="1,8,32")
    parser.add_argument("--steps", type=int, default=80, help="steps per lane in one timed call (one lax.scan)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant, interleaved; best kept")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    print(f"jax {jax.__version__}, optax {optax.__version__} on {device.platform} {device.device_kind}; "
          f"XLA_FLAGS={common.xla_flags()!r}")
    x = jax.random.normal(jax.random.key(0), (NUM_TRAIN, FEATURES), jnp.float32)
    variants = VARIANTS
    rows = []
    start_all = time.perf_counter()
    for r in (int(v) for v in args.lanes.split(",")):
        built, states, compile_s, times = {}, {}, {}, {n: [] for n in variants}
        for name, flat in variants.items():
            init, run = build(flat, r, args.steps)
            state = init()
            t0 = time.perf_counter()
            compiled = run.lower(*state, x).compile()
            compile_s[name] = time.perf_counter() - t0
            jax.block_until_ready(compiled(*state, x))  # warm-up
            built[name], states[name] = compiled, state
        for k in range(args.repeats):
            for name in (list(variants) if k % 2 == 0 else list(variants)[::-1]):
                t0 = time.perf_counter()
                jax.block_until_ready(built[name](*states[name], x))
                times[name].append(time.perf_counter() - t0)
        # same start, same steps: the parameters agree up to rounding
        outs = {name: built[name](*states[name], x)[0] for name in variants}
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(outs["plain adam"]),
                                                                   jax.tree.leaves(outs["optax.flatten(adam)"])))
        row = {"lanes": r, "steps": args.steps, "max_param_difference_plain_flatten": diff}
        for name in variants:
            best = min(times[name])
            row[name] = {"lane_steps_per_s": r * args.steps / best, "compile_s": compile_s[name],
                         "all_lane_steps_per_s": [r * args.steps / t for t in times[name]]}
        names = list(variants)
        row["ratio"] = row[names[1]]["lane_steps_per_s"] / row[names[0]]["lane_steps_per_s"]
        row["ratio_flat_params"] = row[names[2]]["lane_steps_per_s"] / row[names[0]]["lane_steps_per_s"]
        rows.append(row)
        print(f"R = {r}: " + ", ".join(f"{n} {row[n]['lane_steps_per_s']:,.0f} lane-steps/s "
                                        f"(compile {row[n]['compile_s']:.1f} s)" for n in names)
              + f"; ratios {row['ratio']:.2f}×, {row['ratio_flat_params']:.2f}×; max |Δparam| {diff:.1e}", flush=True)
    names = list(variants)
    print(f"\n| lanes | {names[0]} | {names[1]} | ratio | {names[2]} | ratio |\n|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['lanes']} | {row[names[0]]['lane_steps_per_s']:,.0f} | "
              f"{row[names[1]]['lane_steps_per_s']:,.0f} | {row['ratio']:.2f}× | "
              f"{row[names[2]]['lane_steps_per_s']:,.0f} | {row['ratio_flat_params']:.2f}× |")
    result = {"model": "LayerNorm MLP 784-256x4-10, adam 1e-3, batch 64",
              "repeats": args.repeats, "selection": "best of the repeats", "rows": rows,
              "total_seconds": time.perf_counter() - start_all}
    print(f"\ntotal {result['total_seconds']:.0f} s")
    if args.json:
        common.write_json(args.json, "optax_flatten", result)


if __name__ == "__main__":
    main()
