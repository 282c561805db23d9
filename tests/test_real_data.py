"""The methods really detect defects on real images: a fixed subset of the magnetic tile data in
``../shared/data`` (absent in a user's clone: the test skips there)."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.executors import run_local
from bench.grid import GridSpec
from bench.results import load_rows

MT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (MT / "magnetic_tile").is_dir(),
                                reason=f"real data not found at {MT} (only in the project workspace)")]


def _subset(dst, n_train=120, n_good=30, n_per_type=6):
    """Symlinked MVTec-layout subset: the first files in name order of each folder."""
    src = MT / "magnetic_tile"
    picks = {"train/good": n_train, "test/good": n_good}
    picks.update({f"test/{d.name}": n_per_type for d in sorted((src / "test").iterdir()) if d.name != "good"})
    for sub, n in picks.items():
        (dst / sub).mkdir(parents=True)
        for f in sorted((src / sub).glob("*.png"))[:n]:
            (dst / sub / f.name).symlink_to(f)
            if sub.startswith("test/") and sub != "test/good":
                mask = src / "ground_truth" / sub[5:] / f"{f.stem}_mask.png"
                (dst / "ground_truth" / sub[5:]).mkdir(parents=True, exist_ok=True)
                (dst / "ground_truth" / sub[5:] / mask.name).symlink_to(mask)
    return dst.parent


def test_patchcore_detects_real_defects_and_loses_under_noise(tmp_path):
    root = _subset(tmp_path / "mt" / "magnetic_tile")
    # the whole tile squashed to 224 x 224: the tiles are up to 6:1 long and the official 224
    # centre crop cuts the whole defect out of many of them (n_masks_lost)
    spec = GridSpec(methods=["patchcore"], dataset="folder", root=str(root), corruptions=["gaussian_noise"],
                    severities=[5], overrides={"coreset_ratio": "0.02", "square_resize": "true", "resize": "224"})
    summary = run_local(spec, tmp_path / "run", show_progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
    df = load_rows(tmp_path / "run").set_index("corruption")
    clean, noisy = df.loc["clean"], df.loc["gaussian_noise"]
    assert clean["n_test"] == 60
    assert clean["n_masks_lost"] <= 1  # the whole tile is on the grid (a sub-pixel crack may vanish)
    # well above chance on clean images, image and pixel level
    assert clean["image_auroc"] > 0.65 and clean["pixel_auroc"] > 0.65, clean[["image_auroc", "pixel_auroc"]]
    # the shift the harness measures: severity-5 noise costs pixel-level accuracy
    assert noisy["pixel_auroc"] < clean["pixel_auroc"] - 0.05
