"""The package's imports point down its layers only, read from the source (nothing is imported).

From the bottom:

0. ``registry`` and ``arms``: the one registry type every pluggable part is registered in, and
   the one way an arm is named;
1. ``envs``: the changing world (task families, schedules, data, the text tasks);
2. ``models``: the networks (the T5 reads the text vocabulary from ``envs``);
3. ``mitigations``: pure steps on a model's parameters (they read the models' unit layers);
4. ``core``: the compiled program, with its diagnostics (no config, no files);
5. ``config``: the experiment's settings, checked against the registries below it;
6. ``runner``, ``theory`` and ``catalog``: a config turned into runs that write their results, and
   the experiments' presets found by name;
7. ``analysis``: figures, summaries and verdicts read from the results;
8. ``experiments`` (the catalogue at the top of the checkout): presets and claims;
9. ``cli``: the command line on top of everything.

A module may import its own layer and the layers below it. An import that points up makes a
lower layer depend on what is built on it, so the layers could no longer be read, tested or
replaced from the bottom up.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gradual_jax"
LAYERS = (("registry", "arms"), ("envs",), ("models",), ("mitigations",), ("core",), ("config",),
          ("runner", "theory", "catalog"), ("analysis",), ("experiments",), ("cli", "reproduce"))
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def part_of(dotted: str) -> str | None:
    """The layer part a dotted module name belongs to (None outside the layered code)."""
    names = dotted.split(".")
    if names[0] == "experiments":
        return "experiments"
    if names[0] == "gradual_jax" and len(names) > 1:
        return names[1] if names[1] in RANK else None
    return None


def imported(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """Every module an import statement names, absolute, with its line (``from a import b`` names
    ``a.b``, which is ``a``'s part when ``b`` is not a module)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def module_name(path: Path) -> str:
    """``gradual_jax.core.engine``; a package's ``__init__`` keeps its name, so that ``from . import``
    in it resolves to the package itself."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def upward_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        here = part_of(module)
        if here is None:
            continue
        for line, target in imported(ast.parse(path.read_text()), module):
            there = part_of(target)
            if there is not None and RANK[there] > RANK[here]:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports {target} ({there})")
    return found


def test_every_part_of_the_package_has_a_layer():
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert parts <= set(RANK), f"give these a layer: {sorted(parts - set(RANK))}"


def test_relative_and_from_imports_are_resolved_by_hand():
    tree = ast.parse("from . import engine\nfrom ..envs import schedules\nfrom gradual_jax import cli\nimport experiments")
    assert [name for _, name in imported(tree, "gradual_jax.core.diagnostics")] == [
        "gradual_jax.core.engine", "gradual_jax.envs.schedules", "gradual_jax.cli", "experiments"]
    assert [part_of(n) for n in ("gradual_jax.core.engine", "gradual_jax.cli", "experiments.fig1_mnist", "jax")] == [
        "core", "cli", "experiments", None]


def test_no_import_points_up_the_layers():
    upward = upward_imports()
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)
