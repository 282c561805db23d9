"""Loader for the MVTec AD folder layout (also BTAD, MPDD and any folder laid out the same way).

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect type>/*.png
    <root>/<category>/ground_truth/<defect type>/<stem>_mask.png

The real folders of the three datasets this serves (pinned in tests/test_loaders.py):

- MVTec AD (https://www.mvtec.com/company/research/datasets/mvtec-ad, downloaded by hand):
  15 categories ``MVTEC_CATEGORIES``; PNG images; masks ``ground_truth/<type>/<stem>_mask.png``
  with 0 / 255 values.
- BTAD (BeanTech, http://avires.dimi.uniud.it/papers/btad/btad.zip, which unpacks to
  ``BTech_Dataset_transformed/``): categories ``01``, ``02``, ``03``; the normal folders are
  ``train/ok`` and ``test/ok``, the defective ones ``test/ko`` with masks
  ``ground_truth/ko/<stem>.png`` (or ``.bmp``); images are ``.bmp`` or ``.png`` depending on the
  product. ``ok`` is read as the normal class exactly like ``good``.
- MPDD (https://github.com/stepanje/MPDD): 6 categories ``MPDD_CATEGORIES``, MVTec layout
  (``train/good``, ``test/good``, ``test/<type>``, ``ground_truth/<type>/<stem>_mask.png``).
"""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from .base import (Category, ImageSet, TestSplit, copies_note, entries, image_files, mask_loader, split_notes,
                   standin, standin_notes)

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
BTAD_CATEGORIES = ("01", "02", "03")
# MVTec AD as published (Bergmann et al., CVPR 2019, Table 1, and the released folders): per
# category the image side (square), colour channels, training images, normal test images and the
# test images of each defect type. 3,629 training and 1,725 test images (467 normal). The timing
# stand-in (``bench.datasets.standins mvtec_ad``) writes exactly this much work.
MVTEC_SHAPE: dict[str, tuple[int, int, int, int, dict[str, int]]] = {
    "bottle": (900, 3, 209, 20, {"broken_large": 20, "broken_small": 22, "contamination": 21}),
    "cable": (1024, 3, 224, 58, {"bent_wire": 13, "cable_swap": 12, "combined": 11, "cut_inner_insulation": 14,
                                 "cut_outer_insulation": 10, "missing_cable": 12, "missing_wire": 10,
                                 "poke_insulation": 10}),
    "capsule": (1000, 3, 219, 23, {"crack": 23, "faulty_imprint": 22, "poke": 21, "scratch": 23, "squeeze": 20}),
    "carpet": (1024, 3, 280, 28, {"color": 19, "cut": 17, "hole": 17, "metal_contamination": 17, "thread": 19}),
    "grid": (1024, 1, 264, 21, {"bent": 12, "broken": 12, "glue": 11, "metal_contamination": 11, "thread": 11}),
    "hazelnut": (1024, 3, 391, 40, {"crack": 18, "cut": 17, "hole": 18, "print": 17}),
    "leather": (1024, 3, 245, 32, {"color": 19, "cut": 19, "fold": 17, "glue": 19, "poke": 18}),
    "metal_nut": (700, 3, 220, 22, {"bent": 25, "color": 22, "flip": 23, "scratch": 23}),
    "pill": (800, 3, 267, 26, {"color": 25, "combined": 17, "contamination": 21, "crack": 26, "faulty_imprint": 19,
                               "pill_type": 9, "scratch": 24}),
    "screw": (1024, 1, 320, 41, {"manipulated_front": 24, "scratch_head": 24, "scratch_neck": 25,
                                 "thread_side": 23, "thread_top": 23}),
    "tile": (840, 3, 230, 33, {"crack": 17, "glue_strip": 18, "gray_stroke": 16, "oil": 18, "rough": 15}),
    "toothbrush": (1024, 3, 60, 12, {"defective": 30}),
    "transistor": (1024, 3, 213, 60, {"bent_lead": 10, "cut_lead": 10, "damaged_case": 10, "misplaced": 10}),
    "wood": (1024, 3, 247, 19, {"color": 8, "combined": 11, "hole": 10, "liquid": 10, "scratch": 21}),
    "zipper": (1024, 1, 240, 32, {"broken_teeth": 19, "combined": 16, "fabric_border": 17, "fabric_interior": 16,
                                  "rough": 17, "split_teeth": 18, "squeezed_teeth": 16}),
}
MPDD_CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
# Where each dataset comes from: named in the error when its root is missing.
SOURCES = {
    "mvtec_ad": "MVTec AD is downloaded by hand from https://www.mvtec.com/company/research/datasets/mvtec-ad",
    "btad": "BTAD is http://avires.dimi.uniud.it/papers/btad/btad.zip (its BTech_Dataset_transformed/ folder)",
    "mpdd": "MPDD is linked from https://github.com/stepanje/MPDD",
}
NORMAL_NAMES = ("good", "ok")  # the normal folder: MVTec AD / MPDD, then BTAD
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MASK_SUFFIXES = ("_mask.png", ".png", "_mask.bmp", ".bmp")  # MVTec AD, then BTAD / MPDD styles


def _images(folder: Path) -> list[Path]:
    """The image files of one folder; anything else there that is not hidden is an error (a file
    the harness would skip without a word changes the split the rows describe)."""
    found = entries(folder)
    for p in found:
        if p.is_dir():
            raise BenchError(f"{p}: a folder inside {folder}; images in subfolders are not read: move "
                             f"them up into {folder.name}/ or the folder out of the dataset")
        if not p.is_file():
            what = "a broken link" if p.is_symlink() else "not a regular file"
            raise BenchError(f"{p}: {what}; restore the file it points to or remove it")
    bad = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise BenchError(
            f"{bad[0]}: not an image file (expected {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "move it out of the dataset folder"
        )
    return found


def _unusable_mask(image: Path, folder: Path, expected: Path) -> str:
    """Why a defect image has no mask although a file of its name is in ``folder`` (a mask in a format
    not read, a broken link), as one line naming that file; "" when there is none."""
    for p in (entries(folder) if folder.is_dir() else []):
        if p.stem not in (image.stem, image.stem + "_mask") or p.is_dir():
            continue
        if p.is_symlink() and not p.exists():
            return (f"{p}: the mask of {image} is a broken link: it points to {os.readlink(p)}, which does not "
                    "exist; restore that file or replace the link with the mask")
        if p.suffix.lower() in (".jpg", ".jpeg"):
            return (f"{p}: the mask of {image} is a JPEG file: JPEG blurs the defect's edge into faint non-zero "
                    f"pixels, which all count as defect; binarise the masks and save them as PNG ({expected.name})")
        return (f"{p}: the mask of {image} is a {p.suffix or 'suffix-less'} file, which is not read as a mask "
                f"(masks are {', '.join('<stem>' + s for s in MASK_SUFFIXES)}); convert it to PNG as {expected}")
    return ""


def categories_in(root: Path) -> list[str]:
    """Category folders under ``root`` that look like the MVTec layout."""
    return [p.name for p in entries(root) if any((p / "train" / n).is_dir() for n in NORMAL_NAMES)]


def skipped_folders(root: Path, categories: list[str]) -> list[str]:
    """One line per folder under ``root`` that is not read as a category (no train/good/)."""
    out = []
    for p in entries(root):
        if p.is_dir() and p.name not in categories:
            what = "empty" if not any(p.iterdir()) else "no train/good/ (or train/ok/) inside"
            out.append(f"{p}: skipped, not a category folder ({what}); the grid runs "
                       f"{', '.join(categories)}")
    return out


def check_root(root: Path, dataset: str) -> Path:
    root = Path(root).expanduser()
    holds = "the category folders" if dataset == "folder" else f"the {dataset} category folders"
    if not root.exists():
        where = f"; {SOURCES[dataset]}" if dataset in SOURCES else ""
        raise BenchError(f"dataset root {root} does not exist: pass --root the folder that holds {holds}{where}")
    if not root.is_dir():
        raise BenchError(f"dataset root {root} is not a directory: pass --root the folder that holds {holds}")
    return root


def load_category(root: Path, category: str, dataset: str = "mvtec_ad") -> Category:
    root = check_root(root, dataset)
    base = root / category
    if not base.is_dir():  # macOS writes names decomposed (NFD): 'café' typed composed (NFC) names that folder
        nfc = unicodedata.normalize("NFC", category)
        base = next((p for p in entries(root) if p.is_dir() and unicodedata.normalize("NFC", p.name) == nfc), base)
    normal = next((n for n in NORMAL_NAMES if (base / "train" / n).is_dir()), NORMAL_NAMES[0])
    train_dir, test_dir = base / "train" / normal, base / "test"
    if not base.is_dir():
        found = categories_in(root)
        hint = f"categories found there: {', '.join(found)}" if found else "no category folders found there"
        raise BenchError(f"{base}: no such category folder ({hint}); check --root and --categories")
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise BenchError(
            f"{base}: not in the MVTec AD layout (needs train/good/ and test/<type>/ with "
            "ground_truth/<type>/<stem>_mask.png); rearrange the folder or pick the matching --dataset"
        )
    train_files = _images(train_dir)
    if not train_files:
        raise BenchError(f"{train_dir}: no training images; put the normal images of {category} there")

    test_files: list[Path] = []
    types: list[str] = []
    for entry in entries(test_dir):  # .ipynb_checkpoints is no type
        if not entry.is_dir():
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                raise BenchError(f"{entry}: an image directly in test/ has no defect type; move it into "
                                 f"test/{normal}/ or test/<defect type>/")
            continue
        if entry.name.lower() in NORMAL_NAMES and entry.name != normal:
            # read as a defect type, its images would need masks or count as anomalous
            raise BenchError(f"{entry}: the normal folders differ, train/{normal}/ but test/{entry.name}/; "
                             f"rename one so that both are {normal}/ (or both {entry.name}/)")
        files = _images(entry)
        stems: dict[str, Path] = {}
        for f in files:
            if f.stem in stems:  # x.png and x.jpg: one image counted twice, both read with one mask
                raise BenchError(f"{stems[f.stem]} and {f}: the same image stored twice (one stem); it would "
                                 "count twice, read with one mask: remove one of them")
            stems[f.stem] = f
        test_files += files
        types += [entry.name] * len(files)
    if not test_files:
        raise BenchError(f"{test_dir}: no test images; expected test/good/ and test/<defect type>/")
    labels = np.array([t != normal for t in types], dtype=np.int64)
    notes = split_notes(f"{category} ({test_dir})", labels, normal) + copies_note(category, train_files, test_files, base)

    # No ground_truth/ at all: a dataset with image labels only (many inspection sets are).
    # A ground_truth/ folder that lacks one defect image's mask is a mistake, named below.
    gt_dir = base / "ground_truth"
    has_masks = gt_dir.is_dir()
    if not has_masks and labels.any():
        notes.append(f"{category}: no ground_truth/ folder in {base}, so image labels only: image "
                     "metrics are computed, the pixel metrics (pixel AUROC, AUPRO, pixel AP) are NaN "
                     "in its rows (pixel_ground_truth = False)")
    mask_paths: list[Path | None] = []
    masks: dict[str, dict[str, Path]] = {}  # defect type -> lower-case file name -> mask file
    for path, t in zip(test_files, types):
        if t == normal or not has_masks:
            mask_paths.append(None)
            continue
        if t not in masks:
            folder = gt_dir / t
            masks[t] = {p.name.lower(): p for p in entries(folder) if p.is_file()} if folder.is_dir() else {}
        candidates = [gt_dir / t / (path.stem + s) for s in MASK_SUFFIXES]
        # the suffix in any case (x_mask.PNG), as image suffixes; the stem as the image's
        found = next((m for c in candidates if (m := masks[t].get(c.name.lower())) and m.name.startswith(path.stem)),
                     None)
        if found is None:
            expected = candidates[1] if dataset == "btad" else candidates[0]  # BTAD: ground_truth/ko/<stem>.png
            raise BenchError(_unusable_mask(path, gt_dir / t, expected) or (
                f"{path}: defect image without a mask (expected {expected}); add the mask "
                "or move the image out of test/"))
        mask_paths.append(found)

    def ids(files: list[Path]) -> list[str]:
        return [str(p.relative_to(base)) for p in files]

    said: set[str] = set()  # suspicious inputs are said once per category
    test_images = ImageSet.from_paths(ids(test_files), test_files, said)

    return Category(
        dataset=dataset,
        name=category,
        train=ImageSet.from_paths(ids(train_files), train_files, said),
        # a stand-in's rows say so in domain_source ("" for real data, as before)
        test=TestSplit(test_images, labels, types, mask_loader(test_files, mask_paths, said=said), has_masks=has_masks,
                       source=standin(root), files=image_files(test_files, mask_paths)),
        root=root,
        notes=notes + standin_notes(root, dataset),
        # the fit key reads root / name / id: not this folder where its name is the NFD form of the one asked for
        train_files=tuple(train_files) if base.name != category else (),
    )
