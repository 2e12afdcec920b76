"""The README's "Your own experiment" example: the file it shows is an experiment, and
`gradual-jax show` lists the lanes the README says it has."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gradual_jax import cli

ROOT = Path(__file__).resolve().parents[1]


def readme_experiment_file() -> str:
    """The one ```python block of the README's "Your own experiment" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Your own experiment\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def show(argv: list[str], capsys) -> dict:
    assert cli.main(["show", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)[""]


def test_the_experiment_file_shows_its_lanes(tmp_path, capsys):
    file = tmp_path / "my_exp.py"
    file.write_text(readme_experiment_file())

    tiny = show([f"{file}:tiny"], capsys)
    assert tiny["config"]["name"] == "my-exp" and tiny["config"]["preset"] == "tiny"
    assert tiny["config"]["task"]["num_tasks"] == 3
    assert [(lane["schedule"], lane["seed"]) for lane in tiny["lanes"]] == [("abrupt", 0), ("output_interp", 0)]

    cpu = show([str(file)], capsys)  # no preset: cpu, as the README says
    assert cpu["config"]["preset"] == "cpu" and cpu["config"]["sweep"]["deltas"] == [0.25, 0.05]
    assert len(cpu["lanes"]) == 9  # 3 seeds × (abrupt + 2 Δ)
    assert sorted({lane["delta"] for lane in cpu["lanes"] if lane["schedule"] == "output_interp"}) == [0.05, 0.25]
    assert show([f"{file}:cpu"], capsys) == cpu
