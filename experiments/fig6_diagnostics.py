"""Figure 6: network properties against granularity — max Hessian eigenvalue, relative
representation change, dormant fraction and distance from initialisation, per task, one curve
per Δ, on the trainability task (random-label MNIST, output interpolation)."""

import dataclasses

from gradual_jax.experiments import fig5_granularity
from gradual_jax.config import DiagnosticsConfig

DESCRIPTION = "Diagnostics (Hessian, representation change, dormancy, distance from init) against Δ"


def _diagnosed(cfg):
    return dataclasses.replace(cfg, name="fig6-diagnostics", description=DESCRIPTION,
                               diagnostics=DiagnosticsConfig(enabled=True, hessian=True, probe_size=512, dormant_taus=(0.0, 0.01)))


def paper():
    return _diagnosed(fig5_granularity.paper()["trainability"])


def cpu():
    """Fig. 5's cpu trainability lanes with 5 seeds."""
    cfg = _diagnosed(fig5_granularity.cpu()["trainability"])
    return dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, seeds=(0, 1, 2, 3, 4)))


PRESETS = {"paper": paper, "cpu": cpu}
