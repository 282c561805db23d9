"""The documentation's links and layout stay true: every relative link and #anchor in the
repository's Markdown resolves, every docs/ page is reachable from the README, and the README's
Layout names every module of bench/ and every script of benchmarks/."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "results").rglob("*.md")])
LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(([^)\s]+)\)")


def _outside_fences(text: str) -> list[str]:
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces -> -."""
    text = heading.strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in "-_ ").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(page.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6} (.*)", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [t for line in _outside_fences(page.read_text(encoding="utf-8")) for t in LINK.findall(line)]


def test_slug_follows_github():
    assert slug("Statistics: intervals, spreads, paired tests") == "statistics-intervals-spreads-paired-tests"
    assert slug("The embedded default dataset: `textures`") == "the-embedded-default-dataset-textures"
    assert slug("Ray on GPUs and on several nodes") == "ray-on-gpus-and-on-several-nodes"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading with that anchor in {where.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n[ok](#title) [gone](#nothing) [file](missing.md)\n```\n[in code](#x)\n```\n")
    assert links(page) == ["#title", "#nothing", "missing.md"]
    assert anchors(page) == {"title"}


def test_every_docs_page_is_linked_from_the_readme():
    readme = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md") if not re.match(r"[a-z]+:", t)}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md")}
    assert pages and not pages - readme, sorted(str(p.relative_to(ROOT)) for p in pages - readme)


def test_the_layout_names_every_module_and_script():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    words = set(re.findall(r"[\w.]+", layout))
    modules = {p.stem for d in ("bench", "bench/tables", "bench/plots") for p in (ROOT / d).glob("*.py")
               if not p.stem.startswith("__")}
    scripts = {p.name for p in (ROOT / "benchmarks").iterdir() if not p.name.startswith((".", "__"))}
    missing = sorted(m for m in modules if m not in words) + sorted(s for s in scripts if s not in words)
    assert not missing, f"README's Layout does not name: {', '.join(missing)}"
