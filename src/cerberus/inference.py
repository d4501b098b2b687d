"""The SPEC 5 rules on a trained model: embed crops, search vectors, prototype scores, PAR.

One image's way: :func:`scan_images` / :func:`image_set` (files -> :class:`ImageSet`) ->
:func:`extract_features` (the fused network, ``(N, 5, d)`` representations f^H, f^U, f^L, f^I,
f^C) -> :func:`embed_features` (each part L2-normalised, concatenated, / sqrt(5): the inner
product of two vectors is the mean part cosine, the reID similarity) or
:func:`prototype_scores` -> :func:`predict_sids` / :func:`describe_features` (PAR: the nearest
prototype per group, decoded) and :func:`attribute_query_scores` / :func:`attribute_query_vectors`
(APS: the given groups' prototypes in place of the query's representations).

:class:`InferenceModel` bundles a checkpoint's model with its input size and schema for the
``extract``, ``search``, ``describe`` and ``export`` commands; :func:`extract_folder` turns a
folder of crops into a :class:`~cerberus.features.FeatureSet`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cerberus.attributes import GROUPS, AttributeTable, Schema, get_schema
from cerberus.checkpoints import load_model_from_checkpoint
from cerberus.data.datasets import FORMATS, ImageDataset, ImageSet, parse_filename
from cerberus.data.transforms import build_transforms
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.features import UNKNOWN, FeatureSet
from cerberus.model import fuse_batchnorm

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# --------------------------------------------------------------------------- SPEC 5 on arrays


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (last axis) scaled to unit L2 norm; zero rows stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def embed_features(features: np.ndarray) -> np.ndarray:
    """SPEC 5 retrieval vectors: each of the 5 parts L2-normalised, concatenated, / sqrt(5).

    ``(N, 5, d) -> (N, 5 d)``; the inner product of two vectors is the mean cosine over groups.
    """
    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 3:
        raise CerberusError(f"embed_features: expected (N, groups, d), got {f.shape}")
    f = l2_normalize(f)
    return np.ascontiguousarray(f.reshape(len(f), -1) / np.sqrt(f.shape[1], dtype=np.float32))


def prototype_scores(
    features: np.ndarray, prototypes: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Cosine of every prototype with every image, per group: ``[(S_G, N)]`` in GROUPS order."""
    f = l2_normalize(np.asarray(features, dtype=np.float32))
    return [
        l2_normalize(np.asarray(prototypes[g], np.float32)) @ f[:, k].T
        for k, g in enumerate(GROUPS)
    ]


def predict_sids(features: np.ndarray, prototypes: Mapping[str, np.ndarray]) -> np.ndarray:
    """PAR, SPEC 5: the SID of the nearest prototype (cosine) per group, shape ``(N, 5)``."""
    return np.stack([s.argmax(0) for s in prototype_scores(features, prototypes)], axis=1)


SID_DECISIONS = ("cosine", "posterior")
"""How PAR and APS score SIDs: ``"cosine"`` is the paper's rule (SPEC 5); ``"posterior"`` the
prior-aware decision of SPEC 8 (:func:`posterior_scores`)."""


def sid_log_prior(counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """log pi_j^G = log((N_j^G + 1) / (N + S_G)): Laplace-smoothed training frequency of each SID.

    Args:
        counts: ``{G: (S_G,) int}`` training identities per SID
            (:func:`cerberus.attributes.sid_identity_counts`); unseen SIDs keep a small prior.

    Returns:
        ``{G: (S_G,) float32}`` log priors.
    """
    out = {}
    for g, c in counts.items():
        c = np.asarray(c, dtype=np.float64)
        out[g] = np.log((c + 1.0) / (c.sum() + len(c))).astype(np.float32)
    return out


def posterior_scores(
    per_group: Sequence[np.ndarray], log_prior: Mapping[str, np.ndarray], *, scale: float
) -> list[np.ndarray]:
    """Prior-aware SID scores, SPEC 8: log p(j | x) = log softmax_j(s cos(f^G, p_j^G) + log pi_j^G).

    PAR then takes the SID of highest posterior (the nearest prototype, shifted towards frequent
    SIDs); APS ranks a gallery image by the mean over the given groups of the log posterior of
    the query's SID, which also compares it with the group's other prototypes.

    Args:
        per_group: :func:`prototype_scores`, ``[(S_G, N)]`` cosines in GROUPS order.
        log_prior: :func:`sid_log_prior`, ``{G: (S_G,)}``.
        scale: s > 0, the inverse temperature of the cosines.

    Returns:
        ``[(S_G, N)]`` float32 log posteriors.
    """
    if not scale > 0:
        raise CerberusError(f"posterior_scores: scale must be > 0, got {scale}")
    out = []
    for k, g in enumerate(GROUPS):
        cos = np.asarray(per_group[k], dtype=np.float64)
        prior = np.asarray(log_prior[g], dtype=np.float64)
        if prior.shape != (cos.shape[0],):
            raise CerberusError(
                f"posterior_scores: group {g} has {cos.shape[0]} SIDs but a prior of shape "
                f"{prior.shape}"
            )
        logits = scale * cos + prior[:, None]
        logits -= logits.max(0, keepdims=True)
        out.append((logits - np.log(np.exp(logits).sum(0, keepdims=True))).astype(np.float32))
    return out


def _phrase(attribute: Any, value: int) -> str:
    """ "red top" for colour attributes without phrases, else the schema's phrase.

    Value ``"none"`` (no colour field set) reads "no top colour": this describes a prediction,
    so it does not say "not annotated"."""
    if attribute.phrases or not attribute.name.endswith(".color"):
        return attribute.phrase(value)
    part = "top" if attribute.name.startswith("upper") else "bottom"
    name = attribute.values[value]
    return f"no {part} colour" if name == "none" else f"{name} {part}"


def describe_features(
    features: np.ndarray,
    prototypes: Mapping[str, np.ndarray],
    schema: Schema,
    *,
    log_prior: Mapping[str, np.ndarray] | None = None,
    scale: float = 10.0,
) -> list[dict[str, Any]]:
    """PAR for display: the predicted attributes of each image, SPEC 5.

    With ``log_prior`` (:func:`sid_log_prior`) the SID of highest prior-aware posterior is
    chosen (SPEC 8, :func:`posterior_scores` at ``scale``), else the nearest prototype.

    Returns, per image, ``attributes`` (``{name: value}``), ``phrases`` (``["female", "red
    top", ...]`` in schema order) and ``confidence`` (``{G: cosine to the chosen prototype}``).
    """
    per_group = prototype_scores(features, prototypes)
    decide = per_group if log_prior is None else posterior_scores(per_group, log_prior, scale=scale)
    sids = np.stack([s.argmax(0) for s in decide], axis=1)  # (N, 5)
    values = schema.from_sids(sids)
    out = []
    for i, row in enumerate(values):
        out.append(
            {
                "attributes": schema.describe(row),
                "phrases": [_phrase(a, int(v)) for a, v in zip(schema.attributes, row)],
                "confidence": {g: float(per_group[k][sids[i, k], i]) for k, g in enumerate(GROUPS)},
            }
        )
    return out


def attribute_query_scores(
    query_sids: np.ndarray, given: np.ndarray, per_group: Sequence[np.ndarray]
) -> np.ndarray:
    """APS similarity, SPEC 5: mean over the given groups of cos(p^G_{s_G}, f^G).

    Args:
        query_sids: ``(Q, 5)`` SIDs (entries of groups not given are ignored).
        given: ``(5,)`` or ``(Q, 5)`` bool, which groups each query gives.
        per_group: :func:`prototype_scores` of the gallery, ``[(S_G, N)]``.

    Returns:
        ``(Q, N)`` scores.
    """
    query_sids = np.asarray(query_sids)
    given = np.broadcast_to(np.asarray(given, dtype=bool), query_sids.shape)
    n = per_group[0].shape[1]
    total = np.zeros((len(query_sids), n), dtype=np.float32)
    for k in range(len(GROUPS)):
        rows = np.nonzero(given[:, k])[0]
        if len(rows):
            total[rows] += per_group[k][query_sids[rows, k]]
    return total / np.maximum(given.sum(1, keepdims=True), 1)


# --------------------------------------------------------------------------- attribute queries


@dataclass(frozen=True)
class AttributeQuery:
    """An attribute query compiled against a schema.

    Attributes:
        given: ``{attribute name: value code}`` as the user gave it.
        groups: the groups with at least one given attribute, GROUPS order.
        choices: per group in ``groups``, the SIDs that agree with the given attributes (one
            SID when the whole group is given).
    """

    given: dict[str, int]
    groups: tuple[str, ...]
    choices: tuple[tuple[int, ...], ...]

    @property
    def num_combinations(self) -> int:
        return int(np.prod([len(c) for c in self.choices]))

    def describe(self, schema: Schema) -> list[str]:
        return [
            f"{n}: {schema.attributes[schema.index(n)].values[v]}" for n, v in self.given.items()
        ]


def parse_attribute_query(
    text: str | Mapping[str, str], schema: Schema, *, max_combinations: int = 4096
) -> AttributeQuery:
    """``"gender=female, upper.color=red, backpack=yes"`` -> :class:`AttributeQuery`.

    Unknown attribute names or values raise :class:`CerberusError` listing the valid ones.
    """
    given = schema.parse_query(text)
    groups, choices = [], []
    for g in GROUPS:
        codec = schema.codecs[g]
        cols = schema.group_columns(g)
        names = [schema.attributes[c].name for c in cols]
        if not any(n in given for n in names):
            continue
        values = codec.decode(np.arange(codec.num_sids))  # (S, n_attrs)
        ok = np.ones(codec.num_sids, dtype=bool)
        for j, n in enumerate(names):
            if n in given:
                ok &= values[:, j] == given[n]
        groups.append(g)
        choices.append(tuple(int(s) for s in np.nonzero(ok)[0]))
    query = AttributeQuery(given, tuple(groups), tuple(choices))
    if query.num_combinations > max_combinations:
        raise CerberusError(
            f"attribute query matches {query.num_combinations} SID combinations (more than "
            f"{max_combinations}); give more attributes of the partly given groups"
        )
    return query


def attribute_query_vectors(
    query: AttributeQuery, prototypes: Mapping[str, np.ndarray]
) -> np.ndarray:
    """One search vector per agreeing SID combination, ``(num_combinations, 5 d)``.

    Group G given with SID s: the slot of G holds p_s / ||p_s||; groups not given hold 0; the
    vector is scaled by sqrt(5) / |given groups|, so its inner product with a retrieval vector
    is the mean over the given groups of cos(p^G, f^G) (SPEC 5).
    """
    d = next(iter(prototypes.values())).shape[1]
    unit = {g: l2_normalize(np.asarray(prototypes[g], np.float32)) for g in GROUPS}
    scale = np.sqrt(len(GROUPS), dtype=np.float32) / len(query.groups)
    combos = list(itertools.product(*query.choices))
    out = np.zeros((len(combos), len(GROUPS), d), dtype=np.float32)
    for i, combo in enumerate(combos):
        for g, s in zip(query.groups, combo):
            out[i, GROUPS.index(g)] = unit[g][s]
    return np.ascontiguousarray(out.reshape(len(combos), -1) * scale)


# --------------------------------------------------------------------------- extraction


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: ImageSet,
    *,
    height: int,
    width: int,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str | torch.device = "cpu",
    flip: bool = False,
    progress: bool = False,
    desc: str = "extract",
    on_bad_image: str = "stop",
    bad_image_hint: str = "",
) -> np.ndarray:
    """The five representations f^H, f^U, f^L, f^I, f^C of every image.

    Args:
        model: a :class:`~cerberus.model.Cerberus` (put in eval mode here).
        images: the images to embed.
        height, width: network input size.
        flip: also embed the mirrored image and average (a common test-time option; off in
            the paper protocol).
        on_bad_image: ``"stop"``: an unreadable image raises :class:`CerberusError` naming it;
            ``"skip"``: its row is NaN and it is logged (see :func:`extract_folder`).
        bad_image_hint: appended to the ``"stop"`` error, for callers that can skip (the
            ``extract`` command names its ``--skip-bad``).

    Returns:
        Array of shape ``(N, 5, d)``, float32, not normalised.
    """
    if on_bad_image not in ("stop", "skip"):
        raise CerberusError(f"on_bad_image must be 'stop' or 'skip', not {on_bad_image!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    # channels_last: faster convolutions on CUDA and on CPU (oneDNN); results are unchanged
    model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        _SafeImages(
            images, build_transforms(height=height, width=width, train=False), height, width
        ),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(images), desc=desc, unit="img")
    try:
        for batch in loader:
            errors = [e for e in batch["error"] if e]
            if errors and on_bad_image == "stop":
                raise CerberusError(f"{errors[0]}{bad_image_hint}")
            x = batch["image"].to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                f = model(x)["features"].float()
                if flip:
                    f = (f + model(torch.flip(x, dims=[3]))["features"].float()) / 2
            f = f.cpu()
            for i, e in enumerate(batch["error"]):
                if e:
                    logger.warning("skipping %s", e)
                    f[i] = float("nan")
            out.append(f)
            if bar is not None:
                bar.update(len(x))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if not out:
        return np.zeros((0, 5, 0), dtype=np.float32)
    return torch.cat(out).numpy()


class _SafeImages(ImageDataset):
    """Test-time dataset whose items carry the error of an unreadable file instead of raising."""

    def __init__(self, images: ImageSet, transform, height: int, width: int):
        super().__init__(images, transform)
        self._blank = torch.zeros(3, height, width)

    def __getitem__(self, item):  # type: ignore[override]
        try:
            out = super().__getitem__(item)
            out["error"] = ""
        except CerberusError as exc:
            out = {"image": self._blank, **self.labels_of(item), "error": str(exc)}
        return out


def scan_images(folder: str | Path, schema: Schema) -> ImageSet:
    """Every image under ``folder`` (recursive, sorted), as an :class:`ImageSet`.

    Identities and cameras are read from Market-1501 / DukeMTMC-reID style file names when they
    parse, else :data:`UNKNOWN`. Attribute values are unknown (``-1``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CerberusError(f"{folder}: image folder not found")
    paths = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise CerberusError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return image_set(paths, schema)


def image_set(paths: list[str | Path] | tuple[str | Path, ...], schema: Schema) -> ImageSet:
    """An :class:`ImageSet` of given files; identity and camera parsed from names when possible."""
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CerberusError(f"{missing[0]}: image not found")
    pids = np.full(len(paths), UNKNOWN, dtype=np.int64)
    cams = np.full(len(paths), UNKNOWN, dtype=np.int64)
    for i, p in enumerate(paths):
        for fmt in FORMATS.values():
            try:
                pids[i], cams[i] = parse_filename(p.name, fmt)
                break
            except CerberusError:
                continue
    values = np.full((len(paths), schema.num_attributes), -1, dtype=np.int64)
    return ImageSet(tuple(paths), pids, cams, pids.copy(), values, schema)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's weights and buffers (names, shapes, bytes), hex.

    Two models with the same fingerprint give the same features; the index refuses queries
    embedded by a model with another fingerprint.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def extract_folder(
    model: nn.Module,
    folder: str | Path,
    *,
    schema: Schema,
    height: int,
    width: int,
    checkpoint: str = "",
    fingerprint: str | None = None,
    attributes: AttributeTable | None = None,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str = "cpu",
    skip_bad: bool = False,
    progress: bool = False,
) -> FeatureSet:
    """Features of every crop under ``folder``; unreadable files stop or are skipped (logged).

    ``attributes`` (e.g. from the dataset's ``.mat`` file) gives each identity's attribute
    values, stored as ground truth for figures and evaluation. ``fingerprint`` is that of the
    trained weights when ``model`` is a BN-folded copy (:func:`model_fingerprint` otherwise).
    """
    images = scan_images(folder, schema)
    feats = extract_features(
        model,
        images,
        height=height,
        width=width,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        desc=Path(folder).name or "extract",
        on_bad_image="skip" if skip_bad else "stop",
        bad_image_hint=" (skip_bad / extract --skip-bad leaves such files out)",
    )
    ok = np.isfinite(feats).all(axis=(1, 2))
    if not ok.all():
        logger.warning("%s: skipped %d unreadable images of %d", folder, (~ok).sum(), len(ok))
        if not ok.any():
            raise CerberusError(f"{folder}: no readable image")
    values = attributes.lookup(images.pids) if attributes is not None else images.values
    keep = np.nonzero(ok)[0]
    return FeatureSet(
        features=feats[keep],
        paths=[str(images.paths[i]) for i in keep],
        pids=images.pids[keep],
        camids=images.camids[keep],
        values=values[keep],
        prototypes={g: p.detach().float().cpu().numpy() for g, p in model.prototypes.items()},
        meta={
            "schema": schema.name,
            "fingerprint": fingerprint or model_fingerprint(model),
            "checkpoint": str(checkpoint),
            "height": height,
            "width": width,
            "dim": int(feats.shape[-1]),
        },
    )


@dataclass
class InferenceModel:
    """A trained model ready to embed crops: what ``extract``, ``search`` and ``describe`` use."""

    model: nn.Module
    schema: Schema
    height: int
    width: int
    checkpoint: str
    device: str
    batch_size: int = 64
    num_workers: int = 0
    log_prior: dict[str, np.ndarray] | None = None
    """SID log priors when the checkpoint's ``eval.decision`` is ``"posterior"`` (SPEC 8)."""
    prior_scale: float = 10.0
    _fingerprint: str = ""

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        num_workers: int | None = None,
        fuse_bn: bool = True,
    ) -> InferenceModel:
        """Load a checkpoint for inference; ``fuse_bn`` folds BatchNorm into the convolutions
        (:func:`~cerberus.model.fuse_batchnorm`: same features, faster)."""
        device = str(resolve_device(device, "--device"))
        model, cfg, state = load_model_from_checkpoint(checkpoint)
        fingerprint = model_fingerprint(model)  # of the trained weights, before folding BN
        if fuse_bn:
            model = fuse_batchnorm(model)
        model.to(device).eval()
        log_prior = None
        if cfg.eval.decision == "posterior":
            counts = state["meta"].get("sid_counts")
            if counts is None:
                logger.warning(
                    "%s: eval.decision=posterior but the checkpoint has no SID counts; "
                    "PAR uses the nearest prototype",
                    checkpoint,
                )
            else:
                log_prior = sid_log_prior({g: np.asarray(c) for g, c in counts.items()})
        return cls(
            model=model,
            schema=get_schema(state["meta"]["schema"]),
            height=cfg.data.height,
            width=cfg.data.width,
            checkpoint=str(checkpoint),
            device=device,
            batch_size=batch_size or cfg.eval.batch_size,
            num_workers=cfg.eval.num_workers if num_workers is None else num_workers,
            log_prior=log_prior,
            prior_scale=cfg.eval.prior_scale,
            _fingerprint=fingerprint,
        )

    @property
    def fingerprint(self) -> str:
        if not self._fingerprint:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    @property
    def prototypes(self) -> dict[str, np.ndarray]:
        return {g: p.detach().float().cpu().numpy() for g, p in self.model.prototypes.items()}

    def describe(
        self, features: np.ndarray, prototypes: Mapping[str, np.ndarray] | None = None
    ) -> list[dict[str, Any]]:
        """:func:`describe_features` under the checkpoint's decision rule (SPEC 5 or 8)."""
        return describe_features(
            features,
            self.prototypes if prototypes is None else prototypes,
            self.schema,
            log_prior=self.log_prior,
            scale=self.prior_scale,
        )

    def features(self, paths: list[str | Path] | tuple[str | Path, ...]) -> np.ndarray:
        """``(N, 5, d)`` representations of image files; an unreadable file is an error."""
        images = image_set(paths, self.schema)
        return extract_features(
            self.model,
            images,
            height=self.height,
            width=self.width,
            batch_size=self.batch_size,
            num_workers=min(self.num_workers, max(len(images) // self.batch_size, 0)),
            device=self.device,
        )

    def extract_folder(self, folder: str | Path, **kwargs: Any) -> FeatureSet:
        return extract_folder(
            self.model,
            folder,
            schema=self.schema,
            height=self.height,
            width=self.width,
            checkpoint=self.checkpoint,
            fingerprint=self.fingerprint,
            device=self.device,
            batch_size=kwargs.pop("batch_size", self.batch_size),
            num_workers=kwargs.pop("num_workers", self.num_workers),
            **kwargs,
        )
