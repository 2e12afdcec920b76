"""A model of your own, registered from this file: an MLP without LayerNorm, and an experiment
that trains it.

``plain_mlp`` is Flatten → [Linear → ReLU] × len(model.hidden_sizes) → Linear, with PyTorch's
default init. Its registry line says how to build it from the config's ``model`` section (it
reads ``model.hidden_sizes``), where its hidden units are (for ReDo and continual backprop), that
it takes images, and how results tables and figures name it.
"""

import dataclasses

import jax
from flax import nnx

from gradual_jax import experiments
from gradual_jax import models
from gradual_jax.models.init import torch_linear
from gradual_jax.models.units import UnitLayer


class PlainMLP(nnx.Module):
    def __init__(self, in_features, hidden_sizes, num_classes, *, rngs):
        sizes = [in_features, *hidden_sizes]
        self.hidden = nnx.List([torch_linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.head = torch_linear(sizes[-1], num_classes, rngs=rngs)

    def features(self, x, train=False, mask=None):
        h, out = x.reshape(x.shape[0], -1), []
        for linear in self.hidden:
            h = jax.nn.relu(linear(h))
            out.append(h)
        return out

    def logits_and_unit_features(self, x, train=False, mask=None):
        features = self.features(x)
        return self.head(features[-1]), features

    def __call__(self, x, train=False, mask=None):
        return self.head(self.features(x)[-1])


def unit_layers(params):
    count = len(params["hidden"])
    return tuple(UnitLayer(kernel=f"hidden/{i}/kernel", bias=f"hidden/{i}/bias",
                           out_kernel=f"hidden/{i + 1}/kernel" if i + 1 < count else "head/kernel")
                 for i in range(count))


def build(model, shape, rngs):
    in_features = 1
    for size in shape.input_shape:
        in_features *= size
    return PlainMLP(in_features, model.hidden_sizes, shape.num_classes, rngs=rngs)


models.register(models.ModelSpec(
    name="plain_mlp", build=build, unit_layers=unit_layers, keys=("hidden_sizes",), inputs="images",
    short=lambda m: f"plain_mlp {len(m['hidden_sizes'])}x{m['hidden_sizes'][0]}",
    words=lambda m: f"MLP without LayerNorm {len(m['hidden_sizes'])}×{m['hidden_sizes'][0]}",
    caption="an MLP without LayerNorm"))

DESCRIPTION = "Random-label MNIST, an MLP without LayerNorm: abrupt vs output interpolation"


def cpu():
    cfg = experiments.get_config("fig1-mnist", "cpu")
    return dataclasses.replace(cfg, name="plain-mlp", preset="cpu", description=DESCRIPTION,
                               model=dataclasses.replace(cfg.model, name="plain_mlp"))


PRESETS = {"cpu": cpu}
