"""The Python API: a trained model as Python callers use it (method §5; README: Python API)::

    import cerberus
    model = cerberus.load("runs/demo/last.pt", device="cpu")  # or a weights pair X.safetensors
    vectors = model.embed(["a.jpg", pil_image, array])  # (N, D): inner product = similarity
    model.describe(["a.jpg"])[0]["phrases"]  # PAR, with per-group certainty
    model.verify("a.jpg", "b.jpg")["same_person"]  # at the calibrated threshold
    gallery = model.index("crops/", out="gallery.npz")  # or model.open_gallery(path)
    gallery.by_image("a.jpg", k=5).rows  # reID
    gallery.by_attributes("gender=female, upper.color=red").rows  # APS
    grows = model.index("cam2/", gallery="galleries/shop", camera="c2", start="...+01:00")
    where = grows.where(cameras=["c2"], after="2026-11-30T14:00+01:00")  # method §9.2
    grows.by_image("a.jpg", where=where, per_track=True).rows
    grows.timeline(item_id)  # where else was this person?

Everything goes through the search layer (:class:`~cerberus.search.gallery.Gallery`), as the
command line and the page do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.errors import CerberusError
from cerberus.inference.scoring import embed_features
from cerberus.search.adding import add_features
from cerberus.search.gallery import Gallery
from cerberus.search.verdicts import Verdicts
from cerberus.store import open_store
from cerberus.store.npz import NpzStore

if TYPE_CHECKING:
    from cerberus.inference.embed import ImageLike, InferenceModel


class Cerberus:
    """A trained model: embed, describe and compare images; build or open a gallery.

    Images are paths, PIL images or ``(H, W, 3)`` arrays (uint8, or float in [0, 1]), RGB.
    Make one with :meth:`load` (or :func:`cerberus.load`).
    """

    def __init__(self, net: InferenceModel) -> None:
        self.net = net

    @classmethod
    def load(
        cls, checkpoint: str | Path, *, device: str = "auto", batch_size: int | None = None
    ) -> Cerberus:
        """A checkpoint (``last.pt``) or a weights pair (``X.safetensors`` / ``X.json``)."""
        from cerberus.inference.embed import InferenceModel

        return cls(
            InferenceModel.from_checkpoint(
                checkpoint, device=device, batch_size=batch_size, num_workers=0
            )
        )

    def __repr__(self) -> str:
        return (
            f"Cerberus({self.net.checkpoint!r}, schema={self.schema.name}, "
            f"input={self.net.height}x{self.net.width}, device={self.net.device})"
        )

    @property
    def schema(self) -> Schema:
        return self.net.schema

    @property
    def calibration(self) -> dict[str, Any] | None:
        """What ``cerberus calibrate`` stored for these weights, or ``None``."""
        return self.net.calibration

    def features(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(N, 5, d)`` part representations f^H, f^U, f^L, f^I, f^C (not normalised)."""
        return self.net.features_of_images(_many(images))

    def embed(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(N, 5 d)`` float32 retrieval vectors: each part L2-normalised, / sqrt(5); the
        inner product of two is the reID similarity (the mean part cosine)."""
        return embed_features(self.features(images))

    def describe(self, images: Sequence[ImageLike]) -> list[dict[str, Any]]:
        """PAR per image: ``attributes``, ``phrases``, ``confidence`` (cosine), ``certainty``
        (probability of the chosen SID per group) and ``weak`` (groups below 0.5)."""
        return self.net.describe(self.features(images))

    def similarity(self, a: ImageLike, b: ImageLike) -> float:
        """The reID similarity of two images (mean part cosine, in [-1, 1])."""
        va, vb = self.embed([a, b]).astype(np.float64)
        return float(va @ vb)

    def verify(self, a: ImageLike, b: ImageLike, *, fpr: float | None = None) -> dict[str, Any]:
        """Same person? ``similarity``, ``same_person`` (``None`` if uncalibrated),
        ``operating_point``, ``calibrated_on`` and ``text`` (the threshold in words)."""
        return verify(self.net, a, b, fpr=fpr)

    def index(
        self,
        images: str | Path | Sequence[str | Path],
        *,
        out: str | Path | None = None,
        kind: str = "flat",
        skip_bad: bool = False,
        gallery: str | Path | None = None,
        camera: str | None = None,
        start: Any = None,
        replace: bool = False,
    ) -> Gallery:
        """Embed a folder of crops (or a list of files) and index them; ``out``: also save the
        index there (``.npz``, for :meth:`open_gallery` and ``cerberus serve``).

        ``gallery``: instead, add them to a gallery that grows (a folder, created when missing,
        or a Milvus URI; method §9.1), with ``camera`` for crops whose names do not tell it and
        ``start`` (an aware time or ISO-8601 with a zone) as their time; the same folder twice
        is refused unless ``replace``. Returns the whole gallery."""
        if isinstance(images, (str, Path)):
            feats = self.net.extract_folder(images, skip_bad=skip_bad)
        else:
            from cerberus.inference.embed import image_set

            feats = self.net.extract_images(image_set(list(images), self.schema), skip_bad=skip_bad)
        if gallery is not None:
            if out is not None:
                raise CerberusError("give one of out (an index file) or gallery (a gallery)")
            store, _ = add_features(gallery, feats, camera=camera, start=start, replace=replace)
            return Gallery(store, self.net)
        index = NpzStore.build(feats, kind=kind)
        if out is not None:
            index.save(out)
        return Gallery(index, self.net)

    def open_gallery(self, path: str | Path) -> Gallery:
        """A gallery built with this model: an ``.npz`` index file (read-only), a gallery
        folder or a Milvus URI (``cerberus index``, :meth:`index`)."""
        return Gallery(open_store(path), self.net)


def load(checkpoint: str | Path, *, device: str = "auto") -> Cerberus:
    """:meth:`Cerberus.load`: a checkpoint or weights pair, ready for Python calls."""
    return Cerberus.load(checkpoint, device=device)


def _many(images: Sequence[ImageLike]) -> list[ImageLike]:
    if isinstance(images, (str, Path, np.ndarray)) or hasattr(images, "convert"):
        raise CerberusError("give a list of images (one image: [image])")
    return list(images)


def verify(
    net: InferenceModel, a: ImageLike, b: ImageLike, *, fpr: float | None = None
) -> dict[str, Any]:
    """Same person? The similarity of two images against the model's calibrated threshold."""
    va, vb = embed_features(net.features_of_images([a, b])).astype(np.float64)
    similarity = float(va @ vb)
    verdicts = Verdicts.of(net, fpr)
    return {
        "similarity": similarity,
        "same_person": verdicts.same(similarity),
        "operating_point": verdicts.point,
        "calibrated_on": verdicts.calibrated_on,
        "text": verdicts.text,
    }
