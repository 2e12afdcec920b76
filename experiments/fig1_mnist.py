"""Figure 1 (left): random-label MNIST with the LayerNorm MLP — abrupt vs output interpolation.

Trainability: every task relabels a fixed 5,120-image MNIST subset (512 per class) by
permuting its label array; the network must memorise the new labels. The abrupt arm
trains (1+k)·E = 240 epochs per task; the gradual arm trains E = 80 epochs on the pure
task, then fades the targets to uniform and into the next task's labels (output
interpolation via uniform, Δ = 0.5, k = 2). Metric: online train accuracy over the
last pure epoch (as the released code logs); the full-pass train accuracy is also
recorded.
"""

import dataclasses

from gradual_jax.experiments import LONG_RUN_SEEDS, MLP_MITIGATIONS, REVISED_SEEDS, VERDICT_SEEDS, baselines
from gradual_jax.experiments.claims import FIG1, FIG5, TLDR
from gradual_jax.config import (METHODS, DataConfig, ExperimentConfig, ModelConfig, OptimConfig, ProtocolConfig,
                                SweepConfig, TaskConfig)

DESCRIPTION = "Random-label MNIST, LayerNorm MLP: abrupt vs output interpolation (trainability)"

CLAIMS = (FIG1, TLDR, FIG5)  # the paper's sentences this experiment's runs decide (experiments/claims.py)


def paper() -> ExperimentConfig:
    return ExperimentConfig(
        name="fig1-mnist",
        preset="paper",
        description=DESCRIPTION,
        metric="online_train_acc",
        data=DataConfig(dataset="mnist", train_per_class=512, test_per_class=0),
        task=TaskConfig(family="random_labels", num_tasks=100),
        protocol=ProtocolConfig(epochs_per_task=80, transition_ratio=2.0, batch_size=64),
        model=ModelConfig(hidden_sizes=(256, 256, 256, 256)),
        optim=OptimConfig(name="adam"),
        mitigations=MLP_MITIGATIONS,
        sweep=SweepConfig(seeds=(0, 1, 2, 3, 4), schedules=("abrupt", "output_interp"), deltas=(0.5,),
                          learning_rates=(1e-3,)),
    )


def cpu() -> ExperimentConfig:
    """Keeps k = 2, Adam 1e-3, batch 64 and the LayerNorm
    MLP's depth; shrinks the data to 128 images per class (1,280), the hidden width to 64, E to
    30 epochs, the run to 20 tasks and 3 seeds; output interpolation at the paper's Δ = 0.5 and
    at the finer Δ = 0.1 beside the abrupt arm."""
    cfg = paper()
    return dataclasses.replace(
        cfg,
        preset="cpu",
        data=dataclasses.replace(cfg.data, train_per_class=128),
        task=dataclasses.replace(cfg.task, num_tasks=20),
        protocol=dataclasses.replace(cfg.protocol, epochs_per_task=30),
        model=ModelConfig(hidden_sizes=(64, 64, 64, 64)),
        sweep=dataclasses.replace(cfg.sweep, seeds=(0, 1, 2), deltas=(0.5, 0.1)),
    )


def study() -> ExperimentConfig:
    """The paper's data, model and optimizer (5,120 images, MLP 784-256×4-10, Adam 1e-3, batch
    64, k = 2) with E = 10 instead of 80 and 20 tasks, 3 seeds: abrupt × every mitigation, and
    output interpolation at the paper's Δ = 0.5 and at Δ = 0.1, in one program (27 lanes). At
    E = 10 the abrupt arm loses trainability within 20 tasks, so the claim can be tested here."""
    cfg = paper()
    return dataclasses.replace(
        cfg,
        preset="study",
        task=dataclasses.replace(cfg.task, num_tasks=20),
        protocol=dataclasses.replace(cfg.protocol, epochs_per_task=10),
        sweep=dataclasses.replace(cfg.sweep, seeds=(0, 1, 2), deltas=(0.5, 0.1), methods=METHODS),
    )


def study_crelu() -> ExperimentConfig:
    """The ``study`` setting with CReLU activations (an architecture, hence its own run):
    the abrupt arm only, to be paired by seed with the ``study`` run's output interpolation."""
    cfg = study()
    return dataclasses.replace(cfg, preset="study-crelu", model=dataclasses.replace(cfg.model, name="crelu_mlp"),
                               sweep=dataclasses.replace(cfg.sweep, schedules=("abrupt",), methods=("none",)))


def verdict() -> ExperimentConfig:
    """The primary comparison of Figs. 1 (left) and 5 (trainability), declared before it runs:
    the ``study`` setting (the paper's data, model and optimizer, E = 10, 20 tasks), abrupt
    against output interpolation at the paper's Δ = 0.5 and the finer Δ = 0.1, no mitigation,
    on 10 fresh seeds (30 lanes, about 1.4 M lane-steps)."""
    cfg = study()
    return dataclasses.replace(cfg, preset="verdict",
                               sweep=dataclasses.replace(cfg.sweep, seeds=VERDICT_SEEDS, methods=("none",)))


def verdict_methods() -> ExperimentConfig:
    """The mitigations on the ``verdict`` run's seeds, read against its output-interpolation
    lanes paired by seed: abrupt × Shrink & Perturb, ReDo and spectral regularisation (the
    paper's) and continual backprop (an extension), at the paper's MLP strengths."""
    cfg = verdict()
    return dataclasses.replace(cfg, preset="verdict-methods", sweep=dataclasses.replace(
        cfg.sweep, schedules=("abrupt",), methods=("shrink_perturb", "redo", "spectral", "cbp")))


def verdict_crelu() -> ExperimentConfig:
    """CReLU (an extension: an architecture, hence its own run) on the ``verdict`` run's seeds."""
    cfg = verdict()
    return dataclasses.replace(cfg, preset="verdict-crelu", model=dataclasses.replace(cfg.model, name="crelu_mlp"),
                               sweep=dataclasses.replace(cfg.sweep, schedules=("abrupt",)))


def verdict_e20() -> ExperimentConfig:
    """The question at a larger E: the ``verdict`` setting at E = 20 over 30 tasks, abrupt
    against output interpolation at the paper's Δ = 0.5, on 8 seeds of its own."""
    cfg = verdict()
    return dataclasses.replace(cfg, preset="verdict-e20", task=dataclasses.replace(cfg.task, num_tasks=30),
                               protocol=dataclasses.replace(cfg.protocol, epochs_per_task=20),
                               sweep=dataclasses.replace(cfg.sweep, seeds=LONG_RUN_SEEDS, deltas=(0.5,)))


def verdict_crelu_fresh() -> dict[str, ExperimentConfig]:
    """CReLU against output interpolation again, on 8 seeds of its own, because its gate changed
    after the ``verdict-crelu`` run was seen (it now asks whether the plain network's abrupt arm
    loses, as for every other mitigation). Two parts, one command: ``mlp`` (the plain network:
    abrupt, for the gate, and output interpolation at Δ = 0.5) and ``crelu`` (abrupt CReLU)."""
    plain = verdict()
    sweep = dataclasses.replace(plain.sweep, seeds=REVISED_SEEDS, deltas=(0.5,))
    crelu = verdict_crelu()
    return {"mlp": dataclasses.replace(plain, preset="verdict-crelu-fresh", sweep=sweep),
            "crelu": dataclasses.replace(crelu, preset="verdict-crelu-fresh",
                                         sweep=dataclasses.replace(crelu.sweep, seeds=REVISED_SEEDS))}


PRESETS = {"paper": paper, "cpu": cpu, "study": study, "study-crelu": study_crelu, "verdict": verdict,
           "verdict-methods": verdict_methods, "verdict-crelu": verdict_crelu, "verdict-e20": verdict_e20,
           "verdict-crelu-fresh": verdict_crelu_fresh,
           "paper-baselines": lambda: baselines(paper()),
           "cpu-baselines": lambda: baselines(cpu())}
