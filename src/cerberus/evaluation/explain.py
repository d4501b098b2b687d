"""What drives each representation (Fig. 8) and how the representations cluster (Fig. 9).

- :func:`grad_cam_maps`: Grad-CAM (Selvaraju et al., ICCV 2017) of each of the five
  representations. The score of group G is the cosine of f^G with the prototype of its
  predicted SID, s^G = max_g cos(f^G, p_g^G); its gradient with respect to the branch map A
  that feeds f^G (the local map F^l for H, U, L; the global map F^g for I, C) weighs the
  channels, alpha_c = mean_p dS/dA_c(p), and the map is ReLU(sum_c alpha_c A_c), upsampled to
  the image and scaled to [0, 1] per image and representation.
- :func:`tsne_embedding`: a 2-D t-SNE (scikit-learn) of one group's representation over the
  images of some identities, coloured by identity (:func:`tsne_figure`), and the silhouette
  score of the identities in the representation space (cosine), a number for what the picture
  shows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from cerberus.attributes.schema import GROUPS
from cerberus.data.datasets import ImageSet, ReIDDataset
from cerberus.data.transforms import build_transforms
from cerberus.errors import CerberusError
from cerberus.evaluation.figures import (
    HEAT_ALPHA,
    MARGIN,
    _draw_text,
    _open,
    _text_width,
    heat_colours,
    save_png,
)
from cerberus.modeling.model import Cerberus

GROUP_NAMES = {"H": "head", "U": "upper body", "L": "lower body", "I": "identity", "C": "carrying"}
SKLEARN_MISSING = (
    "t-SNE needs scikit-learn, which is not installed: pip install 'cerberus-reid[figures]'"
)


def grad_cam_maps(
    model: Cerberus, images: Sequence[os.PathLike | str | Image.Image], *, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM map of every representation for every image (module docstring).

    Args:
        model: a Cerberus model (put in eval mode for the call; its mode is restored).
        images: N image paths or PIL images, resized by the test transform.
        height, width: network input size.

    Returns:
        ``(maps, sids)``: float32 ``(N, 5, height, width)`` in [0, 1], GROUPS order, and the
        predicted SID per image and group, int64 ``(N, 5)``.
    """
    if len(images) == 0:
        raise CerberusError("images: no images given")
    transform = build_transforms(height=height, width=width, train=False)
    device = next(model.parameters()).device
    x = torch.stack([transform(_open(p)) for p in images]).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            fg, fl = model.forward_maps(x)
            features, _ = model.features_from_maps(fg, fl)
            maps, sids = [], []
            for k, g in enumerate(GROUPS):
                cos = F.normalize(features[:, k], dim=1) @ F.normalize(model.prototypes[g], dim=1).T
                score, sid = cos.max(dim=1)
                source = fl if g in ("H", "U", "L") else fg
                (grad,) = torch.autograd.grad(score.sum(), source, retain_graph=True)
                weights = grad.mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * source).sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
                cam = cam[:, 0].detach()
                lo = cam.flatten(1).min(1).values[:, None, None]
                hi = cam.flatten(1).max(1).values[:, None, None]
                maps.append(((cam - lo) / (hi - lo).clamp_min(1e-12)).cpu())
                sids.append(sid.cpu())
    finally:
        model.train(was_training)
    return (
        torch.stack(maps, dim=1).numpy().astype(np.float32),
        torch.stack(sids, dim=1).numpy().astype(np.int64),
    )


def attention_figure(
    out: str | os.PathLike,
    images: Sequence[os.PathLike | str | Image.Image],
    maps: np.ndarray,
    *,
    tile: tuple[int, int] = (128, 64),
    captions: Sequence[Sequence[str]] | None = None,
    title: str = "Grad-CAM of each representation for its predicted SID's prototype (Fig. 8)",
) -> Path:
    """One row per image: the crop, then its five maps blended over it (columns H, U, L, I, C).

    Args:
        out: PNG to write.
        images: N paths or PIL images.
        maps: ``(N, 5, h, w)`` values in [0, 1] (:func:`grad_cam_maps`).
        tile: ``(height, width)`` of every cell.
        captions: optional ``(N, 5)`` text under each map (e.g. the predicted SID).
        title: the line at the top.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4 or maps.shape[1] != len(GROUPS) or maps.shape[0] != len(images):
        raise CerberusError(
            f"maps: expected ({len(images)}, {len(GROUPS)}, h, w), got {tuple(maps.shape)}"
        )
    th, tw = tile
    cols = 1 + len(GROUPS)
    texts = [str(c) for row in captions for c in row] if captions is not None else []
    col_w = max(tw, *(_text_width(t) for t in [*GROUP_NAMES.values(), *texts])) + 8
    cap_h = 14 if captions is not None else 0
    head_h = 22 + 16
    width = max(2 * MARGIN + cols * col_w, _text_width(title, 13) + 2 * MARGIN)
    height = 2 * MARGIN + head_h + len(images) * (th + cap_h + 6)
    fig = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    _draw_text(draw, (MARGIN, MARGIN), title, 13)
    for c, name in enumerate(["image", *GROUP_NAMES.values()]):
        x = MARGIN + c * col_w + (col_w - _text_width(name)) // 2
        _draw_text(draw, (x, MARGIN + 22), name)
    for i, im in enumerate(images):
        crop = _open(im).resize((tw, th), Image.Resampling.BILINEAR)
        y = MARGIN + head_h + i * (th + cap_h + 6)
        fig.paste(crop, (MARGIN + (col_w - tw) // 2, y))
        base = np.asarray(crop, dtype=np.float32)
        for k in range(len(GROUPS)):
            m = Image.fromarray(maps[i, k]).resize((tw, th), Image.Resampling.BILINEAR)
            heat = heat_colours(np.asarray(m)).astype(np.float32)
            blend = (1 - HEAT_ALPHA) * base + HEAT_ALPHA * heat
            x = MARGIN + (k + 1) * col_w + (col_w - tw) // 2
            fig.paste(Image.fromarray(np.round(blend).astype(np.uint8)), (x, y))
            if captions is not None:
                text = str(captions[i][k])
                _draw_text(draw, (x + (tw - _text_width(text)) // 2, y + th + 1), text)
    return save_png(fig, out)


def pick_identities(
    images: ImageSet,
    group: str,
    *,
    num_ids: int = 10,
    sid: int | None = None,
    seed: int = 0,
    min_images: int = 3,
) -> tuple[int, np.ndarray]:
    """Test identities sharing one SID of ``group``: ``(sid, identity numbers)``.

    Among identities with at least ``min_images`` images in ``images`` (junk and distractors
    left out), ``sid`` (default: the SID of the group shared by the most such identities) and
    up to ``num_ids`` of its identities, drawn with ``seed``.
    """
    if group not in GROUPS:
        raise CerberusError(f"group: expected one of {', '.join(GROUPS)}, got {group!r}")
    k = GROUPS.index(group)
    ok = images.pids > 0
    pids, counts = np.unique(images.pids[ok], return_counts=True)
    pids = pids[counts >= min_images]
    first = {int(p): int(images.sids[np.nonzero(images.pids == p)[0][0], k]) for p in pids}
    by_sid: dict[int, list[int]] = {}
    for p, s in first.items():
        if s >= 0:
            by_sid.setdefault(s, []).append(p)
    if not by_sid:
        raise CerberusError(f"no identity with {min_images}+ images and a known {group} SID")
    if sid is None:
        sid = max(by_sid, key=lambda s: (len(by_sid[s]), -s))
    if sid not in by_sid:
        raise CerberusError(f"SID {group}:{sid}: no test identity with {min_images}+ images has it")
    members = np.asarray(sorted(by_sid[sid]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(members, size=min(num_ids, len(members)), replace=False))
    return int(sid), chosen


def tsne_embedding(features: np.ndarray, *, seed: int = 0, perplexity: float = 10.0) -> np.ndarray:
    """2-D t-SNE of L2-normalised features ``(N, d)`` -> ``(N, 2)`` (scikit-learn, PCA init)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise CerberusError(SKLEARN_MISSING) from None
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise CerberusError(f"t-SNE: expected (N >= 3, d) features, got {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    perplexity = min(perplexity, (len(x) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def identity_silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    """Silhouette score of the identities under cosine distance, in [-1, 1] (higher: tighter,
    better separated identity clusters)."""
    try:
        from sklearn.metrics import silhouette_score
    except ImportError:
        raise CerberusError(SKLEARN_MISSING) from None
    return float(silhouette_score(np.asarray(features), np.asarray(labels), metric="cosine"))


IDENTITY_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (0, 0, 128), (128, 0, 0),
)  # fmt: skip
PANEL = 300


def tsne_figure(
    out: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    labels: np.ndarray,
    *,
    title: str,
) -> Path:
    """Scatter plots side by side, one per ``(caption, points (N, 2))``, coloured by identity
    (``labels`` ``(N,)``, the same images in every panel), with a legend of the identities."""
    labels = np.asarray(labels)
    ids = list(np.unique(labels))
    for caption, pts in panels:
        if np.asarray(pts).shape != (len(labels), 2):
            raise CerberusError(f"{caption}: expected points ({len(labels)}, 2)")
    legend_h = 16 * ((len(ids) + 4) // 5)
    w = 2 * MARGIN + len(panels) * (PANEL + MARGIN)
    w = max(w, _text_width(title, 13) + 2 * MARGIN)
    h = 2 * MARGIN + 22 + PANEL + 18 + 16 + legend_h
    fig = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(fig)
    _draw_text(draw, (MARGIN, MARGIN), title, 13)
    top = MARGIN + 22
    for j, (caption, pts) in enumerate(panels):
        x0 = MARGIN + j * (PANEL + MARGIN)
        draw.rectangle((x0, top, x0 + PANEL, top + PANEL), outline=(0, 0, 0))
        p = np.asarray(pts, dtype=np.float64)
        lo, hi = p.min(0), p.max(0)
        scaled = (p - lo) / np.maximum(hi - lo, 1e-12) * (PANEL - 20) + 10
        for (px, py), lab in zip(scaled, labels):
            colour = IDENTITY_COLOURS[ids.index(lab) % len(IDENTITY_COLOURS)]
            cx, cy = x0 + px, top + PANEL - py
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
        _draw_text(draw, (x0 + (PANEL - _text_width(caption)) // 2, top + PANEL + 4), caption)
    ly = top + PANEL + 22
    for i, lab in enumerate(ids):
        x = MARGIN + (i % 5) * 110
        y = ly + 16 * (i // 5)
        draw.ellipse((x, y + 3, x + 7, y + 10), fill=IDENTITY_COLOURS[i % len(IDENTITY_COLOURS)])
        _draw_text(draw, (x + 12, y), f"ID {int(lab):04d}")
    return save_png(fig, out)


def tsne_panel_data(
    features: np.ndarray, pids: np.ndarray, group: str, *, seed: int = 0
) -> tuple[np.ndarray, float]:
    """t-SNE points ``(N, 2)`` and identity silhouette of ``group``'s representation, from
    raw features ``(N, 5, d)`` and identity labels ``(N,)``."""
    f = np.asarray(features)[:, GROUPS.index(group)]
    return tsne_embedding(f, seed=seed), identity_silhouette(f, pids)


def tsne_images(dataset: ReIDDataset, pids: np.ndarray) -> ImageSet:
    """The test gallery images of ``pids``."""
    return dataset.gallery.subset(np.isin(dataset.gallery.pids, pids))


def tsne_compare(
    out: str | os.PathLike,
    models: Sequence[tuple[str, str | os.PathLike]],
    dataset: ReIDDataset,
    group: str,
    *,
    num_ids: int = 10,
    sid: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, object]:
    """Fig. 9: t-SNE of ``group``'s representation over the test gallery images of
    ``num_ids`` identities sharing one SID, one panel per ``(caption, checkpoint)``.

    Returns ``{"sid", "pids", "num_images", "silhouette": {caption: score}, "figure"}``.
    """
    from cerberus.inference.embed import extract_features
    from cerberus.inference.loading import load_model

    sid, pids = pick_identities(dataset.gallery, group, num_ids=num_ids, sid=sid, seed=seed)
    images = tsne_images(dataset, pids)
    panels, scores = [], {}
    for caption, path in models:
        loaded = load_model(path, device=device)
        model, cfg = loaded.model, loaded.config
        feats = extract_features(
            model, images, height=cfg.data.height, width=cfg.data.width,
            batch_size=64, num_workers=0, device=device,
        )  # fmt: skip
        points, score = tsne_panel_data(feats, images.pids, group, seed=seed)
        scores[caption] = score
        panels.append((f"{caption}: silhouette {score:.3f}", points))
    figure = tsne_figure(
        out,
        panels,
        images.pids,
        title=f"t-SNE of f^{group} ({GROUP_NAMES[group]}), {len(pids)} test identities sharing "
        f"SID {group}:{sid}, {len(images)} images (Fig. 9)",
    )
    return {
        "sid": sid,
        "pids": [int(p) for p in pids],
        "num_images": len(images),
        "silhouette": scores,
        "figure": str(figure),
    }
