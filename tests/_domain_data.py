"""Tiny MNIST / MNIST-M / PACS folders in their released formats (not a test module).

Shared by the loader tests and the domain grid tests; each writer takes a root (a ``tmp_path``)
and returns it.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from bench.datasets import mnist, mnist_m, pacs
from bench.datasets.mnist import write_idx


def make_mnist(root: Path, n_train: int = 30, n_test: int = 20, gz: bool = True, seed: int = 0) -> Path:
    """MNIST/raw/ with the four IDX files; labels cycle 0..9; digits are a bright bar on black
    whose position depends on the label (a GrayProbe tells the classes apart)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        digits = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        for i, y in enumerate(labels):
            digits[i, 4:24, 2 + 2 * y: 5 + 2 * y] = 230
        images_name, labels_name = mnist.FILES[split]
        write_idx(root / mnist.RAW / images_name, digits, gz)
        write_idx(root / mnist.RAW / labels_name, labels, gz)
    return root


def mnist_m_images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)


def make_mnist_m_folder(root: Path, labels: list[int]) -> Path:
    """mnist_m/ as released: mnist_m_test/00000000.png ... and mnist_m_test_labels.txt."""
    folder = root / mnist_m.FOLDER / mnist_m.TEST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (img, y) in enumerate(zip(mnist_m_images(len(labels)), labels)):
        Image.fromarray(img).save(folder / f"{i:08d}.png")
        lines.append(f"{i:08d}.png {y}")
    (root / mnist_m.FOLDER / mnist_m.TEST_LABELS).write_text("\n".join(lines) + "\n")
    return root


def make_mnist_m_pickle(root: Path, n: int, labels: list[int] | None = None, name: str = "mnistm_data.pkl") -> Path:
    """A tf-dann / keras style pickle: train / valid / test uint8 arrays, labels only when given."""
    entry = {"train": mnist_m_images(4, seed=2), "valid": mnist_m_images(2, seed=3), "test": mnist_m_images(n)}
    if labels is not None:
        entry["test_labels"] = np.asarray(labels, dtype=np.int64)
    root.mkdir(parents=True, exist_ok=True)
    with (root / name).open("wb") as f:
        pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
    return root


def make_mnist_m_torch(root: Path, labels: list[int], where: str = "MNISTM/raw") -> Path:
    """torch.save((images uint8 (N, 28, 28, 3), labels)) as the mnist_m package releases it."""
    import torch

    folder = root / where
    folder.mkdir(parents=True, exist_ok=True)
    torch.save((torch.from_numpy(mnist_m_images(len(labels))), torch.tensor(labels)), folder / mnist_m.TORCH_FILE)
    return root


def make_bsds(root: Path, n: int = 3, seed: int = 4) -> Path:
    """A few 'photographs' where BSR_bsds500.tgz puts its training images."""
    folder = root / mnist_m.BACKGROUNDS[0]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (41 + i, 57, 3), dtype=np.uint8)).save(folder / f"{100 + i}.jpg")
    return root


def make_pacs(root: Path, per_class: int = 3, size: int = 227, kfold: bool = False, splits: bool = True,
              seed: int = 0) -> Path:
    """<root>[/kfold]/<domain>/<class>/NNN.jpg (per_class each) and, with ``splits``, the released
    split files in pacs_label/: train = all but the last image of each Photo class, crossval =
    the last, test = every image (as released); 1-based labels. Each class has its own gray
    level, each domain its own noise, so a GrayProbe can tell them apart."""
    rng = np.random.default_rng(seed)
    images = root / "kfold" if kfold else root
    lists: dict[tuple[str, str], list[str]] = {}
    for d, domain in enumerate(pacs.DOMAINS):
        for c, cls in enumerate(pacs.CLASSES):
            folder = images / domain / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = np.full((size, size, 3), 20 + 30 * c, np.int16) + rng.integers(0, 8 + 20 * d, (size, size, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.jpg")
                entry = f"{domain}/{cls}/{i:03d}.jpg"
                split = "crossval" if i == per_class - 1 else "train"
                lists.setdefault((domain, split), []).append(entry)
                lists.setdefault((domain, "test"), []).append(entry)
    if splits:
        pacs.write_split_files(root, lists)
    return root
