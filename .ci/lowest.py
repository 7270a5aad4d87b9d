"""Print pip constraints pinning every dependency to the lowest version pyproject.toml allows.

``pip install -c <(python .ci/lowest.py) -e ".[test]"`` then installs the
oldest versions the project claims to work with: the lower bounds stay in
pyproject.toml, and only there. Needs Python 3.11 or newer (tomllib).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
LOWER_BOUND = re.compile(
    r"^\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(;.*)?$")


def lowest_pins(pyproject: dict) -> dict[tuple[str, str], str]:
    """Map each requirement's name and marker to the lower bound of its ``>=``, over all extras.

    A marker stays on its pin (pip skips the pins whose marker does not apply), so a
    package may have one bound per Python version.
    """
    project = pyproject["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins: dict[tuple[str, str], str] = {}
    for requirement in requirements:
        found = LOWER_BOUND.match(requirement)
        if found is None:
            sys.exit(f"no lower bound to pin in {requirement!r}: write it as 'name>=version'")
        name, version, marker = found.groups()
        key = (name.lower(), (marker or "").strip())
        if pins.setdefault(key, version) != version:
            sys.exit(f"{name} has two lower bounds: {pins[key]} and {version}")
    return pins


def main() -> None:
    """Print one ``name==version`` line per dependency."""
    with PYPROJECT.open("rb") as file:
        pins = lowest_pins(tomllib.load(file))
    for (name, marker), version in sorted(pins.items()):
        print(f"{name}=={version}{marker}")


if __name__ == "__main__":
    main()
