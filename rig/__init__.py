"""PlugStream rig: a pytest plugin and emulated bench for PlugStream 7/22 charge points."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of the version: the package metadata (pyproject.toml)
    __version__ = version("plugstream-rig")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
