"""Losses (method §3.3) against values worked by hand, a slow pairwise L_reg, and gradient flow."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import LossConfig
from cerberus.errors import CerberusError
from cerberus.modeling.losses import (
    batch_hard_soft_margin_triplet_loss,
    compute_losses,
    fixed_margins,
    identification_loss,
    prototype_regularization_loss,
    semantic_guidance_loss,
    semantic_softmax_loss,
)
from cerberus.modeling.model import build_model


def test_semantic_guidance_by_hand():
    # One group-like setting repeated 5 times: 2-d features, prototypes on the axes.
    protos = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])] * 5
    feats = torch.tensor([[1.0, 1.0], [0.0, 2.0]])[:, None, :].expand(2, 5, 2)
    sids = torch.tensor([[0] * 5, [1] * 5])
    margins = [torch.tensor([0.1, 0.3])] * 5
    # image 0: cos = 1/sqrt(2), margin 0.1 -> 1 - 0.1 - 0.7071 = 0.1929
    # image 1: cos = 1, margin 0.3 -> max(1 - 0.3 - 1, 0) = 0
    loss = semantic_guidance_loss(feats, protos, sids, margins)
    assert loss.item() == pytest.approx((0.9 - 1 / math.sqrt(2)) / 2, abs=1e-6)
    zero = semantic_guidance_loss(feats, protos, sids, [torch.zeros(2)] * 5)
    assert zero.item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-6)


def _slow_softmax(feats, protos, sids, margins, scale):
    """Loop over images, groups and prototypes; -log of the true SID's softmax share."""
    terms = []
    for i in range(feats.shape[0]):
        for k, (p, m) in enumerate(zip(protos, margins)):
            g = int(sids[i, k])
            if g < 0:
                continue
            logits = []
            for j in range(p.shape[0]):
                cos = float(feats[i, k] @ p[j]) / float(feats[i, k].norm() * p[j].norm())
                logits.append(scale * (cos - (float(m[g]) if j == g else 0.0)))
            top = max(logits)
            log_z = top + math.log(sum(math.exp(z - top) for z in logits))
            terms.append(log_z - logits[g])
    return sum(terms) / len(terms)


@pytest.mark.parametrize("scale", [1.0, 10.0, 30.0])
def test_semantic_softmax_matches_slow_loop(scale):
    torch.manual_seed(3)
    sizes = [4, 18, 40, 8, 8]
    protos = [torch.randn(n, 6, dtype=torch.float64) for n in sizes]
    feats = torch.randn(7, 5, 6, dtype=torch.float64)
    sids = torch.stack([torch.randint(0, n, (7,)) for n in sizes], dim=1)
    margins = [torch.rand(n, dtype=torch.float64) for n in sizes]
    fast = semantic_softmax_loss(feats, protos, sids, margins, scale=scale)
    assert fast.item() == pytest.approx(
        _slow_softmax(feats, protos, sids, margins, scale), rel=1e-5
    )


def test_semantic_softmax_without_margin_is_scaled_cosine_cross_entropy():
    torch.manual_seed(4)
    protos = [torch.randn(5, 3)] * 5
    feats = torch.randn(6, 5, 3)
    sids = torch.randint(0, 5, (6, 5))
    for scale in (1.0, 16.0):
        loss = semantic_softmax_loss(feats, protos, sids, [torch.zeros(5)] * 5, scale=scale)
        cos = (
            torch.nn.functional.normalize(feats, dim=-1)
            @ torch.nn.functional.normalize(protos[0], dim=-1).T
        )  # (6, 5 groups, 5 SIDs)
        plain = torch.nn.functional.cross_entropy(scale * cos.reshape(30, 5), sids.reshape(30))
        assert loss.item() == pytest.approx(plain.item(), rel=1e-5)


def test_softmax_pushes_away_from_other_prototypes_hinge_does_not():
    """At f = p_g the hinge has nothing to do; the softmax still moves f and p_j apart."""
    p = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    margins = [torch.full((3,), 0.3)] * 5
    sids = torch.zeros(1, 5, dtype=torch.long)
    for form in ("hinge", "softmax"):
        f = torch.tensor([1.0, 0.0, 0.0]).expand(1, 5, 3).clone().requires_grad_(True)
        protos = [p.clone().requires_grad_(True) for _ in range(5)]
        if form == "hinge":
            semantic_guidance_loss(f, protos, sids, margins).backward()
            assert f.grad.abs().sum() == 0
            assert all(q.grad[1:].abs().sum() == 0 for q in protos)
            continue
        semantic_softmax_loss(f, protos, sids, margins, scale=10.0).backward()
        with torch.no_grad():
            f_step = f - 0.1 * f.grad
            for k, q in enumerate(protos):
                q_step = q - 0.1 * q.grad
                for j in (1, 2):  # cosines to the other prototypes go negative
                    assert torch.cosine_similarity(f_step[0, k], p[j], dim=0) < 0
                    assert torch.cosine_similarity(f[0, k], q_step[j], dim=0) < 0


@pytest.mark.parametrize("form", ["hinge", "softmax"])
def test_unknown_sids_are_left_out_of_sem_for_their_group_only(form):
    torch.manual_seed(5)
    sizes = [4, 18, 40, 8, 8]
    protos = [torch.randn(n, 6) for n in sizes]
    margins = [torch.rand(n) for n in sizes]
    feats = torch.randn(4, 5, 6, requires_grad=True)
    sids = torch.stack([torch.randint(0, n, (4,)) for n in sizes], dim=1)
    sids[0, 1] = -1  # image 0: upper body unknown
    sids[3] = -1  # image 3: nothing known

    def sem(f, s):
        if form == "hinge":
            return semantic_guidance_loss(f, protos, s, margins)
        return semantic_softmax_loss(f, protos, s, margins, scale=10.0)

    loss = sem(feats, sids)
    loss.backward()
    assert feats.grad[3].abs().sum() == 0 and feats.grad[0, 1].abs().sum() == 0
    assert feats.grad[0, 0].abs().sum() > 0  # image 0's other groups still count
    # The mean is over the 14 known (image, group) pairs: the sum of one-pair losses / 14.
    pairs = [(i, k) for i in range(4) for k in range(5) if sids[i, k] >= 0]
    assert len(pairs) == 14
    singles = []
    for i, k in pairs:
        one = torch.full_like(sids, -1)
        one[i, k] = sids[i, k]
        singles.append(sem(feats.detach(), one))
    assert loss.item() == pytest.approx(sum(singles).item() / 14, rel=1e-5)
    none = sem(feats, torch.full_like(sids, -1))
    assert none.item() == 0 and none.requires_grad


def test_semantic_softmax_rejects_bad_scale():
    with pytest.raises(CerberusError, match="scale"):
        semantic_softmax_loss(
            torch.randn(2, 5, 3),
            [torch.randn(4, 3)] * 5,
            torch.zeros(2, 5, dtype=torch.long),
            [torch.zeros(4)] * 5,
            scale=0.0,
        )


def test_fixed_margins():
    m = fixed_margins({"H": 3, "U": 2}, 0.6)
    assert torch.equal(m["H"], torch.full((3,), 0.6)) and m["U"].shape == (2,)


def test_semantic_softmax_default_scale_is_ten():
    torch.manual_seed(4)
    protos = [torch.randn(3, 4) for _ in range(5)]
    feats = torch.randn(6, 5, 4)
    sids = torch.randint(0, 3, (6, 5))
    margins = [torch.full((3,), 0.2)] * 5
    plain = semantic_softmax_loss(feats, protos, sids, margins)
    ten = semantic_softmax_loss(feats, protos, sids, margins, scale=10.0)
    assert plain.item() == pytest.approx(ten.item(), rel=1e-7)
    slow = _slow_softmax(feats, protos, sids, margins, 10.0)
    assert plain.item() == pytest.approx(slow, rel=1e-5)


def test_triplet_batch_hard_by_hand():
    f = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest pos d=3, hardest neg d=1 -> log(1+e^2)
    # anchor 1: pos 3, neg min(d(1,2)=sqrt(10), d(1,3)=sqrt(34)) -> log(1+e^(3-sqrt10))
    # anchor 2: pos 4, neg min(1, sqrt(10)) = 1 -> log(1+e^3)
    # anchor 3: pos 4, neg min(5, sqrt(34)) = 5 -> log(1+e^-1)
    expected = [
        math.log1p(math.exp(2)),
        math.log1p(math.exp(3 - math.sqrt(10))),
        math.log1p(math.exp(3)),
        math.log1p(math.exp(-1)),
    ]
    loss = batch_hard_soft_margin_triplet_loss(f, labels)
    assert loss.item() == pytest.approx(sum(expected) / 4, rel=1e-5)


def _slow_triplet(f, labels):
    """Per anchor, a loop over every other image: the farthest positive, the nearest negative."""
    total = []
    for a in range(len(f)):
        d = [float((f[a] - f[j]).norm()) for j in range(len(f))]
        pos = [d[j] for j in range(len(f)) if j != a and labels[j] == labels[a]]
        neg = [d[j] for j in range(len(f)) if labels[j] != labels[a]]
        total.append(math.log1p(math.exp(max(pos) - min(neg))))
    return sum(total) / len(total)


def test_triplet_mines_the_hardest_of_several_positives():
    """K = 3 images per identity: the farthest positive differs from the nearest one, so
    mining the easiest positive (or averaging) gives another loss than the slow loop."""
    torch.manual_seed(3)
    f = torch.randn(12, 4, dtype=torch.float64) * torch.arange(1, 13, dtype=torch.float64)[:, None]
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    loss = batch_hard_soft_margin_triplet_loss(f, labels)
    assert loss.item() == pytest.approx(_slow_triplet(f, labels), rel=1e-5)
    # by hand, one identity of three on a line and one far negative: anchor 0's positives are
    # at 1 and 4, its negative at 10 -> log(1 + e^(4 - 10)), not e^(1 - 10)
    g = torch.tensor([[0.0], [1.0], [4.0], [10.0], [11.0], [12.0]])
    two = torch.tensor([0, 0, 0, 1, 1, 1])
    want = [4 - 10, 3 - 9, 4 - 6, 2 - 6, 1 - 7, 2 - 8]
    assert batch_hard_soft_margin_triplet_loss(g, two).item() == pytest.approx(
        sum(math.log1p(math.exp(x)) for x in want) / 6, rel=1e-6
    )


def test_identification_loss_averages_five_representations():
    torch.manual_seed(0)
    feats = torch.randn(6, 5, 4)
    logits = torch.randn(5, 6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    out = identification_loss(feats, logits, labels)
    ce = sum(torch.nn.functional.cross_entropy(logits[k], labels) for k in range(5)) / 5
    tri = sum(batch_hard_soft_margin_triplet_loss(feats[:, k], labels) for k in range(5)) / 5
    assert torch.allclose(out["ce_loss"], ce) and torch.allclose(out["triplet_loss"], tri)


def _slow_reg(protos, vs, bins):
    total = []
    for p, v, a in zip(protos, vs, bins):
        s = 0.0
        for m in range(p.shape[0]):
            for n in range(p.shape[0]):
                r = (a[m] - a[n]) @ v
                s = s + ((p[m] - p[n] - r) ** 2).sum()
        total.append(s)
    return sum(total) / len(total)


def test_regularisation_matches_pairwise_sum():
    torch.manual_seed(1)
    codecs = [MARKET1501.codecs[g] for g in ("H", "I", "C")]
    bins = [torch.as_tensor(c.binary_vectors(), dtype=torch.float64) for c in codecs]
    protos = [torch.randn(c.num_sids, 6, dtype=torch.float64) for c in codecs]
    vs = [torch.randn(b.shape[1], 6, dtype=torch.float64) for b in bins]
    fast = prototype_regularization_loss(protos, vs, bins)
    assert fast.item() == pytest.approx(_slow_reg(protos, vs, bins).item(), rel=1e-9)


def test_regularisation_is_zero_for_additive_prototypes():
    """Prototypes that are exactly a base plus attribute residuals satisfy every analogy."""
    codec = MARKET1501.codecs["I"]
    a = torch.as_tensor(codec.binary_vectors())
    v = torch.randn(a.shape[1], 4)
    p = torch.randn(1, 4) + a @ v
    assert prototype_regularization_loss([p], [v], [a]).item() == pytest.approx(0, abs=1e-9)


def _model():
    torch.manual_seed(0)
    return build_model(
        num_classes=4,
        num_sids=MARKET1501.num_sids,
        binary_vectors={g: MARKET1501.codecs[g].binary_vectors() for g in GROUPS},
        backbone="resnet18",
        pretrained=False,
        dim=8,
    )


def test_gradients_reach_prototypes_and_residuals_and_unseen_sid_moves_only_through_reg():
    model = _model()
    x = torch.randn(4, 3, 64, 32)
    labels = torch.tensor([0, 0, 1, 1])
    sids = torch.zeros(4, 5, dtype=torch.long)  # SID 0 in every group; others unseen
    margins = {g: torch.full((n,), 0.5) for g, n in MARKET1501.num_sids.items()}
    with torch.no_grad():  # make v non-zero so residuals matter
        for v in model.residual_vectors.values():
            v.normal_()

    def grads(**switches):
        model.zero_grad()
        out = compute_losses(
            model(x),
            labels=labels,
            sids=sids,
            model=model,
            margins=margins,
            loss=LossConfig(**switches),
        )
        out["total_loss"].backward()

        def grad(t):
            return torch.zeros_like(t) if t.grad is None else t.grad.clone()

        return {g: grad(model.prototypes[g]) for g in GROUPS}, {
            g: grad(model.residual_vectors[g]) for g in GROUPS
        }

    p_sem, v_sem = grads(use_reg=False)
    for g in GROUPS:
        assert p_sem[g][0].abs().sum() > 0  # the seen SID is pulled by L_sem
        assert p_sem[g][1:].abs().sum() == 0  # unseen SIDs get nothing from L_sem
        assert v_sem[g].abs().sum() == 0
    p_reg, v_reg = grads(use_sem=False, use_id=False)
    for g in GROUPS:
        assert p_reg[g][1:].abs().sum() > 0  # ... but move through L_reg
        assert v_reg[g].abs().sum() > 0


def test_compute_losses_weights_and_switches():
    model = _model()
    x = torch.randn(4, 3, 64, 32)
    labels = torch.tensor([0, 0, 1, 1])
    sids = torch.zeros(4, 5, dtype=torch.long)
    margins = {g: torch.zeros(n) for g, n in MARKET1501.num_sids.items()}
    out = compute_losses(model(x), labels=labels, sids=sids, model=model, margins=margins)
    expected = 5 * out["sem_loss"] + out["ce_loss"] + out["triplet_loss"] + 0.001 * out["reg_loss"]
    assert torch.allclose(out["total_loss"], expected)
    off = compute_losses(
        model(x),
        labels=labels,
        sids=sids,
        model=model,
        margins=margins,
        loss=LossConfig(use_sem=False, use_reg=False),
    )
    assert off["sem_loss"].item() == 0 and off["reg_loss"].item() == 0
    soft = compute_losses(
        model(x),
        labels=labels,
        sids=sids,
        model=model,
        margins=margins,
        loss=LossConfig(semantic="softmax"),
    )
    protos = [model.prototypes[g] for g in GROUPS]
    alone = semantic_softmax_loss(
        model(x)["features"], protos, sids, [margins[g] for g in GROUPS], scale=10.0
    )
    assert soft["sem_loss"].item() == pytest.approx(alone.item(), rel=1e-5)
    with pytest.raises(CerberusError, match="semantic"):
        compute_losses(
            model(x),
            labels=labels,
            sids=sids,
            model=model,
            margins=margins,
            loss=LossConfig(semantic="cosface"),
        )
    assert off["total_loss"].item() == pytest.approx(
        (off["ce_loss"] + off["triplet_loss"]).item(), rel=1e-6
    )


def test_attribute_loss_is_mean_of_per_attribute_cross_entropy_ignoring_unknown():
    from cerberus.modeling.losses import attribute_loss

    torch.manual_seed(6)
    sizes = [2, 9, 4]
    logits = torch.randn(5, 15)
    values = torch.tensor([[0, 3, 1], [1, -1, 2], [-1, 8, 0], [1, 0, -1], [0, 2, 3]])
    expected = []
    for j, block in enumerate(logits.split(sizes, dim=1)):
        known = values[:, j] >= 0
        expected.append(torch.nn.functional.cross_entropy(block[known], values[known, j]))
    got = attribute_loss(logits, values, sizes)
    assert got.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    values[:, 1] = -1  # an attribute with no known value in the batch is left out
    no_colour = attribute_loss(logits, values, sizes)
    assert no_colour.item() == pytest.approx(((expected[0] + expected[2]) / 2).item(), rel=1e-6)
    assert attribute_loss(logits, torch.full_like(values, -1), sizes).item() == 0
    with pytest.raises(CerberusError, match="attribute_loss"):
        attribute_loss(logits, values[:, :2], sizes)


def test_attribute_heads_loss_decreases_on_a_tiny_batch():
    from tests.conftest import tiny_model

    sizes = [(a.group, a.num_values) for a in MARKET1501.attributes]
    model = tiny_model(attribute_sizes=sizes)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 64, 32)
    labels = torch.tensor([0, 0, 1, 1])
    values = torch.stack([torch.randint(0, n, (4,)) for _, n in sizes], dim=1)
    values[0, 2] = -1
    sids = torch.as_tensor(MARKET1501.to_sids(values.numpy()))
    margins = {g: torch.full((n,), 0.5) for g, n in MARKET1501.num_sids.items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        out = compute_losses(
            model(x),
            labels=labels,
            sids=sids,
            model=model,
            margins=margins,
            values=values,
            loss=LossConfig(lambda_attr=1.0),
        )
        history.append(out["attr_loss"].item())
        opt.zero_grad()
        out["total_loss"].backward()
        opt.step()
    assert history[-1] < history[0]
    assert "attr_loss" in out and torch.allclose(
        out["total_loss"],
        5 * out["sem_loss"]
        + out["ce_loss"]
        + out["triplet_loss"]
        + 0.001 * out["reg_loss"]
        + out["attr_loss"],
    )
    with pytest.raises(CerberusError, match="attribute heads"):
        compute_losses(
            _model()(x),
            labels=labels,
            sids=sids,
            model=_model(),
            margins=margins,
            loss=LossConfig(lambda_attr=1.0),
        )


def test_attribute_loss_bce_is_mean_binary_cross_entropy_of_the_one_hot_labels():
    import torch.nn.functional as F

    from cerberus.modeling.losses import attribute_loss

    torch.manual_seed(0)
    sizes = [2, 3]
    logits = torch.randn(4, 5)
    values = torch.tensor([[0, 2], [1, -1], [-1, 0], [1, 1]])
    got = attribute_loss(logits, values, sizes, form="bce")
    terms = []
    for j, (lo, n) in enumerate([(0, 2), (2, 3)]):
        known = values[:, j] >= 0
        target = F.one_hot(values[known, j], n).float()
        terms.append(F.binary_cross_entropy_with_logits(logits[known, lo : lo + n], target))
    assert got.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)


def test_attribute_loss_bce_when_the_batch_lacks_an_attributes_last_value():
    """The one-hot label has the attribute's V_a columns even when no image of the batch has
    its last value; wrong logit widths and forms are refused naming them."""
    import torch.nn.functional as F

    from cerberus.modeling.losses import attribute_loss

    torch.manual_seed(1)
    logits = torch.randn(3, 4)
    values = torch.tensor([[0], [1], [0]])  # a 4-valued attribute seen only as 0 and 1
    want = F.binary_cross_entropy_with_logits(logits, F.one_hot(values[:, 0], 4).float())
    got = attribute_loss(logits, values, [4], form="bce")
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(CerberusError) as e:
        attribute_loss(torch.randn(3, 5), values, [4])
    assert str(e.value) == "attribute_loss: expected logits (B, 4), got (3, 5)"
    with pytest.raises(CerberusError) as e:
        attribute_loss(logits, values, [4], form="focal")
    assert str(e.value) == "attribute_loss: form must be 'ce' or 'bce', got 'focal'"


def test_compute_losses_reads_every_weight_and_switch_of_the_loss_section():
    model = _model()
    x = torch.randn(4, 3, 64, 32)
    labels = torch.tensor([0, 0, 1, 1])
    sids = torch.zeros(4, 5, dtype=torch.long)
    margins = {g: torch.zeros(n) for g, n in MARKET1501.num_sids.items()}
    c = LossConfig(lambda_sem=2.0, lambda_id=0.5, lambda_reg=0.25, use_reg=False)
    out = compute_losses(model(x), labels=labels, sids=sids, model=model, margins=margins, loss=c)
    assert out["reg_loss"].item() == 0
    expected = 2.0 * out["sem_loss"] + 0.5 * (out["ce_loss"] + out["triplet_loss"])
    assert torch.allclose(out["total_loss"], expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lambda_sem = 1.0  # type: ignore[misc]


def test_compute_losses_softmax_form_and_its_errors():
    """``loss.semantic=softmax`` computes the softmax semantic loss with the configured scale
    and margins (its own function, called directly, gives the same); bad forms, missing
    margins and a model not in train mode are refused naming them."""
    model = _model()
    torch.manual_seed(5)
    out = {"features": torch.randn(4, 5, 8), "logits": torch.randn(5, 4, 4)}
    labels = torch.tensor([0, 0, 1, 1])
    sids = torch.stack([torch.randint(0, n, (4,)) for n in MARKET1501.num_sids.values()], 1)
    sids = sids[:, [list(MARKET1501.num_sids).index(g) for g in GROUPS]]
    margins = {g: torch.rand(MARKET1501.num_sids[g]) for g in GROUPS}
    c = LossConfig(semantic="softmax", semantic_scale=7.0)
    got = compute_losses(out, labels=labels, sids=sids, model=model, margins=margins, loss=c)
    protos = [model.prototypes[g] for g in GROUPS]
    want = semantic_softmax_loss(
        out["features"], protos, sids, [margins[g] for g in GROUPS], scale=7.0
    )
    assert got["sem_loss"].item() == pytest.approx(want.item(), rel=1e-6)
    hinge = compute_losses(out, labels=labels, sids=sids, model=model, margins=margins)
    assert hinge["sem_loss"].item() != pytest.approx(want.item(), rel=1e-3)
    with pytest.raises(CerberusError) as e:
        compute_losses(out, labels=labels, sids=sids, model=model, margins=margins,
                       loss=dataclasses.replace(c, semantic="arcface"))  # fmt: skip
    assert str(e.value) == "compute_losses: semantic must be one of hinge, softmax, got 'arcface'"
    with pytest.raises(CerberusError) as e:
        compute_losses(out, labels=labels, sids=sids, model=model,
                       margins={g: margins[g] for g in ("H", "U", "L")})  # fmt: skip
    assert str(e.value) == "compute_losses: no margins for groups I, C"
    with pytest.raises(CerberusError) as e:
        compute_losses({"features": out["features"]}, labels=labels, sids=sids, model=model,
                       margins=margins)  # fmt: skip
    assert str(e.value) == "compute_losses: L_id needs 'logits' (put the model in train mode)"


def test_prototype_regularization_refuses_each_misfit_alone():
    """Any one of the shapes not fitting is refused naming the group and the shapes."""
    p, v, a = torch.randn(3, 4), torch.randn(2, 4), torch.randn(3, 2)
    assert prototype_regularization_loss([p], [v], [a]).ndim == 0
    for args in (
        ([torch.randn(3)], [v], [a]),  # P not a matrix (its S fits A)
        ([p], [torch.randn(2)], [a]),  # V not a matrix (its n_bin fits A)
        ([p], [v], [a[:2]]),  # A of another S
        ([p], [v[:, :3]], [a]),  # V of another d
    ):
        with pytest.raises(CerberusError, match="prototype_regularization_loss, group 0: shapes P"):
            prototype_regularization_loss(*args)
    with pytest.raises(CerberusError) as e:
        prototype_regularization_loss([p, p], [v], [a])
    assert str(e.value) == (
        "prototype_regularization_loss: 2 prototype, 1 residual and 1 binary matrices"
    )
