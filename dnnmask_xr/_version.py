"""The package's version, the single place it is written.

A constant rather than ``importlib.metadata``, which costs start-up time
(``pyproject.toml`` reads it from here).
"""

__version__ = "0.1.0"
