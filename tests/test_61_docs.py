"""The examples in README.md and docs/ run and print what they show."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path, *languages: str) -> list[str]:
    return [body for language, body in FENCE.findall(path.read_text()) if language in languages]


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A fresh copy of the example files, where the docs' commands run."""
    folder = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", folder)
    return folder


@pytest.mark.parametrize("page", DOCS, ids=[page.name for page in DOCS])
def test_console_examples_print_what_they_show(page: Path, examples: Path):
    for block in blocks(page, "console"):
        for command, shown in re.findall(r"^\$ (.*)\n((?:(?!\$ ).*\n)*)", block, re.MULTILINE):
            done = subprocess.run(["bash", "-c", command], cwd=examples, capture_output=True,
                                  text=True, check=False)
            printed = done.stdout + done.stderr
            assert _lines(printed) == _lines(shown), f"{page.name}: $ {command}"


@pytest.mark.parametrize("page", DOCS, ids=[page.name for page in DOCS])
def test_python_examples_print_what_they_show(page: Path, examples: Path, monkeypatch):
    text = "\n".join(block for block in blocks(page, "pycon", "python", "")
                     if block.lstrip().startswith(">>>"))
    monkeypatch.chdir(examples)
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) of {page.name} failed; see above"


def test_readme_python_example_runs(examples: Path, monkeypatch):
    (code,) = blocks(ROOT / "README.md", "python")
    monkeypatch.chdir(examples.parent)
    exec(compile(code, "README.md", "exec"), {})
    assert (examples.parent / "masked.act.h5").exists()


def test_docs_have_examples():
    assert all(blocks(page, "console") or blocks(page, "pycon", "python") for page in DOCS)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]
