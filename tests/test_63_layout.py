"""The package's tree keeps README's Layout: imports run one way, down.

``formats/`` imports neither h5py nor xarray, ``act/`` no xarray, the
command (``cli.py`` and what it imports) nothing of ``xarray_/``, and no
module is missing from README's Layout or listed there without existing.
Read from the source with ``ast``, so a lazy import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dnnmask_xr"
README = PACKAGE.parent / "README.md"


def _modules() -> dict[str, Path]:
    return {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): path
            for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("dnnmask_xr.formats", ("h5py", "xarray", "dnnmask_xr.act", "dnnmask_xr.xarray_")),
    ("dnnmask_xr.act", ("xarray", "dnnmask_xr.xarray_", "dnnmask_xr.cli")),
])
def test_lower_floors_never_import_higher_ones(folder, forbidden):
    found = [(module, name) for module, path in _modules().items() if _under(module, folder)
             for name in _imports(path) if any(_under(name, bad) for bad in forbidden)]
    assert found == []


#: What the command imports only for a zarr store at either end (``-act``/``-out``
#: ending in ``.act.zarr``) or a ``.nc`` input, which it masks through the xarray side;
#: what it runs on .act.h5 files imports no xarray
#: (test_the_command_on_act_h5_loads_no_xarray).
XARRAY_ROUTE = "dnnmask_xr.xarray_.xarray_command"


def test_the_command_imports_nothing_of_the_xarray_side():
    modules = _modules()
    # everything the command's modules import from the package, followed
    seen, todo = set(), ["dnnmask_xr._start"]
    while todo:
        module = todo.pop()
        if module in seen or module not in modules:
            continue
        seen.add(module)
        todo.extend(name for name in _imports(modules[module])
                    if _under(name, "dnnmask_xr") and name != XARRAY_ROUTE)
    assert "dnnmask_xr.cli" in seen and "dnnmask_xr.act.write" in seen
    assert [module for module in seen if _under(module, "dnnmask_xr.xarray_")] == []
    assert not any("xarray" in _imports(modules[module]) for module in seen)


def test_the_command_on_act_h5_loads_no_xarray(tmp_path):
    examples = PACKAGE.parent / "examples"
    code = ("import sys\nfrom dnnmask_xr.cli import main\n"
            f"status = main(['-act', {str(examples / 'test.act.h5')!r}, '-dmask', "
            f"{str(examples / 'test.dmask.csv')!r}, '-out', {str(tmp_path / 'm.act.h5')!r}])\n"
            "print(status, sorted(m for m in ('xarray', 'zarr', 'dask') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == ["0 []"], done.stderr


def test_every_module_is_in_readmes_layout_and_every_listed_one_exists():
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):text.index("- `tests/`")]
    listed = set(re.findall(r"`([a-z_]+\.py)`", layout))
    present = {path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert present - listed == set(), "modules missing from README's Layout"
    assert listed - present - {"__init__.py"} == set(), "README lists modules that do not exist"


def test_no_import_runs_in_a_loop():
    modules = _modules()
    graph = {module: {name for name in _imports(path) if name in modules}
             for module, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo.extend(graph[module])
        return False

    loops = sorted((module, name) for module, names in graph.items() for name in names
                   if name != module and reaches(name, module)
                   and not module.endswith("__init__") and not name.endswith("__init__"))
    assert loops == []
