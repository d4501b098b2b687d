"""The search service behind ``cerberus serve`` (:mod:`cerberus.web.app`'s routes call it): the
model and the gallery (:class:`cerberus.search.Gallery`), the lock that serialises model calls,
and the rows the page shows (no server paths)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from cerberus.attributes.schema import GROUP_NAMES, Schema
from cerberus.errors import CerberusError
from cerberus.search import Answer, Gallery
from cerberus.web.images import (
    NotServed,
    PixelBudget,
    check_served_path,
    image_folders,
    read_served,
    served_image,
)
from cerberus.web.uploads import BadRequest, Limits, decoded

logger = logging.getLogger(__name__)

MAX_K = 100
"""The most results one search returns."""

MAX_ID = 2**63 - 1
"""The largest item id a gallery can hold (a signed 64-bit integer)."""

FIELD_NAMES = ("after", "before")
"""How the page's API names the time window's fields in its errors (the CLI says --after)."""

_PATH = re.compile(
    r"(?<![\w.~:/\\-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"(),;:]+[/\\])+([^\s/\\'\"(),;:]*)"
)


def no_paths(text: str) -> str:
    """``text`` with every absolute path (two folders deep or more) cut to its last part:
    ``"/srv/mot/img1/000001.jpg not found"`` -> ``"000001.jpg not found"``; the API's own
    routes (``/api/...``, ``/static/...``) are kept."""

    def cut(match: re.Match) -> str:
        whole = match.group(0)
        if whole.startswith(("/api/", "/static/")):
            return whole
        return match.group(1) or whole.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]

    return _PATH.sub(cut, text)


def check_id(item_id: int) -> None:
    """404 for an id no gallery can hold (negative, or 2^63 and over), named in at most 40
    characters."""
    if not 0 <= item_id <= MAX_ID:
        text = str(item_id)
        text = text if len(text) <= 40 else text[:39] + "…"
        raise BadRequest(f"no gallery item {text} (ids are 0 .. 2^63 - 1)", 404)


class SearchService:
    """The search layer's :class:`~cerberus.search.Gallery`, with what the routes need of it.

    Model calls are serialised by a lock (one forward pass at a time); attribute search and
    thumbnails need no model and run alongside.
    """

    def __init__(self, gallery: Gallery, limits: Limits) -> None:
        if gallery.net is None:
            raise CerberusError("the server needs the model the index was built with")
        self.search = gallery
        self.net = gallery.net
        self.limits = limits
        self.schema: Schema = gallery.schema
        self._model_lock = threading.Lock()
        self._said: dict[int, dict[str, Any]] = {}
        self._said_lock = threading.Lock()
        self.budget = PixelBudget(2 * limits.max_pixels)
        self._missing_said = False

    # ---- queries

    def options(
        self,
        cameras: list[str] | None = None,
        after: str | None = None,
        before: str | None = None,
        per_track: bool = False,
        track_score: str = "max",
        exact: bool = False,
        nprobe: int | None = None,
    ) -> dict[str, Any]:
        """A search's filter (checked against the gallery's cameras now), grouping and how the
        store searches (``exact``, ``nprobe``); empty fields (``""``) are not given."""
        cameras = [c for c in cameras or [] if c] or None
        where = self.search.where(
            cameras=cameras, after=after or None, before=before or None, labels=FIELD_NAMES
        )
        return {
            "where": where,
            "per_track": per_track,
            "track_score": track_score,
            "exact": bool(exact),
            "nprobe": nprobe,
        }

    @contextmanager
    def upload(self, file: BinaryIO) -> Iterator[Image.Image]:
        """An uploaded file (at most ``limits.max_bytes + 1`` bytes read) decoded while its
        pixels are held in :attr:`budget` (until the block ends: the request is answered)."""
        with decoded(file.read(self.limits.max_bytes + 1), self.limits, self.budget) as image:
            yield image

    def search_image(self, image: Image.Image, k: int, **options: Any) -> dict[str, Any]:
        """reID of a decoded photo: the top-k rows and the photo's predicted attributes."""
        with self._model_lock:
            found = self.search.by_image(image, k, **options)
        return self._reid(found, {"kind": "image"})

    def search_gallery_item(self, item_id: int, k: int, **options: Any) -> dict[str, Any]:
        """reID with a gallery crop as the query (a clicked result), the crop itself left out
        of the results."""
        self._known(item_id)
        with self._model_lock:
            found = self.search.by_item(item_id, k, **options)
        return self._reid(found, {"kind": "gallery", "id": item_id, "excluded": item_id})

    def _reid(self, found: Answer, query: dict[str, Any]) -> dict[str, Any]:
        # the rows were judged once by the search layer; the page names the data the threshold
        # was calibrated on by its folder only (no server paths)
        point = found.verdicts.page_json()  # by_image / by_item always judge at a point
        results = self._rows(found.rows, calibrated_on=point and point["calibrated_on"])
        return {
            "query": {**query, "text": found.text, **_certainty(found.description)},
            "results": results,
            "operating_point": point,
            "thumbnails_missing": self._missing(found.rows),
        }

    def operating_point(self) -> dict[str, Any] | None:
        """The model's calibrated operating point (``cerberus calibrate``) with a sentence
        saying what it is and which data it was calibrated on, or ``None`` if uncalibrated."""
        return self.search.verdicts().page_json()

    def search_attributes(
        self, attributes: dict[str, str], k: int, **options: Any
    ) -> dict[str, Any]:
        """APS: a (partial) description -> the top-k rows; values ``""`` count as "any"."""
        given = {n: v for n, v in attributes.items() if str(v).strip()}
        if not given:
            raise BadRequest("empty query: give at least one attribute value")
        found = self.search.by_attributes(given, k, **options)
        return {
            "query": {"kind": "attributes", "text": found.text},
            "results": self._rows(found.rows),
            "thumbnails_missing": self._missing(found.rows),
        }

    def describe_image(self, image: Image.Image) -> dict[str, Any]:
        """PAR of a decoded photo: attributes, phrases, per-group cosine (``confidence``),
        probability (``certainty``) and the ``weak`` groups."""
        with self._model_lock:
            features = self.net.features_of_images([image])
        (said,) = self.net.describe(features, self.search.prototypes)
        return said

    def timeline(self, item_id: int, **options: Any) -> dict[str, Any]:
        """Where else was this person? A gallery crop's sightings by time, each with
        its best crop's thumbnail (no server paths); without a calibration, the candidates
        apart (:func:`cerberus.search.timeline.timeline`)."""
        self._known(item_id)
        with self._model_lock:  # an index without vectors embeds the crop again
            found = self.search.timeline(item_id, **options)
        query = {k: v for k, v in found["query"].items() if k not in ("path", "source")}
        ids = [int(s["item"]) for s in found["sightings"] + found["candidates"]]
        got = self.search.store.get(ids, vectors=False) if ids else None
        rows = [] if got is None else [{"id": int(i), "path": p} for i, p in zip(got.ids, got.path)]
        shown = self._thumbnails(rows)

        def page(sightings: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {
                    **{k: v for k, v in s.items() if k != "source"},
                    "source": Path(s["source"]).name,
                    "thumbnail": shown[s["item"]],
                }
                for s in sightings
            ]

        return {
            "query": {**query, "thumbnail": f"/api/gallery/{item_id}/image"},
            "rule": found["rule"],
            "threshold": found["threshold"],
            "calibrated": found["calibrated"],
            "sightings": page(found["sightings"]),
            "candidates": page(found["candidates"]),
            "thumbnails_missing": self._missing(rows),
        }

    def gallery_json(self) -> dict[str, Any]:
        """The gallery now: size and cameras (read from the store on every call)."""
        return {
            "size": len(self.search),
            "cameras": self.search.store.cameras(),
            "read_only": self.search.read_only,
        }

    # ---- gallery items

    def _known(self, item_id: int) -> dict[str, Any]:
        """The row of gallery item ``item_id``; 404 when the gallery has none. Its crop file
        need not exist: queries by an item use its stored vector (only an index that keeps
        none embeds the file)."""
        check_id(item_id)
        try:
            return self.search.item(item_id)
        except CerberusError as exc:
            raise BadRequest(no_paths(str(exc)), 404) from None

    def gallery_path(self, item_id: int) -> Path:
        """The file of gallery item ``item_id``, resolved, when it may be served (see
        :mod:`cerberus.web.images`); 404 when out of range, missing or not served."""
        item = self._known(item_id)
        folders = image_folders(self.search.store, self.search.info.meta, item)
        try:
            return check_served_path(item["path"], folders, f"gallery item {item_id}")
        except NotServed as exc:
            raise BadRequest(str(exc), 404) from None

    def gallery_image(self, item_id: int) -> tuple[bytes, str]:
        """Gallery item ``item_id``'s image as ``(bytes, "image/jpeg" | "image/png")``: a plain
        8-bit JPEG or PNG as stored, anything else re-encoded (:func:`served_image`); decoded
        under :attr:`budget` and the server's pixel limit."""
        path = self.gallery_path(item_id)
        what = f"gallery item {item_id}"
        try:
            data = read_served(path, what)
            with self.budget.hold(min(self.limits.max_pixels, self.budget.total)):
                return served_image(data, self.limits.max_pixels, what)
        except NotServed as exc:
            raise BadRequest(str(exc), 404) from None

    def frame_jpeg(self, item_id: int) -> bytes:
        """The source frame of gallery item ``item_id`` with its box, as JPEG; 404 when the
        item has no frame (not from footage) or its source is gone."""
        import io

        from PIL import Image

        self._known(item_id)
        try:
            frame = self.search.item_frame(item_id)
        except CerberusError as exc:
            raise BadRequest(no_paths(str(exc)), 404) from None
        out = io.BytesIO()
        Image.fromarray(frame).save(out, format="JPEG", quality=88)
        return out.getvalue()

    def item_track(self, item_id: int) -> dict[str, Any]:
        """The crop ``item_id``'s frame and box and its track: first and last frame and time,
        crops and path (:func:`~cerberus.search.tracks.list_tracks`, as ``cerberus tracks
        --json`` gives it, the source by its file name only); ``track`` is ``None`` for a crop
        without one. 404 when there is no such item."""
        try:
            row = self.search.item(item_id)
            found = (
                self.search.tracks(row["source"], row["track"])
                if row["track"] is not None and row["source"]
                else []
            )
        except CerberusError as exc:
            raise BadRequest(str(exc), 404) from None
        track = found[0] if found else None
        if track is not None:
            track = {**track, "source": Path(track["source"]).name}
        return {"id": item_id, "frame": row["frame"], "box": row["box"], "track": track}

    def predicted_phrases(self, ids: list[int]) -> dict[int, list[str]]:
        """The predicted attributes of gallery items as phrases: the store's own (written by
        ingestion) where it has them, else described once under the model lock and cached
        (:meth:`cerberus.search.Gallery.item_phrases`)."""
        return self.search.item_phrases(ids, describe=self._describe)

    def _describe(self, ids: list[int]) -> list[dict[str, Any]]:
        """PAR of gallery items without stored predictions (cached: a gallery crop's
        description does not change)."""
        with self._said_lock:
            todo = [i for i in ids if i not in self._said]
        if todo:
            with self._model_lock:
                said = self.search.describe_items(todo)
            with self._said_lock:
                self._said.update(zip(todo, said))
        with self._said_lock:
            return [self._said[i] for i in ids]

    def _rows(
        self, rows: list[dict[str, Any]], *, calibrated_on: str | None = None
    ) -> list[dict[str, Any]]:
        """Result rows for the client: the item id and thumbnail URL instead of a server path,
        and the crop's predicted attributes; reID rows keep their verdict (``same_person``),
        with ``calibrated_on`` the data folder's name."""
        ids = [r["id"] for r in rows]
        said = self.predicted_phrases(ids)
        shown = self._thumbnails(rows)
        return [
            {
                "id": i,
                "rank": r["rank"],
                "score": r["score"],
                "name": Path(r["path"]).name,
                "pid": r["pid"],
                "camid": r["camid"],
                "camera": r["camera"],
                "time": r["time"],
                "source": Path(r["source"]).name,
                "frame": r["frame"],
                "track": r["track"],
                **{f: r[f] for f in ("count", "span", "crop_score") if f in r},
                "correct": r["correct"],
                "attributes": said[i],
                "thumbnail": shown[i],
                **(
                    {"same_person": r["same_person"], "calibrated_on": calibrated_on}
                    if "same_person" in r
                    else {}
                ),
            }
            for r, i in zip(rows, ids)
        ]

    def _thumbnails(self, rows: list[dict[str, Any]]) -> dict[int, str | None]:
        """Each row's thumbnail URL, ``None`` where its item has no image or its file is
        missing (the page shows a card without a picture instead of asking for it); the first
        missing file is said once in the server log."""
        shown: dict[int, str | None] = {}
        for r in rows:
            path = r["path"]
            here = bool(path) and Path(path).is_file()
            shown[r["id"]] = f"/api/gallery/{r['id']}/image" if here else None
            if path and not here and not self._missing_said:
                self._missing_said = True
                logger.warning(
                    "gallery thumbnails are missing (the first: item %d, %s); the page shows "
                    "their results without pictures",
                    r["id"],
                    Path(path).name,
                )
        return shown

    @staticmethod
    def _missing(rows: list[dict[str, Any]]) -> int:
        """How many of ``rows`` have an image path whose file is missing."""
        return sum(1 for r in rows if r["path"] and not Path(r["path"]).is_file())

    # ---- page data

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "schema": self.schema.name,
            "gallery_size": len(self.search),
            "index_kind": self.search.info.meta.get("index_kind", "flat"),
            "checkpoint": Path(self.net.checkpoint).name,
            "device": self.net.device,
            "max_k": MAX_K,
            "max_image_bytes": self.limits.max_bytes,
            "max_image_pixels": self.limits.max_pixels,
            "calibrated": self.net.calibration is not None,
        }


def _certainty(said: dict[str, Any] | None) -> dict[str, Any]:
    """How sure the query's predicted attributes are, per group, for the page: ``groups``
    (name, certainty, weak), in GROUPS order."""
    if said is None:
        return {}
    return {
        "groups": [
            {"key": g, "name": GROUP_NAMES[g], "certainty": p, "weak": g in said["weak"]}
            for g, p in said["certainty"].items()
        ]
    }
