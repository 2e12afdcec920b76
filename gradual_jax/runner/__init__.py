"""Running a sweep on the host: from a config to a program and its lanes
(:mod:`~gradual_jax.runner.build`, :mod:`~gradual_jax.runner.sweep`), the task loop
(:mod:`~gradual_jax.runner.train`), resume and checkpoints (:mod:`~gradual_jax.runner.resume`,
:mod:`~gradual_jax.runner.checkpoint`), lanes over devices and hosts
(:mod:`~gradual_jax.runner.sharding`), the results table (:mod:`~gradual_jax.runner.results`),
and the run's surroundings: one run per folder, the compilation cache, XLA flags, TensorBoard."""
