"""``bench doctor``: check that this machine's device computes what the CPU computes, and how fast.

1. A tiny grid (embedded ``textures``, one category, clean + gaussian_noise@5; PatchCore, TTAD at
   the embedded CPU budget, RD4AD for a few epochs) runs on the CPU, then on the device twice:
   with the CPU's fitted states (the device embeds, adapts and scores: the same function must
   give the same rows) and with fits computed on the device (coreset and training there). Every
   metric of every cell is compared; the second run's trained methods are reported, not judged:
   Adam's first steps turn rounding differences into full-size steps, so a few epochs of
   training never reproduce across devices. The device grid runs with TF32
   off and deterministic cuDNN (the check asks "same function?", not "how fast?"; grids keep
   torch's defaults, TF32 convolutions included). Tolerances (absolute, metric in [0, 1]):
   ``TOL_EXACT`` for methods that only run a pretrained network (float summation order),
   ``TOL_TRAINED`` for methods that train or adapt (the same differences steer SGD elsewhere).
2. Timings on the device: backbone forward (ms / image at 224 px), greedy coreset, the
   nearest-neighbour search of every backend usable there (on CUDA: FAISS on the GPU where
   ``python -m bench.faiss_gpu --install`` put it, exact torch search, FAISS on the CPU), each
   checked against an exact float64 search (share of queries with the same neighbour), and one TTAD OT step
   (a 15,680 x 16,384 Sinkhorn plan: one batch of 10 images + 10 views against a capped bank).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

TOL_EXACT = 0.005
TOL_TRAINED = 0.03
METHODS = {"patchcore": TOL_EXACT, "ttad": TOL_TRAINED, "rd4ad": TOL_TRAINED}
METRIC_COLUMNS = ("image_auroc", "pixel_auroc", "aupro")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(device: str, fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall seconds of ``repeat`` calls after one warm-up (device work synchronised)."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def strict(on: bool) -> None:
    """TF32 off and deterministic cuDNN (on), or torch's defaults (off)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = not on
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def compare_grids(device: str, say: Callable[[str], None], epochs: int = 3) -> bool:
    """Run the tiny grid on cpu and on ``device``; True when every metric is within tolerance."""
    from rich.console import Console

    from .cache import FitCache
    from .executors import make_executor, run_grid
    from .grid import GridSpec
    from .results import load_rows

    rows = {}
    runs = (("cpu", "cpu", "fits-cpu"), (f"{device}, CPU fits", device, "fits-cpu"),
            (f"{device}, own fits", device, "fits-dev"))
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp:
        for i, (label, dev, fits) in enumerate(runs):
            spec = GridSpec(methods=list(METHODS), dataset="textures", categories=["brick"],
                            corruptions=["gaussian_noise"], severities=[5], device=dev,
                            overrides={"rd4ad.epochs": str(epochs)})
            t0 = time.perf_counter()
            strict(dev.startswith("cuda"))
            run_dir = Path(tmp) / f"run{i}"
            run_grid(spec, run_dir, make_executor("local"), fit_cache=FitCache(Path(tmp) / fits),
                     console=Console(stderr=True, quiet=True), show_progress=False)
            strict(False)
            rows[label] = load_rows(run_dir).set_index(["method", "corruption"])
            say(f"tiny grid on {label}: {len(rows[label])} cells in {time.perf_counter() - t0:.1f} s")
    ok = True
    for label, judged in ((runs[1][0], set(METHODS)), (runs[2][0], {m for m, t in METHODS.items() if t == TOL_EXACT})):
        say(f"rows, cpu / {label} (%):")
        ok &= _compare(rows["cpu"], rows[label], judged, say)
    return ok


def _compare(cpu_rows, dev_rows, judged: set[str], say: Callable[[str], None]) -> bool:
    import pandas as pd

    ok = True
    lines = []
    for (method, corruption), cpu in cpu_rows.iterrows():
        dev = dev_rows.loc[(method, corruption)]
        tol = METHODS[method]
        if cpu["status"] != "ok" or dev["status"] != "ok":
            ok = False
            lines.append(f"  {method:10s} {corruption:15s} FAILED: cpu {cpu['error'] or 'ok'} / device {dev['error'] or 'ok'}")
            continue
        diffs = {m: abs(float(cpu[m]) - float(dev[m])) for m in METRIC_COLUMNS if pd.notna(cpu[m])}
        worst = max(diffs.values())
        verdict = ("ok" if worst <= tol else "OUT OF TOLERANCE") if method in judged else "not judged (trained here)"
        ok &= method not in judged or worst <= tol
        vals = "  ".join(f"{m} {100 * float(cpu[m]):.2f}/{100 * float(dev[m]):.2f}" for m in diffs)
        lines.append(f"  {method:10s} {corruption:15s} {vals}  max |diff| {100 * worst:.2f} pt "
                     f"(tolerance {100 * tol:.1f}) {verdict}")
    for line in lines:
        say(line)
    return ok


def device_timings(device: str, say: Callable[[str], None]) -> None:
    import numpy as np
    import torch

    from .methods import alignment as A
    from .methods.backbones import DEFAULT_BACKBONE
    from .methods.coreset import greedy_coreset
    from .methods.patchcore import PatchCoreConfig, PatchEmbedder

    gen = torch.Generator().manual_seed(0)
    emb = PatchEmbedder(PatchCoreConfig()).to(device).eval()
    x = torch.randn(32, 3, 224, 224, generator=gen).to(device)
    with torch.no_grad():
        t = _timed(device, lambda: emb(x))
    say(f"backbone {DEFAULT_BACKBONE} + patch embedding, batch 32 at 224 px: {1000 * t / 32:.2f} ms/image")

    feats = torch.randn(200_000, 1024, generator=gen).to(device)
    t0 = time.perf_counter()
    idx = greedy_coreset(feats, 0.01, seed=0)
    _sync(device)
    say(f"greedy coreset, 200,000 x 1024 -> {len(idx):,} items: {time.perf_counter() - t0:.2f} s")

    bank = torch.randn(20_000, 1024, generator=gen)
    queries = torch.randn(7_840, 1024, generator=gen)
    knn_checks(device, bank, queries, say)

    z = torch.randn(15_680, 1024, generator=gen).to(device).requires_grad_(True)
    ot_bank = torch.randn(16_384, 1024, generator=gen).to(device)
    ot = A.TransportLoss(ot_bank, "or", reg=0.1, max_iter=100, tol=1e-3, scale=float(np.sqrt(2 * 1024)))
    info = {}

    def step():
        loss, tr = ot(z)
        loss.backward()
        info["tr"] = tr

    t = _timed(device, step)
    tr = info["tr"]
    say(f"one TTAD OT step (15,680 x 16,384 plan + loss + backward): {t:.3f} s, {tr.iters} Sinkhorn "
        f"iterations ({tr.solver}), marginal error {tr.error:.1e}")


def knn_checks(device: str, bank, queries, say: Callable[[str], None]) -> dict[str, tuple[float, float]]:
    """Each search backend usable on ``device`` against exact float64 search: seconds, share of
    queries given the same nearest neighbour. On CUDA: FAISS on the GPU (the ``faiss-gpu`` wheel,
    ``python -m bench.faiss_gpu``), exact torch search and FAISS on the CPU; PatchCore uses the first."""
    import torch

    from .methods.knn import NearestNeighbours, _has_faiss_gpu, backend_for

    on_gpu = device.startswith("cuda")
    exact_on = device if on_gpu else "cpu"
    n = len(queries) if on_gpu else 500  # float64 on the CPU: a sample of the queries
    exact = torch.cdist(queries[:n].to(exact_on).double(), bank.to(exact_on).double()).pow(2).min(1)
    backends = ((["faiss-gpu"] if _has_faiss_gpu() else []) + ["torch", "faiss"]) if on_gpu else ["faiss"]
    if on_gpu and "faiss-gpu" not in backends:
        say("FAISS has no GPU support here (a CPU wheel): PatchCore searches with exact torch on the GPU; "
            "python -m bench.faiss_gpu --install puts FAISS on the GPU")
    out = {}
    for name in backends:
        nn = NearestNeighbours(bank.numpy(), device, backend=name)
        t = _timed(device, lambda: nn.search(queries.numpy(), 1))
        d, i = nn.search(queries.numpy(), 1)
        agree = float((torch.from_numpy(i[:n, 0]).to(exact_on) == exact.indices).float().mean())
        rel = float(((torch.from_numpy(d[:n, 0]).to(exact_on).double() - exact.values).abs().max()
                     / exact.values.max()))
        used = " (PatchCore's)" if name == backend_for(device) else ""
        say(f"kNN search {name}{used}, {len(queries):,} queries x {len(bank):,} bank x {bank.shape[1]}: {t:.3f} s; "
            f"vs float64 exact on {n:,} queries: {100 * agree:.2f} % same neighbour, max rel. distance error {rel:.1e}")
        out[name] = (t, agree)
    return out


def run(device: str, say: Callable[[str], None] = print, epochs: int = 3) -> bool:
    import platform

    import torch

    from .runner import resolve_device

    device = resolve_device(device)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else platform.processor() or "cpu"
    say(f"bench doctor: torch {torch.__version__} on {device} ({name}); {torch.get_num_threads()} CPU threads")
    t0 = time.perf_counter()
    device_timings(device, say)
    ok = compare_grids(device, say, epochs) if device != "cpu" else True
    say(f"{'OK' if ok else 'PROBLEMS FOUND'} in {time.perf_counter() - t0:.0f} s")
    return ok
