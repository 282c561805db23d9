"""Re-export of the user-facing errors (defined in the lowest layer, ``bench.methods.errors``)."""
import warnings
from typing import Callable

from .methods.errors import BenchError, BenchWarning, ConfigError, UnknownName

__all__ = ["BenchError", "BenchWarning", "ConfigError", "UnknownName"]


def show_warnings(echo: Callable[[str], None]) -> None:
    """Print each :class:`BenchWarning` as one ``warning: <message>`` line through ``echo``.

    Other warnings keep Python's format. Installed by the ``bench`` command line; library
    callers see ordinary ``warnings`` (and may filter or record them).
    """
    previous = getattr(warnings.showwarning, "_bench_previous", warnings.showwarning)

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, BenchWarning):
            echo(f"warning: {message}")
        else:
            previous(message, category, filename, lineno, file, line)

    show._bench_previous = previous  # type: ignore[attr-defined]
    warnings.showwarning = show
