"""Shared by the executor, Ray, determinism, bad-input and preset tests (not a test module).

Small grids on the embedded ``textures`` dataset at 64 px, and the in-process reference run that
several test files compare against (computed once per session, with its own cold caches).
"""
from __future__ import annotations

import atexit
import dataclasses
import inspect
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bench.datasets import textures
from bench.datasets.cache import cache_at
from bench.grid import GridSpec
from bench.methods import Method, MethodConfig, Scores
from bench.results import METRICS, load_rows

def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``bench ARGS`` in-process: (exit code, stdout, stderr)."""
    import sys

    from bench import cli

    monkeypatch.setattr(sys, "argv", ["bench", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


TINY = {"resize": "64", "image_size": "64"}  # PatchCore at 64 px: seconds per fit on a CPU
# One CPU thread per cell in every executor: a convolution's float sums depend on the thread
# count, so equal thread counts are what makes metrics bit-identical across executors.
THREADS = 1


@dataclasses.dataclass(frozen=True)
class ProbeConfig(MethodConfig):
    image_size: int = 16  # 0: the native size


class GrayProbe(Method):
    """Map = |gray image - mean training gray image| at image_size px (0: native size); image
    score = max of the map. A method the tests reason about exactly, in milliseconds; it checks
    that it only ever gets (H, W, 3) uint8 images. Register it with ``registered_temporarily``."""

    Config = ProbeConfig

    def _gray(self, img: np.ndarray) -> np.ndarray:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, img.shape
        s = self.config.image_size
        if s:
            img = np.asarray(Image.fromarray(img).resize((s, s)))
        return img.astype(np.float32).mean(-1)

    def fit(self, train) -> None:
        self.mean = np.mean([self._gray(x) for x in train], axis=0)

    def score(self, images) -> Scores:
        maps = np.stack([np.abs(self._gray(x) - self.mean) for x in images]).astype(np.float32)
        return Scores(maps.reshape(len(maps), -1).max(1), maps)

    def fitted_state(self):
        return {"mean": self.mean}

    def load_fitted_state(self, state) -> None:
        self.mean = state["mean"]

    def mask_transform(self, mask: np.ndarray) -> np.ndarray:
        s = self.config.image_size
        if not s:
            return mask
        return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((s, s), Image.NEAREST)) > 127



class NaNProbe(GrayProbe):
    """GrayProbe whose image scores are NaN: each of its cells becomes a failed row."""

    def score(self, images) -> Scores:
        s = super().score(images)
        return Scores(np.full_like(s.image_scores, np.nan), s.maps)

@lru_cache(maxsize=1)
def scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="adshift-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@lru_cache(maxsize=1)
def textures_root() -> Path:
    """One generated copy of the embedded dataset for the whole session."""
    return textures.ensure_textures(scratch() / "textures")


def tiny_spec(categories=("brick",), corruptions=("gaussian_noise",), severities=(3,), seeds=(0,),
              **kw) -> GridSpec:
    """patchcore on textures: clean + the given corruptions, at 64 px."""
    return GridSpec(methods=["patchcore"], dataset="textures", root=str(textures_root()),
                    categories=list(categories), corruptions=list(corruptions),
                    severities=list(severities), seeds=list(seeds), overrides=dict(TINY), device="cpu", **kw)


cache_env = cache_at  # ADSHIFT_BENCH_CACHE=path for this process and the workers it starts


def metric_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["cell_id", "method", "category", "corruption", "severity", "seed", "status", "threads", *METRICS]
    return df[cols].sort_values("cell_id").reset_index(drop=True)


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same cells, same status, bit-identical metric columns."""
    pd.testing.assert_frame_equal(metric_table(a), metric_table(b), check_exact=True)


@lru_cache(maxsize=1)
def reference_run() -> Path:
    """The tiny grid in-process with cold caches; its run directory (rows under parts/)."""
    from bench.executors import LocalExecutor, run_grid

    run_dir = scratch() / "reference"
    with cache_env(scratch() / "cache-reference"):
        summary = run_grid(tiny_spec(), run_dir, LocalExecutor(workers=1, threads=THREADS), show_progress=False)
    assert summary.ran == 2 and summary.failed == 0, summary.failures
    return run_dir


def reference_rows() -> pd.DataFrame:
    return load_rows(reference_run())


# --------------------------------------------------------------------------- MVTec-layout folders


def make_category(root: Path, name: str, *, n_train: int = 4, n_good: int = 2, n_defect: int = 2,
                  size: int = 64, mode: str = "RGB", seed: int = 0) -> Path:
    """A tiny category in the MVTec AD layout with random images and square defect masks."""
    rng = np.random.default_rng(seed)
    base = Path(root) / name

    def save(rel: str, arr: np.ndarray, m: str) -> None:
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, m).save(p)

    def img() -> np.ndarray:
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        return rng.integers(0, 255, shape, dtype=np.uint8)

    for i in range(n_train):
        save(f"train/good/{i:03d}.png", img(), mode)
    for i in range(n_good):
        save(f"test/good/{i:03d}.png", img(), mode)
    for i in range(n_defect):
        save(f"test/crack/{i:03d}.png", img(), mode)
        mask = np.zeros((size, size), np.uint8)
        mask[size // 4: size // 2, size // 4: size // 2] = 255
        save(f"ground_truth/crack/{i:03d}_mask.png", mask, "L")
    return base


def preset_rows(preset, spec, categories, value, **config_changes) -> pd.DataFrame:
    """One ok row per method x category x domain x condition; ``value(category[, domain])``."""
    two = len(inspect.signature(value).parameters) == 2
    rows = []
    for m in preset.methods:
        cfg = {**spec.method_config(m).to_dict(), **config_changes}
        for cat in categories:
            for d in spec.domain_names():
                for c, s in spec.conditions():
                    v = value(cat, d) if two else value(cat)
                    rows.append(dict(method=m, dataset=spec.dataset, category=cat, domain=d, corruption=c,
                                     severity=s, seed=0, status="ok", protocol=spec.protocol, config=json.dumps(cfg),
                                     test_subset=0, cell_id=f"{m}-{cat}-{d}-{c}", image_auroc=v, pixel_auroc=v,
                                     device="cpu", threads=2, cpu_model="a CPU", score_seconds=2.0, n_test=100,
                                     diag_train_seconds_per_epoch=10.0))
    return pd.DataFrame(rows)
