"""VisA (Zou et al., ECCV 2022) in its released layout, split by the official 1-class csv.

Official source: https://github.com/amazon-science/spot-diff (the tarball
https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar). ``--root`` is the
extracted folder:

    <root>/split_csv/1cls.csv
    <root>/<object>/Data/Images/Normal/0000.JPG
    <root>/<object>/Data/Images/Anomaly/000.JPG
    <root>/<object>/Data/Masks/Anomaly/000.png
    <root>/<object>/image_anno.csv                (optional here: the defect names)

Format facts relied on (spot-diff's ``split_csv/1cls.csv`` and ``prepare_data.py``):

- ``1cls.csv`` has the header ``object,split,label,image,mask``; ``split`` is ``train`` or
  ``test``, ``label`` is ``normal`` or ``anomaly``; ``image`` and ``mask`` are paths relative to
  the root (``candle/Data/Images/Normal/0836.JPG``); ``mask`` is empty for normal images.
- Per object it gives train = the normal training images, test = normal + 100 anomalous
  (e.g. candle 900 / 100 + 100, capsules 542 / 60 + 100, cashew 450 / 50 + 100; 10,821 rows).
- Masks are PNG at the image's size whose defect pixels hold a non-zero value (small label
  values, not 255: spot-diff binarises with ``mask != 0``); this loader does the same.
- ``<object>/image_anno.csv`` (header ``image,label,mask``, ``image`` as in ``1cls.csv``) names
  the defect of each anomalous image (e.g. ``bent``, ``"melt, scratch"``); when the file is there
  its label is the defect type, else ``anomaly``. Normal images are ``good``.

The prepared copy that spot-diff's ``prepare_data.py`` writes (``VisA_pytorch/1cls``, MVTec
layout, masks already 0 / 255) loads with ``--dataset folder`` instead.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from .base import Category, ImageSet, TestSplit, copies_note, image_files, mask_loader, require_root, split_notes

CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)
SPLIT_FILE = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")
SOURCE = ("VisA is https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar "
          "(see https://github.com/amazon-science/spot-diff)")


def check_root(root: Path) -> Path:
    return require_root(root, "pass --root the extracted VisA folder that holds split_csv/ and the 12 "
                              f"object folders; {SOURCE}")


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a spreadsheet's byte-order mark is no header
            reader = csv.DictReader(f)
            header = tuple(reader.fieldnames or ())
            rows, short = [], None
            for r in reader:
                # a truncated file's last line ('candle,test,normal'): its missing fields are None
                if short is None and any(not r.get(c) for c in COLUMNS[:4]):
                    short = reader.line_num, r
                rows.append(r)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchError(f"{path}: cannot read this csv ({exc}); extract the VisA tarball again") from None
    if header[:len(COLUMNS)] != COLUMNS:
        raise BenchError(f"{path}: header is {','.join(header)} but VisA's split csv has "
                         f"{','.join(COLUMNS)}; extract the VisA tarball again")
    if short is not None:
        n, r = short
        missing = next(c for c in COLUMNS[:4] if not r.get(c))
        raise BenchError(f"{path}: line {n} ({','.join(r[c] for c in COLUMNS if r.get(c) is not None)}) has no "
                         f"{missing} field (a row is {','.join(COLUMNS)}): the file is truncated or the line "
                         "damaged; extract the VisA tarball again or repair that line")
    return rows


def _defect_names(root: Path, category: str) -> dict[str, str]:
    anno = root / category / "image_anno.csv"
    if not anno.is_file():
        return {}
    try:
        with anno.open(newline="", encoding="utf-8") as f:
            return {r["image"]: r["label"] for r in csv.DictReader(f) if r.get("image") and r.get("label")}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError):
        return {}  # defect names are informative only; labels come from 1cls.csv


def load_category(root: Path, category: str) -> Category:
    root = check_root(root)
    split_file = root / SPLIT_FILE
    if not split_file.is_file():
        raise BenchError(f"{split_file}: no such file (VisA's 1-class split); pass --root the extracted "
                         f"VisA folder, which holds split_csv/1cls.csv; {SOURCE}")
    every = _rows(split_file)
    # a row of a misspelt object ('Candle') would be left out of its object's split without a word
    unknown = next(((n, r) for n, r in enumerate(every, 2) if r["object"] not in CATEGORIES), None)
    if unknown is not None:
        n, r = unknown
        raise BenchError(f"{split_file}: line {n} ({','.join(str(v) for v in r.values())}) has object "
                         f"'{r['object']}', not a VisA object ({', '.join(CATEGORIES)}); fix that row")
    rows = [r for r in every if r["object"] == category]
    if not rows:
        raise BenchError(f"{split_file}: no rows for object '{category}'; VisA's objects are "
                         f"{', '.join(CATEGORIES)}")
    bad = [r for r in rows if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly")]
    if bad:
        raise BenchError(f"{split_file}: row {bad[0]} has split '{bad[0]['split']}' / label '{bad[0]['label']}'"
                         "; expected train|test and normal|anomaly")

    def existing(rel: str, what: str) -> Path:
        path = root / rel
        if not path.is_file():
            raise BenchError(f"{path}: {what} listed in {split_file} is missing; extract the VisA "
                             f"tarball into {root} again; {SOURCE}")
        return path

    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    if not train or not test:  # the 1-class csv lists both for every object
        which, split = ("training", "train") if not train else ("test", "test")
        raise BenchError(f"{split_file}: no {which} images of {category} (no row with split {split}); "
                         "extract the VisA tarball again, or list them in the csv")
    if any(r["label"] != "normal" for r in train):
        raise BenchError(f"{split_file}: anomalous images in the train split of {category}; "
                         "this is not the 1-class split")
    names = _defect_names(root, category)
    train_paths = [existing(r["image"], "image") for r in train]
    test_paths = [existing(r["image"], "image") for r in test]
    labels = np.array([r["label"] == "anomaly" for r in test], dtype=np.int64)
    types = ["good" if r["label"] == "normal" else names.get(r["image"], "anomaly") for r in test]
    mask_paths: list[Path | None] = []
    for r in test:
        if r["label"] == "normal":
            mask_paths.append(None)
        elif not r["mask"]:
            raise BenchError(f"{split_file}: anomalous image {r['image']} has no mask; "
                             "extract the VisA tarball again")
        else:
            mask_paths.append(existing(r["mask"], "mask"))

    said: set[str] = set()  # suspicious inputs are said once per category
    return Category(
        dataset="visa",
        name=category,
        train=ImageSet.from_paths([r["image"] for r in train], train_paths, said),
        test=TestSplit(ImageSet.from_paths([r["image"] for r in test], test_paths, said), labels, types,
                       mask_loader(test_paths, mask_paths, nonzero=True, said=said),
                       files=image_files(test_paths, mask_paths)),
        root=root,
        extra={"split_file": str(split_file)},
        train_files=tuple(train_paths),  # ids are the csv's paths, not files under root / category
        notes=split_notes(f"{category} ({split_file})", labels,
                          add_anomalous=f"list anomalous test images of {category} in {split_file}",
                          add_normal=f"list normal test images of {category} in {split_file}")
        + copies_note(category, train_paths, test_paths, root),
    )
