"""The PyTorch side of ``models_vs_torch.py``: training steps of the ResNet-18 and T5 of
``torch_models.py`` for R lanes in one process, timed like ``model_steps.py`` times JAX's.

    python -m benchmarks.torch_steps --model t5 --lanes 4 --arrangement vmap [size flags of model_sizes.py]

A step is forward, loss, backward and AdamW (lr 1e-4, weight decay 0, fused where this PyTorch
has it on the CPU, else foreach) of every lane, each lane with its own parameters, optimizer
state, BatchNorm statistics and batch of random inputs (model_steps.py's shapes; NCHW images).
Three arrangements of the R lanes:

* ``loop``: R models stepped one after another (what a PyTorch user writes without torch.func);
* ``compile``: the same loop with each model ``torch.compile``-d (Inductor; its compilation is
  part of the warm-up step, not of the timing);
* ``vmap``: parameters and buffers stacked (``torch.func.stack_module_state``), one
  ``torch.func.vmap`` of ``functional_call`` for all lanes, the lanes' losses summed, one AdamW
  over the stacked tensors (elementwise, so each lane's own AdamW).

It calibrates the number of steps to about ``--seconds`` after a warm-up step, times best of
``--repeats``, counts one lane-step's FLOPs with ``torch.utils.flop_counter.FlopCounterMode``
(forward + backward, every matmul and convolution, dense) and prints one JSON object with the
process's peak RSS. No JAX is imported, so the memory is PyTorch's own.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import common, model_sizes
from benchmarks import torch_models as tm

ARRANGEMENTS = ("loop", "compile", "vmap")


@dataclasses.dataclass
class TorchCase:
    """One model's step: ``build(seed)`` -> module, ``make_batch(lanes)`` -> tensors with a leading
    lane axis, ``loss(forward, batch_of_one_lane)`` with ``forward(*inputs) -> outputs``."""

    name: str
    build: Callable[[int], torch.nn.Module]
    make_batch: Callable[[int], tuple]
    loss: Callable[[Callable, tuple], torch.Tensor]
    sizes: dict


def resnet_case(batch: int, width: float, image: int, cifar_stem: bool) -> TorchCase:
    def build(seed):
        torch.manual_seed(seed)
        return tm.ResNet18(10, in_channels=3, width_multiplier=width, cifar_stem=cifar_stem)

    def make_batch(lanes):
        g = torch.Generator().manual_seed(42)
        return (torch.randn(lanes, batch, 3, image, image, generator=g),
                torch.randint(0, 10, (lanes, batch), generator=g))

    def loss(forward, data):
        x, y = data
        return F.cross_entropy(forward(x), y)

    sizes = {"batch": batch, "image": [3, image, image], "width_multiplier": width, "classes": 10,
             "stem": "cifar" if cifar_stem else "imagenet", "params": tm.num_parameters(build(0)),
             "optimizer": "adamw 1e-4, weight decay 0"}
    return TorchCase("resnet18", build, make_batch, loss, sizes)


def t5_case(batch: int, input_len: int, target_len: int, cfg: tm.T5Config) -> TorchCase:
    def build(seed):
        torch.manual_seed(seed)
        return tm.T5(cfg)

    def make_batch(lanes):
        g = torch.Generator().manual_seed(43)
        inputs = torch.randint(tm.SPACE, cfg.vocab_size, (lanes, batch, input_len), generator=g)
        targets = torch.randint(tm.SPACE, cfg.vocab_size, (lanes, batch, target_len), generator=g)
        inputs[..., -1], targets[..., -1] = tm.EOS, tm.EOS
        return inputs, targets

    def loss(forward, data):
        inputs, targets = data
        return tm.seq2seq_loss(forward(inputs, tm.shift_right(targets)), targets)

    sizes = {"batch": batch, "input_len": input_len, "target_len": target_len, **dataclasses.asdict(cfg),
             "params": tm.num_parameters(build(0)), "optimizer": "adamw 1e-4, weight decay 0"}
    return TorchCase("t5", build, make_batch, loss, sizes)


def build_case(name: str, args) -> TorchCase:
    """The PyTorch step of model ``name`` at the sizes of ``args`` (model_sizes.py's flags)."""
    if name == "resnet18":
        return resnet_case(args.resnet_batch, args.resnet_width, args.resnet_image, args.resnet_cifar_stem)
    if name == "t5":
        return t5_case(args.t5_batch, args.t5_input_len, args.t5_target_len,
                       tm.T5Config(d_model=args.t5_d_model, num_heads=args.t5_heads, d_kv=args.t5_d_kv,
                                   d_ff=args.t5_d_ff))
    raise ValueError(f"unknown model {name!r}")


def adamw(tensors) -> tuple[torch.optim.Optimizer, str]:
    tensors = list(tensors)
    try:
        return torch.optim.AdamW(tensors, lr=1e-4, weight_decay=0.0, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(tensors, lr=1e-4, weight_decay=0.0, foreach=True), "foreach"


def lane(batch: tuple, r: int) -> tuple:
    return tuple(t[r] for t in batch)


def loop_step(case: TorchCase, lanes: int, batch: tuple, compiled: bool = False):
    """``(step, optimizer kind)``: one call trains every lane's own model once, one after another
    (``compiled``: each model through ``torch.compile``)."""
    models = [case.build(r).train() for r in range(lanes)]
    if compiled:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 2 * lanes)
        models = [torch.compile(m) for m in models]
    opts = [adamw(m.parameters()) for m in models]

    def step():
        for r, (model, (opt, _)) in enumerate(zip(models, opts)):
            loss = case.loss(model, lane(batch, r))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return loss

    return step, opts[0][1]


def vmap_step(case: TorchCase, lanes: int, batch: tuple):
    """``(step, optimizer kind)``: one call trains all lanes at once through torch.func.vmap."""
    models = [case.build(r).train() for r in range(lanes)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt, kind = adamw(params.values())

    def one(p, b, *data):
        return case.loss(lambda *inputs: functional_call(base, (p, b), inputs), data)

    losses_of = vmap(one)

    def step():
        losses = losses_of(params, buffers, *batch)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        return losses

    return step, kind


def flops_per_lane_step(case: TorchCase, batch: tuple) -> float:
    """FLOPs of one lane's forward + backward as FlopCounterMode counts them (matmuls and convs)."""
    model = case.build(0).train()
    with FlopCounterMode(display=False) as counter:
        case.loss(model, lane(batch, 0)).backward()
    return float(counter.get_total_flops())


def measure(case: TorchCase, lanes: int, arrangement: str, *, seconds: float, min_steps: int, max_steps: int,
            repeats: int) -> dict:
    batch = case.make_batch(lanes)
    start = time.perf_counter()
    if arrangement == "vmap":
        step, optimizer = vmap_step(case, lanes, batch)
    else:
        step, optimizer = loop_step(case, lanes, batch, compiled=arrangement == "compile")
    step()  # warm-up: lazy initialisation
    warmup_s = time.perf_counter() - start
    one = common.best_time(step, repeats=1, warmup=0)["seconds"]
    n = common.calibrated_steps(one, seconds, min_steps, max_steps)
    box = {}

    def run():
        for _ in range(n):
            box["loss"] = step()

    timing = common.best_time(run, repeats=repeats, warmup=0)
    rate = lanes * n / timing["seconds"]
    return {"lanes": lanes, "arrangement": arrangement, "optimizer": f"adamw ({optimizer})", "steps": n,
            "seconds": timing["seconds"], "step_ms": 1e3 * timing["seconds"] / n, "lane_steps_per_s": rate,
            "all_lane_steps_per_s": [lanes * n / t for t in timing["all_seconds"]], "others_cpu": timing["others_cpu"],
            "warmup_s": warmup_s, "final_loss": float(box["loss"].detach().mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet18", "t5"), required=True)
    parser.add_argument("--lanes", type=int, default=1)
    parser.add_argument("--arrangement", choices=ARRANGEMENTS, default="loop")
    model_sizes.add_size_arguments(parser)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=common.cores())
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    case = build_case(args.model, args)
    out = {"framework": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model": args.model, "sizes": case.sizes}
    try:
        out["flops_per_lane_step"] = flops_per_lane_step(case, case.make_batch(1))
        out.update(measure(case, args.lanes, args.arrangement, seconds=args.seconds, min_steps=args.min_steps,
                           max_steps=args.max_steps, repeats=args.repeats))
    except Exception as e:  # noqa: BLE001 - an arrangement that fails is a result, reported as such
        out.update(lanes=args.lanes, arrangement=args.arrangement, error=f"{type(e).__name__}: {e}"[:2000],
                   traceback=traceback.format_exc()[-4000:])
    out["peak_rss_mb"] = common.peak_rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
