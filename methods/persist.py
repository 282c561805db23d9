"""How files are written and things are named: one atomic write, one stable hash.

In the lowest layer (like ``errors``) because the harness, the datasets and the methods all
write files that a killed process must never leave torn, and name things by content.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import IO, Any, Callable

TMP_SUFFIX = ".tmp"


def stable_hash(obj: Any, n: int) -> str:
    """The first ``n`` hex digits of sha256 over ``obj`` as sorted-key JSON (``str`` for the rest).

    Equal values give equal hashes in every process and on every machine (unlike ``hash``).
    The callers' lengths are part of stored names (cell ids, fit-cache keys), so each keeps its own.
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def array_digest(arr: Any) -> str:
    """sha256 of an array's dtype, shape and bytes: the identity of its values (an image's pixels,
    a memory bank)."""
    import numpy as np  # here, not at the top: listing methods imports no numpy

    arr = np.asarray(arr)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


# (path, size, mtime_ns) -> content digest: a file is read once per process, however many cells ask.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path, st: os.stat_result | None = None) -> str:
    """BLAKE2b of a file's bytes, remembered for its (path, size, mtime) in this process."""
    st = st or os.stat(path)
    memo = (str(path), st.st_size, st.st_mtime_ns)
    found = _DIGESTS.get(memo)
    if found is None:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        found = _DIGESTS[memo] = h.hexdigest()
    return found


def tmp_path(final: Path) -> Path:
    """A temp name next to ``final``: leading dot, this pid, a random tag, ``.tmp`` suffix.

    It never matches the final name's glob (``*.parquet``, ``*.pt``, ``*.png``) and tells which
    process wrote it (``tmp_pid``), so stale ones can be removed safely.
    """
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def tmp_pid(path: Path) -> int | None:
    """The writer's pid from a ``tmp_path`` name, or None."""
    parts = path.name.split(".")
    return int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write(final: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, durable: bool = True) -> Path:
    """Write ``final`` through ``write(fh)`` on a temp file and ``os.replace`` it into place.

    A process killed at any moment leaves the old file, the new file, or a stray temp file -
    never a torn one. ``durable``: fsync the file and its directory (results); caches that can
    be regenerated skip it.
    """
    final = Path(final)
    tmp = tmp_path(final)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # a failed write() names no file (disk full): name the final one
            raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(final.parent)
    return final


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported (e.g. Windows); the rename itself is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
