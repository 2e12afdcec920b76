"""Figure 5: granularity of the interpolation step size Δ — smaller steps retain more plasticity.

Two parts, each one compiled sweep over Δ ∈ {1, 0.5, 0.25, 0.1, 0.05} plus the abrupt arm:
``trainability`` (random-label MNIST, output interpolation, Fig. 1's protocol) and
``generalizability`` (permuted pixels, input interpolation, Fig. 3's protocol). Δ = 1 is the
coarsest gradual schedule, a single stage. It is not the one closest to abrupt: for output
interpolation it trains on the old labels, then on uniform targets, and never shows the new
labels before the switch (the farthest from abrupt), and for input interpolation and task sampling
its one stage is α = 0, the pure old task, so it trains exactly as abrupt does and differs only in
when the task is read out (after E epochs instead of (1+k)·E).
"""

import dataclasses

from gradual_jax.experiments import fig1_mnist, fig3_emnist
from gradual_jax.experiments.claims import FIG5

DESCRIPTION = "Step-size granularity Δ ∈ {1, .5, .25, .1, .05}: trainability and generalizability parts"
PARTS = ("trainability", "generalizability")
DELTAS = (1.0, 0.5, 0.25, 0.1, 0.05)
CLAIMS = (FIG5,)  # the paper's sentences this experiment's runs decide (experiments/claims.py)


def _with_deltas(cfg, **changes):
    sweep = changes.pop("sweep", dataclasses.replace(cfg.sweep, deltas=DELTAS))
    return dataclasses.replace(cfg, name="fig5-granularity", description=DESCRIPTION, sweep=sweep, **changes)


def paper():
    return {"trainability": _with_deltas(fig1_mnist.paper()),
            "generalizability": _with_deltas(fig3_emnist.paper())}


def cpu():
    """The fig1-mnist and fig3-emnist cpu presets with every Δ (3 seeds), the second cut to 10
    tasks and 300 training images per class (18 lanes each)."""
    train, general = fig1_mnist.cpu(), fig3_emnist.cpu()
    return {
        "trainability": _with_deltas(train, task=dataclasses.replace(train.task, num_tasks=20)),
        "generalizability": _with_deltas(
            general, task=dataclasses.replace(general.task, num_tasks=10),
            data=dataclasses.replace(general.data, train_per_class=300),
            sweep=dataclasses.replace(general.sweep, deltas=DELTAS, seeds=(0, 1, 2))),
    }


def _study(epochs_per_task: int, deltas: tuple[float, ...]):
    """Fig. 1's ``study`` setting (the paper's data, model and optimizer, 20 tasks, 3 seeds)
    at E epochs per task, abrupt and output interpolation at each Δ; no mitigations."""
    cfg = fig1_mnist.study()
    return _with_deltas(
        cfg, preset=f"study-e{epochs_per_task}" if epochs_per_task != 10 else "study",
        protocol=dataclasses.replace(cfg.protocol, epochs_per_task=epochs_per_task),
        sweep=dataclasses.replace(cfg.sweep, deltas=deltas, methods=("none",)),
        diagnostics=dataclasses.replace(cfg.diagnostics, dormant_taus=(0.0, 0.01)))


def study():
    """The trainability part at E = 10 with every Δ (18 lanes, diagnostics on: Fig. 6 is read
    from this run). The generalizability verdict comes from ``fig3-emnist --preset study``."""
    return {"trainability": _study(10, DELTAS)}


def study_e20():
    """How the verdict depends on E: the trainability part at E = 20 for abrupt, Δ = 0.5, 0.1."""
    return {"trainability": _study(20, (0.5, 0.1))}


PRESETS = {"paper": paper, "cpu": cpu, "study": study, "study-e20": study_e20}
