"""Losses of SPEC section 3, pure functions on tensors.

L = lambda_sem L_sem + lambda_id L_id + lambda_reg L_reg (5, 1, 0.001 in the paper).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cerberus.attributes import GROUPS


def fixed_margins(num_sids: Mapping[str, int], value: float) -> dict[str, Tensor]:
    """A constant margin for every SID (the m = 0 / m = 0.6 ablation of Table 8)."""
    return {g: torch.full((int(n),), float(value)) for g, n in num_sids.items()}


def semantic_guidance_loss(
    features: Tensor, prototypes: Sequence[Tensor], sids: Tensor, margins: Sequence[Tensor]
) -> Tensor:
    """L_sem = mean over images and groups of max(1 - m_g - cos(f^G, p_g^G), 0).

    Args:
        features: ``(B, 5, d)`` representations in GROUPS order.
        prototypes: five ``(S_G, d)`` prototype matrices.
        sids: ``(B, 5)`` long, each image's SID per group.
        margins: five ``(S_G,)`` margins m^G.
    """
    terms = []
    for k, (p, m) in enumerate(zip(prototypes, margins, strict=True)):
        s = sids[:, k]
        cos = F.cosine_similarity(features[:, k].float(), p[s].float(), dim=-1)
        terms.append(torch.relu(1.0 - m.to(cos)[s] - cos))
    return torch.stack(terms, dim=1).mean()


def batch_hard_soft_margin_triplet_loss(features: Tensor, labels: Tensor) -> Tensor:
    """Soft-margin triplet with batch-hard mining, Euclidean distance.

    For each anchor a: log(1 + exp(max_p d(a, p) - min_n d(a, n))), averaged over anchors
    that have both a positive and a negative in the batch.

    Args:
        features: ``(B, d)``. labels: ``(B,)``.
    """
    f = features.float()
    sq = (f * f).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * f @ f.T).clamp_min(1e-12).sqrt()
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
    """L_id terms averaged over the 5 representations: cross-entropy and batch-hard triplet.

    Args:
        features: ``(B, 5, d)``. logits: ``(5, B, C)``. labels: ``(B,)``.

    Returns:
        ``{"ce_loss": ..., "triplet_loss": ...}``; L_id is their sum.
    """
    n = features.shape[1]
    ce = torch.stack([F.cross_entropy(logits[k].float(), labels) for k in range(n)]).mean()
    tri = torch.stack(
        [batch_hard_soft_margin_triplet_loss(features[:, k], labels) for k in range(n)]
    ).mean()
    return {"ce_loss": ce, "triplet_loss": tri}


def prototype_regularization_loss(
    prototypes: Sequence[Tensor],
    residual_vectors: Sequence[Tensor],
    binary_vectors: Sequence[Tensor],
) -> Tensor:
    """L_reg, averaged over groups, of sum over ordered pairs (m, n) of ||p_m - p_n - r_mn||^2.

    r_mn = (A_m - A_n) V with V the ``(n_bin, d)`` learnable residual vectors v_l. With
    q_m = p_m - A_m V, p_m - p_n - r_mn = q_m - q_n, and
    sum_{m,n} ||q_m - q_n||^2 = 2 S sum_m ||q_m - mean(q)||^2, computed in O(S d) (the centred
    form avoids the cancellation of 2 S sum ||q_m||^2 - 2 ||sum q_m||^2 in float32).

    Args:
        prototypes: ``(S_G, d)`` per group. residual_vectors: ``(n_bin_G, d)`` per group.
        binary_vectors: A of shape ``(S_G, n_bin_G)`` per group.
    """
    terms = []
    for p, v, a in zip(prototypes, residual_vectors, binary_vectors, strict=True):
        dtype = torch.promote_types(p.dtype, torch.float32)
        q = p.to(dtype) - a.to(p.device, dtype) @ v.to(dtype)
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
    lambda_sem: float = 5.0,
    lambda_id: float = 1.0,
    lambda_reg: float = 0.001,
    use_sem: bool = True,
    use_id: bool = True,
    use_reg: bool = True,
) -> dict[str, Tensor]:
    """All named loss terms and ``total_loss`` (SPEC 3); switched-off terms are zero.

    Args:
        output: the model's training output (``features`` (B, 5, d), ``logits`` (5, B, C)).
        labels: ``(B,)`` training identity labels. sids: ``(B, 5)`` SIDs.
        model: gives ``prototypes``, ``residual_vectors`` and ``binary_vectors(g)``.
        margins: ``{group: (S_G,)}``.
    """
    features = output["features"]
    zero = features.new_zeros((), dtype=torch.float32)
    protos = [model.prototypes[g] for g in GROUPS]
    sem = (
        semantic_guidance_loss(features, protos, sids, [margins[g] for g in GROUPS])
        if use_sem
        else zero
    )
    if use_id:
        ident = identification_loss(features, output["logits"], labels)
        ce, tri = ident["ce_loss"], ident["triplet_loss"]
    else:
        ce = tri = zero
    reg = (
        prototype_regularization_loss(
            protos,
            [model.residual_vectors[g] for g in GROUPS],
            [model.binary_vectors(g) for g in GROUPS],
        )
        if use_reg
        else zero
    )
    total = lambda_sem * sem + lambda_id * (ce + tri) + lambda_reg * reg
    return {
        "sem_loss": sem,
        "ce_loss": ce,
        "triplet_loss": tri,
        "reg_loss": reg,
        "total_loss": total,
    }
