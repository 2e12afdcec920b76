"""A mitigation written outside the package joins through one registry line and trains end to end.

``docs/examples/weight_clipping.py`` registers weight clipping (every parameter clipped to
[-c, c] after each update, c = ``mitigations.custom.clip``). Here its hook is checked by hand,
the config asks for its number and refuses others in one line, a sweep varies c per lane inside
one program, and tiny runs through the command line keep every weight within c, train exactly
as without the method when c is larger than every weight, and name it by its words.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import pytest

from gradual_jax.analysis import plotting
from gradual_jax.config import ConfigError, apply_overrides, validate
from gradual_jax.core import engine
from gradual_jax.mitigations.methods import METHODS
from gradual_jax.runner.sweep import Lane, mitigation_structure, to_hparams
from tests.conftest import assert_readme_shows, example_fixture, run_example, tiny_data, tiny_program

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "weight_clipping.py"
NAME = "weight_clipping"
TINY = ["task.num_tasks=2", "sweep.seeds=0", "data.train_per_class=4", "protocol.epochs_per_task=2",
        "protocol.batch_size=8", "sweep.schedules=abrupt", "model.hidden_sizes=16", "diagnostics.enabled=false"]


example = example_fixture(EXAMPLE, METHODS, NAME)


def test_the_readme_shows_the_example_and_its_command():
    assert_readme_shows("### A mitigation", EXAMPLE)


def test_the_hook_clips_by_hand(example):
    params = {"w": jnp.asarray([[-3.0, 0.2], [0.5, 7.0]]), "b": jnp.asarray([-0.49, 0.51])}
    out = example.clip_weights(params, {"clip": jnp.float32(0.5)}, jax.random.key(0))
    np.testing.assert_array_equal(out["w"], np.float32([[-0.5, 0.2], [0.5, 0.5]]))
    np.testing.assert_array_equal(out["b"], np.float32([-0.49, 0.5]))


def test_the_config_asks_for_its_number_and_only_declared_ones(example):
    cfg = validate(example.cpu())
    assert cfg.sweep.methods == ("none", NAME) and cfg.mitigations.custom == {"clip": 1.0}
    for overrides, start in [(["mitigations.custom=none"], "mitigations.custom.clip is not set, but sweep.methods "
                                                            f"includes {NAME}"),
                             (["mitigations.custom.clipp=1"], "mitigations.custom.clipp: no registered method "
                                                             f"declares a number 'clipp'; declared: clip ({NAME})"),
                             (["mitigations.custom.clip=nan"], "mitigations.custom.clip=nan: expected a finite"),
                             (["sweep.methods=none,weight_clip"], "sweep.methods='weight_clip' is not allowed")]:
        with pytest.raises(ConfigError) as err:
            validate(apply_overrides(cfg, overrides))
        assert str(err.value).startswith(start) and "\n" not in str(err.value), str(err.value)
    assert apply_overrides(cfg, ["mitigations.custom.clip=0.25"]).mitigations.custom == {"clip": 0.25}


def test_its_number_is_a_lane_leaf_and_built_in_sweeps_carry_none(example):
    cfg = example.cpu()
    lanes = [Lane(0, "abrupt", None, 1e-3, "none"), Lane(0, "abrupt", None, 1e-3, NAME)]
    numbers = to_hparams(lanes, cfg.mitigations).mitigation.custom[NAME]
    np.testing.assert_array_equal(numbers.on, [False, True])
    np.testing.assert_array_equal(numbers.numbers["clip"], [1.0, 1.0])
    assert mitigation_structure(lanes, cfg.mitigations).custom == ((NAME, METHODS.get(NAME).hooks),)
    plain = to_hparams(lanes[:1], cfg.mitigations)
    assert plain.mitigation.custom == {} and mitigation_structure(lanes[:1], cfg.mitigations).custom == ()


def test_lanes_of_one_program_clip_at_their_own_c(example):
    """Three lanes in one program: no method, c = 1e30 (larger than any weight: exactly no
    method) and c = 0.05 (binding), c varied per lane as a traced leaf."""
    cfg = example.cpu()
    lanes = [Lane(0, "abrupt", None, 3e-3, "none"), Lane(0, "abrupt", None, 3e-3, NAME),
             Lane(0, "abrupt", None, 3e-3, NAME)]
    program = tiny_program(mitigation=mitigation_structure(lanes, cfg.mitigations))
    hp = to_hparams(lanes, cfg.mitigations)
    custom = hp.mitigation.custom[NAME]
    custom = custom.replace(numbers={"clip": jnp.asarray([0.05, 1e30, 0.05], jnp.float32)})
    hp = hp.replace(mitigation=hp.mitigation.replace(custom={NAME: custom}))
    state = engine.init_lanes(program, hp)
    run_task = engine.make_task_fn(program)
    losses = []
    for task in range(2):
        state, metrics = run_task(hp, state, tiny_data(), jnp.int32(task))
        losses.append(np.asarray(metrics.epoch_loss))
    for loss in losses:
        np.testing.assert_array_equal(loss[1], loss[0])  # c = 1e30 trains exactly as no method
        assert not np.array_equal(loss[2], loss[0])  # a binding c changes training
    for leaf in jax.tree.leaves(state.params):
        leaf = np.asarray(leaf)
        np.testing.assert_array_equal(leaf[1], leaf[0])
        assert np.abs(leaf[2]).max() <= np.float32(0.05)
    assert max(np.abs(np.asarray(leaf[2])).max() for leaf in jax.tree.leaves(state.params)) == np.float32(0.05)


def _run(tmp_path, overrides) -> Path:
    return run_example(EXAMPLE, tmp_path, [*TINY, *overrides])


def _parameters(out: Path) -> list[np.ndarray]:
    """Every lane's parameters and readout parameters in the run's last checkpoint."""
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    tree = ocp.StandardCheckpointer().restore(out / "checkpoints" / str(steps[-1]) / "state")
    return [np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
            if any(getattr(k, "key", None) in ("params", "readout_params") for k in path)]


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_large_c_runs_exactly_as_no_method_and_is_named_by_its_words(example, tmp_path):
    out = _run(tmp_path, ["mitigations.custom.clip=1e30"])
    frame = pd.read_csv(out / "results.csv")
    none, clipped = (frame[frame["method"] == m].reset_index(drop=True) for m in ("none", NAME))
    assert len(none) == len(clipped) == 2
    for column in ("online_train_acc", "online_train_loss", "train_acc", "train_loss"):
        np.testing.assert_array_equal(clipped[column], none[column], err_msg=column)
    epochs = pd.read_csv(out / "epochs.csv")
    mine, plain = (epochs[epochs["arm"] == arm].drop(columns=["lane", "arm"]).reset_index(drop=True)
                   for arm in (f"abrupt + {NAME}", "abrupt"))
    assert len(mine) == 12  # 2 tasks of (1 + k)·E = 6 epochs
    pd.testing.assert_frame_equal(mine, plain)
    assert f"abrupt + {NAME}" in (out / "figure-summary.md").read_text()
    assert plotting.arm_name("abrupt", np.nan, NAME) == "abrupt + weight clipping"
    assert (out / "figure.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_no_weight_exceeds_c(example, tmp_path):
    c = 0.02
    out = _run(tmp_path, [f"sweep.methods={NAME}", f"mitigations.custom.clip={c}"])
    assert set(pd.read_csv(out / "results.csv")["method"]) == {NAME}
    leaves = _parameters(out)
    assert leaves and all(np.abs(leaf).max() <= np.float32(c) for leaf in leaves)
    assert max(np.abs(leaf).max() for leaf in leaves) == np.float32(c)  # the bound binds
