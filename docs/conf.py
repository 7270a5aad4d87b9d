"""Sphinx configuration of the dnnmask_xr docs site.

The source folder is the repository's root, so that README.md, docs/*.md and
notebooks/*.ipynb are built where they live and the links between them work
both here and when the files are browsed on GitHub; ``include_patterns``
keeps every other file out. Build it with (from the repository's root)::

    python -m sphinx -W --keep-going -c docs -b html . docs/_build/html

The notebooks are executed at every build (myst-nb, no cache), in a temporary
folder, and a cell that fails fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.util import logging

import dnnmask_xr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "dnnmask_xr"
author = "the dnnmask_xr developers"
copyright = "2026, the dnnmask_xr developers"
version = release = dnnmask_xr.__version__

extensions = [
    "myst_nb",  # registers myst_parser for .md and reads .ipynb
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]

root_doc = "docs/index"
include_patterns = ["README.md", "CHANGELOG.md", "docs/*.md", "docs/reference.rst",
                    "docs/generated/*.rst",
                    "notebooks/*.ipynb"]
# folders never walked for sources (the include patterns above pick the files)
exclude_patterns = ["docs/_build", "docs/_extra", "**/.ipynb_checkpoints", ".git", ".venv",
                    "venv", "build", "dist", "bench", "tests", "dnnmask_xr", "examples",
                    ".hypothesis", ".pytest_cache", ".ruff_cache", "*.egg-info"]

# -- MyST ------------------------------------------------------------------
# colon fences for directives: tests/test_61_docs.py runs the pages' ``` blocks
myst_enable_extensions = ["colon_fence", "deflist"]
# anchors for links like api.md#the-write-contract, named as GitHub names them
myst_heading_anchors = 4

# -- notebooks (myst-nb) ---------------------------------------------------
nb_execution_mode = "force"  # run every notebook at every build: outputs are not in git
nb_execution_in_temp = True  # the files they write stay out of the checkout
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_merge_streams = True

# -- API reference -----------------------------------------------------------
autosummary_generate = True
# absolute: autosummary takes templates_path relative to the source folder, the
# HTML builder relative to this one (autosummary/class.rst documents members)
templates_path = [str(HERE / "_templates")]
autodoc_typehints = "none"  # the numpydoc docstrings say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# -- HTML ------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"dnnmask_xr {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
# the site's index.html, pointing to docs/index.html
html_extra_path = [str(HERE / "_extra")]
html_show_sourcelink = False

REFERENCE = ROOT / "docs" / "reference.rst"


def _check_reference(app) -> None:
    """Warn (an error under -W) when the API reference misses a public name."""
    listed = set(re.findall(r"^\s+dnnmask_xr\.(\w+)\s*$", REFERENCE.read_text(), re.MULTILINE))
    missing = sorted(set(dnnmask_xr.__all__) - listed)
    extra = sorted(listed - set(dnnmask_xr.__all__))
    logger = logging.getLogger(__name__)
    if missing:
        logger.warning("docs/reference.rst lists no entry for dnnmask_xr.%s",
                       ", dnnmask_xr.".join(missing))
    if extra:
        logger.warning("docs/reference.rst lists names not in dnnmask_xr.__all__: %s",
                       ", ".join(extra))


def _check_citation(app) -> None:
    """Warn (an error under -W) when CITATION.cff names another version than the package."""
    found = re.search(r"^version:\s*(\S+)\s*$", (ROOT / "CITATION.cff").read_text(), re.MULTILINE)
    cited = found.group(1).strip("\"'") if found else None
    if cited != dnnmask_xr.__version__:
        logging.getLogger(__name__).warning(
            "CITATION.cff gives version %s, dnnmask_xr/_version.py %s",
            cited, dnnmask_xr.__version__)


def setup(app):  # noqa: D103 (Sphinx calls it)
    app.connect("builder-inited", _check_reference)
    app.connect("builder-inited", _check_citation)
