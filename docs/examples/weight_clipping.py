"""Weight clipping, a mitigation registered from this file, and an experiment that runs it.

``weight_clipping`` clips every parameter to [-c, c] after each optimizer update, c being the
config's ``mitigations.custom.clip``. Its registry line declares that number (a lane carries it
as a traced leaf, so one compiled program serves any c), its hook (a pure function of the
lane's parameters, its numbers and a key it does not need), and how tables and figures name
it. A c larger than every weight leaves training exactly as it is without the method.
"""

import dataclasses

import jax
import jax.numpy as jnp

from gradual_jax import experiments
from gradual_jax.mitigations import Hooks
from gradual_jax.mitigations.methods import METHODS, Method


def clip_weights(params, numbers, key):
    c = numbers["clip"]
    return jax.tree.map(lambda w: jnp.clip(w, -c, c), params)


METHODS.register(Method("weight_clipping", "weight clipping", numbers=("clip",), hooks=Hooks(after_update=clip_weights),
                        caption="every weight clipped to [-c, c] after each update", color="tab:cyan"))

DESCRIPTION = "Random-label MNIST, MLP 64x4: abrupt with and without weight clipping, and output interpolation"


def cpu():
    cfg = experiments.get_config("fig1-mnist", "cpu")
    return dataclasses.replace(cfg, name="weight-clipping", preset="cpu", description=DESCRIPTION,
                               sweep=dataclasses.replace(cfg.sweep, methods=("none", "weight_clipping")),
                               mitigations=dataclasses.replace(cfg.mitigations, custom={"clip": 1.0}))


PRESETS = {"cpu": cpu}
