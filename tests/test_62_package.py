"""What gets installed: every module and the PEP 561 marker ``py.typed``.

A pure-Python wheel holds what setuptools' ``build_py`` step copies, so the
test runs that step on a copy of the project (building a wheel itself needs
the ``wheel`` package, which setuptools before 70 does not bring).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dnnmask_xr"


def test_build_ships_modules_and_py_typed(tmp_path: Path):
    # build from a copy, so nothing (build/, *.egg-info) is left in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(PACKAGE, source / "dnnmask_xr",
                    ignore=shutil.ignore_patterns("__pycache__"))
    built = tmp_path / "lib"
    result = subprocess.run(
        [sys.executable, "-c", "from setuptools import setup; setup()",
         "build_py", "--build-lib", str(built)],
        cwd=source, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shipped = {path.relative_to(built).as_posix() for path in built.rglob("*")
               if path.is_file()}
    assert "dnnmask_xr/py.typed" in shipped
    modules = {path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")}
    assert modules <= shipped, f"not installed: {sorted(modules - shipped)}"
