"""Section 4's theory checked numerically (``gradual_jax.theory``): Lemma 4.3's linear
convergence inside a locally strongly convex domain, tracking a minimiser that moves in 1/Δ
steps, a ReLU toy where an abrupt jump kills the unit while gradual steps do not, and a tilted
double well that is strongly convex only near its minimiser: jumps below the lemma's radius are
tracked with the proved bound, an abrupt jump past the barrier ends in the other well, and the
measured escape radius is compared with the lemma's. Both presets are the same (seconds)."""

from pathlib import Path

DESCRIPTION = ("Lemma 4.3 numerically: convergence rates, tracking a moving minimiser, a dying ReLU, "
               "a double well (gradual tracks, abrupt escapes)")
PRESETS = {"paper": lambda: None, "cpu": lambda: None}


def run(out_dir: str | Path, preset: str) -> None:
    from gradual_jax.theory import experiment  # imports JAX; keep listing the experiments fast

    experiment.run(out_dir, preset)
