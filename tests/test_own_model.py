"""A model written outside the package joins through one registry line and trains end to end.

``docs/examples/plain_mlp_model.py`` (named in the README) registers an MLP without LayerNorm;
here its forward pass is checked against NumPy, the config accepts its name (and refuses it for a
text family), and a tiny run of its preset, with ReDo on its units, goes through the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flax import nnx

from gradual_jax import experiments, models
from gradual_jax.config import ConfigError, apply_overrides, validate
from tests.conftest import assert_readme_shows, example_fixture, run_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "plain_mlp_model.py"
TINY = ["task.num_tasks=2", "sweep.seeds=0", "data.train_per_class=4", "protocol.epochs_per_task=2",
        "protocol.batch_size=8", "sweep.deltas=0.5", "model.hidden_sizes=16,16"]


example = example_fixture(EXAMPLE, models.MODELS, "plain_mlp")


def test_the_readme_shows_the_example_and_its_command():
    assert_readme_shows("### A model", EXAMPLE)


def test_forward_and_units_against_numpy(example):
    spec = models.get("plain_mlp")
    cfg = apply_overrides(example.cpu(), ["model.hidden_sizes=8,6"])
    model = spec.build(cfg.model, models.DataShape((3, 4, 1), 5), nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(7, 3, 4, 1)).astype(np.float32)
    h = x.reshape(7, -1)
    for linear in model.hidden:
        h = np.maximum(h @ np.asarray(linear.kernel[...]) + np.asarray(linear.bias[...]), 0)
    want = h @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    np.testing.assert_allclose(np.asarray(model(x)), want, rtol=1e-5, atol=1e-5)
    layers = spec.unit_layers(nnx.state(model, nnx.Param))
    assert [(u.kernel, u.out_kernel) for u in layers] == [("hidden/0/kernel", "hidden/1/kernel"),
                                                          ("hidden/1/kernel", "head/kernel")]


def test_config_takes_its_name_for_images_only(example):
    validate(example.cpu())
    text = apply_overrides(experiments.get_config("fig2-seq2seq", "cpu"), [])
    with pytest.raises(ConfigError, match="model.name='plain_mlp' does not fit") as err:
        validate(dataclasses.replace(text, model=dataclasses.replace(text.model, name="plain_mlp")))
    assert "\n" not in str(err.value) and "t5" in str(err.value)


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_tiny_run_of_its_preset(example, tmp_path):
    out = run_example(EXAMPLE, tmp_path, [*TINY, "sweep.methods=none,redo", "mitigations.redo_every=2",
                                          "mitigations.redo_after=0"])
    frame = pd.read_csv(out / "results.csv")
    assert set(frame["method"]) == {"none", "redo"} and frame["finite"].all()
    assert frame["model"].str.startswith("plain_mlp 2x16").all()
    assert np.isfinite(frame["online_train_acc"]).all()
