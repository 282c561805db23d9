"""Re-export of the user-facing errors (defined in the lowest layer, ``bench.methods.errors``),
and the one-line form of the OS errors the command line meets."""
import errno
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


# The fix for each OS error a command may meet while reading or writing its files.
_OS_FIXES = {
    errno.ENOSPC: "free some space or write to another disk, then rerun the same command (a grid resumes with its finished cells)",
    errno.EDQUOT: "free some space or write to another disk, then rerun the same command (a grid resumes with its finished cells)",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.EEXIST: "a file is in the way: choose another path",
    errno.ENOTDIR: "a file is in the way of a folder: choose another path",
    errno.EISDIR: "it is a folder: pass a file path",
    errno.ENOENT: "check the path",
}


def os_error_line(exc: OSError) -> str:
    """``<file>: <what happened>; <the fix>`` for an OSError (a command's error line)."""
    what = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".")
    what = what[:1].lower() + what[1:]
    fix = _OS_FIXES.get(exc.errno, "rerun with --debug for the traceback")
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{what}; {fix}"
