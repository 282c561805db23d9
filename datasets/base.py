"""What a dataset hands the harness: lazy image sets and labelled test splits.

Images are ``uint8`` RGB arrays of shape (H, W, 3) at their native resolution; grayscale files
come back as three identical channels. Loading is lazy (by path) so a category of 1024 px images
does not sit in memory twice.
"""
from __future__ import annotations

import functools
import os
import re
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..methods.errors import BenchError, warn
from ..methods.persist import array_digest, file_digest


# EXIF orientations 5..8 turn the stored image by 90 degrees: width and height swap.
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
_SHOWN = {2: "mirrored", 3: "turned 180 degrees", 4: "flipped upside down", 5: "mirrored and turned 90 degrees",
          6: "turned 90 degrees clockwise", 7: "mirrored and turned 90 degrees",
          8: "turned 90 degrees counter-clockwise"}

FLOAT_ONE = 1.01  # the largest value of a float image read as 0..1 (see to_rgb_array)
TWELVE_BIT = 4096  # a 16-bit image whose maximum is below this holds 12-bit data, most likely


def _orientation(im: Image.Image) -> int:
    try:
        o = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block: read the pixels as stored
        return 1
    return o if o in _SHOWN else 1  # Pillow's exif_transpose ignores values outside 2..8 too


def _shown(orientation: int) -> str:
    """What an EXIF orientation does to the stored pixels, for a message."""
    return f"EXIF orientation {orientation} (shown {_SHOWN[orientation]})" if orientation in _SHOWN \
        else "no EXIF orientation"


def _upright(im: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation applied (a no-op without one)."""
    if _orientation(im) == 1:
        return im
    return ImageOps.exif_transpose(im)


def text_name(path: Path) -> Path:
    """``path`` when its name is text. Names holding bytes that are not UTF-8 (unzip of a Windows
    archive writes them) cannot go into a row or a message: one line, the bytes escaped."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise BenchError(f"{shown}: this name is not UTF-8 text (its undecodable bytes are shown as \\xNN); "
                         "rename it") from None
    return path


def entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` a loader reads, sorted: hidden ones (``.DS_Store``) left out, each
    name checked by ``text_name``."""
    return sorted(text_name(p) for p in Path(folder).iterdir() if not p.name.startswith("."))


# Said once per process and file (catch_warnings below resets Python's own once-per-message memory).
_SAID_FILES: set[str] = set()
T = TypeVar("T")


def _read(path: Path, use: Callable[[Image.Image], T], what: str = "image") -> T:
    """``use(im)`` on the opened file; Pillow's failures are one line naming the file and the fix.

    Pillow's decompression-bomb guard is said the same way: over 2 x ``Image.MAX_IMAGE_PIXELS``
    (179 Mpx) an error (Pillow's names no file), over the limit itself one warning per file
    (instead of Pillow's with its source lines), and the image is read.
    """
    fix = "replace or remove the file" if what == "image" else "replace the mask file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(path) as im:
                    return use(im)
            except Image.DecompressionBombWarning:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    if str(path) not in _SAID_FILES:
                        _SAID_FILES.add(str(path))
                        warn(f"{path}: {im.size[0]}x{im.size[1]} px, over Pillow's decompression-bomb limit of "
                             f"{Image.MAX_IMAGE_PIXELS / 1e6:.3g} Mpx: read anyway, slowly and with much memory; "
                             "downscale it unless it must be this large")
                    return use(im)
    except Image.DecompressionBombError as exc:
        raise BenchError(f"{path}: too large to read safely ({str(exc).rstrip('.')}); downscale it "
                         "(a few thousand px a side is plenty) or remove it") from None
    except UnidentifiedImageError:
        raise BenchError(f"{path}: not an image (no known image format inside); {fix}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # e.g. "image file is truncated"
        raise BenchError(f"{path}: cannot decode this {what} ({exc}); {fix}") from None


def warn_once(said: set[str] | None, kind: str, message: str) -> None:
    """Warn about a ``kind`` of suspicious input once per ``said`` (the set a loader keeps for its
    category), so the warning names the first file that shows it; ``None``: every time."""
    if said is None or kind not in said:
        if said is not None:
            said.add(kind)
        warn(message)


def _viewed_size(path: Path) -> tuple[tuple[int, int], int]:
    """(height, width) of an image file as a viewer shows it, and its EXIF orientation, unread."""
    def size(im: Image.Image) -> tuple[tuple[int, int], int]:
        w, h = im.size
        o = _orientation(im)
        return ((w, h) if o in _SWAPS_AXES else (h, w)), o

    return _read(path, size)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file as a viewer shows it (EXIF orientation applied), unread."""
    return _viewed_size(path)[0]


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H, W, 3) uint8 as a viewer shows it.

    16-bit and 32-bit grayscale (``I;16*``, ``I``) are scaled from 0..65535 to 0..255 (a 16-bit
    PNG is not clipped to white); float images (``F``) are read as 0..1 when every value lies in
    [0, 1.01] (values a rounding step over 1 are clipped to white, so one such pixel does not flip
    the image to the other reading), else as 0..255. Palette, alpha (dropped), CMYK, YCbCr, 1-bit:
    PIL's conversion.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        g = np.asarray(im, dtype=np.float64)
        g = np.clip(np.round(g / 257.0), 0, 255)  # 65535 / 255 = 257
    elif mode == "F":
        g = np.asarray(im, dtype=np.float64)
        finite = g[np.isfinite(g)]
        scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= FLOAT_ONE else 1.0
        g = np.clip(np.round(np.nan_to_num(g) * scale), 0, 255)
    else:
        if mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        return np.asarray(im.convert("RGB"))
    g = g.astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def read_rgb(path: Path, said: set[str] | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 as a viewer shows it; a clear error names a broken file.

    A 16-bit image whose maximum is below 4096 (a 12-bit camera's data) reads almost black after
    the 0..65535 scaling: said once per ``said`` (see ``warn_once``)."""
    def rgb(im: Image.Image) -> np.ndarray:
        im.load()
        if im.mode.startswith("I;16") or im.mode == "I":
            top = im.getextrema()[1]
            if 0 < top < TWELVE_BIT:
                warn_once(said, "12-bit", f"{path}: maximum {top} of 65535: 12-bit data in a 16-bit file? It reads "
                          "almost black (0..65535 is scaled to 0..255); convert the images to 8 bits first "
                          "(said for the first such image of its category)")
        return to_rgb_array(_upright(im))

    return _read(path, rgb)


def mask_levels(im: Image.Image, raw: bool = False) -> np.ndarray:
    """A mask image -> (H, W) strength per pixel: its largest colour channel, 0 where transparent.

    Works for 0 / 1, 0 / 255, 16-bit and coloured masks (red on black). Alpha is not a colour, but
    a transparent pixel (alpha 0) shows nothing: an overlay mask (red defects on a transparent white
    background) marks its red pixels only. Palette masks are read through their palette (index 0 need not be black),
    except with ``raw=True``, which reads the stored values (VisA's raw masks hold label indices
    under an all-black palette).
    """
    if im.mode == "P" and not raw:
        im = im.convert("RGBA")
    elif im.mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif im.mode == "CMYK":
        im = im.convert("RGB")
    a = np.asarray(im)
    if a.ndim == 3:
        if im.mode in ("RGBA", "LA", "PA"):
            return np.where(a[..., -1] != 0, a[..., :-1].max(axis=2), 0)
        return a.max(axis=2)
    return a


# A folder that ``bench.datasets.standins`` wrote holds this file; its first line names the seed.
STANDIN_FILE = "STANDIN.md"
_STANDIN_SEED = re.compile(r"\(bench\.datasets\.standins, seed (-?\d+)\)")
_STANDIN_SOURCE = re.compile(r"stand-in \((bench\.datasets\.standins, seed -?\d+|[^)]*STANDIN\.md)\)")


def standin_mark(seed: int) -> str:
    """What the rows of a stand-in's images say they are (the start of their ``domain_source``)."""
    return f"stand-in (bench.datasets.standins, seed {seed})"


def standin(root: Path) -> str:
    """``standin_mark(seed)`` when ``root`` holds a stand-in's STANDIN.md (one line read), else ""."""
    try:
        with (Path(root) / STANDIN_FILE).open(encoding="utf-8") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return ""
    found = _STANDIN_SEED.search(first)
    return standin_mark(int(found.group(1))) if found else f"stand-in ({Path(root) / STANDIN_FILE})"


def standin_of(source: object) -> str:
    """The stand-in mark a row's ``domain_source`` starts with ("" for real data)."""
    found = _STANDIN_SOURCE.match(source) if isinstance(source, str) else None
    return found.group(0) if found else ""


def standin_source(root: Path, source: str) -> str:
    """``source`` prefixed with the stand-in mark when ``root`` is a stand-in's folder."""
    mark = standin(root)
    return f"{mark}: {source}" if mark else source


def standin_notes(root: Path, dataset: str) -> list[str]:
    """The one-line warning a stand-in's category carries (empty for real data)."""
    mark = standin(root)
    if not mark:
        return []
    return [f"{root}: {mark}, synthetic images in {dataset}'s layout, not {dataset} itself "
            f"(see {Path(root) / STANDIN_FILE}); its numbers are not comparable with published ones"]


def require_root(root: Path, fix: str) -> Path:
    """``root`` as a Path when it is a directory; otherwise one line: what is wrong, then ``fix``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise BenchError(f"dataset root {root} {what}: {fix}")
    return root


def reachable(host: str, port: int = 443, timeout: float = 5.0) -> bool:
    """Whether ``host`` answers on ``port`` (decides between downloading and a one-line error)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_downloaded(root: Path, missing: Callable[[Path], list[Path]], network: Callable[[], bool],
                      download: Callable[[Path], None], name: str, holds: str, fix: str) -> Path:
    """``root`` with its files: downloaded when some are ``missing`` and the ``network`` works.

    Otherwise one line: the first missing file, then ``fix`` (where to get the data, where to put
    it). ``holds`` says what a root holds, for a root that is not a folder.
    """
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise BenchError(f"dataset root {root} is not a directory: pass --root the folder that holds {holds}")
    absent = missing(root)
    if not absent:
        return root
    if not network():
        raise BenchError(f"{absent[0]}: no such file and no network to download {name}; {fix}")
    root.mkdir(parents=True, exist_ok=True)
    download(root)
    absent = missing(root)
    if absent:
        raise BenchError(f"{absent[0]}: still missing after the download; {fix}")
    return root


def torchvision_download(cls_name: str, root: Path, name: str, fix: str) -> None:
    """torchvision's download of ``torchvision.datasets.<cls_name>`` (it checks each file's md5)
    into ``root``; a failure is one line ending in ``fix``."""
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, cls_name)(str(root), train=True, download=True)
    except Exception as exc:  # network, disk, checksum: one line with the way out
        raise BenchError(f"{root}: downloading {name} failed ({exc}); {fix}") from None


def download_command(argv: Sequence[str], download: Callable[[Path], None], name: str, folder: str) -> None:
    """``python -m bench.datasets.<module> ROOT``: download ``name`` into ROOT/``folder`` and say where."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m bench.datasets.{Path(argv[0]).stem}",
                                     description=f"Download {name} into ROOT/{folder}.")
    parser.add_argument("root", metavar="ROOT", help=f"the folder that receives {folder}/")
    target = Path(parser.parse_args(list(argv[1:])).root).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    try:
        download(target)
    except BenchError as exc:
        sys.exit(f"error: {exc}")
    print(f"{name} is in {target / folder}")


def per_file_version(maxsize: int = 8):
    """Cache ``fn(path)`` per file version: a file replaced on disk (new mtime or size) is read again."""
    def wrap(fn: Callable[[Path], object]):
        @functools.lru_cache(maxsize=maxsize)
        def cached(path: Path, _mtime_ns: int, _size: int):
            return fn(path)

        @functools.wraps(fn)
        def read(path: Path):
            st = os.stat(path)
            return cached(Path(path), st.st_mtime_ns, st.st_size)

        return read

    return wrap


def mask_loader(image_paths: Sequence[Path], mask_paths: Sequence[Path | None],
                nonzero: bool = False, said: set[str] | None = None) -> Callable[[int], np.ndarray]:
    """i -> the boolean mask of test image i at its size as a viewer shows it; all False for a
    normal image (``mask_paths[i] is None``). ``nonzero``, ``said``: as ``read_mask``."""
    said = set() if said is None else said

    def load(i: int) -> np.ndarray:
        shape, orientation = _viewed_size(image_paths[i])
        if mask_paths[i] is None:
            return np.zeros(shape, dtype=bool)
        return read_mask(mask_paths[i], shape, nonzero=nonzero, said=said, image=(image_paths[i], orientation))

    return load


def copies_note(where: str, train: Sequence[Path], test: Sequence[Path], base: Path) -> list[str]:
    """A warning when test images are byte-for-byte copies of training images (a model then scores
    what it trained on, which inflates every metric). Files of equal size only are read."""
    by_size: dict[int, list[Path]] = {}
    for path in train:
        by_size.setdefault(os.stat(path).st_size, []).append(path)
    copies = []
    for path in test:
        match = next((t for t in by_size.get(os.stat(path).st_size, []) if file_digest(t) == file_digest(path)), None)
        if match is not None:
            copies.append((path, match))
    if not copies:
        return []
    test_copy, train_copy = (Path(p).relative_to(base) if Path(p).is_relative_to(base) else p for p in copies[0])
    return [f"{where}: {len(copies)} test images are byte-for-byte copies of training images (first: {test_copy} = "
            f"{train_copy}); a model scores what it trained on, which inflates the metrics; remove them from one split"]


def image_files(image_paths: Sequence[Path], mask_paths: Sequence[Path | None]) -> list[tuple[Path, ...]]:
    """``TestSplit.files`` of a split read from one image file and at most one mask file each."""
    return [(p,) if m is None else (p, m) for p, m in zip(image_paths, mask_paths)]


def read_mask(path: Path, shape: tuple[int, int], nonzero: bool = False, said: set[str] | None = None,
              image: tuple[Path, int] | None = None) -> np.ndarray:
    """Read a ground-truth mask as a boolean (H, W) array that must match its image's size.

    A pixel is a defect where the mask is non-zero in any colour channel (``mask_levels``), so
    0 / 255 (MVTec AD), 0 / 1 and coloured masks all work; the mask's EXIF orientation is
    applied like its image's. ``nonzero=True`` (VisA, Real-IAD) reads palette files by their
    stored values, before any palette conversion (VisA's raw masks hold small label values).
    JPEG blurs a defect's edge into faint non-zero pixels, which this rule counts: a JPEG file is
    refused (every released dataset ships PNG or BMP masks), a mask with many faint pixels (one
    that went through JPEG, or soft-edged) is said once per ``said`` (see ``warn_once``).
    ``image``: the image's path and EXIF orientation. Where the mask's differs (a phone photo, a
    mask saved without the tag) the mask may have been drawn on the stored pixels: a size mismatch
    that a 90-degree turn explains says so; where the sizes cannot tell (a square image, a turn
    by 180 degrees or a mirroring) it is said once per ``said``.
    """
    def levels(im: Image.Image) -> tuple[np.ndarray, int]:
        if im.format in ("JPEG", "MPO"):
            raise BenchError(f"{path}: this mask is a JPEG file: JPEG blurs the defect's edge into faint non-zero "
                             "pixels, which all count as defect; binarise the masks and save them as PNG")
        im.load()
        return mask_levels(_upright(im), raw=nonzero), _orientation(im)

    level, orientation = _read(path, levels, "mask")
    arr = level != 0
    turned = image is not None and orientation != image[1]
    swapped = turned and (orientation in _SWAPS_AXES) != (image[1] in _SWAPS_AXES)  # one file turned by 90 degrees
    if arr.shape != tuple(shape):
        if swapped and arr.shape == tuple(shape)[::-1]:
            who, other, o = ("image", "mask", image[1]) if image[1] in _SWAPS_AXES else ("mask", "image", orientation)
            raise BenchError(
                f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image {image[0]} is {shape[1]}x{shape[0]} "
                f"as a viewer shows it: the {who}'s EXIF orientation ({o}) turns it by 90 degrees, the {other}'s "
                "does not; masks are read as a viewer shows them: if the mask was drawn on the stored pixels, give "
                f"both files the same orientation tag (e.g. drop the {who}'s), else redraw the mask on the image as "
                "a viewer shows it")
        raise BenchError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image is "
            f"{shape[1]}x{shape[0]}; masks must have their image's size"
        )
    if turned and (not swapped or shape[0] == shape[1]):  # sizes cannot tell how the mask was drawn: say it
        warn_once(said, "exif orientation", f"{image[0]}: {_shown(image[1])}, its mask {path}: {_shown(orientation)}; "
                  "both are read as a viewer shows them (draw masks on the image as shown), so a mask drawn on the "
                  "stored pixels is misaligned: then give the images and their masks the same orientation tag (said "
                  "for the first such image of its category)")
    # An inverted mask (or a photo saved as one) still gives plausible pixel metrics: refuse the
    # mask that marks most of its image, its whole border included (no real defect does both).
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    if border.all() and arr.mean() > 0.5:
        raise BenchError(
            f"{path}: this mask marks {100 * arr.mean():.0f}% of its image as defect, its whole border "
            "included: it is inverted or not a mask; defects must be non-zero on a zero (black) background"
        )
    # Faint pixels (under half the maximum) that grow the defect by half or more, in a mask drawn
    # in intensities (maximum 128 or more: label masks such as VisA's hold 1, 2, ...).
    if arr.any():
        top = level.max()
        strong = int((level >= top / 2).sum())
        if top >= 128 and arr.sum() > 1.5 * strong:
            warn_once(said, "faint mask", f"{path}: {arr.sum() - strong} of this mask's {arr.sum()} non-zero pixels "
                      f"are faint (under half its maximum {top}), as JPEG or a soft edge leaves them: each counts as "
                      f"defect, so the defect reads {arr.sum() / strong:.1f}x its size; binarise the masks "
                      "(e.g. >= half the maximum -> 255, else 0) first (said for the first such mask of its category)")
    return arr


def split_notes(where: str, labels: np.ndarray, normal: str = "good",
                add_anomalous: str = "add test/<defect type>/ folders", add_normal: str = "") -> list[str]:
    """Warnings for a test split on which the image metrics are undefined (one class only); the
    ``add_*`` fixes say what to add (default: the MVTec layout's folders)."""
    labels = np.asarray(labels)
    if labels.size and not labels.any():
        return [f"{where}: only normal ({normal}) test images, no anomalous ones: image AUROC, AP "
                f"and F1-max are undefined (NaN); {add_anomalous}"]
    if labels.size and labels.all():
        return [f"{where}: no normal ({normal}) test images: image AUROC, AP "
                f"and F1-max are undefined (NaN); "
                f"{add_normal or f'add test/{normal}/'}"]
    return []


class ImageSet(Sequence[np.ndarray]):
    """A lazy, ordered set of images with stable ids (the ids seed the corruptions)."""

    def __init__(self, ids: Sequence[str], loader: Callable[[int], np.ndarray]) -> None:
        self.ids = list(ids)
        self._loader = loader
        self._digests: dict[int, str] = {}

    def digest(self, i: int) -> str:
        """``array_digest`` of item ``i``'s pixels, computed once per set: the corrupted-image cache keys on
        it, and a grid's cells ask for the same test images again and again."""
        if i not in self._digests:
            self._digests[i] = array_digest(self[i])
        return self._digests[i]

    @classmethod
    def from_paths(cls, ids: Sequence[str], paths: Sequence[Path], said: set[str] | None = None) -> "ImageSet":
        """Images read from ``paths``; ``said``: the category's (``warn_once``), else the set's own."""
        paths, said = list(paths), set() if said is None else said
        return cls(ids, lambda i: read_rgb(paths[i], said))

    @classmethod
    def from_arrays(cls, ids: Sequence[str], arrays: Sequence[np.ndarray]) -> "ImageSet":
        arrays = list(arrays)
        return cls(ids, lambda i: arrays[i])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            idx = range(*i.indices(len(self)))
            return ImageSet([self.ids[j] for j in idx], lambda k, idx=idx: self._loader(idx[k]))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._loader(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._loader(i)

    def take(self, indices: Sequence[int]) -> "ImageSet":
        """The images at ``indices`` (in that order), still lazy."""
        idx = [int(i) for i in indices]
        return ImageSet([self.ids[j] for j in idx], lambda k: self._loader(idx[k]))


@dataclass
class TestSplit:
    """Test images with labels (1 = anomalous) and masks. Labels never reach a method.

    ``has_masks=False`` says the dataset has no pixel ground truth (e.g. CIFAR-10 one-class):
    only image metrics exist, the pixel metrics of its rows are NaN, and ``mask`` refuses.
    """

    images: ImageSet
    labels: np.ndarray  # (N,) int
    defect_types: list[str]
    mask_loader: Callable[[int], np.ndarray] | None  # i -> bool (H, W) at native resolution
    has_masks: bool = True
    # What these images are, when a dataset has several test domains or several ways to get one
    # (e.g. "MNIST-M, released folder mnist_m/mnist_m_test"); rows record it as domain_source.
    source: str = ""
    # Per test image, the files it (and its mask) is read from, where the loader names them: their
    # contents enter the split's identity (``bench.cache.split_fingerprint``), so a resumed grid
    # sees that an image or mask changed on disk since its rows were computed.
    files: list[tuple[Path, ...]] | None = None

    def mask(self, i: int) -> np.ndarray:
        if not self.has_masks or self.mask_loader is None:
            raise BenchError("this test split has no pixel ground truth (image labels only); "
                             "check TestSplit.has_masks before asking for masks")
        return self.mask_loader(i)

    def empty_masks(self) -> list[int]:
        """Indices of anomalous test images whose mask is all zero (read once, then remembered).

        Such an image counts as anomalous for the image metrics but adds only normal pixels to
        the pixel metrics; the row records how many there are (``n_empty_masks``).
        """
        if not self.has_masks:
            return []
        cached = self.__dict__.get("_empty_masks")
        if cached is None:
            cached = [i for i in range(len(self)) if self.labels[i] and not self.mask(i).any()]
            self.__dict__["_empty_masks"] = cached
        return list(cached)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int = 0) -> "TestSplit":
        """A seeded subset of ``n`` test images stratified by defect type (``good`` included).

        Each type gets its share of ``n`` (largest remainders; at least one image per type when
        ``n`` allows, else at least one normal and one anomalous image), drawn without replacement; the images keep their original order, so
        every method and seed of a grid sees the same subset. ``n >= len(self)``: everything.
        """
        if n <= 0 or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        types = sorted(set(self.defect_types))
        members = {t: [i for i, d in enumerate(self.defect_types) if d == t] for t in types}
        share = {t: n * len(members[t]) / len(self) for t in types}
        take = {t: min(len(members[t]), max(1 if n >= len(types) else 0, int(share[t]))) for t in types}
        for t in sorted(types, key=lambda t: share[t] - int(share[t]), reverse=True):
            if sum(take.values()) >= n:
                break
            if take[t] < len(members[t]):
                take[t] += 1
        while sum(take.values()) > n:  # the one-per-type floor overshot: trim the largest
            t = max(types, key=lambda t: take[t])
            take[t] -= 1
        # fewer images than types: still one normal and one anomalous (else image AUROC is undefined)
        for want in (0, 1):
            kind = [t for t in types if self.labels[members[t][0]] == want]
            if n >= 2 and kind and not any(take[t] for t in kind):
                other = [t for t in types if take[t] and self.labels[members[t][0]] != want]
                take[max(other, key=lambda t: take[t])] -= 1
                take[max(kind, key=lambda t: share[t])] += 1
        chosen = sorted(j for t in types for j in rng.choice(members[t], take[t], replace=False).tolist())
        loader = self.mask_loader
        return TestSplit(self.images.take(chosen), self.labels[chosen], [self.defect_types[j] for j in chosen],
                         lambda i: loader(chosen[i]), has_masks=self.has_masks, source=self.source,
                         files=None if self.files is None else [self.files[j] for j in chosen])


def one_vs_rest(images: ImageSet, classes: Sequence[str], normal: Iterable[str], source: str = "") -> TestSplit:
    """A test split of a classification set: images whose class is in ``normal`` are normal, every
    other one is anomalous with its class as defect type. Image labels only (``has_masks=False``)."""
    normal = set(normal)
    classes = [str(c) for c in classes]
    labels = np.array([c not in normal for c in classes], dtype=np.int64)
    return TestSplit(images, labels, ["good" if c in normal else c for c in classes], mask_loader=None,
                     has_masks=False, source=source)


class LazySplits(Mapping[str, TestSplit]):
    """Test domains built on first use: a grid that evaluates one domain never reads (nor needs)
    another one's files. ``factories`` maps each domain, in order, to a function making its split."""

    def __init__(self, factories: Mapping[str, Callable[[], TestSplit]]) -> None:
        self._factories = dict(factories)
        self._built: dict[str, TestSplit] = {}

    def __getitem__(self, domain: str) -> TestSplit:
        if domain not in self._built:
            self._built[domain] = self._factories[domain]()  # KeyError for an unknown domain
        return self._built[domain]

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


@dataclass
class Category:
    """One category of a dataset: normal training images and a labelled test split.

    A dataset under domain shift (MNIST / MNIST-M, PACS) has several test domains: ``domains``
    maps each name to its split, the in-distribution one first; ``test`` is that one (the
    training images come from it). A dataset with one test split has no ``domains``.
    """

    dataset: str
    name: str
    train: ImageSet
    test: TestSplit
    root: Path | None = None
    extra: dict = field(default_factory=dict)
    # What the loader noticed and the user should hear once (one line each): no pixel ground
    # truth, no anomalous test image, ... The harness prints them as warnings.
    notes: list[str] = field(default_factory=list)
    domains: Mapping[str, TestSplit] = field(default_factory=dict)
    # The files the training images are read from where ``root / name / id`` is not one file per
    # image (IDX files, pickled batches, another folder layout): their sizes and contents enter the
    # fit cache's key, so a fit is not reused for other images under the same ids.
    train_files: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        # A split file (VisA's csv, Real-IAD's json) can list an image twice or in both splits: a
        # test image counted twice, or one the model trained on, moves every metric.
        where = f" ({self.extra['split_file']})" if "split_file" in self.extra else ""
        for name, ids in (("training", self.train.ids), ("test", self.test.images.ids)):
            if len(set(ids)) < len(ids):
                twice = next(i for k, i in enumerate(ids) if i in ids[:k])
                raise BenchError(f"{self.dataset}/{self.name}: {twice} is listed twice as a {name} image{where}; "
                                 "list each image once")
        train = set(self.train.ids)
        both = next((i for i in self.test.images.ids if i in train), None)
        if both is not None:
            raise BenchError(f"{self.dataset}/{self.name}: {both} is both a training and a test image{where}; "
                             "a test image the model trained on inflates every metric: fix the split")

    @property
    def has_masks(self) -> bool:
        """False when the dataset has no pixel ground truth: image metrics only."""
        return self.test.has_masks

    def split(self, domain: str = "") -> TestSplit:
        """The test split of ``domain``; "" is the dataset's own test split (``test``)."""
        if not domain:
            return self.test
        if domain not in self.domains:
            known = ", ".join(self.domains) if self.domains else "none: it has one test split"
            raise BenchError(f"{self.dataset}/{self.name} has no test domain '{domain}' (its domains: {known})")
        return self.domains[domain]
