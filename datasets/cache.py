"""Where derived files live: $ADSHIFT_BENCH_CACHE, else $XDG_CACHE_HOME/adshift-bench."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("ADSHIFT_BENCH_CACHE")
    if base:
        root = Path(base)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adshift-bench"
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
