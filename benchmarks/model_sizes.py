"""The sizes of the ResNet-18 and T5 benchmarks: one set of command-line flags for the JAX side
(model_steps.py) and the PyTorch side (torch_steps.py), so both build the same models.

Imports neither JAX nor PyTorch; the T5 defaults are the paper's compact T5 (gradual_jax's
``T5Config`` defaults, checked equal in the tests).
"""

from __future__ import annotations

import argparse

DEFAULTS = {"resnet_batch": 64, "resnet_width": 0.25, "resnet_image": 32, "resnet_cifar_stem": False,
            "t5_batch": 16, "t5_input_len": 128, "t5_target_len": 30,
            "t5_d_model": 256, "t5_heads": 4, "t5_d_kv": 64, "t5_d_ff": 2048}
QUICK = {"resnet_batch": 4, "resnet_width": 0.0625, "t5_batch": 2, "t5_input_len": 12, "t5_target_len": 6,
         "t5_d_model": 16, "t5_heads": 2, "t5_d_kv": 8, "t5_d_ff": 32}  # smoke tests: seconds, not minutes
PAPER = {"resnet_batch": 250, "resnet_width": 1.0, "t5_batch": 64}
HELP = {"resnet_batch": "ResNet batch per lane (paper: 250)",
        "resnet_width": "ResNet width multiplier (paper: 1.0)",
        "resnet_image": "input height = width (CIFAR: 32)",
        "resnet_cifar_stem": "3×3 stride-1 stem, no max-pool",
        "t5_batch": "T5 batch per lane (paper: 64)",
        "t5_input_len": "T5 input tokens (Random Seq2Seq: 128, eos included)",
        "t5_target_len": "T5 target tokens (Random Seq2Seq: 5 words × 6 = 30)",
        "t5_d_model": "T5 d_model", "t5_heads": "T5 heads", "t5_d_kv": "T5 d_kv", "t5_d_ff": "T5 d_ff"}


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    for key, default in DEFAULTS.items():
        if isinstance(default, bool):
            parser.add_argument(flag(key), action="store_true", help=HELP[key])
        else:
            parser.add_argument(flag(key), type=type(default), default=default, help=HELP[key])


def apply_preset(args: argparse.Namespace, preset: dict) -> None:
    for key, value in preset.items():
        setattr(args, key, value)


def size_argv(args: argparse.Namespace) -> list[str]:
    """The size flags of ``args`` as a command line (for a worker process)."""
    out = []
    for key, default in DEFAULTS.items():
        value = getattr(args, key)
        if isinstance(default, bool):
            out += [flag(key)] if value else []
        else:
            out += [flag(key), str(value)]
    return out


def sizes_of(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in DEFAULTS}
