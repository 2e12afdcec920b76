"""Experiment configs, one module per paper figure; configs are code.

Each module defines ``DESCRIPTION``, ``CLAIMS`` (the paper's sentences it tests, declared with
their evidence in :mod:`experiments.claims`) and ``PRESETS``: preset name -> function returning an
:class:`~gradual_jax.config.ExperimentConfig`, or, for a multi-part experiment (``PARTS``),
a dict part name -> config (each part runs into ``OUT/<part>``). Every experiment has a
``paper`` preset (the paper's numbers, see ``docs/protocol.md``) and a ``cpu`` preset that
runs on a 2-core CPU in minutes. A module may declare ``SEARCH``: settings to try, cheapest
first, for one in which the abrupt arm loses plasticity (:mod:`gradual_jax.analysis.search`,
``gradual-jax search``). A module with a ``run(out_dir, preset)`` function (the
theory check) is run by that function instead of the training engine.

A researcher's own experiment needs no edit of this package: any Python file with the same
``PRESETS`` (and optionally ``DESCRIPTION``, ``CLAIMS``) is an experiment, named by its path:
``gradual-jax run path/to/my_exp.py --preset cpu`` or ``path/to/my_exp.py:cpu``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from gradual_jax.config import METHODS, ConfigError, ExperimentConfig, MitigationsConfig, apply_overrides

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


def is_path(name: str) -> bool:
    """An experiment named by its file (``my_exp.py``, ``./exps/a.py``) rather than by its name."""
    return name.endswith(".py") or "/" in name


def split_spec(spec: str) -> tuple[str, str | None]:
    """``path/to/my_exp.py:study`` -> (``path/to/my_exp.py``, ``study``); a name or a path
    without a preset -> (spec, None)."""
    head, sep, tail = spec.rpartition(":")
    if sep and is_path(head) and tail and "/" not in tail:
        return head, tail
    return spec, None


def module(name: str) -> ModuleType:
    """The module of an experiment, by its name (``fig1-mnist``) or by its file."""
    if is_path(name):
        return _load_file(str(Path(name).resolve()))
    if name not in MODULES:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(MODULES)}, "
                          "or the path of your own experiment file (see `gradual-jax list`)")
    return importlib.import_module(f"{__name__}.{MODULES[name]}")


@functools.cache
def _load_file(path: str) -> ModuleType:
    """Imports an experiment file once per process (so its presets and claims are the same
    objects wherever they are read) and checks it defines ``PRESETS``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"experiment file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"gradual_jax_user_experiment_{file.stem}", file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(mod)
    except Exception as err:
        del sys.modules[spec.name]
        raise ConfigError(f"experiment file {path} failed to import: {type(err).__name__}: {err}") from None
    presets_ = getattr(mod, "PRESETS", None)
    if not isinstance(presets_, dict) or not presets_:
        raise ConfigError(f"experiment file {path} defines no PRESETS (a dict: preset name -> function "
                          "returning an ExperimentConfig)")
    return mod


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


def searched(cfg: ExperimentConfig, search: tuple, name: str, preset: str, **sweep) -> ExperimentConfig:
    """``cfg`` at the sizes of the search candidate ``name`` (its ``--set`` overrides, seeds
    excepted: the verdict run sets its own), with every arm of ``cfg`` and the ``sweep`` fields
    given: the verdict preset of a setting chosen by ``gradual-jax search``."""
    (candidate,) = [c for c in search if c.name == name]
    sizes = [o for o in candidate.overrides if not o.startswith("sweep.")]
    found = apply_overrides(cfg, sizes)
    return dataclasses.replace(found, preset=preset, sweep=dataclasses.replace(found.sweep, **sweep))


def search_seeds(name: str) -> set[int]:
    """Every seed the candidates of the experiment's ``SEARCH`` train (a verdict run must not reuse them)."""
    mod = module(name)
    candidates = getattr(mod, "SEARCH", ())
    if not candidates:
        return set()
    base = get_config(name, "cpu")
    return {seed for c in candidates for seed in apply_overrides(base, list(c.overrides)).sweep.seeds}


def user_claims(files: Sequence[str | Path]) -> tuple:
    """The ``CLAIMS`` of researchers' own experiment files."""
    return tuple(c for f in dict.fromkeys(map(str, files)) for c in getattr(module(f), "CLAIMS", ()))


def catalog(files: Sequence[str | Path] = ()):
    """What ``gradual-jax report`` decides: the paper's claims (``experiments/claims.py``), then
    those of the researchers' experiment ``files``, with the presets and searches behind them."""
    from experiments import claims
    from gradual_jax.analysis.report import Catalog

    return Catalog(claims.CLAIMS + user_claims(files), get_configs, search_seeds)
