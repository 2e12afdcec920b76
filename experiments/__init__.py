"""Experiment configs, one module per paper figure; configs are code.

Each module defines ``DESCRIPTION`` and ``PRESETS``: preset name -> function returning
an :class:`~gradual_jax.config.ExperimentConfig`. Every experiment has a ``paper``
preset (the paper's numbers, see ``shared/PAPER.md``) and a ``cpu`` preset that runs
on a 2-core CPU in minutes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gradual_jax.config import ConfigError, ExperimentConfig

# experiment name (CLI) -> module in this package
MODULES = {
    "fig1-mnist": "fig1_mnist",
    "fig3-emnist": "fig3_emnist",
}


def module(name: str) -> ModuleType:
    if name not in MODULES:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(MODULES)} "
                          "(see `gradual-jax list`)")
    return importlib.import_module(f"{__name__}.{MODULES[name]}")


def presets(name: str) -> tuple[str, ...]:
    return tuple(module(name).PRESETS)


def get_config(name: str, preset: str) -> ExperimentConfig:
    mod = module(name)
    if preset not in mod.PRESETS:
        raise ConfigError(f"unknown preset {preset!r} for {name}; choose one of: {', '.join(mod.PRESETS)}")
    return mod.PRESETS[preset]()
