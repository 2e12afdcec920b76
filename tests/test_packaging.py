"""The experiments install inside the package, as ``gradual_jax.experiments``, so that no other
project's top-level ``experiments`` can shadow them, and every package of the source is installed.

The folder ``experiments/`` stays at the top of the checkout, where researchers edit it;
``pyproject.toml`` maps it into the package, which needs the packages listed by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter with a dummy experiments package first on sys.path: importing it
# raises, so any import of a top-level ``experiments`` fails the run instead of passing quietly.
FIND_WITH_A_DUMMY_FIRST = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
assert importlib.util.find_spec("experiments").origin.startswith(sys.argv[1])
from gradual_jax import catalog, experiments
fig1 = catalog.module("fig1-mnist")
print(json.dumps({"module": fig1.__name__, "file": fig1.__file__, "package": experiments.__file__,
                  "claims": [c.key for c in catalog.claims()], "seeds": list(catalog.get_config("fig1-mnist", "cpu").sweep.seeds),
                  "top_level_imported": "experiments" in sys.modules}))
"""

NO_TOP_LEVEL = """
import importlib.util, json
spec = importlib.util.find_spec("experiments")
print(json.dumps(None if spec is None else spec.origin))
"""


def python(script: str, *args: str, cwd: Path) -> str:
    """stdout of ``script`` in a fresh interpreter that sees what is installed and nothing of the
    checkout (``-P``: no working folder on sys.path; no ``PYTHONPATH``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-P", "-c", script, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_the_catalogue_finds_the_projects_experiments_behind_an_unrelated_experiments_package(tmp_path):
    dummy = tmp_path / "elsewhere"
    (dummy / "experiments").mkdir(parents=True)
    (dummy / "experiments" / "__init__.py").write_text(
        'raise ImportError("an unrelated project\'s experiments package was imported")\n')
    found = json.loads(python(FIND_WITH_A_DUMMY_FIRST, str(dummy), cwd=tmp_path))
    assert found["module"] == "gradual_jax.experiments.fig1_mnist"
    assert Path(found["file"]).parent == Path(found["package"]).parent
    assert Path(found["file"]).name == "fig1_mnist.py" and Path(found["package"]).name == "__init__.py"
    # the paper's sentences that experiments/claims.py declares (the README's table lists them)
    assert {"abstract", "tldr", "fig1", "fig2", "fig3", "fig4", "fig5", "lemma"} <= set(found["claims"])
    assert found["seeds"] == [0, 1, 2]  # fig1-mnist's cpu preset (the README: 3 seeds)
    assert not found["top_level_imported"]


def test_no_top_level_experiments_package_is_installed(tmp_path):
    origin = json.loads(python(NO_TOP_LEVEL, cwd=tmp_path))
    assert origin is None or not Path(origin).resolve().is_relative_to(ROOT), origin


def test_pyproject_installs_every_package_and_maps_the_experiments_folder_into_it():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    source = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "gradual_jax").rglob("__init__.py")}
    assert source >= {"gradual_jax", "gradual_jax.envs.schedules"}  # the walk itself finds nested packages
    wanted, listed = source | {"gradual_jax.experiments"}, set(setuptools["packages"])
    assert listed == wanted, (f"pyproject.toml [tool.setuptools] packages: add {sorted(wanted - listed)}, "
                              f"remove {sorted(listed - wanted)}")
    assert setuptools["package-dir"] == {"gradual_jax.experiments": "experiments"}
    assert (ROOT / "experiments" / "__init__.py").is_file() and not (ROOT / "gradual_jax" / "experiments").exists()
