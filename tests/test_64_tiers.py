"""The suite's own tiers and sampling: the slow tiers, and what ``quick`` (.ci/run's lowest
versions) runs.

Under ``quick`` a parametrized test runs the diagonal of its grid (each route to one
suffix, in turn, and so on for every parameter), and a reliability test's cases written out
in one list the rows that hold every value of every column; these check that the sample
still holds every value of every parameter, and that it is read from the test's
``parametrize`` marks.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import conftest
import pytest
from conftest import (
    SLOW_TIERS,
    _grid_of,
    _listed_rows,
    covering_rows,
    each_value_once,
    grid_cases,
)
from hypothesis import given
from hypothesis import strategies as st
from reliability import SUFFIXES
from routes import ROUTES

GRID = set(itertools.product(ROUTES, SUFFIXES))


def test_every_pair_runs_under_the_usual_profile(monkeypatch):
    monkeypatch.setattr(conftest, "quick", lambda: False)
    assert set(grid_cases(ROUTES, SUFFIXES)) == GRID


def test_quick_runs_each_route_once_and_every_suffix(monkeypatch):
    monkeypatch.setattr(conftest, "quick", lambda: True)
    kept = grid_cases(ROUTES, SUFFIXES)
    assert sorted(route for route, _ in kept) == sorted(ROUTES)
    assert {suffix for _, suffix in kept} == set(SUFFIXES)
    # in turn along the routes, as they are listed
    assert [dict(kept)[route] for route in ROUTES] == [
        SUFFIXES[i % len(SUFFIXES)] for i in range(len(ROUTES))]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("route", ROUTES[:3])
def test_the_grid_is_read_from_the_marks_of_separate_parametrizes(route, suffix, request):
    listed = _listed_rows(request.node, "route", "suffix")
    assert sorted(listed) == sorted(itertools.product(ROUTES[:3], SUFFIXES))
    assert (route, suffix) in listed


@pytest.mark.parametrize(("suffix", "n", "route"), [(".nc", 1, "command"),
                                                    (".act.h5", 2, "mask_file")])
def test_the_grid_is_read_from_the_rows_of_one_parametrize(suffix, n, route, request):
    assert _listed_rows(request.node, "route", "suffix") == [("command", ".nc"),
                                                            ("mask_file", ".act.h5")]
    assert _listed_rows(request.node, "route", "missing") == []


def test_the_slow_tiers_are_those_pyproject_registers_as_slow():
    # a tier registered (and documented) without the hook leaving it out of the core, or
    # the other way round, would put slow tests in the core or hide fast ones
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    registered = re.findall(r'^\s*"(\w+): [^"]*\(slow\)",$', text, flags=re.MULTILINE)
    assert sorted(registered) == sorted(SLOW_TIERS)


@pytest.mark.parametrize("tier", [pytest.param(tier, marks=getattr(pytest.mark, tier))
                                  for tier in SLOW_TIERS])
def test_a_test_of_a_slow_tier_is_left_out_of_the_core(tier, request):
    assert request.node.get_closest_marker("slow") is not None


def _kept_cases(sizes: list[int]) -> list[tuple[int, ...]]:
    names = [f"p{i}" for i in range(len(sizes))]
    return [case for case in itertools.product(*(range(n) for n in sizes))
            if each_value_once({name: (at, n) for name, at, n in zip(names, case, sizes,
                                                                        strict=True)})]


@given(st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_quick_runs_every_value_of_every_parameter_in_as_many_cases_as_the_longest_list(sizes):
    kept = _kept_cases(sizes)
    assert len(kept) == max(sizes)
    for axis, n in enumerate(sizes):
        assert {case[axis] for case in kept} == set(range(n))


def test_a_case_of_no_parameter_is_run():
    assert each_value_once({})


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize(("route", "suffix"), [("command", ".nc"), ("mask_file", ".act.h5")])
def test_the_positions_are_read_from_the_marks(route, suffix, signal_name, request):
    grid = _grid_of(request.node)
    assert grid == {"signal_name": (["SIGINT", "SIGTERM", "SIGHUP"].index(signal_name), 3),
                    "route": (["command", "mask_file"].index(route), 2)}


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("abc"), st.booleans()),
                min_size=1, max_size=30))
def test_cases_written_out_keep_every_value_of_every_column(rows):
    kept = covering_rows(rows)
    assert kept == sorted(set(kept)) and all(0 <= i < len(rows) for i in kept)
    for column in range(3):
        assert {rows[i][column] for i in kept} == {row[column] for row in rows}


@given(st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_cases_written_out_as_a_whole_product_keep_its_diagonal(sizes):
    rows = list(itertools.product(*(range(n) for n in sizes)))
    assert [rows[i] for i in covering_rows(rows)] == _kept_cases(sizes)


def test_cases_written_out_keep_a_row_for_a_value_off_the_diagonal():
    # the diagonal of the numbered values is (a, x), (b, y); (c, y) is the only row of c
    rows = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "y")]
    assert covering_rows(rows) == [0, 3, 4]


COVERED = [("command", ".act.h5"), ("command", ".nc"), ("mask_file", ".act.h5"),
           ("mask_file", ".nc")]


@pytest.mark.reliability
@pytest.mark.parametrize(("route", "suffix"), COVERED)
def test_a_reliability_case_written_out_runs_if_its_row_is_kept(route, suffix, request):
    kept = [("command", ".act.h5"), ("mask_file", ".nc")]
    assert _grid_of(request.node) == (
        {"route": (kept.index((route, suffix)), len(kept))} if (route, suffix) in kept
        else None)
