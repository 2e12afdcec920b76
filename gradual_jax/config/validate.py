"""Validation: every value checked before any data is loaded or anything is compiled, each
error a one-line :class:`ConfigError` naming the key and the allowed values."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from gradual_jax import models
from gradual_jax.registry import Registry
from gradual_jax.config.overrides import field_types, is_config
from gradual_jax.config.schema import (COMPUTE_DTYPES, DATA_SOURCES, DATASETS, INITS, MAX_INT, MAX_SEED,
                                       METRICS, MIN_DELTA, ON_NONFINITE, OPTIMIZERS, SHRINK_PERTURB_AT,
                                       SPECTRAL_TARGETS, ConfigError, ExperimentConfig)
from gradual_jax.envs import families, schedules
from gradual_jax.envs.data import NUM_CLASSES
from gradual_jax.envs.data import sources as data_sources
from gradual_jax.mitigations.methods import METHODS
from gradual_jax.config import tensorboard


HOST_INTS = frozenset({"data.subset_seed"})  # integers only the host reads (numpy takes any size)


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _positive_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value!r}: expected an integer >= 1")


def _check_types(node: Any, prefix: str = "") -> None:
    for name, annotation in field_types(type(node)).items():
        key = f"{prefix}{name}"
        value = getattr(node, name)
        if is_config(value):
            _check_types(value, key + ".")
            continue
        origin = typing.get_origin(annotation)
        if origin in (types.UnionType, typing.Union):
            if value is None:
                continue
            (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
            origin = typing.get_origin(annotation)
        if origin is dict:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}={value!r}: expected a mapping of names to numbers")
            for name, item in value.items():
                _check_scalar(f"{key}.{name}", name, str)
                _check_scalar(f"{key}.{name}", item, typing.get_args(annotation)[1])
        elif origin is tuple:
            (inner,) = typing.get_args(annotation)[:1]
            if not isinstance(value, tuple) or not value:
                raise ConfigError(f"{key}={value!r}: expected a non-empty tuple of {inner.__name__}")
            for item in value:
                _check_scalar(key, item, inner)
        else:
            _check_scalar(key, value, annotation)


def _check_scalar(key: str, value: Any, kind: type) -> None:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, True)
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {kind.__name__}")
    if kind is int and abs(value) > MAX_INT and key not in HOST_INTS:
        raise ConfigError(f"{key}={value!r}: expected an integer of at most {MAX_INT:,} (counts reach the device "
                          "as 32-bit integers)")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r}: expected a finite number (not NaN or infinity)")


def _number(key: str, value: float, *, low: float = 0.0, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> None:
    """``value`` finite and within [low, high] (an open end excludes the bound)."""
    ok = math.isfinite(value) and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        where = (f"in {left}{low:g}, {high:g}{right}" if high is not None
                 else f"{'>' if low_open else '>='} {low:g}")
        raise ConfigError(f"{key}={value!r}: expected a finite number {where}")


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Check every field; return the config unchanged or raise ConfigError (the first of
    :data:`STEPS` to find a fault says what it is).

    A command validates each config once: the CLI checks every part of an experiment before the
    first part trains, and the runner, which checks whatever config it is given, finds the same
    object already checked (while no schedule, model, family or method has been registered or
    removed since, which could change the answer)."""
    seen = _checked.get(id(config))  # held here, so its id is not reused while remembered
    if seen is not None and seen[0] is config and seen[1] == Registry.changes:
        return config
    for step in STEPS:
        step(config)
    _checked[id(config)] = (config, Registry.changes)
    while len(_checked) > _CHECKED_KEPT:
        del _checked[next(iter(_checked))]
    return config


_CHECKED_KEPT = 64  # the configs remembered as checked, newest last
_checked: dict[int, tuple[ExperimentConfig, int]] = {}


def _is_text(config: ExperimentConfig) -> bool:
    return families.get(config.task.family).kind == "text"


def _check_data(config: ExperimentConfig) -> None:
    """The image data set, its source and the sizes of its fixed subsets."""
    d = config.data
    _choice("data.dataset", d.dataset, DATASETS)
    _choice("data.source", d.source, DATA_SOURCES)
    if d.source == "tfds" and not data_sources.tfds_installed():
        raise ConfigError("data.source=tfds needs tensorflow-datasets, which is not installed: "
                          "pip install -e '.[tfds]', or use data.source=auto")
    _positive_int("data.train_per_class", d.train_per_class)
    if d.test_per_class < 0:
        raise ConfigError(f"data.test_per_class={d.test_per_class}: expected an integer >= 0")
    if d.subset_seed < 0:
        raise ConfigError(f"data.subset_seed={d.subset_seed}: expected an integer >= 0")


def _check_family(config: ExperimentConfig) -> None:
    """A registered task family; an image family without a test split takes no test images."""
    d, name = config.data, config.task.family
    _choice("task.family", name, families.names())
    family = families.get(name)
    if family.kind == "image" and not family.has_test and d.test_per_class > 0:
        why = family.no_test or "it has no test split"
        raise ConfigError(f"data.test_per_class={d.test_per_class} with task.family={name}: {why}; set "
                          f"data.test_per_class=0 ({_with_test('image', 'task.family=', 'has a test split')})")


def _with_test(kind: str, prefix: str, verb: str) -> str:
    """``task.family=permuted_pixels has a test split``: the families of ``kind`` that have one."""
    return f"{' or '.join(prefix + name for name in families.with_test(kind))} {verb}"


def _check_schedules(config: ExperimentConfig) -> None:
    """Registered schedules, each one that moves something the family changes."""
    s, family = config.sweep, config.task.family
    for name in s.schedules:
        _choice("sweep.schedules", name, schedules.NAMES)
    allowed = families.schedules_for(family)
    for name in s.schedules:
        if name not in allowed:
            why = families.refusal(family, name)
            raise ConfigError(f"sweep.schedules: {name} is not available for task.family={family}; "
                              f"choose among {', '.join(allowed)}" + (f"; {why}" if why else ""))
    _positive_int("task.num_tasks", config.task.num_tasks)


def _check_protocol(config: ExperimentConfig) -> None:
    """E and B positive, k·E a whole number of epochs."""
    p = config.protocol
    _positive_int("protocol.epochs_per_task", p.epochs_per_task)
    _positive_int("protocol.batch_size", p.batch_size)
    k = p.transition_ratio
    if not math.isfinite(k) or k < 0:
        raise ConfigError(f"protocol.transition_ratio (k)={k}: expected a number >= 0")
    if abs(k * p.epochs_per_task - round(k * p.epochs_per_task)) > 1e-9:
        raise ConfigError(f"protocol.transition_ratio (k)={k}: k·E = {k * p.epochs_per_task} must be a "
                          f"whole number of epochs (E = protocol.epochs_per_task = {p.epochs_per_task})")


def _check_training_set(config: ExperimentConfig) -> None:
    """The text section for a text family; otherwise a batch no larger than the images."""
    if _is_text(config):
        _validate_text(config)
        return
    d, p = config.data, config.protocol
    num_train = d.train_per_class * NUM_CLASSES[d.dataset]
    if p.batch_size > num_train:
        raise ConfigError(f"protocol.batch_size={p.batch_size} is larger than the training set "
                          f"({num_train} = data.train_per_class × {NUM_CLASSES[d.dataset]} classes)")


def _check_model(config: ExperimentConfig) -> None:
    """A registered model that takes what the family gives, and its sizes."""
    m, family, text = config.model, config.task.family, _is_text(config)
    _choice("model.name", m.name, models.names())
    if text != (models.get(m.name).inputs == "text"):
        fitting = models.names(inputs="text" if text else "images")
        raise ConfigError(f"model.name={m.name!r} does not fit task.family={family!r}: the text families "
                          f"({', '.join(families.names('text'))}) need a text model and the image families an "
                          f"image model; for this family choose one of: {', '.join(fitting)}")
    _choice("model.init", m.init, INITS)
    _choice("model.compute_dtype", m.compute_dtype, COMPUTE_DTYPES)
    if not m.width_multiplier > 0:
        raise ConfigError(f"model.width_multiplier={m.width_multiplier}: expected a number > 0")
    for name in ("d_model", "num_heads", "d_kv", "d_ff", "num_layers"):
        _positive_int(f"model.{name}", getattr(m, name))
    for width in m.hidden_sizes:
        _positive_int("model.hidden_sizes", width)


def _check_optim(config: ExperimentConfig) -> None:
    o = config.optim
    _choice("optim.name", o.name, OPTIMIZERS)
    _number("optim.b1", o.b1, high=1, high_open=True)
    _number("optim.b2", o.b2, high=1, high_open=True)
    _number("optim.eps", o.eps, low_open=True)
    _number("optim.weight_decay", o.weight_decay)
    if o.name == "adam" and o.weight_decay != 0:
        raise ConfigError("optim.weight_decay is only used by optim.name=adamw; set it to 0 or use adamw")


def _check_seeds(config: ExperimentConfig) -> None:
    for seed in config.sweep.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"sweep.seeds: {seed} is out of range; seeds are integers in [0, {MAX_SEED}] "
                              "(the engine's seeds are int32)")


def _check_methods(config: ExperimentConfig) -> None:
    """Registered methods, each with every strength (or declared number) it reads set."""
    s, mit = config.sweep, config.mitigations
    for method in s.methods:
        _choice("sweep.methods", method, METHODS.names())
    _choice("mitigations.shrink_perturb_at", mit.shrink_perturb_at, SHRINK_PERTURB_AT)
    _choice("mitigations.spectral_target", mit.spectral_target, SPECTRAL_TARGETS)
    for method in s.methods:
        for name in METHODS.get(method).reads:
            if getattr(mit, name) is None:
                raise ConfigError(f"mitigations.{name} is not set, but sweep.methods includes {method}; set it "
                                  f"(e.g. --set mitigations.{name}=VALUE; the paper's values per model are in the "
                                  "experiments: experiments.MLP_MITIGATIONS, fig1_cifar.py, fig2_seq2seq.py)")
        for name in METHODS.get(method).numbers:
            if name not in (mit.custom or {}):
                raise ConfigError(f"mitigations.custom.{name} is not set, but sweep.methods includes {method}; "
                                  f"set it (e.g. --set mitigations.custom.{name}=VALUE)")


def _check_strengths(config: ExperimentConfig) -> None:
    """Each strength in its range; each custom number one that a registered method declares."""
    mit = config.mitigations
    if mit.redo_every is not None:
        _positive_int("mitigations.redo_every", mit.redo_every)
    if mit.redo_after is not None and mit.redo_after < 0:
        raise ConfigError(f"mitigations.redo_after={mit.redo_after}: expected an integer >= 0")
    for name in ("l2", "l2_init", "shrink", "perturb", "redo_threshold", "spectral", "cbp_rate", "cbp_maturity"):
        if getattr(mit, name) is not None:
            _number(f"mitigations.{name}", getattr(mit, name))
    for name in ("redo_max_fraction", "cbp_decay"):
        if getattr(mit, name) is not None:
            _number(f"mitigations.{name}", getattr(mit, name), high=1)
    declared = {number: method.name for method in METHODS.registered() for number in method.numbers}
    for name in mit.custom or {}:
        if name not in declared:
            known = ", ".join(f"{number} ({method})" for number, method in declared.items()) or "none"
            raise ConfigError(f"mitigations.custom.{name}: no registered method declares a number {name!r}; "
                              f"declared: {known}")


def _check_deltas(config: ExperimentConfig) -> None:
    for delta in config.sweep.deltas:
        schedules.check_delta(delta, key="sweep.deltas", error=ConfigError)
        if delta < MIN_DELTA:
            raise ConfigError(f"sweep.deltas: Δ={delta!r} is below the smallest allowed, {MIN_DELTA:g} "
                              f"({1 / MIN_DELTA:,.0f} stages per transition)")


def _check_learning_rates(config: ExperimentConfig) -> None:
    for lr in config.sweep.learning_rates:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"sweep.learning_rates: {lr} is not a positive number")


def _check_metric(config: ExperimentConfig) -> None:
    """A metric the family measures: BLEU-2 for text only, test metrics where there is a test split."""
    metric, name, text = config.metric, config.task.family, _is_text(config)
    family = families.get(name)
    _choice("metric", metric, METRICS)
    if "bleu" in metric and not text:
        raise ConfigError(f"metric={metric} is a text metric; task.family={name!r} is not a text family")
    if metric.startswith("test_"):
        if not family.has_test:
            why = f"{family.no_test}; " if family.no_test else ""
            raise ConfigError(f"metric={metric} needs a test split; task.family={name} has none "
                              f"({why}{_with_test(family.kind, '', 'has one')})")
        if not text and config.data.test_per_class == 0:
            raise ConfigError(f"metric={metric} needs a test split: set data.test_per_class >= 1")


def _check_outputs(config: ExperimentConfig) -> None:
    """Readout chunks, what a NaN does, checkpoints and snapshots."""
    r = config.run
    _positive_int("run.eval_batch_size", r.eval_batch_size)
    _choice("run.on_nonfinite", r.on_nonfinite, ON_NONFINITE)
    if r.checkpoint_every < 0:
        raise ConfigError(f"run.checkpoint_every={r.checkpoint_every}: expected an integer >= 0 (0: never)")
    _positive_int("run.checkpoints_to_keep", r.checkpoints_to_keep)
    if r.snapshot_every < 0:
        raise ConfigError(f"run.snapshot_every={r.snapshot_every}: expected an integer >= 0 (0: never)")


def _check_diagnostics(config: ExperimentConfig) -> None:
    g, m = config.diagnostics, config.model
    _positive_int("diagnostics.hessian_iters", g.hessian_iters)
    _positive_int("diagnostics.probe_size", g.probe_size)
    for tau in g.dormant_taus:
        if not 0 <= tau < 1:
            raise ConfigError(f"diagnostics.dormant_taus: {tau} must lie in [0, 1)")
    _number("diagnostics.redo_threshold", g.redo_threshold)
    if g.enabled and "hidden_sizes" in models.get(m.name).keys and not _is_text(config):
        _check_dormant_taus(config)


def _check_execution(config: ExperimentConfig) -> None:
    """How the lanes are laid out, and TensorBoard where it is asked for."""
    r = config.run
    if r.lanes_per_chunk < 0:
        raise ConfigError(f"run.lanes_per_chunk={r.lanes_per_chunk}: expected an integer >= 0 (0: one chunk)")
    if r.vmap_lanes < 0:
        raise ConfigError(f"run.vmap_lanes={r.vmap_lanes}: expected an integer >= 0 (0: automatic)")
    if r.tensorboard and not tensorboard.installed():
        raise ConfigError(f"run.tensorboard=true needs {tensorboard.WRITER_PACKAGE}, which is not installed: "
                          f"{tensorboard.INSTALL}")


def _check_unique(config: ExperimentConfig) -> None:
    """A value twice in a sweep list would train the same lanes twice into duplicate rows."""
    for name in ("seeds", "schedules", "deltas", "learning_rates", "methods"):
        values = getattr(config.sweep, name)
        repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
        if repeated:
            raise ConfigError(f"sweep.{name}: {', '.join(map(str, repeated))} given more than once; list each "
                              "value once (each lane is a distinct combination)")


def _check_step_counts(config: ExperimentConfig) -> None:
    """The step counter of a task, and a transition's stage index times its steps, are int32 on the
    device: refuse an E, k, data size or Δ that would overflow them (before any data is loaded)."""
    p, s = config.protocol, config.sweep
    if _is_text(config):
        num_train = config.text.num_train
    else:
        num_train = config.data.train_per_class * NUM_CLASSES[config.data.dataset]
    batches = -(-num_train // p.batch_size)
    epochs = round((1 + p.transition_ratio) * p.epochs_per_task)
    if epochs * batches > MAX_INT:
        raise ConfigError(f"protocol.epochs_per_task={p.epochs_per_task}: a task would take {epochs * batches:,} "
                          f"steps ((1+k)·E = {epochs} epochs of {batches} batches), more than the {MAX_INT:,} a "
                          "32-bit step counter holds")
    transition = round(p.transition_ratio * p.epochs_per_task) * batches
    for name in s.schedules:
        for delta in s.deltas:
            stages = schedules.num_stages(name, delta)
            if stages * transition > MAX_INT:
                raise ConfigError(f"sweep.deltas: Δ={delta:g} gives {name} {stages:,} stages over {transition:,} "
                                  f"transition steps, whose product passes the {MAX_INT:,} a 32-bit counter holds; "
                                  "use a larger Δ or fewer epochs")


def _check_dormant_taus(config: ExperimentConfig) -> None:
    """A unit is dormant at τ when active on ≤ τ of the n probe inputs; a τ > 0 with τ·n < 1
    counts exactly the units that τ = 0 counts (never active), so it is refused."""
    d, g = config.data, config.diagnostics
    classes = NUM_CLASSES[d.dataset]
    num_train = d.train_per_class * classes
    n = min(g.probe_size, num_train)
    for tau in g.dormant_taus:
        if tau <= 0 or tau * n >= 1 - 1e-9:
            continue
        need = math.ceil((1 - 1e-9) / tau)  # the fewest probe inputs with τ·n ≥ 1
        fixes = [f"diagnostics.probe_size ≥ {need}"] if g.probe_size < need else []
        if num_train < need:  # n is capped by the training set
            fixes.append(f"data.train_per_class ≥ {math.ceil(need / classes)} (n is capped by the training set, "
                         f"{num_train} = data.train_per_class × {classes} classes)")
        raise ConfigError(f"diagnostics.dormant_taus: τ={tau:g} needs n ≥ {need} probe inputs (τ·n ≥ 1): set "
                          f"{' and '.join(fixes)}; with n = {n} a unit active on ≤ τ of them is never active, "
                          "as at τ = 0")


def _validate_text(config: ExperimentConfig) -> None:
    x, p = config.text, config.protocol
    for name in ("num_train", "num_test", "input_words", "target_words", "word_len", "bleu_examples", "beam_size"):
        _positive_int(f"text.{name}", getattr(x, name))
    if not isinstance(x.max_input_len, int) or x.max_input_len < 2:
        raise ConfigError(f"text.max_input_len={x.max_input_len!r}: expected an integer >= 2 (a token and eos)")
    if p.batch_size > x.num_train:
        raise ConfigError(f"protocol.batch_size={p.batch_size} is larger than the training set "
                          f"(text.num_train={x.num_train} pairs)")
    natural = x.input_words * (x.word_len + 1)
    if any(name.startswith("output") for name in config.sweep.schedules) and x.max_input_len < natural:
        raise ConfigError(f"sweep.schedules: output interpolation on the cipher needs whole inputs; raise "
                          f"text.max_input_len={x.max_input_len} to {natural}")
    if x.test_from_train and x.num_test > x.num_train:
        raise ConfigError(f"text.test_from_train needs text.num_test ({x.num_test}) <= text.num_train ({x.num_train})")


# What validate checks, in order: each step one group of fields.
STEPS = (_check_types, _check_data, _check_family, _check_schedules, _check_protocol, _check_training_set,
         _check_model, _check_optim, _check_seeds, _check_methods, _check_strengths, _check_deltas, _check_unique,
         _check_step_counts, _check_learning_rates, _check_metric, _check_outputs, _check_diagnostics,
         _check_execution)
