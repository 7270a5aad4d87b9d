"""Describe layers for people, one line each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from dnnmask_xr.act.layout import NUMBERED_DIMS, is_counted_from_one
from dnnmask_xr.act.select import describe_numbers

#: A layer as described: name, shape, dtype, and unit numbers per axis.
LayerSummary = tuple[str, tuple[int, ...], np.dtype, Mapping[str, np.ndarray]]


def describe_layers(layers: Iterable[LayerSummary]) -> str:
    """Describe each layer on one line.

    Name, shape, dtype, size once loaded, and the channel/row/column
    numbers where they are not simply ``1..n``.
    """
    layers = list(layers)
    width = max((len(name) for name, *_ in layers), default=0)
    lines = []
    for name, shape, dtype, numbers in layers:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        line = (f"{name:<{width}}  {' x '.join(map(str, shape))}  {dtype}  "
                f"{format_bytes(nbytes)}")
        cut = [f"{dim} {describe_numbers(numbers[dim])}" for dim in NUMBERED_DIMS
               if not is_counted_from_one(numbers[dim])]
        lines.append(f"{line}  ({'; '.join(cut)})" if cut else line)
    return "\n".join(lines)


def format_bytes(nbytes: float) -> str:
    """Write a byte count for people: ``865.3 kB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")
