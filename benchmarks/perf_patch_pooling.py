"""Benchmark: PatchCore's patch aggregation, ATen's literal form against methods/patch_pooling.py.

    python benchmarks/perf_patch_pooling.py [--threads 2] [--repeats 15]

For the feature maps of both backbones (EfficientNet-Lite0 at 160 px, the main job; WRN-50 at
224 px, the papers) prints the median and best milliseconds of ``embed_patches`` without
gradients (scoring, fits: the fused kernels) and of its forward + backward with gradients (test-
time adaptation: the literal form with the numba pooling), each against ATen's
``F.adaptive_avg_pool1d``, and checks that both give the same bits. Runs alternate, so a busy
machine slows both alike; still, time on a quiet one.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from bench.methods import patch_pooling
from bench.methods.patchcore import PatchCoreConfig, embed_patches

SHAPES = {
    "EfficientNet-Lite0, 16 maps at 160 px": ((16, 40, 20, 20), (16, 112, 10, 10)),
    "EfficientNet-Lite0, 10 views at 160 px (one TTA step)": ((10, 40, 20, 20), (10, 112, 10, 10)),
    "WRN-50, 8 maps at 224 px": ((8, 512, 28, 28), (8, 1024, 14, 14)),
}


@contextmanager
def aten_pooling():
    """embed_patches as it was: ATen's pooling everywhere, no fused path."""
    pool, supported = patch_pooling.adaptive_avg_pool1d, patch_pooling.supported
    patch_pooling.adaptive_avg_pool1d = F.adaptive_avg_pool1d
    patch_pooling.supported = lambda *a, **k: False
    try:
        yield
    finally:
        patch_pooling.adaptive_avg_pool1d, patch_pooling.supported = pool, supported


def run(feats, cfg: PatchCoreConfig, grad: bool):
    if not grad:
        with torch.no_grad():
            return embed_patches(feats, cfg), ()
    leaves = [f.detach().requires_grad_(True) for f in feats]
    out = embed_patches(leaves, cfg)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    return out, torch.autograd.grad((out * weights).sum(), leaves)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    patch_pooling.numba.set_num_threads(args.threads)
    cfg = PatchCoreConfig()
    torch.manual_seed(0)
    print(f"threads {args.threads}, {args.repeats} alternating repeats; milliseconds, median (best)")
    for name, shapes in SHAPES.items():
        feats = [torch.relu(torch.randn(*s)) for s in shapes]
        for grad in (False, True):
            times = {"aten": [], "numba": []}
            results = {}
            for _ in range(args.repeats):
                for which in ("aten", "numba"):
                    t0 = time.perf_counter()
                    if which == "aten":
                        with aten_pooling():
                            results[which] = run(feats, cfg, grad)
                    else:
                        results[which] = run(feats, cfg, grad)
                    times[which].append(1000 * (time.perf_counter() - t0))
            (a, ga), (b, gb) = results["aten"], results["numba"]
            same = torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(ga, gb))
            what = "forward + backward" if grad else "forward, no grad"
            fig = {k: f"{statistics.median(v):7.1f} ({min(v):.1f})" for k, v in times.items()}
            print(f"{name:<55} {what:<19} ATen {fig['aten']}  numba {fig['numba']}  "
                  f"x{statistics.median(times['aten']) / statistics.median(times['numba']):.1f}  "
                  f"{'same bits' if same else 'BITS DIFFER'}")


if __name__ == "__main__":
    main()
