"""Reverse-distillation blocks: shapes mirror the teacher, loss, maps, EFDM."""
from __future__ import annotations

import pytest
import torch

from torch import nn

from bench.methods.distill import (
    BasicBlock,
    Bottleneck,
    Student,
    StudentLayout,
    Teacher,
    anomaly_maps,
    distill_loss,
    efdm,
    flat_cosine_distance,
    sorted_values,
    student_layout,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite() -> Teacher:
    return Teacher("efficientnet_lite0", "imagenet")


@pytest.mark.parametrize("backbone, weights, channels", [
    ("efficientnet_lite0", "imagenet", (24, 40, 112)),
    ("resnet18", "random", (64, 128, 256)),  # GNL's MNIST teacher: RD4AD's basic-block student
    pytest.param("wide_resnet50_2", "random", (256, 512, 1024), marks=pytest.mark.slow),  # RD4AD's WRN-50 shapes
])
def test_decoder_outputs_mirror_the_teacher(backbone, weights, channels):
    teacher = Teacher(backbone, weights)
    assert teacher.channels == channels
    student = Student(teacher.channels, teacher.signed, teacher.layout).eval()
    blocks = [b for b in student.modules() if isinstance(b, (BasicBlock, Bottleneck))]
    assert {type(b) for b in blocks} == {BasicBlock if backbone == "resnet18" else Bottleneck}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        t = teacher(x)
        z, d = student(t)
    assert [tuple(f.shape) for f in t] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16))]
    assert [f.shape for f in d] == [f.shape for f in t]
    assert tuple(z.shape) == (2, 2 * channels[2], 2, 2)  # OCBE: 2*c3 channels at stride 32
    if backbone != "efficientnet_lite0":
        assert teacher.signed == (False, False, False)  # post-ReLU stages: decoder keeps its ReLUs
        assert all(b.final_relu for stage in student.decoder.stages for b in stage)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_student_block_type_follows_the_teacher_as_in_rd4ads_code():
    """RD4AD pairs ResNet-18 with BN_layer(AttnBasicBlock, 2) + de_resnet18 (BasicBlock [2, 2, 2]),
    ResNet-34 with 3 basic blocks + de_resnet34 ([3, 4, 6]), WRN-50 with 3 wide bottlenecks +
    de_wide_resnet50_2 ([3, 4, 6]). Parameter counts: the official modules built from
    hq-deng/RD4AD's resnet.py / de_resnet.py, all parameters of BN_layer but its unused conv4 / bn4
    (no gradient reaches them), and all of the decoder's (BN running statistics not counted)."""
    assert student_layout("resnet18") == StudentLayout("basic", 2, (2, 2, 2))
    assert student_layout("resnet34") == StudentLayout("basic", 3, (3, 4, 6))
    for other in ("wide_resnet50_2", "tf_efficientnet_lite0"):
        assert student_layout(other) == StudentLayout("bottleneck", 3, (3, 4, 6))
    # ResNet-50's bottlenecks are a quarter of their output wide inside (de_resnet50), WRN-50's half
    assert student_layout("resnet50") == StudentLayout("bottleneck", 3, (3, 4, 6), 4)
    r50 = Student((256, 512, 1024), layout=student_layout("resnet50"))
    assert (_params(r50.bottleneck), _params(r50.decoder)) == (30_829_568, 15_821_824)

    r18 = Student((64, 128, 256), layout=student_layout("resnet18"))
    assert (_params(r18.bottleneck), _params(r18.decoder)) == (11_680_000, 3_703_168)
    r34 = Student((64, 128, 256), layout=student_layout("resnet34"))
    assert (_params(r34.bottleneck), _params(r34.decoder)) == (16_400_640, 5_770_624)
    wrn = Student((256, 512, 1024), layout=student_layout("wide_resnet50_2"))
    assert (_params(wrn.bottleneck), _params(wrn.decoder)) == (58_885_120, 24_917_504)

    # the OCBE's first basic block: 3x3 stride 2 from the fused 3 * c3 channels to 2 * c3, 1x1
    # stride-2 projection; the second: 2 * c3 -> 2 * c3, identity shortcut
    first, second = r18.bottleneck.embed
    assert isinstance(first.conv1, nn.Conv2d) and first.conv1.kernel_size == (3, 3) and first.conv1.stride == (2, 2)
    assert (first.conv1.in_channels, first.conv1.out_channels) == (768, 512)
    assert first.shortcut[0].kernel_size == (1, 1) and first.shortcut[0].stride == (2, 2)
    assert second.shortcut is None and second.conv1.in_channels == 512
    # de_resnet18: each stage's first block upsamples with 2x2 stride-2 transposed convs (conv1
    # and shortcut), then 3x3; every block ends with ReLU (ResNet teachers are unsigned)
    for stage, (cin, out) in zip(r18.decoder.stages, ((512, 256), (256, 128), (128, 64))):
        up, plain = stage
        for conv in (up.conv1, up.shortcut[0]):
            assert isinstance(conv, nn.ConvTranspose2d) and conv.kernel_size == (2, 2) and conv.stride == (2, 2)
            assert (conv.in_channels, conv.out_channels) == (cin, out)
        assert isinstance(up.conv2, nn.Conv2d) and up.conv2.kernel_size == (3, 3)
        assert plain.shortcut is None and isinstance(plain.conv1, nn.Conv2d)
        assert up.final_relu and plain.final_relu
    z, d = r18.eval()([torch.randn(2, c, 32 // s, 32 // s) for c, s in ((64, 4), (128, 8), (256, 16))])
    assert tuple(z.shape) == (2, 512, 1, 1)
    assert [tuple(f.shape) for f in d] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]


def test_basic_block_student_is_named_in_the_fit_identity():
    """A ResNet-18 student cached (fit or checkpoint) when it was built of bottlenecks is not
    reused; the bottleneck students keep their identity, and their cached fits."""
    from bench.methods.rd4ad import RD4AD

    for backbone, extra in (("resnet18", {"student_block": "basic"}), ("resnet34", {"student_block": "basic"}),
                            ("resnet50", {"student_inner_divisor": 4}),
                            ("wide_resnet50_2", {}), ("tf_efficientnet_lite0", {})):
        cfg = RD4AD.Config(backbone=backbone)
        assert RD4AD.fit_identity(cfg) == {"fit": "RD4AD", **cfg.fit_fields(), **extra}
    # a backbone name that does not exist leaves the identity alone (building the method says why)
    assert "student_block" not in RD4AD.fit_identity(RD4AD.Config(backbone="resnet_eighteen"))


def test_decoder_can_reach_signed_teacher_levels(lite):
    # EfficientNet stages end on a linear projection: the matching decoder outputs must be signed too
    assert lite.signed == (True, True, True)
    student = Student(lite.channels, lite.signed).eval()
    with torch.no_grad():
        d = student(lite(torch.randn(2, 3, 64, 64)))[1]
    assert all((f < 0).any() for f in d)


def test_loss_is_zero_for_identical_features_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(3, c, s, s, generator=g) for c, s in ((4, 8), (6, 4), (8, 2))]
    same = distill_loss(feats, [f.clone() for f in feats])
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    # per-sample scale does not matter (cosine), a different map does
    assert distill_loss(feats, [f * torch.tensor([2.0, 0.5, 3.0]).view(3, 1, 1, 1) for f in feats]).item() == \
        pytest.approx(0.0, abs=1e-6)
    other = [torch.randn(f.shape, generator=g) for f in feats]
    assert distill_loss(feats, other).item() > 0.5
    # the official form: 1 - cos of each sample's whole flattened map, batch mean
    a, b = feats[0], other[0]
    manual = torch.stack([1 - torch.dot(a[i].flatten(), b[i].flatten()) / (a[i].norm() * b[i].norm())
                          for i in range(3)]).mean()
    assert flat_cosine_distance(a, b).item() == pytest.approx(manual.item(), rel=1e-5)


def test_anomaly_map_is_zero_where_features_agree_and_peaks_where_they_differ():
    t = [torch.rand(1, 4, 8, 8) + 0.1, torch.rand(1, 4, 4, 4) + 0.1]
    s = [f.clone() for f in t]
    assert anomaly_maps(t, s, 32).abs().max().item() < 1e-6
    s[0][0, :, 1, 6] = -s[0][0, :, 1, 6]  # one cell of the fine level points the other way
    m = anomaly_maps(t, s, 29)[0]  # align_corners=True: fine cell (i, j) lands on pixel (4i, 4j)
    assert m.shape == (29, 29)
    assert divmod(int(m.argmax()), 29) == (4, 24)
    assert m[4, 24].item() == pytest.approx(2.0, abs=1e-5)  # 1 - cos(v, -v)
    assert m[20, 4].item() == pytest.approx(0.0, abs=1e-6)


def test_efdm_alpha_one_takes_the_reference_values_exactly_alpha_zero_is_identity():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 6, 7, generator=g) * 10 + 100  # magnitudes where x + (r - x) != r in float
    ref = torch.randn(1, 5, 6, 7, generator=g)
    ref_sorted = sorted_values(ref)
    at_one = efdm(x, ref_sorted, 1.0)
    assert torch.equal(sorted_values(at_one), ref_sorted.expand(3, -1, -1))
    assert torch.equal(efdm(x, ref_sorted, 0.0), x)
    # every value keeps its rank within its channel (content stays, distribution moves)
    half = efdm(x, ref_sorted, 0.5)
    assert torch.equal(half.flatten(2).argsort(-1), x.flatten(2).argsort(-1))
    assert torch.allclose(sorted_values(half), 0.5 * (sorted_values(x) + ref_sorted), atol=1e-5)
    # one reference broadcasts over the batch: same as matching each sample on its own
    singles = torch.cat([efdm(x[i:i + 1], ref_sorted, 0.5) for i in range(3)])
    assert torch.equal(half, singles)


def test_efdm_needs_matching_sizes():
    from bench.methods.errors import BenchError

    with pytest.raises(BenchError, match="same image size"):
        efdm(torch.randn(1, 2, 4, 4), sorted_values(torch.randn(1, 2, 8, 8)), 0.5)


def test_teacher_efdm_shifts_the_first_two_stages_and_feeds_them_forward(lite):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 64, 64, generator=g)
    ref = torch.randn(1, 3, 64, 64, generator=g) * 0.5 + 1.0
    with torch.no_grad():
        plain = lite(x)
        ref_feats = lite(ref)
        refs = [sorted_values(f) for f in ref_feats[:2]]
        assert all(torch.equal(a, b) for a, b in zip(lite(x, refs, 0.0), plain))
        shifted = lite(x, refs, 1.0)
    # stage 1 carries the reference's values exactly; stage 2 is recomputed from it, then matched
    assert torch.equal(sorted_values(shifted[0]), refs[0].expand(2, -1, -1))
    assert torch.equal(sorted_values(shifted[1]), refs[1].expand(2, -1, -1))
    # stage 3 is not matched, but it changed because its input did
    assert not torch.allclose(shifted[2], plain[2])
    assert not torch.equal(sorted_values(shifted[2]), sorted_values(ref_feats[2]).expand(2, -1, -1))
    # the hooks are gone afterwards
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(lite(x), plain))
