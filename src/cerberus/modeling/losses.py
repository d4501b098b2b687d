"""Losses of method §3, pure functions on tensors.

L = lambda_sem L_sem + lambda_id L_id + lambda_reg L_reg (5, 1, 0.001 in the paper), with
L_id = cross-entropy + soft-margin batch-hard triplet. :func:`compute_losses` returns every term by
name, which is what the training loop logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cerberus.attributes.schema import GROUPS
from cerberus.config import LossConfig
from cerberus.errors import CerberusError


def _shape_error(what: str, expected: str, got: Tensor | Sequence[Tensor]) -> CerberusError:
    shape = tuple(got.shape) if isinstance(got, Tensor) else f"{len(got)} tensors"
    return CerberusError(f"{what}: expected {expected}, got {shape}")


def fixed_margins(num_sids: Mapping[str, int], value: float) -> dict[str, Tensor]:
    """A constant margin for every SID (the m = 0 / m = 0.6 ablations of method §7).

    Args:
        num_sids: ``{G: S_G}``.
        value: the margin m.

    Returns:
        ``{G: (S_G,) float32 tensor filled with value}``.
    """
    return {g: torch.full((int(n),), float(value)) for g, n in num_sids.items()}


SEMANTIC_FORMS: tuple[str, ...] = ("hinge", "softmax")
"""The forms of L_sem: the paper's pull-only hinge (method §3.1) and the softmax over prototypes
(method §8)."""


def _check_semantic_inputs(
    name: str,
    features: Tensor,
    prototypes: Sequence[Tensor],
    sids: Tensor,
    margins: Sequence[Tensor],
) -> None:
    if features.ndim != 3:
        raise _shape_error(name, "features (B, groups, d)", features)
    n = features.shape[1]
    if sids.shape != features.shape[:2]:
        raise _shape_error(name, f"sids {tuple(features.shape[:2])}", sids)
    if len(prototypes) != n or len(margins) != n:
        raise CerberusError(
            f"{name}: {n} groups but {len(prototypes)} prototype matrices "
            f"and {len(margins)} margin vectors"
        )


def semantic_guidance_loss(
    features: Tensor, prototypes: Sequence[Tensor], sids: Tensor, margins: Sequence[Tensor]
) -> Tensor:
    """Semantic guidance loss, method §3.1 (the paper's hinge).

    L_sem = mean over images and groups G of max(1 - m_g^G - cos(f^G, p_g^G), 0), where g is the
    image's SID in group G. Only the prototypes of SIDs present in the batch get a gradient; a
    representation is pulled to its SID's prototype and never pushed from the others.

    Args:
        features: ``(B, 5, d)`` representations in GROUPS order.
        prototypes: five ``(S_G, d)`` prototype matrices P^G, GROUPS order.
        sids: ``(B, 5)`` long, each image's SID per group; ``-1`` = unknown, and that
            (image, group) pair is left out of the mean.
        margins: five ``(S_G,)`` margins m^G (adaptive, or :func:`fixed_margins`).

    Returns:
        Scalar float32 loss; 0 (attached to the graph) when no SID of the batch is known.
    """
    _check_semantic_inputs("semantic_guidance_loss", features, prototypes, sids, margins)
    total = features.new_zeros((), dtype=torch.float32)
    count = 0
    for k, (p, m) in enumerate(zip(prototypes, margins)):
        known = sids[:, k] >= 0
        s = sids[:, k].clamp_min(0)
        cos = F.cosine_similarity(features[:, k].float(), p[s].float(), dim=-1)  # (B,)
        total = total + (torch.relu(1.0 - m.to(cos)[s] - cos) * known).sum()
        count = count + known.sum()
    return total / torch.as_tensor(count).clamp_min(1)


def semantic_softmax_loss(
    features: Tensor,
    prototypes: Sequence[Tensor],
    sids: Tensor,
    margins: Sequence[Tensor],
    *,
    scale: float = 10.0,
) -> Tensor:
    """Discriminative semantic guidance, method §8.1: cross-entropy over each group's prototypes.

    For image i and group G with SID g, the logits over the S_G prototypes are

        z_j = s * (cos(f^G_i, p_j^G) - m_g^G * [j = g]),   L = -log softmax(z)_g,

    averaged over the known (image, group) pairs. The margin m^G (adaptive, method §3.1, or fixed)
    is
    an additive cosine margin of the true SID; with m = 0 this is plain scaled-cosine
    cross-entropy. Unlike :func:`semantic_guidance_loss`, every prototype of the group gets a
    gradient: the representation is pulled to p_g and pushed from the other p_j.

    Args:
        features: ``(B, 5, d)`` representations in GROUPS order.
        prototypes: five ``(S_G, d)`` prototype matrices P^G, GROUPS order.
        sids: ``(B, 5)`` long, each image's SID per group; ``-1`` = unknown (left out).
        margins: five ``(S_G,)`` margins m^G.
        scale: s > 0, the inverse temperature of the softmax.

    Returns:
        Scalar float32 loss; 0 (attached to the graph) when no SID of the batch is known.

    Raises:
        CerberusError: bad shapes or a non-positive ``scale``.
    """
    _check_semantic_inputs("semantic_softmax_loss", features, prototypes, sids, margins)
    if not scale > 0:
        raise CerberusError(f"semantic_softmax_loss: scale must be positive, got {scale}")
    total = features.new_zeros((), dtype=torch.float32)
    count = 0
    for k, (p, m) in enumerate(zip(prototypes, margins)):
        known = sids[:, k] >= 0
        s = sids[:, k].clamp_min(0)
        cos = F.normalize(features[:, k].float(), dim=-1) @ F.normalize(p.float(), dim=-1).T
        true_margin = F.one_hot(s, p.shape[0]).to(cos) * m.to(cos)[s][:, None]  # (B, S_G)
        ce = F.cross_entropy(scale * (cos - true_margin), s, reduction="none")
        total = total + (ce * known).sum()
        count = count + known.sum()
    return total / torch.as_tensor(count).clamp_min(1)


def batch_hard_soft_margin_triplet_loss(features: Tensor, labels: Tensor) -> Tensor:
    """Soft-margin triplet loss with batch-hard mining and Euclidean distance, method §3.2.

    For each anchor a: log(1 + exp(max_p d(a, p) - min_n d(a, n))), with p over the other images
    of a's identity and n over the images of other identities; averaged over the anchors that
    have both (with P x K sampling, every anchor).

    Args:
        features: ``(B, d)``.
        labels: ``(B,)`` identity labels.

    Returns:
        Scalar float32 loss; 0 (still attached to the graph) when no anchor has a positive and a
        negative.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise CerberusError(
            f"triplet loss: expected features (B, d) and labels (B,), got "
            f"{tuple(features.shape)} and {tuple(labels.shape)}"
        )
    f = features.float()
    sq = (f * f).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(1e-12).sqrt()  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=f.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    hardest_pos = torch.where(pos_mask, dist, torch.full_like(dist, -torch.inf)).amax(1)
    hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, torch.inf)).amin(1)
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return f.sum() * 0.0
    return F.softplus(hardest_pos[valid] - hardest_neg[valid]).mean()


def identification_loss(features: Tensor, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Identification loss terms, method §3.2, each averaged over the representations.

    Args:
        features: ``(B, 5, d)`` representations f^G.
        logits: ``(5, B, C)`` ID classifier outputs on each f^G.
        labels: ``(B,)`` long identity labels in ``[0, C)``.

    Returns:
        ``{"ce_loss": scalar, "triplet_loss": scalar}``; L_id is their sum.
    """
    if features.ndim != 3 or logits.ndim != 3:
        raise CerberusError(
            f"identification_loss: expected features (B, 5, d) and logits (5, B, C), got "
            f"{tuple(features.shape)} and {tuple(logits.shape)}"
        )
    n, b = features.shape[1], features.shape[0]
    if logits.shape[:2] != (n, b):
        raise _shape_error("identification_loss", f"logits ({n}, {b}, C)", logits)
    ce = torch.stack([F.cross_entropy(logits[k].float(), labels) for k in range(n)]).mean()
    tri = torch.stack(
        [batch_hard_soft_margin_triplet_loss(features[:, k], labels) for k in range(n)]
    ).mean()
    return {"ce_loss": ce, "triplet_loss": tri}


def attribute_loss(
    logits: Tensor, values: Tensor, sizes: Sequence[int], *, form: str = "ce"
) -> Tensor:
    """Attribute classification loss of the optional attribute heads (a PAR baseline in the
    style of FastAttr, not part of method §3).

    Mean over attributes a of the cross-entropy of a's head over its V_a values, each averaged
    over the images whose value of a is known; an attribute with no known value in the batch
    is left out. ``form="bce"``: instead of a's cross-entropy, the mean binary cross-entropy of
    its V_a logits against the one-hot label of the value (one sigmoid per binary label, the
    PAR models' loss).

    Args:
        logits: ``(B, sum_a V_a)`` the heads' logits, attribute blocks in schema order.
        values: ``(B, num_attributes)`` long value codes, ``-1`` = unknown.
        sizes: ``V_a`` of every attribute.
        form: ``"ce"`` or ``"bce"``.

    Returns:
        Scalar float32 loss; 0 (attached to the graph) when no value is known.
    """
    if logits.ndim != 2 or values.shape != (logits.shape[0], len(sizes)):
        raise CerberusError(
            f"attribute_loss: expected logits (B, {sum(sizes)}) and values (B, {len(sizes)}), "
            f"got {tuple(logits.shape)} and {tuple(values.shape)}"
        )
    if logits.shape[1] != sum(sizes):
        raise _shape_error("attribute_loss", f"logits (B, {sum(sizes)})", logits)
    terms = []
    for j, block in enumerate(logits.float().split(list(sizes), dim=1)):
        target = values[:, j]
        known = target >= 0
        if not known.any():
            continue
        if form == "bce":
            onehot = F.one_hot(target[known], block.shape[1]).float()
            terms.append(F.binary_cross_entropy_with_logits(block[known], onehot))
        elif form == "ce":
            terms.append(F.cross_entropy(block, target, ignore_index=-1))
        else:
            raise CerberusError(f"attribute_loss: form must be 'ce' or 'bce', got {form!r}")
    if not terms:
        return logits.float().sum() * 0.0
    return torch.stack(terms).mean()


def prototype_regularization_loss(
    prototypes: Sequence[Tensor],
    residual_vectors: Sequence[Tensor],
    binary_vectors: Sequence[Tensor],
) -> Tensor:
    """Prototype regularisation, method §3.3, averaged over groups.

    L_reg^G = sum over ordered pairs (m, n) of ||p_m - p_n - r_mn||^2 with r_mn = (A_m - A_n) V,
    V the ``(n_bin, d)`` learnable residual vectors v_l. With q_m = p_m - A_m V every term is
    ||q_m - q_n||^2, and sum_{m,n} ||q_m - q_n||^2 = 2 S sum_m ||q_m||^2 - 2 ||sum_m q_m||^2
    = 2 S sum_m ||q_m - mean(q)||^2: O(S d) instead of O(S^2 d). The centred form is used as it
    avoids the cancellation of the first in float32.

    Args:
        prototypes: per group, P of shape ``(S_G, d)``.
        residual_vectors: per group, V of shape ``(n_bin_G, d)``.
        binary_vectors: per group, A of shape ``(S_G, n_bin_G)``.

    Returns:
        Scalar loss, float32 (float64 if the inputs are).
    """
    if not (len(prototypes) == len(residual_vectors) == len(binary_vectors) >= 1):
        raise CerberusError(
            f"prototype_regularization_loss: {len(prototypes)} prototype, "
            f"{len(residual_vectors)} residual and {len(binary_vectors)} binary matrices"
        )
    terms = []
    for k, (p, v, a) in enumerate(zip(prototypes, residual_vectors, binary_vectors)):
        if (
            p.ndim != 2
            or v.ndim != 2
            or a.shape != (p.shape[0], v.shape[0])
            or v.shape[1] != p.shape[1]
        ):
            raise CerberusError(
                f"prototype_regularization_loss, group {k}: shapes P {tuple(p.shape)}, "
                f"V {tuple(v.shape)}, A {tuple(a.shape)} do not fit (S, d), (n_bin, d), (S, n_bin)"
            )
        dtype = torch.promote_types(p.dtype, torch.float32)
        q = p.to(dtype) - a.to(p.device, dtype) @ v.to(dtype)  # (S, d)
        centred = q - q.mean(dim=0, keepdim=True)
        terms.append(2 * q.shape[0] * (centred * centred).sum())
    return torch.stack(terms).mean()


def compute_losses(
    output: Mapping[str, Tensor],
    *,
    labels: Tensor,
    sids: Tensor,
    model: torch.nn.Module,
    margins: Mapping[str, Tensor],
    values: Tensor | None = None,
    loss: LossConfig = LossConfig(),
) -> dict[str, Tensor]:
    """All named loss terms and their weighted sum, method §3.

    total = lambda_sem * sem + lambda_id * (ce + triplet) + lambda_reg * reg + lambda_attr * attr
    (weights, form and switches: ``loss``, the config's loss section); a switched-off term is a zero
    tensor (and contributes nothing to the gradient).

    Args:
        output: the model's training output: ``features`` (B, 5, d), ``logits`` (5, B, C).
        labels: ``(B,)`` training identity labels.
        sids: ``(B, 5)`` SIDs, GROUPS order.
        model: a :class:`~cerberus.modeling.model.Cerberus`: gives ``prototypes``,
            ``residual_vectors`` and ``binary_vectors(g)``.
        margins: ``{G: (S_G,)}`` semantic guidance margins.
        values: ``(B, num_attributes)`` attribute value codes (``-1`` unknown), for the
            attribute heads' loss (needs ``attribute_logits`` in ``output`` and ``values`` when
            ``loss.lambda_attr`` is positive).
        loss: the config's ``loss`` section (:class:`~cerberus.config.LossConfig`); its
            margin fields are not read here (the margins come as tensors).

    Returns:
        ``{"sem_loss", "ce_loss", "triplet_loss", "reg_loss", "attr_loss", "total_loss"}``,
        scalar tensors (``attr_loss`` is 0 without attribute heads).
    """
    c = loss
    semantic = c.semantic
    if semantic not in SEMANTIC_FORMS:
        raise CerberusError(
            f"compute_losses: semantic must be one of {', '.join(SEMANTIC_FORMS)}, got {semantic!r}"
        )
    features = output["features"]
    zero = features.new_zeros((), dtype=torch.float32)
    protos = [model.prototypes[g] for g in GROUPS]
    sem = zero
    if c.use_sem:
        missing = [g for g in GROUPS if g not in margins]
        if missing:
            raise CerberusError(f"compute_losses: no margins for groups {', '.join(missing)}")
        group_margins = [margins[g] for g in GROUPS]
        if semantic == "softmax":
            sem = semantic_softmax_loss(
                features, protos, sids, group_margins, scale=c.semantic_scale
            )
        else:
            sem = semantic_guidance_loss(features, protos, sids, group_margins)
    ce = tri = zero
    if c.use_id:
        if "logits" not in output:
            raise CerberusError("compute_losses: L_id needs 'logits' (put the model in train mode)")
        ident = identification_loss(features, output["logits"], labels)
        ce, tri = ident["ce_loss"], ident["triplet_loss"]
    reg = zero
    if c.use_reg:
        reg = prototype_regularization_loss(
            protos,
            [model.residual_vectors[g] for g in GROUPS],
            [model.binary_vectors(g) for g in GROUPS],
        )
    attr = zero
    if "attribute_logits" in output and values is not None:
        attr = attribute_loss(
            output["attribute_logits"], values, model.attribute_sizes, form=c.attr_form
        )
    elif c.lambda_attr > 0:
        raise CerberusError(
            "compute_losses: lambda_attr > 0 needs a model with attribute heads in train mode "
            "(model.attribute_heads=true) and the batch's attribute values"
        )
    total = (
        c.lambda_sem * sem + c.lambda_id * (ce + tri) + c.lambda_reg * reg + c.lambda_attr * attr
    )
    return {
        "sem_loss": sem,
        "ce_loss": ce,
        "triplet_loss": tri,
        "reg_loss": reg,
        "attr_loss": attr,
        "total_loss": total,
    }
