"""Strict from day one: ruff on the project, mypy --strict on responder/ and on tests/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is not installed next to {sys.executable} (pip install -e '.[test]')"
    return path


def test_ruff_is_clean() -> None:
    run = subprocess.run([_tool("ruff"), "check", "responder", "tests", "scripts"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict_is_clean() -> None:
    run = subprocess.run([_tool("mypy"), "--no-incremental", "responder"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_strict_is_clean_on_the_tests() -> None:
    """The tests too, interop included (pyproject's [tool.mypy]: strict, mypy_path for the
    modules they import by name)."""
    run = subprocess.run([_tool("mypy"), "--no-incremental", "tests"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
