"""The fit cache: one fitted state per (method fit identity, dataset, category, seed, data).

A fitted state (PatchCore's memory bank, a trained student, ...) is saved once with
``torch.save`` (temp file + rename, so a kill never leaves a torn file) and loaded by every
cell that needs it; adaptation then works on the loaded copy, never on the cached one.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import torch

from .datasets.cache import cache_dir
from .methods.errors import BenchError
from .methods.persist import atomic_write, file_digest, stable_hash


def data_fingerprint(root: Path | None, ids: list[str], files: Sequence[Path] = ()) -> str:
    """Identity of a training set: its ids with the sizes and contents of the files they are read
    from: ``files`` where the loader names them (a split csv / json, IDX files, pickled batches),
    else ``root / id``, each of which must exist (a key that skipped unreadable files would let a
    fit of other images pass for this one).

    Contents, not modification times: two copies of a dataset (two nodes of a cluster, each
    generating the embedded textures or holding its own copy of MVTec AD) share their fits and
    pass the driver's key check; a file rewritten with other bytes gets a new key.
    """
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode())
        if root is not None and not files:
            path = root / i
            try:
                st = os.stat(path)
            except OSError as exc:
                raise BenchError(f"{path}: training image {i!r} cannot be read ({exc.strerror}); "
                                 "restore the file or run again so the dataset is listed anew") from exc
            h.update(f"{st.st_size}:{file_digest(path, st)}".encode())
    for path in files:
        try:
            st = os.stat(path)
            h.update(f"|{Path(path).name}:{st.st_size}:{file_digest(Path(path), st)}".encode())
        except OSError:
            h.update(f"|{Path(path).name}:missing".encode())
    return h.hexdigest()[:16]


def split_fingerprint(split: Any) -> str:
    """Identity of a test split (``datasets.base.TestSplit``) as a row was computed on: image ids,
    labels, defect types, pixel ground truth or not, and the sizes and contents of the files each
    image and its mask are read from where the loader names them (``split.files``). Rows record it
    as ``test_data``; a resumed grid recomputes the cells whose recorded value differs."""
    h = hashlib.sha256()
    h.update(repr((list(split.images.ids), [int(x) for x in split.labels], list(split.defect_types),
                   bool(split.has_masks))).encode())
    for files in split.files or ():
        for path in files:
            try:
                st = os.stat(path)
                h.update(f"|{st.st_size}:{file_digest(Path(path), st)}".encode())
            except OSError:
                h.update(b"|missing")
    return h.hexdigest()[:16]


class FitCache:
    def __init__(self, root: Path | None = None, memory_items: int = 2) -> None:
        self.root = Path(root) if root is not None else cache_dir("fits")
        self.root.mkdir(parents=True, exist_ok=True)
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._memory_items = memory_items
        self.stats = {"hits": 0, "misses": 0}

    @staticmethod
    def key(identity: dict[str, Any]) -> str:
        return stable_hash(identity, 20)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.stats["hits"] += 1
            return self._memory[key]
        path = self.path(key)
        if not path.is_file():
            self.stats["misses"] += 1
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # a file from an incompatible version: refit rather than fail
            self.stats["misses"] += 1
            return None
        self.stats["hits"] += 1
        self._remember(key, entry)
        return entry

    def save(self, key: str, state: dict[str, Any], meta: dict[str, Any]) -> None:
        entry = {"state": state, "meta": {**meta, "saved_at": time.time()}}
        atomic_write(self.path(key), lambda fh: torch.save(entry, fh), durable=False)
        self._remember(key, entry)

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
