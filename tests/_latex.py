"""What pdflatex needs of the LaTeX the harness writes, checked without TeX (not a test module).

CI has no TeX installation; ``benchmarks/latex_compile.py`` compiles the same outputs where
pdflatex exists. These checks catch what broke compilation before: a harness mark escaped into
text (``\\$\\textasciicircum{}...``), a bare ``_`` in a note or caption, unicode marks pdflatex's
default fonts cannot set, and table rows of another width than the tabular declares.
"""
from __future__ import annotations

import re

_MATH = re.compile(r"(?<!\\)\$(.*?)(?<!\\)\$")
_ESCAPED = re.compile(r"\\[&%$#_{}]")
_COMMAND = re.compile(r"\\[A-Za-z]+\*?")
_MULTICOLUMN = re.compile(r"\\multicolumn\{(\d+)\}")


def _columns(spec: str) -> int:
    return len(re.findall(r"[lrc]", re.sub(r"\{[^}]*\}", "", spec)))


def _width(row: str) -> int:
    cells = re.split(r"(?<!\\)&", row)
    return sum(int(m.group(1)) if (m := _MULTICOLUMN.search(c)) else 1 for c in cells)


def check_latex(text: str) -> None:
    """Assert that ``text`` is LaTeX that compiles with pdflatex and booktabs."""
    bad = sorted({ch for ch in text if not ch.isascii()})
    assert not bad, f"non-ASCII characters {bad} (pdflatex with default fonts)"
    assert r"\textbackslash" not in text and r"\$" not in text, "LaTeX markup escaped into text"
    for line in text.splitlines():
        assert len(re.findall(r"(?<!\\)\$", line)) % 2 == 0, f"unbalanced $: {line}"
        plain = _COMMAND.sub("", _ESCAPED.sub("", _MATH.sub("", line)))
        assert not set(plain) & set("_%#^~$"), f"bare special character in: {line}"
        braces = _ESCAPED.sub("", line)
        assert braces.count("{") == braces.count("}"), f"unbalanced braces: {line}"
    tabulars = re.findall(r"\\begin\{tabular\}\{([^}]*)\}\n(.*?)\\end\{tabular\}", text, flags=re.S)
    assert tabulars or r"\begin{tabular}" not in text
    for spec, body in tabulars:
        n = _columns(spec)
        for row in body.splitlines():
            if row.rstrip().endswith(r"\\"):
                assert _width(row.rstrip()[:-2]) == n, f"{n} columns declared, row has {_width(row)}: {row}"
