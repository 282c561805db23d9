"""Every input a user can hand the harness: the right numbers, or one clear line (issue 11, part A).

Each case builds a tiny category ("part", 48 x 32 px, bright rectangular defects) in a temporary
folder, changes one thing about how it is stored, runs ``bench grid`` in-process with a fast
exact probe method (map = |image - mean training image| at native resolution, so no resizing
blurs the comparison) and asserts the exact outcome:

- inputs that should work give the metrics of the plain 8-bit PNG copy of the same pictures
  (exactly for lossless files, within 0.01 for JPEG), with the exact warning lines;
- inputs that cannot work stop with the exact one-line error (exit 2, nothing runs).

The table of cases is ``WORKS`` and ``REFUSED`` below.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from _grids import GrayProbe, ProbeConfig, run_cli
from bench.errors import BenchError, BenchWarning, ConfigError
from bench.methods import Geometry, Method, Scores, registered, registered_temporarily
from bench.results import load_rows

H, W = 32, 48  # not square: an EXIF rotation that is ignored shows up as a wrong size or wrong masks
N_TRAIN, N_GOOD, N_DEFECT = 4, 3, 3
EXIF_ROTATE_90_CW = 6  # "the viewer turns the stored pixels 90 degrees clockwise"


# ----------------------------------------------------------------------------- an exact probe


@pytest.fixture(scope="module", autouse=True)
def exact_probe():
    """The shared probe at the native size: map = |gray image - mean training gray image|."""
    with registered_temporarily("exact", GrayProbe, summary="test probe", image_size=0):
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- the pictures


def pictures(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """rel path -> (gray uint8 (H, W) image, bool mask or None), as a viewer should see them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    background = (60 + 40 * xx / W + 20 * yy / H).astype(np.float64)

    def img() -> np.ndarray:
        return np.clip(background + rng.normal(0, 6, (H, W)), 0, 255).round().astype(np.uint8)

    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for i in range(N_TRAIN):
        out[f"train/good/{i:03d}"] = (img(), None)
    for i in range(N_GOOD):
        out[f"test/good/{i:03d}"] = (img(), None)
    boxes = [(2, 10, 3, 15), (18, 28, 30, 44), (5, 14, 26, 33)]  # y0, y1, x0, x1: off-centre, asymmetric
    for i, (y0, y1, x0, x1) in enumerate(boxes[:N_DEFECT]):
        a = img()
        m = np.zeros((H, W), bool)
        m[y0:y1, x0:x1] = True
        a[m] = np.clip(a[m].astype(int) + 110, 0, 255).astype(np.uint8)
        out[f"test/crack/{i:03d}"] = (a, m)
    return out


# How an 8-bit gray picture is stored: rel path without suffix -> written files.
def save_image(path: Path, gray: np.ndarray, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "png_rgb":
        Image.fromarray(np.repeat(gray[..., None], 3, 2), "RGB").save(path.with_suffix(".png"))
    elif how == "png_gray8":
        Image.fromarray(gray, "L").save(path.with_suffix(".png"))
    elif how == "png_gray16":  # what a 16-bit camera writes: the full 0..65535 range
        Image.fromarray(gray.astype(np.uint16) * 257).save(path.with_suffix(".png"))
    elif how == "png_palette":
        p = Image.fromarray(gray, "L").convert("P")  # L -> P keeps the values as indices ...
        p.putpalette([v for i in range(256) for v in (i, i, i)])  # ... under a gray palette
        p.save(path.with_suffix(".png"))
    elif how == "png_rgba":
        rgba = np.dstack([np.repeat(gray[..., None], 3, 2), np.full((H, W), 255, np.uint8)])
        Image.fromarray(rgba, "RGBA").save(path.with_suffix(".png"))
    elif how == "tiff_cmyk":
        Image.fromarray(np.repeat(gray[..., None], 3, 2), "RGB").convert("CMYK").save(path.with_suffix(".tif"))
    elif how == "jpeg":
        Image.fromarray(gray, "L").save(path.with_suffix(".jpg"), quality=95)
    elif how == "jpeg_exif":  # stored turned 90 degrees counter-clockwise, shown upright by the tag
        stored = Image.fromarray(np.rot90(gray, 1).copy(), "L")
        exif = Image.Exif()
        exif[0x0112] = EXIF_ROTATE_90_CW
        stored.save(path.with_suffix(".jpg"), quality=95, exif=exif)
    elif how == "png_exif":
        stored = Image.fromarray(np.rot90(gray, 1).copy(), "L")
        exif = Image.Exif()
        exif[0x0112] = EXIF_ROTATE_90_CW
        stored.save(path.with_suffix(".png"), exif=exif)
    else:
        raise ValueError(how)


def save_mask(path: Path, mask: np.ndarray, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "0_255":
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path)
    elif how == "0_1":
        Image.fromarray(mask.astype(np.uint8), "L").save(path)
    elif how == "red_on_black":
        rgb = np.zeros((*mask.shape, 3), np.uint8)
        rgb[mask, 0] = 200
        Image.fromarray(rgb, "RGB").save(path)
    elif how == "palette":  # index 0 black, index 1 red: read through the palette
        p = Image.fromarray(mask.astype(np.uint8), "P")
        p.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
        p.save(path)
    elif how == "rgba_opaque":  # alpha 255 everywhere is not a defect
        rgba = np.zeros((*mask.shape, 4), np.uint8)
        rgba[..., 3] = 255
        rgba[mask, :3] = 255
        Image.fromarray(rgba, "RGBA").save(path)
    elif how == "rgba_overlay":  # red defects on a transparent white background: transparent shows nothing
        rgba = np.full((*mask.shape, 4), 255, np.uint8)
        rgba[..., 3] = 0
        rgba[mask] = (255, 0, 0, 255)
        Image.fromarray(rgba, "RGBA").save(path)
    elif how == "gray16":
        Image.fromarray(mask.astype(np.uint16) * 65535).save(path)
    elif how == "empty":
        Image.fromarray(np.zeros(mask.shape, np.uint8), "L").save(path)
    else:
        raise ValueError(how)


def build(root: Path, images: str = "png_rgb", masks: str = "0_255", category: str = "part",
          empty_mask: int | None = None) -> Path:
    """The category in the MVTec layout, stored as ``images`` / ``masks`` say."""
    base = root / category
    for rel, (gray, mask) in pictures().items():
        save_image(base / rel, gray, images)
        if mask is not None:
            stem = rel.split("/")[-1]
            how = "empty" if empty_mask is not None and rel.endswith(f"{empty_mask:03d}") else masks
            save_mask(base / "ground_truth" / "crack" / f"{stem}_mask.png", mask, how)
    return root


# ----------------------------------------------------------------------------- running it


def grid(monkeypatch, capsys, root: Path, out: Path, *extra: str, method: str = "exact"):
    """``bench grid`` in-process: (exit code, error lines, warning lines, rows or None)."""
    code, _, err = run_cli(monkeypatch, capsys, "grid", "-m", method, "--root", root, "--corruptions", "clean",
                           "--out", out, "--no-progress", *extra)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    warns = [line[len("warning: "):] for line in lines if line.startswith("warning: ")]
    rows = load_rows(out) if out.exists() and code != 2 else None
    return code, errors, warns, rows


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The metrics of the plain 8-bit RGB PNG copy (computed in-process, no CLI)."""
    from bench.executors import run_local
    from bench.grid import GridSpec

    root = build(tmp_path_factory.mktemp("ref"))
    spec = GridSpec(methods=["exact"], dataset="folder", root=str(root), corruptions=["clean"])
    out = tmp_path_factory.mktemp("ref_run")
    run_local(spec, out, show_progress=False)
    row = load_rows(out).iloc[0]
    assert row["status"] == "ok"
    assert row["image_auroc"] == 1.0 and row["pixel_auroc"] > 0.99 and row["aupro"] > 0.9
    return row


PIXEL = ("pixel_auroc", "aupro", "pixel_ap")
IMAGE = ("image_auroc", "image_ap", "image_f1_max")

# ----------------------------------------------------------------------------- inputs that work
# case -> (build kwargs, tolerance on every metric vs the reference, expected warning lines)
# (warnings are format strings over {root})
WORKS: dict[str, tuple[dict, float, list[str]]] = {
    "8-bit RGB PNG (the reference)": ({}, 0.0, []),
    "8-bit grayscale PNG": ({"images": "png_gray8"}, 0.0, []),
    "16-bit grayscale PNG (scaled, not clipped to white)": ({"images": "png_gray16"}, 0.0, []),
    "palette PNG": ({"images": "png_palette"}, 0.0, []),
    "RGBA PNG (alpha dropped)": ({"images": "png_rgba"}, 0.0, []),
    "CMYK TIFF": ({"images": "tiff_cmyk"}, 0.0, []),
    "PNG with an EXIF rotation (masks drawn upright)": ({"images": "png_exif"}, 0.0, []),
    "JPEG": ({"images": "jpeg"}, 0.01, []),
    "JPEG with an EXIF rotation (masks drawn upright)": ({"images": "jpeg_exif"}, 0.01, []),
    "masks 0/1": ({"masks": "0_1"}, 0.0, []),
    "masks red on black": ({"masks": "red_on_black"}, 0.0, []),
    "palette masks (index 0 black, 1 red)": ({"masks": "palette"}, 0.0, []),
    "opaque RGBA masks": ({"masks": "rgba_opaque"}, 0.0, []),
    "RGBA overlay masks (red on transparent white)": ({"masks": "rgba_overlay"}, 0.0, []),
    "16-bit masks": ({"masks": "gray16"}, 0.0, []),
}


@pytest.mark.parametrize("case", list(WORKS))
def test_inputs_that_work_give_the_reference_numbers(case, monkeypatch, capsys, tmp_path, reference):
    kwargs, tol, expected_warnings = WORKS[case]
    root = build(tmp_path / "data", **kwargs)
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run")
    assert (code, errors, warns) == (0, [], expected_warnings)
    row = rows.iloc[0]
    assert row["status"] == "ok" and bool(row["pixel_ground_truth"]) and row["n_empty_masks"] == row["n_masks_lost"] == 0
    for m in IMAGE + PIXEL:
        assert abs(row[m] - reference[m]) <= tol, (m, row[m], reference[m])


def test_empty_mask_on_a_defect_image_is_counted_and_said_once(monkeypatch, capsys, tmp_path, reference):
    root = build(tmp_path / "data", empty_mask=1)
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run", "--seeds", "0,1")
    assert (code, errors) == (0, [])
    assert warns == ["part: 1 of 3 defect images have an all-zero mask (test/crack/001.png): they count as "
                     "anomalous for the image metrics but add only normal pixels to the pixel metrics "
                     "(n_empty_masks in the rows)"]  # once for the category, not once per cell
    assert list(rows["n_empty_masks"]) == [1, 1]
    for m in IMAGE:  # the image labels are unchanged
        assert (rows[m] == reference[m]).all()
    assert (rows["aupro"] < reference["aupro"]).all()  # one defect region fewer, its pixels "normal"


@dataclasses.dataclass(frozen=True)
class CropConfig(ProbeConfig):
    image_size: int = 0

    def geometry(self) -> Geometry:
        return Geometry(resize=32, crop=16)  # 32x48 stays 32x48, then its centre 16x16 (x 16..31)


class CropProbe(GrayProbe):
    """The exact probe on the contract's grid: a centre crop that cuts defect 000 (x 3..14) off."""

    Config = CropConfig
    mask_transform = Method.mask_transform  # the geometry's, as PatchCore's

    def fit(self, train) -> None:
        super().fit([self.geometry.image(x) for x in train])

    def score(self, images) -> Scores:
        return super().score([self.geometry.image(x) for x in images])


def test_a_defect_the_crop_cuts_off_is_counted_and_said_once(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data")
    with registered_temporarily("cropped", CropProbe, summary="test probe"):
        code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run", "--seeds", "0,1",
                                         method="cropped")
    assert (code, errors) == (0, [])
    assert warns == ["part: 1 of 3 defect masks have no pixel left on cropped's evaluation grid "
                     "(test/crack/000.png): its resize and crop cut the defect off (the method never sees it) "
                     "or the defect is thinner than a grid pixel; these images still count as anomalous for the "
                     "image metrics and add only normal pixels to the pixel metrics (n_masks_lost in the rows)"]
    assert list(rows["n_masks_lost"]) == [1, 1] and list(rows["n_empty_masks"]) == [0, 0]
    assert [json.loads(x) for x in rows["masks_lost"]] == [["test/crack/000.png"]] * 2
    with registered_temporarily("cropped", CropProbe, summary="test probe"):
        code, _, err = run_cli(monkeypatch, capsys, "table", tmp_path / "run")
    assert code == 0 and err.splitlines() == [  # bench table says it too, in one line
        "warning: defects outside the evaluation grid (cropped on part: 1 of 3): the method never saw them, the "
        "images still count as anomalous and add no defect pixels (n_masks_lost, masks_lost in the rows)"]


def test_the_lost_masks_hint_names_the_setting_that_keeps_the_whole_image():
    from types import SimpleNamespace

    from bench.driver import Driver
    from bench.methods.patchcore import PatchCoreConfig

    cell = SimpleNamespace(category="tile", method="patchcore", config=PatchCoreConfig())
    row = {"masks_lost": json.dumps(["test/crack/a.png"]), "image_labels": [0, 1, 1]}
    driver = SimpleNamespace(_said=set())
    with pytest.warns(BenchWarning) as said:
        Driver._say_masks_lost(driver, cell, row)
        Driver._say_masks_lost(driver, cell, row)  # the same ids again: said once
    assert len(said) == 1 and str(said[0].message).startswith(
        "tile: 1 of 2 defect masks have no pixel left on patchcore's evaluation grid (test/crack/a.png)")
    assert str(said[0].message).endswith("(n_masks_lost in the rows; --set square_resize=true --set resize=224 "
                                         "keeps the whole image)")
    whole = PatchCoreConfig(square_resize=True, resize=224).geometry()  # what the hint sets
    assert whole.mask(np.ones((50, 300), bool)).all()  # a 6:1 tile: every pixel stays
    assert not PatchCoreConfig(square_resize=True).geometry().mask(np.pad(np.ones((50, 8), bool), ((0, 0), (0, 292)))).any()


def test_labels_only_dataset_gives_image_metrics_and_says_why(monkeypatch, capsys, tmp_path, reference):
    root = build(tmp_path / "data")
    shutil.rmtree(root / "part" / "ground_truth")
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run", "--seeds", "0,1")
    assert (code, errors) == (0, [])
    assert warns == [f"part: no ground_truth/ folder in {root / 'part'}, so image labels only: image metrics "
                     "are computed, the pixel metrics (pixel AUROC, AUPRO, pixel AP) are NaN in its rows "
                     "(pixel_ground_truth = False)"]
    assert (rows["status"] == "ok").all() and not rows["pixel_ground_truth"].any()
    for m in IMAGE:
        assert (rows[m] == reference[m]).all()
    for m in PIXEL:
        assert rows[m].isna().all()
    from bench.tables import main_table

    table = main_table(rows, "pixel_auroc", fmt="markdown")
    assert "–" in table and "nan" not in table.lower()


def test_empty_category_folder_next_to_valid_ones_is_said(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data")
    (root / "zz_empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("x")
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run")
    assert (code, errors) == (0, [])
    assert warns == [
        f"{root / 'notes'}: skipped, not a category folder (no train/good/ (or train/ok/) inside); the grid runs part",
        f"{root / 'zz_empty'}: skipped, not a category folder (empty); the grid runs part",
    ]
    assert list(rows["category"]) == ["part"]


def test_test_set_without_anomalies_is_said(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data")
    shutil.rmtree(root / "part" / "test" / "crack")
    shutil.rmtree(root / "part" / "ground_truth")
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run")
    assert (code, errors) == (0, [])
    assert warns == [f"part ({root / 'part' / 'test'}): only normal (good) test images, no anomalous ones: image "
                     "AUROC, AP and F1-max are undefined (NaN); add test/<defect type>/ folders"]
    assert rows["image_auroc"].isna().all()


def test_test_set_without_normal_images_is_said(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data")
    shutil.rmtree(root / "part" / "test" / "good")
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run")
    assert (code, errors) == (0, [])
    assert warns == [f"part ({root / 'part' / 'test'}): no normal (good) test images: image AUROC, AP and "
                     "F1-max are undefined (NaN); add test/good/"]
    assert rows[["image_auroc", "image_ap", "image_f1_max"]].isna().all().all()
    assert rows["pixel_auroc"].notna().all()


# ----------------------------------------------------------------------------- inputs refused
# case -> (build kwargs, a change to the folder, extra CLI args, method, the exact one-line error)
def _drop_one_mask(root: Path) -> None:
    (root / "part" / "ground_truth" / "crack" / "001_mask.png").unlink()


REFUSED: dict[str, tuple[Callable[[Path], None] | None, tuple[str, ...], str, str]] = {
    "defect image without its mask (ground_truth/ exists)": (
        _drop_one_mask, (), "exact",
        "{root}/part/test/crack/001.png: defect image without a mask (expected "
        "{root}/part/ground_truth/crack/001_mask.png); add the mask or move the image out of test/"),
    "--set coreset_ratoi=0.1 (typo)": (
        None, ("--set", "coreset_ratoi=0.1"), "patchcore",
        "--set coreset_ratoi: no selected method (patchcore) has a field 'coreset_ratoi' (closest: coreset_ratio, coreset_algorithm)"),
    "--set coreset_ratio=0": (
        None, ("--set", "coreset_ratio=0"), "patchcore", "patchcore: coreset_ratio=0.0: must be in (0, 1]"),
    "--set coreset_ratio=-1": (
        None, ("--set", "coreset_ratio=-1"), "patchcore", "patchcore: coreset_ratio=-1.0: must be in (0, 1]"),
    "--set coreset_ratio=2.0": (
        None, ("--set", "coreset_ratio=2.0"), "patchcore", "patchcore: coreset_ratio=2.0: must be in (0, 1]"),
    "--set coreset_ratio=abc": (
        None, ("--set", "coreset_ratio=abc"), "patchcore", "--set coreset_ratio=abc: expected a float value"),
    "--set square_resize=maybe": (
        None, ("--set", "square_resize=maybe"), "patchcore", "--set square_resize=maybe: expected a bool value"),
    "--set batch_size=0": (
        None, ("--set", "batch_size=0"), "patchcore", "patchcore: batch_size=0: must be >= 1"),
    "--set epochs=0 (rd4ad)": (
        None, ("--set", "epochs=0"), "rd4ad", "rd4ad: epochs=0: must be >= 1"),
    "--set adapt_momentum=1 (ttad)": (
        None, ("--set", "adapt_momentum=1"), "ttad", "ttad: adapt_momentum=1.0: must be in [0, 1)"),
    "--set coreset_algorithm=fast": (
        None, ("--set", "coreset_algorithm=fast"), "patchcore",
        "patchcore: coreset_algorithm='fast': use one of auto, fused, torch"),
    "--set rd4ad field on patchcore only (epochs)": (
        None, ("--set", "epochs=3"), "patchcore",
        "--set epochs: no selected method (patchcore) has a field 'epochs' (atta, augmix, augmix_efdm, "
        "augmix_mixstyle, dinl, dinl_lambda_080, dinl_lambda_085, dinl_lambda_090, dinl_lambda_095, efdm_train, "
        "gnl, jigsaw, mixstyle, rd4ad, rd4ad_labs, rd4ad_llowf have it)"),
    "--set patchcore.coreset_ratoi=0.1 (scoped typo)": (
        None, ("--set", "patchcore.coreset_ratoi=0.1"), "patchcore",
        "--set patchcore.coreset_ratoi: patchcore has no hyperparameter 'coreset_ratoi' (its fields: "
        "backbone, weights, resize, image_size, square_resize, pretrain_embed_dim, target_embed_dim, "
        "patch_size, coreset_ratio, coreset_algorithm, num_neighbours, reweight, reweight_support, "
        "smoothing_sigma, batch_size)"),
    "--set patchcor.coreset_ratio=0.1 (unknown method)": (
        None, ("--set", "patchcor.coreset_ratio=0.1"), "patchcore",
        "unknown method 'patchcor': did you mean 'patchcore'? known methods: {methods} (see `bench list methods`)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_inputs_refused_with_one_line(case, monkeypatch, capsys, tmp_path):
    change, args, method, message = REFUSED[case]
    root = build(tmp_path / "data")
    if change is not None:
        change(root)
    code, errors, warns, _ = grid(monkeypatch, capsys, root, tmp_path / "run", *args, method=method)
    methods = ", ".join(registered())
    assert code == 2
    assert errors == [message.format(root=root, methods=methods)]
    assert not (tmp_path / "run").exists()  # nothing ran, nothing written


def test_a_closest_field_is_named_across_the_selected_methods(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data")
    code, errors, _, _ = grid(monkeypatch, capsys, root, tmp_path / "run", "--set", "epoch=3",
                              method="patchcore,rd4ad")
    assert code == 2
    assert errors == ["--set epoch: no selected method (patchcore, rd4ad) has a field 'epoch' (closest: epochs)"]


# ----------------------------------------------------------------------------- the layers below


def test_every_config_field_range_is_declared_and_checked():
    from bench.methods.adaptation import AdaptConfig
    from bench.methods.patchcore import PatchCoreConfig
    from bench.methods.rd4ad import RD4ADConfig

    for cls in (PatchCoreConfig, AdaptConfig, RD4ADConfig):
        cls()  # the defaults are in range
        for f in dataclasses.fields(cls):
            t = f.type if isinstance(f.type, str) else f.type.__name__
            if t in ("int", "float"):
                assert "bounds" in f.metadata, f"{cls.__name__}.{f.name} declares no range"
    cases = [
        (PatchCoreConfig, {"coreset_ratio": 1.5}, "coreset_ratio=1.5: must be in (0, 1]"),
        (PatchCoreConfig, {"num_neighbours": 0}, "num_neighbours=0: must be >= 1"),
        (PatchCoreConfig, {"smoothing_sigma": -1.0}, "smoothing_sigma=-1.0: must be >= 0"),
        (PatchCoreConfig, {"coreset_ratio": "0.1"}, "coreset_ratio='0.1': expected a float value"),
        (PatchCoreConfig, {"batch_size": 2.5}, "batch_size=2.5: expected an int value"),
        (PatchCoreConfig, {"coreset_ratio": math.nan}, "coreset_ratio=nan: expected a number"),
        (AdaptConfig, {"adapt_epochs": 0}, "adapt_epochs=0: must be >= 1"),
        (AdaptConfig, {"kl_filter_quantile": 0.0}, "kl_filter_quantile=0.0: must be in (0, 1]"),
        (AdaptConfig, {"loss": "sinkhorm"}, "loss='sinkhorm': use one of none, moment, gaussian_kl, sinkhorn"),
        (RD4ADConfig, {"lr": 0.0}, "lr=0.0: must be > 0"),
        (RD4ADConfig, {"efdm_alpha": 1.5}, "efdm_alpha=1.5: must be in [0, 1]"),
        (RD4ADConfig, {"consistency_reduction": "avg"}, "consistency_reduction='avg': use one of sum, mean"),
    ]
    for cls, kwargs, message in cases:
        with pytest.raises(ConfigError) as info:
            cls(**kwargs)
        assert str(info.value) == message
        assert isinstance(info.value, (BenchError, ValueError))


def test_a_category_smaller_than_the_coreset_needs():
    from bench.methods.patchcore import PatchCoreConfig, check_bank_size

    with pytest.raises(BenchError) as info:
        check_bank_size(1, 20, PatchCoreConfig(coreset_ratio=0.1, num_neighbours=3))
    assert str(info.value) == ("1 training images give 20 patches and coreset_ratio=0.1 keeps 2: fewer than "
                               "num_neighbours=3; add training images or raise coreset_ratio")
    with pytest.warns(BenchWarning) as record:
        check_bank_size(1, 20, PatchCoreConfig(coreset_ratio=0.01))
    assert [str(w.message) for w in record] == [
        "1 training images give 20 patches: coreset_ratio=0.01 keeps less than one, so the memory bank holds "
        "a single patch; add training images or raise coreset_ratio"]
    check_bank_size(1, 784, PatchCoreConfig())  # MVTec-sized: silent


def test_exif_orientation_and_modes_at_the_reader(tmp_path):
    from bench.datasets.base import image_size, read_mask, read_rgb

    gray = pictures()["test/crack/000"][0]
    for how in ("png_exif", "jpeg_exif", "png_gray16", "png_palette", "png_rgba", "tiff_cmyk"):
        save_image(tmp_path / how, gray, how)
        path = next(tmp_path.glob(f"{how}.*"))
        arr = read_rgb(path)
        assert arr.shape == (H, W, 3) and arr.dtype == np.uint8 and image_size(path) == (H, W), how
        tol = 12 if how.startswith("jpeg") else 0  # JPEG at quality 95: a few gray levels of noise
        assert np.abs(arr[..., 0].astype(int) - gray).max() <= tol, how
    # a mask stored turned, with the same EXIF tag, is read upright like its image
    mask = pictures()["test/crack/000"][1]
    stored = Image.fromarray(np.rot90(mask.astype(np.uint8) * 255, 1).copy(), "L")
    exif = Image.Exif()
    exif[0x0112] = EXIF_ROTATE_90_CW
    stored.save(tmp_path / "m.png", exif=exif)
    assert (read_mask(tmp_path / "m.png", (H, W)) == mask).all()
    # float images: 0..1 is scaled, 0..255 is not
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(tmp_path / "f01.tif")
    Image.fromarray(gray.astype(np.float32), "F").save(tmp_path / "f255.tif")
    assert (read_rgb(tmp_path / "f01.tif")[..., 0] == gray).all()
    assert (read_rgb(tmp_path / "f255.tif")[..., 0] == gray).all()


@pytest.mark.slow
def test_warnings_come_once_from_the_driver_with_worker_processes(monkeypatch, capsys, tmp_path):
    root = build(tmp_path / "data", empty_mask=0)
    # spawned workers know the registered methods only (not this module's probe): a tiny PatchCore
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run", "--workers", "2",
                                     "--set", "resize=32", "--set", "image_size=32", method="patchcore")
    assert (code, errors) == (0, [])
    assert warns == ["part: 1 of 3 defect images have an all-zero mask (test/crack/000.png): they count as "
                     "anomalous for the image metrics but add only normal pixels to the pixel metrics "
                     "(n_empty_masks in the rows)"]
    assert list(rows["n_empty_masks"]) == [1] and list(rows["status"]) == ["ok"]


@pytest.mark.slow
def test_a_warning_only_a_worker_process_meets_is_said_by_the_driver_once(monkeypatch, capsys, tmp_path):
    """A test image is decoded in the worker that scores it: its warning reaches the user through
    the driver (worker processes' own warnings used to be dropped)."""
    root = build(tmp_path / "data")
    twelve_bit = root / "part" / "test" / "good" / "000.png"
    gray = np.asarray(Image.open(twelve_bit).convert("L")).astype(np.uint16) * 16  # max < 4096
    twelve_bit.unlink()
    Image.fromarray(gray).save(twelve_bit)  # uint16 -> a 16-bit PNG
    code, errors, warns, rows = grid(monkeypatch, capsys, root, tmp_path / "run", "--workers", "2", "--corruptions",
                                     "clean,gaussian_noise", "--set", "resize=32", "--set", "image_size=32",
                                     method="patchcore")
    assert (code, errors) == (0, [])
    assert [w for w in warns if "12-bit" in w] == [
        f"{twelve_bit}: maximum {gray.max()} of 65535: 12-bit data in a 16-bit file? It reads almost black "
        "(0..65535 is scaled to 0..255); convert the images to 8 bits first (said for the first such image of "
        "its category)"]
    assert list(rows["status"]) == ["ok", "ok"]
