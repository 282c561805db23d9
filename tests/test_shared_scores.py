"""Cells whose methods declare the same score identity on the same images share one scoring
(capabilities.SharedScores): exactly the scores they would compute, and the row says so."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from bench.grid import GridSpec
from bench.methods import Scores, get
from bench.methods.adaptation import AdaptedPatchCore
from bench.methods.patchcore import PatchCore
from bench import runner
from bench.runner import RunContext, run_cell

SMALL = {"resize": "32", "image_size": "32", "coreset_ratio": "0.1", "n_clusters": "4", "adapt_epochs": "1",
         "adapt_batch_size": "2", "adapt_max_images": "2", "sinkhorn_iters": "5", "stats_batch_images": "2"}
METRICS = ["image_auroc", "pixel_auroc", "aupro", "image_scores"]


def _images(n: int, seed: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3)).astype(np.uint8) for _ in range(n)]


@pytest.mark.slow  # fits PatchCore and the shared TTA state on textures at 32 px
def test_none_shares_patchcore_scoring_and_equals_its_own(tmp_path):
    from bench.cache import FitCache

    spec = GridSpec(methods=["patchcore", "ttad", "none"], dataset="textures", categories=["brick"],
                    corruptions=["gaussian_noise"], overrides=SMALL)
    cells = spec.cells()
    ctx = RunContext(spec, fit_cache=FitCache(tmp_path / "fits"))
    rows = {(c.method, c.corruption): run_cell(c, ctx) for c in cells}
    assert all(r["status"] == "ok" for r in rows.values()), [r["error"] for r in rows.values()]
    by_id = {c.cell_id: (c.method, c.corruption) for c in cells}
    for corruption in ("clean", "gaussian_noise"):
        none, pc = rows[("none", corruption)], rows[("patchcore", corruption)]
        assert by_id[none["scores_shared_from"]] == ("patchcore", corruption)
        assert pc["scores_shared_from"] == "" and {k: none[k] for k in METRICS} == {k: pc[k] for k in METRICS}
    # ttad adapts on the shifted set (its own scores) but not on the clean one (PatchCore's scoring)
    assert rows[("ttad", "gaussian_noise")]["scores_shared_from"] == ""
    assert by_id[rows[("ttad", "clean")]["scores_shared_from"]] == ("patchcore", "clean")
    assert rows[("ttad", "clean")]["diag_adapt_skipped_clean"] == 1
    # alone, `none` computes its scores itself: the same numbers, bit for bit
    alone = RunContext(spec, fit_cache=FitCache(tmp_path / "fits"))
    for cell in (c for c in cells if c.method == "none"):
        own = run_cell(cell, alone)
        assert own["scores_shared_from"] == ""
        assert {k: own[k] for k in METRICS} == {k: rows[("none", cell.corruption)][k] for k in METRICS}


def test_score_identity_is_patchcores_until_adapt_moves_the_backbone():
    torch.manual_seed(0)
    small = {k: int(v) if v.isdigit() else float(v) for k, v in SMALL.items()}
    pc = get("patchcore").create(resize=32, image_size=32, coreset_ratio=0.1)
    pc.fit(_images(4, 0))
    none = get("none").create(**small)
    none.load_fitted_state({**pc.fitted_state(), "source_stats": {}})
    none.adapt(_images(2, 1))
    assert pc.score_identity() == none.score_identity() is not None
    ttad = get("ttad").create(**small)
    ttad.load_fitted_state({**pc.fitted_state(), "source_stats": {}})
    assert ttad.score_identity() == pc.score_identity()  # nothing adapted yet
    ttad._adapted = True  # what adapt sets once it has moved the weights
    assert ttad.score_identity() is None
    other = get("patchcore").create(resize=32, image_size=32, coreset_ratio=0.1, smoothing_sigma=2.0)
    other.load_fitted_state(pc.fitted_state())
    assert other.score_identity() != pc.score_identity()  # a scoring field differs
    moved = get("patchcore").create(resize=32, image_size=32, coreset_ratio=0.1)
    moved.load_fitted_state({"bank": pc.bank + 1.0, "bank_index": pc.bank_index})
    assert moved.score_identity() != pc.score_identity()  # another bank


def test_a_subclass_with_its_own_adapt_shares_nothing_unless_it_says_so():
    class Tuned(PatchCore):
        def adapt(self, target):  # may move the weights: PatchCore's identity no longer holds
            pass

    class TunedAndSays(Tuned):
        def score_identity(self):
            return super().score_identity()

    for cls, shares in ((Tuned, False), (TunedAndSays, True), (AdaptedPatchCore, True)):
        m = cls(cls.Config(resize=32, image_size=32))
        m.load_fitted_state({"bank": np.zeros((4, 1024), np.float32), "bank_index": np.arange(4), "source_stats": {}})
        assert (m.score_identity() is not None) is shares, cls.__name__


class _Counting:
    """A method with a fixed score identity that counts its scorings."""

    def __init__(self, side: int) -> None:
        self.calls, self.side = 0, side

    def score_identity(self):
        return {"counting": self.side}

    def score(self, target):
        self.calls += 1
        return Scores(np.zeros(2), np.zeros((2, self.side, self.side), np.float32))


def _cell(corruption: str, method: str = "m") -> types.SimpleNamespace:
    return types.SimpleNamespace(dataset="d", category="c", domain="", corruption=corruption, severity=5, seed=0,
                                 protocol="native", test_subset=0, cell_id=f"{method}-{corruption}")


def test_shared_scores_are_read_only_and_kept_within_their_memory(monkeypatch):
    ctx = RunContext(GridSpec(methods=["patchcore"]))
    m = _Counting(side=64)  # 32 KiB of maps per scoring
    first, src = ctx.score(_cell("a"), m, None)
    assert src == "" and m.calls == 1 and not first.maps.flags.writeable
    again, src = ctx.score(_cell("a", "n"), m, None)
    assert again is first and src == "m-a" and m.calls == 1
    ctx.score(_cell("b"), m, None)  # other images: scored
    assert m.calls == 2
    monkeypatch.setattr(runner, "SHARED_SCORES_BYTES", 40 * 2**10)  # room for one scoring
    ctx.score(_cell("c"), m, None)
    assert m.calls == 3 and len(ctx._scores) == 1  # a and b dropped, oldest first
    _, src = ctx.score(_cell("a", "n"), m, None)
    assert src == "" and m.calls == 4


def test_test_inputs_are_read_once_per_grid_and_each_cell_gets_its_own_copy(monkeypatch):
    reads: list[tuple[str, int]] = []
    real = runner.corrupted_images

    def counting(images, **kw):
        source = real(images, **kw)
        return runner.ImageSet(source.ids, lambda i: reads.append((kw["category"], i)) or source[i])

    monkeypatch.setattr(runner, "corrupted_images", counting)
    spec = GridSpec(methods=["patchcore", "none"], dataset="textures", categories=["brick", "grass"],
                    corruptions=["gaussian_noise"], overrides=SMALL)
    cells = [c for c in spec.cells() if c.corruption == "gaussian_noise"]
    brick = [c for c in cells if c.category == "brick"]
    ctx = RunContext(spec)
    stats = runner.CacheStats()
    first = ctx.test_inputs(brick[0], stats)
    a = first[0]
    before = (stats.hits, stats.misses)  # the disk cache's hit, or its miss (generated)
    first[0]
    assert sum(before) == 1 and (stats.hits, stats.misses) == (before[0] + 1, before[1])  # memory: a hit
    a[:] = 0  # a method writing into its input changes nothing for the next cell
    second = ctx.test_inputs(brick[1])
    assert brick[0].method != brick[1].method
    assert [second[i].tobytes() for i in range(3)] == [real(ctx.split("brick").images, dataset="textures",
            category="brick", corruption="gaussian_noise", severity=5, seed=0)[i].tobytes() for i in range(3)]
    assert reads == [("brick", 0), ("brick", 1), ("brick", 2)] and second[0].any()
    grass = next(c for c in cells if c.category == "grass")
    ctx.test_inputs(grass)[0]
    assert {k[1] for k in ctx._inputs} == {"grass"}  # a grid runs a category's cells together
    monkeypatch.setattr(runner, "TEST_INPUTS_BYTES", 0)  # over the cap: read each time, as without it
    reads.clear()
    fresh = RunContext(spec)
    fresh.test_inputs(brick[0])[0], fresh.test_inputs(brick[1])[0]
    assert reads == [("brick", 0), ("brick", 0)]


@pytest.mark.slow  # adapts two TTA methods on textures at 32 px, then one of them again alone
def test_twin_cells_of_one_class_and_config_are_computed_once(tmp_path):
    """``ttt++`` and ``moment_matching`` are one class with one config (TTAD's Table 1 rows are
    its Table 4 rows): the second cell of the pair takes the first one's values, which are
    exactly what it computes alone; ``ttac`` (another config) is computed."""
    from bench.cache import FitCache

    spec = GridSpec(methods=["moment_matching", "ttt++", "ttac"], dataset="textures", categories=["brick"],
                    corruptions=["gaussian_noise"], overrides=SMALL)
    cells = [c for c in spec.cells() if c.corruption == "gaussian_noise"]
    ctx = RunContext(spec, fit_cache=FitCache(tmp_path / "fits"))
    rows = {c.method: run_cell(c, ctx) for c in cells}
    assert all(r["status"] == "ok" for r in rows.values()), [r["error"] for r in rows.values()]
    first, twin, other = rows["moment_matching"], rows["ttt++"], rows["ttac"]
    assert twin["scores_shared_from"] == first["cell_id"] != twin["cell_id"]
    assert twin["adapt_seconds"] == 0.0 and first["adapt_seconds"] > 0 and other["scores_shared_from"] == ""
    assert other["diag_loss_after"] != first["diag_loss_after"]
    compared = METRICS + ["diag_loss_before", "diag_loss_after", "diag_adapt_steps"]
    assert {k: twin[k] for k in compared} == {k: first[k] for k in compared}
    again = run_cell(next(c for c in cells if c.method == "moment_matching"), ctx)  # a rerun is no twin
    assert again["scores_shared_from"] == "" and again["adapt_seconds"] > 0
    assert {k: again[k] for k in compared} == {k: first[k] for k in compared}
    alone = run_cell(next(c for c in cells if c.method == "ttt++"), RunContext(spec, fit_cache=FitCache(tmp_path / "fits")))
    assert alone["scores_shared_from"] == "" and alone["adapt_seconds"] > 0
    assert {k: alone[k] for k in compared} == {k: first[k] for k in compared}
