"""The config keys, documented from one source: the ``setting(...)`` metadata of each field.

Every field of ``gradual_jax.config`` carries its one-line meaning, its allowed values and the
models / task families it applies to, where it is declared. This module reads that metadata for

* :func:`describe_keys`: the keys (for one model and task family, or all), as :class:`KeyDoc`,
  and :func:`keys_text`, the same as terminal lines;
* :func:`keys_markdown`: the configuration table of ``docs/config.md`` (between the
  ``config-keys`` markers; ``python -m gradual_jax.config.keys --write`` regenerates it,
  ``--check`` compares);
* :func:`applicable`: a config as ``to_dict`` gives it, without what its model and family do
  not read (no ``text`` section and no T5 fields for an MLP on random_labels).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from gradual_jax import config as config_lib
from gradual_jax.config import FAMILIES, MODELS, ConfigError, ExperimentConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
START, END = "<!-- config-keys:start -->", "<!-- config-keys:end -->"


def _in_scope(models: tuple[str, ...] | None, families: tuple[str, ...] | None, model: str | None,
              family: str | None) -> bool:
    """Whether a run of ``model`` on ``family`` (None: any) lies within a key's scope."""
    return ((model is None or models is None or model in models)
            and (family is None or families is None or family in families))


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One config key as ``--set`` takes it."""

    key: str  # dotted, e.g. "model.d_model"
    type: str  # "int", "float", "bool", "str", "str or none", "list of int", ...
    default: str  # as --set would write it: 256,256 / true / none
    meaning: str  # one line
    choices: tuple[str, ...] | None  # the allowed values, where a choice set exists
    models: tuple[str, ...] | None  # the model.name values it applies to (None: all)
    families: tuple[str, ...] | None  # the task.family values it applies to (None: all)

    def applies_to(self, model: str | None = None, family: str | None = None) -> bool:
        """Whether a run of ``model`` on ``family`` reads this key (None: any)."""
        return _in_scope(self.models, self.families, model, family)


@dataclasses.dataclass(frozen=True)
class SectionDoc:
    """A section of the config (``data``, ``model``, ...): its meaning and where it applies."""

    name: str
    meaning: str
    models: tuple[str, ...] | None
    families: tuple[str, ...] | None

    def applies_to(self, model: str | None = None, family: str | None = None) -> bool:
        return _in_scope(self.models, self.families, model, family)


def _narrow(outer: tuple[str, ...] | None, inner: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The scope of a field inside a section: both restrictions hold."""
    if outer is None or inner is None:
        return inner if outer is None else outer
    return tuple(name for name in outer if name in inner)


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{_type_name(inner)} or none"
    if typing.get_origin(annotation) is tuple:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if typing.get_origin(annotation) is dict:
        return f"NAME={_type_name(typing.get_args(annotation)[1])} list"
    return annotation.__name__


def format_value(value: Any) -> str:
    """A value as ``--set`` writes it: lists comma separated, mappings as NAME=VALUE items, true/false, none."""
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{name}={format_value(v)}" for name, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _entries(cls: type = ExperimentConfig, prefix: str = "", models=None, families=None):
    """(SectionDoc or KeyDoc, the field's metadata) for every section and key below ``cls``,
    in declaration order, with the scopes of the enclosing sections folded in."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta, annotation = f.metadata, hints[f.name]
        f_models, f_families = _narrow(models, meta.get("models")), _narrow(families, meta.get("families"))
        if dataclasses.is_dataclass(annotation):
            yield SectionDoc(prefix + f.name, meta.get("meaning", ""), f_models, f_families), meta
            yield from _entries(annotation, f"{prefix}{f.name}.", f_models, f_families)
            continue
        choices = meta.get("choices")
        yield KeyDoc(key=prefix + f.name, type=_type_name(annotation), default=format_value(f.default),
                     meaning=meta.get("meaning", ""), choices=None if choices is None else tuple(choices),
                     models=f_models, families=f_families), meta


def _narrowed_choices(doc: KeyDoc, meta: Any, model: str | None, family: str | None) -> tuple[str, ...] | None:
    """``doc``'s allowed values for ``model`` on ``family`` (e.g. the schedules a family has)."""
    allowed = doc.choices
    for given, table in ((family, meta.get("family_choices")), (model, meta.get("model_choices"))):
        if allowed is not None and given is not None and table is not None:
            allowed = tuple(c for c in allowed if c in table[given])
    return allowed


def _check_scope(model: str | None, family: str | None) -> None:
    if model is not None and model not in MODELS:
        raise ConfigError(f"model.name={model!r} is not allowed; choose one of: {', '.join(MODELS)}")
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"task.family={family!r} is not allowed; choose one of: {', '.join(FAMILIES)}")
    if model is not None and family is not None and model not in config_lib.FAMILY_MODELS[family]:
        raise ConfigError(f"model.name={model!r} does not fit task.family={family!r}; choose model.name among "
                          f"{', '.join(config_lib.FAMILY_MODELS[family])}")


def describe_keys(model: str | None = None, family: str | None = None) -> list[KeyDoc]:
    """Every config key, or those a run of ``model`` on task ``family`` reads, with the allowed
    values narrowed to that model and family (e.g. ``sweep.schedules`` for random_seq2seq:
    abrupt, task_sampling). An unknown model or family is a one-line ConfigError."""
    _check_scope(model, family)
    return [dataclasses.replace(doc, choices=_narrowed_choices(doc, meta, model, family))
            for doc, meta in _entries() if isinstance(doc, KeyDoc) and doc.applies_to(model, family)]


def _scope_text(models: tuple[str, ...] | None, families: tuple[str, ...] | None) -> str:
    """``(`t5` only)``: the model names and task families a key is limited to ('' when none)."""
    names = [*(models or ()), *(families or ())]
    return f" ({', '.join(f'`{n}`' for n in names)} only)" if names else ""


def _cell(doc: KeyDoc, meta: Any, section: SectionDoc | None) -> str:
    """The meaning column: the meaning, the allowed values (and those of each task family where
    they differ by family), and where the key applies when that is narrower than its section."""
    text = doc.meaning
    if doc.choices is not None:
        text += "; one of " + ", ".join(f"`{c}`" for c in doc.choices)
    by_family = meta.get("family_choices")
    if by_family:
        text += "; by task.family: " + "; ".join(
            f"{family}: " + ", ".join(f"`{c}`" for c in _narrowed_choices(doc, meta, None, family))
            for family in by_family)
    outer = (section.models, section.families) if section else (None, None)
    text += _scope_text(doc.models if doc.models != outer[0] else None,
                        doc.families if doc.families != outer[1] else None)
    return text.replace("|", "\\|")


def keys_markdown() -> str:
    """The configuration table of docs/config.md: one table per section, one row per key."""
    blocks: list[list[str]] = [["**top level**", ""]]
    section: SectionDoc | None = None
    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    blocks[0] += header
    for doc, meta in _entries():
        if isinstance(doc, SectionDoc):
            section = doc
            blocks.append([f"**`{doc.name}.*`**: {doc.meaning}{_scope_text(doc.models, doc.families)}", "",
                           *header])
            continue
        default = f"`{doc.default}`" if doc.default else ""
        blocks[-1].append(f"| `{doc.key}` | {doc.type} | {default} | {_cell(doc, meta, section)} |")
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def keys_text(model: str | None = None, family: str | None = None) -> str:
    """:func:`describe_keys` as plain lines for a terminal (``gradual-jax show --keys``):
    ``key  type  default  meaning; one of …``, one key a line."""
    docs = describe_keys(model, family)
    width = max(len(d.key) for d in docs)
    lines = []
    for d in docs:
        allowed = f"; one of {', '.join(d.choices)}" if d.choices is not None else ""
        lines.append(f"{d.key:<{width}}  {d.type:<14} {d.default or '(empty)':<22} {d.meaning}{allowed}")
    return "\n".join(lines) + "\n"


def applicable(config: ExperimentConfig) -> dict[str, Any]:
    """``to_dict(config)`` without the sections and fields that its model and task family do
    not read (``data`` for a text family, ``text`` for an image family, each model's own fields
    for the others), for ``gradual-jax show``."""
    model, family = config.model.name, config.task.family
    full = config_lib.to_dict(config)
    dropped = [doc.name if isinstance(doc, SectionDoc) else doc.key for doc, _ in _entries()
               if not doc.applies_to(model, family)]
    for key in dropped:
        *path, name = key.split(".")
        node = full
        for part in path:
            node = node.get(part, {})
        node.pop(name, None)
    return full


def region(text: str) -> str:
    """What a document holds between the config-keys markers (without the marker lines)."""
    if START not in text or END not in text:
        raise ValueError(f"no {START} … {END} region")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_region(text: str, table: str) -> str:
    """``text`` with the config-keys region replaced by ``table``."""
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{table.rstrip()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradual_jax.config.keys",
                                     description="the config key table, from the schema's field metadata")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the config-keys region of docs/config.md")
    action.add_argument("--check", action="store_true", help="exit 1 if the region of docs/config.md differs")
    parser.add_argument("--file", type=Path, default=DOC, help="the document to read or write (default: %(default)s)")
    args = parser.parse_args(argv)
    table = keys_markdown()
    if args.write:
        args.file.write_text(with_region(args.file.read_text(), table))
        print(f"wrote the config keys into {args.file}")
    elif args.check:
        if region(args.file.read_text()) != table:
            print(f"{args.file}: the config-keys region differs from the schema; run "
                  "python -m gradual_jax.config.keys --write", file=sys.stderr)
            return 1
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
