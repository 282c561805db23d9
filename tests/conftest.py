"""Shared fixtures: a private cache directory and a tiny dataset in the MVTec AD layout."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Fit, corruption and dataset caches go to a temp dir, never to the user's cache."""
    old = os.environ.get("ADSHIFT_BENCH_CACHE")
    os.environ["ADSHIFT_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("ADSHIFT_BENCH_CACHE", None)
    else:
        os.environ["ADSHIFT_BENCH_CACHE"] = old


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.normal(128, 12, (size // 8, size // 8))
    img = np.kron(base, np.ones((8, 8)))  # smooth-ish blocks: a regular "surface"
    return np.clip(img + rng.normal(0, 3, (size, size)), 0, 255).astype(np.uint8)


def make_mvtec(root: Path, category: str = "widget", n_train: int = 8, n_good: int = 4,
               n_bad: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write a tiny category: grayscale 'surfaces', defects are bright squares with masks."""
    rng = np.random.default_rng(seed)
    base = root / category
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(_texture(rng, size)).save(base / "train/good" / f"{i:03d}.png")
    for i in range(n_good):
        Image.fromarray(_texture(rng, size)).save(base / "test/good" / f"{i:03d}.png")
    for i in range(n_bad):
        img = _texture(rng, size)
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(8, size - 24, 2)
        img[y:y + 14, x:x + 14] = 250
        mask[y:y + 14, x:x + 14] = 255
        Image.fromarray(img).save(base / "test/spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(base / "ground_truth/spot" / f"{i:03d}_mask.png")
    return root


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    return make_mvtec(tmp_path / "data")


@pytest.fixture(scope="session")
def mvtec_factory():
    """``make_mvtec`` for tests that need their own tiny dataset (e.g. module-scoped)."""
    return make_mvtec


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: on a busy 2-core machine, thread hand-offs cost more than they save."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def probes():
    """The test methods ``probe`` (``GrayProbe``) and ``probe_nan`` (its cells fail), registered for one test."""
    from _grids import GrayProbe, NaNProbe
    from bench.methods import registered_temporarily

    with registered_temporarily("probe", GrayProbe), registered_temporarily("probe_nan", NaNProbe):
        yield
