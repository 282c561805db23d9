"""``check_method``: run a Method class through the contract on tiny images, in seconds.

In the spirit of scikit-learn's ``check_estimator``: a plugin author (and the contract test,
for every registered method) calls ``check_method(MyMethod, **cheap_config)`` and gets either
the list of checks that passed or a :class:`ContractError` that names the check and what to fix.
What it checks is what the harness relies on:

- the class: a Method subclass with the four required methods and a frozen dataclass config
  whose fields all have a valid stage (fit / adapt);
- the config: builds from its fields, hashes the same when rebuilt (cell ids and fit keys are
  its hash), declares its evaluation geometry, and has a JSON-able fit identity;
- fit / score on tiny images: ``Scores`` of the right shapes on the geometry's grid, finite;
  a second fit with the same seed gives the same scores (``bench verify`` recomputes rows);
  no call writes into its input images;
- the fitted state: through a ``torch.save`` round trip into a fresh instance, the same scores;
- ``adapt`` (on shifted images) never writes into the fitted state it was loaded from (every
  cell starts from the one cached state), and scores stay finite after it;
- optional capabilities, when present, return what the runner reads.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import random
from typing import Any, Callable, Sequence

import numpy as np

from .base import STAGES, Method, MethodConfig, Scores
from .capabilities import Diagnostics, PatchReports
from .geometry import Geometry

REQUIRED = ("fit", "score", "fitted_state", "load_fitted_state")


class ContractError(AssertionError):
    """A method class breaks the contract: the message names the class, the check and the fix."""


def tiny_images(seed: int = 0, size: int = 64, n_train: int = 6, n_test: int = 4):
    """(train, test, masks, shifted test): smooth noise 'surfaces'; half the test images carry a
    bright square defect (masks: bool (size, size)); the shifted copy adds seeded noise."""
    rng = np.random.default_rng(seed)

    def surface() -> np.ndarray:
        base = np.kron(rng.normal(128, 12, (size // 8, size // 8, 3)), np.ones((8, 8, 1)))
        return np.clip(base + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)

    train = [surface() for _ in range(n_train)]
    test, masks = [], []
    for i in range(n_test):
        img, mask = surface(), np.zeros((size, size), bool)
        if i >= n_test // 2:
            y, x = rng.integers(4, size - size // 4 - 4, 2)
            img[y:y + size // 4, x:x + size // 4] = 250
            mask[y:y + size // 4, x:x + size // 4] = True
        test.append(img)
        masks.append(mask)
    shifted = [np.clip(im + rng.normal(0, 20, im.shape), 0, 255).astype(np.uint8) for im in test]
    return train, test, masks, shifted


def check_method(cls: type, *, seed: int = 0, device: str = "cpu", rtol: float = 1e-5, atol: float = 1e-6,
                 images: tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[np.ndarray],
                               Sequence[np.ndarray]] | None = None, **config: Any) -> list[str]:
    """Check ``cls`` against the Method contract with ``cls.Config(**config)``; the checks passed.

    Pass config fields that make the method cheap (small images, one epoch). ``images``:
    (train, test, full-resolution test masks, shifted test) instead of :func:`tiny_images`.
    ``rtol``/``atol``: how close the scores after the fitted state's round trip must be.
    """
    import torch

    name = getattr(cls, "__qualname__", repr(cls))
    passed: list[str] = []

    def fail(check: str, detail: str) -> None:
        raise ContractError(f"check_method({name}): {check}: {detail}")

    def ok(check: str) -> None:
        passed.append(check)

    # -- the class and its config --------------------------------------------------------------
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        fail("class", "not a subclass of bench.methods.Method")
    missing = [m for m in REQUIRED if getattr(cls, m) is getattr(Method, m)]
    if missing:
        fail("required methods", f"implement {', '.join(missing)} (see bench.methods.base.Method)")
    ok("required methods")
    Config = cls.Config
    if not (isinstance(Config, type) and issubclass(Config, MethodConfig) and dataclasses.is_dataclass(Config)):
        fail("config", "Config must be a @dataclass(frozen=True) subclass of MethodConfig")
    if not Config.__dataclass_params__.frozen:
        fail("config", "Config must be frozen (@dataclass(frozen=True)): configs are hashed into cell ids")
    bad = [f.name for f in dataclasses.fields(Config) if f.metadata.get("stage", "fit") not in STAGES]
    if bad:
        fail("config stages", f"{bad}: stage must be one of {STAGES} (use bounded(..., stage=...))")
    try:
        cfg = Config(**config)
    except Exception as exc:  # noqa: BLE001 - reported as the contract failure it is
        fail("config", f"{Config.__name__}(**{config}) raised {type(exc).__name__}: {exc}")
    try:
        json.dumps(cfg.to_dict(), sort_keys=True)
    except TypeError as exc:
        fail("config hash", f"field values must be JSON values (numbers, strings, booleans, lists): {exc}")
    again = Config(**cfg.to_dict())
    if again.hash() != cfg.hash() or cfg.hash() != cfg.hash():
        fail("config hash", "a config rebuilt from its fields hashes differently; cell ids would not resume")
    ok("config hash stable")
    identity = cls.fit_identity(cfg)
    try:
        json.dumps(identity, sort_keys=True)
    except TypeError as exc:
        fail("fit identity", f"{identity!r} must be JSON values: {exc}")
    if identity != cls.fit_identity(again):
        fail("fit identity", "differs between two equal configs")
    ok("fit identity from the config")
    try:
        geometry = cfg.geometry()
    except NotImplementedError:
        fail("geometry", f"{Config.__name__} must define geometry() -> Geometry (the anomaly maps' grid)")
    if not isinstance(geometry, Geometry):
        fail("geometry", f"{Config.__name__}.geometry() returned {geometry!r}, not a bench.methods.Geometry")
    ok("evaluation geometry")

    # -- fit and score ---------------------------------------------------------------------------
    train, test, masks, shifted = images if images is not None else tiny_images(seed)
    n = len(test)

    def create() -> Method:
        return cls(Config(**config), device=device, seed=seed)

    def untouched(call: str, imgs, run: Callable[[], Any]) -> Any:
        """``run()``, failing if it wrote into ``imgs``: the harness hands each call private copies,
        so a write there is lost (and here it would be blamed on another check)."""
        snapshot = [np.array(x, copy=True) for x in imgs]
        out = run()
        if any(not np.array_equal(a, b) for a, b in zip(imgs, snapshot)):
            fail(call, "wrote into its input images; work on a copy (np.array(image), image.astype(...))")
        return out

    def seeded() -> None:  # as the harness seeds each fit and each cell (random, numpy, torch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def scored(method: Method, imgs, when: str) -> Scores:
        seeded()  # a method may draw from the global generators while scoring: each scoring alike
        s = untouched(f"score ({when})", imgs, lambda: method.score(imgs))
        if not isinstance(s, Scores):
            fail(f"score ({when})", f"returned {type(s).__name__}, not bench.methods.Scores")
        grid = method.mask_transform(masks[0]).shape
        if s.image_scores.shape != (n,) or s.maps.shape != (n, *grid):
            fail(f"score ({when})", f"image_scores {s.image_scores.shape} and maps {s.maps.shape} for {n} images; "
                 f"expected ({n},) and ({n}, {grid[0]}, {grid[1]}) (the mask grid of the geometry)")
        for what, arr in (("image scores", s.image_scores), ("maps", s.maps)):
            if not np.isfinite(arr).all():
                fail(f"score ({when})", f"{int((~np.isfinite(arr)).sum())} NaN/inf {what}")
        return s

    def fitted() -> Method:
        seeded()
        method = create()
        untouched("fit", train, lambda: method.fit(train))
        return method

    method = fitted()
    before = scored(method, test, "after fit")
    ok("fit and score: shapes, finite")
    repeat = scored(fitted(), test, "after a second fit")
    for what, a, b in (("image scores", repeat.image_scores, before.image_scores), ("maps", repeat.maps, before.maps)):
        if not np.allclose(a, b, rtol=rtol, atol=atol):
            fail("same seed, same scores", f"a second fit with seed {seed} gives other {what} (max difference "
                 f"{np.abs(np.asarray(a, float) - np.asarray(b, float)).max():.3g}); draw random numbers from a "
                 "generator seeded with self.seed, or from random / numpy / torch's global ones, which the "
                 "harness seeds per cell")
    ok("same seed, same scores")
    state = method.fitted_state()
    if not isinstance(state, dict):
        fail("fitted_state", f"returned {type(state).__name__}; return a dict of tensors/arrays/plain values")
    if isinstance(method, Diagnostics):
        _check_diagnostics(method.diagnostics(), fail)

    # -- the fitted state through the fit cache's round trip --------------------------------------
    buf = io.BytesIO()
    try:
        torch.save(state, buf)
    except Exception as exc:  # noqa: BLE001
        fail("fitted_state", f"torch.save failed ({type(exc).__name__}: {exc}); keep it to tensors, arrays, plain values")
    buf.seek(0)
    cached = torch.load(buf, map_location="cpu", weights_only=False)
    snapshot = copy.deepcopy(cached)
    fresh = create()
    fresh.load_fitted_state(cached)
    after = scored(fresh, test, "after load_fitted_state")
    for what, a, b in (("image scores", after.image_scores, before.image_scores), ("maps", after.maps, before.maps)):
        if not np.allclose(a, b, rtol=rtol, atol=atol):
            fail("fitted state round trip", f"a fresh instance loaded from the saved state gives other {what} "
                 f"(max difference {np.abs(np.asarray(a, float) - np.asarray(b, float)).max():.3g}); "
                 "fitted_state must hold everything score needs")
    ok("fitted state through torch.save: same scores")

    # -- adapt from the cached state ---------------------------------------------------------------
    fresh.source_images = train  # as the harness sets it (some adaptations re-embed the source)
    seeded()
    untouched("adapt", shifted, lambda: fresh.adapt(shifted))
    where = _first_difference(cached, snapshot)
    if where is not None:
        fail("adapt", f"changed the fitted state it was loaded from (at {where}); copy what adapt updates "
             "(every cell starts from the one cached state)")
    ok("adapt leaves the fitted state alone")
    if isinstance(fresh, PatchReports):
        _check_reports(fresh.patch_reports(), n, fail)
    scored(fresh, shifted, "after adapt")
    if isinstance(fresh, Diagnostics):
        _check_diagnostics(fresh.diagnostics(), fail)
    ok("adapt and score: shapes, finite")
    return passed


def _first_difference(a: Any, b: Any, path: str = "state") -> str | None:
    """Where two nested states differ (dicts, lists, tensors, arrays, plain values), or None."""
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path} keys"
        for k in a:
            d = _first_difference(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path} length"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{path}[{i}]"))), None)
    if isinstance(a, torch.Tensor):
        return None if isinstance(b, torch.Tensor) and torch.equal(a, b) else path
    if isinstance(a, np.ndarray):
        return None if isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True) else path
    try:
        same = bool(a == b) or (a != a and b != b)  # NaN == NaN here
    except Exception:  # noqa: BLE001 - incomparable objects: not a value the contract can check
        return None
    return None if same else path


def _check_diagnostics(d: Any, fail) -> None:
    if not isinstance(d, dict) or not all(isinstance(k, str) for k in d):
        fail("diagnostics", "must return a dict with string keys (the row's diag_<key> columns)")
    bad = [k for k, v in d.items() if not isinstance(v, (int, float, str, bool, np.floating, np.integer))]
    if bad:
        fail("diagnostics", f"{bad}: values must be numbers or strings (one row column each)")


def _check_reports(reports: Any, n: int, fail) -> None:
    if not isinstance(reports, dict):
        fail("patch_reports", "must return a dict name -> (N target images, patches) array")
    for k, v in reports.items():
        v = np.asarray(v)
        g = int(round(v.shape[1] ** 0.5)) if v.ndim == 2 else 0
        if v.ndim != 2 or v.shape[0] != n or g * g != v.shape[1]:
            fail("patch_reports", f"{k!r} has shape {v.shape}; expected ({n}, g*g) over a square patch grid")
