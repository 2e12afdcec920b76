"""The theory experiment's figure: convergence against the predicted rates, tracking error
against Δ, the ReLU toy, and the double well's gradual and abrupt arms."""

from __future__ import annotations

import numpy as np


def stage_curve(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(GD step, distance) for a [stages, m + 1] error array as one sawtooth: each stage's
    column 0 (right after the jump) shares the step index of the previous stage's end, so the
    jumps draw as vertical lines."""
    stages, width = errors.shape
    m = width - 1
    steps = np.arange(stages)[:, None] * m + np.arange(width)[None, :]
    return steps.reshape(-1), errors.reshape(-1)


def draw_convergence(ax, curves: dict) -> None:
    """Each case's distance per GD step (log scale) beside its exact asymptotic rate (anchored at
    the last point) or, without one, the lemma's worst-case bound from the start."""
    for (name, res), color in zip(curves.items(), ("C0", "C1", "C2", "C3", "C4")):
        d = res["distances"]
        t = np.arange(len(d))
        ax.semilogy(t, d, color=color, label=name)
        if "predicted" in res:
            ax.semilogy(t, d[-1] * res["predicted"] ** (t - t[-1]), "-", color=color, lw=5, alpha=0.25,
                        label=f"predicted rate {res['predicted']:.3f}")
        else:
            ax.semilogy(t, d[0] * res["bound"] ** t, ":", color=color, lw=1,
                        label=f"bound (1-ημ(r))^t, {res['bound']:.3f}")
    ax.set(xlabel="GD step", ylabel="‖x_t - c‖", title="Lemma 4.3: linear convergence")
    ax.legend(fontsize=7)


def draw_tracking(ax, tracking: list[dict]) -> None:
    """The largest tracking error against Δ, under its bound and above the jump itself."""
    deltas = [t["delta"] for t in tracking]
    ax.loglog(deltas, [t["max_error"] for t in tracking], "o-", label="measured max ‖x - c_s‖")
    ax.loglog(deltas, [t["bound"] for t in tracking], "s--", label="bound δ/(1-q(r)^m)")
    ax.loglog(deltas, [t["jump"] for t in tracking], ":", color="gray", label="jump δ")
    ax.set(xlabel="step size Δ", ylabel="distance to current minimiser", title="Tracking a moving minimiser")
    ax.legend(fontsize=7)


def draw_relu_toy(ax, toy: list[dict]) -> None:
    """The one ReLU unit's loss per GD step for each Δ, naming the runs whose unit died."""
    for t in toy:
        label = f"Δ={t['delta']:g}" + (" (abrupt)" if t["delta"] == 1.0 else "") + (", dead" if t["dead"] else "")
        ax.semilogy(np.maximum(t["losses"], 1e-16), label=label)
    ax.set(xlabel="GD step", ylabel="loss vs current target (floor 1e-16)",
           title="One ReLU unit: abrupt vs gradual")
    ax.legend(fontsize=7)


def draw_double_well(ax, tracking: list[dict], escape: dict) -> None:
    """The distance to the moving minimiser of each arm (linear: the story is which side of r*
    and the barrier each arm stays on), against the lemma's radius, the measured escape
    radius and the other well."""
    for t in tracking:
        steps, dist = stage_curve(t["errors"])
        label = (f"Δ={t['delta']:g}, jump {t['jump']:.3g}" + (" (abrupt)" if t["stages"] == 1 else "")
                 + (", certified" if t["certified"] else ", not certified"))
        ax.plot(steps, dist, label=label, lw=1.2)
    ax.axhline(escape["lemma_radius"], color="k", ls="--", lw=1,
               label=f"lemma radius r* = {escape['lemma_radius']:.3f}")
    ax.axhline(escape["escape_radius"], color="k", ls=":", lw=1,
               label=f"measured escape radius {escape['escape_radius']:.3f}")
    ax.axhline(escape["other_well"], color="gray", ls="-.", lw=1,
               label=f"other well at {escape['other_well']:.3f}")
    top = max(escape["other_well"], max(t["max_error"] for t in tracking))
    ax.set(xlabel="GD step", ylabel="‖x - c_s‖ (distance to the current minimiser)", ylim=(0, 1.5 * top),
           title=f"Double well: minimiser moves by {tracking[0]['jump'] * tracking[0]['stages']:g}, "
                 "gradual vs abrupt")
    ax.legend(fontsize=7, loc="upper center", ncol=2)


def save_figure(curves: dict, tracking: list[dict], toy: list[dict], path, double_well=None) -> None:
    """Write the figure to ``path``. Panels: convergence (``curves``: case name -> a convergence
    check's dict) with predicted rate lines, tracking error vs Δ, the ReLU toy, and (given
    ``double_well`` = (tracking rows, escape result)) the double well's distance to the moving
    minimiser, gradual vs abrupt, against the lemma's radius and the barrier; the decay rates
    are the first panel's.

    The figure is a :class:`matplotlib.figure.Figure` of its own, not pyplot's: writing it needs
    no display and leaves the process's backend as it was."""
    import matplotlib.figure  # here, not at the top: importing the theory stays light

    if double_well is None:
        fig = matplotlib.figure.Figure(figsize=(15, 4.2))
        axes = fig.subplots(1, 3)
    else:
        fig = matplotlib.figure.Figure(figsize=(13, 9))
        axes = fig.subplots(2, 2).reshape(-1)
    draw_convergence(axes[0], curves)
    draw_tracking(axes[1], tracking)
    draw_relu_toy(axes[2], toy)
    if double_well is not None:
        draw_double_well(axes[3], *double_well)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
