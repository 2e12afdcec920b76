"""The changing world, as pure functions: task families turn ``(key, task)`` into a task,
transition schedules turn a step of the segment into the batch's mixing of tasks t and t+1,
and a problem (image classification, sequence to sequence) builds batches and scores outputs.

* :mod:`~gradual_jax.envs.schedules` — the schedules, one module each, and their registry;
* :mod:`~gradual_jax.envs.families` — the task families' registry;
* :mod:`~gradual_jax.envs.image` — random labels and permuted pixels, the image problem;
* :mod:`~gradual_jax.envs.text` — the text tasks, their problem, decoding and BLEU-2;
* :mod:`~gradual_jax.envs.data` — the image data sets: loading, subsets, normalisation.
"""
