"""The scheduler on a scripted backend: ordering, fit_cached, failed rows, key checks, retries."""
from __future__ import annotations

import pytest

from bench.datasets.corruptions import CacheStats
from bench.grid import Cell
from bench.methods import get
from bench.scheduler import Failed, FitGroup, Lost, Scheduler, lost_error
from bench.worker import CellResult, FitResult


def _cells(category: str, n: int = 3) -> list[Cell]:
    cfg = get("patchcore").config()
    conditions = [("clean", 0), ("gaussian_noise", 5), ("contrast", 5)][:n]
    return [Cell("patchcore", "toy", category, c, s, 0, "native", cfg) for c, s in conditions]


class Driver:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.rows: dict[str, dict] = {}

    def stage(self, cell, name) -> None:
        self.events.append(("stage", cell.category, name))

    def fit_done(self, cell, key, *, computed, seconds) -> None:
        self.events.append(("fit_done", key, computed))

    def say(self, messages) -> None:  # a worker's warnings
        self.events += [("say", m) for m in messages]

    def row(self, cell, row, stats=None) -> None:
        self.events.append(("row", cell.cell_id))
        self.rows[cell.cell_id] = row


class Backend:
    """Runs jobs at once; ``fits`` scripts each fit key's outcomes (FitResult or exception), in order."""

    key_mismatch = "{category}: other data"

    def __init__(self, fits: dict[str, list], evals: dict[str, list] | None = None, capacity: int | None = 1):
        self.fits, self.evals, self.capacity = fits, evals or {}, capacity
        self.submitted: list[tuple] = []
        self._n = 0

    def known_fit(self, group):
        return None

    def submit_fit(self, job):
        self.submitted.append(("fit", job.key))
        outcome = self.fits[job.key].pop(0)
        return self._future(outcome)

    def fit_ready(self, group, result, future):
        return f"state-{group.key}"

    def submit_eval(self, job, state):
        self.submitted.append(("eval", job.cell.corruption, job.cached, state))
        script = self.evals.get(job.cell.cell_id)
        outcome = script.pop(0) if script else CellResult({"cell_id": job.cell.cell_id, "status": "ok",
                                                           "fit_cached": job.cached}, CacheStats(1, 0))
        return self._future(outcome)

    def _future(self, outcome):
        self._n += 1
        self.__dict__[f"f{self._n}"] = outcome
        return f"f{self._n}"

    def wait(self, futures):
        return list(futures)[:1]

    def result(self, future):
        outcome = self.__dict__[future]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def ok_fit(key: str, computed: bool = True) -> FitResult:
    return FitResult(key=key, computed=computed, fit_seconds=1.0)


def test_each_group_fits_once_then_its_cells_with_fit_cached_flags():
    groups = [FitGroup("k1", _cells("a")), FitGroup("k2", _cells("b"))]
    backend = Backend({"k1": [ok_fit("k1")], "k2": [ok_fit("k2", computed=False)]})
    driver = Driver()
    Scheduler(backend, driver, "cpu").run(groups)
    assert backend.submitted == [
        ("fit", "k1"), ("eval", "clean", False, "state-k1"), ("eval", "gaussian_noise", True, "state-k1"),
        ("eval", "contrast", True, "state-k1"),
        ("fit", "k2"), ("eval", "clean", True, "state-k2"), ("eval", "gaussian_noise", True, "state-k2"),
        ("eval", "contrast", True, "state-k2")]
    assert [e for e in driver.events if e[0] == "fit_done"] == [("fit_done", "k1", True), ("fit_done", "k2", False)]
    assert len(driver.rows) == 6


def test_a_failed_fit_and_a_foreign_key_fail_every_cell_of_their_group_only():
    groups = [FitGroup("k1", _cells("a")), FitGroup("k2", _cells("b")), FitGroup("k3", _cells("c"))]
    backend = Backend({"k1": [FitResult(error="bad image x.png")], "k2": [ok_fit("other")], "k3": [ok_fit("k3")]})
    driver = Driver()
    Scheduler(backend, driver, "cpu").run(groups)
    by_cat = {}
    for cell in [c for g in groups for c in g.cells]:
        by_cat.setdefault(cell.category, set()).add((driver.rows[cell.cell_id]["status"],
                                                     driver.rows[cell.cell_id].get("error", "")))
    assert by_cat == {"a": {("failed", "bad image x.png")}, "b": {("failed", "b: other data")}, "c": {("ok", "")}}
    assert [s for s in backend.submitted if s[0] == "eval"] == [
        ("eval", "clean", False, "state-k3"), ("eval", "gaussian_noise", True, "state-k3"),
        ("eval", "contrast", True, "state-k3")]


def test_lost_jobs_are_retried_then_fail_and_backend_failures_are_final():
    cells = _cells("a", 2)
    lost_cell = cells[1].cell_id
    backend = Backend({"k1": [Lost(), ok_fit("k1")]}, evals={lost_cell: [Lost(), Lost(), Lost()]})
    driver = Driver()
    Scheduler(backend, driver, "cpu", max_retries=2).run([FitGroup("k1", cells)])
    assert backend.submitted.count(("fit", "k1")) == 2  # one retry after the lost fit
    assert driver.rows[cells[0].cell_id]["status"] == "ok"
    assert driver.rows[lost_cell]["status"] == "failed" and driver.rows[lost_cell]["error"] == lost_error(3)

    backend = Backend({"k1": [Failed("Ray task error (boom)")]})
    driver = Driver()
    Scheduler(backend, driver, "cpu", max_retries=5).run([FitGroup("k1", cells)])
    assert backend.submitted == [("fit", "k1")]  # not retried
    assert {r["error"] for r in driver.rows.values()} == {"Ray task error (boom)"}


@pytest.mark.parametrize("capacity", [1, 2, None])
def test_cells_of_a_fitted_group_go_before_new_fits(capacity):
    groups = [FitGroup(f"k{i}", _cells(f"c{i}", 2)) for i in range(3)]
    backend = Backend({g.key: [ok_fit(g.key)] for g in groups}, capacity=capacity)
    Scheduler(backend, Driver(), "cpu").run(groups)
    kinds = [s[0] for s in backend.submitted]
    if capacity == 1:
        assert kinds == ["fit", "eval", "eval"] * 3
    assert kinds.count("fit") == 3 and kinds.count("eval") == 6
