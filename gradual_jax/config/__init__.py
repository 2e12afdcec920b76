"""Experiment configuration: frozen dataclasses, dotted-key overrides, validation.

One config system for the whole project. An experiment is a tree of small frozen
dataclasses. Structural choices (dataset, model shape, epochs per task, batch size)
are static: they fix the shape of the compiled program. The sweep section lists the
per-lane numeric hyperparameters (seeds, schedules, step sizes Δ, learning rates);
their Cartesian product becomes the lanes of ONE vmapped program.

Every error raised here is a :class:`ConfigError` whose message names the field and
the allowed values, so the CLI can print it and exit with status 2 before any data
is loaded or anything is compiled.

The package's modules: :mod:`~gradual_jax.config.schema` (the sections and their fields),
:mod:`~gradual_jax.config.overrides` (``--set`` and the dict form), :mod:`~gradual_jax.config.validate`,
:mod:`~gradual_jax.config.resumable` (what a resumed run may change) and :mod:`~gradual_jax.config.keys`
(the key tables of the docs and ``show``). Import from the package.
"""

from gradual_jax.config.overrides import apply_overrides, from_dict, parse_value, to_dict
from gradual_jax.config.resumable import RESUMABLE_KEYS, flatten, resume_mismatches
from gradual_jax.config.schema import (FAMILIES, FAMILY_METRICS, FAMILY_MODELS, FAMILY_SCHEDULES, MAX_SEED,
                                       METHOD_STRENGTHS, METHODS, METRICS, MODELS, TEXT_FAMILIES, TEXT_SCHEDULES,
                                       ConfigError, DataConfig, DiagnosticsConfig, ExperimentConfig,
                                       MitigationsConfig, ModelConfig, OptimConfig, ProtocolConfig, RunConfig,
                                       SweepConfig, TaskConfig, TextConfig, setting)
from gradual_jax.config.validate import validate

__all__ = [
    "FAMILIES", "FAMILY_METRICS", "FAMILY_MODELS", "FAMILY_SCHEDULES", "MAX_SEED", "METHOD_STRENGTHS", "METHODS",
    "METRICS", "MODELS", "RESUMABLE_KEYS", "TEXT_FAMILIES", "TEXT_SCHEDULES", "ConfigError", "DataConfig",
    "DiagnosticsConfig", "ExperimentConfig", "MitigationsConfig", "ModelConfig", "OptimConfig", "ProtocolConfig",
    "RunConfig", "SweepConfig", "TaskConfig", "TextConfig", "apply_overrides", "flatten", "from_dict",
    "parse_value", "resume_mismatches", "setting", "to_dict", "validate",
]
