"""Importing this module registers the methods that ship with the harness."""
from . import patchcore  # noqa: F401
