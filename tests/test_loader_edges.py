"""Loader edge cases from the second audit of the dataset layer: each input the harness cannot read
correctly gives one line naming the file and the fix, a suspicious one a single warning. Tiny
fixtures in tmp_path, read through the loaders.
"""
from __future__ import annotations

import json
import os
import pickle
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _grids import make_category
from bench.cache import data_fingerprint
from bench.datasets import cifar10, mvtec
from bench.datasets.registry import get_dataset
from test_bad_input_loaders import load_mvtec, refused, said
from test_loaders import make_cifar, make_realiad, make_visa

EXIF_ROTATE_90_CW = 6


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- F1. Real-IAD


def test_realiad_train_list_with_anomalous_samples_is_refused(tmp_path):
    """Real-IAD's noisy-training splits (realiad_jsons_fuiad_*) put NG samples in train: never trained on."""
    root = make_realiad(tmp_path / "Real-IAD")
    path = root / "realiad_jsons_sv/audiojack.json"
    doc = json.loads(path.read_text())
    ng = next(s for s in doc["test"] if s["anomaly_class"] == "HS")
    doc["test"].remove(ng)
    doc["train"].append(ng)
    path.write_text(json.dumps(doc))
    assert refused(get_dataset("realiad").load, root, "audiojack") == (
        f"{path}: anomalous samples in the train split of audiojack (first: train entry 4, {ng['image_path']}, "
        "anomaly_class HS); the harness trains on normal (OK) samples only: Real-IAD's noisy-training splits "
        "(realiad_jsons_fuiad_*) are not supported, use realiad_jsons_sv/ or realiad_jsons/")


# ----------------------------------------------------------------------------- F4-F5. VisA split csv


def test_visa_truncated_csv_row_names_the_line(tmp_path):
    root = make_visa(tmp_path / "VisA")
    csv = root / "split_csv/1cls.csv"
    with csv.open("a") as f:
        f.write("candle,test,normal")  # the file cut short in its last line
    n = len(csv.read_text().splitlines())
    assert refused(get_dataset("visa").load, root, "capsules") == (
        f"{csv}: line {n} (candle,test,normal) has no image field (a row is object,split,label,image,mask): the "
        "file is truncated or the line damaged; extract the VisA tarball again or repair that line")


@pytest.mark.parametrize("drop, which", [("train", "training"), ("test", "test")])
def test_visa_object_without_train_or_test_rows_is_refused(tmp_path, drop, which):
    root = make_visa(tmp_path / "VisA")
    csv = root / "split_csv/1cls.csv"
    csv.write_text("".join(line for line in csv.read_text().splitlines(True) if not line.startswith(f"candle,{drop},")))
    assert refused(get_dataset("visa").load, root, "candle") == (
        f"{csv}: no {which} images of candle (no row with split {drop}); extract the VisA tarball again, or list "
        "them in the csv")
    assert len(get_dataset("visa").load(root, "capsules").test) == 2  # the other object still loads


# ----------------------------------------------------------------------------- F6. masks present but unusable


def _btad(root: Path) -> Path:
    """Category 02 in BTAD's layout: train/ok, test/ok, test/ko, ground_truth/ko/<stem>.png."""
    base = make_category(root, "02")
    (base / "train/good").rename(base / "train/ok")
    (base / "test/good").rename(base / "test/ok")
    (base / "test/crack").rename(base / "test/ko")
    (base / "ground_truth/crack").rename(base / "ground_truth/ko")
    for m in (base / "ground_truth/ko").iterdir():
        m.rename(m.with_name(m.name.replace("_mask", "")))
    return base


def test_a_mask_in_another_format_or_a_broken_link_is_named(tmp_path):
    base = make_category(tmp_path / "jpeg", "part")
    gt = base / "ground_truth/crack"
    Image.open(gt / "000_mask.png").convert("L").save(gt / "000_mask.jpg", quality=95)
    (gt / "000_mask.png").unlink()
    assert refused(load_mvtec, tmp_path / "jpeg") == (
        f"{gt / '000_mask.jpg'}: the mask of {base / 'test/crack/000.png'} is a JPEG file: JPEG blurs the defect's "
        "edge into faint non-zero pixels, which all count as defect; binarise the masks and save them as PNG "
        "(000_mask.png)")

    base = make_category(tmp_path / "link", "part")
    gt = base / "ground_truth/crack"
    (gt / "001_mask.png").unlink()
    os.symlink(tmp_path / "nowhere.png", gt / "001_mask.png")
    assert refused(load_mvtec, tmp_path / "link") == (
        f"{gt / '001_mask.png'}: the mask of {base / 'test/crack/001.png'} is a broken link: it points to "
        f"{tmp_path / 'nowhere.png'}, which does not exist; restore that file or replace the link with the mask")

    base = _btad(tmp_path / "btad")
    gt = base / "ground_truth/ko"
    load = lambda: mvtec.load_category(tmp_path / "btad", "02", dataset="btad")  # noqa: E731
    assert load().test.mask(0).any()  # the layout reads as it is
    Image.open(gt / "000.png").save(gt / "000.tif")
    (gt / "000.png").unlink()
    assert refused(load) == (
        f"{gt / '000.tif'}: the mask of {base / 'test/ko/000.png'} is a .tif file, which is not read as a mask "
        "(masks are <stem>_mask.png, <stem>.png, <stem>_mask.bmp, <stem>.bmp); convert it to PNG as "
        f"{gt / '000.png'}")
    (gt / "000.tif").unlink()  # no mask at all: BTAD's name is the one expected
    assert refused(load) == (f"{base / 'test/ko/000.png'}: defect image without a mask (expected {gt / '000.png'}); "
                             "add the mask or move the image out of test/")


# ----------------------------------------------------------------------------- F3, F7. EXIF orientation


def _exif(path: Path, arr: np.ndarray, orientation: int = EXIF_ROTATE_90_CW) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif)


def test_an_image_turned_by_exif_whose_mask_is_not_is_said_once(tmp_path):
    """Square: the sizes agree whichever way the mask was drawn, so the reading (as a viewer shows
    each file) is said once per category, naming the first such image."""
    base = make_category(tmp_path, "part")
    for p in sorted((base / "test/crack").iterdir()):
        _exif(p, np.asarray(Image.open(p)))
    cat = load_mvtec(tmp_path)
    stored = np.asarray(Image.open(base / "ground_truth/crack/000_mask.png")) != 0
    lines = said(lambda: [cat.test.mask(i) for i in range(len(cat.test))])
    assert lines == [
        f"{base / 'test/crack/000.png'}: EXIF orientation 6 (shown turned 90 degrees clockwise), its mask "
        f"{base / 'ground_truth/crack/000_mask.png'}: no EXIF orientation; both are read as a viewer shows them "
        "(draw masks on the image as shown), so a mask drawn on the stored pixels is misaligned: then give the "
        "images and their masks the same orientation tag (said for the first such image of its category)"]
    assert np.array_equal(cat.test.mask(0), stored)  # the mask as a viewer shows it (it has no tag)
    # the same tag on both files: silent, the mask turned with its image
    for p in sorted((base / "ground_truth/crack").iterdir()):
        _exif(p, np.asarray(Image.open(p)))
    cat = load_mvtec(tmp_path)
    assert said(lambda: [cat.test.mask(i) for i in range(len(cat.test))]) == []
    assert np.array_equal(cat.test.mask(0), np.rot90(stored, -1))


def test_a_size_mismatch_from_an_exif_turn_says_so(tmp_path):
    """Non-square: on disk the mask has the image's size; a viewer shows the image turned by 90 degrees."""
    base = make_category(tmp_path, "part")
    rng = np.random.default_rng(0)
    for p in sorted((base / "test").glob("*/*.png")):
        _exif(p, rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))  # stored 48x32, shown 32x48
    for p in sorted((base / "ground_truth/crack").iterdir()):
        Image.fromarray(np.zeros((32, 48), np.uint8)).save(p)  # drawn on the stored pixels
    cat = load_mvtec(tmp_path)
    assert refused(cat.test.mask, 0) == (
        f"{base / 'ground_truth/crack/000_mask.png'}: mask is 48x32 but its image {base / 'test/crack/000.png'} is "
        "32x48 as a viewer shows it: the image's EXIF orientation (6) turns it by 90 degrees, the mask's does not; "
        "masks are read as a viewer shows them: if the mask was drawn on the stored pixels, give both files the "
        "same orientation tag (e.g. drop the image's), else redraw the mask on the image as a viewer shows it")


# ----------------------------------------------------------------------------- F8. CIFAR-10 pickles, NFD names


def test_cifar10_bytes_keys_and_names_read_as_the_release(tmp_path):
    root = make_cifar(tmp_path / "cifar")
    before = get_dataset("cifar10").load(root, "cat")
    for path in (root / cifar10.FOLDER).iterdir():  # re-saved after pickle.load(..., encoding="bytes")
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="latin1")
        if "label_names" in entry:
            entry["label_names"] = [n.encode() for n in entry["label_names"]]
        with path.open("wb") as f:
            pickle.dump({k.encode(): v for k, v in entry.items()}, f, protocol=2)
    after = get_dataset("cifar10").load(root, "cat")
    assert after.train.ids == before.train.ids and list(after.test.labels) == list(before.test.labels)
    assert np.array_equal(after.test.images[1], before.test.images[1])


def test_cifar10_root_that_is_the_batches_folder_asks_for_its_parent(tmp_path):
    root = make_cifar(tmp_path / "cifar")
    folder = root / cifar10.FOLDER
    assert refused(get_dataset("cifar10").root, folder) == (
        f"dataset root {folder} is the cifar-10-batches-py/ folder itself: pass --root its parent folder, {root}")


def test_a_category_typed_composed_finds_its_decomposed_folder(tmp_path):
    """macOS writes 'café' decomposed (NFD); the shell passes it composed (NFC)."""
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    make_category(tmp_path, nfd)
    cat = load_mvtec(tmp_path, nfc)
    assert cat.name == nfc and len(cat.train) == 4 and cat.test.mask(0).any()
    data_fingerprint(cat.root / cat.name, cat.train.ids, cat.train_files)  # the runner's fit key reads its files
