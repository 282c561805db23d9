"""What every command module of the CLI shares: the console (stderr) and option parsing."""
from __future__ import annotations

import re
from typing import List, Optional

from rich.console import Console

from .errors import BenchError

console = Console(stderr=True, emoji=False)  # ":x:" in a user's text is text, not an emoji


def split_list(values: Optional[List[str]], what: str = "") -> Optional[list[str]]:
    """A repeatable option whose items may also be comma-separated: ["a,b", "c"] -> [a, b, c], each
    item once (a repeat would run or count it twice). None where the option is not given; given
    with no item (``-m ''``) is a one-line error naming ``--what``, not its default."""
    if not values:
        return None
    items = list(dict.fromkeys(v.strip() for item in values for v in item.split(",") if v.strip()))
    if not items:
        option = f"--{what} " if what else "an option given as "
        raise BenchError(f"{option}{','.join(values)!r}: no item in it; name at least one, or leave the option out "
                         "for its default")
    return items


def parse_ints(values: Optional[List[str]], what: str) -> Optional[list[int]]:
    """``split_list`` of integers and ranges (``1-5``: 1 to 5 included); anything else is a one-line
    error naming ``--what``."""
    items = split_list(values, what)
    if items is None:
        return None
    out: list[int] = []
    for v in items:
        span = re.fullmatch(r"(\d+)-(\d+)", v.strip())
        if span and int(span[1]) <= int(span[2]):
            out += range(int(span[1]), int(span[2]) + 1)
            continue
        try:
            out.append(int(v))
        except ValueError:
            raise BenchError(f"--{what} {v}: expected integers such as 1,3,5 or a range such as 1-5") from None
    return list(dict.fromkeys(out))


def parse_overrides(values: Optional[List[str]]) -> dict[str, str]:
    """``--set FIELD=VALUE`` / ``METHOD.FIELD=VALUE`` items -> {key: value} (checked later)."""
    out = {}
    for item in values or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BenchError(f"--set {item}: expected FIELD=VALUE or METHOD.FIELD=VALUE, e.g. --set coreset_ratio=0.01")
        out[key.strip()] = value.strip()
    return out
