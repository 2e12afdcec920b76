"""Experiment configs, one module per paper figure; configs are code.

This folder sits at the top of the checkout, where it is edited, and is installed inside the
package as ``gradual_jax.experiments`` (``pyproject.toml`` maps it), so that no other project's
top-level ``experiments`` can shadow it: ``from gradual_jax import experiments``.

Each module defines ``DESCRIPTION``, ``CLAIMS`` (the paper's sentences it tests, declared with
their evidence in :mod:`gradual_jax.experiments.claims`) and ``PRESETS``: preset name -> function
returning an :class:`~gradual_jax.config.ExperimentConfig`, or, for a multi-part experiment (``PARTS``),
a dict part name -> config (each part runs into ``OUT/<part>``). Every experiment has a
``paper`` preset (the paper's numbers, see ``docs/protocol.md``) and a ``cpu`` preset that
runs on a 2-core CPU in minutes. A module may declare ``SEARCH``: settings to try, cheapest
first, for one in which the abrupt arm loses plasticity (:mod:`gradual_jax.analysis.search`,
``gradual-jax search``). A module with a ``run(out_dir, preset)`` function (the
theory check) is run by that function instead of the training engine.

Looking an experiment up by name or file is :mod:`gradual_jax.catalog`'s job (re-exported here for
experiment files that build on a figure's presets, e.g. ``experiments.get_config("fig1-mnist", "cpu")``
after ``from gradual_jax import experiments``).
A researcher's own experiment needs no edit of this package: any Python file with the same
``PRESETS`` (and optionally ``DESCRIPTION``, ``CLAIMS``) is an experiment, named by its path:
``gradual-jax run path/to/my_exp.py --preset cpu`` or ``path/to/my_exp.py:cpu``.
"""

from __future__ import annotations

import dataclasses

from gradual_jax.catalog import (MODULES, get_config, get_configs, is_custom_runner, is_path, module, presets,
                                 search_seeds, split_spec)
from gradual_jax.config import METHODS, ExperimentConfig, MitigationsConfig, apply_overrides

__all__ = ["MODULES", "get_config", "get_configs", "is_custom_runner", "is_path", "module", "presets", "search_seeds",
           "split_spec", "MLP_MITIGATIONS", "VERDICT_SEEDS", "LONG_RUN_SEEDS", "REVISED_SEEDS", "baselines", "searched"]

#: The mitigation strengths of the paper's MLP experiments (docs/protocol.md, Mitigations);
#: the ResNet-18 and T5 experiments start from these and change what their protocol changes.
MLP_MITIGATIONS = MitigationsConfig(l2=1e-3, l2_init=0.1, shrink=0.9, perturb=0.01, shrink_perturb_at="after",
                                    redo_threshold=0.1, redo_max_fraction=0.05, redo_every=1000, redo_after=1000,
                                    spectral=0.1, spectral_target="init", cbp_rate=1e-4, cbp_maturity=100.0,
                                    cbp_decay=0.99)

#: Seeds of the runs that decide claims: no search and no earlier committed run uses them.
VERDICT_SEEDS = tuple(range(10, 20))
#: Seeds of a longer-E verdict run, fresh again (it must not reuse the E = 10 run's lanes).
LONG_RUN_SEEDS = tuple(range(20, 28))
#: Seeds of a question whose criterion changed after its runs were seen: it is decided again on these.
REVISED_SEEDS = tuple(range(28, 36))

def baselines(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with every mitigation crossed with its abrupt lanes (strengths from
    ``cfg.mitigations``), beside its gradual schedule: the ``*-baselines`` presets."""
    return dataclasses.replace(cfg, preset=f"{cfg.preset}-baselines",
                               sweep=dataclasses.replace(cfg.sweep, methods=METHODS))


def searched(cfg: ExperimentConfig, search: tuple, name: str, preset: str, **sweep) -> ExperimentConfig:
    """``cfg`` at the setting of the search candidate ``name`` (its ``--set`` overrides, seeds
    excepted: the verdict run sets its own), with every arm of ``cfg`` and the ``sweep`` fields
    given: the verdict preset of a setting chosen by ``gradual-jax search``."""
    (candidate,) = [c for c in search if c.name == name]
    setting = [o for o in candidate.overrides if not o.startswith("sweep.seeds=")]
    found = apply_overrides(cfg, setting)
    return dataclasses.replace(found, preset=preset, sweep=dataclasses.replace(found.sweep, **sweep))
