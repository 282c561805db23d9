"""Importing this module registers the methods that ship with the harness."""
from . import patchcore  # noqa: F401
from . import rd4ad  # noqa: F401
from . import adaptation  # noqa: F401
