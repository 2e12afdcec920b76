"""Fixed tiny runs of every model, task family and schedule, against recorded numbers.

A refactor of the engine, the runner or the config system must leave the numbers a run
produces unchanged. Each case below is a real `gradual-jax run` at tiny size through the
command line (the interface that stays fixed while the modules behind it move); its metric
columns are compared with ``tests/data/fixed_runs.csv``, recorded with this code.

Recording (only after a change that is meant to alter the numbers, e.g. a new random
stream, and say why in the commit):

    python tests/test_fixed_runs.py --record

On the machine that recorded them (``fixed_runs.machine.json``: CPU model and identity, JAX
version) the runs are bit-identical and every case is compared at float32 rounding. Most cases
give the same numbers on other x86 CPUs too; two do not. On another machine the ResNet's case,
whose convolutions XLA compiles to other kernels per CPU (random labels amplify the last bits;
the case is kept to three steps per task), is compared within what rounding can move (losses and
norms to 0.5 %, accuracies to one example of its 40 images). Of the permuted-pixels case only the spectral lane
(an SVD of each weight matrix at init, a power iteration at every step) moved on a CPU of
another generation; Adam turns last-bit differences in near-zero gradients into full-size
updates, so on another CPU that lane is compared within rounding on its first task and not after it (on
this data its numbers move by up to 0.2 % in the first task and by up to 5 % in the second).
Whenever rows are loosened, the test says which and why: a line in the notes section at the end
of the test output (``-q`` included; the ``note`` fixture of ``conftest.py``).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradual_jax import cli

REFERENCE = Path(__file__).parent / "data" / "fixed_runs.csv"
MACHINE = REFERENCE.with_suffix(".machine.json")
TINY_IMAGES = ["task.num_tasks=2", "sweep.seeds=0", "data.train_per_class=4", "protocol.epochs_per_task=2",
               "protocol.batch_size=8", "sweep.deltas=0.5"]
TINY_TEXT = ["task.num_tasks=2", "sweep.seeds=0", "text.num_train=16", "text.num_test=8", "text.bleu_examples=8",
             "protocol.epochs_per_task=2", "protocol.batch_size=8", "sweep.deltas=0.5", "model.d_model=16",
             "model.num_heads=2", "model.d_kv=8", "model.d_ff=32", "text.beam_size=2"]
# case -> (experiment, overrides). Together: MLP, CReLU MLP, ResNet-18, T5; random labels,
# permuted pixels, random seq2seq, bigram cipher; every schedule; mitigations; diagnostics.
CASES = {
    "mlp-random-labels": ("fig1-mnist", [*TINY_IMAGES, "model.hidden_sizes=16,16",
                                         "sweep.schedules=abrupt,output_interp,output_mix,task_sampling",
                                         "sweep.methods=none,shrink_perturb,redo,l2_init",
                                         "diagnostics.enabled=true", "diagnostics.hessian_iters=3",
                                         "diagnostics.probe_size=16"]),
    "mlp-permuted-pixels": ("fig1-mnist", [*TINY_IMAGES, "model.hidden_sizes=16", "task.family=permuted_pixels",
                                           "data.test_per_class=2", "sweep.schedules=abrupt,input_interp,task_sampling",
                                           "sweep.methods=none,spectral,cbp,l2"]),
    "crelu-random-labels": ("fig1-mnist", [*TINY_IMAGES, "model.name=crelu_mlp", "model.hidden_sizes=8",
                                           "sweep.schedules=abrupt,output_interp"]),
    "resnet-random-labels": ("fig1-cifar", [*TINY_IMAGES, "model.width_multiplier=0.0625", "protocol.epochs_per_task=1",
                                            "protocol.batch_size=40", "sweep.schedules=abrupt,output_interp",
                                            "sweep.methods=none,redo", "mitigations.redo_every=1"]),
    "t5-random-seq2seq": ("fig2-seq2seq", [*TINY_TEXT, "sweep.schedules=abrupt,task_sampling"]),
    "t5-bigram-cipher": ("fig4-cipher", [*TINY_TEXT, "sweep.schedules=abrupt,task_sampling,output_interp"]),
}
# case -> why its last bits depend on the CPU, and its rows (compared within rounding, not compared)
MACHINE_DEPENDENT = {
    "resnet-random-labels": (
        "XLA compiles the convolutions to other kernels per CPU",
        lambda frame: (np.ones(len(frame), bool), np.zeros(len(frame), bool))),
    "mlp-permuted-pixels": (
        "the spectral lane's SVD and power iteration round differently, and Adam amplifies it after the first task",
        lambda frame: ((frame["method"] == "spectral").to_numpy() & (frame["task"] == 0).to_numpy(),
                       (frame["method"] == "spectral").to_numpy() & (frame["task"] > 0).to_numpy())),
}
KEYS = ["case", "lane", "task"]
LABELS = ["schedule", "method", "delta"]  # checked too: a refactor must not reorder the lanes


def run_case(name: str, out: Path) -> pd.DataFrame:
    experiment, overrides = CASES[name]
    argv = ["run", experiment, "--preset", "cpu", "--out", str(out), "--no-progress"]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0
    frame = pd.read_csv(out / "results.csv")
    frame.insert(0, "case", name)
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Every numeric column a run measures (not the lane's settings nor the bookkeeping)."""
    settings = {"lane", "seed", "delta", "learning_rate", "epochs_per_task", "transition_ratio", "batch_size",
                "task", "samples_seen"}
    return [c for c in frame.columns if c not in settings and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])]


def machine() -> dict[str, str]:
    """What decides the last bits of a run: the CPU (its model name and, since one name covers
    several generations, its family, model and stepping) and the JAX version."""
    import jax

    info = {"machine": platform.machine(), "cpu": platform.processor(), "jax": jax.__version__}
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                      if ":" in line)
    except OSError:
        return info
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu"] = fields.get("model name", info["cpu"])
    info["cpu_id"] = " ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields)
    return info


TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def loose(column: str) -> dict[str, float]:
    """What rounding can move on another CPU: a loss or a norm by 0.5 %, an accuracy by one example."""
    examples = 20 if column.startswith("test_") else 40  # test: 2 images per class; training: 4
    return {"rtol": 0, "atol": 1 / examples + 1e-6} if "_acc" in column else {"rtol": 5e-3, "atol": 1e-6}


def machine_dependent_rows(name: str, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The rows compared loosely and the rows not compared: none on the recording machine."""
    if name not in MACHINE_DEPENDENT or json.loads(MACHINE.read_text()) == machine():
        return np.zeros(len(frame), bool), np.zeros(len(frame), bool)
    return MACHINE_DEPENDENT[name][1](frame)


def loosened(name: str, frame: pd.DataFrame, dependent: np.ndarray, skipped: np.ndarray) -> str:
    """What the test output says of a case's loosened rows: which (lane, task) and why."""
    def rows(mask):
        return ", ".join(f"lane {lane} task {task}" for lane, task in frame.loc[mask, ["lane", "task"]].to_numpy())

    return (f"{name} on {machine()['cpu']}, not the recording CPU ({MACHINE_DEPENDENT[name][0]}): "
            f"compared within rounding: {rows(dependent) or 'none'}; not compared: {rows(skipped) or 'none'}")


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[*KEYS, *LABELS, *metric_columns(frame)]]


@pytest.mark.slow
@pytest.mark.needs_mnist
@pytest.mark.parametrize("name", list(CASES))
def test_fixed_run_reproduces_recorded_numbers(name, tmp_path, note):
    got = tidy(run_case(name, tmp_path / name)).dropna(axis=1, how="all")
    want = pd.read_csv(REFERENCE)
    want = want[want["case"] == name].dropna(axis=1, how="all").reset_index(drop=True)
    assert len(want), f"no recorded numbers for {name}; record them with: python {__file__} --record"
    assert sorted(got.columns) == sorted(want.columns)
    got = got[want.columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[KEYS + LABELS].astype(str), want[KEYS + LABELS].astype(str))
    dependent, skipped = machine_dependent_rows(name, want)
    if dependent.any() or skipped.any():
        note(loosened(name, want, dependent, skipped))
    for column in metric_columns(want):
        for rows, tol in ((~dependent & ~skipped, TIGHT), (dependent, loose(column))):
            np.testing.assert_allclose(got[column].to_numpy(float)[rows], want[column].to_numpy(float)[rows],
                                       equal_nan=True, err_msg=f"{name}: {column}", **tol)


def test_loosened_rows_are_named_with_the_reason(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "machine", lambda: {"cpu": "another CPU"})
    frame = pd.DataFrame({"lane": [0, 0, 1, 1], "task": [0, 1, 0, 1],
                          "method": ["none", "none", "spectral", "spectral"]})
    dependent, skipped = machine_dependent_rows("mlp-permuted-pixels", frame)
    assert dependent.tolist() == [False, False, True, False] and skipped.tolist() == [False, False, False, True]
    text = loosened("mlp-permuted-pixels", frame, dependent, skipped)
    assert "another CPU" in text and "spectral lane" in text
    assert "within rounding: lane 1 task 0; not compared: lane 1 task 1" in text


def record(out_root: Path) -> None:
    frames = [tidy(run_case(name, out_root / name)) for name in CASES]
    REFERENCE.parent.mkdir(exist_ok=True)
    pd.concat(frames, ignore_index=True).to_csv(REFERENCE, index=False, float_format="%.9g")
    MACHINE.write_text(json.dumps(machine(), indent=1) + "\n")
    print(f"recorded {REFERENCE}")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: python {sys.argv[0]} --record")
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
