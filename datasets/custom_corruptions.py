"""Corruptions of your own, beside the Hendrycks-Dietterich set.

A corruption is a function ``fn(image, severity, rng) -> image``: ``image`` an (H, W, 3) uint8
array (a private copy), ``severity`` an int in 1..5, ``rng`` a ``numpy.random.Generator`` seeded
per image (``corruptions.image_seed``: dataset, category, image id, corruption, severity, seed),
and it returns an (H, W, 3) uint8 array. ``np.random``'s global state is seeded the same way
for the call, so code written in imagecorruptions' style is deterministic too. Register it with
``@register_corruption("name")`` in a module that the ``bench.corruptions`` entry-point group
names (every process of a grid, worker processes and Ray nodes included, imports it from
there), or in your own process for the Python API.

What a corruption computes is keyed by its code, as a plugin method's is: the versions of the
distributions that own its module and a hash of the module's source
(``methods.registry.source_fingerprint``). It joins the cache key of the corrupted images and
the rows (``corruption_code``), so an edited corruption makes new images and its finished cells
run again.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator

import numpy as np

from ..methods.errors import BenchError
from ..methods.registry import load_entry_points, source_fingerprint

ENTRY_POINT_GROUP = "bench.corruptions"
_NAME = re.compile(r"[a-z][a-z0-9_]*")

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Custom:
    name: str
    fn: Corruption
    summary: str

    @property
    def code(self) -> str:
        """The corruption's code version (the cache key's and the rows' ``corruption_code``)."""
        return _code(self.fn)


_REGISTRY: dict[str, Custom] = {}
_entry_points_loaded = False


@lru_cache(maxsize=None)
def _code(fn: Corruption) -> str:
    module = getattr(fn, "__module__", None) or "__main__"
    return source_fingerprint({module.partition(".")[0]}, f"corruption {_qualified(fn)}")


def _taken() -> set[str]:
    from .corruptions import CLEAN, CORRUPTIONS, PRESETS
    from .point_corruptions import POINT_CORRUPTIONS

    return {*CORRUPTIONS, CLEAN, *PRESETS, *POINT_CORRUPTIONS}


def register_corruption(name: str, summary: str = "") -> Callable[[Corruption], Corruption]:
    """Function decorator: ``@register_corruption("lens_flare")`` makes ``--corruptions lens_flare``
    run ``fn(image, severity, rng)``. ``summary`` is what ``bench list corruptions`` shows (default:
    the docstring's first line)."""

    def deco(fn: Corruption) -> Corruption:
        add_corruption(name, fn, summary)
        return fn

    return deco


def add_corruption(name: str, fn: Corruption, summary: str = "") -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BenchError(f"corruption name {name!r}: use lower-case letters, digits and _, starting with a letter")
    if name in _taken():
        raise BenchError(f"corruption name {name!r} is taken by the harness (a built-in corruption, "
                         "'clean' or a preset); choose another name")
    if not callable(fn):
        raise BenchError(f"corruption {name!r}: {fn!r} is not callable; register a function "
                         "fn(image, severity, rng) -> image")
    before = _REGISTRY.get(name)
    if before is not None and _qualified(before.fn) != _qualified(fn):
        raise BenchError(f"corruption {name!r} is registered twice: by {_qualified(before.fn)} and "
                         f"{_qualified(fn)}; rename one")
    doc = (summary or (fn.__doc__ or "").strip().split("\n")[0]).strip()
    _REGISTRY[name] = Custom(name, fn, doc)


def _qualified(fn: Corruption) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@contextmanager
def registered_temporarily(name: str, fn: Corruption, summary: str = "") -> Iterator[str]:
    """Register ``name`` inside a ``with`` block only (tests, notebooks); then restore the registry."""
    before = _REGISTRY.pop(name, None)
    add_corruption(name, fn, summary)
    try:
        yield name
    finally:
        _REGISTRY.pop(name, None)
        if before is not None:
            _REGISTRY[name] = before


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep, obj in load_entry_points(ENTRY_POINT_GROUP):
        if callable(obj) and ep.name not in _REGISTRY:  # `name = "pkg.module:function"` registers it
            add_corruption(ep.name, obj)


def custom_corruptions() -> dict[str, Custom]:
    """The registered corruptions of your own, by name (the entry points loaded on first call)."""
    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get_custom(name: str) -> Custom | None:
    _load_entry_points()
    return _REGISTRY.get(name)


def apply(custom: Custom, img: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """``custom.fn`` on a copy of ``img`` with a Generator and np.random seeded by ``seed``;
    np.random's state is restored afterwards. The result must be uint8 of ``img``'s shape."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        out = custom.fn(img.copy(), severity, np.random.default_rng(seed))
    finally:
        np.random.set_state(state)
    out = np.asarray(out) if out is not None else None
    if out is None or out.shape != img.shape or out.dtype != np.uint8:
        got = "None" if out is None else f"{out.dtype} {out.shape}"
        raise BenchError(f"corruption {custom.name} ({_qualified(custom.fn)}, severity {severity}) returned {got} "
                         f"for a uint8 {img.shape} image: return a uint8 array of the input's shape "
                         "(e.g. np.clip(x, 0, 255).astype(np.uint8))")
    return out


def check_corruption(name: str, size: tuple[int, int] = (48, 64)) -> list[str]:
    """Run a registered corruption on a small synthetic image at every severity and return the
    checks that passed, or raise BenchError naming the one that failed: uint8 of the input's
    shape; the same pixels again from the same seed (every method must see identical pixels);
    some pixel changed; and the severities told apart (five equal columns otherwise). Put it in
    your package's tests."""
    custom = get_custom(name)
    if custom is None:
        raise BenchError(f"{name!r} is not a registered corruption (bench list corruptions)")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    outputs = []
    for severity in range(1, 6):
        outputs.append(apply(custom, img, severity, 1234))
        if not np.array_equal(outputs[-1], apply(custom, img, severity, 1234)):
            raise BenchError(f"corruption {name} (severity {severity}) gave other pixels for the same seed: draw "
                             "all randomness from the rng argument (or np.random), never from an unseeded generator")
    if all(np.array_equal(out, img) for out in outputs):
        raise BenchError(f"corruption {name} returned its input unchanged at every severity")
    if all(np.array_equal(out, outputs[0]) for out in outputs[1:]):
        raise BenchError(f"corruption {name} gave the same pixels at severities 1-5: make its strength depend on "
                         "the severity argument")
    return ["uint8 output of the input's shape at severities 1-5", "same pixels from the same seed",
            "pixels changed", "severities told apart"]


def corruption_code(name: str) -> str:
    """A corruption of your own's code version; "" for the built-ins (they go with the
    imagecorruptions version the rows record)."""
    mine = get_custom(name)
    return "" if mine is None else mine.code
