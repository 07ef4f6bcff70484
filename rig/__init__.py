"""PlugStream rig: a pytest plugin and emulated bench for PlugStream 7/22 charge points."""
__version__ = "0.1.0"
