"""The method registry: names -> (class, config overrides, summary, display name, table order).

A class may be registered by its import path (``"package.module:Class"``) and is imported only
when a method is created or its config is needed, so ``bench list methods`` and the tables read
names, summaries, display names and order without importing torch. Plugins register through
the ``bench.methods`` entry-point group (see docs/adding-a-method.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, packages_distributions, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import UnknownName, warn

if TYPE_CHECKING:
    from .base import Method, MethodConfig


@dataclass(frozen=True)
class Registered:
    name: str
    target: Any  # the Method subclass, or "module:Class" imported on first use
    overrides: dict[str, Any]  # config fields that make this named variant
    summary: str
    display: str  # the name tables show
    order: float | None  # tables' default row order (ascending); None: after those, as rows appear
    # part of `--methods all` (the main job); False for the paper-table variants that presets and
    # explicit names select (GNL's baselines and ablations: 16 more RD4AD trainings per category)
    in_all: bool = True

    @property
    def module(self) -> str:
        return self.target.partition(":")[0] if isinstance(self.target, str) else self.target.__module__

    @property
    def cls(self) -> type[Method]:
        cls = _import(self.target) if isinstance(self.target, str) else self.target
        _check_overrides(self.name, cls, self.overrides)
        return cls

    def config(self, **extra: Any) -> MethodConfig:
        return self.cls.Config(**{**self.overrides, **extra})

    def create(self, device: str = "cpu", seed: int = 0, **extra: Any) -> Method:
        method = self.cls(self.config(**extra), device=device, seed=seed)
        method.name = self.name  # a variant reports its own name
        return method

    @property
    def code(self) -> str:
        """A plugin's code version (``code_fingerprint``); "" for the harness's own methods."""
        return code_fingerprint(self.cls)


@lru_cache(maxsize=None)
def _import(target: str) -> type:
    module, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


HARNESS_PACKAGE = "bench"


@lru_cache(maxsize=None)
def code_fingerprint(cls: type) -> str:
    """What a method outside the harness computes with: the versions of its distributions and a hash
    of the source of each top-level package (or single module) defining its class, its Method
    bases or its config.

    A user iterating on a plugin changes its code without changing its config (an editable
    install keeps the version too): this joins the fit-cache key and the rows, so an edited plugin
    is fitted again and its finished cells run again instead of coming back unchanged. The
    harness's own methods give "" (their code goes with the harness's version).
    """
    from .base import Method, MethodConfig

    # the method's own classes only (a base from torch or another library goes with its version)
    ours = [c for c in (*cls.__mro__, *cls.Config.__mro__) if issubclass(c, (Method, MethodConfig))]
    return source_fingerprint({c.__module__.partition(".")[0] for c in ours}, cls.__qualname__)


def source_fingerprint(tops: Iterable[str], what: str) -> str:
    """The versions of the distributions owning the top-level packages (or single modules) ``tops``
    and a hash of their source files; "" when all of them are the harness's own. ``what`` names
    the plugin in the warning given when a source cannot be read. Methods and corruptions from
    plugins share it."""
    tops = sorted(set(tops) - {HARNESS_PACKAGE})
    if not tops:
        return ""
    digest, dists, unread = hashlib.sha256(), set(), []
    owners = packages_distributions()
    for top in tops:
        dists.update(f"{d} {_version(d)}" for d in owners.get(top, ()))
        files = _source_files(top)
        unread += [] if files else [top]
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    if unread:  # a script fed on stdin, a notebook: nothing to tell an edit by
        warn(f"{what}: defined in {', '.join(unread)} without a source file, so the harness cannot "
             "tell an edited version from this one: after changing it, run with another --out and "
             "ADSHIFT_BENCH_CACHE (or put it in a module)")
        return " ".join([*sorted(dists), "source unread"])
    return " ".join([*sorted(dists), f"sha256:{digest.hexdigest()[:16]}"])


def _source_files(top: str) -> list[Path]:
    """The .py files of a top-level package (each of its modules) or module; none for one without
    a file (a script read from stdin, a notebook's ``__main__``)."""
    module = sys.modules.get(top)
    if getattr(module, "__path__", None):
        return [p for loc in map(Path, module.__path__) for p in sorted(loc.rglob("*.py"))]
    file = getattr(module, "__file__", None)
    return [Path(file)] if file and Path(file).is_file() else []


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _check_overrides(name: str, cls: type, overrides: dict[str, Any]) -> None:
    from .base import Method

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{name}: {cls!r} is not a subclass of bench.methods.Method")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls.Config)}
    if unknown:
        raise TypeError(f"{name}: {sorted(unknown)} are not fields of {cls.Config.__name__}")


_REGISTRY: dict[str, Registered] = {}
_entry_points_loaded = False


def register(name: str, summary: str = "", *, display: str | None = None, order: float | None = None,
             in_all: bool = True, **overrides: Any) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register("patchcore")``. Stack it to add named config variants."""

    def deco(cls: type[Method]) -> type[Method]:
        register_variant(name, cls, summary=summary or (cls.__doc__ or "").strip().split("\n")[0],
                         display=display, order=order, in_all=in_all, **overrides)
        return cls

    return deco


def register_variant(name: str, cls: type[Method] | str, summary: str = "", *, display: str | None = None,
                     order: float | None = None, in_all: bool = True, **overrides: Any) -> None:
    """Register a named configuration of a method class, given as the class or "module:Class".

    ``display``: the name in tables (default: ``name``); ``order``: the tables' default row
    position (lower first; default: after every ordered method, in the order rows appear);
    ``in_all``: whether ``--methods all`` runs it.
    A class given by path is imported, and its overrides checked, when first used.
    """
    if not isinstance(cls, str):
        _check_overrides(name, cls, overrides)
    elif ":" not in cls:
        raise TypeError(f"{name}: {cls!r} must name a class as 'package.module:Class'")
    _REGISTRY[name] = Registered(name, cls, dict(overrides), summary, display or name, order, in_all)


@contextmanager
def registered_temporarily(name: str, cls: type[Method] | str, summary: str = "", *, display: str | None = None,
                           order: float | None = None, **overrides: Any) -> Iterator[str]:
    """Register ``name`` inside a ``with`` block only (tests, notebooks); then restore the registry."""
    before = _REGISTRY.get(name)
    register_variant(name, cls, summary=summary, display=display, order=order, **overrides)
    try:
        yield name
    finally:
        if before is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = before


def load_entry_points(group: str) -> Iterator[tuple[EntryPoint, Any]]:
    """Import each entry point of ``group`` (importing a module runs its registrations) and yield it
    with what it names. One that does not import is left out with one warning naming its package:
    a broken plugin must not take the harness's own methods or corruptions with it."""
    for ep in entry_points(group=group):
        try:
            yield ep, ep.load()
        except Exception as exc:
            warn(f"the {group} entry point {ep.name} = {ep.value!r} ({getattr(ep.dist, 'name', '?')}) does not "
                 f"import ({type(exc).__name__}: {exc}); it is left out: fix or uninstall that package")


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for _ in load_entry_points("bench.methods"):
        pass


def registered() -> dict[str, Registered]:
    from . import builtin  # noqa: F401 - importing registers the built-in methods (by path)

    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Registered:
    table = registered()
    if name not in table:
        raise UnknownName("method", name, list(table))
    return table[name]
