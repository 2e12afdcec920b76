"""gradual-jax's benchmarks, run from the repository root as modules: ``python -m benchmarks.compare``.

Importing the package sets the ``gradual-jax`` command's XLA flags before any benchmark imports
JAX, so every script measures what the command runs (``benchmarks/README.md``).
"""

from benchmarks.common import apply_cli_xla_flags

apply_cli_xla_flags()
