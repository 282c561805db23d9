"""TTAD's readings at the paper's settings, side by side with PatchCore: the ablation that sets
the defaults of ``ttad`` (and runs TTT++ / TTAC at the same settings).

    python benchmarks/ttad_ablation.py --root ../shared/data/magnetic_tile --categories magnetic_tile \
        --test-subset 100 --device auto --out results/reference/ttad_ablation_magnetic_tile

Every reading is one ``bench grid`` (clean + the corruptions at one severity) in its own run
directory under ``--out``, so a killed ablation resumes where it stopped and one shared TTA fit
(the fit cache) serves all readings. Settings are the methods' defaults, i.e. the paper's: 10
epochs over every target image of the cell, batches of 10 (+ one flip/rot90 view for TTAD),
SGD lr 0.003 momentum 0.9, 100 Sinkhorn iterations at most. The table printed at the end (and
written to ``table.md``) has, per reading and condition, image / pixel AUROC and AUPRO (%),
and for the OT readings TTAD Fig. 5's count: assignments of bank items (their strongest target
patch, last epoch) to target patches inside a ground-truth defect, next to the number of
distinct in-defect patches that received any.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# reading -> (registered method, config overrides); each is one recorded configuration
READINGS: dict[str, tuple[str, dict[str, str]]] = {
    "patchcore": ("none", {}),
    "or": ("ttad", {"assignment": "or"}),
    "column": ("ttad", {"assignment": "column"}),
    "or+batch_bn": ("ttad", {"assignment": "or", "bn_mode": "batch"}),
    "column+batch_bn": ("ttad", {"assignment": "column", "bn_mode": "batch"}),
    "or+adapted_bank": ("ttad", {"assignment": "or", "score_bank": "adapted"}),
    "column+adapted_bank": ("ttad", {"assignment": "column", "score_bank": "adapted"}),
    "mutual": ("ttad", {"assignment": "mutual"}),
    "continuous": ("ttad", {"assignment": "continuous"}),
    "or+sum": ("ttad", {"assignment": "or", "ot_reduction": "sum"}),
    "or+no_views": ("ot_discrete", {}),  # Table 4: no target augmentation
    "or+copies": ("ot_discrete_copy", {}),  # Table 4: the batch duplicated instead of flipped/rotated
    "ttt++": ("ttt++", {}),
    "ttac": ("ttac", {}),
    # exact assignment: a (N x 16,384) linear assignment per step on the CPU; ask for it by name
    "hungarian": ("ot_hungarian", {}),
}
DEFAULT_READINGS = [r for r in READINGS if r != "hungarian"]
# The ablation adapts on clean test sets too (the named methods do not, as the papers' tables):
# what a reading does to clean images is half of what it measures.
ADAPT_CLEAN = {"adapt_clean": "true"}
METRICS = ("image_auroc", "pixel_auroc", "aupro")


def run(args: argparse.Namespace) -> pd.DataFrame:
    import pandas as pd

    from bench.executors import make_executor, run_grid
    from bench.grid import GridSpec
    from bench.results import load_rows
    from bench.runner import resolve_device

    device = resolve_device(args.device)
    extra = dict(s.split("=", 1) for s in args.set)
    frames = []
    for name in args.readings:
        method, overrides = READINGS[name]
        spec = GridSpec(methods=[method], dataset=args.dataset or ("folder" if args.root else "textures"), root=args.root,
                        categories=args.categories, corruptions=args.corruptions, severities=[args.severity],
                        overrides={**ADAPT_CLEAN, **overrides, **extra}, device=device, test_subset=args.test_subset)
        run_dir = Path(args.out) / "runs" / name.replace("+", "_")
        print(f"== {name}: {method} {overrides or ''} -> {run_dir}", file=sys.stderr, flush=True)
        run_grid(spec, run_dir, make_executor("local", threads=args.threads), show_progress=args.progress)
        df = load_rows(run_dir)
        df.insert(0, "reading", name)
        frames.append(df)
        save(pd.concat(frames, ignore_index=True), Path(args.out))  # so far: an interrupted run keeps its table
    return pd.concat(frames, ignore_index=True)


def save(df: pd.DataFrame, out: Path) -> str:
    text = table(df)
    (out / "table.md").write_text(text + "\n")
    df.to_parquet(out / "rows.parquet", index=False)
    return text


def table(df: pd.DataFrame) -> str:
    import pandas as pd

    ok = df[df["status"] == "ok"].copy()
    ok["condition"] = [c if c == "clean" else f"{c}@{s}" for c, s in zip(ok["corruption"], ok["severity"])]
    conditions = list(dict.fromkeys(ok["condition"]))
    lines = []
    head = ["reading"] + [f"{c} {m}" for c in conditions for m in ("img", "pix", "pro")] + \
           [f"{c} fig5" for c in conditions] + ["adapt s/cell"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for reading in dict.fromkeys(ok["reading"]):
        sub = ok[ok["reading"] == reading].groupby("condition").mean(numeric_only=True)
        cells = [reading]
        for c in conditions:
            for m in METRICS:
                cells.append(f"{100 * sub.loc[c, m]:.2f}" if c in sub.index else "")
        for c in conditions:
            if c in sub.index and "diag_ot_colmax_in_mask" in sub.columns and pd.notna(sub.loc[c, "diag_ot_colmax_in_mask"]):
                cells.append(f"{sub.loc[c, 'diag_ot_colmax_in_mask']:.0f} / {sub.loc[c, 'diag_ot_colmax_in_mask_patches']:.0f}"
                             f" of {sub.loc[c, 'diag_ot_colmax_mask_patches']:.0f}")
            else:
                cells.append("")
        cells.append(f"{sub['adapt_seconds'].mean():.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    failed = df[df["status"] != "ok"]
    notes = [f"- failed: {r.reading} {r.corruption}: {r.error}" for r in failed.itertuples()]
    return "\n".join(lines + [""] + notes +
                     ["fig5 = assignments to in-defect target patches (bank items whose strongest target patch, "
                      "last epoch, lies inside a defect: TTAD Fig. 5's count) / distinct in-defect patches that "
                      "received any, of all in-defect patches of the adapted images (views folded back)."])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=None)
    p.add_argument("--dataset", default=None, help="dataset name (default: folder with --root, else textures)")
    p.add_argument("--categories", nargs="+", default=None)
    p.add_argument("--corruptions", nargs="+", default=["gaussian_noise", "contrast"])
    p.add_argument("--severity", type=int, default=5)
    p.add_argument("--test-subset", type=int, default=100)
    p.add_argument("--readings", nargs="+", default=DEFAULT_READINGS, choices=list(READINGS))
    p.add_argument("--set", action="append", default=[], help="FIELD=VALUE for every reading (e.g. a CPU budget)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="results/ablations/ttad")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = p.parse_args(argv)
    print(save(run(args), Path(args.out)))


if __name__ == "__main__":
    main()
