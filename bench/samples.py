"""What a row keeps besides its metrics, so statistics and plots never re-run a method.

Per-image columns (every test image of the cell, in the test split's order):

    image_ids     list<string>   the dataset's image ids
    image_labels  list<int8>     1 = anomalous
    image_scores  list<float64>  the method's image scores

Anomaly-map samples: for a few test images per cell, the method's map, the ground truth and the
input image on the map's grid, downsampled to at most ``map_size`` px (area averaging), maps in
float16. They are too large for a row (tables read every row), so the runner hands them over as
packed bytes under ``SAMPLES_KEY`` and ``RunStore.write`` stores them in a side file next to the
part (``parts/<cell_id>.maps.npz``, written before the part, so a part never lacks its side file).
The row keeps ``map_sample_ids``; a part whose row has none has no side file. The images are
chosen by a seeded draw that depends only on the category's test ids, so every method, condition
and seed of a category shows the same images.

A side file that does not unpack (torn by a full disk or a partial copy) is one line, never a
traceback: readers leave its maps out with a warning (:class:`UnreadableSamples`); a resuming grid
moves its part and it aside and runs the cell again (:func:`side_file_problem`, called by
``RunStore.quarantine_bad_parts``).
"""
from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .methods.errors import BenchError
from .methods.persist import stable_hash

SAMPLES_KEY = "map_samples"  # row key of the packed samples (bytes); never a Parquet column
SIDE_SUFFIX = ".maps.npz"
PER_IMAGE = ("image_ids", "image_labels", "image_scores")
MEMBERS = ("ids.npy", "maps.npy", "images.npy", "masks.npy")  # what ``pack`` writes


class UnreadableSamples(BenchError, ValueError):
    """A side file (or packed bytes) that does not unpack; ``reason`` is the short why."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: unreadable map samples ({reason}); rerun its grid (bench grid with the same "
                         "--out moves the part aside and runs the cell again)")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    elif isinstance(exc, KeyError):
        text = f"no member {exc.args[0]}" if exc.args else text
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def per_image_columns(ids: Sequence[str], labels: np.ndarray, scores: np.ndarray) -> dict[str, list]:
    return {
        "image_ids": [str(i) for i in ids],
        "image_labels": [int(v) for v in np.asarray(labels).reshape(-1)],
        "image_scores": [float(v) for v in np.asarray(scores, dtype=np.float64).reshape(-1)],
    }


def pick(ids: Sequence[str], labels: np.ndarray, k: int) -> np.ndarray:
    """``k`` test indices, seeded by the ids: mostly anomalous images (what a map is for), one
    normal image when k >= 2 (what a false alarm looks like); sorted."""
    labels = np.asarray(labels).reshape(-1)
    if k <= 0 or len(labels) == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(int(stable_hash(list(map(str, ids)), 8), 16))
    anomalous, normal = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_normal = min(len(normal), 1 if k >= 2 else 0, k)
    n_anomalous = min(len(anomalous), k - n_normal)
    n_normal = min(len(normal), k - n_anomalous)  # top up with normals when anomalies run out
    chosen = np.concatenate([rng.choice(anomalous, n_anomalous, replace=False),
                             rng.choice(normal, n_normal, replace=False)])
    return np.sort(chosen.astype(np.int64))


def _shrink(arr: np.ndarray, side: int, mode: str) -> np.ndarray:
    """(H, W[, 3]) -> at most side x side, area-averaged (float maps and images alike)."""
    h, w = arr.shape[:2]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return arr
    if mode == "F":
        return np.asarray(Image.fromarray(arr.astype(np.float32), "F").resize(size, Image.BOX))
    return np.asarray(Image.fromarray(arr).resize(size, Image.BOX))


def _float16(x: np.ndarray) -> np.ndarray:
    info = np.finfo(np.float16)
    return np.clip(x, info.min, info.max).astype(np.float16)


def pack(ids: Sequence[str], maps: np.ndarray, masks: np.ndarray | None, images: Sequence[np.ndarray],
         side: int) -> bytes:
    """The samples as compressed npz bytes. ``maps`` (k, H, W) and ``masks`` (k, H, W) on the
    method's grid; ``images`` (k) uint8 RGB at any size (resized to the map's shape)."""
    h, w = maps.shape[1:]
    out_maps, out_masks, out_images = [], [], []
    for i in range(len(ids)):
        out_maps.append(_float16(_shrink(np.asarray(maps[i], np.float32), side, "F")))
        img = np.asarray(images[i])
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        out_images.append(_shrink(img, side, "RGB"))
        if masks is not None:
            # a defect stays visible after shrinking: a kept pixel is defective when any part of
            # it is (a thin crack covers less than a quarter of every shrunk pixel)
            out_masks.append(_shrink(masks[i].astype(np.float32), side, "F") > 0)
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.array([str(i) for i in ids]), maps=np.stack(out_maps),
                        images=np.stack(out_images),
                        masks=np.stack(out_masks) if out_masks else np.zeros((0,), bool))
    return buf.getvalue()


@dataclass(frozen=True)
class MapSamples:
    ids: list[str]
    maps: np.ndarray  # (k, h, w) float16
    images: np.ndarray  # (k, h, w, 3) uint8: the method's input (corrupted) on the map's grid
    masks: np.ndarray | None  # (k, h, w) bool, None without pixel ground truth

    def index(self, image_id: str) -> int:
        return self.ids.index(image_id)


def unpack(data: bytes, source: object = "map samples") -> MapSamples:
    """The samples ``pack`` wrote; :class:`UnreadableSamples` (naming ``source``) for torn bytes."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            masks = z["masks"]
            return MapSamples([str(i) for i in z["ids"]], z["maps"], z["images"],
                              masks if masks.ndim == 3 else None)
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib, numpy and EOF errors for torn bytes
        raise UnreadableSamples(source, _reason(exc)) from None


def read(path: str | os.PathLike) -> MapSamples:
    """The side file at ``path``; :class:`UnreadableSamples` when it cannot be read or unpacked."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableSamples(path, _reason(exc)) from None
    if not data:
        raise UnreadableSamples(path, "the file is empty")
    return unpack(data, path)


def side_file_problem(path: str | os.PathLike) -> str | None:
    """Why the side file at ``path`` would not unpack, or None when it looks whole.

    Cheap, for every part on each resume: it reads the zip's central directory (the end of the
    file, so a truncated file fails here: "File is not a zip file"), checks that the members
    ``pack`` writes are all listed and lie inside the file, and opens each member, which reads
    only its 30-byte local header and checks its signature and name (a zero-filled stretch from a
    partial sync fails here). It does not inflate the data or check its CRC (``testzip``): that
    reads every map of every part, and damage inside a member's data with an intact directory is
    rare; ``unpack`` still turns it into one line when a plot meets it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return "the file is empty"
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename: info for info in zf.infolist()}
            missing = [m for m in MEMBERS if m not in infos]
            if missing:
                return f"no member {', '.join(missing)}"
            for info in infos.values():
                if info.header_offset + info.compress_size > size:
                    return f"member {info.filename} runs past the end of the file"
                zf.open(info).close()
    except FileNotFoundError:
        return "the file is missing"
    except Exception as exc:  # noqa: BLE001 - zipfile raises several types for torn files
        return _reason(exc)
    return None
