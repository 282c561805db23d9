"""What a run shows while it runs and after: each cell's log line, and `bench status RUN`."""
from __future__ import annotations

import fcntl
import io
import os
import re
import threading
import time

import pytest
from rich.console import Console

from bench import run_lock
from bench.errors import BenchError
from bench.executors import RUNNING, LocalExecutor, run_grid, run_local
from bench.grid import GridSpec
from bench.results import RunStore
from bench.status import status_lines

from _grids import run_cli


def _spec(root, methods=("probe",), seeds=(0,)) -> GridSpec:
    return GridSpec(methods=list(methods), dataset="folder", root=str(root),
                    corruptions=["gaussian_noise", "contrast"], severities=[3], seeds=list(seeds))


def _log(spec, run, terminal: bool) -> tuple[list[str], bool]:
    """The cells' lines a grid prints to a terminal or to a file, and the bar's last state ("": none)."""
    out = io.StringIO()
    console = Console(file=out, width=300, force_terminal=terminal, color_system=None)
    run_grid(spec, run, LocalExecutor(), console=console)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # the live display's cursor moves
    bars = [line for line in text.splitlines() if "━" in line]
    return [line for line in text.splitlines() if "/ seed 0:" in line], bars[-1] if bars else ""


def test_a_log_file_gets_counted_lines_with_the_time_left_and_no_bar(tiny_root, tmp_path, probes):
    lines, bar = _log(_spec(tiny_root, ("probe", "probe_nan")), tmp_path / "run", terminal=False)
    assert len(lines) == 6 and not bar
    for n, line in enumerate(lines, 1):
        eta = r" ETA \d+:\d\d:\d\d" if n < 6 else ""  # the last cell has nothing left to wait for
        assert re.match(rf"\[{n}/6\]{eta} (failed )?probe(_nan)? / widget / ", line), line
    assert sum(" failed probe_nan / " in line for line in lines) == 3  # a failed cell is counted too


def test_a_terminal_gets_the_count_and_the_live_bar_gives_the_time(tiny_root, tmp_path, probes):
    lines, bar = _log(_spec(tiny_root), tmp_path / "run", terminal=True)
    assert bar and [line.split(" ", 1)[0] for line in lines] == ["[1/3]", "[2/3]", "[3/3]"]
    assert "3/3 0:00:0" in bar and bar.rstrip().endswith("ETA 0:00:00")  # the driver's time left, done
    assert not any(re.match(r"\[\d/3\] ETA", line) for line in lines)


def test_the_time_left_counts_the_fits_left_apart_from_the_cells(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from bench import driver as driver_module
    from bench.driver import Driver, GridSummary

    clock = iter([100.0, 114.0, 128.0])  # the driver starts at 100; asked at 114, then at 128
    monkeypatch.setattr(driver_module.time, "perf_counter", lambda: next(clock))
    summary = GridSummary(tmp_path, total=12, skipped=2, fits_planned=3)
    d = Driver(SimpleNamespace(run_dir=tmp_path), summary, Console(file=io.StringIO()), None, None, None)
    cell = SimpleNamespace(method="probe", category="widget", seed=0)
    d.fit_done(cell, "key", computed=True, seconds=10.0)  # one fit of 10 s computed ...
    d.fit_done(cell, "other", computed=False, seconds=0.0)  # ... one from the cache
    summary.ran, d._cell_seconds = 2, 4.0  # two cells of 2 s each
    # 8 cells x 2 s + 1 fit x 10 s, at the pace of wall time over work so far (14 s / 14 s, then 28 s / 14 s)
    assert d.time_left() == pytest.approx(26.0)
    assert d.time_left() == pytest.approx(52.0)


def test_status_of_a_finished_run_and_of_a_grown_grid(tiny_root, tmp_path, probes):
    run = tmp_path / "run"
    run_local(_spec(tiny_root), run, show_progress=False)
    lines = status_lines(run)
    assert lines[:3] == [f"run {run}: 3 cells (1 method, 1 category, 3 conditions, 1 seed)",
                         lines[1], "  3 done, 0 to run"]
    assert re.fullmatch(r"  not running; every cell is done; last row written \d+ s ago", lines[1])

    grown = _spec(tiny_root, seeds=(0, 1))  # a second seed asked for: the grid records it first, then runs
    RunStore(run).record_grid(grown.to_dict(), 6)
    lines = status_lines(run)
    assert lines[0] == f"run {run}: 6 cells (1 method, 1 category, 3 conditions, 2 seeds)"
    assert lines[1].startswith("  not running; the same bench grid command runs the rest; last row written ")
    assert lines[2:4] == ["  3 done, 3 to run (probe 3)", "  fits: up to 1 to compute (the fit cache may hold some)"]
    assert lines[4].startswith("  time at this run's pace, one cell at a time: about 0 min (probe 3 x ")
    assert lines[4].endswith(" s), plus 1 probe fit not timed here (no fit computed in this run)")


def test_status_names_the_failed_cells_by_method_and_error(tiny_root, tmp_path, probes):
    run = tmp_path / "run"
    run_local(_spec(tiny_root, ("probe", "probe_nan")), run, show_progress=False)
    lines = status_lines(run)
    assert lines[2] == "  3 done, 3 recorded as failed (kept; --retry-failed runs them again), 0 to run"
    assert lines[3].startswith("  failed: 3 of probe_nan, e.g. probe_nan / widget / clean / seed 0: ")
    assert "NaN" in lines[3] and len(lines) == 4


def test_status_while_a_grid_holds_the_run_and_after_it_died(tiny_root, tmp_path, probes):
    run = tmp_path / "run"
    run_local(_spec(tiny_root), run, show_progress=False)
    with run_lock.hold(run):
        (run / RUNNING).write_text("the cell probe / widget / contrast@3 / seed 0\n")
        line = status_lines(run)[1]
    assert line.startswith(f"  running: a grid (pid {os.getpid()}) holds the run directory, in the cell probe / "
                           "widget / contrast@3 / seed 0; last row written ")
    line = status_lines(run)[1]  # the lock is free, the marker is still there: the grid died in that cell
    assert line.startswith("  not running: its last run ended during the cell probe / widget / contrast@3 / seed 0 "
                           "(killed, or a crash); the same bench grid command resumes it")
    assert (run / RUNNING).is_file() and run_lock.running_grid(run) is None  # status changed nothing


def test_a_grid_starting_during_a_status_probe_is_not_refused(tmp_path):
    run = tmp_path / "run"
    with run_lock.hold(run):
        pass
    fd = os.open(run / run_lock.LOCK_FILE, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what running_grid holds for an instant, held 0.3 s here
    threading.Timer(0.3, os.close, (fd,)).start()
    t0 = time.monotonic()
    with run_lock.hold(run):
        assert time.monotonic() - t0 >= 0.25
    with run_lock.hold(run), pytest.raises(run_lock.RunLocked):  # a real holder still stops a second grid
        with run_lock.hold(run):
            pass


def test_a_relative_root_is_read_from_where_the_grid_was_typed(tiny_root, tmp_path, probes, monkeypatch):
    monkeypatch.chdir(tiny_root.parent)
    run = tmp_path / "run"
    run_local(_spec(tiny_root.name), run, show_progress=False)
    monkeypatch.chdir(tmp_path.parent)  # another folder, where "data" means nothing
    assert status_lines(run)[2] == "  3 done, 0 to run"


def test_cli_status_and_its_one_line_errors(tiny_root, tmp_path, probes, monkeypatch, capsys):
    run = tmp_path / "run"
    run_local(_spec(tiny_root), run, show_progress=False)
    code, out, _ = run_cli(monkeypatch, capsys, "status", run)
    assert code == 0 and out.splitlines()[2] == "  3 done, 0 to run"
    code, _, err = run_cli(monkeypatch, capsys, "status", tmp_path / "nowhere")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nowhere'}: no such folder; pass the run directory of a grid (its --out)"
    code, _, err = run_cli(monkeypatch, capsys, "status", tiny_root)
    assert code == 2 and "no grid.json, so no grid has run here" in err
    code, out, err = run_cli(monkeypatch, capsys, "status", tiny_root, run)  # several: each run, errors said
    assert code == 2 and out.splitlines()[0].startswith(f"run {run}: 3 cells")
    assert "no grid.json, so no grid has run here" in err
    (run / "grid.json").write_text('{"methods": ["probe"], "from_the_future": 1}')
    with pytest.raises(BenchError, match="not a grid spec this version of adshift-bench reads"):
        status_lines(run)
