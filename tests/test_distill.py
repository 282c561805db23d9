"""Reverse-distillation blocks: shapes mirror the teacher, loss, maps, EFDM."""
from __future__ import annotations

import pytest
import torch

from bench.methods.distill import (
    Student,
    Teacher,
    anomaly_maps,
    distill_loss,
    efdm,
    flat_cosine_distance,
    sorted_values,
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite() -> Teacher:
    return Teacher("efficientnet_lite0", "imagenet")


@pytest.mark.parametrize("backbone, weights, channels", [
    ("efficientnet_lite0", "imagenet", (24, 40, 112)),
    pytest.param("wide_resnet50_2", "random", (256, 512, 1024), marks=pytest.mark.slow),  # RD4AD's WRN-50 shapes
])
def test_decoder_outputs_mirror_the_teacher(backbone, weights, channels):
    teacher = Teacher(backbone, weights)
    assert teacher.channels == channels
    student = Student(teacher.channels, teacher.signed).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        t = teacher(x)
        z, d = student(t)
    assert [tuple(f.shape) for f in t] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16))]
    assert [f.shape for f in d] == [f.shape for f in t]
    assert tuple(z.shape) == (2, 2 * channels[2], 2, 2)  # OCBE: 2*c3 channels at stride 32
    if backbone == "wide_resnet50_2":
        assert teacher.signed == (False, False, False)  # post-ReLU stages: decoder keeps its ReLUs
        assert all(b.final_relu for stage in student.decoder.stages for b in stage)


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
