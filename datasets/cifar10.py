"""CIFAR-10 one-class: one class is normal, the other nine are anomalous; image metrics only.

Official source: https://www.cs.toronto.edu/~kriz/cifar.html (the "python version",
``cifar-10-python.tar.gz``). ``--root`` is the folder that holds the extracted
``cifar-10-batches-py/`` (torchvision's ``root``); without ``--root`` the harness uses its cache.

Format facts relied on (the Toronto page and torchvision's ``CIFAR10``):

- ``cifar-10-batches-py/`` holds ``data_batch_1`` .. ``data_batch_5`` (training, 10,000 images
  each), ``test_batch`` (10,000) and ``batches.meta``. Each is a Python 2 pickle (read with
  ``encoding="latin1"``) of a dict: ``data`` is a (10000, 3072) uint8 array whose row holds the
  1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major order;
  ``labels`` is a list of 10,000 ints in 0..9; also ``batch_label`` and ``filenames``.
  ``batches.meta`` holds ``label_names`` (the 10 class names, index = label), ``num_cases_per_batch``
  and ``num_vis``.
- torchvision's ``CIFAR10`` verifies the md5 of every file on construction, download or not, so
  it only reads the genuine release; this loader reads the pickles itself (same decoding) and
  uses torchvision only to download (``CIFAR10(root, download=True)``, which checks the md5 of
  the archive and of each file).

One-class protocol: category = the normal class; train = that class's training images (5,000);
test = the whole test batch (10,000: 1,000 normal, 9,000 with label 1). Images are 32x32.
There is no pixel ground truth: the TestSplit says ``has_masks=False`` and the runner reports
NaN for the pixel metrics.

The data is downloaded when it is absent and the network works; with no network the error names
the page and the folder to create. ``python -m bench.datasets.cifar10 ROOT`` downloads (and
verifies) explicitly.
"""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from .base import (Category, ImageSet, download_command, ensure_downloaded, one_vs_rest, per_file_version,
                   reachable, standin, standin_notes, torchvision_download)
from .cache import cache_dir

CATEGORIES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
HOST = "www.cs.toronto.edu"


def default_root() -> Path:
    return check_root(cache_dir("cifar10"))


def _missing(root: Path) -> list[Path]:
    return [root / FOLDER / f for f in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (root / FOLDER / f).is_file()]


def _network() -> bool:
    return reachable(HOST)


def _fix(root: Path) -> str:
    return f"get cifar-10-python.tar.gz (python version) from {PAGE} and extract it into {root} (it makes {FOLDER}/)"


def download(root: Path) -> None:
    """torchvision's download: fetches the archive, checks its md5 and extracts it under root."""
    torchvision_download("CIFAR10", root, "CIFAR-10", _fix(root))


def check_root(root: Path) -> Path:
    """The root, with CIFAR-10 downloaded into it when it is absent and the network works."""
    root = Path(root).expanduser()
    if root.name == FOLDER and any((root / f).is_file() for f in (*TRAIN_FILES, TEST_FILE, META_FILE)):
        # else the download would nest a second copy in it
        raise BenchError(f"dataset root {root} is the {FOLDER}/ folder itself: pass --root its parent folder, "
                         f"{root.parent}")
    return ensure_downloaded(root, _missing, lambda: _network(), lambda r: download(r), "CIFAR-10", f"{FOLDER}/",
                             _fix(root))


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise BenchError(f"{path}: not a CIFAR-10 batch ({exc}); get cifar-10-python.tar.gz from {PAGE} "
                         "again") from None
    if isinstance(entry, dict):  # re-saved after a load with encoding="bytes": b"data", b"labels", ...
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    return entry


@per_file_version(maxsize=8)
def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images (N, 32, 32, 3) uint8 and labels (N,) int64 (cached per file version)."""
    entry = _unpickle(path)
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise BenchError(f"{path}: not a CIFAR-10 batch (needs the keys data and labels); get "
                         f"cifar-10-python.tar.gz from {PAGE} again")
    data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or len(labels) != len(data):
        raise BenchError(f"{path}: data is {data.shape} for {len(labels)} labels; a CIFAR-10 batch has "
                         "(N, 3072) rows and N labels")
    # a cast would read floats 0..1 as black and wrap wider integers: only byte values pass
    if data.dtype != np.uint8 and not (data.dtype.kind in "iu"
                                       and (not data.size or 0 <= data.min() <= data.max() <= 255)):
        span = f", {data.min():g}..{data.max():g}" if data.size and data.dtype.kind in "iuf" else ""
        raise BenchError(f"{path}: data is {data.dtype}{span}; a CIFAR-10 batch holds uint8 pixel values 0..255; "
                         f"get cifar-10-python.tar.gz from {PAGE} again")
    bad = np.flatnonzero(~np.isin(labels, np.arange(10))) if labels.dtype.kind in "iu" else np.arange(len(labels))
    if bad.size:
        raise BenchError(f"{path}: label {labels[bad[0]].item()!r} (image {bad[0]}) is not a CIFAR-10 class index, an "
                         f"integer 0..9; get cifar-10-python.tar.gz from {PAGE} again")
    images = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def class_names(root: Path) -> list[str]:
    meta = _unpickle(root / FOLDER / META_FILE)
    names = list(meta.get("label_names", [])) if isinstance(meta, dict) else []
    names = [n.decode("latin1") if isinstance(n, bytes) else n for n in names]  # as the keys, see _unpickle
    if names != list(CATEGORIES):
        raise BenchError(f"{root / FOLDER / META_FILE}: label_names {names} are not CIFAR-10's "
                         f"{', '.join(CATEGORIES)}")
    return names


def load_category(root: Path, category: str) -> Category:
    root = check_root(root)
    names = class_names(root)
    if category not in names:
        raise BenchError(f"cifar10 has no class '{category}'; its classes are {', '.join(names)}")
    normal = names.index(category)
    folder = root / FOLDER

    train_parts, train_ids = [], []
    for name in TRAIN_FILES:
        images, labels = read_batch(folder / name)
        keep = np.flatnonzero(labels == normal)
        train_parts.append(images[keep])
        train_ids += [f"{name}/{i:05d}" for i in keep]
    train_images = np.concatenate(train_parts)
    test_images, test_labels = read_batch(folder / TEST_FILE)
    if not len(train_images):
        raise BenchError(f"{folder}: no training images of class {category}")

    return Category(
        dataset="cifar10",
        name=category,
        # copies: a method that writes into its input never changes the cached batch
        train=ImageSet(train_ids, lambda i: train_images[i].copy()),
        test=one_vs_rest(
            ImageSet([f"{TEST_FILE}/{i:05d}" for i in range(len(test_images))], lambda i: test_images[i].copy()),
            [names[y] for y in test_labels], [category], source=standin(root)),
        root=root,
        notes=standin_notes(root, "cifar10"),
        train_files=tuple(folder / name for name in TRAIN_FILES),  # the pickled batches the ids index
        extra={"normal_class": category, "normal_label": normal},
    )


if __name__ == "__main__":  # explicit download: python -m bench.datasets.cifar10 ROOT
    download_command(sys.argv, download, "CIFAR-10", str(FOLDER))
