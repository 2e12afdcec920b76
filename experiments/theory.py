"""Section 4's theory checked numerically (``gradual_jax.theory``): Lemma 4.3's linear
convergence inside a locally strongly convex domain, tracking a minimiser that moves in 1/Δ
steps, and a ReLU toy where an abrupt jump kills the unit while gradual steps do not.
Both presets are the same (it takes seconds)."""

from pathlib import Path

DESCRIPTION = "Lemma 4.3 numerically: convergence rates, tracking a moving minimiser, a dying ReLU"
PRESETS = {"paper": lambda: None, "cpu": lambda: None}


def run(out_dir: str | Path, preset: str) -> None:
    from gradual_jax import theory

    table = theory.run_theory(Path(out_dir))
    predicted = table[table["predicted"].notna()]
    held = int(predicted["holds"].astype(bool).sum())
    print(f"theory: {held}/{len(predicted)} predictions hold ({len(table) - len(predicted)} rows are "
          f"observations without a prediction); {Path(out_dir) / 'theory.csv'}, {Path(out_dir) / 'theory.png'}")
