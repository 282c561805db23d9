"""One grid at a time per run directory: an OS lock on ``<run>/run.lock``.

Two grids on one run directory would both compute every missing cell. The grid takes an
exclusive ``flock`` on the lock file for its whole life and writes its PID into it, so a second
grid stops (within a second) with one line naming the holder. The kernel drops the lock when the holder's
file is closed, including when the process dies by SIGKILL: no stale lock to clean up by hand.
The descriptor is not inherited by worker processes (Python opens files non-inheritable), so a
worker that outlives a killed driver does not keep the run locked.
"""
from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Iterator

from .errors import BenchError
from .methods.persist import pid_alive

try:
    import fcntl
except ImportError:  # Windows has no flock; of the commands, only a grid (and bench status) needs it
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"


class RunLocked(BenchError):
    """Another process holds the run directory's lock."""

    def __init__(self, run_dir: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        stop = f", stop it (kill {pid})" if pid else ""
        super().__init__(f"--out {run_dir}: another bench grid ({who}) is running on this run directory; "
                         f"wait for it to finish{stop}, or pass another --out")
        self.pid = pid


def _need_flock() -> None:
    if fcntl is None:
        raise BenchError("running a grid needs POSIX file locks (Linux, macOS), which this system lacks; on "
                         "Windows run adshift-bench in WSL")


def make_run_dir(run_dir: Path) -> None:
    """Create the run directory, or say in one line why it cannot be (a file in the way, read-only)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (run_dir, *run_dir.parents) if p.exists() and not p.is_dir()), run_dir)
        raise BenchError(f"--out {run_dir}: {blocker} is a file, not a folder; pass --out a folder path "
                         "(it is created if missing)") from None
    except OSError as exc:
        raise _not_writable(run_dir, exc) from None


def _not_writable(run_dir: Path, exc: OSError) -> BenchError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BenchError(f"--out {run_dir}: not writable ({exc.strerror}); pass --out a folder you can write to")
    return BenchError(f"--out {run_dir}: {exc.strerror}; pass --out another folder")


def _holder(path: Path) -> int | None:
    """The PID in the lock file. The holder writes it just after locking, so a contender may
    briefly read nothing or the PID of a holder that died: wait a moment for a live one."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        pid = int(text) if text.isdigit() else None
        if (pid is not None and pid_alive(pid)) or time.monotonic() > deadline:
            return pid
        time.sleep(0.05)


@contextlib.contextmanager
def hold(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block (creating the directory); raise
    :class:`RunLocked` at once when another process holds it."""
    run_dir = Path(run_dir)
    _need_flock()
    make_run_dir(run_dir)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _not_writable(run_dir, exc) from None
    try:
        deadline = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # a moment's grace: `bench status` probes the lock with a shared flock for an instant
                if time.monotonic() > deadline:
                    raise RunLocked(run_dir, _holder(path)) from None
                time.sleep(0.05)
        # The PID is only a message for the next contender; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def running_grid(run_dir: str | os.PathLike) -> int | None:
    """The PID of the grid holding ``run_dir``'s lock now (0 when it has not written it yet), or
    None when no grid runs there. Takes a shared lock for an instant, never waits, creates nothing."""
    _need_flock()
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: no grid ever ran here (or it cannot be read: say nothing runs)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(path) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
