"""Malformed datasets found by an audit of the loaders: each gives one line naming the file and the
fix (a BenchError), or one warning naming the file where the input reads but is suspicious; never
a plausible metric, never a traceback. Tiny fixtures in tmp_path, read through the loaders (and
``bench grid`` in-process where the failure used to surface later, when rows were written).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from _grids import GrayProbe, make_category, run_cli
from bench.datasets import base as dbase
from bench.datasets import cifar10, mvtec, mvtec3d
from bench.datasets.registry import get_dataset
from bench.errors import BenchError, BenchWarning
from bench.methods import registered_temporarily
from test_loaders import CIFAR_PAGE, make_cifar, make_realiad, make_visa


@pytest.fixture(scope="module", autouse=True)
def probe():
    with registered_temporarily("probe", GrayProbe, summary="test probe"):
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))


def one_error(monkeypatch, capsys, root: Path, out: Path) -> str:
    """``bench grid`` on ``root``: exit 2 with exactly one ``error:`` line (no traceback); its text."""
    code, _, err = run_cli(monkeypatch, capsys, "grid", "-m", "probe", "--root", root, "--corruptions", "clean",
                           "--out", out, "--no-progress")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0][len("error: "):]


def refused(load, *args) -> str:
    with pytest.raises(BenchError) as info:
        load(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def said(read) -> list[str]:
    """The BenchWarnings ``read()`` issues (every one, however often); no other warning may escape."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        read()
    assert all(issubclass(w.category, BenchWarning) for w in record), [str(w.message) for w in record]
    return [str(w.message) for w in record]


def load_mvtec(root: Path, category: str = "part"):
    return mvtec.load_category(root, category, dataset="folder")


# ----------------------------------------------------------------------------- 1. names that are not UTF-8


def test_names_that_are_not_utf8_are_refused_at_discovery(monkeypatch, capsys, tmp_path):
    """unzip of a Windows archive leaves bytes such as 0xe9 in names: rows could not hold them."""
    root = tmp_path / "data"
    make_category(root, "part")
    os.rename(root / "part/test/good/000.png", os.fsencode(root / "part/test/good") + b"/caf\xe9_x.png")
    assert one_error(monkeypatch, capsys, root, tmp_path / "run") == (
        f"{root}/part/test/good/caf\\xe9_x.png: this name is not UTF-8 text (its undecodable bytes are shown as "
        "\\xNN); rename it")
    assert not (tmp_path / "run").exists()

    other = tmp_path / "other"
    make_category(other, "part")
    os.rename(other / "part", os.fsencode(other) + b"/tu\xefle")  # a category folder
    assert one_error(monkeypatch, capsys, other, tmp_path / "run2") == (
        f"{other}/tu\\xefle: this name is not UTF-8 text (its undecodable bytes are shown as \\xNN); rename it")

    make_category(tmp_path / "types", "part")  # a defect-type folder
    os.rename(tmp_path / "types/part/test/crack", os.fsencode(tmp_path / "types/part/test") + b"/fissur\xe9")
    assert refused(load_mvtec, tmp_path / "types").startswith(f"{tmp_path}/types/part/test/fissur\\xe9: this name")

    m3d = mvtec3d.write_fixture(tmp_path / "m3d", n_train=2, n_validation=1, n_good=1, n_bad=2, side=32)
    xyz = m3d / "bagel/train/good/xyz"
    os.rename(xyz / "001.tiff", os.fsencode(xyz) + b"/\xff01.tiff")
    assert refused(mvtec3d.load_category, m3d, "bagel").startswith(f"{xyz}/\\xff01.tiff: this name is not UTF-8")


# ----------------------------------------------------------------------------- 2. Real-IAD entries


def test_realiad_entries_with_wrong_types_name_the_entry(tmp_path):
    spec = get_dataset("realiad")
    cases = {
        ("train", 0, "image_path", None): "image_path must be a path",
        ("test", 1, "image_path", 17): "image_path must be a path",
        ("test", 2, "mask_path", 5): "mask_path must be a path or null",
    }
    for (split, k, key, value), what in cases.items():
        root = make_realiad(tmp_path / f"{split}{k}")
        path = root / "realiad_jsons_sv/audiojack.json"
        doc = json.loads(path.read_text())
        doc[split][k][key] = value
        path.write_text(json.dumps(doc))
        assert refused(spec.load, root, "audiojack") == (
            f"{path}: {split} entry {k} ({json.dumps(doc[split][k])}): {what}; fix the entry or extract "
            "realiad_jsons.zip again")


def test_realiad_mask_path_empty_or_a_folder_names_the_entry_and_its_image(tmp_path):
    spec = get_dataset("realiad")
    for value, what in (("", "empty"), ("NG/BX/S0007", "a folder")):
        root = make_realiad(tmp_path / what.replace(" ", "_"))
        path = root / "realiad_jsons_sv/audiojack.json"
        doc = json.loads(path.read_text())
        entry = next(s for s in doc["test"] if s["anomaly_class"] == "BX")
        entry["mask_path"] = value
        path.write_text(json.dumps(doc))
        assert refused(spec.load, root, "audiojack") == (
            f"{path}: the test entry of {entry['image_path']} (BX) has mask_path {value!r}, {what}, not its mask "
            "file; fix the entry or extract realiad_jsons.zip again")


# ----------------------------------------------------------------------------- 3. CIFAR-10 batches


def _rewrite_test_batch(root: Path, **changes) -> Path:
    path = root / cifar10.FOLDER / "test_batch"
    with path.open("rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry.update({k: v(entry[k]) for k, v in changes.items()})
    with path.open("wb") as f:
        pickle.dump(entry, f, protocol=2)
    return path


@pytest.mark.parametrize("change, message", [
    ({"data": lambda d: d.astype(np.float32) / 255}, "data is float32, 0..1; a CIFAR-10 batch holds uint8 "
                                                    "pixel values 0..255"),
    ({"data": lambda d: d.astype(np.int16) * 4}, "data is int16, 0..1020; a CIFAR-10 batch holds uint8 pixel "
                                                 "values 0..255"),
    ({"labels": lambda y: [-1] + y[1:]}, "label -1 (image 0) is not a CIFAR-10 class index, an integer 0..9"),
    ({"labels": lambda y: y[:3] + [10] + y[4:]}, "label 10 (image 3) is not a CIFAR-10 class index, an integer 0..9"),
])
def test_cifar10_batches_with_other_values_are_refused(tmp_path, change, message):
    root = make_cifar(tmp_path / "cifar")
    path = _rewrite_test_batch(root, **change)
    assert refused(get_dataset("cifar10").load, root, "cat") == (
        f"{path}: {message}; get cifar-10-python.tar.gz from {CIFAR_PAGE} again")


def test_cifar10_integer_data_within_bytes_reads_as_released(tmp_path):
    root = make_cifar(tmp_path / "cifar")
    before = get_dataset("cifar10").load(root, "cat").test.images[1]
    _rewrite_test_batch(root, data=lambda d: d.astype(np.int64), labels=lambda y: np.asarray(y, dtype=np.int32))
    assert np.array_equal(get_dataset("cifar10").load(root, "cat").test.images[1], before)


# ----------------------------------------------------------------------------- 4. decompression bombs


def test_images_over_pillows_pixel_limits_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # warns over 1000 px, refuses over 2000 px
    big, huge = tmp_path / "big.png", tmp_path / "huge.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(big)
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(huge)
    for read in (dbase.read_rgb, dbase.image_size, lambda p: dbase.read_mask(p, (50, 50))):
        message = refused(read, huge)  # Pillow's own words in the brackets: "Image size (2500 pixels) exceeds ..."
        assert message.startswith(f"{huge}: too large to read safely (") and "2500 pixels" in message
        assert message.endswith("; downscale it (a few thousand px a side is plenty) or remove it")
    lines = said(lambda: (dbase.read_rgb(big), dbase.image_size(big), dbase.read_mask(big, (30, 40))))
    assert lines == [f"{big}: 40x30 px, over Pillow's decompression-bomb limit of 0.001 Mpx: read anyway, slowly "
                     "and with much memory; downscale it unless it must be this large"]  # once per file
    assert dbase.read_rgb(big).shape == (30, 40, 3)


# ----------------------------------------------------------------------------- 5-7. MVTec layout


def test_mask_suffix_in_capitals_is_found(tmp_path):
    base = make_category(tmp_path, "part")
    for mask in (base / "ground_truth/crack").iterdir():
        mask.rename(mask.with_suffix(".PNG"))
    cat = load_mvtec(tmp_path)
    assert cat.test.defect_types[:2] == ["crack", "crack"]
    assert [m.name for _, m in cat.test.files[:2]] == ["000_mask.PNG", "001_mask.PNG"]
    assert cat.test.mask(0).sum() == 16 * 16


@pytest.mark.parametrize("train, test, masks", [("good", "ok", True), ("ok", "good", True), ("good", "Good", False),
                                                 ("good", "ok", False)])
def test_normal_folders_named_differently_in_train_and_test(tmp_path, train, test, masks):
    base = make_category(tmp_path, "part")
    (base / "train/good").rename(base / "train" / train)
    (base / "test/good").rename(base / "test" / test)
    if not masks:  # without ground_truth/ the test folder read as a defect type made its images anomalous
        shutil.rmtree(base / "ground_truth")
    assert refused(load_mvtec, tmp_path) == (
        f"{base / 'test' / test}: the normal folders differ, train/{train}/ but test/{test}/; rename one so "
        f"that both are {train}/ (or both {test}/)")


def test_one_image_stored_twice_in_a_test_folder(tmp_path):
    base = make_category(tmp_path, "part")
    Image.open(base / "test/crack/000.png").save(base / "test/crack/000.jpg")
    assert refused(load_mvtec, tmp_path) == (
        f"{base}/test/crack/000.jpg and {base}/test/crack/000.png: the same image stored twice (one stem); it would "
        "count twice, read with one mask: remove one of them")


# ----------------------------------------------------------------------------- 8-9. VisA and Real-IAD splits


def test_visa_and_realiad_say_a_test_split_of_one_class(tmp_path):
    root = make_visa(tmp_path / "VisA")
    csv = root / "split_csv/1cls.csv"
    csv.write_text("".join(line for line in csv.read_text().splitlines(True) if ",anomaly," not in line))
    assert get_dataset("visa").load(root, "candle").notes == [
        f"candle ({csv}): only normal (good) test images, no anomalous ones: image AUROC, AP and F1-max are "
        f"undefined (NaN); list anomalous test images of candle in {csv}"]

    root = make_realiad(tmp_path / "Real-IAD")
    path = root / "realiad_jsons_sv/audiojack.json"
    doc = json.loads(path.read_text())
    doc["test"] = [s for s in doc["test"] if s["mask_path"] is not None]
    path.write_text(json.dumps(doc))
    assert get_dataset("realiad").load(root, "audiojack").notes == [
        f"audiojack ({path}): no normal (good) test images: image AUROC, AP and F1-max are undefined (NaN); its test "
        "list has no normal sample in view C1: use the official split"]


def test_visa_rows_of_an_unknown_object_are_refused(tmp_path):
    root = make_visa(tmp_path / "VisA")
    csv = root / "split_csv/1cls.csv"
    lines = csv.read_text().splitlines()
    k = next(k for k, line in enumerate(lines) if "candle/Data/Images/Anomaly/001.JPG" in line)
    lines[k] = "Candle" + lines[k][len("candle"):]  # misspelt: the row was left out of candle's split
    csv.write_text("\n".join(lines) + "\n")
    names = "candle, capsules, cashew, chewinggum, fryum, macaroni1, macaroni2, pcb1, pcb2, pcb3, pcb4, pipe_fryum"
    assert refused(get_dataset("visa").load, root, "candle") == (
        f"{csv}: line {k + 1} ({lines[k]}) has object 'Candle', not a VisA object ({names}); fix that row")
    # a csv cut down to the rows of one object still loads that object
    csv.write_text("\n".join(lines[:1] + [line for line in lines if line.startswith("capsules,")]) + "\n")
    assert len(get_dataset("visa").load(root, "capsules").test) == 2


# ----------------------------------------------------------------------------- 10. MVTec 3D-AD clouds


def test_mvtec3d_clouds_in_millimetres_or_without_points_are_refused(tmp_path):
    root = mvtec3d.write_fixture(tmp_path / "m3d", n_train=2, n_validation=1, n_good=1, n_bad=2, side=32)
    xyz = root / "bagel/train/good/xyz"
    tifffile.imwrite(xyz / "000.tiff", tifffile.imread(xyz / "000.tiff") * 1000, photometric="rgb")
    cloud = tifffile.imread(xyz / "001.tiff")
    tifffile.imwrite(xyz / "001.tiff", np.full_like(cloud, np.nan), photometric="rgb")
    cat = mvtec3d.load_category(root, "bagel")
    assert refused(lambda: cat.train[0]).startswith(
        f"{xyz / '000.tiff'}: median depth 5") and refused(lambda: cat.train[0]).endswith(
        ": looks like millimetres; MVTec 3D-AD stores metres: divide the coordinates by 1000 (or extract the file "
        "from the archive again)")
    assert refused(lambda: cat.train[1]) == (
        f"{xyz / '001.tiff'}: no valid points (every point is NaN or has a zero coordinate): the file is damaged; "
        "extract it from the MVTec 3D-AD archive again")
    assert cat.test.images[0].shape == (224, 224, 3)  # metres: read


def test_mvtec3d_names_the_tif_found_beside_the_expected_tiff(tmp_path):
    root = mvtec3d.write_fixture(tmp_path / "m3d", n_train=2, n_validation=1, n_good=1, n_bad=2, side=32)
    good = root / "bagel/test/good"
    (good / "xyz/000.tiff").rename(good / "xyz/000.tif")
    assert refused(mvtec3d.load_category, root, "bagel") == (
        f"{good / 'rgb/000.png'}: colour image without its point cloud (expected {good / 'xyz/000.tiff'}; found "
        "000.tif there instead); add the xyz TIFF or move the image out")


# ----------------------------------------------------------------------------- 11. 16-bit and float images


def test_twelve_bit_data_in_16_bit_files_is_said_once_per_category(tmp_path):
    base = make_category(tmp_path, "part", mode="L")
    for path in sorted(base.glob("t*/*/*.png")):  # train/ and test/, not the masks
        Image.fromarray(np.asarray(Image.open(path)).astype(np.uint16) * 16).save(path)  # max 4080
    cat = load_mvtec(tmp_path)
    first = base / "train/good/000.png"
    lines = said(lambda: list(cat.train) + [cat.test.images[i] for i in range(len(cat.test))])
    assert lines == [f"{first}: maximum {np.asarray(Image.open(first)).max()} of 65535: 12-bit data in a 16-bit "
                     "file? It reads almost black (0..65535 is scaled to 0..255); convert the images to 8 bits first "
                     "(said for the first such image of its category)"]
    full = tmp_path / "full.png"  # true 16-bit data: silent
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(full)
    assert said(lambda: dbase.read_rgb(full)) == []


def test_a_float_image_a_rounding_step_over_one_reads_as_0_to_1(tmp_path):
    gray = np.arange(48, dtype=np.float32).reshape(6, 8) * 5
    values = gray / 255
    values[0, 0] = 1.0001
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    expected = gray.astype(np.uint8)
    expected[0, 0] = 255
    assert np.array_equal(dbase.read_rgb(tmp_path / "f.tif")[..., 0], expected)


# ----------------------------------------------------------------------------- 12. masks that went through JPEG


def test_masks_in_jpeg_are_refused_and_jpeg_damaged_masks_said_once(tmp_path):
    base = make_category(tmp_path, "part")
    masks = sorted((base / "ground_truth/crack").iterdir())
    Image.open(masks[0]).save(masks[0], format="JPEG", quality=75)  # JPEG bytes under a .png name
    cat = load_mvtec(tmp_path)
    assert refused(cat.test.mask, 0) == (
        f"{masks[0]}: this mask is a JPEG file: JPEG blurs the defect's edge into faint non-zero pixels, which all "
        "count as defect; binarise the masks and save them as PNG")

    again = tmp_path / "again"
    base = make_category(again, "part")
    yy, xx = np.mgrid[:64, :64]
    disc = ((yy - 21) ** 2 + (xx - 27) ** 2 <= 49).astype(np.uint8) * 255  # off JPEG's 8 x 8 grid
    for mask in sorted((base / "ground_truth/crack").iterdir()):  # through JPEG (quality 95), then saved as PNG
        Image.fromarray(disc).save(tmp_path / "m.jpg", quality=95)
        Image.open(tmp_path / "m.jpg").save(mask)
    cat = load_mvtec(again)
    lines = said(lambda: [cat.test.mask(i) for i in range(len(cat.test))])
    assert len(lines) == 1 and lines[0].startswith(f"{base / 'ground_truth/crack/000_mask.png'}: ")
    assert "are faint (under half its maximum" in lines[0] and lines[0].endswith(
        "binarise the masks (e.g. >= half the maximum -> 255, else 0) first (said for the first such mask of its "
        "category)")
    # binary masks, and VisA's label masks (values 1, 2, ...), are silent
    make_category(tmp_path / "clean", "part")
    clean = load_mvtec(tmp_path / "clean")
    assert said(lambda: [clean.test.mask(i) for i in range(len(clean.test))]) == []
    visa = get_dataset("visa").load(make_visa(tmp_path / "VisA"), "candle")
    assert said(lambda: [visa.test.mask(i) for i in range(len(visa.test))]) == []
