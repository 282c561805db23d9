"""A grid: what the user asked for, and the cells it expands to.

A cell is (method, dataset, category, corruption, severity, seed) plus everything that changes
its numbers (the method's config hash, which covers backbone and weights, and the corruption
protocol), and for a dataset with several test domains (MNIST / MNIST-M, PACS) the domain it is
tested on. Its ``cell_id`` is a stable hash of all that, so a rerun of the same grid finds the
cells that are already done, and a changed hyperparameter makes new cells instead of mixing.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .datasets.corruptions import CLEAN, PROTOCOLS, TestSets, check_severity, resolve_corruptions
from .datasets.registry import DATASETS, get_dataset
from .errors import BenchError, ConfigError, UnknownName
from .methods import MethodConfig, get, registered
from .methods.persist import stable_hash
from .stats import check_resamples


def _hash(obj: Any, n: int = 12) -> str:
    return stable_hash(obj, n)


class Axes(NamedTuple):
    dataset: str  # the rows' dataset label: a folder dataset's is its folder's name
    categories: list[str]
    methods: list[str]
    domains: list[str]
    conditions: list[tuple[str, int]]


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    category: str
    corruption: str
    severity: int
    seed: int
    protocol: str
    config: MethodConfig = field(compare=False, repr=False)
    test_subset: int = 0  # 0: every test image; N: a seeded stratified subset of N
    preset: str = field(default="", compare=False)  # the paper preset that asked for it (recorded)
    domain: str = ""  # the test domain (Category.domains); "": the dataset's own test split

    @property
    def config_hash(self) -> str:
        return self.config.hash()

    @property
    def cell_id(self) -> str:
        key = [self.method, self.config_hash, self.dataset, self.category, self.corruption,
               self.severity, self.seed, self.protocol]
        if self.test_subset:  # only then: the ids of full-test-set cells stay as they were
            key.append(["test_subset", self.test_subset])
        if self.domain:  # likewise: a cell without a domain keeps its id
            key.append(["domain", self.domain])
        where = f"{self.category}-{self.domain}" if self.domain else self.category
        readable = re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.method}-{where}-{self.corruption}-s{self.severity}")
        return f"{readable}-{_hash(key)}"

    def label(self) -> str:
        cond = "clean" if self.corruption == CLEAN else f"{self.corruption}@{self.severity}"
        where = f"{self.category} / {self.domain}" if self.domain else self.category
        return f"{self.method} / {where} / {cond} / seed {self.seed}"


@dataclass
class GridSpec:
    methods: list[str]
    dataset: str = "textures"
    root: str | None = None
    categories: list[str] | None = None  # None = every category of the dataset
    corruptions: list[str] = field(default_factory=lambda: ["paper"])
    severities: list[int] = field(default_factory=lambda: [5])
    seeds: list[int] = field(default_factory=lambda: [0])
    protocol: str = "native"
    backbone: str | None = None
    weights: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # "field=value" or "method.field=value"
    device: str = "cpu"
    # torch's deterministic algorithms (CUDA: cuBLAS / cuDNN); recorded in the rows, not in the ids
    deterministic: bool = True
    test_subset: int = 0  # 0: every test image; N: a seeded subset of N, stratified by defect type
    # Test domains of a dataset that has several (DatasetSpec.domains), or ["all"]; None: its
    # in-distribution one (a dataset with one test split: that split). Corruptions apply to each.
    domains: list[str] | None = None
    preset: str = ""  # set by `bench reproduce`: recorded in every row, not part of the cells' ids
    # What the rows keep for statistics and plots (bench.stats, bench.samples). Not part of the
    # cells' ids nor of the run directory: they change no metric, only what is stored beside it.
    bootstrap: int = 1000  # resamples of each cell's image-AUROC interval (0: none)
    map_samples: int = 4  # test images per cell whose anomaly maps are kept
    map_size: int = 64  # their side in pixels at most

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["domains"] is None:  # unset: the specs (and run directories) of grids before domains
            del out["domains"]
        return out

    def domain_names(self) -> list[str]:
        """The domains the cells test on: names from the dataset's domains, [""] for a dataset
        with one test split."""
        known = list(get_dataset(self.dataset).domains)
        wanted = self.domains
        if not wanted:
            return known[:1] or [""]
        if not known:
            raise BenchError(f"--domains {','.join(wanted)}: dataset '{self.dataset}' has one test split, no "
                             "domains; drop --domains (datasets with domains: see bench list datasets)")
        if wanted in (["all"], []):
            return known
        for d in wanted:
            if d not in known:
                raise UnknownName("domain", d, known)
        return list(dict.fromkeys(wanted))

    def method_names(self) -> list[str]:
        if self.methods in (["all"], []):
            return [n for n, r in registered().items() if r.in_all]
        return [get(m).name for m in self.methods]  # raises UnknownName with a suggestion

    def method_config(self, method: str) -> MethodConfig:
        reg = get(method)
        fields = {f.name: f for f in dataclasses.fields(reg.cls.Config)}
        # dataset-specific defaults: "*" applies to every method that has the field
        ds_defaults = get_dataset(self.dataset).method_defaults
        values: dict[str, Any] = {k: v for k, v in ds_defaults.get("*", {}).items() if k in fields}
        values.update(ds_defaults.get(method, {}))
        if self.backbone:
            values["backbone"] = self.backbone
        if self.weights:
            values["weights"] = self.weights
        for key, raw in self.overrides.items():
            scope, _, name = key.rpartition(".")
            if scope and scope != method:
                continue
            if name not in fields:
                if scope:  # named for this method but no such field: a typo
                    raise BenchError(f"--set {key}: {method} has no hyperparameter '{name}' "
                                     f"(its fields: {', '.join(fields)})")
                continue  # a global setting that this method does not have
            values[name] = _coerce(raw, fields[name].type, key)
        try:
            return reg.config(**values)
        except ConfigError as exc:  # a value out of its declared range: one line, with the method
            raise BenchError(f"{method}: {exc}") from None

    def check_overrides(self, methods: list[str]) -> None:
        """Every ``--set`` must reach a field of a selected method (a typo is an error, not a no-op).

        ``--set FIELD=V`` needs at least one selected method with that field; ``--set
        METHOD.FIELD=V`` needs a known method (one not selected is ignored: a shared command line)
        that has the field (checked by ``method_config`` when it is selected).
        """
        known = {m: [f.name for f in dataclasses.fields(get(m).cls.Config)] for m in methods}
        every = sorted({f for names in known.values() for f in names})
        for key in self.overrides:
            scope, _, name = key.rpartition(".")
            if scope:
                get(scope)  # an unknown method name: UnknownName with a suggestion
                continue
            if name not in every:
                others = [m for m, r in registered().items()
                          if name in {f.name for f in dataclasses.fields(r.cls.Config)}]
                close = difflib.get_close_matches(name, every, n=3, cutoff=0.6)
                if others:
                    hint = f"{', '.join(others)} {'has' if len(others) == 1 else 'have'} it"
                elif close:
                    hint = f"closest: {', '.join(close)}"
                else:
                    hint = "their fields: " + ", ".join(every)
                raise BenchError(f"--set {name}: no selected method ({', '.join(methods)}) has a field "
                                 f"'{name}' ({hint})")

    def conditions(self) -> list[tuple[str, int]]:
        names = resolve_corruptions(self.corruptions)
        sevs = list(dict.fromkeys(check_severity(s) for s in self.severities))
        out = [(CLEAN, 0)]
        out += [(c, s) for c in names if c != CLEAN for s in sevs]
        return out

    def cells(self) -> list[Cell]:
        if self.test_subset < 0 or self.test_subset == 1:
            raise BenchError(f"--test-subset {self.test_subset}: use 0 (every test image) or a count of at least 2 "
                             "(one normal and one anomalous image)")
        check_resamples(self.bootstrap, "--bootstrap")
        if self.map_samples < 0:
            raise BenchError(f"--map-samples {self.map_samples}: use 0 (no maps kept) or a small count, e.g. 4")
        if self.map_size < 8:
            raise BenchError(f"--map-size {self.map_size}: use at least 8 pixels, e.g. 64")
        if self.protocol not in PROTOCOLS:
            raise BenchError(f"unknown protocol '{self.protocol}': use one of {', '.join(PROTOCOLS)}")
        bad = [s for s in self.seeds if not 0 <= s < 2**32]
        if bad:  # numpy's and torch's seeds: a cell would fail on it after the grid started
            raise BenchError(f"--seeds {bad[0]}: seeds are integers from 0 to 2**32 - 1")
        axes = self.axes()
        self.check_overrides(axes.methods)
        configs = {m: self.method_config(m) for m in axes.methods}
        # Grouped so that each (category, method, seed) fits once and its cells follow.
        return [
            Cell(m, axes.dataset, cat, c, s, seed, self.protocol, configs[m], self.test_subset, self.preset, d)
            for cat in axes.categories for m in axes.methods for seed in dict.fromkeys(self.seeds) for d in axes.domains
            for c, s in axes.conditions
        ]

    def axes(self) -> Axes:
        """What the cells range over, without their configs (no method's module is imported)."""
        spec = get_dataset(self.dataset)
        root = spec.root(self.root)
        # each name once: a repeat would run its cells twice
        return Axes(root.name if self.dataset == "folder" else self.dataset,
                    list(dict.fromkeys(spec.resolve_categories(root, self.categories))),
                    list(dict.fromkeys(self.method_names())), self.domain_names(), self.conditions())


def default_config_hash(method: str, dataset: str) -> str:
    """The hash of ``method``'s config with its defaults on ``dataset`` (a folder dataset where
    the name is not registered), "" for a method no longer registered: which of an ablation's
    configs is the method itself."""
    try:
        spec = GridSpec(methods=[method], dataset=dataset if dataset in DATASETS else "folder")
        return spec.method_config(method).hash()
    except BenchError:
        return ""


def one_method_cells(spec: GridSpec) -> list[Cell]:
    """The grid's cells of its first registered method: every (category, domain, condition, seed)
    once, which is all the corrupted pixels depend on."""
    return dataclasses.replace(spec, methods=[next(iter(registered()))]).cells()


def corruption_sets(spec: GridSpec) -> list[TestSets]:
    """The corrupted test sets a grid's cells read (same dataset label, image ids and seeds), per
    (category, domain, seed); pixels do not depend on the method. Loads each category once
    (one-line errors for a bad layout, as ``bench grid``)."""
    ds = get_dataset(spec.dataset)
    loaded: dict[str, Any] = {}
    sets: dict[tuple[str, str, str, int], TestSets] = {}
    for c in one_method_cells(spec):
        if c.category not in loaded:
            loaded[c.category] = ds.load(ds.root(spec.root), c.category)
        if c.corruption == CLEAN:
            continue
        item = sets.setdefault((c.dataset, c.category, c.domain, c.seed), TestSets(
            loaded[c.category].split(c.domain).images, c.dataset, c.category, c.seed, [], []))
        if c.corruption not in item.corruptions:
            item.corruptions.append(c.corruption)
        if c.severity not in item.severities:
            item.severities.append(c.severity)
    for item in sets.values():
        item.severities.sort()
    return list(sets.values())


def _coerce(raw: Any, typ: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    t = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    try:
        if t.startswith("bool"):
            if raw.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"true", "1", "yes"}
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
    except ValueError:
        raise BenchError(f"--set {key}={raw}: expected a {t.split()[0]} value") from None
    return raw


_STORED_ONLY = ("bootstrap", "map_samples", "map_size")


def default_run_dir(spec: GridSpec, base: Path = Path("results/runs")) -> Path:
    """Same grid -> same directory, so rerunning a command resumes it."""
    identity = {k: v for k, v in spec.to_dict().items()
                if k not in ("device", "deterministic", *_STORED_ONLY) and not (k in ("test_subset", "preset") and not v)}
    return base / f"{spec.dataset}-{_hash(identity, 8)}"
