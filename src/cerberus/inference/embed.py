"""The method §5 rules on a trained model: embed crops, search vectors, prototype scores, PAR.

One image's way: :func:`scan_images` / :func:`image_set` (files -> :class:`ImageSet`) ->
:func:`extract_features` (the fused network, ``(N, 5, d)`` representations f^H, f^U, f^L, f^I,
f^C) -> :func:`embed_features` (each part L2-normalised, concatenated, / sqrt(5): the inner
product of two vectors is the mean part cosine, the reID similarity) or
:func:`prototype_scores` -> :func:`predict_sids` / :func:`describe_features` (PAR: the nearest
prototype per group, decoded) and :func:`attribute_query_scores` / :func:`attribute_query_vectors`
(APS: the given groups' prototypes in place of the query's representations).

:class:`InferenceModel` bundles a checkpoint's model with its input size and schema for the
``extract``, ``search``, ``describe`` and ``export`` commands; :func:`extract_folder` turns a
folder of crops into a :class:`~cerberus.inference.features.FeatureSet`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from cerberus.attributes.schema import Schema
from cerberus.attributes.table import AttributeTable
from cerberus.config import Config
from cerberus.data.datasets import FORMATS, ImageDataset, ImageSet, load_image, parse_filename
from cerberus.data.images import open_image
from cerberus.data.transforms import build_transforms
from cerberus.devices import resolve_device
from cerberus.errors import CerberusError
from cerberus.inference.features import UNKNOWN, FeatureSet
from cerberus.inference.loading import load_model, model_fingerprint
from cerberus.inference.scoring import (  # noqa: F401  (re-exported: the method §5 rules on arrays)
    SID_DECISIONS,
    AttributeQuery,
    attribute_query_scores,
    attribute_query_vectors,
    describe_features,
    embed_features,
    l2_normalize,
    parse_attribute_query,
    posterior_scores,
    predict_sids,
    prototype_scores,
    sid_log_prior,
)

logger = logging.getLogger(__name__)

NOT_DECODED = frozenset({"BUFR", "GRIB", "HDF5", "WMF", "MPEG", "EPS"})
"""Formats Pillow recognises but does not decode by itself (stubs, or an outside program)."""


def _image_suffixes() -> tuple[str, ...]:
    """The file name endings of every format Pillow reads (its registered extensions of the
    formats it opens, less :data:`NOT_DECODED`), sorted."""
    Image.init()
    return tuple(
        sorted(
            ext.lower()
            for ext, fmt in Image.registered_extensions().items()
            if fmt in Image.OPEN and fmt not in NOT_DECODED
        )
    )


IMAGE_SUFFIXES = _image_suffixes()
"""What a crop folder's images may end with: every format Pillow reads (.jpg, .png, .gif,
.tif, .webp, .bmp, ...)."""

ImageLike = str | Path | Image.Image | np.ndarray
"""What the in-memory entry points take: a file, a PIL image, or an ``(H, W)`` / ``(H, W, 3)``
array (uint8 0-255, or float 0-1), RGB order."""


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
        model: a :class:`~cerberus.modeling.model.Cerberus` (put in eval mode here).
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
                raise CerberusError(f"{_name_all(errors)}{bad_image_hint}")
            x = batch["image"].to(device, non_blocking=True)
            f = _forward(model, x, amp, flip)
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


def _name_all(problems: list[str], most: int = 5) -> str:
    """Problems joined on one line: the first ``most``, then how many more."""
    more = f"; and {len(problems) - most} more" if len(problems) > most else ""
    return "; ".join(problems[:most]) + more


def _forward(model: nn.Module, x: torch.Tensor, amp, flip: bool) -> torch.Tensor:
    """``(B, 5, d)`` float32 features on the CPU of a normalised batch ``(B, 3, H, W)``."""
    x = x.contiguous(memory_format=torch.channels_last)
    with amp:
        f = model(x)["features"].float()
        if flip:
            f = (f + model(torch.flip(x, dims=[3]))["features"].float()) / 2
    return f.cpu()


def to_pil(image: ImageLike, where: str = "image") -> Image.Image:
    """An :data:`ImageLike` as an RGB PIL image; a file or a PIL image goes through the data
    layer's reader (:func:`~cerberus.data.images.open_image`: EXIF orientation, 16-bit scaling).

    Arrays: ``(H, W)`` grey or ``(H, W, 3)`` / ``(H, W, 4)`` RGB(A), uint8 0-255 or float
    0-1; anything else is a :class:`CerberusError` naming ``where``.
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_dir():
            raise CerberusError(f"{path}: is a folder, not an image")
        if not path.is_file():
            raise CerberusError(f"{path}: image not found")
        return load_image(path)
    if isinstance(image, Image.Image):  # upright and 8-bit, as a file of it would be read
        return open_image(image)
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)) or min(a.shape[:2]) < 1:
            raise CerberusError(f"{where}: an array of shape {a.shape} is not an (H, W, 3) image")
        if a.dtype == np.uint8:
            pass
        elif np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise CerberusError(f"{where}: a float image must hold values in [0, 1]")
            a = np.round(a * 255).astype(np.uint8)
        else:
            raise CerberusError(f"{where}: arrays of {a.dtype} are not images (uint8 or float)")
        return Image.fromarray(np.ascontiguousarray(a)).convert("RGB")
    raise CerberusError(f"{where}: a {type(image).__name__} is not an image (path, PIL, array)")


@torch.no_grad()
def embed_images(
    model: nn.Module,
    images: Sequence[Image.Image],
    *,
    height: int,
    width: int,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``(N, 5, d)`` representations of in-memory RGB images (the test transform of
    :func:`extract_features`, in this process: no files, no workers)."""
    device = torch.device(device)
    transform = build_transforms(height=height, width=width, train=False)
    was_training = model.training
    model.eval()
    model.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = torch.stack([transform(im) for im in images[start : start + batch_size]])
            out.append(_forward(model, x.to(device), amp, False))
    finally:
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
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    paths = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise CerberusError(
            f"{folder}: no images (any format Pillow reads: .jpg, .png, .gif, .tif, .webp ...)"
        )
    skipped = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if skipped:
        logger.warning("%s: %s", folder, skipped_line(skipped))
    return image_set(paths, schema)


def skipped_line(skipped: list[Path]) -> str:
    """One line saying which files a folder scan left out and why: ``"skipped 3 files that
    are not images Pillow reads: 2 .txt, 1 (no suffix) (e.g. notes.txt)"``."""
    kinds = Counter(p.suffix.lower() or "(no suffix)" for p in skipped)
    counts = ", ".join(f"{n} {k}" for k, n in kinds.most_common(8))
    more = ", ..." if len(kinds) > 8 else ""
    many = "file that is not an image" if len(skipped) == 1 else "files that are not images"
    return (
        f"skipped {len(skipped)} {many} Pillow reads: {counts}{more} (e.g. {skipped[0].name})"
    )


def image_set(paths: list[str | Path] | tuple[str | Path, ...], schema: Schema) -> ImageSet:
    """An :class:`ImageSet` of given files; identity and camera parsed from names when possible."""
    paths = [Path(p) for p in paths]
    missing = [
        f"{p}: is a folder, not an image" if p.is_dir() else f"{p}: image not found"
        for p in paths
        if not p.is_file()
    ]
    if missing:
        raise CerberusError(_name_all(missing))
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


def extract_folder(
    model: nn.Module,
    folder: str | Path,
    *,
    schema: Schema,
    attributes: AttributeTable | None = None,
    **kwargs: Any,
) -> FeatureSet:
    """Features of every crop under ``folder``; unreadable files stop or are skipped (logged).

    ``attributes`` (e.g. from the dataset's ``.mat`` file) gives each identity's attribute
    values, stored as ground truth for figures and evaluation. Other arguments: as
    :func:`extract_image_set`.
    """
    images = scan_images(Path(folder).resolve(), schema)
    if attributes is not None:
        images = ImageSet(
            images.paths,
            images.pids,
            images.camids,
            images.labels,
            attributes.lookup(images.pids),
            schema,
        )
    return extract_image_set(model, images, desc=Path(folder).name or "extract", **kwargs)


def extract_image_set(
    model: nn.Module,
    images: ImageSet,
    *,
    height: int,
    width: int,
    checkpoint: str = "",
    fingerprint: str | None = None,
    batch_size: int = 128,
    num_workers: int = 2,
    device: str = "cpu",
    skip_bad: bool = False,
    progress: bool = False,
    desc: str = "extract",
) -> FeatureSet:
    """Features of an :class:`ImageSet` (a folder's crops, or a split of a table dataset) with
    its identities, cameras and attribute values; unreadable files stop or are skipped (logged).

    ``fingerprint`` is that of the trained weights when ``model`` is a BN-folded copy
    (:func:`model_fingerprint` otherwise). A camera ``-1`` (a dataset without cameras) is
    stored as :data:`~cerberus.inference.features.UNKNOWN`. Image paths and the checkpoint path are
    stored absolute (resolved now), so the file is usable from any working directory.
    """
    feats = extract_features(
        model,
        images,
        height=height,
        width=width,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        desc=desc,
        on_bad_image="skip" if skip_bad else "stop",
        bad_image_hint=" (skip_bad / extract --skip-bad leaves such files out)",
    )
    ok = np.isfinite(feats).all(axis=(1, 2))
    if not ok.all():
        logger.warning("%s: skipped %d unreadable images of %d", desc, (~ok).sum(), len(ok))
        if not ok.any():
            raise CerberusError(f"{desc}: no readable image")
    keep = np.nonzero(ok)[0]
    camids = np.where(images.camids == -1, UNKNOWN, images.camids)
    return FeatureSet(
        features=feats[keep],
        paths=[str(Path(images.paths[i]).absolute()) for i in keep],
        pids=images.pids[keep],
        camids=camids[keep],
        values=images.values[keep],
        prototypes={g: p.detach().float().cpu().numpy() for g, p in model.prototypes.items()},
        meta={
            "schema": images.schema.to_dict(),
            "fingerprint": fingerprint or model_fingerprint(model),
            "checkpoint": str(Path(checkpoint).resolve()) if str(checkpoint) else "",
            "height": height,
            "width": width,
            "dim": int(feats.shape[-1]),
            **({"camera_labels": list(images.camera_labels)} if images.camera_labels else {}),
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
    """SID log priors when the checkpoint's ``eval.decision`` is ``"posterior"`` (method §8.2)."""
    prior_scale: float = 10.0
    calibration: dict[str, Any] | None = None
    """The verification operating points ``cerberus calibrate`` stored for these weights."""
    config: Config | None = None
    """The resolved training config the weights came with."""
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
        """Load a checkpoint or a weights pair (``X.safetensors`` / ``X.json``) for inference
        (:func:`~cerberus.inference.loading.load_model`).

        ``fuse_bn`` folds BatchNorm into the convolutions
        (:func:`~cerberus.modeling.model.fuse_batchnorm`: same features, faster). A stored
        calibration is kept when it was made with these weights (same fingerprint).
        """
        device = str(resolve_device(device, "--device"))
        loaded = load_model(checkpoint, device=device, fuse_bn=fuse_bn)
        cfg = loaded.config
        log_prior = None
        if cfg.eval.decision == "posterior":
            counts = loaded.meta.get("sid_counts")
            if counts is None:
                logger.warning(
                    "%s: eval.decision=posterior but the checkpoint has no SID counts; "
                    "PAR uses the nearest prototype",
                    checkpoint,
                )
            else:
                log_prior = sid_log_prior({g: np.asarray(c) for g, c in counts.items()})
        return cls(
            model=loaded.model,
            schema=loaded.schema,
            calibration=loaded.calibration,
            config=cfg,
            height=cfg.data.height,
            width=cfg.data.width,
            checkpoint=str(checkpoint),
            device=device,
            batch_size=batch_size or cfg.eval.batch_size,
            num_workers=cfg.eval.num_workers if num_workers is None else num_workers,
            log_prior=log_prior,
            prior_scale=cfg.eval.prior_scale,
            _fingerprint=loaded.fingerprint,
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
        """:func:`describe_features` under the checkpoint's decision rule (method §5 or §8)."""
        return describe_features(
            features,
            self.prototypes if prototypes is None else prototypes,
            self.schema,
            log_prior=self.log_prior,
            scale=self.prior_scale,
        )

    def features(self, paths: list[str | Path] | tuple[str | Path, ...]) -> np.ndarray:
        """``(N, 5, d)`` representations of image files; an unreadable file is an error."""
        return self.features_of(image_set(paths, self.schema))

    def features_of_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(N, 5, d)`` representations of files, PIL images or arrays (:func:`to_pil`).

        An error names every missing or unreadable file (of a batch), in one line."""
        images = list(images)
        if images and all(isinstance(x, (str, Path)) for x in images):
            return self.features(images)
        pils = [to_pil(x, f"image {i}") for i, x in enumerate(images)]
        return embed_images(
            self.model,
            pils,
            height=self.height,
            width=self.width,
            batch_size=self.batch_size,
            device=self.device,
        )

    def features_of(self, images: ImageSet) -> np.ndarray:
        """``(N, 5, d)`` representations of an :class:`ImageSet` (see :meth:`features`)."""
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
            self.model, folder, schema=self.schema, **self._extract_options(kwargs)
        )

    def extract_images(self, images: ImageSet, **kwargs: Any) -> FeatureSet:
        """:func:`extract_image_set` with this model (e.g. a split of a table dataset)."""
        if images.schema.to_dict() != self.schema.to_dict():
            raise CerberusError(
                f"{self.checkpoint}: model trained with the {self.schema.name} schema, the images "
                f"follow {images.schema.name}"
            )
        return extract_image_set(self.model, images, **self._extract_options(kwargs))

    def _extract_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(
            height=self.height,
            width=self.width,
            checkpoint=self.checkpoint,
            fingerprint=self.fingerprint,
            device=self.device,
            batch_size=kwargs.pop("batch_size", self.batch_size),
            num_workers=kwargs.pop("num_workers", self.num_workers),
            **kwargs,
        )
