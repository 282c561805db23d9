"""Run a grid's missing cells and write one Parquet part per finished cell.

The driver owns the results directory: it skips cells whose part exists (a killed run resumes
where it stopped), and writes each row atomically as soon as its cell ends.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .cache import FitCache
from .grid import Cell, GridSpec
from .results import RunStore
from .runner import RunContext, run_cell


@dataclass
class GridSummary:
    run_dir: Path
    total: int
    skipped: int
    ran: int = 0
    failed: int = 0
    seconds: float = 0.0
    fit_cache: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)


def pending_cells(spec: GridSpec, store: RunStore, retry_failed: bool = False) -> tuple[list[Cell], int]:
    cells = spec.cells()
    done = store.done_ids(include_failed=not retry_failed)
    todo = [c for c in cells if c.cell_id not in done]
    return todo, len(cells)


def run_local(
    spec: GridSpec,
    run_dir: Path,
    *,
    retry_failed: bool = False,
    console: Console | None = None,
    fit_cache: FitCache | None = None,
    show_progress: bool = True,
) -> GridSummary:
    console = console or Console(stderr=True)
    store = RunStore(run_dir)
    store.remove_stale_tmp()
    store.write_manifest(spec.to_dict())
    todo, total = pending_cells(spec, store, retry_failed)
    summary = GridSummary(Path(run_dir), total=total, skipped=total - len(todo))
    ctx = RunContext(spec, fit_cache=fit_cache or FitCache(), fit_log=Path(run_dir) / "fits.jsonl")
    t0 = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("grid", total=total, completed=summary.skipped)
        for cell in todo:
            def stage(name: str, cell: Cell = cell) -> None:
                progress.update(task, description=f"{cell.label()} [{name}]")

            row = run_cell(cell, ctx, on_stage=stage)
            store.write(row)
            summary.ran += 1
            if row["status"] != "ok":
                summary.failed += 1
                summary.failures.append((cell.label(), row["error"]))
                console.print(f"[red]failed[/red] {cell.label()}: {row['error']}")
            else:
                console.print(_row_line(cell, row))
            progress.advance(task)
    summary.seconds = time.perf_counter() - t0
    summary.fit_cache = dict(ctx.fit_cache.stats)
    return summary


def _row_line(cell: Cell, row: dict[str, Any]) -> str:
    fit = "cached" if row.get("fit_cached") else f"{row.get('fit_seconds', 0):.1f}s"
    return (f"{cell.label()}: image AUROC {100 * row['image_auroc']:.2f}, pixel AUROC "
            f"{100 * row['pixel_auroc']:.2f}, AUPRO {100 * row['aupro']:.2f} "
            f"(fit {fit}, score {row['score_seconds']:.1f}s)")
