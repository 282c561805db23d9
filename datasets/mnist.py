"""MNIST (in-distribution) and MNIST-M (out of distribution), GNL's digit benchmark; image metrics only.

Official source: https://yann.lecun.com/exdb/mnist/ (torchvision downloads the same four files from
its mirror). ``--root`` is torchvision's ``root``: the folder that holds ``MNIST/raw/`` with

    train-images-idx3-ubyte[.gz]   60,000 training digits     train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    10,000 test digits         t10k-labels-idx1-ubyte[.gz]

read here with numpy (the IDX format: a big-endian header - two zero bytes, the element type
0x08 = unsigned byte, the number of dimensions - then each dimension as a big-endian int32, then
the values in row-major order). Without ``--root`` the harness uses its cache. The files are
downloaded through torchvision when absent and the network works; otherwise the error names the
page and the folder. MNIST-M lives beside them (``datasets/mnist_m.py``: released forms, or built
from BSDS500 photographs).

Protocol (GNL, Cao et al. 2023, after the one-vs-all protocol): category = the normal class(es);
train = MNIST's training digits of those classes; test domains ``mnist`` (MNIST's 10,000 test
digits, the in-distribution one) and ``mnist_m`` (MNIST-M's test split), where a digit of another
class is anomalous (its class is its defect type). Categories ``0`` .. ``9`` (one-vs-all) and
``even`` (GNL's multi-class setting: 0, 2, 4, 6, 8 normal, odd digits anomalous). Images are 28x28,
MNIST's gray values repeated into three channels.
"""
from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from . import mnist_m
from .base import (Category, ImageSet, LazySplits, download_command, ensure_downloaded, one_vs_rest,
                   per_file_version, reachable, standin_notes, standin_source, torchvision_download)
from .cache import cache_dir

RAW = Path("MNIST") / "raw"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PAGE = "https://yann.lecun.com/exdb/mnist/"
HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first mirror
DIGITS = tuple(str(d) for d in range(10))
GROUPS = {"even": ("0", "2", "4", "6", "8")}  # GNL's multi-class setting
CATEGORIES = DIGITS + tuple(GROUPS)
DOMAINS = ("mnist", mnist_m.DOMAIN)  # in-distribution first
SIDE = 28


def normal_classes(category: str) -> tuple[str, ...]:
    """The digits a category holds as normal: one for '0'..'9', five for 'even'."""
    if category in DIGITS:
        return (category,)
    if category in GROUPS:
        return GROUPS[category]
    raise BenchError(f"mnist has no category '{category}'; its categories are {', '.join(CATEGORIES)}")


def idx_file(root: Path, name: str) -> Path | None:
    """``MNIST/raw/<name>`` or its ``.gz``, whichever is there (the extracted one first)."""
    for candidate in (root / RAW / name, root / RAW / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _missing(root: Path) -> list[Path]:
    return [root / RAW / n for pair in FILES.values() for n in pair if idx_file(root, n) is None]


def _network() -> bool:
    return reachable(HOST)


def _fix(root: Path) -> str:
    names = [f"{n}.gz" for pair in FILES.values() for n in pair]
    return f"get {', '.join(names[:-1])} and {names[-1]} from {PAGE} into {root / RAW}"


def download(root: Path) -> None:
    """torchvision's download: the four files (md5-checked) into ``root/MNIST/raw``, extracted."""
    torchvision_download("MNIST", root, "MNIST", _fix(root))


def check_root(root: Path) -> Path:
    """The root, with MNIST downloaded into it when it is absent and the network works."""
    root = Path(root).expanduser()
    return ensure_downloaded(root, _missing, lambda: _network(), lambda r: download(r), "MNIST", f"{RAW}/", _fix(root))


def default_root() -> Path:
    return check_root(cache_dir("mnist"))


@per_file_version(maxsize=4)
def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or not) as a numpy array of its dimensions."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise BenchError(f"{path}: cannot read this IDX file ({exc}); get it again from {PAGE}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise BenchError(f"{path}: not an IDX file of unsigned bytes (its first bytes are {data[:4].hex()}, "
                         f"expected 0000 08 and a dimension count); get it again from {PAGE}")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">i4"))
    if len(dims) != ndim or len(data) - header != int(np.prod(dims)):
        raise BenchError(f"{path}: holds {len(data) - header} values for dimensions {dims} (truncated?); "
                         f"get it again from {PAGE}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """``array`` (unsigned bytes) as an IDX file, ``read_idx``'s inverse: 0, 0, 0x08, the dimension
    count, each dimension as a big-endian int32, then the values; ``gz``: gzipped, ``.gz`` appended
    (as released). Returns the path written. Byte-identical for the same array (no gzip timestamp)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">i", d) for d in array.shape)
    path = Path(f"{path}.gz") if gz else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = head + array.tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``train`` or ``t10k``: digits (N, 28, 28) uint8 and labels (N,) int64."""
    image_name, label_name = FILES[split]
    images_path, labels_path = idx_file(root, image_name), idx_file(root, label_name)
    if images_path is None or labels_path is None:
        check_root(root)  # the one-line error naming the missing file
    images, labels = read_idx(images_path), read_idx(labels_path).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or labels.shape != (len(images),):
        raise BenchError(f"{images_path}: {images.shape} digits for {labels.shape} labels in {labels_path}; "
                         f"MNIST has (N, {SIDE}, {SIDE}) digits and N labels")
    return images, labels


def to_rgb(digit: np.ndarray) -> np.ndarray:
    """A gray digit (28, 28) as (28, 28, 3) uint8 (a copy: methods may write into their input)."""
    return np.repeat(digit[:, :, None], 3, axis=2)


def load_category(root: Path, category: str) -> Category:
    root = check_root(root)
    normal = normal_classes(category)
    train_x, train_y = read_split(root, "train")
    test_x, test_y = read_split(root, "t10k")
    keep = np.flatnonzero(np.isin(train_y, [int(c) for c in normal]))
    train = ImageSet([f"train/{i:05d}" for i in keep], lambda k: to_rgb(train_x[keep[k]]))
    classes = [str(y) for y in test_y]
    test = one_vs_rest(ImageSet([f"t10k/{i:05d}" for i in range(len(test_x))], lambda i: to_rgb(test_x[i])),
                       classes, normal,
                       source=standin_source(root, f"MNIST test set ({idx_file(root, FILES['t10k'][0])})"))
    domains = LazySplits({
        "mnist": lambda: test,
        mnist_m.DOMAIN: lambda: mnist_m.test_split(root, normal, test_x, test_y),
    })
    return Category("mnist", category, train, test, root=root, domains=domains,
                    extra={"normal_classes": list(normal)}, notes=standin_notes(root, "MNIST"),
                    train_files=tuple(idx_file(root, n) for n in FILES["train"]))


if __name__ == "__main__":  # explicit download: python -m bench.datasets.mnist ROOT
    download_command(sys.argv, download, "MNIST", str(RAW))
