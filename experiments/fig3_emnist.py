"""Figure 3: permuted-pixel EMNIST with the LayerNorm MLP — abrupt vs input interpolation.

Generalizability: every task applies a fresh fixed pixel permutation to a balanced
EMNIST subset (1,000 train and 200 test images per class, 47 classes). The abrupt arm
trains (1+k)·E = 200 epochs per task; the gradual arm trains E = 100 pure epochs, then
interpolates the inputs from the old permutation to the new one in 1/Δ = 20 stages of
5 epochs (k = 1). Metric: test accuracy of each task at the end of its pure phase.
"""

import dataclasses

from gradual_jax.experiments import MLP_MITIGATIONS, VERDICT_SEEDS, baselines
from gradual_jax.experiments.claims import FIG3, FIG5
from gradual_jax.config import (DataConfig, ExperimentConfig, ModelConfig, OptimConfig, ProtocolConfig,
                                SweepConfig, TaskConfig)

DESCRIPTION = "Permuted-pixel EMNIST, LayerNorm MLP: abrupt vs input interpolation (generalizability)"

CLAIMS = (FIG3, FIG5)  # the paper's sentences this experiment's runs decide (experiments/claims.py)


def paper() -> ExperimentConfig:
    return ExperimentConfig(
        name="fig3-emnist",
        preset="paper",
        description=DESCRIPTION,
        metric="test_acc",
        data=DataConfig(dataset="emnist_balanced", train_per_class=1000, test_per_class=200),
        task=TaskConfig(family="permuted_pixels", num_tasks=100),
        protocol=ProtocolConfig(epochs_per_task=100, transition_ratio=1.0, batch_size=400),
        model=ModelConfig(hidden_sizes=(256, 256, 256, 256)),
        optim=OptimConfig(name="adam"),
        mitigations=MLP_MITIGATIONS,
        sweep=SweepConfig(seeds=(0, 1, 2, 3, 4), schedules=("abrupt", "input_interp"), deltas=(0.05,),
                          learning_rates=(1e-3,)),
    )


def cpu() -> ExperimentConfig:
    """EMNIST cannot be downloaded offline, so this preset uses permuted MNIST (the results'
    ``dataset`` column says so): 500 train / 100 test images per class, E = 10, k = 1,
    Δ = 0.1, 16 tasks, 5 seeds; the paper's MLP, Adam 1e-3 and batch 400 are kept."""
    cfg = paper()
    return dataclasses.replace(
        cfg,
        preset="cpu",
        data=DataConfig(dataset="mnist", train_per_class=500, test_per_class=100),
        task=dataclasses.replace(cfg.task, num_tasks=16),
        protocol=dataclasses.replace(cfg.protocol, epochs_per_task=10),
        sweep=dataclasses.replace(cfg.sweep, seeds=(0, 1, 2, 3, 4), deltas=(0.1,)),
    )


def study() -> ExperimentConfig:
    """The paper's model and batch (MLP 256×4, batch 400, Adam 1e-3, k = 1) on permuted MNIST
    (EMNIST is not available offline): 1,000 training / 200 test images per class, E = 10
    instead of 100, 30 tasks, 3 seeds; abrupt and input interpolation at Δ ∈ {0.5, 0.1, 0.05}."""
    cfg = paper()
    return dataclasses.replace(
        cfg,
        preset="study",
        data=DataConfig(dataset="mnist", train_per_class=1000, test_per_class=200),
        task=dataclasses.replace(cfg.task, num_tasks=30),
        protocol=dataclasses.replace(cfg.protocol, epochs_per_task=10),
        sweep=dataclasses.replace(cfg.sweep, seeds=(0, 1, 2), deltas=(0.5, 0.1, 0.05)),
    )


def verdict() -> ExperimentConfig:
    """The ``study`` setting on 8 fresh seeds: abrupt against input interpolation at the
    paper's Δ = 0.05 (16 lanes)."""
    cfg = study()
    return dataclasses.replace(cfg, preset="verdict",
                               sweep=dataclasses.replace(cfg.sweep, seeds=VERDICT_SEEDS[:8], deltas=(0.05,)))


PRESETS = {"paper": paper, "cpu": cpu, "study": study, "verdict": verdict, "paper-baselines": lambda: baselines(paper()),
           "cpu-baselines": lambda: baselines(cpu())}
