"""Corruptions of your own: registered by name, seeded per image as the built-ins are, keyed by
their code in the image cache and the rows, and refused with one line where they misbehave."""
from __future__ import annotations

import importlib
import importlib.metadata
import sys

import numpy as np
import pytest

from bench.datasets import custom_corruptions as custom
from bench.datasets.base import ImageSet
from bench.datasets.corruptions import corrupt_image, corrupted_images, image_seed, resolve_corruptions
from bench.errors import BenchError, BenchWarning
from bench.executors import run_local
from bench.grid import GridSpec
from bench.methods import registry
from bench.methods.registry import registered_temporarily as method_registered
from bench.results import load_rows
from bench.verify import check

from _grids import GrayProbe, run_cli
from _plugins import module_writer

PLUGIN = '''
import numpy as np
from bench.datasets.custom_corruptions import register_corruption


@register_corruption("adsb_dim")
def dim(image, severity, rng):
    """Darker by a severity step, with seeded noise."""
    noise = rng.integers(0, 8, image.shape)
    return np.clip(image * (1 - FACTOR * severity) + noise, 0, 255).astype(np.uint8)


FACTOR = 0.1
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A corruption module on sys.path; ``plugin(factor)`` (re)writes and (re)imports it."""
    write = module_writer(tmp_path, monkeypatch, "adsb_dim_plugin")
    monkeypatch.setattr(custom, "_REGISTRY", {})

    def load(factor: float):
        custom._REGISTRY.pop("adsb_dim", None)  # an edited module registers its new function
        return write(PLUGIN.replace("FACTOR = 0.1", f"FACTOR = {factor}"))

    yield load
    sys.modules.pop("adsb_dim_plugin", None)


def _img(seed: int = 0, shape=(40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_registered_corruption_is_a_name_like_the_builtins(plugin, monkeypatch, capsys):
    plugin(0.1)
    assert resolve_corruptions("clean,adsb_dim,contrast") == ["clean", "adsb_dim", "contrast"]
    assert resolve_corruptions("ADSB-DIM") == ["adsb_dim"]
    with pytest.raises(BenchError, match=r"unknown corruption 'adsb_dimm'.*adsb_dim"):
        resolve_corruptions("adsb_dimm")
    code, out, _ = run_cli(monkeypatch, capsys, "list", "corruptions")
    assert code == 0
    assert "  adsb_dim             Darker by a severity step, with seeded noise. [sha256:" in out


@pytest.mark.parametrize("name, why", [
    ("contrast", "taken by the harness"), ("clean", "taken by the harness"), ("paper", "taken by the harness"),
    ("Lens Flare", "lower-case letters"), ("2x", "lower-case letters"),
])
def test_names_the_harness_owns_or_cannot_parse_are_refused(monkeypatch, name, why):
    monkeypatch.setattr(custom, "_REGISTRY", {})
    with pytest.raises(BenchError, match=why):
        custom.add_corruption(name, lambda image, severity, rng: image)


def test_one_name_for_two_functions_is_refused(monkeypatch):
    monkeypatch.setattr(custom, "_REGISTRY", {})

    def first(image, severity, rng):
        return image

    def second(image, severity, rng):
        return image

    custom.add_corruption("adsb_twice", first)
    custom.add_corruption("adsb_twice", first)  # a module imported again: the same function
    with pytest.raises(BenchError, match=r"'adsb_twice' is registered twice: by .*first and .*second; rename one"):
        custom.add_corruption("adsb_twice", second)


def test_the_corruption_gets_a_per_image_seed_and_leaves_global_state_alone(monkeypatch):
    monkeypatch.setattr(custom, "_REGISTRY", {})
    seen = []

    def record(image, severity, rng):
        seen.append((severity, int(rng.integers(1 << 30)), int(np.random.randint(1 << 30))))
        image[0, 0] = 0  # writes into its copy only
        return image

    img = _img()
    with custom.registered_temporarily("adsb_record", record):
        np.random.seed(7)
        state = np.random.get_state()[1].copy()
        a = corrupt_image(img, "adsb_record", 3, seed=11)
        b = corrupt_image(img, "adsb_record", 3, seed=11)
        corrupt_image(img, "adsb_record", 3, seed=12)
        assert np.array_equal(np.random.get_state()[1], state)  # np.random's state restored
    assert np.array_equal(a, b) and img[0, 0].any()  # the input untouched
    assert seen[0] == seen[1] != seen[2]  # same seed, same draws (the Generator and np.random)
    assert seen[0][1] == int(np.random.default_rng(11).integers(1 << 30))

    # in a test set, each image gets image_seed(dataset, category, id, corruption, severity, seed)
    seen.clear()
    images = ImageSet(["a", "b"], lambda i: _img(i))
    with custom.registered_temporarily("adsb_record", record):
        corrupted = corrupted_images(images, dataset="d", category="c", corruption="adsb_record", severity=2,
                                     seed=5, cache=False)
        corrupted[1]
    expected = image_seed("d", "c", "b", "adsb_record", 2, 5)
    assert seen == [(2, int(np.random.default_rng(expected).integers(1 << 30)),
                     int(np.random.RandomState(expected).randint(1 << 30)))]


@pytest.mark.parametrize("returned, said", [
    (lambda im: im.astype(np.float32), r"returned float32 \(40, 48, 3\)"),
    (lambda im: im[:, :, 0], r"returned uint8 \(40, 48\)"),
    (lambda im: None, "returned None"),
])
def test_a_result_that_is_not_the_images_shape_in_uint8_is_one_line(monkeypatch, returned, said):
    monkeypatch.setattr(custom, "_REGISTRY", {})
    with custom.registered_temporarily("adsb_bad", lambda image, severity, rng: returned(image)):
        with pytest.raises(BenchError, match=rf"corruption adsb_bad \(.*, severity 4\) {said} for a uint8 "
                                             r"\(40, 48, 3\) image: return a uint8 array of the input's shape"):
            corrupt_image(_img(), "adsb_bad", 4, seed=0)


def test_check_corruption_catches_an_unseeded_generator(monkeypatch):
    monkeypatch.setattr(custom, "_REGISTRY", {})

    def unseeded(image, severity, rng):
        return np.clip(image + np.random.default_rng().integers(0, 50, image.shape), 0, 255).astype(np.uint8)

    with custom.registered_temporarily("adsb_unseeded", unseeded):
        with pytest.raises(BenchError, match="gave other pixels for the same seed"):
            custom.check_corruption("adsb_unseeded")
    with custom.registered_temporarily("adsb_ok", lambda image, severity, rng: image // (severity + 1)):
        assert len(custom.check_corruption("adsb_ok")) == 4
    with custom.registered_temporarily("adsb_identity", lambda image, severity, rng: image):
        with pytest.raises(BenchError, match="returned its input unchanged at every severity"):
            custom.check_corruption("adsb_identity")
    with custom.registered_temporarily("adsb_flat", lambda image, severity, rng: image // 2):
        with pytest.raises(BenchError, match="gave the same pixels at severities 1-5: make its strength depend"):
            custom.check_corruption("adsb_flat")


def test_an_edited_corruption_makes_new_images_not_the_cached_ones(plugin):
    images = ImageSet(["a"], lambda i: np.full((40, 40, 3), 200, np.uint8))

    def pixels():
        return corrupted_images(images, dataset="d", category="c", corruption="adsb_dim", severity=5, seed=0)[0]

    plugin(0.1)
    first = pixels()
    assert np.array_equal(pixels(), first)  # read back from the cache
    plugin(0.15)  # the user edits the corruption
    assert pixels().mean() < first.mean() - 10  # made again with the new code, not served stale


def test_a_grid_runs_it_records_its_code_and_reruns_cells_after_an_edit(plugin, tiny_root, tmp_path,
                                                                        monkeypatch, capsys):
    spec = GridSpec(methods=["probe"], dataset="folder", root=str(tiny_root), corruptions=["clean", "adsb_dim"],
                    severities=[5])
    run = tmp_path / "run"
    plugin(0.1)
    with method_registered("probe", GrayProbe):
        run_local(spec, run, show_progress=False)
        before = load_rows(run).sort_values("corruption")
        assert list(before["corruption"]) == ["adsb_dim", "clean"] and (before["status"] == "ok").all()
        code = before.set_index("corruption")["corruption_code"]
        assert code["adsb_dim"].startswith("sha256:") and code.isna()["clean"]  # the built-ins go by versions
        assert run_local(spec, run, show_progress=False).ran == 0  # unchanged code: done cells stay done
        code, out, _ = run_cli(monkeypatch, capsys, "table", run, "--format", "markdown")
        assert code == 0 and "Adsb Dim" in out

        plugin(0.05)
        with pytest.warns(BenchWarning, match=r"1 finished cell\(s\) of adsb_dim were computed by other code of "
                                               r"the corruption \(sha256:"):
            summary = run_local(spec, run, show_progress=False)
        after = load_rows(run).set_index("corruption")
    assert summary.ran == 1
    assert after.loc["adsb_dim", "corruption_code"] != before.set_index("corruption").loc["adsb_dim", "corruption_code"]
    notes = check(before.iloc[0].to_dict(), after.loc["adsb_dim"].to_dict() | {"corruption": "adsb_dim"}).notes
    assert any(n.startswith("corruption_code: sha256:") for n in notes), notes


def test_entry_points_register_and_a_broken_one_is_left_out_with_a_warning(tmp_path, monkeypatch):
    (tmp_path / "adsb_ep_module.py").write_text(
        "def halve(image, severity, rng):\n    '''Half as bright.'''\n    return image // 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(custom, "_REGISTRY", {})
    monkeypatch.setattr(custom, "_entry_points_loaded", False)
    group = custom.ENTRY_POINT_GROUP
    points = [importlib.metadata.EntryPoint("adsb_halve", "adsb_ep_module:halve", group),
              importlib.metadata.EntryPoint("adsb_broken", "adsb_no_such_module", group)]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    with pytest.warns(BenchWarning, match=r"bench.corruptions entry point adsb_broken = 'adsb_no_such_module' .*does "
                                          r"not import \(ModuleNotFoundError.*fix or uninstall that package"):
        assert resolve_corruptions("adsb_halve,contrast") == ["adsb_halve", "contrast"]
    assert custom.custom_corruptions()["adsb_halve"].summary == "Half as bright."
    assert np.array_equal(corrupt_image(_img(), "adsb_halve", 1, seed=0), _img() // 2)


def test_a_method_plugin_that_does_not_import_is_left_out_and_the_builtins_stay(monkeypatch):
    points = [importlib.metadata.EntryPoint("adsb_gone", "adsb_no_such_method_module", "bench.methods")]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(BenchWarning, match=r"bench.methods entry point adsb_gone = 'adsb_no_such_method_module' .*does "
                                          r"not import \(ModuleNotFoundError"):
        assert "patchcore" in registry.registered()


def test_a_compound_shift_composes_the_builtins_deterministically(monkeypatch):
    """The guide's compound example: built-in corruptions called inside a corruption of your own,
    each with a seed drawn from the rng, give the same pixels for the same seed."""
    monkeypatch.setattr(custom, "_REGISTRY", {})

    def noisy_blur(image, severity, rng):
        blurred = corrupt_image(image, "defocus_blur", severity, seed=int(rng.integers(2**32)))
        return corrupt_image(blurred, "gaussian_noise", severity, seed=int(rng.integers(2**32)))

    img = _img(shape=(48, 64, 3))
    with custom.registered_temporarily("adsb_noisy_blur", noisy_blur):
        assert len(custom.check_corruption("adsb_noisy_blur")) == 4
        a = corrupt_image(img, "adsb_noisy_blur", 3, seed=9)
        assert np.array_equal(a, corrupt_image(img, "adsb_noisy_blur", 3, seed=9))
        assert not np.array_equal(a, corrupt_image(img, "adsb_noisy_blur", 3, seed=10))
    blurred = corrupt_image(img, "defocus_blur", 3, seed=0)
    assert not np.array_equal(a, blurred) and np.abs(a.astype(int) - blurred).mean() > 5  # noise on the blur
