"""MNIST-M's test split (the ``mnist_m`` domain of ``mnist``) in its released forms, or generated.

MNIST-M (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016) blends MNIST digits over patches
of colour photographs. Official source: the authors' page http://yaroslav.ganin.net/ (the archive
``mnist_m.tar.gz``). The loader looks under the mnist ``--root`` for, in this order:

1. ``mnist_m/`` as the authors released it: ``mnist_m_test/00000000.png`` ... (28x28 RGB) and
   ``mnist_m_test_labels.txt`` with lines ``00000000.png 7`` (``mnist_m_train*`` is not needed:
   training uses MNIST);
2. a pickle (``mnistm_data.pkl``, ``keras_mnistm.pkl[.gz]``, at the root or in ``mnist_m/``): a dict
   holding the test images as a (N, 28, 28, 3) uint8 array under ``test`` or ``test_images``, the
   labels under ``test_labels`` / ``test_label`` / ``y_test`` when present. The tf-dann and keras
   scripts that write it keep no labels: they built ``test`` from MNIST's 10,000 test digits in
   order, so a label-less pickle of 10,000 test images takes MNIST's test labels (said in the rows);
3. ``mnist_m_test.pt`` (at the root, in ``mnist_m/`` or a torchvision ``MNISTM/raw``,
   ``MNISTM/processed``, ``MNIST-M/processed`` folder): ``torch.save`` of the tuple (images
   (N, 28, 28, 3) uint8, labels (N,)), as the ``mnist_m`` package (liyxi/mnist-m) and
   pytorch-domain-adaptation variants release it;
4. none of these, but the BSDS500 photographs (``BSR/BSDS500/data/images/train/*.jpg``, as
   ``BSR_bsds500.tgz`` extracts, or ``BSDS500/data/images/train/``): MNIST-M is generated from
   MNIST's test digits exactly as Ganin & Lempitsky describe it - each digit, binarised, is a mask
   that inverts the colours of a 28x28 patch cropped uniformly at random from a photograph drawn
   uniformly at random (``|patch - 255 * mask|`` per channel), seeded (``GENERATOR_SEED``), so
   every run builds the same pixels. The rows say which form was read (``domain_source``); a
   generated split has its own image ids, so corrupted copies never mix with a released one's.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from ..methods.errors import BenchError
from .base import ImageSet, TestSplit, entries, one_vs_rest, read_rgb, standin_source

DOMAIN = "mnist_m"
FOLDER = "mnist_m"
SOURCE = "http://yaroslav.ganin.net/ (Ganin & Lempitsky 2015, mnist_m.tar.gz)"
TEST_DIR = "mnist_m_test"
TEST_LABELS = "mnist_m_test_labels.txt"
PICKLES = ("mnistm_data.pkl", "keras_mnistm.pkl", "keras_mnistm.pkl.gz", "mnistm_data.pkl.gz")
PICKLE_IMAGES = ("test", "test_images")
PICKLE_LABELS = ("test_labels", "test_label", "y_test")
TORCH_FILE = "mnist_m_test.pt"
TORCH_DIRS = (".", FOLDER, "MNISTM/raw", "MNISTM/processed", "MNIST-M/raw", "MNIST-M/processed")
BACKGROUNDS = ("BSR/BSDS500/data/images/train", "BSDS500/data/images/train")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
GENERATOR_SEED = 0
SIDE = 28


def find(root: Path) -> tuple[str, Path] | None:
    """The form of MNIST-M present under ``root``: (kind, path), the first found in the module's
    order, or None."""
    folder = root / FOLDER
    if (folder / TEST_LABELS).is_file() and (folder / TEST_DIR).is_dir():
        return "folder", folder
    for where in (root, folder):
        for name in PICKLES:
            if (where / name).is_file():
                return "pickle", where / name
    for where in TORCH_DIRS:
        if (root / where / TORCH_FILE).is_file():
            return "torch", root / where / TORCH_FILE
    for where in BACKGROUNDS:
        if (root / where).is_dir():
            return "generate", root / where
    return None


def missing_message(root: Path) -> str:
    return (f"{root / FOLDER / TEST_LABELS}: no such file, nor {PICKLES[0]}, {TORCH_FILE} or BSDS500 photos "
            f"({root / BACKGROUNDS[0]}) to generate MNIST-M from; get mnist_m.tar.gz from {SOURCE} and "
            f"extract it into {root} (it makes {FOLDER}/), or extract BSR_bsds500.tgz there")


def test_split(root: Path, normal: Sequence[str], digits: np.ndarray, digit_labels: np.ndarray) -> TestSplit:
    """MNIST-M's test split with ``normal`` classes normal; ``digits`` / ``digit_labels``: MNIST's
    test set (labels of a label-less pickle, the digits a generated split is built from)."""
    found = find(root)
    if found is None:
        raise BenchError(missing_message(root))
    kind, path = found
    if kind == "folder":
        ids, labels = read_label_file(path / TEST_LABELS)
        paths = [path / TEST_DIR / name for name in ids]
        images = ImageSet.from_paths([f"{TEST_DIR}/{name}" for name in ids], paths)
        source = f"MNIST-M test split, released folder ({path / TEST_DIR}, {TEST_LABELS})"
    else:
        if kind == "pickle":
            arrays, labels, source = read_pickle(path, digit_labels)
            prefix = f"{path.name}/test"
        elif kind == "torch":
            arrays, labels = read_torch(path)
            prefix, source = path.name, f"MNIST-M test split, torch file ({path})"
        else:
            photos = load_backgrounds(path)
            arrays = generate(digits, photos, GENERATOR_SEED)
            labels = np.asarray(digit_labels, dtype=np.int64)
            digest = _digest(photos)
            prefix = f"mnist_m_generated_s{GENERATOR_SEED}_{digest}/t10k"
            source = (f"MNIST-M generated from MNIST's test digits and the {len(photos)} photographs in {path} "
                      f"(Ganin & Lempitsky: uniform 28x28 crop, |patch - 255 * binarised digit| per channel), "
                      f"seed {GENERATOR_SEED}, photos digest {digest}")
            source = standin_source(root, source)  # a stand-in's digits and photographs
        images = ImageSet([f"{prefix}/{i:05d}" for i in range(len(arrays))], lambda i: arrays[i].copy())
    return one_vs_rest(images, [str(int(y)) for y in labels], normal, source=source)


def read_label_file(path: Path) -> tuple[list[str], np.ndarray]:
    """``mnist_m_*_labels.txt``: lines ``FILE LABEL`` -> (file names, labels)."""
    names, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not 0 <= int(parts[1]) <= 9:
            raise BenchError(f"{path}:{n}: expected 'FILE LABEL' with a digit label (e.g. 00000000.png 5), "
                             f"got {line.strip()!r}")
        names.append(parts[0])
        labels.append(int(parts[1]))
    if not names:
        raise BenchError(f"{path}: no images listed; get mnist_m.tar.gz from {SOURCE} again")
    return names, np.asarray(labels, dtype=np.int64)


def _check_images(path: Path, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIDE, SIDE, 3):
        raise BenchError(f"{path}: test images are {images.dtype} {images.shape}; MNIST-M's are uint8 "
                         f"(N, {SIDE}, {SIDE}, 3)")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(images) or (labels.size and not ((labels >= 0) & (labels <= 9)).all()):
        raise BenchError(f"{path}: {len(images)} test images but {len(labels)} labels (digits 0-9 expected)")
    return images, labels


def read_pickle(path: Path, mnist_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """The test images and labels of an MNIST-M pickle, and what was read (the rows' source)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - pickle raises many types for a foreign file
        raise BenchError(f"{path}: not an MNIST-M pickle ({exc}); get mnist_m.tar.gz from {SOURCE} instead") from None
    key = next((k for k in PICKLE_IMAGES if isinstance(entry, dict) and k in entry), None)
    if key is None:
        raise BenchError(f"{path}: an MNIST-M pickle is a dict with the test images under "
                         f"{' or '.join(PICKLE_IMAGES)}; this one has {sorted(entry) if isinstance(entry, dict) else type(entry).__name__}")
    images = np.asarray(entry[key])
    label_key = next((k for k in PICKLE_LABELS if k in entry), None)
    if label_key is not None:
        source = f"MNIST-M test split, pickle ({path}: {key}, {label_key})"
        return (*_check_images(path, images, entry[label_key]), source)
    if len(images) != len(mnist_labels):
        raise BenchError(f"{path}: {len(images)} test images without labels ({', '.join(PICKLE_LABELS)}); only a "
                         f"pickle built from MNIST's {len(mnist_labels)} test digits in order can take their labels")
    source = f"MNIST-M test split, pickle ({path}: {key}; labels: MNIST's test labels, in order, as it was built)"
    return (*_check_images(path, images, mnist_labels), source)


def read_torch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``torch.save((images, labels))`` -> numpy arrays (tensors only: loaded with weights_only)."""
    import torch

    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise BenchError(f"{path}: not a torch file of (images, labels) tensors ({exc}); get mnist_m.tar.gz "
                         f"from {SOURCE} instead") from None
    if not isinstance(entry, (tuple, list)) or len(entry) != 2:
        raise BenchError(f"{path}: holds a {type(entry).__name__}; an MNIST-M torch file holds the tuple "
                         "(images, labels)")
    return _check_images(path, np.asarray(entry[0]), np.asarray(entry[1]))


def load_backgrounds(folder: Path) -> list[np.ndarray]:
    """The photographs of ``folder`` (sorted by name, so every file system gives the same order)."""
    files = [p for p in entries(folder) if p.suffix.lower() in PHOTO_SUFFIXES]
    photos = [read_rgb(p) for p in files]
    photos = [p for p in photos if p.shape[0] >= SIDE and p.shape[1] >= SIDE]
    if not photos:
        raise BenchError(f"{folder}: no photograph of at least {SIDE}x{SIDE} px (jpg, png) to generate MNIST-M "
                         "from; extract BSR_bsds500.tgz (BSDS500) there")
    return photos


def generate(digits: np.ndarray, backgrounds: Sequence[np.ndarray], seed: int) -> np.ndarray:
    """MNIST-M from MNIST digits (N, 28, 28) uint8 and photographs (H, W, 3) uint8, as Ganin &
    Lempitsky describe it: for each digit a photograph and a 28x28 crop, both uniform at random,
    whose colours the binarised digit inverts: ``|patch - 255 * (digit > 0)|`` per channel. The
    same digits, photographs (in order) and seed give the same images."""
    digits = np.asarray(digits)
    rng = np.random.default_rng(seed)
    which = rng.integers(len(backgrounds), size=len(digits))
    out = np.empty((len(digits), SIDE, SIDE, 3), dtype=np.uint8)
    for i, b in enumerate(which):
        photo = backgrounds[b]
        y = int(rng.integers(photo.shape[0] - SIDE + 1))
        x = int(rng.integers(photo.shape[1] - SIDE + 1))
        patch = photo[y:y + SIDE, x:x + SIDE].astype(np.int16)
        mask = (digits[i] > 0).astype(np.int16)[:, :, None] * 255
        out[i] = np.abs(patch - mask).astype(np.uint8)
    return out


def _digest(photos: Sequence[np.ndarray]) -> str:
    h = hashlib.sha256()
    for p in photos:
        h.update(str(p.shape).encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()[:8]
