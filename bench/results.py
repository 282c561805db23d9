"""Results store: one Parquet part per finished cell, written atomically.

Layout of a run directory::

    run_dir/grid.json                 the latest grid spec it served (manifest)
    run_dir/grids.jsonl               every distinct grid spec it has served, oldest first
    run_dir/parts/<cell_id>.parquet   one row per finished cell (ok or failed)
    run_dir/parts/<cell_id>.maps.npz  its anomaly-map samples, when it has any (bench.samples)
    run_dir/quarantine/               parts found unreadable on resume (with a torn side file: both), moved aside
    run_dir/run.lock                  held by the grid that runs (``bench.run_lock``)

A part appears under its final name only through ``os.replace`` of a fully written and
fsynced temp file in the same directory, so a process killed at any moment leaves either the
old part, the new part, or a stray ``*.tmp`` file that readers ignore - never a torn part.
A part can still go bad afterwards (a full disk while copying, a partial sync, a hand edit):
a resuming grid checks every part and the map-sample side file it names
(``RunStore.quarantine_bad_parts``) and moves bad ones aside so their cells run again; readers
leave them out with a warning.
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

from .methods.errors import BenchError, warn
from .methods.persist import TMP_SUFFIX, atomic_write, pid_alive, tmp_pid
from .metrics import METRICS as _REGISTRY
from .samples import SAMPLES_KEY, SIDE_SUFFIX, MapSamples, read as read_side_file, side_file_problem
from .stats import INTERVAL_COLUMNS

__all__ = [
    "SCHEMA",
    "METRICS",
    "IDENTITY",
    "RunStore",
    "CorruptPartError",
    "NoResults",
    "load_rows",
    "export",
    "DEFECT_METRICS",
    "encode_defect_metrics",
    "decode_defect_metrics",
    "with_domain",
]

PARTS_DIR = "parts"
DEFECT_METRICS = "defect_metrics"  # the column of the per-defect-type breakdown
MANIFEST = "grid.json"
GRIDS = "grids.jsonl"
QUARANTINE_DIR = "quarantine"

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
    # what the row's bits depend on besides config and seed (bench.numerics); older parts lack them
    "threads": _INT, "cpu_model": _STR, "cpu_capability": _STR, "deterministic": _BOOL,
    "nondeterministic_ops": _STR, "numerics": _STR, "fit_threads": _INT, "fit_device": _STR,
    # the per-defect-type breakdown, JSON text (``encode_defect_metrics``); older parts lack it
    DEFECT_METRICS: _STR,
    # the test domain ("" = the dataset's own test split) and what its images are; older parts lack them
    "domain": _STR, "domain_source": _STR,
    # the cell whose identical scoring this row reused ("" = scored itself; runner.RunContext.score)
    "scores_shared_from": _STR,
    # the test split's identity (cache.split_fingerprint); a resumed grid reruns a cell whose split changed
    "test_data": _STR,
    # the training set's identity (cache.data_fingerprint, as in the fit's key): likewise for the fit
    "train_data": _STR,
}
_LISTS = {name for name, typ in SCHEMA.items() if pa.types.is_list(typ)}

# What a part needs to count as a done cell and to be tabulated. Not every SCHEMA column:
# a column added later must not make the parts of older runs look bad.
REQUIRED = (*IDENTITY, "status")
# What every reader of rows tells cells apart by: a rows.parquet without one of them is refused
ROW_KEYS = ("cell_id", "method", "dataset", "category", "corruption", "severity", "seed", "status")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Why a path holds no rows, and what to pass instead (every `bench table` / `export` input).
_WANTED = "pass a run directory (the --out of bench grid) or a rows.parquet file"


class CorruptPartError(BenchError, RuntimeError):
    """A Parquet file exists but cannot be read (e.g. truncated by a disk-full or a copy)."""


class NoResults(BenchError, FileNotFoundError):
    """A path given as results holds none (missing, empty, not a run, not Parquet)."""


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


def _reason(exc: BaseException) -> str:
    """pyarrow's message, short: first sentence, without the path it repeats."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = re.sub(r"^Could not open Parquet input source '.*?': ", "", text.splitlines()[0])
    return text.split(". ")[0].rstrip(".")


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for torn files
        raise CorruptPartError(f"{path}: unreadable Parquet file ({_reason(exc)}); pass an intact copy "
                               "(bench export writes one from its run directory)") from None


def _schema_problem(schema: pa.Schema) -> str | None:
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        return f"no column {', '.join(missing)}"
    wrong = [c for c in REQUIRED if not schema.field(c).type.equals(SCHEMA[c])]
    if wrong:
        return ", ".join(f"column {c} is {schema.field(c).type}, not {SCHEMA[c]}" for c in wrong)
    return None


def _inspect(path: Path) -> tuple[str | None, str | None, bool]:
    """``(status, None, names_samples)`` for a sound part, ``(None, why, False)`` for one that cannot
    be used. Sound: the footer reads, the REQUIRED columns are there with their types, and it holds
    one row whose cell_id is its file name. Reads the footer and three small columns only;
    ``names_samples``: the row lists map samples, so its side file must unpack."""
    try:
        with pq.ParquetFile(path) as pf:
            problem = _schema_problem(pf.schema_arrow)
            if problem:
                return None, problem, False
            if pf.metadata.num_rows != 1:
                return None, f"{pf.metadata.num_rows} rows, a part holds one", False
            columns = ["cell_id", "status"] + (["map_sample_ids"] if "map_sample_ids" in pf.schema_arrow.names else [])
            row = pf.read(columns=columns).to_pylist()[0]
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for torn files
        return None, _reason(exc), False
    if row["cell_id"] != path.stem:
        return None, f"holds cell {row['cell_id']}, not {path.stem}", False
    return row["status"], None, bool(row.get("map_sample_ids"))


def side_path(part: Path) -> Path:
    """The map-sample side file of the part at ``part`` (``bench.samples``)."""
    return part.with_name(part.stem + SIDE_SUFFIX)


def inspect_cell(path: Path) -> tuple[str | None, str | None, str | None]:
    """``(status, part_problem, side_problem)``: a cell is sound when both problems are None.

    The side file is checked only when the row names map samples (a row written with
    --map-samples 0, or before maps were kept, has none and needs none); the check reads the
    zip's directory and member headers, not the maps (``bench.samples.side_file_problem``).
    """
    status, problem, has_side = _inspect(path)
    if problem is not None or not has_side:
        return status, problem, None
    side_problem = side_file_problem(side_path(path))
    return (None if side_problem else status), None, side_problem


def _map(fn, paths: list[Path]) -> list:
    """``fn`` over the part files, on threads when there are many (the reads wait on the disk)."""
    if len(paths) < 16:
        return [fn(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, paths))


def _read_sound(paths: list[Path]) -> list[pa.Table]:
    """The parts that read in full and hold the REQUIRED columns; each other one is left out
    with a warning (readers never move files: a resuming grid quarantines them)."""

    def read(path: Path) -> pa.Table | str:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001
            return _reason(exc)
        return _schema_problem(table.schema) or table

    tables = []
    for path, got in zip(paths, _map(read, paths)):
        if isinstance(got, str):
            warn(f"{path}: unreadable result part ({got}); left out (rerunning its grid moves it "
                 "aside and recomputes the cell)")
        else:
            tables.append(got)
    return tables


def encode_defect_metrics(breakdown: Mapping[str, Mapping[str, float]]) -> str:
    """``metrics.per_defect_type``'s result as the row's ``defect_metrics`` text: a JSON object
    ``{type: {"image_auroc": x, "pixel_auroc": x, "aupro": x, "n": count}}``, keys sorted, NaN
    as null (strict JSON, readable by any tool)."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    return json.dumps({t: {k: plain(v) for k, v in d.items()} for t, d in breakdown.items()},
                      sort_keys=True, allow_nan=False)


def decode_defect_metrics(text: Any) -> dict[str, dict[str, float]] | None:
    """The breakdown of one row's ``defect_metrics`` (null -> NaN); None when the row has none
    (a row written before the column, a failed cell)."""
    if not isinstance(text, str) or not text:
        return None
    return {t: {k: (float("nan") if v is None else v) for k, v in d.items()}
            for t, d in json.loads(text).items()}


def with_domain(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a text ``domain`` column: "" where a row has none (the dataset's own test split;
    rows written before domains lack the column)."""
    domain = df["domain"] if "domain" in df.columns else pd.Series("", index=df.index, dtype=object)
    return df.assign(domain=domain.where(domain.notna(), "").astype(str))


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
        return side_path(self.part_path(cell_id))

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
        """The cell's anomaly-map samples, or None when it has none (older runs, --map-samples 0).

        A side file that does not unpack raises ``bench.samples.UnreadableSamples`` (one line
        naming the file; a reader leaves that cell's maps out with a warning)."""
        path = self.samples_path(cell_id)
        return read_side_file(path) if path.is_file() else None

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.manifest_path, lambda fh: fh.write(text.encode("utf-8")))
        return self.manifest_path

    def record_grid(self, spec: Mapping[str, Any], cells: int) -> list[dict]:
        """Remember ``spec`` among the grids this run has served; write it as grid.json (the
        latest). Returns the other specs served before (an old run's grid.json is the first)."""
        spec = json.loads(json.dumps(spec, sort_keys=True, default=str))  # as it reads back
        history = self.grids()
        if not any(h["spec"] == spec for h in history):
            history.append({"spec": spec, "cells": cells, "cwd": os.getcwd(),  # a relative --root is read from there
                            "first_served": datetime.datetime.now(datetime.timezone.utc).isoformat()})
            text = "".join(json.dumps(h, sort_keys=True) + "\n" for h in history)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / GRIDS, lambda fh: fh.write(text.encode("utf-8")))
        self.write_manifest(spec)
        return [h["spec"] for h in history if h["spec"] != spec]

    def grids(self) -> list[dict]:
        """Every distinct grid spec this run has served, oldest first, as
        ``{"spec", "cells", "cwd", "first_served"}`` (a run from before grids.jsonl: its grid.json; one
        from before the cwd was recorded: no cwd)."""
        try:
            text = (self.run_dir / GRIDS).read_text(encoding="utf-8")
        except FileNotFoundError:
            old = self.read_manifest()
            return [] if old is None else [{"spec": old, "cells": None, "first_served": None}]
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise BenchError(f"{self.run_dir / GRIDS}: a line is not JSON ({exc}); remove that line (the others "
                             "are the grids this run served)") from None

    def quarantine_bad_parts(self) -> dict[str, str]:
        """Check every part; move each bad one into ``quarantine/`` with a one-line warning.

        Returns ``{cell_id: status}`` of the sound parts: a quarantined cell is not done, so a
        resuming grid runs it again. Only the grid holding the run's lock calls this.

        A part whose row names map samples is bad too when its side file (``parts/<cell_id>.maps.npz``)
        is missing or torn: the part and the side file move together, so the rerun writes both.
        """
        files = self._part_files()
        statuses = {}
        for path, (status, problem, side_problem) in zip(files, _map(inspect_cell, files)):
            if problem is None and side_problem is None:
                statuses[path.stem] = status
                continue
            if problem is not None:  # its side file (if any) goes along: the rerun writes a new one
                dest = self._quarantine(path, side_path(path))
                warn(f"{path}: unreadable result part ({problem}); moved to {dest}, its cell runs again")
                continue
            side = side_path(path)
            present = side.exists()
            dest = self._quarantine(path, side)
            moved = f"{side_path(dest)} with its part ({dest.name})" if present else f"{dest}"
            warn(f"{side}: unreadable map samples ({side_problem}); moved to {moved}, its cell runs again")
        return statuses

    def _quarantine(self, path: Path, side: Path | None = None) -> Path:
        """Move the part at ``path`` into quarantine/ (with ``side``, its side file as well, under
        the same number: ``<cell_id>[-n].parquet`` and ``<cell_id>[-n].maps.npz``); its new path."""
        qdir = self.run_dir / QUARANTINE_DIR
        qdir.mkdir(exist_ok=True)

        def named(n: int) -> tuple[Path, Path]:
            tail = "" if n == 1 else f"-{n}"
            return qdir / f"{path.stem}{tail}{path.suffix}", qdir / f"{path.stem}{tail}{SIDE_SUFFIX}"

        n = 1
        while any(p.exists() for p in named(n)):  # the same cell went bad before: keep both
            n += 1
        dest, side_dest = named(n)
        os.replace(path, dest)  # the part first: a kill in between leaves a side file the rerun replaces
        if side is not None and side.exists():
            os.replace(side, side_dest)
        return dest

    def remove_stale_tmp(self) -> int:
        """Delete temp files left by writers that no longer run (same host). Returns count."""
        removed = 0
        for directory in (self.run_dir, self.parts_dir):
            if not directory.is_dir():
                continue
            for tmp in directory.glob(f".*{TMP_SUFFIX}"):
                pid = tmp_pid(tmp)
                if pid is not None and pid_alive(pid):
                    continue
                try:
                    tmp.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    # reading -------------------------------------------------------------------------

    def recorded(self, cell_ids: list[str], *columns: str) -> list[dict[str, Any]]:
        """Per column, its value in each of these cells' parts that has it (one read of each part,
        those columns only)."""
        def one(path: Path) -> list[Any]:
            try:
                with pq.ParquetFile(path) as pf:
                    have = [c for c in columns if c in pf.schema_arrow.names]
                    row = pf.read(columns=have).to_pylist()[0] if have else {}
                    return [row.get(c) for c in columns]
            except Exception:  # noqa: BLE001 - quarantine_bad_parts judged the parts already
                return [None] * len(columns)

        values = _map(one, [self.part_path(c) for c in cell_ids])
        return [{c: v[i] for c, v in zip(cell_ids, values) if v[i] is not None} for i in range(len(columns))]

    def quarantine_part(self, cell_id: str) -> Path:
        """Move a cell's part (and its map samples, if any) into ``quarantine/``; the cell is then
        not done. Returns where the part went."""
        # one call moves both under the same number (``<cell_id>[-n].parquet`` / ``.maps.npz``)
        return self._quarantine(self.part_path(cell_id), self.samples_path(cell_id))

    def read_manifest(self) -> dict | None:
        """The stored grid spec, or None when the run has none yet."""
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BenchError(f"{self.manifest_path}: not a grid spec ({exc}); delete it and rerun the grid's own "
                             "command, which writes it anew") from None

    def statuses(self) -> dict[str, str]:
        """``{cell_id: status}`` of the sound parts, read only.

        A bad part counts as not done, and so does a part whose map-sample side file is missing or
        torn (both are left where they are: see ``quarantine_bad_parts``).
        """
        files = self._part_files()
        return {path.stem: status for path, (status, problem, side_problem) in zip(files, _map(inspect_cell, files))
                if problem is None and side_problem is None}

    def done_ids(self, include_failed: bool = True) -> set[str]:
        """cell_ids with a sound part on disk; with include_failed=False only those with status ok."""
        return {cid for cid, status in self.statuses().items() if include_failed or status == "ok"}

    def __len__(self) -> int:
        return len(self._part_files())

    def __contains__(self, cell_id: str) -> bool:
        return self.part_path(cell_id).exists()

    def read(self) -> pd.DataFrame:
        """All sound parts as one DataFrame (columns unioned; absent diag_ columns are NaN); a bad
        part is left out with a warning."""
        return _concat(_read_sound(self._part_files()))


# --------------------------------------------------------------------------- helpers


def load_runs(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Rows of several runs (see :func:`load_rows`) as one frame; a cell id present in more than
    one of them keeps the row of the last path given."""
    paths = list(paths)
    frames = [load_rows(p) for p in paths]
    if not frames:
        raise NoResults(f"no run given; {_WANTED}")
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        _say_conflicts(df.assign(_path=[str(p) for p, f in zip(paths, frames) for _ in range(len(f))]))
    return _sort_rows(df.drop_duplicates("cell_id", keep="last"))


def _say_conflicts(df: pd.DataFrame) -> None:
    """One warning where a cell is in several of the runs given with other values: which row is
    kept depends on the order of the paths, so a table of them is not what either run says."""
    twice = df[df.duplicated("cell_id", keep=False)]
    if twice.empty:
        return
    cols = [c for c in ("status", *METRICS) if c in twice.columns]
    values = twice.groupby("cell_id", sort=False)[cols].nunique(dropna=False)
    differ = list(values.index[(values > 1).any(axis=1)])
    if differ:
        g = twice[twice["cell_id"] == differ[0]]
        warn(f"{len(differ)} cell(s) are in several of the runs given with other values (e.g. {differ[0]} in "
             f"{' and '.join(dict.fromkeys(g['_path']))}); each keeps the row of the last path given, so the order "
             "of the paths changes the numbers: pass one of them, or the runs in the order you mean")


def load_rows(path: str | os.PathLike) -> pd.DataFrame:
    """Rows from a run directory, a parts directory, or a single parquet file.

    A directory holding no parts but a ``rows.parquet`` (a committed reference run) is read
    from that file. A path that holds no results raises :class:`NoResults` (one line, the fix).
    """
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as fh:
            if fh.read(4) != b"PAR1":
                raise NoResults(f"{path}: not a Parquet file; {_WANTED}")
        rows = _read_part(path).to_pandas()
        lack = [c for c in ROW_KEYS if c not in rows.columns]
        if lack:  # a table would average what these columns tell apart, or stop with a traceback
            raise NoResults(f"{path}: not result rows of adshift-bench (no column {', '.join(lack)}); {_WANTED}")
        return _sort_rows(rows)
    if not path.is_dir():
        raise NoResults(f"{path}: no such file or folder; {_WANTED}")
    if (path / PARTS_DIR).is_dir() or (path / MANIFEST).is_file():  # a run (maybe with no part yet)
        return RunStore(path).read()
    if (path / "rows.parquet").is_file():
        return load_rows(path / "rows.parquet")
    parts = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if parts:
        return _concat(_read_sound(parts))
    if not any(path.iterdir()):
        raise NoResults(f"{path}: empty folder; {_WANTED}")
    raise NoResults(f"{path}: not a run directory (no parts/, grid.json or rows.parquet inside); {_WANTED}")


def export(run_dir: str | os.PathLike, out_file: str | os.PathLike) -> Path:
    """Merge every part of a run into one parquet file (for committing reference runs)."""
    out = Path(out_file)
    if out.is_dir():
        raise BenchError(f"{out} is a folder: give the file to write, e.g. {out / 'rows.parquet'}")
    if out.suffix != ".parquet":
        raise BenchError(f"{out}: the export is Parquet; name it *.parquet, e.g. {out.with_suffix('.parquet')}")
    if out.resolve().parent.name == PARTS_DIR and (out.resolve().parent.parent / MANIFEST).is_file():
        # there it would read as a torn part of that run from then on
        raise BenchError(f"{out}: inside a run's {PARTS_DIR}/ folder, which holds one part per cell; write the "
                         f"export beside it, e.g. {out.resolve().parent.parent / 'rows.parquet'}")
    df = load_rows(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(out, lambda fh: pq.write_table(table, fh, compression="zstd"))
    return out
