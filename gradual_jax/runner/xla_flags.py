"""XLA flags the ``gradual-jax`` command sets by default, before JAX is imported.

One flag today: ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list), which turns off
XLA:CPU's experimental YNNPACK fusions. In jax/jaxlib 0.10.2 they are on by default (dots, and
small reductions such as the bias and LayerNorm gradients); turning them off made the MLP and
vmapped ResNet-18 sweeps faster on a CPU and left T5 about unchanged (the A/B measurements
and their commands are in ``benchmarks/README.md``). On a CPU shared with another busy
process the MLP sweep was slower with the flag, hence the opt-out below. The flag only changes
how XLA compiles for the CPU; GPU and TPU programs are not affected.

Rules (:func:`xla_flags_with_defaults`, a pure function of the environment):

* the flag is *appended* to the user's ``XLA_FLAGS``; nothing the user set is removed;
* if ``XLA_FLAGS`` already names the flag (any value, e.g. ``=dot`` to keep one fusion type),
  the user's setting wins and nothing is added;
* **opt-out**: ``GRADUAL_JAX_KEEP_XLA_FLAGS=1`` leaves ``XLA_FLAGS`` exactly as it is (any value
  but empty, ``0``, ``false``, ``no``, ``off`` counts);
* nothing is added when ``JAX_PLATFORMS`` is set and does not include ``cpu`` (the flag would
  be inert), or when the installed jaxlib is not a version the flag was checked on
  (:data:`VERIFIED_JAXLIB`): XLA aborts the whole process on an XLA flag it does not know.

:func:`set_default_xla_flags` applies this to ``os.environ``. It must run before ``jax`` is
imported (XLA reads ``XLA_FLAGS`` once, when its first backend starts); if ``jax`` is already
imported it does nothing, so a library user's process never changes behaviour half-way.
``gradual_jax/cli.py`` calls it before its other imports; library users (``import gradual_jax``)
get JAX's defaults unless they set ``XLA_FLAGS`` themselves.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
DEFAULT_FLAGS = (f"{YNN_FUSION_FLAG}=",)  # empty list: every experimental YNNPACK fusion off
OPT_OUT_ENV = "GRADUAL_JAX_KEEP_XLA_FLAGS"
VERIFIED_JAXLIB = ("0.10.2",)  # jaxlib versions on which every flag above was checked to parse
_FALSE = ("", "0", "false", "no", "off")


def _flag_name(token: str) -> str:
    return "--" + token.lstrip("-").split("=", 1)[0]


def xla_flags_with_defaults(env: Mapping[str, str], jaxlib_version: str | None) -> str | None:
    """The ``XLA_FLAGS`` value to use given the environment ``env``, or ``None`` to leave it as is.

    ``jaxlib_version`` is the installed jaxlib's version string (``None``: unknown / not installed).
    """
    if env.get(OPT_OUT_ENV, "").strip().lower() not in _FALSE:
        return None
    if jaxlib_version not in VERIFIED_JAXLIB:
        return None
    platforms = env.get("JAX_PLATFORMS", "").strip().lower()
    if platforms and "cpu" not in [p.strip() for p in platforms.split(",")]:
        return None
    current = env.get("XLA_FLAGS", "")
    present = {_flag_name(tok) for tok in current.split() if tok.startswith("-")}
    missing = [flag for flag in DEFAULT_FLAGS if _flag_name(flag) not in present]
    if not missing:
        return None
    return " ".join([current.strip(), *missing]).strip()


def installed_jaxlib_version() -> str | None:
    """jaxlib's version from its package metadata, without importing it."""
    from importlib import metadata

    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def set_default_xla_flags(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``XLA_FLAGS`` in ``environ`` (default ``os.environ``) by :func:`xla_flags_with_defaults`.

    Returns the new value, or ``None`` when nothing changed (opted out, already set, unverified
    jaxlib, or ``jax`` already imported, when the flags could no longer take effect).
    """
    if "jax" in sys.modules or "jaxlib" in sys.modules:
        return None
    environ = os.environ if environ is None else environ
    value = xla_flags_with_defaults(environ, installed_jaxlib_version())
    if value is not None:
        environ["XLA_FLAGS"] = value
    return value
