"""``bench reproduce PRESET`` end to end for every preset that has stand-in data, at tiny settings.

Each case runs the preset's whole grid in-process on ``bench.datasets.standins`` data (one
category, a small test subset, one training / adaptation epoch, 64 px, EfficientNet-Lite0 with
its offline ImageNet weights), then checks that the printed table has the published rows with
ours next to the published value, that every method carries a dagger and its departures are
listed, and that the ``-f latex`` rerun recomputes nothing and is LaTeX that compiles.

Not covered here:
- ttad-table2: covered by tests/test_points_grid.py (its point-cloud methods need ``--weights random``).
- ttad-table3 on Real-IAD: Table 1's Real-IAD case runs the same grid (its pixel metric aside).
- nothing else: gnl-table2 runs on the CIFAR-10 stand-in, and once more on the MVTec AD stand-in
  through ``--dataset folder`` (another dataset in the paper's place, marked so).

The cases share the session's private cache (tests/conftest.py), so presets that share fits
(TTAD Tables 1, 3 and 4; GNL's PACS tables) fit them once.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from _grids import run_cli
from _latex import check_latex
from bench.presets import get_preset

pytestmark = pytest.mark.slow

STANDIN = "stand-in (bench.datasets.standins, seed 0) data for"
LITE0 = ("--backbone", "tf_efficientnet_lite0")  # offline ImageNet weights: deterministic, unlike --weights random
_PACS_ROWS = ("RD4AD", "Augmix", "Mixstyle", "EFDM", "Augmix+Mixstyle", "Augmix+EFDM", "Jigsaw", "GNL")
_APPENDIX_ROWS = ("RD4AD", "Augmix", "Mixstyle", "EFDM", "Jigsaw", "GNL")
_GNL12_ROWS = ("RD4AD", "AugMix", "MixStyle", "EFDM", "AugMix+MixStyle", "AugMix+EFDM", "Jigsaw", "GNL")


def _sets(*pairs: str) -> tuple[str, ...]:
    return tuple(a for p in pairs for a in ("--set", p))


# preset -> (data, extra arguments, published row labels, note that names the data, test subset, categories note)
CASES = {
    "ttad-table1": ("mvtec_ad", ("--categories", "toothbrush", *_sets("image_size=64", "resize=64", "epochs=1", "adapt_epochs=1")),
                    ("RD4AD", "PatchCore", "TTT++", "TTAC", "GNL", "TTAD"), f"{STANDIN} mvtec_ad", 8, "1 of 15 categories"),
    # Real-IAD's half of Table 1 (one adaptation epoch, the preset's Real-IAD setting: no mark)
    "ttad-table1@realiad": ("realiad", ("--dataset", "realiad", "--categories", "audiojack",
                                        *_sets("image_size=64", "resize=64", "epochs=1")),
                            ("RD4AD", "PatchCore", "TTT++", "TTAC", "GNL", "TTAD"), f"{STANDIN} real_iad", 12,
                            "1 of 30 categories"),
    "ttad-table3": ("mvtec_ad", ("--categories", "toothbrush", *_sets("image_size=64", "resize=64", "epochs=1", "adapt_epochs=1")),
                    ("RD4AD", "PatchCore", "TTT++", "TTAC", "TTAD"), f"{STANDIN} mvtec_ad", 8, "1 of 15 categories"),
    "ttad-table4": ("mvtec_ad", ("--categories", "toothbrush", *_sets("image_size=64", "resize=64", "adapt_epochs=1")),
                    ("none", "kl_div", "moment_matching", "ot_hungarian", "ot_discrete", "ot_discrete_copy",
                     "ot_discrete_augment"), f"{STANDIN} mvtec_ad", 8, "1 of 15 categories"),
    "gnl-table1": ("mvtec_ad", ("--categories", "toothbrush", *_sets("image_size=64", "epochs=1")),
                   _GNL12_ROWS, f"{STANDIN} mvtec_ad", 8, "1 of 15 categories"),
    "gnl-table2": ("cifar10", ("--categories", "dog", *_sets("image_size=64", "epochs=1")),
                   _GNL12_ROWS, f"{STANDIN} cifar10", 10, "1 of 10 categories"),
    # another dataset in the paper's place (a folder): named once as stand-in data for cifar10
    "gnl-table2@folder": ("mvtec_ad", ("--dataset", "folder", "--categories", "toothbrush",
                                       *_sets("image_size=64", "epochs=1")),
                          _GNL12_ROWS, f"stand-in data toothbrush ({STANDIN[:-9]}) for cifar10", 8, None),
    "gnl-table3": ("mnist", ("--categories", "0,even", *_sets("epochs=1")),
                   _PACS_ROWS, f"{STANDIN} mnist", 20, "2 of 11 categories"),
    "gnl-table8": ("mnist", ("--categories", "0", *_sets("epochs=1")),
                   _APPENDIX_ROWS, f"{STANDIN} mnist", 20, "1 of 10 categories"),
    "gnl-table4": ("pacs", ("--categories", "dog", *_sets("image_size=64", "epochs=1")),
                   _PACS_ROWS, f"{STANDIN} pacs", 8, "1 of 7 categories"),
    "gnl-table5": ("pacs", ("--categories", "dog", *_sets("image_size=64", "epochs=1")),
                   ("Baseline", "L_abs only", "L_lowf only", "DINL", "ATTA", "DINL+ATTA"), f"{STANDIN} pacs", 8,
                   "1 of 7 categories"),
    "gnl-table6": ("pacs", ("--categories", "dog", *_sets("image_size=64", "epochs=1")),
                   ("0.95, 0.025, 0.025", "0.90, 0.050, 0.050", "0.85, 0.075, 0.075", "0.80, 0.100, 0.100"),
                   f"{STANDIN} pacs", 8, "1 of 7 categories"),
    "gnl-table7": ("pacs", _sets("image_size=64", "epochs=1"),  # the preset's own category (dog)
                   ("RD4AD", "GNL"), f"{STANDIN} pacs", 8, None),
    "gnl-table9": ("pacs", ("--categories", "dog", *_sets("image_size=64", "epochs=1")),
                   _APPENDIX_ROWS, f"{STANDIN} pacs", 8, "1 of 3 categories"),
    "gnl-table10": ("pacs", ("--categories", "guitar", *_sets("image_size=64", "epochs=1")),
                    _APPENDIX_ROWS, f"{STANDIN} pacs", 8, "1 of 4 categories"),
}


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    """The three stand-ins, written once (MVTec AD's smallest category, few digits and scenes)."""
    from bench.datasets.standins import make_cifar10, make_mnist, make_mvtec_ad, make_pacs, make_realiad

    base = tmp_path_factory.mktemp("standins")
    return {"mvtec_ad": make_mvtec_ad(base / "mvtec_ad", ["toothbrush"]),
            "realiad": make_realiad(base / "realiad", ["audiojack"]),
            "cifar10": make_cifar10(base / "cifar10", per_class=20),
            "mnist": make_mnist(base / "mnist", per_class_train=20, per_class_test=10),
            "pacs": make_pacs(base / "pacs", per_class=4)}


@pytest.mark.parametrize("preset", list(CASES))
def test_reproduce_preset_on_standins_marks_every_departure(preset, standins, tmp_path, monkeypatch, capsys):
    data, extra, rows, data_note, subset, cats_note = CASES[preset]
    preset = preset.split("@")[0]  # "ttad-table1@realiad": the preset on its other dataset
    p = get_preset(preset)
    args = ("reproduce", preset, "--root", standins[data], *LITE0, *extra, "--test-subset", subset,
            "--device", "cpu", "--no-progress", "--out", tmp_path / "run")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "(0 failed)" in err, err
    # the published rows, each with a dagger and ours (a number) next to the published value
    value = r"\d+\.\d+ \(\d+\.\d+\)"
    for row in rows:
        assert re.search(rf"^\| {re.escape(row)}† \|.*\| {value} \|", out, flags=re.M), (row, out)
    for name in p.not_run:  # the published rows the harness cannot run: kept with their value, marked
        assert re.search(rf"^\| {re.escape(name)}‡ \| – \(\d+\.\d+\) \|", out, flags=re.M), (name, out)
        assert f"‡ {name}: not run (" in out
    if preset == "gnl-table3":  # both blocks: one-vs-all (digit 0) and multi-class (even)
        assert "(one-vs-all)" in out and "(multi-class)" in out
    if preset == "ttad-table4":  # image and pixel AUROC
        assert "I-AUROC: ours (published)" in out and "P-AUROC: ours (published)" in out
    if preset == "gnl-table7":
        assert "published on one RTX 3090" in out and "Ours on rd4ad: training on cpu" in out
    # one note per method of the preset, each naming every departure of this run
    notes = {line.split(":", 1)[0][2:]: line for line in out.splitlines() if line.startswith("† ")}
    assert set(notes) == set(p.methods), (sorted(notes), out)
    for method, note in notes.items():
        assert data_note in note and note.count(" for " + data_note.rsplit(" for ", 1)[1]) == 1, note  # said once
        assert f"backbone tf_efficientnet_lite0 (paper: {p.backbone})" in note, note
        assert f"test subset of {subset} images" in note, note
        if cats_note:
            assert cats_note in note, note
        if "image_size=64" in extra:
            assert "image_size 64 (paper: " in note, note
    # the same run as LaTeX: resumed (nothing recomputed), compiles, daggers as math
    code, tex, err = run_cli(monkeypatch, capsys, *args, "-f", "latex")
    assert code == 0 and "0 ran" in err, err
    check_latex(tex)
    assert r"$^\dagger$" in tex and "†" not in tex
    for row in rows:
        assert f"{row.replace('_', chr(92) + '_')}$^\\dagger$ & " in tex, row


def test_a_reused_out_compares_this_grids_rows_only(standins, tmp_path, monkeypatch, capsys):
    """An --out reused with other settings mixed both grids' rows into one mean, under the notes
    of whichever config came first."""
    args = ("reproduce", "gnl-table7", "--root", standins["pacs"], *LITE0, "--set", "image_size=64",
            "--test-subset", "8", "--device", "cpu", "--no-progress", "--out", tmp_path / "run")
    code, _, err = run_cli(monkeypatch, capsys, *args, "--set", "epochs=1")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, *args, "--set", "epochs=2")
    assert code == 0 and "2 rows of other grids in this run directory are left out of the comparison" in err, err
    assert "epochs 2 (paper: 20)" in out and "epochs 1 (paper" not in out and "configs in the rows" not in out


def test_your_method_and_shift_run_under_a_papers_protocol_next_to_its_rows(standins, tmp_path, monkeypatch, capsys):
    """--add-methods: a method of the user's (here a test probe registered as a plugin would be)
    in the table's grid and comparison, without a published value, named in a note;
    --add-corruptions: a corruption of the user's, a column after the paper's for every row."""
    from _grids import GrayProbe
    from bench.datasets.custom_corruptions import registered_temporarily as corruption_registered
    from bench.methods import registered_temporarily

    class RawPixels(GrayProbe):
        takes_weights = False  # no network: no backbone departure to name

    with registered_temporarily("my_probe", RawPixels, display="My probe"), \
            corruption_registered("my_invert", lambda image, severity, rng: 255 - image):
        code, out, err = run_cli(monkeypatch, capsys, "reproduce", "ttad-table4", "--root", standins["mvtec_ad"],
                                 *LITE0, "--categories", "toothbrush", *_sets("image_size=64", "resize=64",
                                                                              "adapt_epochs=1"),
                                 "--add-methods", "my_probe", "--add-corruptions", "my_invert", "--test-subset", "8",
                                 "--device", "cpu", "--no-progress", "--out", tmp_path / "run")
    assert code == 0 and "(0 failed)" in err, err
    # after the paper's rows, ours with no published value, in both metrics' tables
    assert len(re.findall(r"^\| My probe† \| \d+\.\d+ \(–\) \|", out, flags=re.M)) == 2, out
    assert out.index("| ot_discrete_augment†") < out.index("| My probe†")
    assert "My probe: not in the paper; run under this table's protocol" in out
    # the shift: the last column of both tables, a value of ours for each of the 8 rows, none published
    headers = [line for line in out.splitlines() if line.startswith("| Method")]
    assert len(headers) == 2 and all(h.rstrip(" |").endswith("My Invert") for h in headers), headers
    ends = re.findall(r"^\| \S.*\| (\d+\.\d+) \(–\) \|$", out, flags=re.M)
    assert len(ends) == 2 * 8, out
    assert "My Invert: not in the paper; run at severity 5 under this table's protocol" in out
    note = next(line for line in out.splitlines() if line.startswith("† my_probe: "))
    assert "test subset of 8 images" in note and "backbone" not in note, note
    code, _, err = run_cli(monkeypatch, capsys, "reproduce", "ttad-table4", "--add-methods", "my_prob")
    assert code == 2 and "my_prob" in err and "Traceback" not in err
