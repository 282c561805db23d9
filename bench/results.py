"""Results store: one Parquet part per finished cell, written atomically.

Layout of a run directory::

    run_dir/grid.json                 the grid spec (manifest)
    run_dir/parts/<cell_id>.parquet   one row per finished cell (ok or failed)
    run_dir/parts/<cell_id>.maps.npz  its anomaly-map samples, when it has any (bench.samples)

A part appears under its final name only through ``os.replace`` of a fully written and
fsynced temp file in the same directory, so a process killed at any moment leaves either the
old part, the new part, or a stray ``*.tmp`` file that readers ignore - never a torn part.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .methods.persist import TMP_SUFFIX, atomic_write, tmp_pid
from .metrics import METRICS as _REGISTRY
from .samples import SAMPLES_KEY, SIDE_SUFFIX, MapSamples, unpack
from .stats import INTERVAL_COLUMNS

__all__ = [
    "SCHEMA",
    "METRICS",
    "IDENTITY",
    "RunStore",
    "CorruptPartError",
    "load_rows",
    "export",
]

PARTS_DIR = "parts"
MANIFEST = "grid.json"

IDENTITY = (
    "cell_id", "method", "config", "config_hash", "dataset", "category", "corruption",
    "severity", "seed", "backbone", "weights", "image_size", "protocol",
)
METRICS: tuple[str, ...] = tuple(_REGISTRY)  # the metric columns, from the metrics registry

_STR, _INT, _FLOAT, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Fixed types for the core columns keep every part's schema identical, whatever Python
# types the runner happened to produce (numpy scalars, None for a failed cell, ...).
SCHEMA: dict[str, pa.DataType] = {
    "cell_id": _STR, "method": _STR, "config": _STR, "config_hash": _STR,
    "dataset": _STR, "category": _STR, "corruption": _STR, "severity": _INT, "seed": _INT,
    "backbone": _STR, "weights": _STR, "image_size": _INT, "protocol": _STR,
    **{m: _FLOAT for m in METRICS},
    "fit_seconds": _FLOAT, "fit_cached": _BOOL, "adapt_seconds": _FLOAT,
    "score_seconds": _FLOAT, "metric_seconds": _FLOAT, "total_seconds": _FLOAT,
    "peak_memory_mb": _FLOAT, "device": _STR, "versions": _STR, "status": _STR,
    "error": _STR, "finished_at": _STR, "n_test": _INT,
    **{c: _FLOAT for c in INTERVAL_COLUMNS}, "bootstrap_resamples": _INT,
    # per-image columns (bench.samples); parts written before them simply lack them
    "image_ids": pa.list_(_STR), "image_labels": pa.list_(pa.int8()), "image_scores": pa.list_(_FLOAT),
    "map_sample_ids": pa.list_(_STR),
}
_LISTS = {name for name, typ in SCHEMA.items() if pa.types.is_list(typ)}

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CorruptPartError(RuntimeError):
    """A part file exists but cannot be read (e.g. truncated by a disk-full or a copy)."""


# --------------------------------------------------------------------------- conversion


def _plain(value: Any) -> Any:
    """Python scalar for numpy scalars/arrays; JSON text for nested containers."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy / torch scalar
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (dict, list, tuple, set)):
        if isinstance(value, set):
            value = sorted(value)
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _infer_type(name: str, value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _FLOAT
    if value is None:
        # diag_ columns are numeric; a None there should not make a null-typed column
        return _FLOAT if name.startswith("diag_") else pa.null()
    return _STR


def row_to_table(row: Mapping[str, Any]) -> pa.Table:
    """One-row Arrow table with the canonical types; missing core columns become null."""
    if "cell_id" not in row:
        raise KeyError("result row has no 'cell_id'")
    names: list[str] = list(SCHEMA)
    names += sorted(k for k in row if k not in SCHEMA)
    arrays, fields = [], []
    for name in names:
        if name in _LISTS:  # a list column stays a list (not JSON text); None for a failed cell
            value = row.get(name)
            arrays.append(pa.array([None if value is None else list(value)], type=SCHEMA[name]))
            fields.append(pa.field(name, SCHEMA[name]))
            continue
        value = _plain(row.get(name))
        typ = SCHEMA.get(name) or _infer_type(name, value)
        if isinstance(value, float) and math.isnan(value) and typ != _FLOAT:
            value = None  # NaN means "missing" for str/int/bool columns
        if typ == _STR and value is not None and not isinstance(value, str):
            value = str(value)
        try:
            arrays.append(pa.array([value], type=typ))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise TypeError(f"column {name!r}: cannot store {value!r} as {typ}: {exc}") from None
        fields.append(pa.field(name, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _ordered_columns(columns: Iterable[str]) -> list[str]:
    cols = list(columns)
    core = [c for c in SCHEMA if c in cols]
    diag = sorted(c for c in cols if c.startswith("diag_") and c not in SCHEMA)
    rest = [c for c in cols if c not in SCHEMA and not c.startswith("diag_")]
    return core + rest + diag


def _sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    # finished_at approximates grid order (what "first appearance" in tables relies on);
    # cell_id breaks ties so the result is deterministic.
    keys = [k for k in ("finished_at", "cell_id") if k in df.columns]
    if keys and len(df):
        df = df.sort_values(keys, kind="stable", na_position="last")
    return df.reset_index(drop=True)


def _concat(tables: list[pa.Table]) -> pd.DataFrame:
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SCHEMA})
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
        df = table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # incompatible types for one column across parts (e.g. a diag_ str and float)
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    df = df[_ordered_columns(df.columns)]
    return _sort_rows(df)


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for torn files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptPartError(
            f"unreadable result part {path} ({reason}); delete this file so the cell reruns"
        ) from None


def _read_parts(paths: list[Path], columns: list[str] | None = None) -> list[pa.Table]:
    if len(paths) < 16:
        return [_read_part(p, columns) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda p: _read_part(p, columns), paths))


# --------------------------------------------------------------------------- atomic io


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- store


class RunStore:
    """Parquet parts of one run, one file per cell, keyed by ``cell_id``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.parts_dir = self.run_dir / PARTS_DIR
        self.manifest_path = self.run_dir / MANIFEST

    def __repr__(self) -> str:
        return f"RunStore({str(self.run_dir)!r})"

    def part_path(self, cell_id: str) -> Path:
        if not isinstance(cell_id, str) or not _SAFE_ID.match(cell_id):
            raise ValueError(f"cell_id {cell_id!r} is not a safe file name")
        return self.parts_dir / f"{cell_id}.parquet"

    def _part_files(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.glob("*.parquet") if not p.name.startswith("."))

    # writing -------------------------------------------------------------------------

    def samples_path(self, cell_id: str) -> Path:
        self.part_path(cell_id)  # checks the id
        return self.parts_dir / f"{cell_id}{SIDE_SUFFIX}"

    def write(self, row: Mapping[str, Any]) -> Path:
        """Store one finished cell; writing the same cell_id again replaces it.

        The map samples (``SAMPLES_KEY``, bytes) go to the side file first: a part on disk always
        has the side file it names, and a kill in between leaves a side file the rerun replaces.
        """
        row = dict(row)
        blob = row.pop(SAMPLES_KEY, None)
        table = row_to_table(row)
        final = self.part_path(row["cell_id"])
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if blob is not None:
            atomic_write(self.samples_path(row["cell_id"]), lambda fh: fh.write(blob))
        atomic_write(final, lambda fh: pq.write_table(table, fh))
        return final

    def read_samples(self, cell_id: str) -> MapSamples | None:
        """The cell's anomaly-map samples, or None when it has none (older runs, --map-samples 0)."""
        path = self.samples_path(cell_id)
        return unpack(path.read_bytes()) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.manifest_path, lambda fh: fh.write(text.encode("utf-8")))
        return self.manifest_path

    def remove_stale_tmp(self) -> int:
        """Delete temp files left by writers that no longer run (same host). Returns count."""
        removed = 0
        for directory in (self.run_dir, self.parts_dir):
            if not directory.is_dir():
                continue
            for tmp in directory.glob(f".*{TMP_SUFFIX}"):
                pid = tmp_pid(tmp)
                if pid is not None and _pid_alive(pid):
                    continue
                try:
                    tmp.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # reading -------------------------------------------------------------------------

    def read_manifest(self) -> dict | None:
        """The stored grid spec, or None when the run has none yet."""
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def done_ids(self, include_failed: bool = True) -> set[str]:
        """cell_ids with a part on disk; with include_failed=False only those with status ok."""
        files = self._part_files()
        if include_failed:
            return {p.name[: -len(".parquet")] for p in files}
        done = set()
        for path, table in zip(files, _read_parts(files, columns=["cell_id", "status"])):
            status = table.column("status").to_pylist()
            if status and status[0] == "ok":
                done.add(path.name[: -len(".parquet")])
        return done

    def __len__(self) -> int:
        return len(self._part_files())

    def __contains__(self, cell_id: str) -> bool:
        return self.part_path(cell_id).exists()

    def read(self) -> pd.DataFrame:
        """All parts as one DataFrame (columns unioned; absent diag_ columns are NaN)."""
        return _concat(_read_parts(self._part_files()))


# --------------------------------------------------------------------------- helpers


def load_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Rows of several runs (see :func:`load_rows`) as one frame; a cell id present in more than
    one of them keeps the row of the last path given."""
    frames = [load_rows(p) for p in paths]
    if not frames:
        raise FileNotFoundError("no run given")
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return _sort_rows(df.drop_duplicates("cell_id", keep="last"))


def load_rows(path: str | os.PathLike) -> pd.DataFrame:
    """Rows from a run directory, a parts directory, or a single parquet file.

    A directory holding no parts but a ``rows.parquet`` (a committed reference run) is read
    from that file.
    """
    path = Path(path)
    if path.is_file():
        return _sort_rows(pd.read_parquet(path))
    if not path.is_dir():
        raise FileNotFoundError(f"no results at {path}")
    if (path / PARTS_DIR).is_dir():
        return RunStore(path).read()
    if (path / "rows.parquet").is_file():
        return _sort_rows(pd.read_parquet(path / "rows.parquet"))
    parts = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if parts:
        return _concat(_read_parts(parts))
    raise FileNotFoundError(f"no result parts or rows.parquet under {path}")


def export(run_dir: str | os.PathLike, out_file: str | os.PathLike) -> Path:
    """Merge every part of a run into one parquet file (for committing reference runs)."""
    df = load_rows(run_dir)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(out, lambda fh: pq.write_table(table, fh, compression="zstd"))
    return out
