"""The package version (bottom layer: every module that records it imports it from here)."""

__version__ = "0.2.0"
