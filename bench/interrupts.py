"""Ctrl-C and SIGTERM during a grid: stop cleanly, say what is written and how to resume.

SIGTERM is turned into an exception in the main thread (``Terminated``, a KeyboardInterrupt)
so that it unwinds like Ctrl-C: the part being written is discarded whole, worker pools and
the run's lock are released, and the grid reports ``GridInterrupted`` with its counts. Exit
codes follow the shell's convention, 128 + the signal: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread was (see ``sigterm_raises``)."""


def signal_of(exc: BaseException) -> signal.Signals:
    return signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT


class GridInterrupted(KeyboardInterrupt):
    """A grid stopped by a signal; ``str()`` is the one line to show, ``exit_code`` 128 + signal.

    A KeyboardInterrupt, so library callers that catch Ctrl-C still do.
    """

    def __init__(self, signum: signal.Signals, run_dir: Path, written: int, total: int, ran: int) -> None:
        self.signum, self.run_dir = signum, run_dir
        self.written, self.total, self.ran = written, total, ran
        self.exit_code = 128 + int(signum)
        super().__init__(f"interrupted ({signum.name}): {written} of {total} cells are written in {run_dir} "
                         f"({ran} by this run); run the same command to resume")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (elsewhere: no change,
    Python only lets the main thread set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ANN001
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
