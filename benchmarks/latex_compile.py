"""Compile every LaTeX table the harness writes with pdflatex; prints OK / FAIL per table.

    apt-get install texlive-latex-recommended   # pdflatex and booktabs
    python benchmarks/latex_compile.py [--keep DIR]

The tables: `bench reproduce -f latex` of every preset (on synthetic rows of two categories, so
the subset marks and their notes appear) and `bench table -f latex` in each layout on the
committed reference rows (results/reference/textures_default). Each is set in a minimal article
with booktabs, as a paper would include it. CI has no TeX; tests/_latex.py checks the same
outputs' structure there. Exit 1 when a table fails to compile.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

DOCUMENT = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage[margin=1cm,landscape]{geometry}
\begin{document}
%s
\end{document}
"""


def tables() -> dict[str, str]:
    from _grids import preset_rows

    from bench.presets import PRESETS, comparison, get_preset, grid_spec
    from bench.results import load_rows
    from bench.tables import main_table

    out = {}
    for name in PRESETS:
        p = get_preset(name)
        for dataset in p.datasets:
            spec = grid_spec(p, dataset=dataset)
            rows = preset_rows(p, spec, (spec.categories or [""])[:2], lambda c: 0.8,
                               **({"epochs": 1} if p.runtime else {}))
            out[f"reproduce-{name}-{dataset}"] = comparison(p, spec, rows, fmt="latex")
    ref = load_rows(ROOT / "results" / "reference" / "textures_default")
    out["table-main"] = main_table(ref, fmt="latex")
    out["table-metrics"] = main_table(ref, ["image_auroc", "pixel_auroc", "aupro"], fmt="latex")
    out["table-per-class"] = main_table(ref, fmt="latex", per_class=True)
    out["table-defect-type"] = main_table(ref, fmt="latex", by="defect_type")
    out["table-interval"] = main_table(ref, fmt="latex", interval=200)
    out["table-severity-mean"] = main_table(ref, fmt="latex", severity_mean=True, relative="clean")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="Write the .tex and .pdf files here.")
    args = ap.parse_args()
    if shutil.which("pdflatex") is None:
        print("pdflatex not found: apt-get install texlive-latex-recommended (or another TeX with booktabs)")
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="latex_compile_"))
    work.mkdir(parents=True, exist_ok=True)
    failed, rendered = 0, tables()
    for name, body in rendered.items():
        (work / f"{name}.tex").write_text(DOCUMENT % body)
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                             cwd=work, capture_output=True, text=True, timeout=120)
        if run.returncode == 0:
            print(f"OK    {name}")
            continue
        failed += 1
        error = next((ln for ln in run.stdout.splitlines() if ln.startswith("!")), "no '!' line in the log")
        print(f"FAIL  {name}: {error}")
    print(f"{failed} of {len(rendered)} tables failed to compile" if failed else "every table compiled")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
