"""Shared fixtures: small activation files made for each test."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import settings
from reliability import BigInput, make_big_input

import dnnmask_xr.act.chunk_read
from dnnmask_xr.testing import relu_activations, write_reference_act

T = TypeVar("T")

#: Hypothesis profiles, chosen with ``DNNMASK_XR_HYPOTHESIS``: ``default`` (hypothesis' own,
#: when unset) runs each property test on the examples it asks for (:func:`examples`);
#: ``quick`` on at most 10: .ci/run uses it for its second pass, on the lowest dependency
#: versions, which checks that the same tests pass there rather than searching as hard for
#: new failures.
settings.register_profile("quick", max_examples=10)
HYPOTHESIS_PROFILE = os.environ.get("DNNMASK_XR_HYPOTHESIS", "default")
settings.load_profile(HYPOTHESIS_PROFILE)
#: What hypothesis' default profile runs of a test that names no number.
USUAL_EXAMPLES = 100


def examples(wanted: int) -> int:
    """The ``max_examples`` of a property test that wants ``wanted`` examples.

    Under a profile of hypothesis' usual 100 examples or more (``default``, ``ci``) the
    test runs what it asks for; a profile of fewer (``quick``) caps every test at its own
    number. Read when the test module is imported, after the profile is loaded above.
    """
    profile = settings.default.max_examples
    return wanted if profile >= USUAL_EXAMPLES else min(wanted, profile)


def quick() -> bool:
    """Tell whether the profile samples (``quick``) rather than runs every case."""
    return settings.default.max_examples < USUAL_EXAMPLES


def sampled(cases: Sequence[T], share: int = 4) -> list[T]:
    """The cases of a search written out by hand (the metadata fuzz), as the profile asks.

    What :func:`examples` is for hypothesis: every case under a profile of the usual 100
    examples or more; under ``quick``, every ``share``-th, so that the sample still
    spreads over all of them (they are listed in file order).
    """
    if not quick():
        return list(cases)
    return list(cases[share // 2::share])


def grid_cases(*values: Sequence[T]) -> list[tuple[T, ...]]:
    """The cases of a grid written out by hand (every route x suffix), as the profile asks.

    What ``quick`` does to a parametrized test's grid (:func:`each_value_once`), for a
    grid that a test builds itself: every case under the usual profile; under ``quick``
    the diagonal, so that every value of every list still runs (each route to one
    suffix, the suffixes taken in turn along the routes).
    """
    cases = list(itertools.product(*values))
    if not quick():
        return cases
    return [cases[i] for i in covering_rows(cases)]


@pytest.fixture(autouse=True, scope="session")
def python_signal_handlers():
    """SIGINT, SIGTERM and SIGHUP handled as Python starts with them, for every test.

    Tests signal this process (a KeyboardInterrupt is expected, the writer takes the
    handlers over) and the children it starts (which inherit an ignored signal, not a
    handler). pytest started as a background job (``python -m pytest &`` in bash) or
    under ``nohup`` inherits SIGINT or SIGHUP ignored; they are set here for the session
    and given back at its end. Children that are sent signals are also started with
    ``reliability.default_signals``.
    """
    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
              signal.SIGHUP: signal.SIG_DFL}
    inherited = {signum: signal.getsignal(signum) for signum in wanted}
    for signum, handler in wanted.items():
        signal.signal(signum, handler)
    yield
    for signum, handler in inherited.items():
        if handler is not None:  # None: set outside Python, which cannot set it back
            signal.signal(signum, handler)


#: The slow tiers (markers, pyproject.toml): a test in one of them is slow.
SLOW_TIERS = ("notebooks", "reliability", "properties", "processes")


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark slow every test of a slow tier, and the cases a ``sweep`` leaves out of the core.

    ``@pytest.mark.sweep("route", "suffix")`` keeps in the core tier the cases whose
    ``route`` and ``suffix`` are the first values of their parametrize lists (every
    parameter's first, if none is named). The values are compared, not the order of
    collection, so a case's tier does not depend on which tests are selected.
    """
    for item in items:
        if any(item.get_closest_marker(tier) for tier in SLOW_TIERS):
            item.add_marker(pytest.mark.slow)
            continue
        sweep = item.get_closest_marker("sweep")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if sweep is None or not params:
            continue
        for name in sweep.args or tuple(params):
            if name not in params:
                continue
            first = _listed_rows(item, name)
            if first and params[name] is not first[0][0]:
                item.add_marker(pytest.mark.slow)
                break
    if quick():
        _run_each_value_once(config, items)


def _run_each_value_once(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the parametrized cases that :func:`each_value_once` leaves out."""
    kept, left = [], []
    for item in items:
        grid = _grid_of(item)
        (kept if grid is not None and each_value_once(grid) else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


def each_value_once(grid: Mapping[str, tuple[int, int]]) -> bool:
    """Tell whether ``quick`` runs the case at ``grid``: its diagonal of the test's grid.

    ``grid`` maps each parameter to the case's position among that parameter's values
    and their number. The cases kept are those at positions ``j % n`` of every parameter
    of ``n`` values, for ``j`` up to the largest ``n``: every value of every parameter
    runs at least once (a route, a suffix, a signal), in as many cases as the longest
    list has, where the usual profile runs their product. A ``route`` x ``suffix`` grid
    runs each route to one suffix, in turn. A case of no parameter is kept.
    """
    longest = max((n for _, n in grid.values()), default=1)
    return any(all(at == j % n for at, n in grid.values()) for j in range(longest))


def _grid_of(item: pytest.Item) -> dict[str, tuple[int, int]] | None:
    """Each argument ``item``'s ``parametrize`` marks list: its position and its number of values.

    Read from the marks, not from the collected items, so that what is kept does not
    depend on which tests are selected. Arguments listed together in one mark share its
    rows: one argument stands for all. In the ``reliability`` tier, where a case is a
    process, a full disk or a race, the rows are those :func:`covering_rows` keeps, and
    the result is None if a mark leaves the case's row out; elsewhere every row counts
    (hand-written cases of the core, the compatibility matrix: what the lowest versions
    are run for). A fixture's ``params`` are all kept.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return {}
    grid: dict[str, tuple[int, int]] = {}
    covered = item.get_closest_marker("reliability") is not None
    for mark in item.iter_markers("parametrize"):
        argnames, rows = _parametrized(mark)
        if argnames[0] in grid or not all(name in callspec.params for name in argnames):
            continue
        # pytest's callspec.indices are not positions in the list (pytest 9); the values are
        # the mark's own objects
        case = tuple(callspec.params[name] for name in argnames)
        at = next((i for i, row in enumerate(rows)
                   if all(a is b for a, b in zip(row, case, strict=True))), None)
        if at is None:  # not sampled: every value of it runs
            continue
        kept = covering_rows(rows) if covered else list(range(len(rows)))
        if at not in kept:
            return None
        grid[argnames[0]] = (kept.index(at), len(kept))
    return grid


def covering_rows(rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """The rows of one ``parametrize`` mark that ``quick`` keeps: every value of each column.

    A mark that lists arguments together (``("route", "suffix"), WRITES``) holds a grid
    written out by hand, often a part of a product. Each column's distinct values are
    numbered as first listed; the rows on the diagonal of those numbers are kept
    (:func:`each_value_once`: of a whole product, what separate marks would keep), then,
    in order, every row that holds a value no kept row holds. A mark of one argument keeps
    every row of a distinct value.
    """
    return list(_covering(tuple(tuple(map(_value_key, row)) for row in rows)))


def _value_key(value: Any) -> str:
    """What tells a listed value from another: its repr (or the object, where repr fails)."""
    try:
        return repr(value)
    except Exception:  # an int of over 4 300 digits, a test value whose repr raises
        return f"<{type(value).__name__} at {id(value):#x}>"


@functools.cache
def _covering(rows: tuple[tuple[str, ...], ...]) -> tuple[int, ...]:
    columns = [list(dict.fromkeys(column)) for column in zip(*rows, strict=True)]
    kept = [i for i, row in enumerate(rows)
            if each_value_once({str(c): (columns[c].index(value), len(columns[c]))
                                for c, value in enumerate(row)})]
    seen = [{rows[i][c] for i in kept} for c in range(len(columns))]
    for i, row in enumerate(rows):
        if any(value not in seen[c] for c, value in enumerate(row)):
            kept.append(i)
            for c, value in enumerate(row):
                seen[c].add(value)
    return tuple(sorted(kept))


def _listed_rows(item: pytest.Item, *names: str) -> list[tuple[Any, ...]]:
    """What the ``parametrize`` marks of ``item`` list for ``names``: their rows, in order.

    Names listed by different marks are combined as pytest combines them (every row of
    one with every row of the other); none if a name is not parametrized. Taken from the
    marks, not from the collected items, so that the result does not depend on which
    tests are selected.
    """
    columns: list[tuple[list[str], list[tuple[Any, ...]]]] = []
    for mark in item.iter_markers("parametrize"):
        argnames, rows = _parametrized(mark)
        wanted = [name for name in names if name in argnames
                  and not any(name in taken for taken, _ in columns)]
        if wanted:
            at = [argnames.index(name) for name in wanted]
            columns.append((wanted, [tuple(row[i] for i in at) for row in rows]))
    if sorted(name for taken, _ in columns for name in taken) != sorted(names):
        return []
    order = [name for taken, _ in columns for name in taken]
    return [tuple(dict(zip(order, sum(combo, ()), strict=True))[name] for name in names)
            for combo in itertools.product(*(rows for _, rows in columns))]


def _parametrized(mark: pytest.Mark) -> tuple[list[str], list[tuple[Any, ...]]]:
    """A ``parametrize`` mark's argument names and its rows of values, as tuples."""
    names = mark.args[0] if mark.args else mark.kwargs["argnames"]
    values = mark.args[1] if len(mark.args) > 1 else mark.kwargs["argvalues"]
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    rows = []
    for row in values:
        if hasattr(row, "marks") and hasattr(row, "values"):  # a pytest.param
            row = row.values
        elif len(names) == 1:
            row = (row,)
        rows.append(tuple(row))
    return list(names), rows


#: Small layers shaped like AlexNet's: a conv layer and a fully connected one.
SMALL_SHAPES = {"conv5": (20, 6, 7), "fc3": (12, 1, 1)}
N_STIMULI = 5


@pytest.fixture
def layers() -> dict[str, np.ndarray]:
    """The arrays behind ``act_file``."""
    return relu_activations(N_STIMULI, SMALL_SHAPES, seed=1)


@pytest.fixture
def act_file(tmp_path: Path, layers: dict[str, np.ndarray]) -> Path:
    """An ``.act.h5`` file written the way DNNBrain writes one."""
    path = tmp_path / "in.act.h5"
    write_reference_act(path, layers)
    return path


@pytest.fixture
def stim_text() -> str:
    """A ``.stim.csv`` text matching ``act_file``."""
    rows = "\n".join(f"img{i}.png,{i % 2},{'cat' if i % 2 else 'dog'},{i * 0.5}"
                     for i in range(N_STIMULI))
    return f"type=image\npath=/data/images\ndata=stimID,label,condition,onset\n{rows}\n"


@pytest.fixture
def stim_file(tmp_path: Path, stim_text: str) -> Path:
    """A ``.stim.csv`` file matching ``act_file``."""
    path = tmp_path / "in.stim.csv"
    path.write_text(stim_text)
    return path


def digest(path: Path) -> str:
    """Hash a file's bytes, to show it was left untouched."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def big(tmp_path_factory: pytest.TempPathFactory) -> BigInput:
    """A large input whose mask must be re-encoded (the interrupt and race tests)."""
    return make_big_input(tmp_path_factory.mktemp("big-input"))


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every chunk the chunk reader inflates (its size), calling the real codec."""
    seen: list[int] = []
    real = dnnmask_xr.act.chunk_read.inflate

    def counting(data: bytes, size: int) -> bytes:
        seen.append(size)
        return real(data, size)

    monkeypatch.setattr(dnnmask_xr.act.chunk_read, "inflate", counting)
    return seen


@pytest.fixture
def split_parts(act_file: Path, stim_file: Path, tmp_path: Path):
    """Save ``act_file``'s stimuli, labelled, as two files of a suffix: 2 stimuli, then 3."""
    from dnnmask_xr import open_act, save_act

    def split(suffix: str) -> list[Path]:
        paths = []
        with open_act(act_file, stim=stim_file) as acts:
            for number, stimuli in enumerate([[0, 1], [2, 3, 4]]):
                paths.append(tmp_path / f"part{number}{suffix}")
                save_act(acts.isel(stimulus=stimuli), paths[-1])
        return paths

    return split
