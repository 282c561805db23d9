"""Presets: a published table's whole protocol, so one command reproduces it.

    bench list presets
    bench reproduce ttad-table1 --root /data/mvtec_anomaly_detection
    bench reproduce ttad-table1 --dataset realiad --root /data/Real-IAD

A preset pins what the paper ran: dataset(s), categories (the dataset's standard list),
corruptions and severity, methods, backbone, and the per-dataset settings the paper states
(TTAD: 10 adaptation epochs on MVTec AD, 1 on Real-IAD). Everything else is each method's
defaults (the papers' values, except the fields ``bench.papers.PAPER_CONFIG`` lists: harness
defaults that depart from what the paper states). ``reproduce`` runs the preset's grid, then
prints ours next to the published numbers; a value whose run departs from the paper's protocol
(another backbone, resolution, severity, corruption protocol, a category subset or test subset, a
changed hyperparameter, a field of ``PAPER_CONFIG`` not at the paper's value, harness default or
not) carries a dagger and the departures are listed under the table. The preset's name is
recorded in every row (``preset``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from . import papers
from .errors import BenchError

PAPER_BACKBONE = "wide_resnet50_2"  # both papers: torchvision WRN-50, ImageNet V1
STAND_IN = "folder"  # --dataset folder: any MVTec-layout folder stands in for the preset's dataset


@dataclass(frozen=True)
class Preset:
    name: str
    paper: str  # key in published_results.csv
    table: int
    summary: str
    methods: tuple[str, ...]
    # dataset -> the paper's per-dataset overrides; the first dataset is the default
    datasets: dict[str, dict[str, str]]
    corruptions: tuple[str, ...] = ("gaussian_noise", "defocus_blur", "brightness", "contrast")
    severity: int = 5
    metrics: tuple[str, ...] = ("image_auroc",)
    protocol: str = "native"  # ADShift corrupts the original files; TTAD does not say
    backbone: str = PAPER_BACKBONE
    # published method name -> our method name, where the names differ
    method_map: dict[str, str] = field(default_factory=dict)
    # the paper's dataset key in published_results.csv -> our dataset name
    paper_datasets: dict[str, str] = field(default_factory=dict)
    # domain-shift tables (GNL 3-10): the test domains (the in-distribution one first), the
    # categories (None: the dataset's list), and the comparison's blocks: (published setting,
    # our categories) - GNL Table 3 compares one-vs-all (the digits' mean) and multi-class (even)
    domains: tuple[str, ...] = ()
    categories: tuple[str, ...] | None = None
    blocks: tuple[tuple[str, tuple[str, ...]], ...] = ()
    per_class: bool = False  # the appendix layout: one column group per category
    # published rows the harness cannot run -> why; shown in the table with the published value only
    not_run: dict[str, str] = field(default_factory=dict)
    runtime: bool = False  # GNL Table 7: seconds per training epoch and per scored image

    def dataset(self, name: str | None) -> str:
        if name is None:
            return next(iter(self.datasets))
        if name not in self.datasets and name != STAND_IN:
            raise BenchError(f"preset {self.name} covers the datasets {', '.join(self.datasets)}, not '{name}' "
                             f"(--dataset {STAND_IN} --root DIR runs any MVTec-layout folder as a stand-in, marked)")
        return name

    def standard_categories(self, dataset: str) -> tuple[str, ...]:
        from .datasets.registry import get_dataset

        if self.categories is not None:
            return self.categories
        return tuple(get_dataset(dataset if dataset in self.datasets else next(iter(self.datasets))).categories)

    def settings(self, dataset: str) -> dict[str, str]:
        """The paper's per-dataset overrides (a stand-in folder takes the first dataset's)."""
        return self.datasets.get(dataset, next(iter(self.datasets.values())))

    def paper_dataset(self, dataset: str) -> str:
        """The dataset key of the published numbers that ``dataset``'s rows compare with."""
        if dataset not in self.datasets:  # a stand-in
            dataset = next(iter(self.datasets))
        return {ours: paper for paper, ours in self.paper_datasets.items()}.get(dataset, dataset)


# GNL's tables (1-4, 8-10) compare OOD-generalisation baselines fitted into RD4AD
# (methods/builtin.py); Deep SVDD, f-AnoGAN and KDAD are shown as published only.
_GNL_BASELINES = ("rd4ad", "augmix", "mixstyle", "efdm_train", "augmix_mixstyle", "augmix_efdm", "jigsaw", "gnl")
_APPENDIX = tuple(m for m in _GNL_BASELINES if not m.startswith("augmix_"))  # Tables 8-10 print no combinations
_BASELINE_NAMES = {"EFDM": "efdm_train", "Augmix+Mixstyle": "augmix_mixstyle", "Augmix+EFDM": "augmix_efdm"}
_TABLE5_NAMES = {"Baseline": "rd4ad", "L_abs only": "rd4ad_labs", "L_lowf only": "rd4ad_llowf", "DINL": "dinl",
                 "ATTA": "atta", "DINL+ATTA": "gnl"}
_DIGITS = tuple(str(d) for d in range(10))
_PACS_DOMAINS = ("photo", "art_painting", "cartoon", "sketch")
# AugMix's whole op list for the AugMix baselines on MNIST and PACS (GNL 4.2); ADShift's PACS list
# (photometric ops, contrast and brightness kept) for GNL's own views. On MNIST (the paper's
# appendix): 28 x 28 inputs, a ResNet-18 teacher, 5 epochs, EFDM alpha 0.9; GNL's views there
# use the PACS list too (harness choice: no MNIST list is published).
_AUGMIX_ALL = {f"{m}.augmix_ops": "all" for m in ("augmix", "augmix_mixstyle", "augmix_efdm")}
_DINL_FAMILY = ("gnl", "dinl", "rd4ad_labs", "rd4ad_llowf", "dinl_lambda_095", "dinl_lambda_090",
                "dinl_lambda_085", "dinl_lambda_080")
_GNL_PACS_OPS = {f"{m}.augmix_ops": "pacs" for m in _DINL_FAMILY}
_PACS = {**_AUGMIX_ALL, **_GNL_PACS_OPS}
_MNIST = {**_AUGMIX_ALL, **_GNL_PACS_OPS, "image_size": "28", "epochs": "5", "gnl.efdm_alpha": "0.9"}

_TTAD_DATASETS = {"mvtec_ad": {"adapt_epochs": "10"}, "realiad": {"adapt_epochs": "1"}}
_TTAD_PAPER = {paper: ours for ours, paper in papers.PAPER_DATASETS.items()}
# TTAD Table 2: MVTec 3D-AD under Gaussian point noise N(0, (1e-6)^2), per class. BTF's depth
# baselines and FPFH, M3DM (Point-MAE PatchCore) and TTAD on Point-MAE; each row's features and
# the harness's readings are in its method's module (methods/depth_features.py, point_features.py,
# point_mae.py). The point methods carry no CNN backbone: backbone="" keeps each method's own.
_TABLE2_NAMES = {"Depth PatchCore": "patchcore_depth", "Raw (in BTF)": "patchcore_raw", "HoG (in BTF)": "patchcore_hog",
                 "SIFT (in BTF)": "patchcore_sift", "FPFH": "patchcore_fpfh", "M3DM": "patchcore_pointmae", "TTAD (Ours)": "ttad_pointmae"}
_TABLE2_NOT_RUN = {f"Depth {m}": f"the MVTec 3D-AD paper's depth-only {m} baseline (Bergmann et al. 2022); the "
                                  "harness has no implementation of it" for m in ("GAN", "AE", "VM")}
_TABLE4 = ("none", "kl_div", "moment_matching", "ot_hungarian", "ot_discrete", "ot_discrete_copy",
           "ot_discrete_augment")
# The other published rows the harness has no implementation of: shown with their published value
# only, marked, so a table keeps the paper's rows.
_PUBLISHED_ONLY = {
    "ViTAD": "ViTAD (Zhang et al. 2023)", "UniAD": "UniAD (You et al. 2022)",
    "CFLOW-AD": "CFLOW-AD (Gudovskiy et al. 2022)", "KDAD": "KDAD (Salehi et al. 2021)",
    "DeepSVDD": "Deep SVDD (Ruff et al. 2018)", "Deep SVDD": "Deep SVDD (Ruff et al. 2018)",
    "f-AnoGAN": "f-AnoGAN (Schlegl et al. 2019)",
}


def _not_run(*names: str) -> dict[str, str]:
    return {n: f"{_PUBLISHED_ONLY[n]}; the harness has no implementation of it" for n in names}


_TTAD1_NOT_RUN = _not_run("ViTAD", "KDAD", "UniAD", "CFLOW-AD")
_GNL_NOT_RUN = _not_run("DeepSVDD", "f-AnoGAN", "KDAD")
_GNL_DOMAIN_NOT_RUN = _not_run("Deep SVDD", "f-AnoGAN", "KDAD")

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("ttad-table1", "ttad", 1, "TTAD Table 1: image AUROC, MVTec AD / Real-IAD, paper corruptions @5",
           ("patchcore", "ttt++", "ttac", "rd4ad", "gnl", "ttad"), _TTAD_DATASETS, paper_datasets=_TTAD_PAPER,
           not_run=_TTAD1_NOT_RUN),
    Preset("ttad-table2", "ttad", 2, "TTAD Table 2: per-class image AUROC, MVTec 3D-AD, Gaussian point noise @5 (sigma 1e-6)",
           tuple(_TABLE2_NAMES.values()), {"mvtec3d": {"patchcore_depth.backbone": PAPER_BACKBONE}},
           corruptions=("point_gaussian_noise",), backbone="", method_map=_TABLE2_NAMES, per_class=True,
           not_run=_TABLE2_NOT_RUN),
    Preset("ttad-table3", "ttad", 3, "TTAD Table 3: pixel AUROC, MVTec AD / Real-IAD, paper corruptions @5",
           ("patchcore", "ttt++", "ttac", "rd4ad", "ttad"), _TTAD_DATASETS, metrics=("pixel_auroc",),
           paper_datasets=_TTAD_PAPER, not_run=_not_run("CFLOW-AD", "UniAD")),
    Preset("ttad-table4", "ttad", 4, "TTAD Table 4: the alignment ablation, image + pixel AUROC, MVTec AD @5",
           _TABLE4, {"mvtec_ad": {"adapt_epochs": "10"}}, metrics=("image_auroc", "pixel_auroc")),
    Preset("gnl-table1", "gnl", 1, "GNL Table 1: image AUROC, MVTec AD, paper corruptions @3",
           _GNL_BASELINES, {"mvtec_ad": {}}, severity=3, method_map=_BASELINE_NAMES, not_run=_GNL_NOT_RUN),
    Preset("gnl-table2", "gnl", 2, "GNL Table 2: image AUROC, CIFAR-10 one-class, paper corruptions @5",
           _GNL_BASELINES, {"cifar10": {}}, method_map=_BASELINE_NAMES, not_run=_GNL_NOT_RUN),
    Preset("gnl-table3", "gnl", 3, "GNL Table 3: image AUROC, MNIST (ID) / MNIST-M (OOD), one-vs-all and multi-class",
           _GNL_BASELINES, {"mnist": _MNIST}, corruptions=("clean",), backbone="resnet18", method_map=_BASELINE_NAMES,
           domains=("mnist", "mnist_m"), categories=(*_DIGITS, "even"),
           blocks=(("one-vs-all", _DIGITS), ("multi-class", ("even",))), not_run=_GNL_DOMAIN_NOT_RUN),
    Preset("gnl-table4", "gnl", 4, "GNL Table 4: image AUROC, PACS, Photo (ID) / Art, Cartoon, Sketch (OOD)",
           _GNL_BASELINES, {"pacs": _PACS}, corruptions=("clean",), method_map=_BASELINE_NAMES, domains=_PACS_DOMAINS,
           not_run=_GNL_DOMAIN_NOT_RUN),
    Preset("gnl-table5", "gnl", 5, "GNL Table 5: the DINL / ATTA ablation, image AUROC, PACS",
           ("rd4ad", "rd4ad_labs", "rd4ad_llowf", "dinl", "atta", "gnl"), {"pacs": _PACS}, corruptions=("clean",),
           method_map=_TABLE5_NAMES, domains=_PACS_DOMAINS),
    Preset("gnl-table6", "gnl", 6, "GNL Table 6: DINL's lambda settings, image AUROC, PACS",
           tuple(f"dinl_lambda_{v:03d}" for v in (95, 90, 85, 80)), {"pacs": _PACS}, corruptions=("clean",),
           method_map={f"{o:.2f}, {a:.3f}, {a:.3f}": f"dinl_lambda_{round(o * 100):03d}"
                       for o, a in ((0.95, 0.025), (0.90, 0.05), (0.85, 0.075), (0.80, 0.1))},
           domains=_PACS_DOMAINS),
    Preset("gnl-table7", "gnl", 7, "GNL Table 7: seconds per training epoch and per image, PACS dog (one GPU)",
           ("rd4ad", "gnl"), {"pacs": _PACS}, corruptions=("clean",), domains=("photo",), categories=("dog",),
           metrics=("train_seconds_per_epoch", "inference_seconds_per_image"), method_map={"Ours": "gnl"},
           runtime=True),
    Preset("gnl-table8", "gnl", 8, "GNL appendix Table 8: Table 3 per digit (one-vs-all)",
           _APPENDIX, {"mnist": _MNIST}, corruptions=("clean",), backbone="resnet18", method_map=_BASELINE_NAMES,
           domains=("mnist", "mnist_m"), categories=_DIGITS, per_class=True, not_run=_GNL_DOMAIN_NOT_RUN),
    Preset("gnl-table9", "gnl", 9, "GNL appendix Table 9: Table 4 per class, part I",
           _APPENDIX, {"pacs": _PACS}, corruptions=("clean",), method_map=_BASELINE_NAMES, domains=_PACS_DOMAINS,
           categories=("dog", "elephant", "giraffe"), per_class=True, not_run=_GNL_DOMAIN_NOT_RUN),
    Preset("gnl-table10", "gnl", 10, "GNL appendix Table 10: Table 4 per class, part II",
           _APPENDIX, {"pacs": _PACS}, corruptions=("clean",), method_map=_BASELINE_NAMES, domains=_PACS_DOMAINS,
           categories=("guitar", "horse", "house", "person"), per_class=True, not_run=_GNL_DOMAIN_NOT_RUN),
]}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, PRESETS, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise BenchError(f"unknown preset '{name}': {hint}use one of {', '.join(PRESETS)} (bench list presets)")
    return PRESETS[name]


def grid_spec(preset: Preset, *, dataset: str | None = None, root: str | None = None,
              categories: list[str] | None = None, backbone: str | None = None, weights: str | None = None,
              overrides: dict[str, Any] | None = None, device: str = "cpu", test_subset: int = 0,
              seeds: list[int] | None = None, methods: list[str] | None = None,
              corruptions: list[str] | None = None):
    """The preset's grid; the caller's options override it (and are reported as departures).
    ``methods``: instead of the preset's rows (a subset, or more: ``bench reproduce --add-methods``);
    ``corruptions``: instead of the preset's columns (more: ``bench reproduce --add-corruptions``);
    the preset's settings that none of them has (e.g. the TTA rows' ``adapt_epochs`` for
    ``rd4ad,gnl``) are left out, the caller's ``overrides`` never."""
    from .grid import GridSpec

    ds = preset.dataset(dataset)
    if categories is None and preset.categories is not None and ds in preset.datasets:
        categories = list(preset.categories)
    methods = list(methods or preset.methods)
    settings = {k: v for k, v in preset.settings(ds).items() if _applies(k, methods)}
    return GridSpec(
        methods=methods, dataset=ds, root=root, categories=categories,
        domains=list(preset.domains) if preset.domains and ds in preset.datasets else None,
        corruptions=list(corruptions or preset.corruptions), severities=[preset.severity], seeds=seeds or [0],
        protocol=preset.protocol, backbone=backbone or preset.backbone, weights=weights,
        overrides={**settings, **(overrides or {})}, device=device, test_subset=test_subset,
    )


def _applies(key: str, methods: list[str]) -> bool:
    """Whether a ``FIELD`` / ``METHOD.FIELD`` setting reaches one of ``methods``."""
    from .methods import get

    scope, _, name = key.rpartition(".")
    return any((not scope or scope == m) and name in {f.name for f in dataclasses.fields(get(m).cls.Config)}
               for m in methods)


def cost(preset: Preset, dataset: str | None = None) -> tuple[int, int, int]:
    """(categories, cells, fits) of the preset's grid on the dataset's standard category list."""
    from .datasets.registry import get_dataset
    from .methods import get

    spec = grid_spec(preset, dataset=dataset)
    cats = spec.categories or get_dataset(spec.dataset).categories
    conditions = spec.conditions() * max(1, len(preset.domains))
    identities = set()
    for m in spec.method_names():
        identity = get(m).cls.fit_identity(spec.method_config(m))
        identities.add(json.dumps(identity, sort_keys=True, default=str))
    n = len(cats)
    return n, n * len(spec.method_names()) * len(conditions), n * len(identities)


def departures(preset: Preset, spec, rows) -> dict[str, list[str]]:
    """Per method in ``rows``: how its cells depart from the paper's protocol (empty: none).

    A method of the preset is compared with its harness config under the preset's settings, except
    the fields ``papers.PAPER_CONFIG`` states for it: those with the paper's value ("ot_reduction=mean
    (paper: sum)"), so a harness default that departs from the paper is marked too."""
    from .datasets.base import standin_of
    from .datasets.registry import get_dataset
    from .methods import get as get_method

    standard = set(preset.standard_categories(spec.dataset)) if spec.dataset in preset.datasets else set(
        get_dataset(spec.dataset).categories)
    paper = {m: spec.method_config(m) for m in spec.method_names() if m in preset.methods}
    out: dict[str, list[str]] = {}
    for method, sub in rows.groupby("method"):
        notes = []
        made = sorted({standin_of(src) for src in (sub["domain_source"] if "domain_source" in sub else [])} - {""})
        if spec.dataset not in preset.datasets:  # another dataset (a folder) in the paper's place
            what = f" ({', '.join(made)})" if made else ""
            notes.append(f"stand-in data {', '.join(sorted(set(sub['category'])))}{what} for "
                         f"{preset.paper_dataset(spec.dataset)}")
        elif made:  # bench.datasets.standins' images in the dataset's own layout
            notes.append(f"{', '.join(made)} data for {preset.paper_dataset(spec.dataset)}")
        if sub["config"].nunique() > 1:  # rows of other grids (bench reproduce keeps its own cells only)
            notes.append(f"{sub['config'].nunique()} configs in the rows, averaged")
        cfg = json.loads(sub["config"].iloc[0])
        paper_cfg = grid_spec(preset, dataset=spec.dataset).method_config(method) if method in paper else None
        inert = paper_cfg.inert_fields() if paper_cfg is not None else frozenset()
        default = {k: v for k, v in paper_cfg.to_dict().items() if k not in inert} if paper_cfg is not None else {}
        # the fields whose paper value (bench.papers.PAPER_CONFIG) may differ from the harness
        # default: compared with the paper's value, not the default, and left out of 'changed'
        stated = {k: v for k, v in _stated(preset, spec.dataset, method).items()
                  if k in default and k in cfg} if paper_cfg is not None else {}
        backbone = preset.backbone or default.get("backbone")  # "": each method's own (point features)
        network = get_method(method).cls.takes_weights  # False: no backbone or weights reach it
        if network and cfg.get("backbone") != backbone:
            notes.append(f"backbone {cfg.get('backbone')} (paper: {backbone})")
        if network and str(cfg.get("weights")) == "random":
            notes.append("random weights (paper: pretrained)")
        for key in ("image_size", "resize", "epochs", "adapt_epochs", "coreset_ratio"):
            if key in cfg and key in default and key not in stated and cfg[key] != default[key]:
                notes.append(f"{key} {cfg[key]} (paper: {default[key]})")
        notes += [n for k, v in stated.items() if (n := _stated_departure(k, cfg[k], v, sub))]
        changed = sorted(k for k in cfg if k in default and cfg[k] != default[k] and k not in stated
                         and k not in ("backbone", "weights", "image_size", "resize", "epochs", "adapt_epochs",
                                       "coreset_ratio"))
        if changed:
            notes.append("changed: " + ", ".join(f"{k}={cfg[k]}" for k in changed))
        sev = sorted(set(int(s) for s in sub["severity"]) - {0})
        if sev and sev != [preset.severity]:
            notes.append(f"severity {sev} (paper: {preset.severity})")
        if set(sub["protocol"]) != {preset.protocol}:
            notes.append(f"corruption protocol {sorted(set(sub['protocol']))} (paper: {preset.protocol})")
        cats = set(sub["category"])
        if standard and cats != standard:
            notes.append(f"{len(cats)} of {len(standard)} categories")
        if "test_subset" in sub and (sub["test_subset"].fillna(0) > 0).any():
            notes.append(f"test subset of {int(sub['test_subset'].max())} images")
        sources = {str(v) for v in (sub["domain_source"].dropna() if "domain_source" in sub else [])}
        generated = sorted(v for v in sources if "generated" in v.lower() and not standin_of(v))
        notes += generated  # e.g. MNIST-M made from MNIST and photographs, not the release
        out[method] = notes
    return out


# A size cap whose paper value is papers.NO_CAP (the whole set) -> the rows' diagnostics of the
# items it used and of the set's size, and what it cuts: a cap that cut nothing is no departure.
_CAPS = {"ot_bank_cap": ("diag_ot_bank_used", "diag_bank_size", "the bank")}


def _stated(preset: Preset, dataset: str, method: str) -> dict[str, Any]:
    """``papers.PAPER_CONFIG``'s values for ``method``: the fields its Config has (a field not
    there yet is skipped) that the preset's own settings do not set (those are the paper's too)."""
    from .methods import get

    fields = {f.name for f in dataclasses.fields(get(method).cls.Config)}
    set_here = {name for scope, _, name in (k.rpartition(".") for k in preset.settings(dataset))
                if scope in ("", method)}
    return {k: v for k, v in papers.PAPER_CONFIG.get(method, {}).items() if k in fields and k not in set_here}


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)  # as --set takes it


def _stated_departure(key: str, value: Any, paper: Any, rows) -> str | None:
    """The note for a run's ``key=value`` where the paper states ``paper`` (None: the same)."""
    if key in _CAPS and paper == papers.NO_CAP:
        if not isinstance(value, (int, float)) or value <= 0:  # 0: no cap
            return None
        used, size, what = _CAPS[key]
        seen = rows[rows[used].notna()] if used in rows else rows.iloc[:0]
        if seen.empty:  # no diagnostics (the rows of an older version, or no cell adapted): the config says it
            return f"{key}={_shown(value)} (paper: no cap)"
        cut = seen[used] >= value
        if size in seen:
            cut &= seen[size].fillna(float("inf")) > value
        n = seen.loc[cut, "category"].nunique()
        return f"{key}={_shown(value)} (paper: no cap; it cut {what} in {n} of {seen['category'].nunique()} " \
               "categories)" if n else None
    return None if value == paper else f"{key}={_shown(value)} (paper: {_shown(paper)})"


def comparison(preset: Preset, spec, rows, fmt: str = "markdown") -> str:
    """Ours next to the published numbers, per metric; daggers on methods whose run departs
    from the paper's protocol, the departures listed below. The spec's methods the preset does
    not have (``bench reproduce --add-methods``) follow the paper's rows, and its corruptions the
    preset does not have (``--add-corruptions``) the paper's columns, without a published value."""
    from .tables.published import _render_comparison, compare_published
    from .tables.names import METRIC_NAMES, _nice, condition_label, method_display
    from .tables.render import latex_notes, latex_text

    ok = rows[rows["status"] == "ok"].copy()
    if ok.empty:
        raise BenchError("no finished cells to compare (every cell failed or none ran)")
    added = [m for m in spec.method_names() if m not in preset.methods]
    shifts = added_corruptions(preset, spec.corruptions)
    dep = departures(preset, spec, ok)
    ok["dataset"] = preset.paper_dataset(spec.dataset)
    dagger = "†"  # marks are text here; the LaTeX renderer writes them as $^\dagger$ / $^\ddagger$
    notes = [f"{dagger} {m}: " + "; ".join(n) for m, n in dep.items() if n]

    def joined(parts: list[str]) -> str:
        if not notes:
            return "\n\n".join(parts)
        # Markdown: a hard line break (two trailing spaces) per note, or a viewer runs them together
        return "\n\n".join(parts + [latex_notes(notes) if fmt == "latex" else "  \n".join(notes)])

    if preset.runtime:
        from .tables.published import runtime_comparison

        return joined([runtime_comparison(ok, preset, fmt, dagger, dep)])
    parts = []
    blocks = preset.blocks or ((None, None),)
    for metric in preset.metrics:
        for setting, categories in blocks:
            sub = ok if categories is None else ok[ok["category"].isin(categories)]
            if sub.empty:
                continue
            for per_class in _layouts(preset):
                long = compare_published(sub, paper=preset.paper, table=preset.table, metric=metric,
                                         method_map=preset.method_map, setting=setting, per_class=per_class,
                                         only_ours=not preset.not_run, extra=added, extra_corruptions=shifts)
                if preset.not_run:  # the rows we cannot run stay, published value only, marked
                    long = long[long["ours_method"].notna() | long["method"].isin(preset.not_run)]
                long["method"] = [f"{m}{dagger}" if dep.get(o) else f"{m}{NOT_RUN}" if m in preset.not_run else m
                                  for m, o in zip(long["method"], long["ours_method"])]
                mean = " (mean over classes)" if preset.per_class and not per_class else ""
                title = (f"{preset.summary}{f' ({setting})' if setting else ''}{mean}. "
                         f"{_nice(metric, METRIC_NAMES)}: ours (published).")
                parts.append(_render_comparison(long, fmt, 2, latex_text(title) if fmt == "latex" else title, None))
    if preset.not_run:
        notes += [f"{NOT_RUN} {m}: not run ({why})" for m, why in preset.not_run.items()]
    if added:
        notes.append(f"{', '.join(method_display(m) for m in added)}: not in the paper; run under this table's "
                     "protocol (its settings reach the fields a method has)")
    if shifts:
        notes.append(f"{', '.join(condition_label(c) for c in shifts)}: not in the paper; run at severity "
                     f"{preset.severity} under this table's protocol")
    return joined(parts)


def added_corruptions(preset: Preset, corruptions: list[str]) -> list[str]:
    """The corruptions of ``corruptions`` that ``preset`` has no column for (``--add-corruptions``)."""
    from .datasets.corruptions import CLEAN

    return [c for c in corruptions if c not in preset.corruptions and c != CLEAN]


def check_added_corruptions(preset: Preset, corruptions: list[str]) -> None:
    """``--add-corruptions`` needs a table whose columns are corruptions at one severity: one line otherwise."""
    why = ("compares run times, not metrics" if preset.runtime else
           "has test domains for columns" if preset.domains else
           "has a column per class" if preset.per_class else "")
    if corruptions and why:
        raise BenchError(f"--add-corruptions: {preset.name} {why}; run your corruption with bench grid "
                         f"--corruptions {','.join(corruptions)}")


NOT_RUN = "‡"  # a published row the harness cannot run


def _layouts(preset: Preset) -> tuple[bool, ...]:
    """per_class values to render: the per-class table, then its mean where the paper prints one."""
    if not preset.per_class:
        return (False,)
    from .papers import published

    pub = published(paper=preset.paper, table=preset.table)
    return (True, False) if (pub["category"] == "").any() and (pub["category"] != "").any() else (True,)
