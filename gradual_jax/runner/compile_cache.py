"""A persistent XLA compilation cache, on by default for the ``gradual-jax`` command.

Every run compiles its whole sweep as one program; compiling it again for a repeat run, a
resume or a second seed set costs seconds to a minute on a CPU. With the cache a repeat
compile is a file read. The cache lives under the user's cache folder
(``$XDG_CACHE_HOME/gradual-jax`` or ``~/.cache/gradual-jax``), one sub-folder per jaxlib
version and machine type: XLA's CPU executables are built for the host's instruction set,
so a home folder shared between a login node and compute nodes must not mix them.

``GRADUAL_JAX_COMPILE_CACHE=off`` turns it off; ``GRADUAL_JAX_COMPILE_CACHE=DIR`` puts it in
``DIR``; a ``JAX_COMPILATION_CACHE_DIR`` of your own is left as it is. Several runs at once
share the cache safely: with a size limit set, JAX takes a file lock (``filelock``) around
every read and write, and evicts the least recently used entries beyond it.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

ENV = "GRADUAL_JAX_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")
MAX_BYTES = 4 * 2**30


def machine_tag() -> str:
    """What a CPU executable depends on: the architecture and the instruction-set flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:10]}"


def default_dir() -> Path:
    import jaxlib

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gradual-jax" / f"xla-jaxlib{jaxlib.__version__}-{machine_tag()}"


def chosen_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The cache folder the environment asks for; None when the cache is off or the user set
    ``JAX_COMPILATION_CACHE_DIR`` (then JAX's own setting applies)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV, "").strip()
    if value.lower() in OFF or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return Path(value).expanduser() if value else default_dir()


def enable() -> Path | None:
    """Turns the cache on (before the first compile) and returns its folder, or None."""
    folder = chosen_dir()
    if folder is None:
        return None
    import jax

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # an unwritable cache folder must not stop a run: it compiles as before
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # enables eviction and its file lock
    return folder
