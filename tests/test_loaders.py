"""Dataset loaders on tiny fixtures written in each dataset's real on-disk format.

Real-IAD (JSON splits, top view C1), VisA (split_csv/1cls.csv, raw masks), CIFAR-10 one-class
(the python pickle batches), and the real folder names of MVTec AD, BTAD and MPDD.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _domain_data import make_mnist
from _grids import run_cli
from bench.datasets import cifar10, mnist, mvtec, realiad
from bench.datasets.registry import DATASETS, get_dataset
from bench.errors import BenchError
from bench.methods import Method, MethodConfig, Scores, registered_temporarily
from bench.results import load_rows

W, H = 48, 40  # non-square on purpose: masks must come back as (H, W)


def _jpg(path: Path, value: int = 120) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)


def _mask(path: Path, box: tuple[int, int, int, int], value: int = 255, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((H, W), np.uint8)
    y0, y1, x0, x1 = box
    arr[y0:y1, x0:x1] = value
    Image.fromarray(arr, mode=mode).save(path)


# ----------------------------------------------------------------------------- Real-IAD

RIAD_SOURCE = ("Real-IAD is requested at https://huggingface.co/datasets/Real-IAD/Real-IAD "
               "(see https://realiad4ad.github.io/Real-IAD/)")


def _riad_name(cat: str, n: int, cls: str, view: int) -> str:
    return f"{cat}_{n:04d}_{cls}_C{view}_2023102113{n:02d}{view}0.jpg"


def make_realiad(root: Path, cat: str = "audiojack", views=(1,), images: str = "realiad_1024",
                 json_dir: str = "realiad_jsons_sv") -> Path:
    """Official layout: realiad_1024/<cat>/{OK,NG/<code>}/<sample>/..., <json_dir>/<cat>.json.

    Per view: 4 train OK samples; test 2 OK, NG/BX and NG/HS with masks, and one NG/QS view with
    ``mask_path: null`` (defect not visible in that view: normal, as the official loader)."""
    img_root = root / images / cat
    train, test = [], []

    def sample(rel: str, cls: str, mask: str | None) -> dict:
        return {"category": cat, "anomaly_class": cls, "image_path": rel, "mask_path": mask}

    for v in views:
        for n in range(1, 5):
            rel = f"OK/S{n:04d}/{_riad_name(cat, n, 'OK', v)}"
            _jpg(img_root / rel, n * 10 + v)
            train.append(sample(rel, "OK", None))
        for n in range(5, 7):
            rel = f"OK/S{n:04d}/{_riad_name(cat, n, 'OK', v)}"
            _jpg(img_root / rel, n * 10 + v)
            test.append(sample(rel, "OK", None))
        for n, code, box in ((7, "BX", (5, 15, 10, 30)), (8, "HS", (20, 30, 0, 8))):
            rel = f"NG/{code}/S{n:04d}/{_riad_name(cat, n, 'NG', v)}"
            _jpg(img_root / rel, n * 10 + v)
            mrel = rel[:-4] + "_mask.png"
            _mask(img_root / mrel, box)
            test.append(sample(rel, code, mrel))
        rel = f"NG/QS/S0009/{_riad_name(cat, 9, 'NG', v)}"
        _jpg(img_root / rel, 90 + v)
        test.append(sample(rel, "QS", None))
    doc = {"meta": {"prefix": f"{cat}/", "normal_class": "OK", "pre_transform": False},
           "train": train, "test": test}
    (root / json_dir).mkdir(parents=True, exist_ok=True)
    (root / json_dir / f"{cat}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return root


def test_realiad_single_view_split(tmp_path):
    root = make_realiad(tmp_path / "Real-IAD")
    cat = get_dataset("realiad").load(root, "audiojack")
    assert (len(cat.train), len(cat.test)) == (4, 5)
    assert list(cat.test.labels) == [0, 0, 1, 1, 0]
    assert cat.test.defect_types == ["good", "good", "BX", "HS", "good"]
    assert cat.train.ids[0] == "OK/S0001/audiojack_0001_OK_C1_20231021130110.jpg"
    assert cat.train[0].shape == (H, W, 3) and cat.has_masks
    m = cat.test.mask(2)
    assert m.shape == (H, W) and m.dtype == bool and m.sum() == 10 * 20 and m[5:15, 10:30].all()
    assert cat.test.mask(3).sum() == 10 * 8
    assert not cat.test.mask(0).any() and not cat.test.mask(4).any()
    assert cat.extra["view"] == "C1" and cat.extra["single_view_json"] and cat.extra["images"] == "realiad_1024"


def test_realiad_multi_view_json_keeps_the_top_view_only(tmp_path):
    root = make_realiad(tmp_path / "Real-IAD", views=(1, 2, 3, 4, 5), json_dir="realiad_jsons")
    cat = get_dataset("realiad").load(root, "audiojack")
    assert (len(cat.train), len(cat.test)) == (4, 5)  # of 20 / 25 entries over five cameras
    assert all("_C1_" in i for i in cat.train.ids + cat.test.images.ids)
    assert not cat.extra["single_view_json"]
    assert realiad.view_of("audiojack_0001_NG_C3_20231021130110.jpg") == "C3"


def test_realiad_prefers_1024_and_finds_nested_jsons(tmp_path):
    root = make_realiad(tmp_path / "Real-IAD", images="realiad_256", json_dir="realiad_jsons/realiad_jsons_sv")
    assert get_dataset("realiad").load(root, "audiojack").extra["images"] == "realiad_256"
    make_realiad(root, images="realiad_1024", json_dir="realiad_jsons/realiad_jsons_sv")
    assert get_dataset("realiad").load(root, "audiojack").extra["images"] == "realiad_1024"


def test_realiad_object_archive_extracted_into_its_own_folder(tmp_path):
    root = make_realiad(tmp_path / "Real-IAD")
    inner = root / "realiad_1024" / "audiojack"
    inner.rename(tmp_path / "moved")
    inner.mkdir()
    (tmp_path / "moved").rename(inner / "audiojack")
    cat = get_dataset("realiad").load(root, "audiojack")
    assert (len(cat.train), len(cat.test)) == (4, 5) and cat.test.mask(2).sum() == 200


def test_realiad_errors(tmp_path):
    spec = get_dataset("realiad")
    missing = tmp_path / "nowhere"
    with pytest.raises(BenchError) as e:
        spec.root(missing)
    assert str(e.value) == (f"dataset root {missing} does not exist: pass --root the Real-IAD folder that "
                            f"holds realiad_1024/ and realiad_jsons_sv/; {RIAD_SOURCE}")
    root = make_realiad(tmp_path / "Real-IAD")
    with pytest.raises(BenchError) as e:
        spec.load(root, "pcb")
    assert str(e.value) == (f"{root / 'realiad_jsons_sv' / 'pcb.json'}: no such file (the Real-IAD single-view "
                            f"split of pcb); extract realiad_jsons.zip into {root}; {RIAD_SOURCE}")
    gone = root / "realiad_1024/audiojack/NG/BX/S0007" / _riad_name("audiojack", 7, "NG", 1)
    gone.unlink()
    with pytest.raises(BenchError) as e:
        spec.load(root, "audiojack")
    assert str(e.value) == (f"{gone}: image listed in {root / 'realiad_jsons_sv' / 'audiojack.json'} is "
                            f"missing; extract audiojack.zip into {root / 'realiad_1024'} again; {RIAD_SOURCE}")
    with pytest.raises(BenchError) as e:
        spec.root(None)
    assert str(e.value) == ("dataset 'realiad' needs --root: pass the folder that holds its categories; "
                            + RIAD_SOURCE)


# ----------------------------------------------------------------------------- VisA

VISA_SOURCE = ("VisA is https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar "
               "(see https://github.com/amazon-science/spot-diff)")


def make_visa(root: Path, anno: bool = True) -> Path:
    """Released layout: split_csv/1cls.csv, <object>/Data/{Images/{Normal,Anomaly},Masks/Anomaly},
    <object>/image_anno.csv. candle: 5 train, 3 + 2 test; capsules: 2 train, 1 + 1 test.
    Masks hold the small label value 1 (not 255), as VisA's raw masks."""
    rows = [("object", "split", "label", "image", "mask")]
    annos = [("image", "label", "mask")]
    for obj, n_train, n_good, n_bad in (("candle", 5, 3, 2), ("capsules", 2, 1, 1)):
        for i in range(n_train + n_good):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            _jpg(root / rel, i)
            rows.append((obj, "train" if i < n_train else "test", "normal", rel, ""))
            annos.append((rel, "normal", ""))
        for i in range(n_bad):
            rel, mrel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG", f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            _jpg(root / rel, 100 + i)
            _mask(root / mrel, (0, 4, 0, 6 + i), value=1)
            rows.append((obj, "test", "anomaly", rel, mrel))
            annos.append((rel, ["bent", "melt, scratch"][i], mrel))
    (root / "split_csv").mkdir(parents=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    if anno:
        with (root / "candle" / "image_anno.csv").open("w", newline="") as f:
            csv.writer(f).writerows(annos)
    return root


def test_visa_1cls_split_and_raw_masks(tmp_path):
    root = make_visa(tmp_path / "VisA")
    assert (root / "split_csv/1cls.csv").read_text().splitlines()[-1].endswith(",anomaly,"
                                                                               "capsules/Data/Images/Anomaly/000.JPG,"
                                                                               "capsules/Data/Masks/Anomaly/000.png")
    cat = get_dataset("visa").load(root, "candle")
    assert (len(cat.train), len(cat.test)) == (5, 5)
    assert list(cat.test.labels) == [0, 0, 0, 1, 1]
    assert cat.test.defect_types == ["good", "good", "good", "bent", "melt, scratch"]
    assert cat.test.images.ids[3] == "candle/Data/Images/Anomaly/000.JPG"
    assert cat.train[0].shape == (H, W, 3)
    m = cat.test.mask(4)
    assert m.shape == (H, W) and m.sum() == 4 * 7  # value 1 counts: non-zero is a defect
    assert not cat.test.mask(0).any()
    other = get_dataset("visa").load(root, "capsules")
    assert (len(other.train), len(other.test), int(other.test.labels.sum())) == (2, 2, 1)
    assert other.test.defect_types == ["good", "anomaly"]  # no image_anno.csv: just "anomaly"


def test_visa_errors(tmp_path):
    spec = get_dataset("visa")
    missing = tmp_path / "nowhere"
    with pytest.raises(BenchError) as e:
        spec.root(missing)
    assert str(e.value) == (f"dataset root {missing} does not exist: pass --root the extracted VisA folder "
                            f"that holds split_csv/ and the 12 object folders; {VISA_SOURCE}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError) as e:
        spec.load(tmp_path / "empty", "candle")
    assert str(e.value) == (f"{tmp_path / 'empty' / 'split_csv' / '1cls.csv'}: no such file (VisA's 1-class "
                            f"split); pass --root the extracted VisA folder, which holds split_csv/1cls.csv; "
                            f"{VISA_SOURCE}")
    root = make_visa(tmp_path / "VisA")
    (root / "candle/Data/Masks/Anomaly/001.png").unlink()
    with pytest.raises(BenchError) as e:
        spec.load(root, "candle")
    assert str(e.value) == (f"{root / 'candle/Data/Masks/Anomaly/001.png'}: mask listed in "
                            f"{root / 'split_csv/1cls.csv'} is missing; extract the VisA tarball into {root} "
                            f"again; {VISA_SOURCE}")


def test_visa_split_files_that_list_an_image_twice_or_in_both_splits(tmp_path):
    """A hand-edited split csv: a test image counted twice, or a training image also tested."""
    spec = get_dataset("visa")
    csv_path = lambda root: root / "split_csv" / "1cls.csv"  # noqa: E731
    root = make_visa(tmp_path / "twice")
    lines = csv_path(root).read_text().splitlines()
    again = next(line for line in lines if "candle/Data/Images/Anomaly/001.JPG" in line)
    csv_path(root).write_text("\n".join(lines + [again]) + "\n")
    with pytest.raises(BenchError) as e:
        spec.load(root, "candle")
    assert str(e.value) == (f"visa/candle: candle/Data/Images/Anomaly/001.JPG is listed twice as a test image "
                            f"({csv_path(root)}); list each image once")
    root = make_visa(tmp_path / "both")
    lines = csv_path(root).read_text().splitlines()
    csv_path(root).write_text("\n".join(lines + [lines[1].replace(",train,", ",test,")]) + "\n")
    with pytest.raises(BenchError) as e:
        spec.load(root, "candle")
    assert str(e.value) == (f"visa/candle: candle/Data/Images/Normal/0000.JPG is both a training and a test "
                            f"image ({csv_path(root)}); a test image the model trained on inflates every "
                            "metric: fix the split")
    root = make_visa(tmp_path / "bom")  # a spreadsheet's byte-order mark before the header is no error
    csv_path(root).write_bytes(b"\xef\xbb\xbf" + csv_path(root).read_bytes())
    assert len(spec.load(root, "candle").test) == 5


# ----------------------------------------------------------------------------- CIFAR-10

CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def make_cifar(root: Path, per_batch: int = 10, n_test: int = 20) -> Path:
    """cifar-10-batches-py/ with the real file names and pickle layout: dicts with data
    (N, 3072) uint8 in R, G, B planes, labels, batch_label, filenames; batches.meta with
    label_names. Labels cycle 0..9, so each class has per_batch / 10 images per batch."""
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def write(name: str, n: int, batch_label: str) -> None:
        entry = {
            "batch_label": batch_label,
            "labels": [i % 10 for i in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{name}_{i}.png" for i in range(n)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f, protocol=2)

    for b in range(1, 6):
        write(f"data_batch_{b}", per_batch, f"training batch {b} of 5")
    write("test_batch", n_test, "testing batch 1 of 1")
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": list(cifar10.CATEGORIES), "num_cases_per_batch": per_batch,
                     "num_vis": 3072}, f, protocol=2)
    return root


def test_cifar10_one_class_split(tmp_path):
    root = make_cifar(tmp_path / "cifar")
    cat = get_dataset("cifar10").load(root, "cat")  # label 3
    assert (len(cat.train), len(cat.test)) == (5, 20)  # one per training batch; the whole test batch
    assert list(cat.test.labels) == [0 if i % 10 == 3 else 1 for i in range(20)]
    assert cat.test.defect_types[:4] == ["airplane", "automobile", "bird", "good"]
    assert cat.train.ids == [f"data_batch_{b}/00003" for b in range(1, 6)]
    assert cat.train[0].shape == (32, 32, 3) and cat.train[0].dtype == np.uint8
    assert not cat.has_masks and not cat.test.has_masks
    with pytest.raises(BenchError, match="no pixel ground truth"):
        cat.test.mask(0)
    # row layout: the first 1024 values are the red plane of the image in row-major order
    with (root / cifar10.FOLDER / "test_batch").open("rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][1]
    assert (cat.test.images[1][..., 0].ravel() == row[:1024]).all()
    assert (cat.test.images[1][..., 2].ravel() == row[2048:]).all()


@pytest.mark.parametrize("dataset, make, category", [("visa", make_visa, "candle"),
                                                     ("realiad", make_realiad, "audiojack"),
                                                     ("cifar10", make_cifar, "cat")])
def test_the_fit_key_follows_the_training_files_bytes(tmp_path, dataset, make, category):
    """Ids that are no file under root / category (a csv's, a json's, a pickled batch's): the fit
    cache's key still hashes the files the images come from, so another copy of the data with other
    pixels never reuses this copy's fit."""
    from bench.cache import data_fingerprint

    root = make(tmp_path / dataset)

    def key() -> tuple[str, Path]:
        cat = get_dataset(dataset).load(root, category)
        return data_fingerprint(cat.root / cat.name, cat.train.ids, cat.train_files), Path(cat.train_files[0])

    before, first = key()
    assert key()[0] == before
    first.write_bytes(first.read_bytes() + b"\0")  # other bytes, same name and id
    assert key()[0] != before


def test_a_training_file_that_vanished_is_named_not_skipped_in_the_fit_key(tmp_path):
    from bench.cache import data_fingerprint

    (tmp_path / "cat" / "train").mkdir(parents=True)
    (tmp_path / "cat" / "train" / "a.png").write_bytes(b"x")
    data_fingerprint(tmp_path / "cat", ["train/a.png"])
    with pytest.raises(BenchError, match=r"train/b.png: training image 'train/b.png' cannot be read"):
        data_fingerprint(tmp_path / "cat", ["train/a.png", "train/b.png"])


def test_cifar10_reads_what_torchvision_reads(tmp_path, monkeypatch):
    """torchvision's CIFAR10 refuses the fixture only for its md5; with that check off it decodes
    the same images and labels, so the fixture is in the real format and our decoding matches."""
    import torchvision.datasets.cifar as tv

    root = make_cifar(tmp_path / "cifar")
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        tv.CIFAR10(str(root), train=False)
    monkeypatch.setattr(tv, "check_integrity", lambda *a, **k: True)
    theirs = tv.CIFAR10(str(root), train=False)
    ours = cifar10.load_category(root, "airplane")
    assert theirs.classes == list(cifar10.CATEGORIES)
    assert np.array_equal(theirs.data, np.stack(list(ours.test.images)))
    assert list(ours.test.labels) == [int(t != 0) for t in theirs.targets]
    train = tv.CIFAR10(str(root), train=True)
    assert np.array_equal(train.data[np.array(train.targets) == 0], np.stack(list(ours.train)))


MISSING = {
    "cifar10": lambda root: (f"{root / 'cifar-10-batches-py' / 'data_batch_1'}: no such file and no network to "
                             f"download CIFAR-10; get cifar-10-python.tar.gz (python version) from {CIFAR_PAGE} "
                             f"and extract it into {root} (it makes cifar-10-batches-py/)"),
    "mnist": lambda root: (f"{root / 'MNIST' / 'raw' / 'train-images-idx3-ubyte'}: no such file and no network to "
                           "download MNIST; get train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                           "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
                           f"https://yann.lecun.com/exdb/mnist/ into {root / 'MNIST' / 'raw'}"),
}


@pytest.mark.parametrize("name, module", [("cifar10", cifar10), ("mnist", mnist)])
def test_missing_without_network(tmp_path, monkeypatch, name, module):
    monkeypatch.setattr(module, "_network", lambda: False)
    monkeypatch.setattr(module, "download", lambda root: pytest.fail("must not download"))
    root = tmp_path / name
    with pytest.raises(BenchError) as e:
        get_dataset(name).root(root)
    assert str(e.value) == MISSING[name](root)


@pytest.mark.parametrize("name, module, make, category, n_train", [
    ("cifar10", cifar10, make_cifar, "truck", 5),
    ("mnist", mnist, make_mnist, "0", 3),
])
def test_absent_data_is_downloaded_when_the_network_works(tmp_path, monkeypatch, name, module, make, category,
                                                          n_train):
    calls = []
    monkeypatch.setattr(module, "_network", lambda: True)
    monkeypatch.setattr(module, "download", lambda root: calls.append(root) or make(root))
    root = tmp_path / name
    assert get_dataset(name).root(root) == root and calls == [root]
    assert get_dataset(name).root(root) == root and calls == [root]  # present: no second download
    assert len(get_dataset(name).load(root, category).train) == n_train


@dataclasses.dataclass(frozen=True)
class _MeanConfig(MethodConfig):
    image_size: int = 8


class _MeanMethod(Method):
    """|image - mean training image| at 8 px: a method in seconds, with maps."""

    Config = _MeanConfig

    def _small(self, img):
        s = self.config.image_size
        return np.asarray(Image.fromarray(img).resize((s, s)), np.float32).mean(-1)

    def fit(self, train):
        self.mean = np.mean([self._small(x) for x in train], axis=0)

    def score(self, images):
        maps = np.stack([np.abs(self._small(x) - self.mean) for x in images]).astype(np.float32)
        return Scores(maps.reshape(len(maps), -1).mean(1), maps)

    def fitted_state(self):
        return {"mean": self.mean}

    def load_fitted_state(self, state):
        self.mean = state["mean"]

    def mask_transform(self, mask):
        raise AssertionError("no masks on CIFAR-10: the runner must not ask for them")


def test_cifar10_grid_reports_image_metrics_and_nan_pixel_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))
    with registered_temporarily("mean_probe", _MeanMethod, summary="test probe"):
        root = make_cifar(tmp_path / "cifar")
        code, out, err = run_cli(monkeypatch, capsys, "grid", "-m", "mean_probe", "-d", "cifar10", "--root", root,
                                 "-c", "cat", "--corruptions", "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 0, err
    rows = load_rows(tmp_path / "run")
    assert list(rows["status"]) == ["ok"], rows.get("error")
    row = rows.iloc[0]
    assert 0.0 <= row["image_auroc"] <= 1.0 and row["n_test"] == 20
    assert np.isnan(row["pixel_auroc"]) and np.isnan(row["aupro"]) and np.isnan(row["pixel_ap"])


# ----------------------------------------------------------------------------- MVTec AD, BTAD, MPDD


def test_registered_category_lists_are_the_real_folder_names():
    assert DATASETS["mvtec_ad"].categories == (
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
        "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
    assert DATASETS["btad"].categories == ("01", "02", "03")
    assert DATASETS["mpdd"].categories == (
        "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
    assert len(DATASETS["realiad"].categories) == 30 and DATASETS["realiad"].categories[:3] == (
        "audiojack", "bottle_cap", "button_battery")
    assert DATASETS["visa"].categories == (
        "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
        "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum")
    assert DATASETS["cifar10"].categories == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_btad_real_layout(tmp_path):
    """BTAD as released (BTech_Dataset_transformed/): train/ok, test/ok, test/ko and masks
    ground_truth/ko/<stem>.png; product 03 uses .bmp for images and masks."""
    root = tmp_path / "BTech_Dataset_transformed"
    for product, ext, mext in (("01", ".bmp", ".png"), ("03", ".bmp", ".bmp")):
        base = root / product
        for i in range(3):
            _jpg(base / "train/ok" / f"{i:04d}.bmp", i)
        _jpg(base / "test/ok" / f"{0:04d}{ext}", 7)
        for i in range(2):
            _jpg(base / "test/ko" / f"{i:04d}{ext}", 8 + i)
            _mask(base / "ground_truth/ko" / f"{i:04d}{mext}", (0, 5, 0, 5))
    spec = get_dataset("btad")
    assert mvtec.categories_in(root) == ["01", "03"]
    for product in ("01", "03"):
        cat = spec.load(spec.root(root), product)
        assert (len(cat.train), len(cat.test)) == (3, 3)
        assert list(cat.test.labels) == [1, 1, 0]  # ko sorts before ok
        assert cat.test.defect_types == ["ko", "ko", "ok"]
        assert cat.test.mask(0).sum() == 25 and not cat.test.mask(2).any()
    missing = tmp_path / "btad"
    with pytest.raises(BenchError) as e:
        spec.root(missing)
    assert str(e.value) == (f"dataset root {missing} does not exist: pass --root the folder that holds the btad "
                            "category folders; BTAD is http://avires.dimi.uniud.it/papers/btad/btad.zip "
                            "(its BTech_Dataset_transformed/ folder)")


def test_mpdd_real_layout(tmp_path, mvtec_factory):
    root = mvtec_factory(tmp_path / "MPDD", "bracket_black", n_train=3, n_good=2, n_bad=2)
    cat = get_dataset("mpdd").load(root, "bracket_black")
    assert (len(cat.train), len(cat.test), int(cat.test.labels.sum())) == (3, 4, 2)
    with pytest.raises(BenchError) as e:
        get_dataset("mpdd").root(tmp_path / "none")
    assert str(e.value).endswith("; MPDD is linked from https://github.com/stepanje/MPDD")


def test_bench_list_datasets_shows_the_new_loaders(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "list", "datasets")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert {"realiad", "visa", "cifar10", "mvtec_ad", "btad", "mpdd"} <= set(names)
