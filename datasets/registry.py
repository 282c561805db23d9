"""The datasets the harness knows by name, and how each one is found and loaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..methods.errors import BenchError, UnknownName, warn
from . import cifar10, mnist, mvtec, mvtec3d, pacs, realiad, textures, visa
from .base import Category


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    categories: tuple[str, ...]  # the standard list; empty = discovered under the root
    load: Callable[[Path, str], Category]
    default_root: Callable[[], Path] | None = None  # None: --root is required
    # Method config overrides used on this dataset only (CPU-sized budgets for the embedded set).
    method_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The dataset's own root check (one-line error naming its official source); None: MVTec layout.
    check_root: Callable[[Path], Path] | None = None
    source: str = ""  # where to get it, named when --root is missing
    # The test domains every category has (``Category.domains``), in-distribution first; empty:
    # one test split. ``bench grid --domains`` picks among them; without it a grid tests the first.
    domains: tuple[str, ...] = ()

    def root(self, root: str | Path | None) -> Path:
        if root is not None:
            if self.check_root is not None:
                return self.check_root(Path(root))
            return mvtec.check_root(Path(root), self.name)
        if self.default_root is None:
            where = f"; {self.source}" if self.source else ""
            raise BenchError(f"dataset '{self.name}' needs --root: pass the folder that holds its categories{where}")
        return self.default_root()

    def resolve_categories(self, root: Path, wanted: list[str] | None) -> list[str]:
        known = list(self.categories) or mvtec.categories_in(root)
        if not wanted or wanted == ["all"]:
            if not known:
                raise BenchError(
                    f"{root}: no category folders with train/good/ found; pass --root pointing at "
                    "the folder that holds the categories (MVTec AD layout)"
                )
            if not self.categories:
                for skipped in mvtec.skipped_folders(root, known):
                    warn(skipped)
            return known
        if self.categories:
            for c in wanted:
                if c not in known:
                    raise UnknownName("category", c, known)
        return wanted


def _mvtec_layout(name: str) -> Callable[[Path, str], Category]:
    return lambda root, category: mvtec.load_category(root, category, dataset=name)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            "textures",
            "embedded default: brick/grass/gravel crops from scikit-image with synthetic defects (no download)",
            textures.CATEGORIES,
            _mvtec_layout("textures"),
            default_root=textures.ensure_textures,
            # CPU-sized: the crops are 160 px, so work at 160 px instead of upsampling to 256/224
            method_defaults={
                "*": {"resize": 160, "image_size": 160,
                      # test-time adaptation (methods/adaptation.py; papers: 10 epochs over every
                      # target image, 100 Sinkhorn iterations, whole bank): one step on 5 target
                      # images, 10 Sinkhorn iterations, 1,024 bank items for the OT alignment
                      "adapt_epochs": 1, "adapt_max_images": 5, "sinkhorn_iters": 10, "ot_bank_cap": 1024},
                # trained students: CPU-sized epochs (papers: 200 / 20), see methods/rd4ad.py
                "rd4ad": {"epochs": 25},
                "gnl": {"epochs": 6},
            },
        ),
        DatasetSpec("mvtec_ad", "MVTec AD (15 categories), MVTec layout", mvtec.MVTEC_CATEGORIES, _mvtec_layout("mvtec_ad"),
                    source=mvtec.SOURCES["mvtec_ad"]),
        DatasetSpec("btad", "BTAD (3 products: 01, 02, 03), MVTec-like layout with train/ok, test/ok|ko",
                    mvtec.BTAD_CATEGORIES, _mvtec_layout("btad"), source=mvtec.SOURCES["btad"]),
        DatasetSpec("mpdd", "MPDD (6 metal parts), MVTec layout", mvtec.MPDD_CATEGORIES, _mvtec_layout("mpdd"),
                    source=mvtec.SOURCES["mpdd"]),
        DatasetSpec(
            "realiad", "Real-IAD (30 objects), single view C1 (top), JSON splits, 1024 px release",
            realiad.CATEGORIES, realiad.load_category,
            check_root=realiad.check_root, source=realiad.SOURCE,
        ),
        DatasetSpec(
            "visa", "VisA (12 objects), split_csv/1cls.csv, as released (Data/Images, Data/Masks)",
            visa.CATEGORIES, visa.load_category,
            check_root=visa.check_root, source=visa.SOURCE,
        ),
        DatasetSpec(
            "cifar10", "CIFAR-10 one-class (10 classes; one normal, nine anomalous; image metrics only)",
            cifar10.CATEGORIES, cifar10.load_category,
            default_root=cifar10.default_root, check_root=cifar10.check_root,
        ),
        DatasetSpec(
            "mnist", "MNIST one-vs-all (0-9) and even-vs-odd (even), trained on MNIST, tested on MNIST and "
            "MNIST-M (released or generated from BSDS500); image metrics only",
            mnist.CATEGORIES, mnist.load_category,
            default_root=mnist.default_root, check_root=mnist.check_root, domains=mnist.DOMAINS,
        ),
        DatasetSpec(
            "pacs", "PACS one-vs-all (7 classes), trained on Photo, tested on every domain; image metrics only",
            pacs.CLASSES, pacs.load_category, check_root=pacs.check_root, source=pacs.SOURCE, domains=pacs.DOMAINS,
        ),
        DatasetSpec(
            "mvtec3d", "MVTec 3D-AD (10 categories), organised point clouds (xyz TIFFs) with masks; plane removed, "
            "padded, resized to 224 (BTF / M3DM preprocessing); point corruptions only",
            mvtec3d.CATEGORIES, mvtec3d.load_category, check_root=mvtec3d.check_root, source=mvtec3d.SOURCE,
        ),
        DatasetSpec("folder", "any folder in the MVTec AD layout; categories are its sub-folders", (), _mvtec_layout("folder")),
    ]
}


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UnknownName("dataset", name, list(DATASETS))
    return DATASETS[name]
