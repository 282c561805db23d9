"""User-facing errors: one line that names the offending file or value and says the fix.

``bench`` prints ``str(error)`` without a traceback (unless ``--debug``). Both ``methods`` and
``datasets`` raise these, so they live in the lowest layer; ``bench.errors`` re-exports them.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class BenchError(Exception):
    """An error caused by input the user can fix; its message is the whole story."""


_PLURAL = {"category": "categories"}
_LISTED = {"method": "methods", "dataset": "datasets", "corruption": "corruptions", "point corruption": "corruptions",
           "preset": "presets"}


class UnknownName(BenchError):
    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        listed = _LISTED.get(kind)  # `bench list` lists these kinds; a dataset's categories are here
        super().__init__(
            f"unknown {kind} '{name}': {hint}known {_PLURAL.get(kind, kind + 's')}: {', '.join(known)}"
            + (f" (see `bench list {listed}`)" if listed else "")
        )
        self.name = name


class ConfigError(BenchError, ValueError):
    """A method config value out of its declared range (also a ValueError, as dataclasses raise)."""


class BenchWarning(UserWarning):
    """Something the user should hear once, in one line, that does not stop the run.

    ``bench`` prints these as ``warning: <message>``; in code they are ordinary ``warnings``
    (filter them with ``warnings.simplefilter("ignore", BenchWarning)``).
    """


# Every message ``warn`` issued in this process: the driver says a worker's warning only when
# this process has not (the driver already read the dataset the worker reads again).
SAID: set[str] = set()


def warn(message: str) -> None:
    """Issue a :class:`BenchWarning` (printed once per message by Python's default filter)."""
    import warnings

    SAID.add(message)
    warnings.warn(message, BenchWarning, stacklevel=2)
