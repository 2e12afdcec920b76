"""Experiment configs, one module per paper figure; configs are code.

Each module defines ``DESCRIPTION``, ``CLAIMS`` (the paper's claims it tests, see
:mod:`gradual_jax.claims`) and ``PRESETS``: preset name -> function returning an
:class:`~gradual_jax.config.ExperimentConfig`, or, for a multi-part experiment (``PARTS``),
a dict part name -> config (each part runs into ``OUT/<part>``). Every experiment has a
``paper`` preset (the paper's numbers, see ``docs/protocol.md``) and a ``cpu`` preset that
runs on a 2-core CPU in minutes. A module with a ``run(out_dir, preset)`` function (the
theory check) is run by that function instead of the training engine.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from gradual_jax.claims import ANY, Arm, Claim, FinerVersusCoarser, Versus
from gradual_jax.config import METHODS, ConfigError, ExperimentConfig

# experiment name (CLI) -> module in this package
MODULES = {
    "fig1-mnist": "fig1_mnist",
    "fig1-cifar": "fig1_cifar",
    "fig2-seq2seq": "fig2_seq2seq",
    "fig3-emnist": "fig3_emnist",
    "fig4-cipher": "fig4_cipher",
    "fig5-granularity": "fig5_granularity",
    "fig6-diagnostics": "fig6_diagnostics",
    "theory": "theory",
}


def module(name: str) -> ModuleType:
    if name not in MODULES:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(MODULES)} "
                          "(see `gradual-jax list`)")
    return importlib.import_module(f"{__name__}.{MODULES[name]}")


def presets(name: str) -> tuple[str, ...]:
    return tuple(module(name).PRESETS)


def is_custom_runner(name: str) -> bool:
    return hasattr(module(name), "run")


def get_configs(name: str, preset: str) -> dict[str, ExperimentConfig]:
    """Part name -> config ("" for a single-part experiment)."""
    mod = module(name)
    if preset not in mod.PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for {name}; choose one of: {', '.join(mod.PRESETS)}")
    made = mod.PRESETS[preset]()
    return made if isinstance(made, dict) else {"": made}


def get_config(name: str, preset: str) -> ExperimentConfig:
    """The config of a single-part experiment."""
    parts = get_configs(name, preset)
    if list(parts) != [""]:
        raise ConfigError(f"{name} has parts {', '.join(parts)}; use get_configs")
    return parts[""]


def baselines(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with every mitigation crossed with its abrupt lanes (strengths from
    ``cfg.mitigations``), beside its gradual schedule: the ``*-baselines`` presets."""
    return dataclasses.replace(cfg, preset=f"{cfg.preset}-baselines",
                               sweep=dataclasses.replace(cfg.sweep, methods=METHODS))


PRESERVED = ("If the world changes gradually, trainability and generalization are largely preserved, often "
             "better than the usual mitigations.")
FINER = "A smaller step size ... retains more plasticity."


def gradual_claims(figure: str, schedule: str, metric: str, *, versus_abrupt: str = PRESERVED,
                   versus_mitigations: str = PRESERVED) -> tuple[Claim, ...]:
    """A figure's claims, each in the paper's words: the gradual arm (each Δ run) against the
    abrupt arm (of every model in the setting, e.g. a CReLU run), and against the abrupt arm
    with each mitigation."""
    gradual = Arm(schedule, ANY)
    return (Claim(figure, versus_abrupt, metric, (Versus(gradual, Arm("abrupt")),)),
            Claim(figure, versus_mitigations, metric, (Versus(gradual, Arm("abrupt", method=ANY)),)))


def granularity_claim(figure: str, schedule: str, metric: str) -> Claim:
    """Fig. 5's claim: each Δ against the next coarser Δ of the same run."""
    return Claim(figure, FINER, metric, (FinerVersusCoarser(schedule),))
