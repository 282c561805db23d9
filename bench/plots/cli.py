"""``bench plot KIND RUN``: the figure commands (each draws from a run's rows, see the modules)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..cli_common import console, split_list
from ..errors import BenchError

plot_app = typer.Typer(no_args_is_help=True, help="Figures from a run's rows: PNG and PDF files in --out.")
_RUN = typer.Argument(..., help="Run directory (results/runs/...).")
_OUT = typer.Option(Path("plots"), "--out", "-o", help="Folder for the PNG and PDF files.")
_PLOT_METHODS = typer.Option(None, "--methods", help="Select and order methods (default: all in the run).")
_CATEGORY = typer.Option(None, "--category", help="The category (default: the first).")
_SEED = typer.Option(None, "--seed", help="The seed (default: the smallest).")
_CONDITIONS = typer.Option(None, "--conditions", help="e.g. gaussian_noise@5,contrast,clean, each in every test domain that has it, or a test domain's name, e.g. mnist_m (default: each corruption at its highest severity, per domain).")


def _wrote(paths) -> None:
    for p in paths:
        console.print(f"wrote {p}", highlight=False, soft_wrap=True, markup=False)


@plot_app.command("severity")
def plot_severity(run: Path = _RUN, out: Path = _OUT,
                  metric: str = typer.Option("image_auroc", "--metric", help="Metric column."),
                  methods: Optional[List[str]] = _PLOT_METHODS,
                  categories: Optional[List[str]] = typer.Option(None, "--categories", "-c", help="Categories to average (default: all).")) -> None:
    """Metric vs severity 1-5 per method (and test domain), one panel per corruption (GNL Fig. 4)."""
    from . import severity

    _wrote(severity.plot(run, out, metric, split_list(methods), split_list(categories)))


@plot_app.command("maps")
def plot_maps(run: Path = _RUN, out: Path = _OUT, methods: Optional[List[str]] = _PLOT_METHODS,
              category: Optional[str] = _CATEGORY, seed: Optional[int] = _SEED,
              conditions: Optional[List[str]] = _CONDITIONS,
              images: Optional[List[str]] = typer.Option(None, "--images", help="Test image ids among the kept ones (default: the first anomalous).")) -> None:
    """Clean / corrupted input, ground truth and each method's map (TTAD Fig. 4)."""
    from . import maps

    _wrote(maps.plot(run, out, split_list(methods), category, seed, split_list(conditions), split_list(images)))


@plot_app.command("histograms")
def plot_histograms(run: Path = _RUN, out: Path = _OUT, methods: Optional[List[str]] = _PLOT_METHODS,
                    category: Optional[str] = _CATEGORY, seed: Optional[int] = _SEED,
                    conditions: Optional[List[str]] = _CONDITIONS,
                    bins: int = typer.Option(20, "--bins", help="Histogram bins.")) -> None:
    """Image scores of normal vs anomalous test images per method and condition (GNL Fig. 2)."""
    from . import histograms

    _wrote(histograms.plot(run, out, split_list(methods), category, seed, split_list(conditions), bins))


@plot_app.command("assignments")
def plot_assignments(run: Path = _RUN, out: Path = _OUT, methods: Optional[List[str]] = _PLOT_METHODS,
                     categories: Optional[List[str]] = typer.Option(None, "--categories", "-c", help="Categories to sum (default: all)."),
                     conditions: Optional[List[str]] = _CONDITIONS) -> None:
    """OT assignments to anomalous patches per reading and augmentation (TTAD Fig. 5)."""
    from . import assignments

    _wrote(assignments.plot(run, out, split_list(methods), split_list(categories), split_list(conditions)))


@plot_app.command("all")
def plot_all(run: Path = _RUN, out: Path = _OUT) -> None:
    """Every figure the run has what it needs for, with the defaults; a line for each it has not."""
    from . import assignments, histograms, maps, severity

    made = 0
    for name, draw in (("severity", severity.plot), ("maps", maps.plot), ("histograms", histograms.plot),
                       ("assignments", assignments.plot)):
        try:
            _wrote(draw(run, out))
            made += 1
        except BenchError as exc:
            console.print(f"skipped {name}: {exc}", highlight=False, soft_wrap=True, markup=False)
    if not made:
        raise BenchError(f"{run}: no figure could be drawn (see the lines above)")
