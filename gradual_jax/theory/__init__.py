"""The paper's Section 4 (Lemma 4.3 and its tracking story), checked numerically.

Lemma 4.3 says that gradient descent started inside a locally strongly convex domain stays in it
and converges linearly; its tracking corollary bounds how far GD lags behind a minimiser that
moves in small jumps, a bound that grows with the jump. The package checks both on objectives
whose constants are known in closed form, and pictures what happens when a jump is too large.

- :mod:`.functions`: the objectives (quadratics, a log-cosh well, a tilted double well) and their
  constants β, μ(r) and the radius r of their strongly convex domain.
- :mod:`.tracking`: the statements and proofs, GD on a fixed and on a moving minimiser, and the
  lemma's predicted rate and tracking radius.
- :mod:`.checks`: one check per setting, each returning what GD measured next to the prediction.
- :mod:`.relu`: a single ReLU unit whose target turns, where an abrupt jump kills the unit.
- :mod:`.experiment`: the grid of checks, the table ``theory.csv`` and ``run(out_dir, preset)``,
  the ``theory`` experiment.
- :mod:`.plot`: the figure ``theory.png``.

Everything runs in float64 inside ``jax.enable_x64(True)`` contexts: the global JAX config is
never changed. The dynamics are ``lax.scan`` loops over pure functions.
"""
