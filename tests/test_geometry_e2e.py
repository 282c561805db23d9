"""The evaluation geometry end to end: elongated images through a whole grid.

A tiny MVTec-layout category holds 6:1 images (48 x 288) and 1:6 images (288 x 48), each defect a
bright rectangle with its exact mask, off-centre but inside the centre crop. The probe's anomaly
map is its input's brightness on its own ``Geometry``, so where the harness puts the masks decides
the pixel metrics alone: through ``run_grid`` (in-process) pixel AUROC is 1.0 for the squash
geometry and for PatchCore's kind (shorter side to R, centre crop C), and strictly less when the
probe's map is flipped (left-right for a wide image, up-down for a tall one) or transposed, which
is what a mask put on the grid the wrong way round would give.

The defects' edges lie on multiples of the resampling factors (6 and 2), so bilinear resizing
keeps every defect pixel brighter than every background pixel on both grids.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.executors import LocalExecutor, run_grid
from bench.grid import GridSpec
from bench.methods import Geometry, Method, MethodConfig, Scores, registered_temporarily
from bench.methods.base import bounded
from bench.results import decode_defect_metrics, load_rows

SHORT, LONG = 48, 288  # 6:1
SQUASH = {"resize": 48, "square": True}  # 48 x 48: the long side shrinks 6 x
CROP = {"resize": 24, "crop": 16}  # shorter side 48 -> 24, centre 16 x 16: native long side [128, 160)
# wide images (y0, y1, x0, x1): off-centre (the centre is (24, 144)), inside the crop's
# x in [128, 160) and y in [8, 40); the tall images carry the same boxes transposed
BOXES = [(12, 22, 132, 150), (10, 18, 138, 156), (26, 36, 132, 144)]


@dataclasses.dataclass(frozen=True)
class GeoProbeConfig(MethodConfig):
    resize: int = 48
    crop: int = 0  # 0: no crop
    square: bool = False
    orient: str = bounded("none", choices=("none", "flip", "transpose"))

    def geometry(self) -> Geometry:
        return Geometry(resize=self.resize, crop=self.crop or None, square=self.square)


class GeoProbe(Method):
    """Map = the input's gray level on the config's geometry (``orient``: flipped along the
    native long side, or transposed); image score = the map's max."""

    Config = GeoProbeConfig

    def fit(self, train) -> None:
        self.n_train = len(train)

    def score(self, images) -> Scores:
        maps = []
        for img in images:
            assert img.dtype == np.uint8 and img.ndim == 3, img.shape
            m = self.geometry.image(img).astype(np.float32).mean(-1)
            if self.config.orient == "flip":
                m = m[:, ::-1] if img.shape[1] > img.shape[0] else m[::-1, :]
            elif self.config.orient == "transpose":
                m = m.T
            maps.append(np.ascontiguousarray(m))
        maps = np.stack(maps)
        return Scores(maps.reshape(len(maps), -1).max(1), maps)

    def fitted_state(self):
        return {"n_train": self.n_train}

    def load_fitted_state(self, state) -> None:
        self.n_train = state["n_train"]


VARIANTS = {f"{g}_{o}": {**geometry, "orient": o}
            for g, geometry in (("squash", SQUASH), ("crop", CROP)) for o in ("none", "flip", "transpose")}


def picture(tall: bool, box=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A gray (48, 288) surface (gradient 50..70), a 220 rectangle at ``box``; transposed when tall."""
    rng = np.random.default_rng(seed)
    img = 50 + 20 * np.linspace(0, 1, LONG)[None, :] * np.ones((SHORT, 1)) + rng.uniform(0, 1, (SHORT, LONG))
    mask = np.zeros((SHORT, LONG), bool)
    if box is not None:
        y0, y1, x0, x1 = box
        mask[y0:y1, x0:x1] = True
        img[mask] = 220
    img = img.round().astype(np.uint8)
    return (img.T.copy(), mask.T.copy()) if tall else (img, mask)


def build(root: Path) -> Path:
    """Category ``tile``: 4 train and 4 normal test images (2 wide, 2 tall), ``crack`` = 3 wide
    defect images, ``spot`` = 3 tall ones."""
    base = root / "tile"

    def save(rel: str, arr: np.ndarray) -> None:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(base / rel)

    for i in range(4):
        save(f"train/good/{i:03d}.png", picture(tall=i % 2 == 1, seed=i)[0])
        save(f"test/good/{i:03d}.png", picture(tall=i % 2 == 1, seed=10 + i)[0])
    for kind, tall in (("crack", False), ("spot", True)):
        for i, box in enumerate(BOXES):
            img, mask = picture(tall, box, seed=20 + i)
            save(f"test/{kind}/{i:03d}.png", img)
            save(f"ground_truth/{kind}/{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    return root


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """One grid (clean, one seed) over the six probe variants; its rows by method."""
    import os

    tmp = tmp_path_factory.mktemp("geometry")
    root = build(tmp / "data")
    old = os.environ.get("ADSHIFT_BENCH_CACHE")
    os.environ["ADSHIFT_BENCH_CACHE"] = str(tmp / "cache")
    try:
        with contextlib.ExitStack() as stack:
            for name, overrides in VARIANTS.items():
                stack.enter_context(registered_temporarily(name, GeoProbe, summary="geometry probe", **overrides))
            spec = GridSpec(methods=list(VARIANTS), dataset="folder", root=str(root), corruptions=["clean"],
                            device="cpu")
            summary = run_grid(spec, tmp / "run", LocalExecutor(workers=1, threads=1), show_progress=False)
    finally:
        if old is None:
            os.environ.pop("ADSHIFT_BENCH_CACHE", None)
        else:
            os.environ["ADSHIFT_BENCH_CACHE"] = old
    assert summary.failed == 0, summary.failures
    df = load_rows(tmp / "run")
    assert sorted(df["method"]) == sorted(VARIANTS) and (df["status"] == "ok").all()
    return df.set_index("method")


def test_the_fixture_is_what_the_test_claims():
    """Off-centre defects, inside the centre crop, on 6:1 and 1:6 images."""
    for tall in (False, True):
        for box in BOXES:
            img, mask = picture(tall, box)
            assert img.shape == ((LONG, SHORT) if tall else (SHORT, LONG))
            crop = Geometry(**CROP).mask(mask)
            assert crop.sum() * 4 == mask.sum()  # the whole defect lies inside the crop (2 x 2 native px each)
            ys, xs = np.nonzero(mask)
            assert abs(ys.mean() - (mask.shape[0] - 1) / 2) > 2 or abs(xs.mean() - (mask.shape[1] - 1) / 2) > 2
            assert not (Geometry(**CROP).mask(mask) == Geometry(**CROP).mask(mask)[::-1, ::-1]).all()


@pytest.mark.parametrize("geometry", ["squash", "crop"])
def test_pixel_auroc_is_exact_on_the_methods_own_grid(rows, geometry):
    row = rows.loc[f"{geometry}_none"]
    assert row["pixel_auroc"] == 1.0 and row["image_auroc"] == 1.0
    assert row["aupro"] == pytest.approx(1.0, abs=1e-12)
    assert row["n_masks_lost"] == 0 and json.loads(row["masks_lost"]) == []
    per_type = decode_defect_metrics(row["defect_metrics"])
    assert {t: v["n"] for t, v in per_type.items()} == {"crack": 3, "spot": 3}
    for t in ("crack", "spot"):  # wide and tall alike
        assert per_type[t]["pixel_auroc"] == 1.0 and per_type[t]["image_auroc"] == 1.0


@pytest.mark.parametrize("geometry", ["squash", "crop"])
@pytest.mark.parametrize("orient", ["flip", "transpose"])
def test_a_map_turned_the_wrong_way_loses_pixel_auroc(rows, geometry, orient):
    row = rows.loc[f"{geometry}_{orient}"]
    assert row["pixel_auroc"] < 0.99
    assert row["aupro"] < rows.loc[f"{geometry}_none", "aupro"] - 0.05
    per_type = decode_defect_metrics(row["defect_metrics"])
    assert per_type["crack"]["pixel_auroc"] < 0.99 and per_type["spot"]["pixel_auroc"] < 0.99
    assert row["image_auroc"] == 1.0  # the brightest pixel is still on the map: images still rank
