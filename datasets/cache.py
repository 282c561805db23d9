"""Where derived files live: $ADSHIFT_BENCH_CACHE, else $XDG_CACHE_HOME/adshift-bench."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def cache_root() -> Path:
    """``$ADSHIFT_BENCH_CACHE``, else ``$XDG_CACHE_HOME/adshift-bench`` (``~/.cache/adshift-bench``)."""
    base = os.environ.get("ADSHIFT_BENCH_CACHE")
    return Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adshift-bench"


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_at(path: str | os.PathLike) -> Iterator[Path]:
    """``ADSHIFT_BENCH_CACHE=path`` inside the block (this process and the workers it starts)."""
    old = os.environ.get("ADSHIFT_BENCH_CACHE")
    os.environ["ADSHIFT_BENCH_CACHE"] = str(path)
    try:
        yield Path(path)
    finally:
        if old is None:
            os.environ.pop("ADSHIFT_BENCH_CACHE", None)
        else:
            os.environ["ADSHIFT_BENCH_CACHE"] = old
