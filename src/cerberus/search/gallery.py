"""Queries on a gallery index with the model it was built with (method §5.1): by image (reID), by a
gallery item (reID, the item itself left out), by attributes (APS), and PAR of gallery items.

:class:`Gallery` is what the ``search`` command, the page (:mod:`cerberus.serve`) and Python
callers (:class:`cerberus.search.api.Cerberus`) query; the index (:mod:`cerberus.index`) stores
vectors and the model (:mod:`cerberus.inference`) embeds images, neither knows the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cerberus.errors import CerberusError
from cerberus.features import UNKNOWN
from cerberus.index import GalleryIndex, SearchResult
from cerberus.schema import GROUPS, Schema
from cerberus.scoring import AttributeQuery, parse_attribute_query
from cerberus.search.rows import result_rows
from cerberus.search.verdicts import Verdicts

if TYPE_CHECKING:  # PyTorch is imported only where images are embedded: APS stays fast
    from cerberus.inference import ImageLike, InferenceModel


@dataclass
class Answer:
    """One query's answer.

    ``rows``: :func:`~cerberus.search.rows.result_rows` (reID rows also carry ``same_person``
    and ``calibrated_on``); ``text``: the query's predicted attributes as phrases (image
    queries) or its description (APS); ``description``: the full PAR of an image query
    (:func:`~cerberus.scoring.describe_features`: certainty, weak groups); ``verdicts``: the
    operating point the reID rows were judged at; ``excluded``: a gallery item left out of
    its own results.
    """

    rows: list[dict[str, Any]]
    text: list[str]
    description: dict[str, Any] | None = None
    verdicts: Verdicts | None = None
    excluded: int | None = None
    query: dict[str, Any] = field(default_factory=dict)


def _all_paths(images: Sequence[ImageLike]) -> bool:
    return bool(images) and all(isinstance(x, (str, Path)) for x in images)


class Gallery:
    """A gallery index and (for image queries) the model it was built with.

    Args:
        index: the faiss store (:class:`~cerberus.index.GalleryIndex`).
        net: the model; refused when its fingerprint is not the index's. ``None``: attribute
            search only (no PyTorch needed).
    """

    def __init__(self, index: GalleryIndex, net: InferenceModel | None = None) -> None:
        if net is not None:
            index.check_model(net.fingerprint, net.checkpoint)
        self.index = index
        self.net = net
        self._ids = {p: i for i, p in enumerate(index.paths)}

    @classmethod
    def open(
        cls,
        path: str | Path,
        checkpoint: str | Path | None = None,
        *,
        device: str = "auto",
        model: bool = True,
    ) -> Gallery:
        """Load an index file and the model for image queries: ``checkpoint``, else the one
        the index was built with (``model=False``: no model, attribute search only)."""
        index = GalleryIndex.load(path)
        if not model:
            return cls(index)
        return cls(index, index_model(index, path, checkpoint, device))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def schema(self) -> Schema:
        return self.index.schema

    @property
    def paths(self) -> list[str]:
        return self.index.paths

    def item_of(self, path: str) -> int:
        """The item id of a stored path."""
        return self._ids[path]

    def _model(self) -> InferenceModel:
        if self.net is None:
            raise CerberusError("image queries need the model: open the gallery with a checkpoint")
        return self.net

    def verdicts(self, fpr: float | None = None) -> Verdicts:
        """The operating point reID rows are judged at (see :meth:`Verdicts.of`)."""
        return Verdicts.of(self._model(), fpr)

    # ---- queries

    def by_images(
        self, images: Sequence[ImageLike], k: int = 10, *, fpr: float | None = None
    ) -> list[Answer]:
        """reID: per query image (path, PIL image or array), its top-k rows with verdicts and
        its predicted attributes. Identities and cameras of file queries are read from their
        names when they parse (then ``correct`` is known)."""
        net = self._model()
        verdicts = Verdicts.of(net, fpr)
        images = list(images)
        pids = np.full(len(images), UNKNOWN)
        cams = np.full(len(images), UNKNOWN)
        if _all_paths(images):
            from cerberus.inference import image_set

            queries = image_set(images, net.schema)
            features = net.features_of(queries)
            pids, cams = queries.pids, queries.camids
        else:
            features = net.features_of_images(images)
        said = net.describe(features, self.index.prototypes)
        return [
            Answer(
                rows=verdicts.mark(
                    result_rows(self.index, r, query_pid=int(p), query_camid=int(c))
                ),
                text=d["phrases"],
                description=d,
                verdicts=verdicts,
            )
            for r, d, p, c in zip(self.index.search_features(features, k), said, pids, cams)
        ]

    def by_image(self, image: ImageLike, k: int = 10, *, fpr: float | None = None) -> Answer:
        """reID of one image (see :meth:`by_images`)."""
        return self.by_images([image], k, fpr=fpr)[0]

    def by_item(self, item_id: int, k: int = 10, *, fpr: float | None = None) -> Answer:
        """reID with gallery item ``item_id`` as the query (a clicked result). The item itself
        is left out of its own results (it would be rank 1, score 1.0, "same person")."""
        self.item_path(item_id, must_exist=False)
        net = self._model()
        verdicts = Verdicts.of(net, fpr)
        features = self.item_features([item_id])
        (found,) = self.index.search_features(features, min(k + 1, len(self.index)))
        keep = found.indices != item_id
        result = SearchResult(found.indices[keep][:k], found.scores[keep][:k])
        rows = result_rows(
            self.index,
            result,
            query_pid=int(self.index.pids[item_id]),
            query_camid=int(self.index.camids[item_id]),
        )
        (said,) = net.describe(features, self.index.prototypes)
        return Answer(
            rows=verdicts.mark(rows),
            text=said["phrases"],
            description=said,
            verdicts=verdicts,
            excluded=item_id,
        )

    def by_attributes(self, query: str | Mapping[str, str] | AttributeQuery, k: int = 10) -> Answer:
        """APS: the top-k items for a (partial) description, e.g. ``"gender=female, hat=yes"``
        or ``{"gender": "female"}`` (method §5; no model needed)."""
        if not isinstance(query, AttributeQuery):
            query = parse_attribute_query(query, self.schema)
        found = self.index.search_attributes(query, k)
        rows = result_rows(self.index, found, attribute_query=query)
        text = query.describe(self.schema)
        return Answer(
            rows=rows,
            text=text,
            query={"attributes": dict(zip(query.given, text)), "groups": list(query.groups)},
        )

    # ---- gallery items

    def item_path(self, item_id: int, *, must_exist: bool = True) -> Path:
        """The stored path of item ``item_id``; an error when out of range (or, with
        ``must_exist``, when the file is gone)."""
        n = len(self.index.paths)
        if not 0 <= item_id < n:
            raise CerberusError(f"no gallery item {item_id}: ids run from 0 to {n - 1}")
        path = Path(self.index.paths[item_id])
        if must_exist and not path.is_file():
            raise CerberusError(f"the image of gallery item {item_id} is missing")
        return path

    def item_features(self, ids: Sequence[int]) -> np.ndarray:
        """``(n, 5, d)`` features of gallery items: their vectors read back from the index (the
        parts' cosines ignore its per-part scaling), else (index kinds that keep no vectors)
        their crops embedded again."""
        try:
            vectors = np.stack([self.index.index.reconstruct(int(i)) for i in ids])
            return vectors.reshape(len(ids), len(GROUPS), -1)
        except RuntimeError:
            paths = [self.item_path(int(i)) for i in ids]
            return self._model().features(paths)

    def describe_items(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """PAR of gallery items (:meth:`item_features`, then the model's decision rule)."""
        return self._model().describe(self.item_features(ids), self.index.prototypes)


def index_model(
    index: GalleryIndex, where: str | Path, checkpoint: str | Path | None, device: str
) -> InferenceModel:
    """The model that embeds image queries: ``checkpoint``, else the one the index names."""
    from cerberus.inference import InferenceModel

    ckpt = Path(checkpoint) if checkpoint is not None else Path(index.meta.get("checkpoint") or "")
    if not str(ckpt) or not ckpt.is_file():
        raise CerberusError(
            f"{where}: the checkpoint it was built with ({ckpt}) is not found; give --checkpoint"
        )
    return InferenceModel.from_checkpoint(ckpt, device=device)
