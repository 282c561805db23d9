"""The run directory as a store a user can trust (issue 11, part B).

- every part is checked on resume; a bad one is moved to ``<run>/quarantine/`` with a one-line
  warning and its cell runs again; ``bench table`` leaves it out with a warning and renders;
- one grid at a time per run directory (``run.lock``; the second names the holder's PID);
- ``grids.jsonl`` remembers every grid spec a run has served;
- every CLI error is one line with the fix, OS errors included; Ctrl-C / SIGTERM say how many
  cells are written and that the same command resumes (exit 130 / 143).

Fast cases use a probe method (mean training image) on a tiny MVTec-layout folder, in-process;
the end-to-end cases (``slow``) run PatchCore at 64 px on the embedded ``brick`` category.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _grids import TINY, GrayProbe, make_category, run_cli, textures_root
from bench import run_lock
from bench.errors import BenchError, BenchWarning
from bench.grid import GridSpec
from bench.methods import registered_temporarily
from bench.results import NoResults, RunStore, load_rows, row_to_table

REPO = Path(__file__).resolve().parents[1]
WANTED = "pass a run directory (the --out of bench grid) or a rows.parquet file"


# ----------------------------------------------------------------------------- a fast probe


@pytest.fixture(scope="module", autouse=True)
def mean_probe():
    with registered_temporarily("meanprobe", GrayProbe, summary="test probe"):  # 16 px
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def root(tmp_path) -> Path:
    make_category(tmp_path / "data", "part")
    return tmp_path / "data"


def bench(monkeypatch, capsys, *args) -> tuple[int, list[str], str]:
    """``bench ARGS`` in-process: (exit code, non-empty stderr lines, stdout)."""
    code, out, err = run_cli(monkeypatch, capsys, *args)
    return code, [line for line in err.splitlines() if line.strip()], out


def probe_grid(monkeypatch, capsys, root: Path, out: Path, *extra) -> tuple[int, list[str], str]:
    return bench(monkeypatch, capsys, "grid", "-m", "meanprobe", "--root", root, "--corruptions", "clean,contrast",
                 "-s", "3", "--out", out, "--no-progress", *extra)


def warnings_of(lines: list[str]) -> list[str]:
    return [line[len("warning: "):] for line in lines if line.startswith("warning: ")]


# ----------------------------------------------------------------------------- checking parts

ROW = {"cell_id": "a", "method": "patchcore", "config": "{}", "config_hash": "h", "dataset": "textures",
       "category": "brick", "corruption": "clean", "severity": 0, "seed": 0, "backbone": "b", "weights": "w",
       "image_size": 64, "protocol": "native", "status": "ok", "image_auroc": 0.9, "finished_at": "1"}


def _rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


# case -> (how the part of cell "a" is damaged, the reason given)
BAD_PARTS = {
    "truncated to half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                          "Parquet magic bytes not found in footer"),
    "empty file": (lambda p: p.write_bytes(b""), "Parquet file size is 0 bytes"),
    "not Parquet": (lambda p: p.write_text("cell_id,status\na,ok\n"), "Parquet magic bytes not found in footer"),
    "no status column": (lambda p: _rewrite(p, pq.read_table(p).drop_columns(["status"])), "no column status"),
    "severity stored as text": (
        lambda p: _rewrite(p, (t := pq.read_table(p)).set_column(
            t.schema.get_field_index("severity"), "severity", pa.array(["0"]))),
        "column severity is string, not int64"),
    "two rows": (lambda p: _rewrite(p, pa.concat_tables([pq.read_table(p)] * 2)), "2 rows, a part holds one"),
    "the row of another cell": (lambda p: _rewrite(p, row_to_table({**ROW, "cell_id": "b"})), "holds cell b, not a"),
}


@pytest.mark.parametrize("case", list(BAD_PARTS))
def test_a_bad_part_is_quarantined_and_its_cell_is_not_done(case, tmp_path):
    damage, reason = BAD_PARTS[case]
    store = RunStore(tmp_path / "run")
    store.write({**ROW, "cell_id": "good"})
    path = store.write(ROW)
    damage(path)
    assert store.done_ids() == {"good"}
    with pytest.warns(BenchWarning) as record:
        statuses = store.quarantine_bad_parts()
    dest = store.run_dir / "quarantine" / "a.parquet"
    assert statuses == {"good": "ok"}
    assert [str(w.message) for w in record] == [
        f"{path}: unreadable result part ({reason}); moved to {dest}, its cell runs again"]
    assert not path.exists() and dest.is_file()
    assert list(store.read()["cell_id"]) == ["good"]


def test_a_cell_quarantined_twice_keeps_both_files(tmp_path):
    store = RunStore(tmp_path)
    for _ in range(2):
        store.write(ROW).write_bytes(b"")
        with pytest.warns(BenchWarning):
            store.quarantine_bad_parts()
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == ["a-2.parquet", "a.parquet"]


def test_sound_parts_are_left_alone(tmp_path):
    store = RunStore(tmp_path)
    store.write(ROW)
    store.write({**ROW, "cell_id": "f", "status": "failed", "error": "boom", "some_new_column": 1.5})
    assert store.quarantine_bad_parts() == {"a": "ok", "f": "failed"}
    assert not (tmp_path / "quarantine").exists()


# ----------------------------------------------------------------------------- grid spec history


def test_a_run_remembers_every_grid_spec_it_served(tmp_path):
    store = RunStore(tmp_path / "run")
    a, b = {"methods": ["patchcore"], "seeds": [0]}, {"methods": ["patchcore"], "seeds": [0, 1]}
    assert store.record_grid(a, 2) == []
    assert store.record_grid(a, 2) == []  # the same grid again: resumed, not a new entry
    assert store.record_grid(b, 4) == [a]
    assert store.record_grid(a, 2) == [b]
    assert [(h["spec"], h["cells"]) for h in store.grids()] == [(a, 2), (b, 4)]
    assert store.read_manifest() == a  # grid.json: the latest grid


def test_an_old_run_dir_seeds_the_history_with_its_grid_json(tmp_path):
    old = {"methods": ["ttad"], "seeds": [0]}
    (tmp_path / "grid.json").write_text(json.dumps(old))  # a run from before grids.jsonl
    store = RunStore(tmp_path)
    assert store.grids() == [{"spec": old, "cells": None, "first_served": None}]
    assert store.record_grid({"methods": ["patchcore"]}, 1) == [old]
    assert [h["spec"] for h in store.grids()] == [old, {"methods": ["patchcore"]}]


def test_a_second_grid_on_one_run_is_recorded_and_said(monkeypatch, capsys, tmp_path, root):
    out = tmp_path / "run"
    assert probe_grid(monkeypatch, capsys, root, out)[0] == 0
    code, err, _ = probe_grid(monkeypatch, capsys, root, out, "--seeds", "1")
    assert code == 0
    assert warnings_of(err) == [
        f"{out}: this run directory also holds the cells of 1 other grid spec(s) (listed in "
        f"{out / 'grids.jsonl'}); bench table shows their rows together; pass another --out to keep grids apart"]
    assert [h["spec"]["seeds"] for h in RunStore(out).grids()] == [[0], [1]]
    assert len(load_rows(out)) == 4
    code, err, _ = probe_grid(monkeypatch, capsys, root, out, "--seeds", "1")  # resuming the same one
    assert code == 0 and len(RunStore(out).grids()) == 2


# ----------------------------------------------------------------------------- the lock


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    with run_lock.hold(tmp_path / "run") as path:
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(run_lock.RunLocked) as info:
            with run_lock.hold(tmp_path / "run"):
                pass
        assert info.value.pid == os.getpid()
    with run_lock.hold(tmp_path / "run"):  # released when the block ends
        pass


def test_a_system_without_flock_gets_one_line_before_any_folder_is_made(monkeypatch, tmp_path):
    monkeypatch.setattr(run_lock, "fcntl", None)  # Windows
    for call in (lambda: run_lock.hold(tmp_path / "run").__enter__(), lambda: run_lock.running_grid(tmp_path)):
        with pytest.raises(BenchError, match="needs POSIX file locks .*; on Windows run adshift-bench in WSL"):
            call()
    assert not (tmp_path / "run").exists()


HOLDER = "import sys, time; from bench import run_lock\nwith run_lock.hold(sys.argv[1]):\n print('held', flush=True); time.sleep(600)"


def test_a_sigkilled_holder_leaves_no_lock(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(run_lock.RunLocked) as info:
            with run_lock.hold(tmp_path):
                pass
        assert info.value.pid == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    with run_lock.hold(tmp_path):  # the kernel dropped the dead holder's lock
        pass


# ----------------------------------------------------------------------------- one-line CLI errors


def _file(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("notes\n")
    return p


def _no_ok_rows(p: Path) -> Path:
    store = RunStore(p)
    store.write({**ROW, "status": "failed", "error": "CUDA out of memory\nmore", "finished_at": "1"})
    store.write({**ROW, "cell_id": "b", "status": "failed", "error": "other", "finished_at": "2"})
    return p


def _manifest_only(p: Path) -> Path:
    RunStore(p).write_manifest({"methods": ["patchcore"]})
    return p


def _not_a_run(p: Path) -> Path:
    (p / "photos").mkdir(parents=True)
    _file(p / "README.txt")
    return p


# case -> (what to build at tmp_path / "x" (returns the path to pass), the message after "error: ")
TABLE_INPUTS = {
    "a missing path": (lambda p: p, "{p}: no such file or folder; " + WANTED),
    "an empty folder": (lambda p: p.mkdir() or p, "{p}: empty folder; " + WANTED),
    "a folder that is not a run": (_not_a_run, "{p}: not a run directory (no parts/, grid.json or rows.parquet "
                                               "inside); " + WANTED),
    "a plain file": (lambda p: _file(p / "notes.txt"), "{p}: not a Parquet file; " + WANTED),
    "a run with no rows yet": (_manifest_only, "{p}: no finished cells yet; run (or resume) its bench grid first"),
    "a run with no ok rows": (_no_ok_rows, "{p}: no ok rows, all 2 cells failed (first error: CUDA out of "
                                           "memory); fix the cause and rerun its bench grid with --retry-failed"),
}


@pytest.mark.parametrize("case", list(TABLE_INPUTS))
def test_bench_table_inputs_are_one_line(case, monkeypatch, capsys, tmp_path):
    build, message = TABLE_INPUTS[case]
    p = build(tmp_path / "x")
    code, err, out = bench(monkeypatch, capsys, "table", p)
    assert (code, err, out) == (2, ["error: " + message.format(p=p)], "")


# command line -> the message after "error: " (usage errors too are one line, not a box)
USAGE = {
    "a missing argument": (["table"], "Missing argument 'runs' (see bench table --help)"),
    "an unknown command": (["tabel"], "No such command 'tabel'. Did you mean 'table'? (see bench --help)"),
    "an unknown option": (["grid", "--severites", "3"], "No such option: --severites (Possible options: --device, "
                                                        "--seeds, --severities) (see bench grid --help)"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_errors_are_one_line(case, monkeypatch, capsys):
    args, message = USAGE[case]
    code, err, out = bench(monkeypatch, capsys, *args)
    assert (code, err, out) == (2, ["error: " + message], "")


def test_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    with pytest.raises(NoResults):
        bench(monkeypatch, capsys, "--debug", "table", tmp_path / "missing")


def _readonly(monkeypatch, out: Path) -> None:
    """The file system of ``out`` is read-only (simulated: root may write anywhere)."""
    real_open = os.open

    def fake(path, *args, **kwargs):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    out.mkdir()
    monkeypatch.setattr(run_lock.os, "open", fake)


def _disk_full(monkeypatch, out: Path) -> None:
    """Every Parquet write fails as on a full disk (write() raises ENOSPC, naming no file)."""

    def fake(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", fake)


def _first_part(root: Path, out: Path) -> Path:
    spec = GridSpec(methods=["meanprobe"], dataset="folder", root=str(root), corruptions=["clean", "contrast"],
                    severities=[3])
    return out / "parts" / f"{spec.cells()[0].cell_id}.parquet"


# case -> (set up the trap given (monkeypatch, tmp_path), the --out to pass, the message after "error: ")
OUT_ERRORS = {
    "--out is a file": (lambda mp, t: _file(t / "out"), lambda t: t / "out",
                        "--out {out}: {out} is a file, not a folder; pass --out a folder path (it is created "
                        "if missing)"),
    "--out is under a file": (lambda mp, t: _file(t / "out"), lambda t: t / "out" / "run",
                              "--out {out}: {t}/out is a file, not a folder; pass --out a folder path (it is "
                              "created if missing)"),
    "--out is read-only": (lambda mp, t: _readonly(mp, t / "out"), lambda t: t / "out",
                           "--out {out}: not writable (Read-only file system); pass --out a folder you can "
                           "write to"),
    "disk full": (lambda mp, t: _disk_full(mp, t / "out"), lambda t: t / "out",
                  "{part}: no space left on device; free some space or write to another disk, then rerun the "
                  "same command (a grid resumes with its finished cells)"),
}


@pytest.mark.parametrize("case", list(OUT_ERRORS))
def test_grid_out_errors_are_one_line(case, monkeypatch, capsys, tmp_path, root):
    trap, out_of, message = OUT_ERRORS[case]
    trap(monkeypatch, tmp_path)
    out = out_of(tmp_path)
    code, err, _ = probe_grid(monkeypatch, capsys, root, out)
    expected = message.format(out=out, t=tmp_path, part=_first_part(root, out))
    assert (code, err) == (2, ["error: " + expected])


def test_export_into_a_file_is_one_line(monkeypatch, capsys, tmp_path):
    run = RunStore(tmp_path / "run")
    run.write(ROW)
    blocker = _file(tmp_path / "taken")
    code, err, _ = bench(monkeypatch, capsys, "export", run.run_dir, blocker / "rows.parquet")
    assert (code, err) == (2, [f"error: {blocker}: file exists; a file is in the way: choose another path"])
    folder = tmp_path / "exp"
    folder.mkdir()
    code, err, _ = bench(monkeypatch, capsys, "export", run.run_dir, folder)
    assert (code, err) == (2, [f"error: {folder} is a folder: give the file to write, e.g. {folder / 'rows.parquet'}"])
    code, err, _ = bench(monkeypatch, capsys, "export", run.run_dir, tmp_path / "rows.csv")
    assert (code, err) == (2, [f"error: {tmp_path / 'rows.csv'}: the export is Parquet; name it *.parquet, "
                               f"e.g. {tmp_path / 'rows.parquet'}"])


def test_a_second_grid_is_refused_while_one_holds_the_run(monkeypatch, capsys, tmp_path, root):
    out = tmp_path / "run"
    with run_lock.hold(out):
        code, err, _ = probe_grid(monkeypatch, capsys, root, out)
        assert not (out / "parts").exists()  # nothing ran
    assert (code, err) == (2, [f"error: --out {out}: another bench grid (pid {os.getpid()}) is running on this "
                               f"run directory; wait for it to finish, stop it (kill {os.getpid()}), or pass "
                               "another --out"])


def test_a_torn_part_is_recomputed_and_bench_table_renders_meanwhile(monkeypatch, capsys, tmp_path, root):
    out = tmp_path / "run"
    assert probe_grid(monkeypatch, capsys, root, out)[0] == 0
    before = load_rows(out).set_index("cell_id")
    part = sorted((out / "parts").glob("*contrast*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    code, err, table = bench(monkeypatch, capsys, "table", out)  # renders without the torn cell
    # the cell its grid names and no readable row holds: no value, and its column stays
    assert code == 0 and "| meanprobe | 50.00 | – |" in table and "data / Contrast" in table
    assert warnings_of(err) == [f"{part}: unreadable result part (Parquet magic bytes not found in footer); left out "
                                "(rerunning its grid moves it aside and recomputes the cell)"]
    code, err, _ = probe_grid(monkeypatch, capsys, root, out)
    assert code == 0
    assert warnings_of(err) == [f"{part}: unreadable result part (Parquet magic bytes not found in footer); moved to "
                                f"{out / 'quarantine' / part.name}, its cell runs again"]
    assert any("1 already done, 1 ran" in line for line in err)
    after = load_rows(out).set_index("cell_id")
    assert list(after.index) == list(before.index)
    assert after.loc[part.stem, "image_auroc"] == before.loc[part.stem, "image_auroc"]


def test_a_resumed_grid_refits_cells_whose_training_data_changed(monkeypatch, capsys, tmp_path, root):
    """A finished row records what its fit learned from (``train_data``): rerunning the command after
    training images changed on disk (two defect images found in train/good and removed) runs the
    category's cells again on a new fit, and says so once."""
    out = tmp_path / "run"
    assert probe_grid(monkeypatch, capsys, root, out)[0] == 0
    first = load_rows(out).set_index("corruption")
    assert first["train_data"].nunique() == 1 and first["train_data"].iloc[0]
    assert warnings_of(probe_grid(monkeypatch, capsys, root, out)[1]) == []  # unchanged: kept
    (root / "part" / "train" / "good" / "003.png").unlink()
    code, err, _ = probe_grid(monkeypatch, capsys, root, out)
    assert code == 0
    assert warnings_of(err) == [f"{out}: 2 finished cell(s) of part were fitted on other training data than the "
                                "dataset holds now (training images added, removed or changed); their parts are moved "
                                f"to {out / 'quarantine'} and they run again"]
    second = load_rows(out).set_index("corruption")
    assert (second["train_data"] != first["train_data"]).all()
    assert (second["image_auroc"] != first["image_auroc"]).any() or (second["pixel_auroc"] != first["pixel_auroc"]).any()


# ----------------------------------------------------------------------------- end to end (PatchCore)

TINY_ARGS = ["-m", "patchcore", "-c", "brick", "--root", None, "--set", f"resize={TINY['resize']}",
             "--set", f"image_size={TINY['image_size']}", "--threads", "1", "--no-progress"]


def bench_proc(out: Path, corruptions: str, *extra: str) -> subprocess.Popen:
    args = [a if a is not None else str(textures_root()) for a in TINY_ARGS]
    return subprocess.Popen([sys.executable, "-m", "bench", "grid", *args, "--corruptions", corruptions, "-s", "3",
                             "--out", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """A job a shell starts in the background inherits SIGINT ignored (POSIX), and Python keeps
    it ignored: give the grid the disposition a terminal gives it, or Ctrl-C cannot be tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_holder(out: Path, proc: subprocess.Popen) -> None:
    lock = out / run_lock.LOCK_FILE
    deadline = time.monotonic() + 300
    while not (lock.is_file() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


@pytest.mark.slow
def test_two_grids_at_once_the_second_names_the_holder_and_the_first_finishes(tmp_path):
    out = tmp_path / "run"
    first = bench_proc(out, "gaussian_noise,contrast")
    try:
        _wait_for_holder(out, first)
        os.kill(first.pid, signal.SIGSTOP)  # hold it mid-grid, however fast this machine is
        t0 = time.monotonic()
        second = bench_proc(out, "gaussian_noise,contrast")
        _, err2 = second.communicate(timeout=300)
        waited = time.monotonic() - t0
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err1 = first.communicate(timeout=600)
    assert second.returncode == 2
    assert err2.splitlines() == [f"error: --out {out}: another bench grid (pid {first.pid}) is running on this run "
                                 f"directory; wait for it to finish, stop it (kill {first.pid}), or pass another --out"]
    assert waited < 120  # it did not wait for the stopped holder
    assert first.returncode == 0, err1
    rows = load_rows(out)
    assert len(rows) == 3 and (rows["status"] == "ok").all()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_grid_says_what_is_written_and_resumes(sig, tmp_path):
    out = tmp_path / "run"
    proc = bench_proc(out, "gaussian_noise,contrast,fog,brightness")
    lines = []
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if "image AUROC" in line:  # a first cell is written
            proc.send_signal(sig)
            break
    rest, _ = proc.stderr.read(), proc.wait(timeout=300)
    proc.stdout.close()
    proc.stderr.close()
    written = len(list((out / "parts").glob("*.parquet")))
    assert proc.returncode == 128 + sig
    assert 1 <= written < 5
    assert rest.splitlines()[-1] == (f"interrupted ({sig.name}): {written} of 5 cells are written in {out} "
                                     f"({written} by this run); run the same command to resume")
    again = bench_proc(out, "gaussian_noise,contrast,fog,brightness")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"5 cells, {written} already done, {5 - written} ran (0 failed)" in err
    assert not list(out.glob("parts/.*.tmp"))
