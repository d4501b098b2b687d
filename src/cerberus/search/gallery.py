"""Queries on a gallery store with the model it was built with (method §5.1, §9.2): by image
(reID), by a gallery item (reID, the item itself left out), by attributes (APS), PAR of
gallery items, each filtered by camera / time / source and answered per crop or per track;
and the timeline of a person (:mod:`cerberus.search.timeline`).

:class:`Gallery` is what the ``search`` command, the page (:mod:`cerberus.web.app`) and Python
callers (:class:`cerberus.search.api.Cerberus`) query; the store (:mod:`cerberus.store`: a
gallery folder, a Milvus collection or a read-only ``.npz`` index) keeps vectors and metadata
and the model (:mod:`cerberus.inference.embed`) embeds images, neither knows the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.attributes.schema_files import schema_from_meta
from cerberus.errors import CerberusError
from cerberus.inference.scoring import (
    AttributeQuery,
    attribute_query_vectors,
    embed_features,
    parse_attribute_query,
    value_phrases,
)
from cerberus.search.rows import iso_time, result_rows
from cerberus.search.tracks import Top, check_track_score, list_tracks, top_tracks, track_items
from cerberus.search.verdicts import Verdicts
from cerberus.store import (
    UNKNOWN,
    Filter,
    GalleryInfo,
    GalleryStore,
    Hits,
    StoreError,
    check_same_model,
    info_of_model,
    make_filter,
    open_store,
)
from cerberus.store.npz import NoVectors, NpzStore

if TYPE_CHECKING:  # PyTorch is imported only where images are embedded: APS stays fast
    from cerberus.inference.embed import ImageLike, InferenceModel


@dataclass
class Answer:
    """One query's answer.

    ``rows``: :func:`~cerberus.search.rows.result_rows` (reID rows also carry ``same_person``
    and ``calibrated_on``; per-track rows ``span``, ``count`` and ``crop_score``); ``text``:
    the query's predicted attributes as phrases (image queries) or its description (APS);
    ``description``: the full PAR of an image query (certainty, weak groups); ``verdicts``:
    the operating point the reID rows were judged at; ``excluded``: a gallery item left out
    of its own results.
    """

    rows: list[dict[str, Any]]
    text: list[str]
    description: dict[str, Any] | None = None
    verdicts: Verdicts | None = None
    excluded: int | None = None
    query: dict[str, Any] = field(default_factory=dict)


def _all_paths(images: Sequence[ImageLike]) -> bool:
    return bool(images) and all(isinstance(x, (str, Path)) for x in images)


def merged(hits: list[Hits], m: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-m of several queries' hits, each item at its best score (ties: smaller id):
    the one merge of an attribute query's SID combinations (method §5.2). It is exact: an item
    of the true top-m is in the top-m of the combination that gives its best score."""
    best: dict[int, float] = {}
    for h in hits:
        for i, s in zip(h.ids, h.scores):
            if float(s) > best.get(int(i), -np.inf):
                best[int(i)] = float(s)
    order = sorted(best, key=lambda i: (-best[i], i))[:m]
    return np.asarray(order, np.int64), np.asarray([best[i] for i in order], np.float32)


class Gallery:
    """A gallery store and (for image queries) the model it was built with.

    Args:
        store: a :class:`~cerberus.store.GalleryStore` (an ``.npz`` index file is one,
            read-only: :class:`~cerberus.store.npz.NpzStore`).
        net: the model; refused when it is not the gallery's
            (:func:`~cerberus.store.check_same_model`). ``None``: attribute search only (no
            PyTorch needed).
    """

    def __init__(self, store: GalleryStore, net: InferenceModel | None = None) -> None:
        self.store = store
        if net is not None:
            check_same_model(store, info_of_model(net), str(net.checkpoint))
        self.net = net
        self._schema: Schema | None = None

    @classmethod
    def open(
        cls,
        target: str | Path,
        checkpoint: str | Path | None = None,
        *,
        device: str = "auto",
        model: bool = True,
    ) -> Gallery:
        """Open a gallery (a folder, a Milvus URI or an ``.npz`` index) and the model for
        image queries: ``checkpoint``, else the one the gallery was built with (``model=False``:
        no model, attribute search only)."""
        store = open_store(target)
        if not model:
            return cls(store)
        return cls(store, index_model(store.info, target, checkpoint, device))

    def __len__(self) -> int:
        return self.store.count()

    @property
    def info(self) -> GalleryInfo:
        return self.store.info

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = schema_from_meta(self.store.info.schema, "gallery")
        return self._schema

    @property
    def prototypes(self) -> dict[str, np.ndarray]:
        return self.store.info.prototypes

    @property
    def read_only(self) -> bool:
        """Whether the gallery is an ``.npz`` index file (it does not grow)."""
        return isinstance(self.store, NpzStore)

    @property
    def paths(self) -> list[str]:
        """Every item's stored path, in id order (reads the whole gallery's metadata)."""
        ids = np.sort(self.store.ids())
        return self.store.get(ids, vectors=False).path if len(ids) else []

    def where(
        self,
        *,
        cameras: Iterable[str] | None = None,
        after: datetime | str | float | None = None,
        before: datetime | str | float | None = None,
        sources: Iterable[str] | None = None,
        labels: tuple[str, str] = ("--after", "--before"),
    ) -> Filter | None:
        """A filter checked against this gallery (its camera and source names); ``None`` when
        nothing is given. ``labels``: how errors name the time window's two ends (the CLI's
        options by default; the page's API says ``after`` / ``before``)."""
        if cameras is None and after is None and before is None and sources is None:
            return None
        return make_filter(
            cameras=cameras,
            after=after,
            before=before,
            sources=sources,
            known_cameras=self.store.cameras() if cameras is not None else None,
            known_sources=[s.name for s in self.store.sources()] if sources is not None else None,
            labels=labels,
        )

    def _model(self) -> InferenceModel:
        if self.net is None:
            raise CerberusError("image queries need the model: open the gallery with a checkpoint")
        return self.net

    def verdicts(self, fpr: float | None = None) -> Verdicts:
        """The operating point reID rows are judged at (see :meth:`Verdicts.of`)."""
        return Verdicts.of(self._model(), fpr)

    # ---- ranking

    def vector_top(
        self,
        vectors: np.ndarray,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        kind: str = "photo",
    ) -> Top:
        """``top(m, where)`` of query vectors ``(C, D)``: the top-m items by their best inner
        product over the C vectors (one vector: reID; several: the SID combinations of an
        attribute query, :func:`merged`). ``exact``: never the approximate index; ``nprobe``:
        the cells it probes (default: the setting measured on the gallery for the queries'
        ``kind``, ``"photo"`` or ``"description"``, :data:`~cerberus.store.QUERY_KINDS`)."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)

        def top(m: int, where: Filter | None) -> tuple[np.ndarray, np.ndarray]:
            hits = self.store.search(vectors, m, where, exact=exact, nprobe=nprobe, kind=kind)
            if len(hits) == 1:
                return hits[0].ids.astype(np.int64), hits[0].scores
            return merged(hits, m)

        return top

    def ranked(
        self,
        top: Top,
        k: int,
        *,
        where: Filter | None = None,
        per_track: bool = False,
        track_score: str = "max",
        exclude: int | None = None,
        query_pid: int = UNKNOWN,
        attribute_query: AttributeQuery | None = None,
    ) -> list[dict[str, Any]]:
        """The rows of a ranked list: per crop (the top-k crops) or per track (the top-k
        groups of :func:`~cerberus.search.tracks.top_tracks`, each as its best crop's row with
        the track's ``score``, its best crop's ``crop_score``, ``span`` (first and last time of
        its crops passing ``where``, ISO-8601 UTC) and ``count``)."""
        check_track_score(track_score)
        if not per_track:
            ids, scores = top(k + (exclude is not None), where)
            if exclude is not None:
                keep = ids != exclude
                ids, scores = ids[keep], scores[keep]
            found = Hits(ids[:k], scores[:k])
            return result_rows(
                self.store, found, query_pid=query_pid, attribute_query=attribute_query
            )
        groups = top_tracks(self.store, top, k, where=where, how=track_score, exclude=exclude)
        found = Hits(
            np.asarray([g.best for g in groups], np.int64),
            np.asarray([g.score for g in groups], np.float32),
        )
        rows = result_rows(self.store, found, query_pid=query_pid, attribute_query=attribute_query)
        members = track_items(self.store, [g.key for g in groups], where)
        for row, g in zip(rows, groups):
            items = members[g.key]
            if exclude is not None:
                items = items.take(np.flatnonzero(items.ids != exclude))
            t = items.timestamp[~np.isnan(items.timestamp)]
            row["score"] = g.score
            row["crop_score"] = g.best_score
            row["count"] = len(items)
            row["span"] = [iso_time(t.min()), iso_time(t.max())] if len(t) else None
        return rows

    # ---- queries

    def by_images(
        self,
        images: Sequence[ImageLike],
        k: int = 10,
        *,
        fpr: float | None = None,
        where: Filter | None = None,
        per_track: bool = False,
        track_score: str = "max",
        exact: bool = False,
        nprobe: int | None = None,
    ) -> list[Answer]:
        """reID: per query image (path, PIL image or array), its top-k rows (crops passing
        ``where``; or tracks, ``per_track``) with verdicts and its predicted attributes.
        Identities of file queries are read from their names when they parse (then
        ``correct`` is known). ``exact`` / ``nprobe``: see :meth:`vector_top`."""
        net = self._model()
        verdicts = Verdicts.of(net, fpr)
        images = list(images)
        pids = np.full(len(images), UNKNOWN)
        if _all_paths(images):
            from cerberus.inference.embed import image_set

            queries = image_set(images, net.schema)
            features = net.features_of(queries)
            pids = queries.pids
        else:
            features = net.features_of_images(images)
        said = net.describe(features, self.prototypes)
        vectors = embed_features(features)
        return [
            Answer(
                rows=verdicts.mark(
                    self.ranked(
                        self.vector_top(v, exact=exact, nprobe=nprobe),
                        k,
                        where=where,
                        per_track=per_track,
                        track_score=track_score,
                        query_pid=int(p),
                    )
                ),
                text=d["phrases"],
                description=d,
                verdicts=verdicts,
            )
            for v, d, p in zip(vectors, said, pids)
        ]

    def by_image(self, image: ImageLike, k: int = 10, **options: Any) -> Answer:
        """reID of one image (see :meth:`by_images`; same options)."""
        return self.by_images([image], k, **options)[0]

    def by_item(
        self,
        item_id: int,
        k: int = 10,
        *,
        fpr: float | None = None,
        where: Filter | None = None,
        per_track: bool = False,
        track_score: str = "max",
        exact: bool = False,
        nprobe: int | None = None,
    ) -> Answer:
        """reID with gallery item ``item_id`` as the query (a clicked result). The item itself
        is left out of its own results (it would be rank 1, score 1.0, "same person")."""
        item = self.item(item_id)
        net = self._model()
        verdicts = Verdicts.of(net, fpr)
        features = self.item_features([item_id])
        rows = self.ranked(
            self.vector_top(embed_features(features), exact=exact, nprobe=nprobe),
            k,
            where=where,
            per_track=per_track,
            track_score=track_score,
            exclude=item_id,
            query_pid=int(item["pid"]) if item["pid"] is not None else UNKNOWN,
        )
        (said,) = net.describe(features, self.prototypes)
        return Answer(
            rows=verdicts.mark(rows),
            text=said["phrases"],
            description=said,
            verdicts=verdicts,
            excluded=item_id,
        )

    def by_attributes(
        self,
        query: str | Mapping[str, str] | AttributeQuery,
        k: int = 10,
        *,
        where: Filter | None = None,
        per_track: bool = False,
        track_score: str = "max",
        exact: bool = False,
        nprobe: int | None = None,
    ) -> Answer:
        """APS: the top-k items (or tracks) for a (partial) description, e.g.
        ``"gender=female, hat=yes"`` or ``{"gender": "female"}`` (method §5; no model
        needed)."""
        if not isinstance(query, AttributeQuery):
            query = parse_attribute_query(query, self.schema)
        vectors = attribute_query_vectors(query, self.prototypes)
        rows = self.ranked(
            self.vector_top(vectors, exact=exact, nprobe=nprobe, kind="description"),
            k,
            where=where,
            per_track=per_track,
            track_score=track_score,
            attribute_query=query,
        )
        text = query.describe(self.schema)
        return Answer(
            rows=rows,
            text=text,
            query={"attributes": dict(zip(query.given, text)), "groups": list(query.groups)},
        )

    def timeline(self, item_id: int, **options: Any) -> dict[str, Any]:
        """Where else was this person? :func:`cerberus.search.timeline.timeline`."""
        from cerberus.search.timeline import timeline

        return timeline(self, item_id, **options)

    def summary(self) -> dict[str, Any]:
        """What ``cerberus gallery info`` shows (JSON-able): item count, items per camera,
        sources (name, items, complete), the time span (ISO-8601 UTC, ``None`` when no item has
        a time), the model (checkpoint, fingerprint), the vector dimension and the approximate
        index with its measured recall (:meth:`index_facts`)."""
        info = self.store.info
        ids = self.store.ids()
        t = self.store.get(ids, vectors=False).timestamp if len(ids) else np.zeros(0)
        t = t[~np.isnan(t)]
        return {
            "count": len(ids),
            "cameras": {
                c: self.store.count(Filter(cameras=frozenset({c}))) for c in self.store.cameras()
            },
            "sources": [
                {"name": s.name, "count": s.count, "complete": s.complete}
                for s in self.store.sources()
            ],
            "span": [iso_time(float(t.min())), iso_time(float(t.max()))] if len(t) else None,
            "undated": int(len(ids) - len(t)),
            "checkpoint": info.checkpoint,
            "fingerprint": info.fingerprint,
            "dim": info.dim,
            "schema": self.schema.name,
            "read_only": self.read_only,
            "index": self.index_facts(),
        }

    def index_facts(self) -> dict[str, Any] | None:
        """The store's approximate index and the recall measured on this gallery when it was
        built (``None``: no index, searches are exact; a local gallery:
        :meth:`~cerberus.store.local.LocalStore.index_facts`)."""
        facts = getattr(self.store, "index_facts", None)
        return facts() if callable(facts) else None

    # ---- gallery items

    def item(self, item_id: int) -> dict[str, Any]:
        """What the gallery knows of item ``item_id`` (:func:`~cerberus.search.rows.item_row`);
        an error naming the id when there is none."""
        from cerberus.search.rows import item_row

        try:
            items = self.store.get([int(item_id)], vectors=False)
        except StoreError:
            raise CerberusError(self._no_item(int(item_id))) from None
        return item_row(items, 0, self.info.meta.get("camera_labels", ()) or ())

    def _no_item(self, item_id: int) -> str:
        """Why there is no item ``item_id``, in one line (the CLI's and the page's): the ids
        the gallery holds run from its first to its last, with gaps where crops were removed,
        so the count alone does not bound them."""
        ids = self.store.ids()
        if not len(ids):
            return f"no gallery item {item_id}: the gallery is empty"
        first, last = int(ids[0]), int(ids[-1])
        span = f"ids {first} .. {last}" if first != last else f"id {first}"
        held = f"the gallery's {len(ids)} items have {span}"
        if first < item_id < last:
            return (
                f"no gallery item {item_id}: it was removed ({held}; removed crops leave gaps)"
            )
        return f"no gallery item {item_id} ({held})"

    def item_path(self, item_id: int, *, must_exist: bool = True) -> Path:
        """The stored path of item ``item_id``; an error when there is no such item (or, with
        ``must_exist``, when the file is gone)."""
        path = Path(self.item(item_id)["path"])
        if must_exist and not path.is_file():
            raise CerberusError(f"the image of gallery item {item_id} is missing")
        return path

    def item_frame(self, item_id: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB: the source frame item ``item_id`` was cropped from, with its
        box drawn (a crop from footage: its video or MOTChallenge folder and frame number are
        stored). An error naming the item when it has no frame or its source is gone."""
        from PIL import Image, ImageDraw

        from cerberus.footage.video import read_frame, source_location

        row = self.item(item_id)
        if row["frame"] is None or not row["source"]:
            raise CerberusError(f"gallery item {item_id} has no source frame (not from footage)")
        location = source_location(row["source"])  # <path>#<camera>: the path
        if not Path(location).exists():
            raise CerberusError(f"the source of gallery item {item_id} is missing")
        image = Image.fromarray(read_frame(location, int(row["frame"])))
        if row["box"] is not None:
            width = max(2, round(min(image.size) / 150))
            ImageDraw.Draw(image).rectangle(row["box"], outline=(255, 40, 40), width=width)
        return np.asarray(image)

    # ---- tracks

    def source_name(self, source: str) -> str:
        """The gallery's name of ``source``: as given, or a file / folder given by a relative
        path made absolute (how ingestion names it); an error naming it when the gallery has
        no such source."""
        names = {s.name for s in self.store.sources()}
        if source in names:
            return source
        resolved = str(Path(source).expanduser().resolve())
        if resolved in names:
            return resolved
        raise CerberusError(
            f"source {source}: not in this gallery (its sources: `cerberus gallery info`)"
        )

    def tracks(self, source: str | None = None, track: int | None = None) -> list[dict[str, Any]]:
        """The gallery's tracks (of one ``source``, one ``track``) with their crops and paths
        (:func:`~cerberus.search.tracks.list_tracks`)."""
        if source is not None:
            source = self.source_name(source)
        return list_tracks(self.store, source, track)

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """``(n, D)`` the stored vectors of gallery items (crops embedded again where the
        store keeps none: an ``.npz`` of an index kind that keeps no vectors)."""
        try:
            return self.store.get(np.asarray(ids, np.int64), vectors=True).vectors
        except NoVectors:
            paths = [self.item_path(int(i)) for i in ids]
            return embed_features(self._model().features(paths))

    def item_features(self, ids: Sequence[int]) -> np.ndarray:
        """``(n, 5, d)`` features of gallery items: their stored vectors (the parts' cosines
        ignore the per-part scaling), see :meth:`item_vectors`."""
        return self.item_vectors(ids).reshape(len(ids), len(GROUPS), -1)

    def describe_items(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """PAR of gallery items (:meth:`item_features`, then the model's decision rule)."""
        return self._model().describe(self.item_features(ids), self.prototypes)

    def item_phrases(
        self,
        ids: Sequence[int],
        describe: Callable[[list[int]], list[dict[str, Any]]] | None = None,
    ) -> dict[int, list[str]]:
        """The predicted attributes of gallery items as phrases: what the store keeps (written
        by ingestion, ``Items.predicted``) where an item has them, else described now by
        ``describe`` (default :meth:`describe_items`; the one place crops are described on
        demand, e.g. a gallery made by ``cerberus index`` from a folder)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        items = self.store.get(np.asarray(ids, np.int64), vectors=False)
        said: dict[int, list[str]] = {}
        todo = []
        for j, i in enumerate(ids):
            predicted = items.predicted[j]
            if len(predicted) and (predicted >= 0).all():
                said[i] = value_phrases(self.schema, predicted)
            else:
                todo.append(i)
        if todo:
            described = (describe or self.describe_items)(todo)
            said.update({i: d["phrases"] for i, d in zip(todo, described)})
        return said


def index_model(
    gallery: GalleryInfo,
    where: str | Path,
    checkpoint: str | Path | None,
    device: str,
) -> InferenceModel:
    """The model that embeds image queries: ``checkpoint``, else the one the gallery names."""
    from cerberus.inference.embed import InferenceModel

    named = gallery.checkpoint
    if checkpoint is None and not named:
        raise CerberusError(f"{where}: no checkpoint is recorded with it; give --checkpoint")
    ckpt = Path(checkpoint) if checkpoint is not None else Path(named)
    if not ckpt.is_file():
        raise CerberusError(
            f"{where}: the checkpoint it was built with ({ckpt}) is not found; give --checkpoint"
        )
    return InferenceModel.from_checkpoint(ckpt, device=device)
