"""The XLA flags the CLI sets before importing JAX (gradual_jax/runner/xla_flags.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradual_jax.runner import xla_flags
from gradual_jax.runner.xla_flags import OPT_OUT_ENV, YNN_FUSION_FLAG, xla_flags_with_defaults

ROOT = Path(__file__).resolve().parent.parent
OK = xla_flags.VERIFIED_JAXLIB[0]
FLAG = f"{YNN_FUSION_FLAG}="


def test_added_when_unset_or_empty():
    assert xla_flags_with_defaults({}, OK) == FLAG
    assert xla_flags_with_defaults({"XLA_FLAGS": "  "}, OK) == FLAG


def test_appended_to_the_users_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2 --xla_dump_to=/tmp/d"}
    assert xla_flags_with_defaults(env, OK) == (
        "--xla_force_host_platform_device_count=2 --xla_dump_to=/tmp/d " + FLAG)


@pytest.mark.parametrize("users", [f"{YNN_FUSION_FLAG}=dot", f"{YNN_FUSION_FLAG}=-reduce", FLAG,
                                   f"--xla_dump_to=/tmp/d {YNN_FUSION_FLAG}=eltwise,dot"])
def test_the_users_own_setting_wins(users):
    assert xla_flags_with_defaults({"XLA_FLAGS": users}, OK) is None


def test_a_flag_with_a_longer_name_is_not_mistaken_for_ours():
    env = {"XLA_FLAGS": f"{YNN_FUSION_FLAG}_something=1"}
    assert xla_flags_with_defaults(env, OK) == f"{YNN_FUSION_FLAG}_something=1 {FLAG}"


@pytest.mark.parametrize("value,opted_out", [("1", True), ("true", True), ("yes", True),
                                             ("0", False), ("", False), ("false", False)])
def test_opt_out(value, opted_out):
    env = {OPT_OUT_ENV: value, "XLA_FLAGS": "--xla_dump_to=/tmp/d"}
    got = xla_flags_with_defaults(env, OK)
    assert (got is None) == opted_out
    if not opted_out:
        assert got == f"--xla_dump_to=/tmp/d {FLAG}"


def test_unverified_jaxlib_or_no_cpu_platform_leaves_flags_alone():
    assert xla_flags_with_defaults({}, "0.0.1") is None  # an unknown flag would abort XLA
    assert xla_flags_with_defaults({}, None) is None
    assert xla_flags_with_defaults({"JAX_PLATFORMS": "cuda"}, OK) is None
    assert xla_flags_with_defaults({"JAX_PLATFORMS": "cuda,cpu"}, OK) == FLAG
    assert xla_flags_with_defaults({"JAX_PLATFORMS": "cpu"}, OK) == FLAG


def test_installed_jaxlib_is_a_verified_one():
    """If this fails after a jaxlib upgrade, check the flags still parse (an unknown XLA flag aborts
    the process: ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python -c 'import jax; jax.numpy.ones(1)'``)
    and add the version to VERIFIED_JAXLIB; the CLI meanwhile runs with JAX's defaults."""
    assert xla_flags.installed_jaxlib_version() in xla_flags.VERIFIED_JAXLIB


def test_no_effect_once_jax_is_imported():
    import jax  # noqa: F401

    env: dict[str, str] = {}
    assert xla_flags.set_default_xla_flags(env) is None and env == {}


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", OPT_OUT_ENV)}
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


PROBE = ("import os, sys; from gradual_jax import cli; import jax, jax.numpy as jnp; "
         "assert float(jax.jit(lambda x: x @ x)(jnp.ones((4, 4))).sum()) == 64.0; "
         "print(os.environ.get('XLA_FLAGS'))")


@pytest.mark.slow
def test_cli_sets_the_flag_before_jax_and_xla_accepts_it():
    """In a fresh process: importing the CLI sets the flag, and XLA parses it and compiles."""
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                          env=_child_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == f"--xla_force_host_platform_device_count=2 {FLAG}"

    opted_out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                               env=_child_env(**{OPT_OUT_ENV: "1"}), timeout=120)
    assert opted_out.returncode == 0, opted_out.stderr[-2000:]
    assert opted_out.stdout.strip().splitlines()[-1] == "None"


def test_cli_list_runs_with_the_flag():
    proc = subprocess.run([sys.executable, "-m", "gradual_jax.cli", "list"], capture_output=True, text=True,
                          cwd=ROOT, env=_child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fig1-mnist" in proc.stdout
