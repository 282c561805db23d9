"""The ``bench`` command line: grid, corrupt, table, compare-methods, list, export, perf, reproduce,
doctor; the figure commands (``bench plot``) are in ``bench.plots.cli``."""
from __future__ import annotations

import errno
import faulthandler
import os
import re
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .cli_common import console, parse_ints, parse_overrides, split_list
from .errors import BenchError, show_warnings
from .plots.cli import plot_app

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="adshift-bench: anomaly detection under distribution shift.")
_DEBUG = {"on": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    _DEBUG["on"] = debug
    show_warnings(lambda line: console.print(line, style="yellow", highlight=False, soft_wrap=True, markup=False))


def _grid_spec(methods, dataset, root, categories, corruptions, severities, seeds, protocol,
               backbone=None, weights=None, set_=None, device="cpu", test_subset=0, nondeterministic=False,
               domains=None, **stored):
    from .grid import GridSpec

    return GridSpec(
        methods=split_list(methods, "methods") or ["all"],
        dataset=dataset or ("folder" if root is not None else "textures"),
        root=str(root) if root is not None else None,
        categories=split_list(categories, "categories"),
        domains=split_list(domains, "domains"),
        corruptions=split_list(corruptions, "corruptions") or ["paper"],
        severities=parse_ints(severities, "severities") or [5],
        seeds=parse_ints(seeds, "seeds") or [0],
        protocol=protocol,
        backbone=backbone,
        weights=weights,
        overrides=parse_overrides(set_),
        device=device,
        test_subset=test_subset,
        deterministic=not nondeterministic,
        **stored,
    )


def _run(run_grid, *args, **kwargs):
    """``run_grid`` with SIGTERM acting as Ctrl-C; either prints the cells written and how to
    resume, and exits 130 (SIGINT) or 143 (SIGTERM)."""
    from .interrupts import GridInterrupted, sigterm_raises, signal_of

    try:
        with sigterm_raises():
            return run_grid(*args, **kwargs)
    except GridInterrupted as exc:
        console.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt as exc:  # before the grid started: nothing written
        sig = signal_of(exc)
        console.print(f"interrupted ({sig.name}) before any cell ran; run the same command to start",
                      highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(code=128 + int(sig)) from None


# The data options of `grid` and `corrupt` (one definition; typer reads each as a default).
_DATASET = typer.Option(None, "--dataset", "-d", help="Dataset name (default: textures; 'folder' when --root is given).")
_ROOT = typer.Option(None, "--root", help="Folder holding the dataset's categories.")
_CATEGORIES = typer.Option(None, "--categories", "-c", help="Categories (default: all).")
_DOMAINS = typer.Option(None, "--domains", help="Test domains of a dataset that has several, comma-separated, or "
                        "'all' (mnist: mnist,mnist_m; pacs: photo,art_painting,cartoon,sketch); default: its "
                        "in-distribution one. Corruptions apply to each.")
_CORRUPTIONS = typer.Option(["paper"], "--corruptions", help="Names or presets (paper, common, all, noise, ...); the clean cells always run.")
_SEVERITIES = typer.Option(["5"], "--severities", "-s", help="Severities (1 to 5): --severities 1,3,5, or a range: 1-5.")
_SEEDS = typer.Option(["0"], "--seeds", help="Seeds: --seeds 0,1,2 or --seeds 0 1 2, or a range: 0-4.")
_DRY_RUN = typer.Option(False, "--dry-run", help="Check the inputs and say what would run (cells done / to run, fits to compute), running no cell and changing nothing in the run directory.")
_PROTOCOL = typer.Option("native", "--protocol", help="native (corrupt the original file) or resized.")
_NONDETERMINISTIC = typer.Option(
    False, "--nondeterministic",
    help="CUDA: let cuBLAS / cuDNN pick their fastest kernels instead of deterministic ones (recorded in the rows; "
         "the CPU's kernels are deterministic at a fixed --threads).")


@app.command()
def grid(
    methods: List[str] = typer.Option(["all"], "--methods", "-m", help="Method names, comma-separated, or 'all'."),
    dataset: Optional[str] = _DATASET,
    root: Optional[Path] = _ROOT,
    categories: Optional[List[str]] = _CATEGORIES,
    domains: Optional[List[str]] = _DOMAINS,
    corruptions: List[str] = _CORRUPTIONS,
    severities: List[str] = _SEVERITIES,
    seeds: List[str] = _SEEDS,
    protocol: str = _PROTOCOL,
    backbone: Optional[str] = typer.Option(None, "--backbone", help="timm backbone, e.g. wide_resnet50_2."),
    weights: Optional[str] = typer.Option(None, "--weights", help="imagenet, random, shapenet (Point-MAE), or a state-dict path."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Hyperparameter FIELD=VALUE or METHOD.FIELD=VALUE."),
    test_subset: int = typer.Option(0, "--test-subset", help="Evaluate on a seeded subset of N test images per category, stratified by defect type (0 = all); recorded in every row."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N] (with Ray: resolved on each worker)."),
    nondeterministic: bool = _NONDETERMINISTIC,
    executor: str = typer.Option("local", "--executor", "-x", help="local (this machine) or ray (a Ray cluster)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Local worker processes (1 = in-process)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per cell (default: all cores in-process, cores / workers with --workers, --cpus-per-cell on Ray). The same value gives bit-identical metrics on every executor."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto or HOST:PORT (default: start a local one)."),
    cpus_per_cell: float = typer.Option(1.0, "--cpus-per-cell", help="Ray: CPUs each fit / cell task reserves."),
    gpus_per_cell: float = typer.Option(0.0, "--gpus-per-cell", help="Ray: GPUs each fit / cell task reserves (fractions share one)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: results/runs/<dataset>-<grid hash>)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun cells recorded as failed."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Resamples of each cell's bootstrap interval of image AUROC (0 = none); stored in the rows."),
    map_samples: int = typer.Option(4, "--map-samples", help="Test images per cell whose anomaly maps are kept for `bench plot maps` (0 = none)."),
    map_size: int = typer.Option(64, "--map-size", help="Side in pixels (at most) of the kept maps and images."),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Run every missing cell of a grid; rerunning the same command resumes it."""
    from .executors import DRY_RUN_DONE, make_executor, plan_grid, run_grid
    from .grid import default_run_dir
    from .results import load_rows
    from .tables import main_table
    from .tables.aggregate import LostMasksWarning

    ex = make_executor(executor, workers=workers, threads=threads, address=address,
                       cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell, device=device)
    from .runner import check_device_name, resolve_device

    # with Ray each task resolves the device on its worker: here only its name is checked
    device = resolve_device(device) if executor != "ray" else check_device_name(device)
    spec = _grid_spec(methods, dataset, root, categories, corruptions, severities, seeds, protocol,
                      backbone, weights, set_, device, test_subset, nondeterministic, domains,
                      bootstrap=bootstrap, map_samples=map_samples, map_size=map_size)
    run_dir = out or default_run_dir(spec)
    if dry_run:
        typer.echo("\n".join(plan_grid(spec, run_dir, retry_failed=retry_failed).lines() + [DRY_RUN_DONE]))
        return
    summary = _run(run_grid, spec, run_dir, ex, retry_failed=retry_failed, console=console, show_progress=progress)
    console.print(
        f"run {summary.run_dir} ({summary.executor}): {summary.total} cells, {summary.skipped} already done, "
        f"{summary.ran} ran ({summary.failed} failed) in {summary.seconds:.1f}s; {summary.cache_line()}",
        highlight=False, soft_wrap=True, markup=False,
    )
    df = load_rows(run_dir)
    if (df["status"] == "ok").any():
        with warnings.catch_warnings():  # the driver said each lost mask when its cell ran
            warnings.simplefilter("ignore", LostMasksWarning)
            typer.echo(main_table(df, "image_auroc", fmt="markdown", caption="Image AUROC (%)"))
    n_failed = int((df["status"] != "ok").sum())
    if n_failed:
        if n_failed > summary.failed:
            console.print(f"{n_failed} cells of this run are recorded as failed; fix the cause and rerun "
                          "with --retry-failed", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command()
def status(
    runs: List[Path] = typer.Argument(..., help="Run directories: the --out of bench grid or bench reproduce."),
) -> None:
    """Where runs stand, from their own files (no command needed): whether a grid runs there now,
    cells done / failed / to run per method, and the time left at its pace."""
    from .status import status_lines

    if len(runs) == 1:
        typer.echo("\n".join(status_lines(runs[0])))
        return
    bad = 0
    for run in runs:  # a glob may take in a folder that is not a run: say so and go on
        try:
            typer.echo("\n".join(status_lines(run)))
        except BenchError as exc:
            _error(str(exc))
            bad += 1
    if bad:
        raise typer.Exit(code=2)


@app.command()
def corrupt(
    dataset: Optional[str] = _DATASET,
    root: Optional[Path] = _ROOT,
    categories: Optional[List[str]] = _CATEGORIES,
    domains: Optional[List[str]] = _DOMAINS,
    corruptions: List[str] = _CORRUPTIONS,
    severities: List[str] = _SEVERITIES,
    seeds: List[str] = _SEEDS,
    protocol: str = _PROTOCOL,
    workers: int = typer.Option(0, "--workers", "-w", help="Processes (default: one per CPU core)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    preview: bool = typer.Option(False, "--preview", help="Instead: draw one test image at every corruption and severity (OUT/corruptions.png, .pdf)."),
    image: Optional[str] = typer.Option(None, "--image", help="With --preview: the test image id (default: the first anomalous)."),
    out: Path = typer.Option(Path("plots"), "--out", "-o", help="With --preview: the folder for the figure."),
) -> None:
    """Generate and cache the corrupted test sets of a grid in parallel (a one-time cost).

    Takes the grid's data options; the cells of `bench grid` with the same options then read
    every corrupted image from the cache, in any process or worker on this machine. With
    --preview, draws one image of the first category as those cells will see it instead.
    """
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .datasets.corruptions import materialize_all
    from .grid import corruption_sets

    spec = _grid_spec(["all"], dataset, root, categories, corruptions, severities, seeds, protocol, domains=domains)
    if preview:
        from .plots.corruptions import plot

        for path in plot(spec, out, image):
            console.print(f"wrote {path}", highlight=False, soft_wrap=True, markup=False)
        return
    sets = corruption_sets(spec)
    t0 = time.perf_counter()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not progress) as bar:
        task = bar.add_task("corrupt", total=sum(s.size for s in sets))
        stats = materialize_all(
            sets, protocol=spec.protocol, workers=workers or (os.cpu_count() or 1),
            progress=lambda done, _total, s: bar.update(task, completed=done,
                                                         description=f"{s.dataset} / {s.category} / seed {s.seed}"))
    n_sets = sum(len(s.corruptions) * len(s.severities) for s in sets)
    console.print(
        f"corrupted test sets: {n_sets} sets ({stats.total} images) in {time.perf_counter() - t0:.1f}s: "
        f"{stats.generated} images generated, {stats.cached} already cached",
        highlight=False, soft_wrap=True,
    )


@app.command()
def table(
    runs: List[Path] = typer.Argument(..., help="Run directories or rows.parquet files (several are merged)."),
    metric: List[str] = typer.Option(["image_auroc"], "--metric", help="Metric column(s), comma-separated."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="latex or markdown."),
    per_class: bool = typer.Option(False, "--per-class", help="Categories as rows (appendix layout)."),
    by: Optional[str] = typer.Option(None, "--by", help="defect_type: rows = (method, defect type), one of image_auroc, pixel_auroc, aupro."),
    methods: Optional[List[str]] = typer.Option(None, "--methods", help="Select and order methods (each with its variants: configs, protocols, test subsets)."),
    compare: Optional[str] = typer.Option(None, "--compare", help="Published table to compare with, e.g. ttad:1."),
    caption: Optional[str] = typer.Option(None, "--caption", help="The table's caption; with -f latex it is LaTeX as given (write \\% and \\_ for % and _)."),
    label: Optional[str] = typer.Option(None, "--label", help="LaTeX \\label of the table (e.g. tab:main), for \\ref."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    std: bool = typer.Option(True, "--std/--no-std", help="Show ± std over seeds where a value averages several seeds."),
    interval: bool = typer.Option(False, "--interval", help="Show each value's bootstrap interval over test images [lo, hi] (image AUROC)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples for --interval."),
    level: float = typer.Option(0.95, "--level", help="Confidence level of --interval."),
    relative: Optional[str] = typer.Option(None, "--relative", help="Differences in points, paired per category and seed: clean (each shifted value minus the method's own clean one: what the shift costs) or a method (each row minus that method's: what it wins back), e.g. patchcore."),
    corruptions: Optional[List[str]] = typer.Option(None, "--corruptions", help="Only these corruptions' columns (names or presets such as noise; Clean stays)."),
    categories: Optional[List[str]] = typer.Option(None, "--categories", "-c", help="Only these categories (the means are over them)."),
    severity_mean: bool = typer.Option(False, "--severity-mean", help="One column per corruption: the mean over its severities per category and seed, as ImageNet-C reports (a cell missing one gives no value)."),
) -> None:
    """Render a run's rows as a LaTeX (booktabs, best bold) or Markdown table."""
    from .metrics import METRICS
    from .recorded import with_missing_cells
    from .results import load_runs
    from .tables import compare_published, main_table

    if fmt not in ("latex", "markdown"):
        raise BenchError(f"--format {fmt}: use latex or markdown")
    df = load_runs(runs)
    run = ", ".join(map(str, runs))
    _require_ok_rows(df, run)
    df = with_missing_cells(df, runs)
    metrics_ = split_list(metric, "metric") or ["image_auroc"]
    for m in metrics_:
        if m not in df.columns:
            raise BenchError(f"--metric {m}: no such column in {run} (metrics: {', '.join(METRICS)})")
    if per_class and len(metrics_) > 1:
        raise BenchError(f"--per-class: one --metric per table (got {', '.join(metrics_)}); render one table each")
    conditions, cats = _table_selection(df, split_list(corruptions, "corruptions"), split_list(categories, "categories"),
                                        run)
    if compare and per_class:
        raise BenchError("--compare: the published table fixes its layout (bench reproduce renders the papers' "
                         "per-class tables in theirs); drop --per-class")
    if label is not None and not re.fullmatch(r"[\w:.\-]+", label):  # LaTeX reads \label{...} verbatim
        raise BenchError(f"--label {label}: use letters, digits and : . _ - only, e.g. tab:main")
    if compare and (conditions or cats):
        raise BenchError("--compare: the published table fixes its columns and categories (drop --corruptions / "
                         "--categories)")
    if severity_mean and (compare or interval or by):
        raise BenchError("--severity-mean: means over severities are shown in the main and per-class layouts "
                         "only (drop --compare / --interval / --by)")
    if by is not None:
        from .metrics import DEFECT_TYPE_METRICS
        from .tables.defects import BY_DEFECT_TYPE, require_breakdown

        if by != BY_DEFECT_TYPE:
            raise BenchError(f"--by {by}: the only breakdown is {BY_DEFECT_TYPE}")
        if len(metrics_) != 1 or metrics_[0] not in DEFECT_TYPE_METRICS:
            raise BenchError(f"--by {BY_DEFECT_TYPE}: pass one --metric of {', '.join(DEFECT_TYPE_METRICS)}")
        if per_class or compare or interval:
            raise BenchError(f"--by {BY_DEFECT_TYPE}: the main layout only (drop --per-class / --compare / --interval)")
        require_breakdown(df, run)
    if relative is not None and (compare or interval or by):
        raise BenchError("--relative: differences are shown in the main and per-class layouts only "
                         "(drop --compare / --interval / --by)")
    if interval:
        from .stats import check_level, check_resamples, require_per_image, resampled_metrics

        if per_class or compare:
            raise BenchError("--interval: intervals are shown in the main layout only (drop --per-class / --compare)")
        if not any(m in resampled_metrics() for m in metrics_):
            raise BenchError(f"--interval: intervals exist for {', '.join(resampled_metrics())} only")
        check_level(level)
        check_resamples(resamples, "--resamples", none_ok=False)
        ok = df[df["status"] == "ok"] if "status" in df.columns else df
        require_per_image(ok, f"--interval ({run})")
    if compare:
        from .tables.aggregate import variants

        # published numbers match one row per method: several variants of one are refused, not averaged
        several, _ = variants(df)
        if several:
            said = "; ".join(f"{m} differ in {', '.join(cols)}" for m, cols in several.items())
            raise BenchError(f"--compare: rows of {said}; a comparison with published numbers takes one variant "
                             "per method: drop --compare (the table shows each variant as its own row) or pass a "
                             f"Parquet file of one variant's rows (rows[rows.{next(iter(several.values()))[0]} == "
                             "VALUE].to_parquet(FILE))")
        paper, num = _published_table(compare)
        try:
            text = compare_published(df, paper=paper, table=num, metric=metrics_[0], fmt=fmt, caption=caption,
                                     label=label)
        except KeyError as exc:  # the table publishes other metrics
            raise BenchError(f"--compare {compare}: {exc.args[0]}; pass a --metric it publishes") from None
    else:
        text = main_table(df, metrics_ if len(metrics_) > 1 else metrics_[0], fmt=fmt, per_class=per_class,
                          methods=split_list(methods, "methods"), caption=caption, label=label, std=std,
                          interval=resamples if interval else 0, level=level, by=by, relative=relative,
                          severity_mean=severity_mean, conditions=conditions, categories=cats)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        console.print(f"wrote {output}")
    else:
        typer.echo(text)


def _table_selection(df, corruptions: list[str] | None, categories: list[str] | None,
                     run: str) -> tuple[list[str] | None, list[str] | None]:
    """``bench table``'s columns (Clean first, then the corruptions asked for, presets expanded to
    those the rows hold) and categories, each checked against the rows: a name they lack is one line."""
    from .datasets.corruptions import CLEAN, resolve_corruptions

    def check(wanted: list[str], present: list, what: str) -> None:
        missing = [n for n in wanted if n not in present]
        if missing:
            raise BenchError(f"--{what} {','.join(missing)}: no rows of {'it' if len(missing) == 1 else 'them'} in "
                             f"{run} ({what} there: {', '.join(map(str, present))})")

    conditions = None
    if corruptions:
        present = list(dict.fromkeys(df["corruption"]))
        wanted: list[str] = []
        for item in corruptions:
            names = [item] if item in present else resolve_corruptions(item)  # yours need not be installed
            if len(names) > 1:  # a preset: the members the rows hold
                names = [n for n in names if n in present] or names
            wanted += [n for n in names if n not in wanted]
        check(wanted, present, "corruptions")
        conditions = [CLEAN] + [n for n in wanted if n != CLEAN]
    if categories:
        check(categories, list(dict.fromkeys(df["category"])), "categories")
    return conditions, categories


def _published_table(compare: str) -> tuple[str, int]:
    """``--compare``'s paper:table (a preset's name stands for its table), checked against the
    published numbers the harness holds."""
    from .papers import published
    from .presets import PRESETS

    if compare in PRESETS:
        return PRESETS[compare].paper, PRESETS[compare].table
    pub = published()
    tables = sorted(set(zip(pub["paper"], pub["table"])))
    paper, _, num = compare.partition(":")
    if num.strip().isdigit() and (paper, int(num)) in tables or not num and (paper, 1) in tables:
        return paper, int(num or 1)
    raise BenchError(f"--compare {compare}: no such published table; use one of "
                     f"{', '.join(f'{p}:{t}' for p, t in tables)} (or a preset's name, e.g. ttad-table1)")


def _require_ok_rows(df, run: str) -> None:
    """A table needs finished cells: say why there are none and what to run."""
    if not len(df):
        raise BenchError(f"{run}: no finished cells yet; run (or resume) its bench grid first")
    ok = df["status"] == "ok"
    if not ok.any():
        errors = [str(e).strip() for e in (df["error"].dropna() if "error" in df.columns else ()) if str(e).strip()]
        first = errors[0].splitlines()[0][:200] if errors else "none recorded"
        raise BenchError(f"{run}: no ok rows, all {len(df)} cells failed (first error: {first}); fix the cause "
                         "and rerun its bench grid with --retry-failed")


@app.command("compare-methods")
def compare_methods(
    run: List[Path] = typer.Argument(..., metavar="RUN... A B",
                                     help="Run directories or rows.parquet files (several merged), then two methods."),
    metric: str = typer.Option("image_auroc", "--metric", help="A metric with a resampled form (image_auroc)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
    level: float = typer.Option(0.95, "--level", help="Confidence level; significant = the interval excludes 0."),
    categories: Optional[List[str]] = typer.Option(None, "--categories", "-c", help="Only these categories."),
) -> None:
    """Paired bootstrap test of A - B on the cells both methods ran: the test images of each cell are
    resampled jointly for both methods; per cell and overall (mean over the cells)."""
    from .compare import compare_text

    if len(run) < 3:
        raise BenchError("compare-methods: give RUN A B, e.g. bench compare-methods results/runs/x patchcore ttad")
    *runs, a, b = run
    typer.echo(compare_text(runs, str(a), str(b), metric, resamples, level, split_list(categories, "categories")))


app.add_typer(plot_app, name="plot")


@app.command("list")
def list_(what: str = typer.Argument(..., help="methods, datasets, corruptions or presets")) -> None:
    """List registered methods, datasets, corruptions or the papers' presets."""
    if what == "methods":
        from .methods import registered

        for name, reg in registered().items():
            typer.echo(f"{name:22s} {reg.summary}" + ("" if reg.in_all else " [not in --methods all]"))
    elif what == "datasets":
        from .datasets.registry import DATASETS

        for name, spec in DATASETS.items():
            domains = f" [domains: {', '.join(spec.domains)}]" if spec.domains else ""
            typer.echo(f"{name:12s} {spec.summary}{domains}")
    elif what == "corruptions":
        from .datasets.corruptions import CORRUPTIONS, PRESETS
        from .datasets.point_corruptions import POINT_CORRUPTIONS

        typer.echo("corruptions: " + ", ".join(CORRUPTIONS))
        typer.echo("point-cloud corruptions (MVTec 3D-AD): " + ", ".join(sorted(POINT_CORRUPTIONS)))
        for name, items in PRESETS.items():
            typer.echo(f"preset {name}: {', '.join(items)}")
        from .datasets.custom_corruptions import ENTRY_POINT_GROUP, custom_corruptions

        mine = custom_corruptions()
        typer.echo(f"your own ({ENTRY_POINT_GROUP} entry points; docs/adding-a-corruption.md):"
                   + ("" if mine else " none"))
        for name, c in mine.items():
            typer.echo(f"  {name:20s} {c.summary} [{c.code or 'harness'}]")
    elif what == "presets":
        from .presets import PRESETS, cost

        for name, p in PRESETS.items():
            sizes = []
            for ds in p.datasets:
                n, cells, fits = cost(p, ds)
                sizes.append(f"{ds}: {n} categor{'y' if n == 1 else 'ies'}, {cells} cells, {fits} fits")
            typer.echo(f"{name:12s} {p.summary}\n{'':12s} {', '.join(p.methods)}; backbone {p.backbone or 'each method its own'}; "
                       f"{'; '.join(sizes)}")
    else:
        raise BenchError(f"bench list {what}: use methods, datasets, corruptions or presets")


@app.command()
def export(run: Path = typer.Argument(...), out_file: Path = typer.Argument(...)) -> None:
    """Merge a run's part files into one Parquet file (e.g. to commit a reference run)."""
    from .results import export as export_rows

    console.print(f"wrote {export_rows(run, out_file)}")


@app.command()
def perf(
    root: Path = typer.Option(..., "--root", help="Dataset folder in the MVTec layout."),
    category: str = typer.Option(..., "--category"),
    coreset_ratio: float = typer.Option(0.1, "--coreset-ratio"),
    corruption: str = typer.Option("gaussian_noise", "--corruption"),
    severity: int = typer.Option(5, "--severity"),
    backbone: Optional[str] = typer.Option(None, "--backbone"),
    max_train: Optional[int] = typer.Option(None, "--max-train", help="Use only the first N training images."),
) -> None:
    """Benchmark one PatchCore cell against this machine's floor (see bench/perf.py)."""
    from .perf import report, run

    typer.echo(report(run(str(root), category, coreset_ratio, corruption, severity, backbone, max_train)))


@app.command()
def reproduce(
    preset: str = typer.Argument(..., help="A paper table's preset (bench list presets), e.g. ttad-table1."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder holding the dataset."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="One of the preset's datasets (default: its first)."),
    categories: Optional[List[str]] = typer.Option(None, "--categories", "-c", help="A category subset (marked in the table)."),
    add_methods: Optional[List[str]] = typer.Option(None, "--add-methods", help="Your methods (e.g. a plugin's), run under the table's protocol next to the paper's rows, comma-separated."),
    add_corruptions: Optional[List[str]] = typer.Option(None, "--add-corruptions", help="Your corruptions (or built-in ones the paper lacks), run at the table's severity as columns after the paper's, comma-separated."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Another backbone than the paper's (marked)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="imagenet, random, shapenet (Point-MAE), or a state-dict path."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="FIELD=VALUE departures from the paper (marked)."),
    test_subset: int = typer.Option(0, "--test-subset", help="A seeded, stratified test subset per category (marked)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    nondeterministic: bool = _NONDETERMINISTIC,
    workers: int = typer.Option(1, "--workers", "-w", help="Local worker processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per cell (default: all cores in-process, cores / workers with --workers); recorded in the rows, and the same value gives the same bits."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default: results/runs/<preset>-<dataset>-<hash>)."),
    fmt: str = typer.Option("markdown", "--format", "-f", help="latex or markdown."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    dry_run: bool = _DRY_RUN,
) -> None:
    """Run a published table's whole protocol and print ours next to the published numbers."""
    from .executors import DRY_RUN_DONE, make_executor, plan_grid, run_grid
    from .grid import default_run_dir
    from .methods import get as get_method
    from .datasets.corruptions import resolve_corruptions
    from .presets import added_corruptions, check_added_corruptions, comparison, get_preset, grid_spec
    from .results import load_rows
    from .runner import resolve_device

    if fmt not in ("latex", "markdown"):  # before the run, not after it
        raise BenchError(f"--format {fmt}: use latex or markdown")
    executor = make_executor("local", workers=workers, threads=threads)  # its options checked before a dry run too
    p = get_preset(preset)
    added = [get_method(m).name for m in split_list(add_methods) or []]  # UnknownName: one line, the closest names
    if p.runtime and added:
        raise BenchError(f"--add-methods: {p.name} compares run times, not metrics; run your method with bench grid")
    shifts = added_corruptions(p, resolve_corruptions(split_list(add_corruptions)) if add_corruptions else [])
    check_added_corruptions(p, shifts)
    spec = grid_spec(p, dataset=dataset, root=str(root) if root else None, categories=split_list(categories),
                     backbone=backbone, weights=weights, overrides=parse_overrides(set_), device=resolve_device(device),
                     test_subset=test_subset, methods=[*p.methods, *(m for m in added if m not in p.methods)],
                     corruptions=[*p.corruptions, *shifts])
    spec.preset = p.name
    spec.deterministic = not nondeterministic
    run_dir = out or default_run_dir(spec).with_name(f"{p.name}-{default_run_dir(spec).name}")
    if dry_run:
        typer.echo("\n".join(plan_grid(spec, run_dir).lines() + [DRY_RUN_DONE]))
        return
    summary = _run(run_grid, spec, run_dir, executor, console=console, show_progress=progress)
    console.print(f"run {summary.run_dir}: {summary.total} cells, {summary.skipped} already done, {summary.ran} ran "
                  f"({summary.failed} failed) in {summary.seconds:.1f}s", highlight=False, soft_wrap=True, markup=False)
    rows = load_rows(run_dir)
    ours = rows["cell_id"].isin({c.cell_id for c in spec.cells()})
    if not ours.all():  # an --out reused with other settings: its other rows are another protocol
        console.print(f"warning: {run_dir}: {int((~ours).sum())} rows of other grids in this run directory "
                      "are left out of the comparison", highlight=False, soft_wrap=True, markup=False)
    typer.echo(comparison(p, spec, rows[ours], fmt=fmt))


@app.command()
def doctor(
    device: str = typer.Option("auto", "--device", help="The device to check against the CPU: auto, cuda[:N] or cpu."),
    epochs: int = typer.Option(3, "--epochs", help="RD4AD training epochs in the tiny comparison grid."),
) -> None:
    """Run a tiny grid on the CPU and on the device, compare the rows, time the hot paths there."""
    from .doctor import run

    if not run(device, typer.echo, epochs):
        raise typer.Exit(code=1)


@app.command()
def claims(
    preset: str = typer.Argument(..., help="A paper table's preset, e.g. ttad-table1 (bench list presets)."),
    runs: List[Path] = typer.Argument(..., help="Run directories or rows.parquet files (several are merged)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
    level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
) -> None:
    """Test the comparisons the paper states (A beats B, A equals B) on your rows: holds / does not
    hold / undecided, with the effect, its paired-bootstrap interval and the paper's effect."""
    from .claims import claims_text
    from .presets import get_preset

    typer.echo(claims_text(get_preset(preset), runs, resamples, level))


@app.command()
def verify(
    runs: List[Path] = typer.Argument(..., help="Run directories or rows.parquet files (several are merged)."),
    sample: int = typer.Option(5, "--sample", "-n", help="Cells to recompute, spread over the methods (0 = every finished cell)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    methods: Optional[List[str]] = typer.Option(None, "--methods", "-m", help="Only these methods' cells."),
    cells: Optional[List[str]] = typer.Option(None, "--cells", help="These cell ids (instead of a sample)."),
    tol: float = typer.Option(0.0, "--tol", help="Largest |difference| allowed per metric (0: bit for bit)."),
    root: Optional[Path] = typer.Option(None, "--root", help="The dataset folder (rows of a folder dataset)."),
    device: Optional[str] = typer.Option(None, "--device", help="Recompute on this device (default: each row's)."),
) -> None:
    """Recompute a seeded sample of a run's cells from scratch (fit and corrupted images made again)
    and compare every metric with the stored row; exit 1 past --tol."""
    from .runner import check_device_name
    from .verify import verify as run_verify

    if sample < 0 or seed < 0:
        bad = f"--sample {sample}" if sample < 0 else f"--seed {seed}"
        raise BenchError(f"{bad}: use 0 or more (--sample 0: every finished cell)")
    if device is not None:
        check_device_name(device)
    ok, _ = run_verify(runs, n=sample, seed=seed, methods=split_list(methods, "methods"),
                       cells=split_list(cells, "cells"), tol=tol, root=str(root) if root else None, device=device,
                       echo=typer.echo)
    if not ok:
        raise typer.Exit(code=1)


@app.command("diff")
def diff_(
    reference: Path = typer.Argument(..., help="The reference: a run directory or rows.parquet (e.g. results/reference/textures_default)."),
    other: Path = typer.Argument(..., help="The run to compare with it."),
    tol: float = typer.Option(0.0, "--tol", help="Largest |difference| allowed per metric (0: bit for bit)."),
) -> None:
    """Compare every metric of the cells two runs share (nothing is recomputed); exit 1 past --tol."""
    from .verify import diff as run_diff

    ok, _ = run_diff([reference], [other], tol=tol, echo=typer.echo)
    if not ok:
        raise typer.Exit(code=1)


@app.command()
def constraints(
    run: Path = typer.Argument(..., help="A run directory or rows.parquet (e.g. results/reference/textures_default)."),
) -> None:
    """Print a pip constraints file of the library versions RUN's rows were computed with
    (pip install -e . -c FILE reinstalls them; the rows are bit for bit only with the same)."""
    from .results import load_rows
    from .verify import library_pins

    pins, python = library_pins(load_rows(run), str(run))
    typer.echo(f"# the libraries the rows were computed with (Python {python}); to install them in a fresh venv:\n"
               "#   pip install -e . -c <this file>\n" + "\n".join(pins))


# options that take several values after one flag (`--seeds 0 1 2`): click options take one
# value each, so the extra values are given back to the option before click parses the line
_MULTI = ("--seeds", "--severities", "-s")


def _spread_multi(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        out.append(argv[i])
        if argv[i] in _MULTI:
            flag, i = argv[i], i + 1
            if i < len(argv):
                out.append(argv[i])
                i += 1
            while i < len(argv) and argv[i].replace(",", "").isdigit():
                out += [flag, argv[i]]
                i += 1
            continue
        i += 1
    return out


def _click_exceptions():
    """The click that typer runs on: its own vendored copy in recent typer, else click."""
    vendored = getattr(typer, "_click", None)
    if vendored is not None:
        return vendored.exceptions
    import click

    return click.exceptions


def main() -> None:
    try:  # a crash in native code (segfault) prints where Python was, not nothing
        faulthandler.enable()
    except (OSError, ValueError, AttributeError):  # a stderr without a file descriptor (captured)
        pass
    sys.argv[1:] = _spread_multi(sys.argv[1:])
    exc_ = _click_exceptions()
    try:
        # Not standalone: usage errors reach us too, to be said in one line like every other error.
        code = app(standalone_mode=False, prog_name="bench")
    except getattr(exc_, "NoArgsIsHelpError", ()) as exc:  # `bench` alone: the help, not an error
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
        sys.exit(2)
    except exc_.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "bench"
        message = exc.format_message().strip()
        _error(f"{message[:-1] if message.endswith('.') else message} (see {where} --help)")
        sys.exit(exc.exit_code)
    except exc_.ClickException as exc:
        _error(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except (BenchError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:  # `bench table ... | head`
            sys.exit(1)
        if _DEBUG["on"] or os.environ.get("BENCH_DEBUG"):
            raise
        from .errors import os_error_line

        _error(str(exc) if isinstance(exc, BenchError) else os_error_line(exc))
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _error(line: str) -> None:
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
