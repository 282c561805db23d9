"""Tables from result rows, in the papers' layouts (LaTeX via ``Styler.to_latex``, Markdown).

All functions take the rows DataFrame of :mod:`bench.results` and use only rows with
``status == "ok"``. A value is the mean over seeds within a category, then the plain mean over
categories (every category weighs the same, as in the papers' "averaged over all classes").
A condition is (test domain, corruption, severity): rows of a dataset with several test domains
(MNIST / MNIST-M, PACS) get one column per domain ("MNIST-M", "Art", "Art + Contrast").

A value that lacks a cell the run has (a category of its dataset, or a (category, seed) of its
column: a cell failed or has not run yet) is marked with a dagger and is not eligible for bold; a
value whose every cell failed reads "failed" ("–": no value). A note under the table says what
each mark it shows means. Rows of one method that differ in config, protocol or test subset are
one table row each, labelled by what differs: never one mean.

    names       display names and orders (metric headers from the metrics registry)
    aggregate   rows -> per-category seed means -> the table's values and partial marks
    render      bold, LaTeX (booktabs) and Markdown
    layouts     main_table / table_frame: TTAD Table 1 and the per-class appendix layout
    defects     by="defect_type": rows = (method, defect type) from the rows' defect_metrics
    published   paper_table and compare_published: next to the papers' numbers
"""
from .layouts import main_table, table_frame
from .names import (CORRUPTION_NAMES, DATASET_NAMES, DOMAIN_NAMES, METRIC_NAMES, condition_label, domain_label,
                    method_display, method_rank)
from .published import compare_published, paper_table

__all__ = [
    "main_table",
    "paper_table",
    "compare_published",
    "table_frame",
    "condition_label",
    "CORRUPTION_NAMES",
    "DATASET_NAMES",
    "DOMAIN_NAMES",
    "domain_label",
    "method_display",
    "method_rank",
    "METRIC_NAMES",
]
