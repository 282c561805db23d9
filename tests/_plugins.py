"""A plugin module the tests edit as a user would (not a test module): method and corruption
plugins alike are keyed by their source, so their tests rewrite and reimport one."""
from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Callable


def module_writer(tmp_path: Path, monkeypatch, name: str) -> Callable[[str], ModuleType]:
    """``write(source)`` (re)writes module ``name`` in a folder on sys.path and (re)imports it.
    The caller drops ``sys.modules[name]`` when done."""
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    path = tmp_path / "plugins" / f"{name}.py"
    path.parent.mkdir()

    def write(source: str) -> ModuleType:
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        module = sys.modules.get(name)
        return importlib.reload(module) if module else importlib.import_module(name)

    return write
