"""TensorBoard logging's one optional dependency, checked when a config is validated (before any
compute), so it lives with the config rather than with the writer that uses it."""

from __future__ import annotations

import importlib.util

WRITER_PACKAGE = "tensorboardX"
INSTALL = "pip install -e '.[tensorboard]'"


def installed() -> bool:
    """Whether the writer library can be imported (checked without importing it)."""
    return importlib.util.find_spec(WRITER_PACKAGE) is not None
