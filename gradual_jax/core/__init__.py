"""The compiled program: per-lane hyperparameters and state as pytrees, the training step, the
task segment and its readout, ``vmap``-ed over lanes and ``jit``-ed once
(:mod:`~gradual_jax.core.engine`), and the plasticity diagnostics it computes at each readout
(:mod:`~gradual_jax.core.diagnostics`). Nothing here reads a config or touches a file."""
