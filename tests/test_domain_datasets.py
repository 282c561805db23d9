"""MNIST / MNIST-M and PACS as released: fixtures in their real formats, the one-vs-all and
multi-class (``even``) splits, the test domains, MNIST-M's generator and the missing-data lines."""
from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _domain_data import (make_bsds, make_mnist, make_mnist_m_folder, make_mnist_m_pickle, make_mnist_m_torch,
                          make_pacs, mnist_m_images)
from bench.datasets import mnist, mnist_m, pacs
from bench.datasets.registry import get_dataset
from bench.errors import BenchError

LABELS = [i % 10 for i in range(20)]  # make_mnist's test labels (n_test=20)


# --------------------------------------------------------------------------- MNIST


def test_mnist_reads_what_torchvision_reads(tmp_path):
    """torchvision's MNIST decodes the fixture's extracted IDX files into the same digits and labels."""
    import torchvision.datasets as tv

    root = make_mnist(tmp_path, gz=False)
    ours = mnist.load_category(root, "3")
    for train, images, labels in ((False, [x[..., 0] for x in ours.test.images], ours.test.labels),
                                  (True, [x[..., 0] for x in ours.train], None)):
        theirs = tv.MNIST(str(root), train=train)
        if train:
            assert np.array_equal(theirs.data.numpy()[theirs.targets.numpy() == 3], np.stack(images))
        else:
            assert np.array_equal(theirs.data.numpy(), np.stack(images))
            assert list(labels) == [int(t != 3) for t in theirs.targets]


def test_mnist_one_vs_all(tmp_path):
    cat = get_dataset("mnist").load(make_mnist(tmp_path), "3")
    assert (len(cat.train), len(cat.test)) == (3, 20)  # 30 training digits, 3 of them threes
    assert cat.train.ids == ["train/00003", "train/00013", "train/00023"]
    assert list(cat.test.labels) == [int(y != 3) for y in LABELS]
    assert cat.test.defect_types[:4] == ["0", "1", "2", "good"]
    img = cat.test.images[0]
    assert img.shape == (28, 28, 3) and img.dtype == np.uint8 and (img[..., 0] == img[..., 2]).all()
    assert not cat.has_masks and list(cat.domains) == ["mnist", "mnist_m"]
    assert cat.split("mnist") is cat.test and cat.split("") is cat.test
    assert "t10k-images-idx3-ubyte.gz" in cat.test.source


def test_mnist_even_is_the_multi_class_setting(tmp_path):
    cat = mnist.load_category(make_mnist(tmp_path), "even")
    assert len(cat.train) == 15 and cat.extra["normal_classes"] == ["0", "2", "4", "6", "8"]
    assert list(cat.test.labels) == [y % 2 for y in LABELS]
    assert set(cat.test.defect_types) == {"good", "1", "3", "5", "7", "9"}


def test_mnist_unknown_category(tmp_path):
    with pytest.raises(BenchError, match=r"mnist has no category 'odd'; its categories are 0, 1, .*9, even"):
        mnist.load_category(make_mnist(tmp_path), "odd")


def test_mnist_truncated_idx_file(tmp_path):
    root = make_mnist(tmp_path, gz=False)
    path = root / mnist.RAW / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(BenchError, match=r"t10k-images-idx3-ubyte: holds 15675 values for dimensions \(20, 28, 28\)"):
        mnist.load_category(root, "0")


# --------------------------------------------------------------------------- MNIST-M, released forms


def test_mnist_m_released_folder(tmp_path):
    labels = [7, 3, 3, 0, 9]
    root = make_mnist_m_folder(make_mnist(tmp_path), labels)
    split = mnist.load_category(root, "3").split("mnist_m")
    assert len(split) == 5 and list(split.labels) == [1, 0, 0, 1, 1]
    assert split.defect_types == ["7", "good", "good", "0", "9"]
    assert split.images.ids[0] == "mnist_m_test/00000000.png"
    assert np.array_equal(split.images[4], mnist_m_images(5)[4])
    assert split.source.startswith("MNIST-M test split, released folder")


def test_mnist_m_label_file_errors(tmp_path):
    root = make_mnist_m_folder(make_mnist(tmp_path), [1, 2])
    (root / "mnist_m" / "mnist_m_test_labels.txt").write_text("00000000.png 1\n00000001.png\n")
    with pytest.raises(BenchError, match=r"mnist_m_test_labels.txt:2: expected 'FILE LABEL' with a digit label"):
        mnist.load_category(root, "0").split("mnist_m")


def test_mnist_m_pickle_with_labels(tmp_path):
    root = make_mnist_m_pickle(make_mnist(tmp_path), 6, labels=[5, 5, 1, 2, 5, 0])
    split = mnist.load_category(root, "5").split("mnist_m")
    assert list(split.labels) == [0, 0, 1, 1, 0, 1]
    assert split.images.ids[:2] == ["mnistm_data.pkl/test/00000", "mnistm_data.pkl/test/00001"]
    assert np.array_equal(np.stack(list(split.images)), mnist_m_images(6))
    assert "test_labels" in split.source


def test_mnist_m_label_less_pickle_takes_mnist_test_labels(tmp_path):
    """tf-dann / keras scripts build 'test' from MNIST's test digits in order and store no labels."""
    root = make_mnist_m_pickle(make_mnist(tmp_path), 20, name="keras_mnistm.pkl")
    split = mnist.load_category(root, "4").split("mnist_m")
    assert list(split.labels) == [int(y != 4) for y in LABELS]
    assert "labels: MNIST's test labels, in order" in split.source


def test_mnist_m_label_less_pickle_of_another_size_is_refused(tmp_path):
    root = make_mnist_m_pickle(make_mnist(tmp_path), 7)
    with pytest.raises(BenchError, match=r"mnistm_data.pkl: 7 test images without labels"):
        mnist.load_category(root, "4").split("mnist_m")


def test_mnist_m_pickle_without_test_images(tmp_path):
    make_mnist(tmp_path)
    with (tmp_path / "mnistm_data.pkl").open("wb") as f:
        pickle.dump({"train": mnist_m_images(2)}, f)
    with pytest.raises(BenchError, match=r"mnistm_data.pkl: an MNIST-M pickle is a dict with the test images "
                                         r"under test or test_images; this one has \['train'\]"):
        mnist.load_category(tmp_path, "4").split("mnist_m")


def test_mnist_m_torch_file(tmp_path):
    root = make_mnist_m_torch(make_mnist(tmp_path), [2, 8, 2])
    split = mnist.load_category(root, "2").split("mnist_m")
    assert list(split.labels) == [0, 1, 0] and split.images.ids[2] == "mnist_m_test.pt/00002"
    assert np.array_equal(split.images[1], mnist_m_images(3)[1])
    assert split.source.startswith("MNIST-M test split, torch file")


def test_mnist_m_forms_are_detected_in_order(tmp_path):
    root = make_mnist(tmp_path)
    make_bsds(root)
    assert mnist_m.find(root)[0] == "generate"
    make_mnist_m_torch(root, [1])
    assert mnist_m.find(root)[0] == "torch"
    make_mnist_m_pickle(root / "mnist_m", 2, labels=[1, 2])
    assert mnist_m.find(root)[0] == "pickle"
    make_mnist_m_folder(root, [1, 2, 3])
    assert mnist_m.find(root) == ("folder", root / "mnist_m")


def test_mnist_m_missing_is_one_line_and_only_for_its_cells(tmp_path):
    root = make_mnist(tmp_path)
    cat = mnist.load_category(root, "1")  # the in-distribution domain needs no MNIST-M
    assert len(cat.split("mnist")) == 20
    with pytest.raises(BenchError) as e:
        cat.split("mnist_m")
    assert str(e.value) == (
        f"{root / 'mnist_m' / 'mnist_m_test_labels.txt'}: no such file, nor mnistm_data.pkl, mnist_m_test.pt or "
        f"BSDS500 photos ({root / 'BSR/BSDS500/data/images/train'}) to generate MNIST-M from; get mnist_m.tar.gz "
        f"from http://yaroslav.ganin.net/ (Ganin & Lempitsky 2015, mnist_m.tar.gz) and extract it into {root} "
        "(it makes mnist_m/), or extract BSR_bsds500.tgz there")
    with pytest.raises(BenchError, match=r"mnist/1 has no test domain 'svhn' \(its domains: mnist, mnist_m\)"):
        cat.split("svhn")


# --------------------------------------------------------------------------- MNIST-M, generated


def test_generator_inverts_a_random_crop_with_the_binarised_digit():
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 12:15] = 1  # any non-zero value is ink
    flat = np.zeros((30, 30, 3), np.uint8) + np.array([10, 100, 200], np.uint8)
    out = mnist_m.generate(digits, [flat], seed=0)
    assert out.dtype == np.uint8 and out.shape == (3, 28, 28, 3)
    assert (out[:, 10:18, 12:15] == [245, 155, 55]).all() and (out[:, :10] == [10, 100, 200]).all()
    photo = np.random.default_rng(0).integers(0, 256, (40, 45, 3), dtype=np.uint8)
    out = mnist_m.generate(digits, [photo], seed=3)[0]
    ink = digits[0] > 0
    crops = [(y, x) for y in range(40 - 27) for x in range(45 - 27)
             if (photo[y:y + 28, x:x + 28][~ink] == out[~ink]).all()
             and (255 - photo[y:y + 28, x:x + 28][ink] == out[ink]).all()]
    assert len(crops) == 1  # one crop of the photo, inverted under the digit


def _generated_digest(root) -> str:
    split = mnist.load_category(root, "0").split("mnist_m")
    return hashlib.sha256(np.stack(list(split.images)).tobytes()).hexdigest()


def test_generated_mnist_m_is_identical_across_runs(tmp_path):
    root = make_bsds(make_mnist(tmp_path))
    split = mnist.load_category(root, "0").split("mnist_m")
    assert len(split) == 20 and list(split.labels) == [int(y != 0) for y in LABELS]
    assert "generated from MNIST's test digits and the 3 photographs" in split.source
    assert f"seed {mnist_m.GENERATOR_SEED}" in split.source
    assert split.images.ids[0].startswith(f"mnist_m_generated_s{mnist_m.GENERATOR_SEED}_")
    here = _generated_digest(root)
    assert _generated_digest(root) == here  # a second load in this process
    code = ("import sys, hashlib, numpy as np; from bench.datasets import mnist; "
            "s = mnist.load_category(sys.argv[1], '0').split('mnist_m'); "
            "print(hashlib.sha256(np.stack(list(s.images)).tobytes()).hexdigest())")
    other = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == here  # another process: the same pixels
    assert not np.array_equal(mnist_m.generate(np.ones((2, 28, 28), np.uint8), mnist_m.load_backgrounds(
        root / mnist_m.BACKGROUNDS[0]), 1), mnist_m.generate(np.ones((2, 28, 28), np.uint8), mnist_m.load_backgrounds(
        root / mnist_m.BACKGROUNDS[0]), 2))  # the seed matters


def test_generated_ids_follow_the_photographs(tmp_path):
    root = make_bsds(make_mnist(tmp_path))
    before = mnist.load_category(root, "0").split("mnist_m").images.ids[0]
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(root / mnist_m.BACKGROUNDS[0] / "999.jpg")
    after = mnist.load_category(root, "0").split("mnist_m").images.ids[0]
    assert before != after  # other photographs, other pixels: never the same corruption-cache ids


# --------------------------------------------------------------------------- PACS


def test_pacs_with_split_files(tmp_path):
    root = make_pacs(tmp_path)
    cat = get_dataset("pacs").load(root, "giraffe")
    assert list(cat.domains) == ["photo", "art_painting", "cartoon", "sketch"]
    assert cat.train.ids == ["photo/giraffe/000.jpg", "photo/giraffe/001.jpg"]  # photo_train_kfold
    # photo_test_kfold lists the whole domain; the images trained on are left out: the crossval ones remain
    assert cat.test.images.ids == [f"photo/{c}/002.jpg" for c in pacs.CLASSES]
    assert list(cat.test.labels) == [0 if c == "giraffe" else 1 for c in pacs.CLASSES]
    assert cat.split("photo") is cat.test
    art = cat.split("art_painting")
    assert len(art) == 21 and int((art.labels == 0).sum()) == 3 and art.images.ids[0] == "art_painting/dog/000.jpg"
    assert set(art.defect_types) == {"good", *(c for c in pacs.CLASSES if c != "giraffe")}
    assert art.source == "PACS art_painting: art_painting_test_kfold.txt (21 images)"
    assert cat.test.source.startswith("PACS photo: photo_test_kfold.txt without the images of photo_train_kfold.txt")
    img = cat.train[0]
    assert img.shape == (227, 227, 3) and img.dtype == np.uint8
    assert not cat.has_masks


def test_pacs_kfold_folder_and_no_split_files(tmp_path):
    root = make_pacs(tmp_path, per_class=10, size=32, kfold=True, splits=False)
    cat = pacs.load_category(root, "house")
    assert len(cat.train) == 9 and len(cat.test) == 7  # 10 % of each Photo class held out, seeded
    assert not set(cat.train.ids) & set(cat.test.images.ids)
    assert cat.test.images.ids == pacs.load_category(root, "dog").test.images.ids  # one split for all classes
    assert len(cat.split("sketch")) == 70 and "every image of sketch/" in cat.split("sketch").source
    assert "seeded 10% of each class held out" in cat.test.source


def test_pacs_split_file_errors(tmp_path):
    root = make_pacs(tmp_path, per_class=2, size=16)
    path = root / "pacs_label" / "photo_train_kfold.txt"
    path.write_text("photo/dog/000.jpg 2\n")
    with pytest.raises(BenchError, match=r"photo_train_kfold.txt:1: label 2 is elephant, but the image is in the "
                                         r"folder dog"):
        pacs.load_category(root, "dog")
    path.write_text("/home/x/PACS/kfold/photo/dog/007.jpg 1\n")
    with pytest.raises(BenchError, match=r"photo/dog/007.jpg: listed in .*photo_train_kfold.txt but no such file"):
        pacs.load_category(root, "dog")


def test_pacs_missing_root(tmp_path):
    with pytest.raises(BenchError) as e:
        get_dataset("pacs").root(tmp_path / "nowhere")
    where = tmp_path / "nowhere"
    assert str(e.value) == (f"{where / 'photo'}: no such folder (nor {where / 'kfold' / 'photo'}); get PACS from "
                            f"{pacs.SOURCE} and extract it so that {where} holds photo, art_painting, cartoon, "
                            "sketch (or kfold/ with them)")
    with pytest.raises(BenchError, match="dataset 'pacs' needs --root"):
        get_dataset("pacs").root(None)


def test_registry_domains_match_the_loaders(tmp_path):
    root = make_mnist(tmp_path / "m")
    assert tuple(get_dataset("mnist").load(root, "even").domains) == get_dataset("mnist").domains
    root = make_pacs(tmp_path / "p", per_class=2, size=8, splits=False)
    cat = get_dataset("pacs").load(root, "dog")
    assert tuple(cat.domains) == get_dataset("pacs").domains
    assert (len(cat.train), len(cat.test)) == (1, 7)  # a class of two images still holds one out
    assert get_dataset("mnist").categories[-1] == "even" and len(get_dataset("pacs").categories) == 7
