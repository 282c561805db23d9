"""Hendrycks–Dietterich corruptions, seeded per image and cached by content.

Every method must see bit-identical corrupted pixels, in any process, so each image gets its own
seed derived (sha256) from (dataset, category, image id, corruption, severity, global seed), and
generated images are stored as lossless PNGs keyed by a hash of what determines their pixels.

Protocols: ``native`` corrupts the original-resolution image (ADShift); ``resized`` first scales
the image so its shorter side is 256 px (PIL bilinear), then corrupts. Blur radii and glass
shuffles are in pixels, so the two protocols give different effective strengths.

``imagecorruptions`` (the ``imagecorruptions-imaug`` fork) is imported lazily: listing names and
resolving presets stays cheap.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import multiprocessing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from ..methods.errors import BenchError, UnknownName
from ..methods.persist import array_digest, atomic_write
from . import custom_corruptions as custom
from .base import ImageSet
from .cache import cache_dir

# imagecorruptions' own order (corruption_number 0..18).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
CLEAN = "clean"

PRESETS: dict[str, list[str]] = {
    "paper": ["gaussian_noise", "defocus_blur", "brightness", "contrast"],
    "common": list(CORRUPTIONS[:15]),
    "all": list(CORRUPTIONS),
    # Same groups as imagecorruptions.get_corruption_names().
    "noise": list(CORRUPTIONS[0:3]),
    "blur": list(CORRUPTIONS[3:7]),
    "weather": list(CORRUPTIONS[7:11]),
    "digital": list(CORRUPTIONS[11:15]),
    "validation": list(CORRUPTIONS[15:]),
}

SEVERITIES = (1, 2, 3, 4, 5)
PROTOCOLS = ("native", "resized")
RESIZED_SHORTER_SIDE = 256
MIN_SIDE = 32  # imagecorruptions rejects anything smaller

# Bump when anything that changes cached pixels changes outside the key's other fields.
_CACHE_FORMAT = "1"
# Per corruption, for a change that touches one corruption's pixels only (the rest stay cached).
_REVISION = {"frost": "frost.texture5"}


@dataclass
class CacheStats:
    """Hits and misses of the corrupted-image cache, counted by whoever passes one in (a cell)."""

    hits: int = 0
    misses: int = 0

    def add(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1


# ----------------------------------------------------------------------------- names


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def resolve_corruptions(spec: str | Iterable[str]) -> list[str]:
    """Expand presets and comma-separated names into an ordered, duplicate-free list.

    ``"paper"``, ``"gaussian_noise,contrast"``, ``["clean", "noise"]`` all work; ``clean`` is the
    uncorrupted condition.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise BenchError(f"corruption names must be strings, got {item!r}")
        names.extend(p for p in (_norm(s) for s in item.split(",")) if p)
    if not names:
        raise BenchError(
            f"no corruption given in {spec!r}: name one or more of {', '.join(CORRUPTIONS)}, "
            f"'{CLEAN}', or a preset ({', '.join(PRESETS)})"
        )
    out: list[str] = []
    for name in names:
        if name in PRESETS:
            expanded = PRESETS[name]
        elif _is_known(name):
            expanded = [name]
        else:
            raise UnknownName("corruption", name, [*_known(), *PRESETS])
        out.extend(n for n in expanded if n not in out)
    return out


def _point_names() -> frozenset[str]:
    """The point-cloud family's names (``point_corruptions``, imported late: it imports this module)."""
    from .point_corruptions import POINT_CORRUPTIONS

    return POINT_CORRUPTIONS


def _known() -> list[str]:
    """Every corruption name: the built-ins, the point family's, clean, and your own (custom_corruptions)."""
    return [*CORRUPTIONS, *sorted(_point_names()), CLEAN, *custom.custom_corruptions()]


def _is_known(name: str) -> bool:
    return name in CORRUPTIONS or name == CLEAN or name in _point_names() or custom.get_custom(name) is not None


def _check_corruption(name: str) -> str:
    n = _norm(name) if isinstance(name, str) else name
    if not _is_known(n):
        raise UnknownName("corruption", str(name), _known())
    return n


def check_severity(s) -> int:
    """Return ``s`` as an int in 1..5, or raise a BenchError that says how to fix it."""
    hint = "corruption severities are 1-5 (use --severities 1,2,3,4,5)"
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
        if isinstance(s, (float, np.floating)) and float(s).is_integer():
            s = int(s)
        elif isinstance(s, str) and s.strip().isdigit():
            s = int(s.strip())
        else:
            raise BenchError(f"severity {s!r} is not an integer: {hint}")
    s = int(s)
    if s not in SEVERITIES:
        raise BenchError(f"severity {s} is out of range: {hint}")
    return s


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise UnknownName("protocol", str(protocol), PROTOCOLS)
    return protocol


# ----------------------------------------------------------------------------- seeding


def image_seed(dataset: str, category: str, image_id: str, corruption: str, severity: int,
               seed: int) -> int:
    """A 32-bit seed that is the same in every process (sha256, not the salted ``hash``)."""
    text = "\x1f".join(
        [str(dataset), str(category), str(image_id), str(corruption), str(int(severity)),
         str(int(seed))]
    )
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


@lru_cache(maxsize=1)
def _numba_seeder() -> Callable[[int], None] | None:
    # Numba keeps its own RNG; np.random.seed from Python does not reach it (numba#3249), but
    # np.random.seed called inside an njit function does.
    try:
        from numba import njit
    except ImportError:
        return None

    @njit(cache=False)
    def _seed(s):
        np.random.seed(s)

    return _seed


def _seed_numba(seed: int) -> bool:
    seeder = _numba_seeder()
    if seeder is None:
        return False
    seeder(np.uint32(seed))
    return True


@lru_cache(maxsize=1)
def _backend():
    try:
        import imagecorruptions
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BenchError(
            f"corruptions need the imagecorruptions package ({exc}); "
            "install it with `pip install imagecorruptions-imaug`"
        ) from None
    # The maintained fork takes a seed for the two corruptions that do not use np.random's
    # global state (glass_blur's numba shuffle, impulse_noise's skimage generator).
    takes_seed = {
        name for name in ("glass_blur", "impulse_noise")
        if "seed" in inspect.signature(imagecorruptions.corruption_dict[name]).parameters
    }
    return imagecorruptions.corrupt, takes_seed


# ImageNet-C's code and imagecorruptions 1.1.2 list six frost textures but draw from the first
# five; the fork draws randint(6) and gives 1 image in 6 frost6.jpg, far darker than the rest.
FROST_TEXTURES = 5


class _FrostRandom:
    """``np.random`` for one frost call: its first draw (the texture) is ``randint(5)``; the later
    draws (the crop) are numpy's own, so 1.1.2's pixels come out bit for bit."""

    def __init__(self) -> None:
        self.texture_drawn = False

    def randint(self, high, *args, **kwargs):
        if not self.texture_drawn:
            self.texture_drawn = True
            high = FROST_TEXTURES
        return np.random.randint(high, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(np.random, name)


class _FrostNumpy:
    def __init__(self) -> None:
        self.random = _FrostRandom()

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@lru_cache(maxsize=1)
def _fork_frost() -> Callable | None:
    """The backend's frost when it draws its texture with randint(6) (the fork), else None (a
    release that draws as ImageNet-C does). Its source is read once, not once per image."""
    import imagecorruptions

    frost = imagecorruptions.corruption_dict["frost"]
    return frost if "randint(6)" in inspect.getsource(frost) else None


def _frost_as_released(img: np.ndarray, severity: int) -> np.ndarray:
    import types

    frost = _fork_frost()
    if frost is None:
        corrupt, _ = _backend()
        return corrupt(img, severity=severity, corruption_name="frost")
    # A fresh function per call: the texture flag is this call's, whatever thread runs it.
    frost = types.FunctionType(frost.__code__, {**frost.__globals__, "np": _FrostNumpy()},
                               frost.__name__, frost.__defaults__, frost.__closure__)
    return np.uint8(frost(Image.fromarray(img), severity))


@lru_cache(maxsize=1)
def backend_version() -> str:
    """Distribution and version of the corruption backend; part of every cache key."""
    from importlib import metadata

    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "imagecorruptions==unknown"


# ----------------------------------------------------------------------------- one image


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise BenchError(f"corruptions need uint8 images, got {img.dtype}")
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise BenchError(f"corruptions need (H, W, 3) RGB images, got shape {img.shape}")
    return np.ascontiguousarray(img)


def resize_shorter(img: np.ndarray, side: int = RESIZED_SHORTER_SIDE) -> np.ndarray:
    """Scale so the shorter side is ``side`` px, keeping the aspect ratio (PIL bilinear)."""
    img = _as_rgb(img)
    h, w = img.shape[:2]
    if min(h, w) == side:
        return img
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))  # PIL wants (W, H)
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))


def _prepare(img: np.ndarray, protocol: str) -> np.ndarray:
    return resize_shorter(img) if protocol == "resized" else _as_rgb(img)


class ImageTooSmall(BenchError):
    """An image under imagecorruptions' 32 px; ``corrupted_images`` adds which image it is."""


def _naming(image: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except ImageTooSmall as exc:
        raise BenchError(f"{image}: {exc}") from None


def corrupt_image(img: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """Corrupt one (H, W, 3) uint8 image; deterministic in ``seed``; leaves np.random alone."""
    corruption = _check_corruption(corruption)
    if corruption in _point_names():
        raise BenchError(f"{corruption} corrupts point clouds and this is an image; use an image corruption "
                         "(e.g. gaussian_noise) on image datasets")
    img = _as_rgb(img)
    if corruption == CLEAN:
        return img.copy()
    severity = check_severity(severity)
    seed = int(seed) & 0xFFFFFFFF
    mine = custom.get_custom(corruption)
    if mine is not None:
        return custom.apply(mine, img, severity, seed)
    h, w = img.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageTooSmall(
            f"image is {w}x{h} px: imagecorruptions needs at least {MIN_SIDE} px on each side "
            "(use a larger image or --protocol resized)"
        )
    corrupt, takes_seed = _backend()
    kwargs = {"seed": seed} if corruption in takes_seed else {}
    if corruption == "glass_blur" and "glass_blur" not in takes_seed:
        _seed_numba(seed)

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        if corruption == "frost":
            out = _frost_as_released(img, severity)
        else:
            out = corrupt(img, severity=severity, corruption_name=corruption, **kwargs)
    finally:
        np.random.set_state(state)
    out = np.asarray(out)
    if out.shape != img.shape or out.dtype != np.uint8:  # pragma: no cover - backend bug guard
        raise BenchError(
            f"{corruption} (severity {severity}) returned {out.dtype} {out.shape} for a "
            f"{img.shape} image; check the imagecorruptions version ({backend_version()})"
        )
    return out


# ----------------------------------------------------------------------------- cache


def cache_key(src_digest: str, corruption: str, severity: int, derived_seed: int,
              protocol: str) -> str:
    """Content key of one corrupted image: what determines its pixels, and nothing else."""
    mine = custom.get_custom(corruption)
    text = "\x1f".join([
        _CACHE_FORMAT, src_digest, _REVISION.get(corruption, corruption), str(int(severity)), str(int(derived_seed)),
        protocol, backend_version() if mine is None else f"custom {mine.code}",
    ])
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(key: str) -> Path:
    # Two-hex-digit shards keep directories small for a full MVTec x 19 x 5 sweep.
    return cache_dir("corrupted", key[:2]) / f"{key}.png"


def _read_cached(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                return None
            return np.asarray(im)
    except (FileNotFoundError, OSError, SyntaxError, ValueError):
        return None


def _write_atomic(path: Path, img: np.ndarray) -> None:
    # Noise-heavy images barely compress; a low level keeps writes fast. A cache: no fsync.
    atomic_write(path, lambda fh: Image.fromarray(img).save(fh, format="PNG", compress_level=1), durable=False)


def _load_or_make(load_src: Callable[[], np.ndarray], corruption: str, severity: int, k: int,
                  protocol: str, path: Path) -> tuple[np.ndarray, bool]:
    """Return (image, was_hit); the source image is loaded (``load_src``) on a miss only."""
    cached = _read_cached(path)
    if cached is not None:
        return cached, True
    out = corrupt_image(_prepare(load_src(), protocol), corruption, severity, k)
    _write_atomic(path, out)
    return out, False


# ----------------------------------------------------------------------------- image sets


def corrupted_images(images: ImageSet, *, dataset: str, category: str, corruption: str,
                     severity: int, seed: int, protocol: str = "native", cache: bool = True,
                     workers: int = 1, stats: CacheStats | None = None) -> ImageSet:
    """A lazy ImageSet with the same ids whose items are the corrupted images.

    ``clean`` gives the input back (under ``resized``: the resized images, so clean and corrupted
    share geometry). With ``cache``, images are read from / written to the content-keyed PNG
    cache; ``workers > 1`` first fills the cache with a process pool (needs ``cache``).
    ``stats`` counts each image read from (hit) or added to (miss) the cache as it is loaded.
    """
    corruption = _check_corruption(corruption)
    protocol = _check_protocol(protocol)
    from . import point_corruptions as points

    if corruption in _point_names() or points.is_points(images):  # the point family (one line on a mismatch)
        points.refuse_points(images, corruption)
        return points.corrupted_points(images, dataset=dataset, category=category, corruption=corruption,
                                       severity=severity, seed=seed)
    if corruption == CLEAN:
        if protocol == "native":
            return images
        return ImageSet(images.ids, lambda i: resize_shorter(images[i]))
    severity = check_severity(severity)
    seed = int(seed)
    ids = list(images.ids)

    def derived(i: int) -> int:
        return image_seed(dataset, category, ids[i], corruption, severity, seed)

    if not cache:
        return ImageSet(
            ids, lambda i: _naming(f"{dataset}/{category}/{ids[i]}", lambda: corrupt_image(
                _prepare(images[i], protocol), corruption, severity, derived(i)))
        )

    if workers > 1:
        materialize(images, dataset=dataset, category=category, corruptions=[corruption],
                    severities=[severity], seed=seed, protocol=protocol, workers=workers)

    def load(i: int) -> np.ndarray:
        k = derived(i)
        path = cache_path(cache_key(images.digest(i), corruption, severity, k, protocol))
        out, hit = _naming(f"{dataset}/{category}/{ids[i]}",
                           lambda: _load_or_make(lambda: images[i], corruption, severity, k, protocol, path))
        if stats is not None:
            stats.add(hit)
        return out

    return ImageSet(ids, load)


@dataclass
class MaterializeStats:
    total: int = 0      # (image, corruption, severity) entries asked for
    cached: int = 0     # already in the cache
    generated: int = 0  # computed and written now


def _materialize_one(src: np.ndarray, corruption: str, severity: int, k: int, protocol: str,
                     path: str) -> bool:
    # Top level so spawn-started workers can unpickle it.
    _, hit = _load_or_make(lambda: src, corruption, severity, k, protocol, Path(path))
    return hit


def materialize(images: ImageSet, *, dataset: str, category: str,
                corruptions: str | Sequence[str], severities: int | Sequence[int], seed: int,
                protocol: str = "native", workers: int = 1,
                progress: Callable[[int, int], None] | None = None) -> MaterializeStats:
    """Generate every missing cache entry for images × corruptions × severities.

    Runs in a spawn-started process pool when ``workers > 1`` (fork is unsafe once torch or
    numba threads exist). Source images are loaded in the parent, one at a time, so memory stays
    bounded by the number of tasks in flight. ``progress(done, total)`` is called as entries
    finish. Returns counts.
    """
    names = [c for c in resolve_corruptions(corruptions) if c != CLEAN]
    sevs = [check_severity(s) for s in
            ([severities] if isinstance(severities, (int, np.integer, str)) else severities)]
    protocol = _check_protocol(protocol)
    seed = int(seed)
    stats = MaterializeStats(total=len(images) * len(names) * len(sevs))
    done = 0

    def tick(hit: bool) -> None:
        nonlocal done
        done += 1
        if hit:
            stats.cached += 1
        else:
            stats.generated += 1
        if progress is not None:
            progress(done, stats.total)

    def tasks():
        for i, image_id in enumerate(images.ids):
            src = np.asarray(images[i])
            digest = array_digest(src)
            for name in names:
                for sev in sevs:
                    k = image_seed(dataset, category, image_id, name, sev, seed)
                    path = cache_path(cache_key(digest, name, sev, k, protocol))
                    if path.exists():
                        tick(True)
                    else:
                        yield src, name, sev, k, protocol, str(path)

    if workers <= 1:
        for args in tasks():
            tick(_materialize_one(*args))
        return stats

    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: set[cf.Future] = set()
        try:
            for args in tasks():
                pending.add(pool.submit(_materialize_one, *args))
                if len(pending) >= 2 * workers:
                    finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for f in finished:
                        tick(f.result())
            for f in cf.as_completed(pending):
                tick(f.result())
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return stats


@dataclass
class TestSets:
    """The corrupted test sets of one category and seed: every corruption x severity of a grid."""

    images: ImageSet
    dataset: str
    category: str
    seed: int
    corruptions: list[str]
    severities: list[int]

    @property
    def size(self) -> int:
        return len(self.images) * len(self.corruptions) * len(self.severities)


def materialize_all(sets: Sequence[TestSets], *, protocol: str = "native", workers: int = 1,
                    progress: Callable[[int, int, TestSets], None] | None = None) -> MaterializeStats:
    """``materialize`` for several categories (``bench corrupt``); ``progress(done, total, current)``."""
    out = MaterializeStats()
    total = sum(s.size for s in sets)
    base = 0
    for item in sets:
        if progress is not None:
            progress(base, total, item)
        stats = materialize(item.images, dataset=item.dataset, category=item.category,
                            corruptions=item.corruptions, severities=item.severities, seed=item.seed,
                            protocol=protocol, workers=workers,
                            progress=None if progress is None else
                            lambda done, _total, b=base, it=item: progress(b + done, total, it))
        base += stats.total
        out.total += stats.total
        out.generated += stats.generated
        out.cached += stats.cached
    return out
