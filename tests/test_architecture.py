"""The floors of the package (docs/architecture.md) hold: the import-linter contracts in
pyproject.toml are kept, and a planted upward import breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cerberus

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(cerberus.__file__).parent
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                "lint_imports_command()"]


def _lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [*LINT_IMPORTS, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )


def test_every_package_is_on_a_floor():
    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"][0]["layers"]
    on_floors = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {
        f"cerberus.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()
    } | {f"cerberus.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert packages - on_floors == set()


def test_import_contracts_are_kept():
    result = _lint(PACKAGE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_floors(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "cerberus", ignore=shutil.ignore_patterns("__pycache__"))
    planted = copy / "cerberus" / "modeling" / "losses.py"
    planted.write_text(planted.read_text() + "\nfrom cerberus.search import gallery  # noqa\n")
    result = _lint(copy)
    assert result.returncode != 0
    assert "cerberus.modeling.losses -> cerberus.search" in result.stdout
