"""Bad input: each case gives one line that names the file or value and the fix.

Where it surfaces (documented in ``bench/executors.py``):
- before any work (``bench grid`` exits 2 with ``error: ...``, nothing runs): a missing root, a
  root or category not in the MVTec layout, a non-image file, a defect image without a mask, an
  empty train/good, unknown method / dataset / corruption names (with the closest name),
  severities outside 1-5;
- per category, before its fit (its cells become ``failed`` rows, the grid goes on, exit 1):
  image files that do not decode (truncated PNG, not an image inside), masks of the wrong size;
- per cell (a ``failed`` row, the grid goes on): NaN/inf scores, CUDA out of memory.
Grayscale images are legitimate (MVTec grid, screw, zipper) and load as RGB.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _grids import GrayProbe, ProbeConfig, make_category, run_cli
from bench import cli
from bench.errors import BenchError
from bench.methods import Scores, registered_temporarily
from bench.results import load_rows

# ----------------------------------------------------------------------------- a fast fake method


@dataclasses.dataclass(frozen=True)
class FaultyConfig(ProbeConfig):
    behaviour: str = "ok"  # ok | nan | oom | short | exit | const | readonly | tensor


class ProbeMethod(GrayProbe):
    """The shared probe (16 px), made to fail on demand: NaN scores, CUDA out of memory, one
    image short, a library calling exit(), constant scores."""

    Config = FaultyConfig

    def score(self, images) -> Scores:
        if self.config.behaviour == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0)")
        if self.config.behaviour == "exit":
            sys.exit(3)
        if self.config.behaviour == "readonly":  # as writing into a read-only cache does
            from bench.datasets.cache import cache_root

            raise PermissionError(13, "Permission denied", str(cache_root() / "corrupted" / "58"))
        out = super().score(images)
        if self.config.behaviour == "nan":
            out.image_scores[::2] = np.nan
        if self.config.behaviour == "short":  # scores and maps agree with each other, not with the images
            return Scores(out.image_scores[:-1], out.maps[:-1])
        if self.config.behaviour == "tensor":
            return Scores(torch.from_numpy(out.image_scores), out.maps)  # TENSOR_LINE
        if self.config.behaviour == "const":
            return Scores(np.zeros_like(out.image_scores), np.ones_like(out.maps))
        return out


@pytest.fixture(scope="module", autouse=True)
def probe_methods():
    with contextlib.ExitStack() as stack:
        for name, behaviour in {"probe": "ok", "probe_nan": "nan", "probe_oom": "oom", "probe_short": "short",
                                "probe_exit": "exit", "probe_const": "const", "probe_readonly": "readonly",
                                "probe_tensor": "tensor"}.items():
            stack.enter_context(registered_temporarily(name, ProbeMethod, summary="test probe", behaviour=behaviour))
        yield


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADSHIFT_BENCH_CACHE", str(tmp_path / "cache"))


def bench(monkeypatch, capsys, *args: str) -> tuple[int, list[str], str]:
    """Run ``bench ARGS`` in-process; (exit code, stderr lines, stdout)."""
    code, out, err = run_cli(monkeypatch, capsys, *args)
    # without the count each cell's line starts with, "[2/6] ETA 0:00:03 " (tests/test_status.py)
    return code, [re.sub(r"^\[\d+/\d+\]( ETA [\d:]+)? ", "", line) for line in err.splitlines() if line.strip()], out


def grid(monkeypatch, capsys, root: Path, out: Path, *extra: str) -> tuple[int, list[str], str]:
    return bench(monkeypatch, capsys, "grid", "-m", "probe", "--root", root, "--corruptions", "clean",
                 "--out", out, "--no-progress", *extra)


def one_error(monkeypatch, capsys, *args) -> str:
    code, err, _ = bench(monkeypatch, capsys, *args)
    assert code == 2, err
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("error: ")
    return err[0][len("error: "):]


# ----------------------------------------------------------------------------- before any work


def test_missing_root(monkeypatch, capsys, tmp_path):
    root = tmp_path / "nowhere"
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", root) == (
        f"dataset root {root} does not exist: pass --root the folder that holds the category folders")
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "-d", "mvtec_ad", "--root", root) == (
        f"dataset root {root} does not exist: pass --root the folder that holds the mvtec_ad category folders; "
        "MVTec AD is downloaded by hand from https://www.mvtec.com/company/research/datasets/mvtec-ad")


def test_root_not_in_mvtec_layout(monkeypatch, capsys, tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "x.png").write_bytes(b"")
    root = tmp_path / "photos"
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", root) == (
        f"{root}: no category folders with train/good/ found; pass --root pointing at the folder that "
        "holds the categories (MVTec AD layout)")
    make_category(tmp_path / "half", "cat")
    import shutil

    shutil.rmtree(tmp_path / "half" / "cat" / "test")
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path / "half") == (
        f"{tmp_path / 'half' / 'cat'}: not in the MVTec AD layout (needs train/good/ and test/<type>/ with "
        "ground_truth/<type>/<stem>_mask.png); rearrange the folder or pick the matching --dataset")
    make_category(tmp_path / "mv", "cat")
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "-d", "mvtec_ad", "--root", tmp_path / "mv",
                     "-c", "bottle") == (
        f"{tmp_path / 'mv' / 'bottle'}: no such category folder (categories found there: cat); "
        "check --root and --categories")


def test_non_image_file_in_test(monkeypatch, capsys, tmp_path):
    make_category(tmp_path, "cat")
    notes = tmp_path / "cat" / "test" / "good" / "notes.txt"
    notes.write_text("taken on monday\n")
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path) == (
        f"{notes}: not an image file (expected .bmp, .jpeg, .jpg, .png, .tif, .tiff); "
        "move it out of the dataset folder")


def test_missing_mask(monkeypatch, capsys, tmp_path):
    make_category(tmp_path, "cat")
    mask = tmp_path / "cat" / "ground_truth" / "crack" / "001_mask.png"
    mask.unlink()
    image = tmp_path / "cat" / "test" / "crack" / "001.png"
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path) == (
        f"{image}: defect image without a mask (expected {mask}); add the mask or move the image out of test/")


def test_empty_train_good(monkeypatch, capsys, tmp_path):
    make_category(tmp_path, "cat", n_train=0)
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path) == (
        f"{tmp_path / 'cat' / 'train' / 'good'}: no training images; put the normal images of cat there")


@pytest.mark.parametrize("option, value, message", [
    ("-m", "patchcor", "unknown method 'patchcor': did you mean 'patchcore'? known methods: "),
    ("-d", "mvtec-ad", "unknown dataset 'mvtec-ad': did you mean 'mvtec_ad'? known datasets: textures, mvtec_ad, btad, "
                       "mpdd, realiad, visa, cifar10, mnist, pacs, mvtec3d, folder (see `bench list datasets`)"),
    ("--corruptions", "gausian_noise", "unknown corruption 'gausian_noise': did you mean 'gaussian_noise'? "
                                       "known corruptions: gaussian_noise, shot_noise, "),
])
def test_unknown_names_suggest_the_closest(monkeypatch, capsys, tmp_path, option, value, message):
    make_category(tmp_path, "cat")
    args = ["grid", "--root", tmp_path, option, value] + (["-m", "probe"] if option != "-m" else [])
    text = one_error(monkeypatch, capsys, *args)
    assert text.startswith(message), text
    kind = {"-m": "methods", "-d": "datasets", "--corruptions": "corruptions"}[option]
    assert text.endswith(f"(see `bench list {kind}`)")


def test_an_unknown_category_lists_the_categories_in_plain_english(monkeypatch, capsys):
    text = one_error(monkeypatch, capsys, "grid", "-m", "probe", "--categories", "brik")
    assert text == "unknown category 'brik': did you mean 'brick'? known categories: brick, grass, gravel"


@pytest.mark.parametrize("severity", ["0", "6"])
def test_severity_out_of_range(monkeypatch, capsys, tmp_path, severity):
    make_category(tmp_path, "cat")
    assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path,
                     "--corruptions", "gaussian_noise", "-s", severity) == (
        f"severity {severity} is out of range: corruption severities are 1-5 (use --severities 1,2,3,4,5)")


def test_debug_shows_the_traceback(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["bench", "--debug", "grid", "-m", "probe", "--root", str(tmp_path / "x")])
    with pytest.raises(BenchError, match="does not exist"):
        cli.main()


# ----------------------------------------------------------------------------- per category / cell


def test_files_the_listing_would_skip_are_named(monkeypatch, capsys, tmp_path):
    """A subfolder of images, a broken link, an image loose in test/: each would drop images from
    the split without a word, so each is one line naming it."""
    cases = {}
    base = make_category(tmp_path / "nested", "cat")
    (base / "train" / "good" / "more").mkdir()
    (base / "train" / "good" / "003.png").rename(base / "train" / "good" / "more" / "003.png")
    cases["nested"] = (f"{base / 'train' / 'good' / 'more'}: a folder inside {base / 'train' / 'good'}; images in "
                       "subfolders are not read: move them up into good/ or the folder out of the dataset")
    base = make_category(tmp_path / "dangling", "cat")
    (base / "test" / "good" / "009.png").symlink_to(tmp_path / "nowhere.png")
    cases["dangling"] = (f"{base / 'test' / 'good' / '009.png'}: a broken link; restore the file it points to "
                         "or remove it")
    base = make_category(tmp_path / "loose", "cat")
    (base / "test" / "crack" / "001.png").rename(base / "test" / "001.png")
    cases["loose"] = (f"{base / 'test' / '001.png'}: an image directly in test/ has no defect type; move it "
                      "into test/good/ or test/<defect type>/")
    for name, message in cases.items():
        assert one_error(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path / name) == message, name


def test_hidden_folders_in_test_are_no_defect_type(monkeypatch, capsys, tmp_path):
    base = make_category(tmp_path / "data", "cat")
    hidden = base / "test" / ".ipynb_checkpoints"
    hidden.mkdir()
    for f in (base / "test" / "good").iterdir():
        (hidden / f.name).write_bytes(f.read_bytes())
    code, err, _ = grid(monkeypatch, capsys, tmp_path / "data", tmp_path / "run")
    assert code == 0, err
    row = load_rows(tmp_path / "run").iloc[0]
    assert row["n_test"] == 4 and sorted(row["image_ids"]) == [
        "test/crack/000.png", "test/crack/001.png", "test/good/000.png", "test/good/001.png"]


def test_test_images_copied_from_the_training_images_are_said(monkeypatch, capsys, tmp_path):
    base = make_category(tmp_path / "data", "cat")
    for i in (2, 3):  # two training images copied into test/good under other names
        (base / "test" / "good" / f"00{i + 5}.png").write_bytes((base / "train" / "good" / f"00{i}.png").read_bytes())
    code, err, _ = grid(monkeypatch, capsys, tmp_path / "data", tmp_path / "run")
    assert code == 0
    assert [line for line in err if line.startswith("warning: ")] == [
        "warning: cat: 2 test images are byte-for-byte copies of training images (first: test/good/007.png = "
        "train/good/002.png); a model scores what it trained on, which inflates the metrics; remove them from one split"]
    assert load_rows(tmp_path / "run").iloc[0]["n_test"] == 6


def test_a_resumed_grid_reruns_cells_whose_test_data_changed(monkeypatch, capsys, tmp_path):
    """A finished row describes the test split it was computed on (``test_data``): rerunning the
    command after images or masks changed on disk recomputes those cells, and says so once."""
    root, out = tmp_path / "data", tmp_path / "run"
    base = make_category(root, "cat")
    make_category(root, "same", seed=1)
    assert grid(monkeypatch, capsys, root, out)[0] == 0
    first = load_rows(out).set_index("category")
    assert grid(monkeypatch, capsys, root, out)[1][-1].startswith("run ")  # unchanged: nothing reruns, no warning
    # a mask fixed in place (same file name, other pixels) and, for the second rerun, an image removed
    mask = np.zeros((64, 64), np.uint8)
    mask[:8, :8] = 255
    Image.fromarray(mask, "L").save(base / "ground_truth" / "crack" / "000_mask.png")
    code, err, _ = grid(monkeypatch, capsys, root, out)
    assert code == 0
    assert [line for line in err if line.startswith("warning: ")] == [
        f"warning: {out}: 1 finished cell(s) of cat were computed on other test data than the dataset holds now "
        f"(images or masks added, removed, relabelled or changed); their parts are moved to {out / 'quarantine'} "
        "and they run again"]
    assert "2 cells, 1 already done, 1 ran (0 failed)" in err[-1]
    second = load_rows(out).set_index("category")
    assert second.loc["same", "finished_at"] == first.loc["same", "finished_at"]  # kept
    assert second.loc["cat", "pixel_auroc"] != first.loc["cat", "pixel_auroc"]
    assert second.loc["cat", "test_data"] != first.loc["cat", "test_data"]
    assert len(list((out / "quarantine").glob("*.parquet"))) == 1
    (base / "test" / "good" / "001.png").unlink()
    assert grid(monkeypatch, capsys, root, out)[0] == 0
    assert load_rows(out).set_index("category").loc["cat", "n_test"] == 3


def test_undecodable_images_and_wrong_masks_fail_their_category_only(monkeypatch, capsys, tmp_path):
    root = tmp_path / "data"
    for name in ("good", "truncated", "notpng", "bigmask", "inverted", "photomask"):
        make_category(root, name)
    truncated = root / "truncated" / "test" / "good" / "001.png"
    truncated.write_bytes(truncated.read_bytes()[:300])
    notpng = root / "notpng" / "test" / "crack" / "000.png"
    notpng.write_text("this is not a picture\n")
    bigmask = root / "bigmask" / "ground_truth" / "crack" / "001_mask.png"
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(bigmask)
    inverted = root / "inverted" / "ground_truth" / "crack" / "001_mask.png"
    Image.fromarray(255 - np.asarray(Image.open(inverted))).save(inverted)  # defect black on white
    photomask = root / "photomask" / "ground_truth" / "crack" / "000_mask.png"
    photomask.write_bytes((root / "photomask" / "test" / "crack" / "000.png").read_bytes())  # the image itself

    code, err, _ = grid(monkeypatch, capsys, root, tmp_path / "run")
    assert code == 1
    expected = {
        "truncated": f"{truncated}: cannot decode this image (image file is truncated); replace or remove the file",
        "notpng": f"{notpng}: not an image (no known image format inside); replace or remove the file",
        "bigmask": f"{bigmask}: mask is 48x32 but its image is 64x64; masks must have their image's size",
        "inverted": f"{inverted}: this mask marks 94% of its image as defect, its whole border included: it is "
                    "inverted or not a mask; defects must be non-zero on a zero (black) background",
        "photomask": f"{photomask}: this mask marks 100% of its image as defect, its whole border included: it "
                     "is inverted or not a mask; defects must be non-zero on a zero (black) background",
    }
    rows = load_rows(tmp_path / "run").set_index("category")
    assert rows.loc["good", "status"] == "ok"
    for category, message in expected.items():
        assert rows.loc[category, "status"] == "failed"
        assert rows.loc[category, "error"] == message
        assert f"failed probe / {category} / clean / seed 0: {message}" in err
    assert not any("Traceback" in line for line in err)


def test_grayscale_images_load_as_rgb(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "screw", mode="L")
    from bench.datasets.registry import get_dataset

    cat = get_dataset("folder").load(tmp_path / "data", "screw")
    img = cat.test.images[0]
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    code, err, _ = grid(monkeypatch, capsys, tmp_path / "data", tmp_path / "run", "--corruptions", "clean,contrast",
                        "-s", "3")
    assert code == 0, err
    assert (load_rows(tmp_path / "run")["status"] == "ok").all()


def test_nan_scores_fail_the_cell_and_the_grid_goes_on(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "cat")
    code, err, _ = bench(monkeypatch, capsys, "grid", "-m", "probe_nan,probe", "--root", tmp_path / "data",
                         "--corruptions", "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 1
    rows = load_rows(tmp_path / "run").set_index("method")
    message = ("probe_nan returned NaN/inf image scores (2 of 4) on data/cat clean seed 0; the cell is not "
               "scored: the method diverged - check its hyperparameters (--set) or its numerics")
    assert rows.loc["probe_nan", "status"] == "failed"
    assert rows.loc["probe_nan", "error"] == message
    assert f"failed probe_nan / cat / clean / seed 0: {message}" in err
    assert rows.loc["probe", "status"] == "ok" and np.isfinite(rows.loc["probe", "image_auroc"])


def test_scores_of_another_length_exit_and_constant_scores(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "cat")
    code, err, _ = bench(monkeypatch, capsys, "grid", "-m", "probe_short,probe_exit,probe_const,probe", "--root",
                         tmp_path / "data", "--corruptions", "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 1
    rows = load_rows(tmp_path / "run").set_index("method")
    assert rows.loc["probe_short", "error"] == (
        "probe_short returned 3 image scores and maps for 4 test images on data/cat clean seed 0; score() must "
        "return one per image, in order")
    # a library's exit() fails its cell; the grid went on to the other methods
    assert rows.loc["probe_exit", "error"].startswith(
        "SystemExit: the method (or a library it calls) called exit(3) at test_bad_input.py:")
    assert rows.loc["probe_const", "status"] == "ok" and rows.loc["probe_const", "image_auroc"] == 0.5
    assert "probe_const / cat / clean / seed 0: all 4 image scores are equal (0); its image AUROC of 50 says " \
           "nothing about the method" in " ".join(" ".join(err).split())
    assert "probe_const / cat / clean / seed 0: every anomaly-map value is 1; its pixel AUROC of 50 and its AUPRO " \
           "say nothing about the method" in " ".join(" ".join(err).split())
    assert rows.loc["probe", "status"] == "ok"


def test_an_os_error_in_a_cell_names_the_file_and_the_fix(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "cat")
    code, _, _ = bench(monkeypatch, capsys, "grid", "-m", "probe_readonly", "--root", tmp_path / "data",
                       "--corruptions", "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 1
    assert load_rows(tmp_path / "run")["error"].tolist() == [
        f"{tmp_path / 'cache' / 'corrupted' / '58'}: permission denied; check its permissions or choose another "
        "path (the cache: ADSHIFT_BENCH_CACHE)"]


def test_a_plugins_error_names_its_own_line_not_the_harness(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "cat")
    bench(monkeypatch, capsys, "grid", "-m", "probe_tensor", "--root", tmp_path / "data", "--corruptions", "clean",
          "--out", tmp_path / "run", "--no-progress")
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1) if text.endswith("# TENSOR_LINE"))
    assert load_rows(tmp_path / "run")["error"].tolist() == [
        "TypeError: Scores takes numpy arrays; image_scores is a torch.Tensor (for a torch tensor: "
        f".detach().cpu().numpy()) at test_bad_input.py:{line}"]


def test_scores_must_be_numpy_arrays():
    with pytest.raises(TypeError, match=r"Scores takes numpy arrays; image_scores is a torch.Tensor \(for a "
                                        r"torch tensor: .detach\(\).cpu\(\).numpy\(\)\)"):
        Scores(torch.zeros(2), np.zeros((2, 4, 4), np.float32))


def test_cuda_out_of_memory_fails_the_cell_not_the_grid(monkeypatch, capsys, tmp_path):
    make_category(tmp_path / "data", "cat")
    code, err, _ = bench(monkeypatch, capsys, "grid", "-m", "probe_oom,probe", "--root", tmp_path / "data",
                         "--corruptions", "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 1
    rows = load_rows(tmp_path / "run").set_index("method")
    assert rows.loc["probe_oom", "error"] == (
        "CUDA out of memory in this cell (CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0)); lower the "
        "method's batch_size with --set batch_size=N or run on a larger GPU")
    assert rows.loc["probe", "status"] == "ok"


CRASHING_GRID = """
import ctypes, sys
sys.path.insert(0, sys.argv[1])
from _grids import GrayProbe
from bench import cli
from bench.methods import registered_temporarily


class Crash(GrayProbe):
    def score(self, images):
        ctypes.string_at(0)  # a segfault, as a broken native library gives


with registered_temporarily("probe", Crash):
    sys.argv = ["bench", "grid", "-m", "probe", "--root", sys.argv[2], "--corruptions", "clean", "--out",
                sys.argv[3], "--no-progress"]
    cli.main()
"""


@pytest.mark.slow
def test_a_segfault_in_process_is_said_where_it_happened_and_on_the_next_run(monkeypatch, capsys, tmp_path):
    import os
    import subprocess

    make_category(tmp_path / "data", "cat")
    env = {**os.environ, "ADSHIFT_BENCH_CACHE": str(tmp_path / "cache")}
    died = subprocess.run([sys.executable, "-c", CRASHING_GRID, str(Path(__file__).parent), str(tmp_path / "data"),
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert died.returncode < 0  # killed by the signal: no row, no Python exception
    assert "Fatal Python error: Segmentation fault" in died.stderr and "in score" in died.stderr  # faulthandler
    assert (tmp_path / "run" / "running.txt").read_text() == "the cell probe / cat / clean / seed 0\n"
    code, err, _ = bench(monkeypatch, capsys, "grid", "-m", "probe", "--root", tmp_path / "data", "--corruptions",
                         "clean", "--out", tmp_path / "run", "--no-progress")
    assert code == 0
    assert (f"{tmp_path / 'run'}: its last run ended during the cell probe / cat / clean / seed 0 (killed, or a "
            "crash in native code such as a segfault, which leaves no row); it runs again now. If the process dies "
            "there again, rerun with --workers 2") in " ".join(" ".join(err).split())
    assert not (tmp_path / "run" / "running.txt").exists()
