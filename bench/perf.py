"""PatchCore cell benchmark: where the time of one cell goes, against what the machine can do.

    python -m bench.perf --root ../shared/data/magnetic_tile --category magnetic_tile
    bench perf --root ... --category ...          (the same)

Prints backbone forward ms/image, coreset seconds and achieved GB/s against this machine's
measured read bandwidth, FAISS search seconds, metric seconds, and the cell's total against
its floor (backbone forward + coreset at the measured bandwidth + search). Everything else the
harness does (loading, resizing, corruption, maps, metrics, writing) is the overhead.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from .methods.coreset import PROJECTION_DIM


@numba.njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def _parallel_sum(a):  # pragma: no cover - numba
    total = 0.0
    for i in numba.prange(a.shape[0]):
        s = np.float32(0.0)
        for k in range(a.shape[1]):
            s += a[i, k]
        total += s
    return total


def read_bandwidth_gbs(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
    """Best-of read bandwidth over a buffer far larger than the caches, all cores (GB/s).

    The same access pattern as one coreset step: stream an (N, 128) float32 array once.
    """
    a = np.ones((n_bytes // (4 * PROJECTION_DIM), PROJECTION_DIM), dtype=np.float32)
    _parallel_sum(a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        _parallel_sum(a)
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def run(root: str, category: str, coreset_ratio: float, corruption: str, severity: int,
        backbone: str | None, max_train: int | None) -> dict[str, float]:
    os.environ.setdefault("ADSHIFT_BENCH_CACHE", tempfile.mkdtemp(prefix="bench-perf-"))
    from .cache import FitCache
    from .grid import GridSpec
    from .runner import RunContext, run_cell

    bandwidth = read_bandwidth_gbs()
    overrides = {"coreset_ratio": str(coreset_ratio)}
    spec = GridSpec(methods=["patchcore"], dataset="folder", root=root, categories=[category],
                    corruptions=[corruption], severities=[severity], backbone=backbone, overrides=overrides)
    cells = [c for c in spec.cells() if c.corruption == corruption]
    ctx = RunContext(spec, fit_cache=FitCache(Path(tempfile.mkdtemp(prefix="fits-"))))
    cat = ctx.category(category)
    if max_train:
        cat.train = cat.train[:max_train]
    # Pre-generate the corrupted images so the cell is timed, not the one-off corruption cache.
    from .datasets.corruptions import corrupted_images

    t0 = time.perf_counter()
    list(corrupted_images(cat.test.images, dataset=cells[0].dataset, category=category, corruption=corruption,
                          severity=severity, seed=0))
    corrupt_s = time.perf_counter() - t0
    row = run_cell(cells[0], ctx)
    if row["status"] != "ok":
        raise SystemExit(f"cell failed: {row['error']}")
    n_train, n_test = len(cat.train), row["n_test"]
    steps, patches = row["diag_coreset_steps"], row["diag_train_patches"]
    coreset_bytes = steps * patches * PROJECTION_DIM * 4  # one full read of the projection per step
    forward = row["diag_fit_embed_seconds"] + row["diag_score_embed_seconds"]
    coreset_floor = coreset_bytes / (bandwidth * 1e9)
    floor = forward + coreset_floor + row["diag_search_seconds"]
    total = row["fit_seconds"] + row["adapt_seconds"] + row["score_seconds"] + row["metric_seconds"]
    return {
        "train_images": n_train, "test_images": n_test, "train_patches": patches, "bank_size": row["diag_bank_size"],
        "backbone_ms_per_image": 1000 * forward / (n_train + n_test),
        "fit_embed_s": row["diag_fit_embed_seconds"], "score_embed_s": row["diag_score_embed_seconds"],
        "coreset_s": row["diag_coreset_seconds"], "coreset_gbs": coreset_bytes / row["diag_coreset_seconds"] / 1e9,
        "bandwidth_gbs": bandwidth, "search_s": row["diag_search_seconds"], "metric_s": row["metric_seconds"],
        "corruption_cache_fill_s": corrupt_s, "cell_total_s": total, "floor_s": floor,
        "image_auroc": row["image_auroc"],
    }


def report(r: dict[str, float]) -> str:
    lines = [
        f"PatchCore cell: {r['train_images']:.0f} train / {r['test_images']:.0f} test images, "
        f"{r['train_patches']:.0f} train patches -> bank {r['bank_size']:.0f}",
        f"backbone forward      {r['backbone_ms_per_image']:8.1f} ms/image "
        f"(fit {r['fit_embed_s']:.1f} s, score {r['score_embed_s']:.1f} s)",
        f"coreset               {r['coreset_s']:8.1f} s   {r['coreset_gbs']:.1f} GB/s of {r['bandwidth_gbs']:.1f} "
        f"GB/s measured ({100 * r['coreset_gbs'] / r['bandwidth_gbs']:.0f} %)",
        f"FAISS search          {r['search_s']:8.1f} s",
        f"metrics               {r['metric_s']:8.1f} s",
        f"cell total            {r['cell_total_s']:8.1f} s   floor {r['floor_s']:.1f} s "
        f"-> {r['cell_total_s'] / r['floor_s']:.2f} x floor (target <= 1.25)",
        f"(one-off corruption cache fill {r['corruption_cache_fill_s']:.1f} s, not part of the cell; "
        f"image AUROC {100 * r['image_auroc']:.2f})",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--category", required=True)
    p.add_argument("--coreset-ratio", type=float, default=0.1)
    p.add_argument("--corruption", default="gaussian_noise")
    p.add_argument("--severity", type=int, default=5)
    p.add_argument("--backbone", default=None)
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training images")
    a = p.parse_args(argv)
    print(report(run(a.root, a.category, a.coreset_ratio, a.corruption, a.severity, a.backbone, a.max_train)))


if __name__ == "__main__":
    main()
