"""Qualitative maps (TTAD Fig. 4): per test image and condition, the clean input, the condition's
input, the ground truth, each method's anomaly map on that input, and the first method's map on
the clean input (the "source prediction" upper bound). With several test domains (e.g. MNIST and
MNIST-M), a condition is one domain's: its clean input is that domain's, and its images are that
domain's kept ones.

Maps come from the side files ``bench grid`` keeps (``bench.samples``): a few seeded test images
per cell, the same images for every method and condition of a domain. Each method's maps are
scaled to [0, 1] by the minimum and maximum over its sampled maps of that cell, so a map shows
where that method puts its highest scores among the sampled images, not its absolute scores.

A side file that does not unpack (torn) is one warning naming it; that cell's panels read
"unreadable maps" and the rest is drawn. Only when no cell's samples are left is it an error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BenchError
from ..methods.errors import warn
from ..samples import MapSamples, UnreadableSamples
from .common import (Cond, at, cond_label, conditions_of, method_label, method_order, ok_rows, one_category_seed,
                     one_config_each, pyplot, save, select, store)


def plot(run: Path, out: Path, methods: Sequence[str] | None = None, category: str | None = None,
         seed: int | None = None, conditions: Sequence[str] | None = None,
         images: Sequence[str] | None = None) -> list[Path]:
    df = select(ok_rows(run), run, methods, [category] if category else None,
                [seed] if seed is not None else None)
    df, category, seed = one_category_seed(df, category, seed)
    df, note = one_config_each(df, run)
    st = store(run)
    cache: dict[str, MapSamples | None] = {}
    unreadable: list[str] = []  # cells whose side file does not unpack (each warned once)

    def cell(method: str, cond: Cond) -> str | None:
        row = at(df, method, cond)
        return None if row.empty else row["cell_id"].iloc[-1]

    def samples(method: str, cond: Cond) -> MapSamples | None:
        cid = cell(method, cond)
        if cid is None:
            return None
        if cid not in cache:
            try:
                cache[cid] = st.read_samples(cid) if st.parts_dir.is_dir() else None
            except UnreadableSamples as exc:
                warn(f"{exc.path}: unreadable map samples ({exc.reason}); its cell's maps are left out of the "
                     "plot (rerunning its grid, bench grid with the same --out, moves the part aside and "
                     "runs the cell again)")
                cache[cid] = None
                unreadable.append(cid)
        return cache[cid]

    def absent(method: str, cond: Cond) -> str:
        """What a panel without samples says."""
        return "unreadable maps" if cell(method, cond) in unreadable else "no row"

    def clean(cond: Cond) -> Cond:
        return (cond[0], "clean", 0)  # the same test domain, uncorrupted

    order = method_order(df, methods)
    conds = conditions_of(df, conditions, run)
    refs: dict[str, MapSamples] = {}  # per test domain: the first readable samples (its kept images)
    for m in order:
        for c in conds + [clean(c) for c in conds]:
            if c[0] not in refs and (s := samples(m, c)) is not None:
                refs[c[0]] = s
    if not refs and unreadable:
        raise BenchError(f"{run}: no readable anomaly-map samples for {category} seed {seed}: the side file of "
                         f"each of its {len(unreadable)} cell(s) with maps is unreadable (see the warnings); "
                         "rerun its grid (bench grid with the same --out moves those parts aside and runs "
                         "their cells again)")
    if not refs:
        raise BenchError(f"{run}: no anomaly-map samples for {category} seed {seed} (parts/*.maps.npz): the rows "
                         "were written before maps were kept, exported to one file, or run with --map-samples 0; "
                         "rerun those cells with bench grid")
    if images:
        kept = list(dict.fromkeys(i for ref in refs.values() for i in ref.ids))
        missing = [i for i in images if i not in kept]
        if missing:
            raise BenchError(f"--images {', '.join(missing)}: no kept map for it; kept for {category}: "
                             f"{', '.join(kept)}")
    ids = {d: _chosen(ref, images) for d, ref in refs.items()}  # image ids are a domain's own
    lines = [(cond, image_id) for cond in conds for image_id in ids.get(cond[0], [])]

    # column 1 is the row's own input: "corrupted" unless a row is a clean one
    shown_input = "corrupted input" if all(c[1] != "clean" for c in conds) else "input"
    columns = ["clean input", shown_input, "ground truth"] + [method_label(m) for m in order]
    columns.append(f"{method_label(order[0])}, clean input")
    plt = pyplot()
    fig, axes = plt.subplots(len(lines), len(columns), figsize=(1.55 * len(columns), 1.65 * len(lines) + 0.9),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("jet")
    for row_axes, (cond, image_id) in zip(axes, lines):
        ref = refs[cond[0]]
        shape = ref.images[ref.index(image_id)].shape[:2]  # of a panel left blank: lines up the titles
        first = samples(order[0], cond)
        src = samples(order[0], clean(cond))
        _image(row_axes[0], src, image_id, shape, absent(order[0], clean(cond)))
        _image(row_axes[1], first, image_id, shape, absent(order[0], cond))
        _truth(row_axes[2], first or src, image_id, shape)
        for j, method in enumerate(order):
            _map(row_axes[3 + j], samples(method, cond), image_id, cmap, shape, absent(method, cond))
        _map(row_axes[-1], src, image_id, cmap, shape, absent(order[0], clean(cond)))
        short = "/".join(Path(image_id).with_suffix("").parts[-2:])  # defect type / file stem
        row_axes[0].set_ylabel(f"{cond_label(*cond)}\n{short}", fontsize=7)
    for j, name in enumerate(columns):
        axes[0][j].set_title(name, fontsize=8)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    cbar = fig.colorbar(mappable, ax=axes, orientation="horizontal", fraction=0.05, aspect=60)
    cbar.set_label("anomaly score, scaled to [0, 1] per method and cell (min-max over its kept maps); "
                   "white outline: ground truth", fontsize=7)
    fig.suptitle(f"{category}, seed {seed}" + (f"\n{note}" if note else ""), fontsize=9)
    return save(fig, out, f"maps_{category}_seed{seed}")


def _chosen(ref: MapSamples, images: Sequence[str] | None) -> list[str]:
    """The ``images`` this domain keeps; default: its first kept anomalous image (one with ground
    truth pixels), else its first image."""
    if images:
        return [i for i in images if i in ref.ids]
    anomalous = [i for k, i in enumerate(ref.ids) if ref.masks is not None and ref.masks[k].any()]
    return (anomalous or ref.ids)[:1]


def _blank(ax, text: str = "", shape: tuple[int, int] | None = None) -> None:
    if shape is not None:  # the box an image of this shape gets, so that its title lines up with theirs
        ax.set_xlim(-0.5, shape[1] - 0.5)
        ax.set_ylim(shape[0] - 0.5, -0.5)
        ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if text:
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=7, transform=ax.transAxes)


def _image(ax, s: MapSamples | None, image_id: str, shape: tuple[int, int], absent: str = "no row") -> None:
    if s is None or image_id not in s.ids:
        return _blank(ax, absent if s is None else "no row", shape)
    ax.imshow(s.images[s.index(image_id)])
    _blank(ax)


def _truth(ax, s: MapSamples | None, image_id: str, shape: tuple[int, int]) -> None:
    if s is None or image_id not in s.ids or s.masks is None:
        return _blank(ax, "no mask", shape)
    ax.imshow(s.masks[s.index(image_id)], cmap="gray", vmin=0, vmax=1)
    _blank(ax)


def _map(ax, s: MapSamples | None, image_id: str, cmap, shape: tuple[int, int], absent: str = "no row") -> None:
    if s is None or image_id not in s.ids:
        return _blank(ax, absent if s is None else "no row", shape)
    k = s.index(image_id)
    maps = s.maps.astype(np.float32)
    lo, hi = float(maps.min()), float(maps.max())
    shown = (maps[k] - lo) / (hi - lo) if hi > lo else np.zeros_like(maps[k])
    ax.imshow(s.images[k])
    ax.imshow(shown, cmap=cmap, vmin=0, vmax=1, alpha=0.5)
    if s.masks is not None and s.masks[k].any():
        ax.contour(s.masks[k].astype(float), levels=[0.5], colors="white", linewidths=0.7)
    _blank(ax)
