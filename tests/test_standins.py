"""Stand-in MNIST / MNIST-M and PACS (``bench.datasets.standins``): the loaders read them as the
real datasets, the same seed writes the same bytes in every process, the rows say what they are,
and the digit classes are learnable."""
from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _domain_data import make_mnist
from _grids import GrayProbe, cache_env
from bench.datasets import mnist, mnist_m, pacs, standins
from bench.datasets.base import STANDIN_FILE, standin, standin_mark
from bench.datasets.registry import get_dataset
from bench.errors import BenchError
from bench.executors import LocalExecutor, run_grid
from bench.grid import GridSpec
from bench.methods import registered_temporarily
from bench.results import load_rows

MARK = "stand-in (bench.datasets.standins, seed 0)"


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root``: relative path -> sha256 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.datasets.standins", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> Path:
    return standins.make_mnist(tmp_path_factory.mktemp("standin-mnist"), per_class_train=20, per_class_test=10)


@pytest.fixture(scope="module")
def pacs_root(tmp_path_factory) -> Path:
    return standins.make_pacs(tmp_path_factory.mktemp("standin-pacs"), per_class=5)


def test_mnist_standin_reads_as_mnist_and_mnist_m(mnist_root):
    cat = get_dataset("mnist").load(mnist_root, "3")
    assert len(cat.notes) == 1 and f"{MARK}, synthetic images in MNIST's layout, not MNIST itself" in cat.notes[0]
    assert len(cat.train) == 20 and list(cat.domains) == ["mnist", "mnist_m"]
    digits = np.stack([x[..., 0] for x in cat.train])
    assert digits.shape == (20, 28, 28) and (digits == 0).mean() > 0.6 and digits.max() > 200  # ink on black
    for domain in cat.domains:
        split = cat.split(domain)
        assert len(split) == 100 and split.labels.sum() == 90  # 10 threes of 100
        assert sorted(set(split.defect_types)) == ["0", "1", "2", "4", "5", "6", "7", "8", "9", "good"]
        assert split.source.startswith(MARK + ": ")
    assert "MNIST test set" in cat.split("mnist").source
    generated = cat.split("mnist_m")
    assert "MNIST-M generated from MNIST's test digits and the 7 photographs" in generated.source
    colour = generated.images[0]
    assert colour.shape == (28, 28, 3) and not (colour[..., 0] == colour[..., 1]).all()
    _, test_labels = mnist.read_split(mnist_root, "t10k")
    assert np.bincount(test_labels).tolist() == [10] * 10  # per_class_test of each digit, in a seeded order
    assert test_labels[:10].tolist() != sorted(test_labels[:10].tolist()) or len(set(test_labels[:10])) > 1
    photos = mnist_m.load_backgrounds(mnist_root / mnist_m.BACKGROUNDS[0])
    assert len(photos) == len(standins.BSDS_PHOTOS) and {p.shape for p in photos} == {(321, 481, 3)}


def test_pacs_standin_reads_as_pacs(pacs_root):
    cat = get_dataset("pacs").load(pacs_root, "giraffe")
    assert len(cat.notes) == 1 and "not PACS itself" in cat.notes[0]
    assert list(cat.domains) == list(pacs.DOMAINS)
    assert cat.train.ids == [f"photo/giraffe/{i:04d}.jpg" for i in range(4)]  # crossval: the last of 5
    photo = cat.split("photo")
    assert len(photo) == 7 and photo.labels.tolist() == [int(c != "giraffe") for c in pacs.CLASSES]
    for domain in pacs.DOMAINS[1:]:
        split = cat.split(domain)
        assert len(split) == 35 and split.labels.sum() == 30 and split.source.startswith(MARK + ": PACS " + domain)
    assert photo.source.startswith(MARK + ": PACS photo: photo_test_kfold.txt without")
    img = cat.train[0]
    assert img.shape == (227, 227, 3) and img.dtype == np.uint8
    sketch = cat.split("sketch").images[0]
    assert (sketch[..., 0] == sketch[..., 2]).all() and np.median(sketch) == 255  # gray lines on white
    assert cat.split("sketch").images.ids[0].endswith(".png")  # sketches are .png, as released
    assert sorted(p.name for p in (pacs_root / "pacs_label").iterdir()) == sorted(
        f"{d}_{s}_kfold.txt" for d in pacs.DOMAINS for s in ("train", "crossval", "test"))


def test_pacs_domains_render_the_same_classes_differently(pacs_root):
    """Per domain, the mean colour statistics differ (a style shift), while the classes differ
    within a domain (a class is content, not a colour cast of the domain)."""
    def stats(domain, cls):
        imgs = [standins.pacs_image(domain, cls, i, 0).astype(np.float64) for i in range(3)]
        imgs = [np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x for x in imgs]
        return np.array([[x.mean(), x.std(), np.abs(np.diff(x, axis=1)).mean()] for x in imgs]).mean(0)

    by_domain = {d: stats(d, "house") for d in pacs.DOMAINS}
    assert by_domain["sketch"][0] > 200 and by_domain["photo"][0] < 200  # white paper vs a scene
    assert by_domain["cartoon"][2] < by_domain["photo"][2]  # flat fills: fewer steps between pixels
    assert not np.allclose(standins.pacs_image("photo", "dog", 0, 0), standins.pacs_image("photo", "horse", 0, 0))


@pytest.mark.slow  # two fresh processes
def test_same_seed_same_bytes_in_another_process_other_seed_other_images(tmp_path):
    here = standins.make_mnist(tmp_path / "a", per_class_train=4, per_class_test=2, seed=0)
    run = _cli("mnist", tmp_path / "b", "--per-class", 4, "--seed", 0)
    assert run.returncode == 0, run.stderr
    assert _tree(here) == _tree(tmp_path / "b") and len(_tree(here)) == 4 + len(standins.BSDS_PHOTOS) + 1
    other = standins.make_mnist(tmp_path / "c", per_class_train=4, per_class_test=2, seed=1)
    a, c = _tree(here), _tree(other)
    raw = [k for k in a if k.startswith("MNIST/raw/") and "images" in k]
    assert len(raw) == 2 and all(a[k] != c[k] for k in raw)
    assert all(a[k] == c[k] for k in a if k.startswith("BSR/"))  # the photographs do not depend on the seed

    here = standins.make_pacs(tmp_path / "p", per_class=2, seed=0)
    run = _cli("pacs", tmp_path / "q", "--per-class", 2)
    assert run.returncode == 0, run.stderr
    assert _tree(here) == _tree(tmp_path / "q") and len(_tree(here)) == 4 * 7 * 2 + 12 + 1
    other = _tree(standins.make_pacs(tmp_path / "r", per_class=2, seed=3))
    images = [k for k in _tree(here) if k.endswith((".jpg", ".png"))]
    assert all(_tree(here)[k] != other[k] for k in images)
    assert all(_tree(here)[k] == other[k] for k in _tree(here) if k.startswith("pacs_label/"))


def test_standin_md_and_the_recorded_source(tmp_path):
    root = standins.make_mnist(tmp_path / "m", per_class_train=2, per_class_test=1, seed=7)
    text = (root / STANDIN_FILE).read_text()
    assert text.splitlines()[0] == "# Stand-in MNIST / MNIST-M (bench.datasets.standins, seed 7)"
    assert "**This is not the real dataset.**" in text and "- seed: 7" in text and "scikit-image" in text
    assert "--per-class 2 --seed 7" in text
    assert standin(root) == standin_mark(7) == "stand-in (bench.datasets.standins, seed 7)"
    assert standin(tmp_path) == ""  # no STANDIN.md: real data, nothing added
    assert get_dataset("mnist").load(root, "even").split("mnist_m").source.startswith(standin_mark(7))
    text = (standins.make_pacs(tmp_path / "p", per_class=2, seed=5) / STANDIN_FILE).read_text()
    assert text.startswith("# Stand-in PACS (bench.datasets.standins, seed 5)\n") and "art_painting =" in text


def test_cli_and_where_it_refuses(tmp_path, capsys):
    assert standins.main(["pacs", str(tmp_path / "p"), "--per-class", "3", "--seed", "2"]) == 0
    assert f"stand-in PACS (seed 2) is in {tmp_path / 'p'}" in capsys.readouterr().out
    assert len(list((tmp_path / "p" / "cartoon" / "dog").iterdir())) == 3
    # over an earlier stand-in of the same dataset: rewritten, the earlier images gone
    assert standins.main(["pacs", str(tmp_path / "p"), "--per-class", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "p" / "cartoon" / "dog").iterdir()) == ["0000.jpg", "0001.jpg"]
    assert standin(tmp_path / "p") == standin_mark(0)
    # never over real data, nor over another dataset's stand-in
    real = tmp_path / "real"
    (real / "MNIST" / "raw").mkdir(parents=True)
    capsys.readouterr()
    assert standins.main(["mnist", str(real)]) == 1
    assert "is not empty and holds no STANDIN.md" in capsys.readouterr().err
    with pytest.raises(BenchError, match=r"holds another stand-in \(Stand-in PACS"):
        standins.make_mnist(tmp_path / "p", per_class_train=1, per_class_test=1)
    for bad, says in ((["mnist", str(tmp_path / "x"), "--per-class", "0"], "--per-class must be at least 1"),
                      (["visa", str(tmp_path / "x")], "invalid choice: 'visa'")):
        with pytest.raises(SystemExit) as exit_:
            standins.main(bad)
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    with pytest.raises(BenchError, match="needs 2 images per class"):
        standins.make_pacs(tmp_path / "y", per_class=1)
    assert not (tmp_path / "x").exists()


@contextlib.contextmanager
def _probe():
    with registered_temporarily("probe", GrayProbe, summary="gray probe") as name:
        yield name


def _grid(spec: GridSpec, tmp: Path):
    with _probe(), cache_env(tmp / "cache"), pytest.warns(UserWarning, match="stand-in"):
        summary = run_grid(spec, tmp / "run", LocalExecutor(workers=1, threads=1), show_progress=False)
    assert summary.failed == 0, summary.failures
    return load_rows(tmp / "run")


@pytest.mark.slow  # an end-to-end grid
def test_probe_on_the_mnist_standin_learns_the_digits(mnist_root, tmp_path):
    """A gray-level probe (mean training digit) through a whole grid: rows for both domains, the
    stand-in recorded, and on MNIST the classes are learnable (image AUROC well above chance)."""
    spec = GridSpec(methods=["probe"], dataset="mnist", root=str(mnist_root), categories=["0", "1", "even"],
                    domains=["all"], corruptions=["clean"], device="cpu", bootstrap=0)
    rows = _grid(spec, tmp_path)
    assert len(rows) == 6 and set(rows["domain"]) == {"mnist", "mnist_m"}
    assert all(s.startswith(MARK + ": ") for s in rows["domain_source"])
    assert rows.loc[rows["domain"] == "mnist_m", "domain_source"].str.contains("generated").all()
    on_mnist = rows[rows["domain"] == "mnist"].set_index("category")["image_auroc"]
    assert on_mnist.max() > 0.75 and (on_mnist[["0", "1"]] > 0.5).all()


def test_probe_on_the_pacs_standin_runs_every_domain(pacs_root, tmp_path):
    spec = GridSpec(methods=["probe"], dataset="pacs", root=str(pacs_root), categories=["house"],
                    domains=["all"], corruptions=["clean"], device="cpu", bootstrap=0)
    rows = _grid(spec, tmp_path)
    assert sorted(rows["domain"]) == sorted(pacs.DOMAINS)
    assert all(s.startswith(MARK + ": PACS ") for s in rows["domain_source"])
    assert rows["image_auroc"].notna().all()


def test_a_fit_is_not_reused_for_other_images_under_the_same_ids(pacs_root, tmp_path):
    """MNIST's ids name positions in an IDX file and PACS's are relative to its image folder: the
    fit key counts the files they are read from (two stand-ins share every id, not a fit)."""
    from types import SimpleNamespace

    from bench import runner
    from bench.cache import FitCache
    from bench.grid import Cell
    from bench.methods import registered

    def key(dataset, root, category):
        cat = get_dataset(dataset).load(root, category)
        ctx = SimpleNamespace(fit_cache=SimpleNamespace(key=FitCache.key), category=lambda name: cat, _train_data={})
        ctx.train_data = lambda name: runner.RunContext.train_data(ctx, name)  # the real one, on this category
        cell = Cell("patchcore", dataset, category, "clean", 0, 0, "native", registered()["patchcore"].config())
        return cat.train.ids, runner.fit_key(cell, ctx)

    seeds = [key("mnist", make_mnist(tmp_path / f"m{s}", seed=s), "3") for s in (0, 1)]  # labels 0..9 cycling
    assert seeds[0][0] == seeds[1][0] and seeds[0][1] != seeds[1][1]
    copy = tmp_path / "pacs-copy"
    shutil.copytree(pacs_root, copy)  # copy2: sizes and mtimes kept
    before = key("pacs", pacs_root, "dog")
    assert key("pacs", copy, "dog") == before
    (copy / "photo" / "dog" / "0001.jpg").write_bytes((copy / "photo" / "dog" / "0002.jpg").read_bytes())
    after = key("pacs", copy, "dog")
    assert after[0] == before[0] and after[1] != before[1]


# ------------------------------------------------------------------ MVTec AD timing stand-in


def test_mvtec_shape_is_the_published_size():
    from bench.datasets.mvtec import MVTEC_CATEGORIES, MVTEC_SHAPE

    assert tuple(MVTEC_SHAPE) == MVTEC_CATEGORIES
    assert sum(s[2] for s in MVTEC_SHAPE.values()) == 3629  # training images
    assert sum(s[3] + sum(s[4].values()) for s in MVTEC_SHAPE.values()) == 1725  # test images
    assert sum(s[3] for s in MVTEC_SHAPE.values()) == 467  # of them normal
    assert sum(len(s[4]) for s in MVTEC_SHAPE.values()) == 73  # defect types
    assert {c for c, s in MVTEC_SHAPE.items() if s[1] == 1} == {"grid", "screw", "zipper"}


def test_mvtec_image_is_seeded_sized_and_masked():
    photos = standins.textures.scaled_photos()
    img, mask = standins.mvtec_image("metal_nut", "test", "bent", 3, 0, photos)
    again, mask2 = standins.mvtec_image("metal_nut", "test", "bent", 3, 0, photos)
    other, _ = standins.mvtec_image("metal_nut", "test", "bent", 3, 1, photos)
    assert img.shape == (700, 700, 3) and img.dtype == np.uint8 and mask.shape == (700, 700)
    assert np.array_equal(img, again) and np.array_equal(mask, mask2) and not np.array_equal(img, other)
    assert 0 < mask.mean() < 0.2
    gray, none = standins.mvtec_image("grid", "train", "good", 0, 0, photos)
    assert gray.shape == (1024, 1024) and none is None  # MVTec AD's grid is a 1-channel PNG


@pytest.mark.slow
def test_mvtec_standin_reads_as_mvtec_ad_with_its_counts(tmp_path):
    root = standins.make_mvtec_ad(tmp_path / "mvtec", ["toothbrush"])
    assert (root / "bottle").exists() is False
    ds = get_dataset("mvtec_ad")
    cat = ds.load(ds.root(root), "toothbrush")
    assert any("not mvtec_ad itself" in note for note in cat.notes)  # warned once per category
    assert (len(cat.train), len(cat.test.images), int(cat.test.labels.sum())) == (60, 42, 30)
    assert cat.test.source == MARK
    assert cat.train[0].shape == (1024, 1024, 3)
    assert cat.test.mask(int(np.argmax(cat.test.labels))).any()
    assert standin(root) == MARK and "timing stand-in" in (root / STANDIN_FILE).read_text()


def test_mvtec3d_standin_has_the_layout_the_marker_and_refuses_unknown_categories(tmp_path):
    from bench.datasets.mvtec3d import load_category
    from bench.datasets.standins import main, make_mvtec3d

    root = make_mvtec3d(tmp_path / "m3d", ["bagel", "tire"], seed=2, per_class=3)
    assert (root / "STANDIN.md").read_text().startswith("# Stand-in MVTec 3D-AD (bench.datasets.standins, seed 2)")
    cat = load_category(root, "tire")
    assert len(cat.train) == 3 and cat.test.source.startswith("stand-in (bench.datasets.standins, seed 2)")
    assert main(["mvtec3d", str(tmp_path / "x"), "--categories", "potatoe"]) == 1


def test_realiad_standin_reads_as_realiad_marked_and_byte_identical(tmp_path):
    a = standins.make_realiad(tmp_path / "a", ["audiojack"], per_class=8)
    b = standins.make_realiad(tmp_path / "b", ["audiojack"], per_class=8)

    assert _tree(a) == _tree(b)  # the same seed: the same bytes
    cat = get_dataset("realiad").load(a, "audiojack")
    assert (len(cat.train), len(cat.test)) == (8, 4 + 3 * 2)  # half as many normal tests, a quarter per code
    assert cat.test.labels.tolist() == [0] * 4 + [1] * 6
    assert cat.test.source == standin_mark(0) and "not realiad itself" in cat.notes[-1]
    assert all(cat.test.mask(i).any() for i in range(4, 10)) and cat.test.defect_types[4:] == ["BX", "BX", "HS", "HS",
                                                                                              "QS", "QS"]
    with pytest.raises(BenchError, match="unknown Real-IAD categories nope"):
        standins.make_realiad(tmp_path / "c", ["nope"])


def test_cifar10_standin_reads_as_cifar10_marked_and_byte_identical(tmp_path):
    a = standins.make_cifar10(tmp_path / "a", per_class=10)
    assert _tree(a) == _tree(standins.make_cifar10(tmp_path / "b", per_class=10))
    cat = get_dataset("cifar10").load(a, "dog")
    assert (len(cat.train), len(cat.test.labels), int(cat.test.labels.sum())) == (10, 20, 18)  # 2 test images a class
    assert cat.test.source == standin_mark(0) and "not cifar10 itself" in cat.notes[-1]
    assert cat.train[0].shape == (32, 32, 3)


def test_the_suggested_command_asks_for_the_categories_written(tmp_path, capsys):
    """A stand-in of some categories: the command printed after it must not ask for the rest."""
    assert standins.main(["mvtec3d", str(tmp_path / "m3d"), "--categories", "bagel", "--per-class", "1"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"bench reproduce ttad-table2 --root {tmp_path / 'm3d'} --categories bagel")
    assert standins.main(["realiad", str(tmp_path / "riad"), "--per-class", "2"]) == 0  # its default: the first two
    from bench.datasets.realiad import CATEGORIES

    assert capsys.readouterr().out.rstrip().endswith(f"--categories {','.join(CATEGORIES[:2])}")
