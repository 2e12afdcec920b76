"""Finished A/B comparisons, kept runnable so their measurements can be repeated.

Each one decided a question whose answer is now in the code: ``xla_flags_ab`` the XLA:CPU flag the
``gradual-jax`` command sets (gradual_jax/runner/xla_flags.py), ``optax_flatten`` that the engine keeps
per-leaf Adam, ``resnet_ab`` that ResNet-18 computes its convolutions on maps of at most 4
pixels as matrix products and its max-pool as strided slices (gradual_jax/models/resnet.py). Their results and conclusions are in benchmarks/README.md ("Archived A/B
comparisons"); rerun ``xla_flags_ab`` when jaxlib changes, since the flag is checked per version.
"""
