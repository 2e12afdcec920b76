"""Naming parameter leaves by path ("hidden/0/kernel"), for plain dicts and ``nnx.State`` alike.

``nnx.State`` flattens a ``Param`` to its ``.value``; that attribute is left out of the name,
so a leaf's name is the module path plus the parameter name, the same for the parameters and
for every parameter-shaped tree inside an optimizer state (Adam's ``mu`` and ``nu``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def path_str(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            if k.name != "value":  # nnx.Variable's payload
                parts.append(k.name)
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:  # pragma: no cover - other key types are not produced by our models
            parts.append(str(k))
    return "/".join(parts)


def named_leaves(tree) -> list[tuple[str, Any]]:
    """``[(name, leaf)]`` in flattening order."""
    return [(path_str(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def leaf_dict(tree) -> dict[str, Any]:
    return dict(named_leaves(tree))


def path_tree(tree):
    """A tree of the same structure whose leaves are the leaves' names."""
    return jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), tree)


def map_named(fn: Callable[[str, Any], Any], tree):
    """``fn(name, leaf)`` over every leaf."""
    return jax.tree_util.tree_map_with_path(lambda p, x: fn(path_str(p), x), tree)
