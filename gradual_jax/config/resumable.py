"""Which config keys a run may change when it resumes, and what differs from a stored run."""

from __future__ import annotations

from typing import Any

from gradual_jax.config.overrides import to_dict
from gradual_jax.config.schema import ExperimentConfig


RESUMABLE_KEYS = frozenset({"data.data_dir", "data.download", "task.num_tasks", "run.on_nonfinite",
                            "run.checkpoint_every", "run.checkpoints_to_keep", "run.distributed",
                            "run.snapshot_every", "run.tensorboard",
                            "run.split_programs"})  # resume checks the checkpoints' program layout itself


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def resume_mismatches(stored: dict[str, Any], current: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between a stored run's config and ``current``."""
    old, new = flatten(stored), flatten(to_dict(current))
    return [f"{key} (stored: {old.get(key)!r}, now: {new.get(key)!r})"
            for key in sorted(set(old) | set(new))
            if key not in RESUMABLE_KEYS and old.get(key) != new.get(key)]
