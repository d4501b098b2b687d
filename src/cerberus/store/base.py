"""The gallery store's contract (method §9.1): what every backend keeps and answers.

A gallery is a set of items (person crops), each with its retrieval vector
(:func:`cerberus.inference.scoring.embed_features`: the five L2-normalised parts / sqrt(5), so the
inner product is the mean part cosine) and its metadata: camera, time, source, frame, box, track,
identity and attributes when known, the predicted attributes, a thumbnail. A backend stores
them, filters them by camera / time / source and answers inner-product top-k. It knows nothing
of models; the search layer (:mod:`cerberus.search`) knows nothing of faiss or Milvus.

Backends: :class:`cerberus.store.memory.MemoryStore` (brute force in memory: the slow obvious
reference), :mod:`cerberus.store.local` (faiss + SQLite in a folder, the default) and
:mod:`cerberus.store.milvus` (``pymilvus``: a Milvus Lite file or a server URI);
:mod:`cerberus.store.npz` is the read-only view of an ``.npz`` index.
``tests/store/test_contract.py`` runs the same contract on each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cerberus.data import times
from cerberus.data.labels import UNKNOWN
from cerberus.errors import CerberusError

STORE_FORMAT_VERSION = 1
"""Version of a gallery's layout on disk; a gallery written by a newer version is refused."""

NO_TRACK = -1
NO_FRAME = -1


class StoreError(CerberusError):
    """A gallery store refused an operation (one line: which gallery, what is wrong)."""


QUERY_KINDS = ("photo", "description")
"""What a search's query vectors are: ``"photo"``, a crop's vector (reID); ``"description"``, the
SID vectors of an attribute query (APS). They lie in different places of the space, so an
approximate index may need a different setting for each (the local gallery measures both)."""


def check_query_kind(kind: Any, where: str = "search") -> str:
    """``kind`` if it is one of :data:`QUERY_KINDS`; anything else is refused with one line."""
    if not isinstance(kind, str) or kind not in QUERY_KINDS:
        raise StoreError(f"{where}: query kind {kind!r} is not one of {', '.join(QUERY_KINDS)}")
    return kind


def check_nprobe(nprobe: Any, where: str = "search") -> int | None:
    """``nprobe`` as an int (``None`` stays ``None``: the measured default); anything but a
    whole number of at least 1 is refused with one line."""
    if nprobe is None:
        return None
    if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)):
        if isinstance(nprobe, (float, np.floating)) and float(nprobe).is_integer():
            nprobe = int(nprobe)
        else:
            raise StoreError(
                f"{where}: nprobe {nprobe!r} must be a whole number of cells, at least 1"
            )
    if int(nprobe) < 1:
        raise StoreError(f"{where}: nprobe {nprobe} must be at least 1 (cells probed)")
    return int(nprobe)


# ---------------------------------------------------------------- time


def to_utc_seconds(moment: datetime | str | float | None, what: str = "time") -> float:
    """:func:`cerberus.data.times.to_utc_seconds` (the one ISO-8601 parser), refusing with a
    :class:`StoreError`."""
    return times.to_utc_seconds(moment, what, StoreError)


from_utc_seconds = times.from_utc_seconds

EARLIEST = -2_208_988_800.0
"""1900-01-01T00:00:00Z: the earliest item time a gallery accepts (seconds since the epoch)."""
LATEST = 253_370_764_800.0
"""9999-01-01T00:00:00Z: the latest item time a gallery accepts (a later one, an infinite one or
1e18 has no calendar date, and every summary or timeline of the gallery would fail on it)."""


def check_times(timestamps: np.ndarray, where: str) -> None:
    """Refuse item times that are infinite or outside :data:`EARLIEST` .. :data:`LATEST`
    (``nan``, unknown, is allowed); one line naming the first bad value."""
    t = np.asarray(timestamps, np.float64)
    bad = ~np.isnan(t) & ~((t >= EARLIEST) & (t < LATEST))
    if bad.any():
        raise StoreError(
            f"{where}: timestamp {float(t[bad][0])!r} is not a time between 1900 and 9999 "
            "(seconds since the epoch, UTC; NaN for unknown)"
        )


def check_names(names: Iterable[str], what: str, where: str) -> None:
    """Refuse names holding a NUL character (SQLite's JSON functions cut a string there, so a
    filter on it would match another name) or that are not valid UTF-8 (undecodable bytes of a
    command line, which no backend can store): one line naming ``what``."""
    names = list(names)
    joined = "\n".join(names)  # one pass in C for a batch of a million paths
    if "\x00" not in joined and joined.isascii():
        return
    for text in names:
        if "\x00" in text:
            raise StoreError(f"{where}: {what} {text!r} holds a NUL character")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes of another encoding given on a command line
            raise StoreError(
                f"{where}: {what} {text!r} is not valid UTF-8 (give names in UTF-8)"
            ) from None


def check_search(name: str, queries: np.ndarray, k: object, dim: int) -> tuple[np.ndarray, int]:
    """The one check of a search's arguments on every backend: ``queries`` ``(Q, D)`` finite
    (``Q`` may be 0), ``k`` a positive integer (not a bool, not 1.5). Returns the queries as
    contiguous float32."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise StoreError(f"{name}: k={k!r}: give a positive whole number of results")
    try:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise StoreError(f"{name}: query vectors are not numbers ({e})") from None
    if q.ndim != 2 or q.shape[1] != dim:
        raise StoreError(
            f"{name}: query vectors of shape {q.shape}, the gallery holds dimension {dim}"
        )
    if not np.isfinite(q).all():
        raise StoreError(f"{name}: query vectors hold NaN or infinite values")
    return q, int(k)


# ---------------------------------------------------------------- items


@dataclass
class Items:
    """A batch of gallery items, column by column (``n`` items).

    Attributes:
        vectors: ``(n, D)`` float32 retrieval vectors.
        source: file or stream name each item came from (a folder, a video, a stream URL).
        camera: camera name of each item (``""``: unknown).
        timestamp: ``(n,)`` float64 seconds since the epoch, UTC; ``nan`` where unknown.
        frame: ``(n,)`` int64 frame number in the source; :data:`NO_FRAME` where none.
        box: ``(n, 4)`` float32 ``left, top, right, bottom`` in the frame; ``nan`` where none.
        track: ``(n,)`` int64 track id within the source; :data:`NO_TRACK` where none.
        path: the crop image (or thumbnail) of each item, as stored (``""``: none).
        pid: ``(n,)`` int64 annotated identity; :data:`~cerberus.data.datasets.UNKNOWN`
            (-1000) where unknown.
        values: ``(n, A)`` int16 annotated attribute values; ``-1`` where unknown.
        predicted: ``(n, A)`` int16 predicted attribute values (PAR); ``-1`` where not described.
        certainty: ``(n, 5)`` float32 probability of the chosen SID per group; ``nan`` where
            not described.
        ids: ``(n,)`` int64 item ids: assigned by the store on :meth:`GalleryStore.add`
            (ignored there), filled in by :meth:`GalleryStore.get`.
    """

    vectors: np.ndarray
    source: list[str]
    camera: list[str]
    timestamp: np.ndarray
    frame: np.ndarray
    box: np.ndarray
    track: np.ndarray
    path: list[str]
    pid: np.ndarray
    values: np.ndarray
    predicted: np.ndarray
    certainty: np.ndarray
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.vectors)

    @classmethod
    def make(
        cls,
        vectors: np.ndarray,
        *,
        source: str | Sequence[str],
        num_attributes: int,
        camera: str | Sequence[str] = "",
        timestamp: float | Sequence[float] | np.ndarray | None = None,
        frame: Sequence[int] | np.ndarray | None = None,
        box: np.ndarray | None = None,
        track: Sequence[int] | np.ndarray | None = None,
        path: Sequence[str] | None = None,
        pid: Sequence[int] | np.ndarray | None = None,
        values: np.ndarray | None = None,
        predicted: np.ndarray | None = None,
        certainty: np.ndarray | None = None,
    ) -> Items:
        """Items with every column given or filled with its "unknown" value; a single string
        or number is repeated for all ``n`` items."""
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim != 2:
            raise StoreError(f"vectors of shape {vectors.shape}: expected (n, D)")
        n = len(vectors)

        def strings(x, default: str = "") -> list[str]:
            if x is None:
                return [default] * n
            return [str(x)] * n if isinstance(x, str) else [str(s) for s in x]

        def column(x, default, dtype, shape=(), what: str = "") -> np.ndarray:
            if x is None:
                return np.full((n, *shape), default, dtype=dtype)
            try:
                a = np.asarray(x, dtype=dtype)
            except (TypeError, ValueError, OverflowError) as e:
                raise StoreError(f"items: column {what} is not {np.dtype(dtype)} ({e})") from None
            return np.broadcast_to(a, (n, *shape)).copy() if a.ndim == 0 else a

        def seconds(x) -> np.ndarray | None:
            """Times as UTC seconds: numbers as they are; ISO-8601 strings and aware
            datetimes converted (:func:`to_utc_seconds`, a StoreError for anything else)."""
            if x is None or isinstance(x, int | float | np.integer | np.floating):
                return x
            if isinstance(x, str | datetime):
                return np.float64(to_utc_seconds(x, "timestamp"))
            if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
                return x
            return np.array([to_utc_seconds(t, "timestamp") for t in x], np.float64)

        items = cls(
            vectors=vectors,
            source=strings(source),
            camera=strings(camera),
            timestamp=column(seconds(timestamp), np.nan, np.float64, what="timestamp"),
            frame=column(frame, NO_FRAME, np.int64, what="frame"),
            box=column(box, np.nan, np.float32, (4,), "box"),
            track=column(track, NO_TRACK, np.int64, what="track"),
            path=strings(path),
            pid=column(pid, UNKNOWN, np.int64, what="pid"),
            values=column(values, -1, np.int16, (num_attributes,), "values"),
            predicted=column(predicted, -1, np.int16, (num_attributes,), "predicted"),
            certainty=column(certainty, np.nan, np.float32, (5,), "certainty"),
        )
        items.check()
        return items

    def check(self) -> None:
        """Refuse columns whose lengths or shapes disagree (one line, the column named)."""
        n = len(self.vectors)
        for f in fields(self):
            if f.name in ("vectors", "ids"):
                continue
            col = getattr(self, f.name)
            if len(col) != n:
                raise StoreError(f"items: column {f.name} has {len(col)} rows for {n} vectors")
        if self.box.shape != (n, 4):
            raise StoreError(f"items: box of shape {self.box.shape}, expected ({n}, 4)")
        if self.values.shape != self.predicted.shape:
            raise StoreError("items: values and predicted have different shapes")
        if self.certainty.shape != (n, 5):
            raise StoreError(f"items: certainty of shape {self.certainty.shape}, expected ({n}, 5)")
        if not np.isfinite(self.vectors).all():
            raise StoreError("items: vectors hold NaN or infinite values")
        try:
            check_times(np.asarray(self.timestamp, np.float64), "items")
        except (TypeError, ValueError):
            raise StoreError("items: timestamps are not seconds since the epoch") from None
        if not all(self.source):
            raise StoreError("items: an item without a source name (give the file or stream)")
        for what in ("source", "camera", "path"):
            check_names(getattr(self, what), what, "items")

    def take(self, rows: np.ndarray | Sequence[int]) -> Items:
        """The items at positions ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = {}
        for f in fields(self):
            col = getattr(self, f.name)
            if isinstance(col, list):
                out[f.name] = [col[i] for i in rows]
            elif f.name == "ids" and len(col) == 0:
                out[f.name] = col
            else:
                out[f.name] = col[rows]
        return Items(**out)

    @staticmethod
    def concat(parts: Iterable[Items]) -> Items:
        """One batch of several (same attribute count)."""
        parts = list(parts)
        if not parts:
            raise StoreError("items: nothing to concatenate")
        out: dict[str, Any] = {}
        for f in fields(Items):
            cols = [getattr(p, f.name) for p in parts]
            out[f.name] = (
                [x for c in cols for x in c] if isinstance(cols[0], list) else np.concatenate(cols)
            )
        return Items(**out)

    def with_ids(self, ids: np.ndarray) -> Items:
        return replace(self, ids=np.asarray(ids, dtype=np.int64))


# ---------------------------------------------------------------- filters and hits


@dataclass(frozen=True)
class Filter:
    """Which items a search or a count considers; every given condition must hold.

    ``cameras``: camera names; ``after`` (inclusive) / ``before`` (exclusive): UTC seconds
    (items without a time never match a time condition); ``sources``: source names;
    ``tracks``: ``(source, track)`` pairs. ``None`` means no condition. Build one from
    user input with :func:`make_filter` (checks the names and the window).
    """

    cameras: frozenset[str] | None = None
    after: float | None = None
    before: float | None = None
    sources: frozenset[str] | None = None
    tracks: frozenset[tuple[str, int]] | None = None

    def __post_init__(self) -> None:
        for what in ("cameras", "sources"):
            check_names(getattr(self, what) or (), what[:-1], "filter")
        check_names((s for s, _ in self.tracks or ()), "source", "filter")

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def matches(self, items: Items) -> np.ndarray:
        """``(n,)`` bool: which of ``items`` pass (the reference semantics every backend
        follows)."""
        keep = np.ones(len(items), dtype=bool)
        if self.cameras is not None:
            keep &= np.array([c in self.cameras for c in items.camera], dtype=bool)
        if self.sources is not None:
            keep &= np.array([s in self.sources for s in items.source], dtype=bool)
        if self.tracks is not None:
            keep &= np.array(
                [(s, int(t)) in self.tracks for s, t in zip(items.source, items.track)],
                dtype=bool,
            )
        t = items.timestamp
        if self.after is not None:
            keep &= ~np.isnan(t) & (t >= self.after)
        if self.before is not None:
            keep &= ~np.isnan(t) & (t < self.before)
        return keep


def make_filter(
    *,
    cameras: Iterable[str] | None = None,
    after: datetime | str | float | None = None,
    before: datetime | str | float | None = None,
    sources: Iterable[str] | None = None,
    tracks: Iterable[tuple[str, int]] | None = None,
    known_cameras: Iterable[str] | None = None,
    known_sources: Iterable[str] | None = None,
    labels: tuple[str, str] = ("--after", "--before"),
) -> Filter:
    """A :class:`Filter` from user input, checked: camera / source names not in the gallery
    (when ``known_*`` is given), unparseable or naive times and an empty or inverted window are
    refused with one line; ``labels`` name ``after`` and ``before`` in those lines (each front
    end its own: the CLI's options, the API's fields). Input echoed is cut at 80 characters."""

    def names(given, known, what: str) -> frozenset[str] | None:
        if given is None:
            return None
        given = frozenset(str(x) for x in given)
        if not given:
            raise StoreError(f"{what} filter: no names given")
        check_names(given, what, f"{what} filter")
        if known is not None:
            known = set(known)
            unknown = sorted(given - known)
            if unknown:
                have = ", ".join(sorted(known)[:20]) or "none"
                raise StoreError(
                    f"{what} {_cut(', '.join(unknown))}: not in this gallery (it has: {have})"
                )
        return given

    a = None if after is None else to_utc_seconds(after, labels[0])
    b = None if before is None else to_utc_seconds(before, labels[1])
    if a is not None and b is not None and not a < b:
        raise StoreError(
            f"time window {from_utc_seconds(a).isoformat()} .. {from_utc_seconds(b).isoformat()}: "
            f"{labels[0]} must be earlier than {labels[1]}"
        )
    return Filter(
        cameras=names(cameras, known_cameras, "camera"),
        after=a,
        before=b,
        sources=names(sources, known_sources, "source"),
        tracks=None if tracks is None else frozenset((str(s), int(t)) for s, t in tracks),
    )


def _cut(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (input echoed in an error)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Hits:
    """Top-k of one query: item ``ids`` and their ``scores`` (inner products, best first)."""

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


# ---------------------------------------------------------------- a track's path


@dataclass
class TrackPath:
    """The boxes of one track of one source on every processed frame it was alive (or a part
    of them: a running track is written in parts, and the parts of one ``(source, track)`` are
    concatenated in frame order).

    Attributes:
        source, camera: as on the track's items.
        track: the track id (as on its items).
        frames: ``(n,)`` int64 frame numbers, increasing.
        boxes: ``(n, 4)`` float32 ``left, top, right, bottom`` in pixels.
        detected: ``(n,)`` bool, True where a detection matched the track, False where the
            box is the tracker's prediction across a gap.
    """

    source: str
    camera: str
    track: int
    frames: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.detected = np.asarray(self.detected, bool).reshape(-1)
        n = len(self.frames)
        if len(self.boxes) != n or len(self.detected) != n:
            raise StoreError(
                f"track {self.track} of {self.source}: {n} frames, {len(self.boxes)} boxes, "
                f"{len(self.detected)} detected flags (one of each per frame)"
            )
        if n > 1 and (np.diff(self.frames) <= 0).any():
            raise StoreError(f"track {self.track} of {self.source}: frames not increasing")

    def __len__(self) -> int:
        return len(self.frames)

    @staticmethod
    def join(parts: Sequence[TrackPath]) -> TrackPath:
        """The parts of one track as one path (frame order; a frame given twice kept once)."""
        first = parts[0]
        frames = np.concatenate([p.frames for p in parts])
        order = np.argsort(frames, kind="stable")
        frames = frames[order]
        keep = np.ones(len(frames), bool)
        keep[1:] = frames[1:] != frames[:-1]
        return TrackPath(
            first.source, first.camera, first.track, frames[keep],
            np.concatenate([p.boxes for p in parts])[order][keep],
            np.concatenate([p.detected for p in parts])[order][keep],
        )  # fmt: skip


# ---------------------------------------------------------------- the gallery's own facts


@dataclass
class GalleryInfo:
    """What a gallery knows besides its items: the model it was built with (its
    ``fingerprint`` and ``checkpoint``, the ``schema`` as stored metadata and the SID
    ``prototypes``, which attribute queries need), the vector dimension ``dim`` and
    free-form ``meta`` (e.g. ``camera_labels``, ``calibration``)."""

    dim: int
    fingerprint: str
    schema: dict[str, Any]
    prototypes: dict[str, np.ndarray]
    checkpoint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceState:
    """A source in the gallery: its name, item count and whether it was finished (a source
    being ingested is added track by track and marked complete at its end)."""

    name: str
    count: int
    complete: bool


@runtime_checkable
class GalleryStore(Protocol):
    """The interface every backend implements (``tests/store/test_contract.py`` is its contract).

    - :meth:`add` writes one batch in one transaction: all of it or none of it. A source that
      is already *complete* in the gallery is refused (``replace=True``: its old items are
      removed in the same transaction); items of an incomplete source are appended (an ingest
      adding one finished track at a time). ``complete=True`` marks the batch's sources
      complete. Returns the new item ids. ``paths``: track paths (or parts of them) written
      in the same transaction; :meth:`paths` returns them joined per ``(source, track)``,
      ordered by source then track, and :meth:`remove` of a source or camera removes them.
    - :meth:`finish` marks a source complete (one with no items too: a video with nobody in
      it is recorded as done, with count 0); :meth:`remove` deletes every item of a source or
      of a camera and returns how many; ``before`` (UTC seconds, with ``camera``) keeps the
      camera's items of that time or later and those without a time (retention; a track's
      path goes with its last item, a source stays recorded).
    - :meth:`search`: per query vector ``(Q, D)``, the top-k items passing the filter by inner
      product (exact on the memory backend; the local backend's approximate index probes the
      cells its recall, measured on the gallery, says reach recall@10 0.95). ``exact=True``:
      never approximate; ``nprobe``: the cells an IVF index probes (:func:`check_nprobe`);
      ``kind``: what the queries are (:data:`QUERY_KINDS`, checked by every backend: the local
      one probes the cells measured for that kind).
    - :meth:`get` returns items by id (with their vectors, ``ids`` filled); unknown ids are an
      error. :meth:`ids` lists the ids passing a filter.
    - A search running while another process adds keeps answering from the state before or
      after the add, never a mix.
    """

    info: GalleryInfo

    def add(
        self,
        items: Items,
        *,
        replace: bool = False,
        complete: bool = True,
        paths: Sequence[TrackPath] = (),
    ) -> np.ndarray: ...

    def paths(self, source: str | None = None, track: int | None = None) -> list[TrackPath]: ...

    def finish(self, source: str) -> None: ...

    def remove(
        self, *, source: str | None = None, camera: str | None = None, before: float | None = None
    ) -> int: ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        where: Filter | None = None,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        kind: str = "photo",
    ) -> list[Hits]: ...

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items: ...

    def ids(self, where: Filter | None = None) -> np.ndarray: ...

    def count(self, where: Filter | None = None) -> int: ...

    def cameras(self) -> list[str]: ...

    def sources(self) -> list[SourceState]: ...

    def close(self) -> None: ...
