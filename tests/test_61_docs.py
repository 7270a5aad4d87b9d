"""The examples in README.md and docs/ run and print what they show."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
# a fence may be indented, inside a list item; its block is then dedented
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def blocks(path: Path, *languages: str) -> list[str]:
    return [textwrap.dedent(body) for _, language, body in FENCE.findall(path.read_text())
            if language in languages]


def scripts(path: Path) -> list[str]:
    """The ``python`` blocks that are programs rather than ``>>>`` sessions."""
    return [block for block in blocks(path, "python") if not block.lstrip().startswith(">>>")]


SCRIPTS = [(page, number) for page in DOCS for number in range(len(scripts(page)))]


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


@pytest.mark.parametrize(("page", "number"), SCRIPTS,
                         ids=[f"{page.name}-{number + 1}" for page, number in SCRIPTS])
def test_python_blocks_run_as_scripts(page: Path, number: int, examples: Path):
    # a script in a fresh interpreter, as a reader would run it: worker
    # processes started by spawn re-import it, which a `>>>` session hides
    script = examples / "example.py"
    script.write_text(scripts(page)[number])
    done = subprocess.run([sys.executable, script.name], cwd=examples, capture_output=True,
                          text=True, check=False, timeout=300)
    assert done.returncode == 0, f"{page.name}, python block {number + 1}:\n{done.stderr}"


@pytest.mark.parametrize("page", [*DOCS, ROOT / "README.md"],
                         ids=[*(page.name for page in DOCS), "README.md"])
def test_shell_blocks_parse(page: Path):
    for block in blocks(page, "bash", "sh"):
        done = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{page.name}:\n{block}\n{done.stderr}"


def test_readme_python_example_runs(examples: Path, monkeypatch):
    (code,) = blocks(ROOT / "README.md", "python")
    monkeypatch.chdir(examples.parent)
    exec(compile(code, "README.md", "exec"), {})
    assert (examples.parent / "masked.act.h5").exists()


def test_docs_have_examples():
    assert all(blocks(page, "console") or blocks(page, "pycon", "python") for page in DOCS)


def test_every_block_is_checked_or_marked_text():
    checked = {"console", "pycon", "python", "bash", "sh", "text"}
    for page in [*DOCS, ROOT / "README.md"]:
        languages = {language for _, language, _ in FENCE.findall(page.read_text())}
        assert languages <= checked, f"{page.name}: blocks in {languages - checked}"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]
