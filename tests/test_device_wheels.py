"""benchmarks/device_wheels.py: wheels split into calls that fit the carry limit, and put back together."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("device_wheels", ROOT / "benchmarks" / "device_wheels.py")
dw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dw)


def test_pack_fills_calls_in_order_and_splits_at_the_boundary():
    calls = dw.pack([("a.whl", 30), ("b.whl", 100), ("c.whl", 5)], capacity=60)
    assert calls == [[("a.whl", 0, 30), ("b.whl", 0, 30)], [("b.whl", 30, 60)], [("b.whl", 90, 10), ("c.whl", 0, 5)]]
    assert all(sum(n for _, _, n in call) <= 60 for call in calls)
    with pytest.raises(ValueError, match="carry limit"):
        dw.pack([("a.whl", 1)], capacity=0)


@pytest.fixture
def packed(tmp_path, monkeypatch):
    """Two fake wheels built into calls of 4,000 bytes (one of them in three parts)."""
    import random

    rng = random.Random(0)
    src = tmp_path / "src"
    src.mkdir()
    wheels = {"small_pkg-1.0-py3-none-any.whl": 1500, "big_pkg-2.0-cp312-cp312-manylinux_2_28_x86_64.whl": 9000}
    for name, n in wheels.items():
        (src / name).write_bytes(bytes(rng.getrandbits(8) for _ in range(n)))

    def fake_download(requirements, python, dest):
        dest.mkdir(parents=True, exist_ok=True)
        for name in wheels:
            (dest / name).write_bytes((src / name).read_bytes())
        return [dest / name for name in wheels]

    monkeypatch.setattr(dw, "OUT", tmp_path / ".whl")
    monkeypatch.setattr(dw, "download", fake_download)
    monkeypatch.setattr(dw, "tree_bytes", lambda: 1000)
    monkeypatch.setattr(dw, "MARGIN", 0)
    dirs = dw.build("table", "3.12", limit=5000)
    return src, wheels, dirs


def test_build_writes_calls_within_the_limit_and_a_manifest_in_each(packed):
    src, wheels, dirs = packed
    assert [d.name for d in dirs] == ["call1", "call2", "call3"]
    for d in dirs:
        assert sum(f.stat().st_size for f in d.iterdir() if f.name != dw.MANIFEST) <= 4000
        manifest = json.loads((d / dw.MANIFEST).read_text())["wheels"]
        assert set(manifest) == set(wheels)
    big = json.loads((dirs[0] / dw.MANIFEST).read_text())["wheels"]["big_pkg-2.0-cp312-cp312-manylinux_2_28_x86_64.whl"]
    assert len(big["parts"]) == 3 and big["bytes"] == 9000


def test_reassemble_waits_for_every_part_then_restores_the_wheel(packed, tmp_path):
    src, wheels, dirs = packed
    house = tmp_path / "house"
    done, missing = dw.reassemble(dirs[:1], house)  # the first call alone: the small wheel only
    assert [w.name for w in done] == ["small_pkg-1.0-py3-none-any.whl"]
    assert len(missing) == 1 and "big_pkg" in missing[0] and "waiting for 2 of 3 parts" in missing[0]
    done, missing = dw.reassemble(dirs[1:], house)  # the later calls, on the same machine
    assert not missing and len(done) == 2
    for w in done:
        assert w.read_bytes() == (src / w.name).read_bytes()


def test_a_part_cut_short_is_refused_not_installed(packed, tmp_path):
    src, wheels, dirs = packed
    part = next(dirs[1].glob("big_pkg*.part01"))
    part.write_bytes(part.read_bytes()[:-1])
    with pytest.raises(SystemExit, match="does not match its sha256"):
        dw.reassemble(dirs, tmp_path / "house")
    assert not (tmp_path / "house" / "big_pkg-2.0-cp312-cp312-manylinux_2_28_x86_64.whl").exists()
