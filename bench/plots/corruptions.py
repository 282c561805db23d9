"""One test image under every corruption and severity of a grid (``bench corrupt --preview``).

The panels are the pixels the grid's cells see: the same seeded images, read from (or added to)
the same cache, under the grid's protocol. A row per corruption, a column per severity; the
clean image, with its defect outlined, leads the first row. It is how to judge a corruption's
strength, a corruption of your own beside the built-ins before a whole grid runs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..datasets.corruptions import CLEAN, corrupted_images
from ..datasets.point_corruptions import is_points
from ..datasets.registry import get_dataset
from ..errors import BenchError
from ..grid import GridSpec, one_method_cells
from ..tables.names import condition_label
from .common import pyplot, save

PANEL = 1.6  # inches per panel


def plot(spec: GridSpec, out: Path, image: str | None = None) -> list[Path]:
    """Draw ``image`` (a test image id; default: the first anomalous one) of the grid's first
    category, test domain and seed into ``out/corruptions.png`` and ``.pdf``."""
    cells = [c for c in one_method_cells(spec) if c.corruption != CLEAN]
    if not cells:
        raise BenchError("--preview draws corrupted images: name at least one corruption besides clean")
    first = cells[0]
    ds = get_dataset(spec.dataset)
    split = ds.load(ds.root(spec.root), first.category).split(first.domain)
    ids = list(split.images.ids)
    if image is None:
        anomalous = np.flatnonzero(np.asarray(split.labels) == 1)
        index = int(anomalous[0]) if len(anomalous) else 0
    elif image in ids:
        index = ids.index(image)
    else:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise BenchError(f"--image {image}: not a test image of {first.dataset} / {first.category} "
                         f"({len(ids)} images: {shown})")
    if is_points(split.images[index]):
        raise BenchError(f"--preview draws images and {first.dataset} holds point clouds; "
                         "preview an image dataset")
    corruptions = list(dict.fromkeys(c.corruption for c in cells))
    severities = sorted({c.severity for c in cells})

    def pixels(corruption: str, severity: int) -> np.ndarray:
        return corrupted_images(split.images, dataset=first.dataset, category=first.category, corruption=corruption,
                                severity=severity, seed=first.seed, protocol=spec.protocol)[index]

    plt = pyplot()
    rows, cols = len(corruptions), 1 + len(severities)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL * cols, PANEL * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    clean = pixels(CLEAN, 0)
    axes[0, 0].imshow(clean)
    if split.has_masks and split.labels[index] == 1:
        mask = np.asarray(split.mask(index), dtype=float)
        if mask.shape == clean.shape[:2]:  # under --protocol resized the outline would not fit
            axes[0, 0].contour(mask, levels=[0.5], colors="red", linewidths=0.8)
    axes[0, 0].set_title("Clean")
    for r, corruption in enumerate(corruptions):
        axes[r, 1].text(-0.06, 0.5, condition_label(corruption), rotation=90, ha="right", va="center",
                        transform=axes[r, 1].transAxes)
        for c, severity in enumerate(severities, start=1):
            axes[r, c].imshow(pixels(corruption, severity))
            if r == 0:
                axes[r, c].set_title(f"severity {severity}")
    where = f" ({first.domain})" if first.domain else ""
    fig.suptitle(f"{first.dataset} / {first.category}{where} / {ids[index]} / seed {first.seed} / "
                 f"protocol {spec.protocol}")
    return save(fig, Path(out), "corruptions")
