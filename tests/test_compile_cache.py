"""The persistent compilation cache: where it lives, how it is turned off, and that a repeat
run reads every program from it instead of compiling it again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jaxlib
import pandas as pd
import pytest

from gradual_jax.runner import compile_cache


@pytest.mark.parametrize("value", ["off", "0", "OFF", "false", "no"])
def test_off_turns_it_off(value):
    assert compile_cache.chosen_dir({compile_cache.ENV: value}) is None


def test_a_jax_cache_dir_of_the_users_own_is_left_alone():
    assert compile_cache.chosen_dir({"JAX_COMPILATION_CACHE_DIR": "/somewhere"}) is None


def test_an_explicit_folder(tmp_path):
    assert compile_cache.chosen_dir({compile_cache.ENV: str(tmp_path / "c")}) == tmp_path / "c"


def test_default_is_per_jaxlib_version_and_machine_under_the_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = compile_cache.chosen_dir({})
    assert folder.parent == tmp_path / "gradual-jax"
    assert jaxlib.__version__ in folder.name and compile_cache.machine_tag() in folder.name


def test_machine_tag_changes_with_the_instruction_set(monkeypatch):
    import builtins
    import io

    real_open = builtins.open

    def fake_cpuinfo(flags):
        def opener(path, *args, **kwargs):
            if path == "/proc/cpuinfo":
                return io.StringIO(f"processor\t: 0\nflags\t\t: {flags}\n")
            return real_open(path, *args, **kwargs)
        return opener

    monkeypatch.setattr(builtins, "open", fake_cpuinfo("fpu sse2 avx2"))
    with_avx2 = compile_cache.machine_tag()
    monkeypatch.setattr(builtins, "open", fake_cpuinfo("fpu sse2 avx2 avx512f"))
    assert compile_cache.machine_tag() != with_avx2


TINY = ["task.num_tasks=2", "sweep.seeds=0", "data.train_per_class=4", "protocol.epochs_per_task=2",
        "protocol.batch_size=8", "model.hidden_sizes=8"]


def _run(out: Path, cache: Path) -> None:
    argv = [sys.executable, "-m", "gradual_jax.cli", "run", "fig1-mnist", "--preset", "cpu", "--out", str(out),
            "--no-progress", *[a for s in TINY for a in ("--set", s)]]
    env = {**os.environ, compile_cache.ENV: str(cache)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    subprocess.run(argv, check=True, env=env, capture_output=True, text=True)


def _entries(cache: Path) -> set[str]:
    return {p.name for p in cache.rglob("*-cache")}


@pytest.mark.slow
@pytest.mark.needs_mnist
def test_a_repeat_run_reads_its_programs_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    _run(tmp_path / "first", cache)
    first = _entries(cache)
    assert first, "the first run stored no compiled program"
    _run(tmp_path / "second", cache)
    assert _entries(cache) == first  # every program was found: nothing new was compiled and stored
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "first" / "results.csv"),
                                  pd.read_csv(tmp_path / "second" / "results.csv"))
