"""The installed package's version."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dnnmask_xr")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
