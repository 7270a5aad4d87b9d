"""Describe layers for people, one line each."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dnnmask_xr.act.layout import is_counted_from_one
from dnnmask_xr.act.select import describe_numbers

#: A layer as described: name, shape, dtype, and unit numbers per unit dim, by name.
LayerSummary = tuple[str, tuple[int, ...], np.dtype, Mapping[str, np.ndarray]]


def describe_layers(layers: Iterable[LayerSummary]) -> str:
    """Describe each layer on one line.

    Name, shape, dtype, size once loaded, and the unit numbers (channel,
    row, column, token, ...) where they are not simply ``1..n``.
    """
    rows = [(name, *_cells(shape, dtype, numbers)) for name, shape, dtype, numbers in layers]
    width = max((len(name) for name, *_ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {shape}  {dtype}  {size}" + (f"  ({cut})" if cut else "")
                     for name, shape, dtype, size, cut in rows)


def _cells(shape: tuple[int, ...], dtype: np.dtype,
           numbers: Mapping[str, np.ndarray]) -> tuple[str, str, str, str]:
    """Shape, dtype, size once loaded, and the unit numbers not ``1..n``, as text."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    cut = "; ".join(f"{dim} {describe_numbers(labels)}" for dim, labels in numbers.items()
                    if not is_counted_from_one(labels))
    return " x ".join(map(str, shape)), str(dtype), format_bytes(nbytes), cut


def format_bytes(nbytes: float) -> str:
    """Write a byte count for people: ``865.3 kB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def count(number: int, noun: str) -> str:
    """Write a count with its noun: ``1 stimulus``, ``6 stimuli``, ``2 layers``."""
    plural = {"stimulus": "stimuli"}.get(noun, noun + "s")
    return f"{number} {noun if number == 1 else plural}"


def layers_html(title: str, layers: Iterable[LayerSummary],
                sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Describe layers as an HTML table for notebooks, with titled sections of entries after it.

    Parameters
    ----------
    title
        The heading (the text repr's first line).
    layers
        The layers, as :func:`describe_layers` takes them.
    sections
        Heading to entries (name to value), such as the stimulus fields,
        the stimulus header and the attributes; empty sections are left out.
    """
    rows = ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>"
                             for cell in (name, *_cells(shape, dtype, numbers))) + "</tr>"
            for name, shape, dtype, numbers in layers]
    head = "".join(f"<th>{name}</th>" for name in ("layer", "shape (stimulus x units)",
                                                    "dtype", "size", "units kept"))
    parts = [f"<div><strong>{html.escape(title)}</strong>",
             f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"]
    for heading, entries in sections.items():
        if entries:
            items = "".join(f"<li><code>{html.escape(str(key))}</code>: "
                            f"{html.escape(str(value))}</li>" for key, value in entries.items())
            parts.append(f"<details><summary>{html.escape(heading)} ({len(entries)})</summary>"
                         f"<ul>{items}</ul></details>")
    return "".join(parts) + "</div>"
