"""`bench status RUN`: where a run directory stands, from its own files, without its command.

It reads the spec of the latest grid served there (grid.json; grids.jsonl says from which folder
it was typed, for a relative --root), the parts, fits.jsonl, running.txt and the run lock, and
lists the dataset's categories: no image is read, nothing is written, and no grid is held up, so
it can run in a loop beside a long grid (``watch -n 60 bench status RUN``). The grid itself and
``bench grid --dry-run`` also check the inputs and find the cells made stale by changed data.
"""
from __future__ import annotations

import time
from pathlib import Path

from .executors import RUNNING, GridPlan, plan_grid
from .grid import GridSpec
from .recorded import recorded_spec
from .results import PARTS_DIR, RunStore
from .run_lock import running_grid


def status_lines(run_dir: Path) -> list[str]:
    """What ``bench status`` prints: the plan of the latest grid (``plan_grid`` without reading
    the data) with a second line on whether a grid runs there now."""
    spec = recorded_spec(run_dir)
    plan = plan_grid(spec, run_dir, read_data=False)
    lines = plan.lines()
    lines.insert(1, "  " + _live(Path(run_dir), plan, spec))
    lines[3:3] = _failures(Path(run_dir), plan)
    return lines


def _failures(run_dir: Path, plan: GridPlan) -> list[str]:
    """The kept failed cells: per method, how many and the first one's error (its first line)."""
    if not plan.failed_ids:
        return []
    (errors,) = RunStore(run_dir).recorded(plan.failed_ids, "error")
    cell = {c.cell_id: c for c in plan.cells}
    per_method: dict[str, list[str]] = {}
    for cid in plan.failed_ids:
        per_method.setdefault(cell[cid].method, []).append(cid)
    out = []
    for method, cids in per_method.items():
        error = (str(errors.get(cids[0]) or "").strip().splitlines() or ["no error text"])[0]
        error = error if len(error) <= 200 else error[:197] + "..."
        out.append(f"  failed: {len(cids)} of {method}, e.g. {cell[cids[0]].label()}: {error}")
    return out


def _live(run_dir: Path, plan: GridPlan, spec: GridSpec) -> str:
    pid = running_grid(run_dir)
    marker = run_dir / RUNNING
    now = marker.read_text(encoding="utf-8", errors="replace").strip() if marker.is_file() else ""
    parts = [p.stat().st_mtime for p in (run_dir / PARTS_DIR).glob("*.parquet")] if (run_dir / PARTS_DIR).is_dir() else []
    last = f"; last row written {_ago(time.time() - max(parts))} ago" if parts else ""
    if pid is not None:
        who = f"pid {pid}" if pid else "pid not written yet"
        return f"running: a grid ({who}) holds the run directory" + (f", in {now}" if now else "") + last
    resume = f"the same bench reproduce {spec.preset} command" if spec.preset else "the same bench grid command"
    if now:  # only a dead in-process grid leaves it (executors._running)
        return f"not running: its last run ended during {now} (killed, or a crash); {resume} resumes it{last}"
    if plan.todo:
        return f"not running; {resume} runs the rest{last}"
    return f"not running; every cell is done{last}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
