"""The README's own-code examples: the experiment file it shows is an experiment whose lanes
`gradual-jax show` lists as the README says, and every example file in ``docs/examples/`` is
shown in the section on plugging in one's own parts (each example's own test checks its part)."""

from __future__ import annotations

import json

from gradual_jax import cli
from tests.conftest import ROOT, python_blocks, readme_section

PLUG_IN = "## Plug in your own schedule, model, mitigation or task family"


def readme_experiment_file() -> str:
    """The one ```python block of the README's "Your own experiment" section."""
    (code,) = python_blocks(readme_section("## Your own experiment"))
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


def test_every_example_file_is_run_from_the_plug_in_section():
    section = readme_section(PLUG_IN)
    examples = sorted((ROOT / "docs" / "examples").glob("*.py"))
    assert len(examples) >= 4
    for example in examples:
        assert f"gradual-jax run {example.relative_to(ROOT)}:cpu" in section, example.name
