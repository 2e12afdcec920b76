"""R lanes of the PyTorch reference in one process, vectorised with ``torch.func``: the strongest
PyTorch arrangement of a sweep we know of, and what gradual-jax does in JAX.

    python -m benchmarks.torch_vmap --lanes 8 --steps 320 [--compile] [--threads N]

The lanes are exactly those of ``torch_reference.py`` (its :func:`~torch_reference.lane_plan`:
the same initial models, task labels, shuffles, soft targets and readouts, lane i with seed i and
schedule abrupt / output_interp alternating), but their parameters are stacked into one tensor per
leaf (``torch.func.stack_module_state``) and one step trains all of them: the per-lane loss is
``torch.func.vmap`` of ``torch.func.functional_call`` over the stacked parameters, the lanes'
losses are summed (their gradients do not interact: lane r's parameters only reach lane r's
loss), and one Adam steps every stacked tensor (Adam is elementwise, so this is each lane's own
Adam). ``fused=True`` Adam is used where this PyTorch has it on the CPU (one kernel for the whole
update), else ``foreach=True``.

``--compile`` wraps the vmapped loss in ``torch.compile`` (TorchInductor: forward and, through
AOTAutograd, backward as generated C++ kernels). Compilation happens in the untimed warm-up on a
throwaway stack of the same shapes and is reported as ``compile_s``; a failure is reported in the
JSON (``error``) instead of a rate.

Prints one JSON object: steps per lane, seconds (training loop only), lane-steps/s, per-lane
metrics of the last task read and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
import traceback

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from benchmarks import common
from benchmarks import torch_reference as ref


def stack_lanes(seeds, in_features: int = ref.FEATURES, hidden=ref.HIDDEN, num_classes: int = ref.CLASSES,
                dtype: torch.dtype = torch.float32):
    """(base, params, buffers): every lane's initial model (as the reference draws it) stacked on a
    leading lane axis; ``base`` is a parameter-free copy of the architecture (on the meta device)."""
    models = [ref.init_model(s, in_features, hidden, num_classes, dtype) for s in seeds]
    params, buffers = stack_module_state(models)
    return copy.deepcopy(models[0]).to("meta"), params, buffers


def lane_losses(base: torch.nn.Module):
    """``f(params, buffers, x [R, b, F], targets [R, b, C]) -> (losses [R], logits [R, b, C])``:
    each lane's mean soft-target cross-entropy over its own batch."""
    def one(p, b, x, t):
        logits = functional_call(base, (p, b), (x,))
        return F.cross_entropy(logits, t), logits

    return vmap(one)


def make_adam(params: dict, learning_rate: float) -> tuple[torch.optim.Optimizer, str]:
    """Adam over the stacked tensors: fused where this PyTorch supports it on the CPU, else foreach."""
    tensors = list(params.values())
    try:
        return torch.optim.Adam(tensors, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, fused=True), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(tensors, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8, foreach=True), "foreach"


def batch_of(steps, x: torch.Tensor, num_classes: int):
    """The lanes' batches of one step: inputs [R, b, F], soft targets [R, b, C], hard labels [R, b]."""
    index = torch.stack([s.index for s in steps])
    labels = torch.stack([s.labels for s in steps])
    alpha = torch.tensor([s.alpha for s in steps], dtype=x.dtype)[:, None, None]
    targets = (1.0 - alpha) * F.one_hot(labels, num_classes).to(x.dtype) + alpha / num_classes
    return x[index], targets, labels


@torch.no_grad()
def evaluate_lane(base, params: dict, buffers: dict, lane: int, x: torch.Tensor, labels: torch.Tensor,
                  chunk: int = 1024) -> tuple[float, float]:
    """A full pass of lane ``lane``'s model over ``x`` (the reference's ``evaluate``)."""
    p = {k: v[lane] for k, v in params.items()}
    b = {k: v[lane] for k, v in buffers.items()}
    correct, loss = 0, 0.0
    for start in range(0, len(x), chunk):
        logits = functional_call(base, (p, b), (x[start:start + chunk],))
        target = labels[start:start + chunk]
        correct += int((logits.argmax(-1) == target).sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
    return correct / len(x), loss / len(x)


def warm_up(loss_fn, x, y, num_lanes: int, steps: int, batch_size: int, hidden, num_classes: int,
            learning_rate: float) -> float:
    """Untimed steps on a throwaway stack of the same shapes (a short last batch included, where
    the data set has one): pays lazy initialisation and, compiled, the compilation. Seconds."""
    start = time.perf_counter()
    _, params, buffers = stack_lanes(range(10_000, 10_000 + num_lanes), x.shape[1], hidden, num_classes, x.dtype)
    opt, _ = make_adam(params, learning_rate)
    sizes = [batch_size] * steps + ([len(x) % batch_size] if len(x) % batch_size else [])
    for i, size in enumerate(sizes):
        index = (torch.arange(size) + i * batch_size) % len(x)
        xb = x[index].expand(num_lanes, -1, -1).contiguous()
        targets = F.one_hot(y[index], num_classes).to(x.dtype).expand(num_lanes, -1, -1).contiguous()
        losses, _ = loss_fn(params, buffers, xb, targets)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
    return time.perf_counter() - start


def train_lanes(x: torch.Tensor, y: torch.Tensor, *, seeds, schedules, delta: float = 0.5,
                epochs_per_task: int = 1, transition_ratio: float = 1.0, batch_size: int = 64,
                learning_rate: float = 1e-3, hidden=ref.HIDDEN, num_classes: int = ref.CLASSES,
                max_steps: int | None = None, num_tasks: int | None = None, warmup_steps: int = 0,
                compile: bool = False, return_params: bool = False) -> dict:
    """Train the lanes (``seeds[i]``, ``schedules[i]``) together; stop after ``max_steps`` steps per
    lane or ``num_tasks`` tasks. ``return_params`` adds each lane's trained parameters (a list of
    ``{name: tensor}``, names as in the reference's ``nn.Sequential``) under ``"params"``."""
    if max_steps is None and num_tasks is None:
        raise ValueError("give max_steps or num_tasks")
    num_lanes = len(seeds)
    base, params, buffers = stack_lanes(seeds, x.shape[1], hidden, num_classes, x.dtype)
    loss_fn = lane_losses(base)
    if compile:
        loss_fn = torch.compile(loss_fn)
    warm_s = warm_up(loss_fn, x, y, num_lanes, warmup_steps, batch_size, hidden, num_classes,
                     learning_rate) if warmup_steps > 0 or compile else 0.0
    optimizer, adam = make_adam(params, learning_rate)
    plans = [ref.lane_plan(y, seed=s, schedule=name, delta=delta, epochs_per_task=epochs_per_task,
                           transition_ratio=transition_ratio, batch_size=batch_size, num_tasks=num_tasks)
             for s, name in zip(seeds, schedules)]
    n = len(x)
    correct, loss_sum = [0] * num_lanes, [0.0] * num_lanes
    per_task: list[list[dict]] = [[] for _ in range(num_lanes)]
    steps = 0
    start = time.perf_counter()
    for lane_steps in itertools.islice(zip(*plans), max_steps):
        xb, targets, labels = batch_of(lane_steps, x, num_classes)
        losses, logits = loss_fn(params, buffers, xb, targets)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        steps += 1
        for r, step in enumerate(lane_steps):
            if step.readout:
                correct[r] += int((logits[r].detach().argmax(-1) == labels[r]).sum())
                loss_sum[r] += float(losses[r].detach()) * len(step.index)
            if step.ends_readout:
                train_acc, train_loss = evaluate_lane(base, params, buffers, r, x, step.task_labels)
                per_task[r].append({"task": step.task, "online_train_acc": correct[r] / n,
                                    "online_train_loss": loss_sum[r] / n,
                                    "train_acc": train_acc, "train_loss": train_loss})
                correct[r], loss_sum[r] = 0, 0.0
    seconds = time.perf_counter() - start
    out = {"lanes": num_lanes, "steps": steps, "seconds": seconds, "compile": compile, "optimizer": f"adam ({adam})",
           "warmup_s": warm_s, "lane_steps_per_s": num_lanes * steps / seconds if seconds else float("nan"),
           "per_task": per_task}
    if return_params:
        out["params"] = [{k: v[r].detach() for k, v in params.items()} for r in range(num_lanes)]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=8,
                        help="lanes R: seeds 0..R-1, abrupt / output_interp alternating")
    parser.add_argument("--steps", type=int, default=320, help="optimisation steps per lane")
    parser.add_argument("--delta", type=float, default=0.5)
    parser.add_argument("--epochs-per-task", type=int, default=1)
    parser.add_argument("--transition-ratio", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", default="256,256,256,256")
    parser.add_argument("--num-train", type=int, default=5120, help="synthetic MNIST-shaped examples")
    parser.add_argument("--threads", type=int, default=common.cores(), help="torch.set_num_threads")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the vmapped loss")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    x, y = ref.load_data("synthetic", num_train=args.num_train)
    seeds = list(range(args.lanes))
    out = {"implementation": "pytorch torch.func.vmap" + (" + torch.compile" if args.compile else ""),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "lanes": args.lanes,
           "compile": args.compile}
    try:
        result = train_lanes(x, y, seeds=seeds, schedules=[ref.SCHEDULES[s % 2] for s in seeds], delta=args.delta,
                             epochs_per_task=args.epochs_per_task, transition_ratio=args.transition_ratio,
                             batch_size=args.batch_size, hidden=common.parse_ints(args.hidden),
                             max_steps=args.steps, warmup_steps=args.warmup_steps, compile=args.compile)
        result["last_task"] = [lane[-1] if lane else None for lane in result.pop("per_task")]
        out.update(result)
    except Exception as e:  # noqa: BLE001 - a failed torch.compile is a result, reported as such
        out.update(error=f"{type(e).__name__}: {e}"[:2000], traceback=traceback.format_exc()[-4000:])
    out["peak_rss_mb"] = common.peak_rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
