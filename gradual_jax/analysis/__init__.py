"""Reading finished runs: per-arm summaries with t-intervals and paired differences
(:mod:`~gradual_jax.analysis.summary`), the paper's claims and the report that decides them
(:mod:`~gradual_jax.analysis.claims`, :mod:`~gradual_jax.analysis.report`), the figures
(:mod:`~gradual_jax.analysis.plotting`), diagnostics from saved snapshots
(:mod:`~gradual_jax.analysis.analyze`) and the search for a setting in which the abrupt arm
loses plasticity (:mod:`~gradual_jax.analysis.search`)."""
