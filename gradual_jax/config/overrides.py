"""Dotted-key overrides (``--set protocol.batch_size=8``) parsed into the field's type, and the
config as a plain dict and back (``config.json``). A mapping field takes ``NAME=VALUE`` items
(``--set mitigations.custom=clip=0.5``) or one entry at a time (``--set mitigations.custom.clip=0.5``;
``none`` removes it)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from gradual_jax.config.schema import ConfigError, ExperimentConfig


def is_config(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` (``annotation`` itself otherwise)."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _is_mapping(annotation: Any) -> bool:
    return typing.get_origin(_without_none(annotation)) is dict


def _mapping_value(annotation: Any) -> type:
    return typing.get_args(_without_none(annotation))[1]


def _parse_scalar(text: str, kind: type, key: str) -> Any:
    text = text.strip()
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}: expected a boolean (true/false), got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    return text


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Parse an override string into the annotated field type (tuples are comma separated, with
    or without brackets: ``64,64``, ``[64,64]``, ``(64, 64)``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # Optional[X]
        if text.strip().lower() in ("none", "null", ""):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(text, inner, key)
    if origin is dict:
        return _parse_mapping(text, args[1], key)
    if origin is tuple:
        inner = text.strip()
        if inner.startswith("[") and inner.endswith("]") or inner.startswith("(") and inner.endswith(")"):
            inner = inner[1:-1]  # [64,64] and (64, 64) are lists too
        items = inner.split(",")
        if not inner.strip():
            raise ConfigError(f"{key}: expected a comma-separated list, got {text!r}")
        if any(not t.strip() for t in items):  # "0,1," or "16,,16": a typo, not a shorter list
            raise ConfigError(f"{key}={text!r}: an empty item; separate the items by single commas, e.g. "
                              f"{key}=0,1,2")
        return tuple(_parse_scalar(t, args[0], key) for t in items)
    return _parse_scalar(text, annotation, key)


def _parse_mapping(text: str, kind: type, key: str) -> dict[str, Any]:
    """``name=value,name=value`` into ``{name: value}`` (each value parsed as ``kind``)."""
    items = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{key}={text!r}: expected NAME=VALUE items separated by commas, e.g. {key}=clip=0.5")
        items[name.strip()] = _parse_scalar(value, kind, f"{key}.{name.strip()}")
    return items


def apply_overrides(config: ExperimentConfig, overrides: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """Return ``config`` with each ``"a.b=value"`` applied; unknown keys are a ConfigError."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. sweep.seeds=0,1,2")
        key, text = item.split("=", 1)
        config = _set(config, key.strip().split("."), text, key.strip())
    return config


def _set(node: Any, path: list[str], text: str, key: str) -> Any:
    types_ = field_types(type(node))
    name = path[0]
    if name not in types_:
        where = key.rsplit(".", 1)[0] if "." in key else "the top level"
        raise ConfigError(f"unknown config key {key!r}; allowed in {where}: {', '.join(types_)}")
    child = getattr(node, name)
    if len(path) == 1:
        if is_config(child):
            raise ConfigError(f"{key} is a section; set one of its fields: "
                              + ", ".join(f"{key}.{f}" for f in field_types(type(child))))
        return dataclasses.replace(node, **{name: parse_value(text, types_[name], key)})
    if len(path) == 2 and _is_mapping(types_[name]):  # one entry of a mapping: mitigations.custom.clip=0.5
        if text.strip().lower() in ("none", "null", ""):
            entries = {k: v for k, v in (child or {}).items() if k != path[1]}
        else:
            entries = {**(child or {}), path[1]: parse_value(text, _mapping_value(types_[name]), key)}
        return dataclasses.replace(node, **{name: entries or None})
    if not is_config(child):
        raise ConfigError(f"unknown config key {key!r}: {'.'.join(path[:1])} is not a section")
    return dataclasses.replace(node, **{name: _set(child, path[1:], text, key)})


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], cls: type = ExperimentConfig) -> Any:
    """Inverse of :func:`to_dict` (lists become tuples), for reading ``config.json`` back."""
    kwargs = {}
    for name, annotation in field_types(cls).items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            value = from_dict(value, annotation)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------
# Validation: everything that can be checked without loading data or compiling.
