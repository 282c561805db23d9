"""PACS (Li et al., ICCV 2017): seven classes in four domains, GNL's style-shift benchmark; image metrics only.

Official source: https://domaingeneralization.github.io/ (the 227x227 ``kfold`` images and the
``*_kfold.txt`` split files). ``--root`` is the folder that holds the four domain folders, or a
``kfold/`` folder holding them::

    <root>[/kfold]/art_painting|cartoon|photo|sketch/<class>/*.jpg|png
    <root>[/pacs_label]/<domain>_train_kfold.txt, <domain>_crossval_kfold.txt, <domain>_test_kfold.txt

Split files are optional; their lines are ``<domain>/<class>/<file> <label>`` with labels 1..7 in
the order of ``CLASSES`` (a path may carry any prefix, e.g. an absolute ``.../kfold/``; its last
three parts name the image).

Protocol (GNL, Cao et al. 2023, one-vs-all): category = the normal class. Photo is the
in-distribution domain and the only one training sees: train = Photo's training images of the
normal class; the ``photo`` test domain = Photo's test split *minus every image of Photo's
training split* (the released ``photo_test_kfold.txt`` lists the whole domain, training images
included, so without this a model would be tested on the images it trained on: what remains is
Photo's held-out part, ``photo_crossval_kfold.txt``'s images). Without split files, Photo's train
split is each class's images minus a seeded ``HELD_OUT`` share (10 %, about the released
crossval's share; one image at least of a class that has two), which is its test split. The other domains are all test: ``<domain>_test_kfold.txt``
when present, else every image of the domain. In every domain an image of another class is
anomalous (its class is its defect type). GNL's own code trained and tested on a Kaggle copy's
train/val folders; the released split files are used here instead. Images stay at their native
227x227 px.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..methods.errors import BenchError
from .base import Category, ImageSet, LazySplits, TestSplit, entries, one_vs_rest, standin_notes, standin_source

DOMAINS = ("photo", "art_painting", "cartoon", "sketch")  # in-distribution first
CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")  # label 1..7
ID_DOMAIN = DOMAINS[0]
SOURCE = "https://domaingeneralization.github.io/ (Li et al. 2017: the kfold images and their *_kfold.txt files)"
SPLIT_DIRS = (".", "pacs_label", "kfold")
SUFFIXES = (".jpg", ".jpeg", ".png")
HELD_OUT = 0.1  # share of each Photo class held out for testing when there are no split files
SPLIT_SEED = 0

Entry = tuple[str, str]  # (image path relative to the image root, "<domain>/<class>/<file>"; its class)


def image_root(root: Path) -> Path | None:
    """The folder that holds the domain folders: ``root`` or ``root/kfold``."""
    for candidate in (root, root / "kfold"):
        if all((candidate / d).is_dir() for d in DOMAINS):
            return candidate
    return None


def check_root(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir() or image_root(root) is None:
        first = next((d for d in DOMAINS if not (root / d).is_dir()), DOMAINS[0])
        raise BenchError(f"{root / first}: no such folder (nor {root / 'kfold' / first}); get PACS from {SOURCE} "
                         f"and extract it so that {root} holds {', '.join(DOMAINS)} (or kfold/ with them)")
    return root


def split_file(root: Path, domain: str, split: str) -> Path | None:
    """``<domain>_<split>_kfold.txt`` (split: train, crossval, test) where PACS keeps it, or None."""
    for where in SPLIT_DIRS:
        path = root / where / f"{domain}_{split}_kfold.txt"
        if path.is_file():
            return path
    return None


def read_split_file(path: Path, images: Path) -> list[Entry]:
    """A split file's (image, class) entries; each image must exist under ``images``."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        rel = Path(parts[0]).parts[-3:] if parts else ()
        if len(parts) != 2 or len(rel) != 3 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(CLASSES):
            raise BenchError(f"{path}:{n}: expected '<domain>/<class>/<file> <label 1-{len(CLASSES)}>' "
                             f"(e.g. photo/dog/056_0001.jpg 1), got {line.strip()!r}")
        cls = CLASSES[int(parts[1]) - 1]
        if rel[1] != cls:
            raise BenchError(f"{path}:{n}: label {parts[1]} is {cls}, but the image is in the folder {rel[1]}")
        entry = "/".join(rel)
        if not (images / entry).is_file():
            raise BenchError(f"{images / entry}: listed in {path} but no such file; extract PACS from {SOURCE} again")
        out.append((entry, cls))
    return out


def write_split_files(root: Path, lists: dict[tuple[str, str], list[str]]) -> list[Path]:
    """The split files as released, ``read_split_file``'s inverse: for each (domain, split) the
    entries ``<domain>/<class>/<file>`` into ``root/pacs_label/<domain>_<split>_kfold.txt``, one
    line each with the class's 1-based label. Returns the files written, in ``lists``' order."""
    (root / "pacs_label").mkdir(parents=True, exist_ok=True)
    written = []
    for (domain, split), rels in lists.items():
        lines = [f"{e} {CLASSES.index(Path(e).parts[-2]) + 1}" for e in rels]
        path = root / "pacs_label" / f"{domain}_{split}_kfold.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    return written


def list_domain(images: Path, domain: str) -> list[Entry]:
    """Every image of a domain folder, class by class, sorted by name."""
    out = []
    for cls in CLASSES:
        folder = images / domain / cls
        if not folder.is_dir():
            raise BenchError(f"{folder}: no such folder; PACS has the classes {', '.join(CLASSES)} in every domain")
        out += [(f"{domain}/{cls}/{p.name}", cls) for p in entries(folder) if p.suffix.lower() in SUFFIXES]
    return out


def photo_split(root: Path, images: Path) -> tuple[list[Entry], list[Entry], str]:
    """Photo's (train, test, what they are): the split files less the training images, or a seeded
    held-out share of each class."""
    train_file, test_file = split_file(root, ID_DOMAIN, "train"), split_file(root, ID_DOMAIN, "test")
    if train_file is not None:
        test_file = test_file or split_file(root, ID_DOMAIN, "crossval")
        if test_file is None:
            raise BenchError(f"{train_file}: found, but neither {ID_DOMAIN}_test_kfold.txt nor "
                             f"{ID_DOMAIN}_crossval_kfold.txt beside it; get the split files from {SOURCE}")
        train = read_split_file(train_file, images)
        trained = {e for e, _ in train}
        test = [(e, c) for e, c in read_split_file(test_file, images) if e not in trained]
        return train, test, f"PACS photo: {test_file.name} without the images of {train_file.name}"
    entries = list_domain(images, ID_DOMAIN)
    rng = np.random.default_rng(SPLIT_SEED)
    held: set[str] = set()
    for cls in CLASSES:
        members = [e for e, c in entries if c == cls]
        n = max(1, int(round(HELD_OUT * len(members)))) if len(members) > 1 else 0  # one at least
        held |= {members[i] for i in rng.choice(len(members), n, replace=False)}
    train = [(e, c) for e, c in entries if e not in held]
    test = [(e, c) for e, c in entries if e in held]
    return train, test, f"PACS photo: a seeded {HELD_OUT:.0%} of each class held out (seed {SPLIT_SEED}; no split files)"


def _split(images: Path, entries: list[Entry], normal: str, source: str) -> TestSplit:
    ids = [e for e, _ in entries]
    return one_vs_rest(ImageSet.from_paths(ids, [images / e for e in ids]), [c for _, c in entries], [normal],
                       source=f"{source} ({len(ids)} images)")


def _ood_split(root: Path, images: Path, domain: str, normal: str) -> TestSplit:
    path = split_file(root, domain, "test")
    if path is not None:
        return _split(images, read_split_file(path, images), normal,
                      standin_source(root, f"PACS {domain}: {path.name}"))
    return _split(images, list_domain(images, domain), normal,
                  standin_source(root, f"PACS {domain}: every image of {domain}/"))


def load_category(root: Path, category: str) -> Category:
    root = check_root(root)
    if category not in CLASSES:
        raise BenchError(f"pacs has no class '{category}'; its classes are {', '.join(CLASSES)}")
    images = image_root(root)
    train, test, source = photo_split(root, images)
    train_ids = [e for e, c in train if c == category]
    if not train_ids:
        raise BenchError(f"{images / ID_DOMAIN / category}: no training image of class {category}")
    photo = _split(images, test, category, standin_source(root, source))
    factories = {ID_DOMAIN: lambda: photo}
    factories.update({d: (lambda d=d: _ood_split(root, images, d, category)) for d in DOMAINS[1:]})
    train_paths = [images / e for e in train_ids]
    return Category("pacs", category, ImageSet.from_paths(train_ids, train_paths), photo,
                    root=images, domains=LazySplits(factories), extra={"normal_class": category},
                    notes=standin_notes(root, "PACS"), train_files=tuple(train_paths))
