"""The driver: what every executor reports to, and the only writer of a run directory.

The scheduler (``bench.scheduler``) calls it when a fit is available (``fit_done``, logged to
``fits.jsonl``), when a cell's row is in (``row``: the part is written atomically, the one-line
result printed, warnings said once for the whole grid) and for the progress bar (``stage``).
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from .datasets.corruptions import CLEAN, CacheStats
from .grid import Cell
from .metrics import METRICS
from .methods.errors import SAID, warn
from .results import RunStore
from .runner import RunContext

FIT_LOG = "fits.jsonl"


def read_fit_log(run_dir: Path) -> list[dict[str, Any]]:
    """The fits a run computed (``FIT_LOG``, one JSON line each, written by ``Driver.fit_done``);
    none when it has no log, and a torn line (a run killed while writing it) is skipped."""
    try:
        lines = (Path(run_dir) / FIT_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass
class GridSummary:
    run_dir: Path
    total: int
    skipped: int
    executor: str = "local"
    ran: int = 0
    failed: int = 0
    seconds: float = 0.0
    fits_computed: int = 0
    fits_planned: int = 0  # the fitted states the cells to run need (computed or from the cache)
    fit_cache: dict[str, int] = field(default_factory=lambda: {"hits": 0, "misses": 0})
    # corrupted test images: per image (hits/misses) and per test set (a set is a hit when all
    # of its images came from the cache); clean cells are not counted
    corruption_cache: dict[str, int] = field(
        default_factory=lambda: {"hits": 0, "misses": 0, "set_hits": 0, "set_misses": 0})
    failures: list[tuple[str, str]] = field(default_factory=list)

    def cache_line(self) -> str:
        c = self.corruption_cache
        return (f"fits: {self.fits_computed} computed, {self.fit_cache['hits']} cache hits; corrupted sets: "
                f"{c['set_misses']} generated, {c['set_hits']} from cache ({c['misses']} / {c['hits']} images)")


class Driver:
    """What executors report to. The only writer of the run directory (parts and fit log)."""

    def __init__(self, store: RunStore, summary: GridSummary, console: Console,
                 progress: Progress, task: Any, ctx: RunContext) -> None:
        self.store = store
        self.ctx = ctx  # the driver's: loaded categories and its fit cache
        self.summary = summary
        self.console = console
        self._progress = progress
        self._task = task
        self._lock = threading.Lock()  # executors may report from a helper thread
        self.fit_log = store.run_dir / FIT_LOG
        self._said: set[tuple] = set()  # (category, lost mask ids) already warned about
        # what the time left is read from: the seconds of the cells and of the fits computed so far
        self._t0 = time.perf_counter()
        self._cell_seconds = self._fit_seconds = 0.0
        self._fits_seen = self._fits_timed = 0

    def stage(self, cell: Cell, name: str) -> None:
        # escaped: rich reads "[score]" as a markup tag and shows nothing
        self._progress.update(self._task, description=escape(f"{cell.label()} [{name}]"))

    def fit_done(self, cell: Cell, key: str, *, computed: bool, seconds: float) -> None:
        """A group's fit is available; ``computed``: fitted now (not from a cache)."""
        with self._lock:
            self._fits_seen += 1
            if computed:
                self._fit_seconds += seconds
                self._fits_timed += 1
                self.summary.fits_computed += 1
                self.summary.fit_cache["misses"] += 1
                line = json.dumps({"key": key, "method": cell.method, "category": cell.category,
                                   "seed": cell.seed, "fit_seconds": seconds, "pid": os.getpid()}) + "\n"
                with open(self.fit_log, "a") as f:
                    f.write(line)
            else:
                self.summary.fit_cache["hits"] += 1

    def say(self, messages: list[str]) -> None:
        """A worker process's warnings, each said once (not again when this process said it)."""
        for message in messages:
            if message not in SAID:
                warn(message)

    def row(self, cell: Cell, row: dict[str, Any], stats: CacheStats | None = None) -> None:
        """Store a finished cell (atomically) and report it with its corrupted-image cache counts."""
        with self._lock:
            self.store.write(row)
            s = self.summary
            s.ran += 1
            self._cell_seconds += row.get("total_seconds") or 0.0
            if stats is not None and cell.corruption != CLEAN:
                s.corruption_cache["hits"] += stats.hits
                s.corruption_cache["misses"] += stats.misses
                if stats.hits or stats.misses:
                    s.corruption_cache["set_misses" if stats.misses else "set_hits"] += 1
            left = _clock(self.time_left())
            if row["status"] != "ok":
                s.failed += 1
                s.failures.append((cell.label(), row["error"]))
                self.console.print(f"{self._count(left)} [red]failed[/red] {escape(cell.label())}: "
                                   f"{escape(row['error'])}", highlight=False, soft_wrap=True)
            else:
                self._say_masks_lost(cell, row)
                self._say_nondeterministic(cell, row)
                self.console.print(f"{self._count(left)} {escape(_row_line(cell, row))}", highlight=False,
                                   soft_wrap=True)
            self._progress.update(self._task, advance=1, eta=left)

    def _count(self, left: str) -> str:
        """``[done/total]`` of the grid (escaped for rich) and, where no live bar shows (output to a
        file: a batch job's log), the time ``left`` (in a terminal the bar shows it)."""
        s = self.summary
        done = s.skipped + s.ran
        text = f"[{done}/{s.total}]"
        if not self.console.is_terminal and done < s.total:
            text += f" ETA {left}"
        return escape(text)

    def time_left(self) -> float:
        """Seconds left at this run's pace: the cells left at the mean seconds of those done, plus
        the fits left at the mean of those computed, scaled by wall time over work time so far
        (cells running side by side, and what lies between them). The first cells follow a fit, so
        a pace over cells alone would take that fit as every cell's cost."""
        s = self.summary
        per_cell = self._cell_seconds / s.ran if s.ran else 0.0
        per_fit = self._fit_seconds / self._fits_timed if self._fits_timed else 0.0
        work = self._cell_seconds + self._fit_seconds
        left = (s.total - s.skipped - s.ran) * per_cell + max(0, s.fits_planned - self._fits_seen) * per_fit
        return left * ((time.perf_counter() - self._t0) / work if work > 0 else 1.0)

    def _say_masks_lost(self, cell: Cell, row: dict[str, Any]) -> None:
        """One warning per category and set of lost masks (the worker that found them is silent)."""
        lost = json.loads(row.get("masks_lost") or "[]")
        if not lost or (cell.category, tuple(lost)) in self._said:
            return
        self._said.add((cell.category, tuple(lost)))
        shown = ", ".join(lost[:3]) + (", ..." if len(lost) > 3 else "")
        n_defect = sum(1 for x in row.get("image_labels") or () if x)
        of = f" of {n_defect}" if n_defect else ""
        settings = cell.config.whole_image_settings()
        fix = ("; " + " ".join(f"--set {k}={v}" for k, v in settings.items()) + " keeps the whole image"
               if settings else "")
        warn(f"{cell.category}: {len(lost)}{of} defect masks have no pixel left on {cell.method}'s "
             f"evaluation grid ({shown}): its resize and crop cut the defect off (the method never sees "
             "it) or the defect is thinner than a grid pixel; these images still count as anomalous for "
             "the image metrics and add only normal pixels to the pixel metrics "
             f"(n_masks_lost in the rows{fix})")


    def _say_nondeterministic(self, cell: Cell, row: dict[str, Any]) -> None:
        """One warning per method and set of operations that ran without a deterministic kernel."""
        ops = tuple(json.loads(row.get("nondeterministic_ops") or "[]"))
        if not ops or (cell.method, ops) in self._said:
            return
        self._said.add((cell.method, ops))
        warn(f"{cell.method} on {row.get('device')}: {', '.join(ops)} {'has' if len(ops) == 1 else 'have'} no "
             "deterministic kernel and ran anyway, so its rows may differ between two runs of the same cell "
             "(nondeterministic_ops in the rows)")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def _row_line(cell: Cell, row: dict[str, Any]) -> str:
    fit = "cached" if row.get("fit_cached") else f"{row.get('fit_seconds', 0):.1f}s"
    def shown(value: float) -> str:  # NaN: undefined here (e.g. no pixel ground truth)
        return "–" if value != value else f"{value:.2f}"

    values = ", ".join(f"{m.text} {shown(m.scale * row[m.name])}" for m in METRICS.values() if m.in_progress_line)
    return f"{cell.label()}: {values} (fit {fit}, score {row['score_seconds']:.1f}s)"
