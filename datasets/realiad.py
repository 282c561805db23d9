"""Real-IAD (Wang et al., CVPR 2024), single-view setting: the top camera C1 only, as TTAD.

Official source: https://realiad4ad.github.io/Real-IAD/ (access is requested on
https://huggingface.co/datasets/Real-IAD/Real-IAD); the official experiment code is
https://github.com/Tencent/AnomalyDetection_Real-IAD. ``--root`` is the folder that holds:

    <root>/realiad_1024/<category>/OK/<sample>/<category>_<nnnn>_OK_C<v>_<timestamp>.jpg
    <root>/realiad_1024/<category>/NG/<code>/<sample>/..._NG_C<v>_<timestamp>.jpg  (+ ..._mask.png)
    <root>/realiad_jsons_sv/<category>.json      single-view split (the official "RealIAD-C1")
    <root>/realiad_jsons/<category>.json         multi-view split (used, filtered to C1, only
                                                 when the single-view file is absent)

Format facts relied on (official README and ``datasets/explicit_dataset.py`` of the Tencent repo):

- Each JSON file is an object with the keys ``meta``, ``train`` and ``test``. ``meta`` holds
  ``prefix`` (the path of the category folder relative to the image folder, ``"<category>/"``),
  ``normal_class`` (``"OK"``) and ``pre_transform``. ``train`` and ``test`` are lists of samples
  with exactly the keys ``category``, ``anomaly_class``, ``image_path`` and ``mask_path``
  (``null`` for normal images).
- An image is ``<image folder>/<meta.prefix>/<image_path>`` (the official loader joins
  ``image_dir``, ``prefix`` and ``image_path``); masks likewise from ``mask_path``.
- Labels as the official loader: a test sample is normal when its ``mask_path`` is null or its
  ``anomaly_class`` equals ``normal_class``, else anomalous (an NG object whose defect is not
  visible in this view has no mask and counts as normal). Every train sample is normal.
- ``anomaly_class`` of a defect is a two-letter code (the folder name under ``NG/``): AK pit,
  BX deformation, CH abrasion, HS scratch, PS damage, QS missing parts, YW foreign objects,
  ZW contamination; it is kept as the defect type (normal images are ``good``).
- Masks are PNG; a pixel is a defect where its value is non-zero (the official pixel metric sets
  ``masks[masks > 0] = 1``).
- The camera is the ``C<v>`` field of the file name; C1 is the top view, C2-C5 the side views.
  The single-view JSONs hold C1 only; the loader keeps only C1 in either case.
- Image folders: ``realiad_1024`` (the official 1024 px release) is used when present, else
  ``realiad_512``, ``realiad_256`` (anomalib's resized copies) or ``realiad_raw`` (original size).

An object archive extracted into a folder of its own name (``realiad_1024/<cat>/<cat>/OK/...``)
is accepted too. Newer releases nest the JSON folders one level deeper (``realiad_jsons/realiad_jsons_sv/``, as
anomalib expects); both places are searched.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from .base import (Category, ImageSet, TestSplit, copies_note, image_files, mask_loader, require_root, split_notes,
                   standin, standin_notes)

CATEGORIES = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint", "mounts",
    "pcb", "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll", "regulator",
    "rolled_strip_base", "sim_card_set", "switch", "tape", "terminalblock", "toothbrush", "toy",
    "toy_brick", "transistor1", "u_block", "usb", "usb_adaptor", "vcpill", "wooden_beads",
    "woodstick", "zipper",
)
IMAGE_DIRS = ("realiad_1024", "realiad_512", "realiad_256", "realiad_raw")  # first present wins
TOP_VIEW = "C1"
SOURCE = ("Real-IAD is requested at https://huggingface.co/datasets/Real-IAD/Real-IAD "
          "(see https://realiad4ad.github.io/Real-IAD/)")
SAMPLE_KEYS = {"category", "anomaly_class", "image_path", "mask_path"}
_VIEW = re.compile(r"_(C\d)_")


def check_root(root: Path) -> Path:
    return require_root(root, "pass --root the Real-IAD folder that holds realiad_1024/ and "
                              f"realiad_jsons_sv/; {SOURCE}")


def _json_file(root: Path, category: str) -> tuple[Path, bool]:
    """The category's split file and whether it is the single-view one."""
    single = [root / "realiad_jsons_sv" / f"{category}.json",
              root / "realiad_jsons" / "realiad_jsons_sv" / f"{category}.json"]
    multi = [root / "realiad_jsons" / f"{category}.json",
             root / "realiad_jsons" / "realiad_jsons" / f"{category}.json"]
    for path in single:
        if path.is_file():
            return path, True
    for path in multi:
        if path.is_file():
            return path, False
    raise BenchError(f"{single[0]}: no such file (the Real-IAD single-view split of {category}); "
                     f"extract realiad_jsons.zip into {root}; {SOURCE}")


def _read_json(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: not a Real-IAD split file ({exc}); extract realiad_jsons.zip again") from None
    ok = isinstance(info, dict) and all(k in info for k in ("meta", "train", "test")) \
        and isinstance(info["meta"], dict) and all(
            isinstance(info[s], list) and all(isinstance(x, dict) and SAMPLE_KEYS <= set(x) for x in info[s])
            for s in ("train", "test"))
    if not ok:
        raise BenchError(f"{path}: not a Real-IAD split file (needs meta, train and test lists of samples "
                         f"with {', '.join(sorted(SAMPLE_KEYS))}); extract realiad_jsons.zip again")
    for split in ("train", "test"):
        for k, s in enumerate(info[split]):  # a null or a number would fail later, without a file named
            what = ("image_path must be a path" if not isinstance(s["image_path"], str) or not s["image_path"]
                    else "" if isinstance(s["mask_path"], (str, type(None))) else "mask_path must be a path or null")
            if what:
                raise BenchError(f"{path}: {split} entry {k} ({json.dumps(s)}): {what}; fix the entry or extract "
                                 "realiad_jsons.zip again")
    return info


def view_of(image_path: str) -> str | None:
    """The camera (``C1``..``C5``) in a Real-IAD file name, None when there is none."""
    m = _VIEW.search(Path(image_path).name)
    return m.group(1) if m else None


def load_category(root: Path, category: str) -> Category:
    root = check_root(root)
    json_path, single_view = _json_file(root, category)
    info = _read_json(json_path)
    meta = info["meta"]
    prefix = str(meta.get("prefix") or "")
    normal_class = str(meta.get("normal_class") or "OK")
    # the protocol trains on normal samples only (the official splits' train lists hold OK samples only)
    ng = next(((k, s) for k, s in enumerate(info["train"]) if str(s["anomaly_class"]) != normal_class), None)
    if ng is not None:
        k, s = ng
        raise BenchError(f"{json_path}: anomalous samples in the train split of {category} (first: train entry {k}, "
                         f"{s['image_path']}, anomaly_class {s['anomaly_class']}); the harness trains on normal "
                         f"({normal_class}) samples only: Real-IAD's noisy-training splits (realiad_jsons_fuiad_*) "
                         "are not supported, use realiad_jsons_sv/ or realiad_jsons/")
    image_root = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if image_root is None:
        raise BenchError(f"{root / IMAGE_DIRS[0]}: no such folder (the Real-IAD 1024 px images); "
                         f"extract {category}.zip into {root / IMAGE_DIRS[0]}; {SOURCE}")
    base = image_root / prefix
    first = info["train"][0]["image_path"] if info["train"] else None
    if first and not (base / first).is_file() and (base / category / first).is_file():
        base = base / category  # an object archive extracted into its own folder: <cat>/<cat>/OK/...

    def top(samples: list[dict]) -> list[dict]:
        return [s for s in samples if view_of(s["image_path"]) == TOP_VIEW]

    train, test = top(info["train"]), top(info["test"])
    if not train or not test:
        which = "train" if not train else "test"
        raise BenchError(f"{json_path}: no {TOP_VIEW} (top view) images in its {which} list; "
                         f"is this the Real-IAD split of {category}?")

    def existing(rel: str, what: str) -> Path:
        path = base / rel
        if not path.is_file():
            raise BenchError(f"{path}: {what} listed in {json_path} is missing; extract {category}.zip "
                             f"into {image_root} again; {SOURCE}")
        return path

    train_paths = [existing(s["image_path"], "image") for s in train]
    test_paths = [existing(s["image_path"], "image") for s in test]
    labels, types, mask_paths = [], [], []
    for s in test:
        normal = s["mask_path"] is None or s["anomaly_class"] == normal_class
        if not normal and (not s["mask_path"] or (base / s["mask_path"]).is_dir()):
            what = "a folder" if s["mask_path"] else "empty"
            raise BenchError(f"{json_path}: the test entry of {s['image_path']} ({s['anomaly_class']}) has mask_path "
                             f"{s['mask_path']!r}, {what}, not its mask file; fix the entry or extract "
                             "realiad_jsons.zip again")
        labels.append(0 if normal else 1)
        types.append("good" if normal else str(s["anomaly_class"]))
        mask_paths.append(None if normal else existing(s["mask_path"], "mask"))

    said: set[str] = set()  # suspicious inputs are said once per category
    return Category(
        dataset="realiad",
        name=category,
        train=ImageSet.from_paths([s["image_path"] for s in train], train_paths, said),
        test=TestSplit(ImageSet.from_paths([s["image_path"] for s in test], test_paths, said),
                       np.array(labels, dtype=np.int64), types,
                       mask_loader(test_paths, mask_paths, nonzero=True, said=said),
                       source=standin(root), files=image_files(test_paths, mask_paths)),
        root=root,
        extra={"view": TOP_VIEW, "split_file": str(json_path), "single_view_json": single_view,
               "images": image_root.name},
        train_files=tuple(train_paths),  # ids are the json's paths, not files under root / category
        notes=split_notes(f"{category} ({json_path})", np.array(labels), add_anomalous="its test list has no "
                          f"sample with a mask in view {TOP_VIEW}: use the official split",
                          add_normal=f"its test list has no normal sample in view {TOP_VIEW}: use the official split")
        + copies_note(category, train_paths, test_paths, root) + standin_notes(root, "realiad"),
    )
