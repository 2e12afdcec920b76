"""The experiment catalogue: experiments by name or by file, their presets, searches and claims.

The experiments themselves live in ``gradual_jax.experiments`` (one module per figure; the
folder ``experiments/`` at the top of the checkout, installed inside the package, so that no
other project's top-level ``experiments`` can shadow it) or in a researcher's own file. This
module finds them, so that the layers which read them (the report, the search, the CLI) need not
import that package. Experiment modules are imported on demand, by name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from gradual_jax.config import ConfigError, ExperimentConfig, apply_overrides

PACKAGE = "gradual_jax.experiments"
CLAIMS_MODULE = f"{PACKAGE}.claims"  # the paper's claims and the evidence declared for each

# experiment name (CLI) -> module of PACKAGE
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
    return importlib.import_module(f"{PACKAGE}.{MODULES[name]}")


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
    not_callable = [name for name, make in presets_.items() if not callable(make)]
    if not_callable:
        raise ConfigError(f"experiment file {path}: PRESETS[{not_callable[0]!r}] is "
                          f"{type(presets_[not_callable[0]]).__name__}, not a function returning an ExperimentConfig")
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


def search_seeds(name: str) -> set[int]:
    """Every seed the candidates of the experiment's searches train (``SEARCH`` and each of
    ``SEARCHES``): a verdict run must not reuse them."""
    mod = module(name)
    candidates = [*(getattr(mod, "SEARCH", None) or ()),
                  *(c for found in (getattr(mod, "SEARCHES", None) or {}).values() for c in found)]
    if not candidates:
        return set()
    base = get_config(name, "cpu")
    return {seed for c in candidates for seed in apply_overrides(base, list(c.overrides)).sweep.seeds}


def user_claims(files: Sequence[str | Path]) -> tuple:
    """The ``CLAIMS`` of researchers' own experiment files."""
    return tuple(c for f in dict.fromkeys(map(str, files)) for c in getattr(module(f), "CLAIMS", ()))


def claims(files: Sequence[str | Path] = ()) -> tuple:
    """What ``gradual-jax report`` decides: the paper's claims (``experiments/claims.py``), then
    those of the researchers' experiment ``files``."""
    return importlib.import_module(CLAIMS_MODULE).CLAIMS + user_claims(files)
