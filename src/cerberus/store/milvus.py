"""A gallery in Milvus (method §9.1): a Milvus Lite file (``gallery.db``, in-process) or the URI of
a Milvus standalone / distributed deployment (``http://host:19530``), through ``pymilvus``'
``MilvusClient``; the same code for both.

Two collections per gallery: ``<collection>`` holds the items (an INT64 ``id`` we assign, the
FLOAT_VECTOR ``vector``, a FLAT index with metric IP unless asked otherwise, and scalar fields)
and ``<collection>_meta`` holds the gallery's own facts, one JSON text per row: the format
version, the :class:`GalleryInfo` (in chunks), the write ``state`` and one row per source
(item count, complete flag, item count per camera: :meth:`MilvusStore.cameras` reads them).
A third, ``<collection>_paths``, holds the track paths (:class:`TrackPath`): one row per piece
of at most :data:`~cerberus.store.milvus_rows.PATH_PIECE` frames, its frames, boxes and flags as
the base64 text of a :mod:`cerberus.store.pathcodec` blob, tagged with the batch like the items
(Milvus wants a vector in every collection: a 2-d zero vector, never searched). A gallery
written before paths existed has no such collection: it has no paths, and the first add that
brings paths creates it.

Milvus has no multi-row transactions, so a batch becomes visible at one single-row write:

1. ``add`` reserves ids and a batch number ``b`` in the ``state`` row (``pending``);
2. inserts the rows tagged ``batch = b``; every read filters ``batch <= committed``, so they are
   invisible while they arrive;
3. commits by writing ``committed = b`` in the ``state`` row (and, with ``replace``, hides the
   replaced source's older batches in the same write): the commit point;
4. deletes the replaced rows and updates the source rows, then clears ``pending``.

A failure before 3 deletes the batch's rows; a process killed before 3 leaves rows that the next
``open`` or ``add`` deletes before anything else; killed after 3, the next one finishes 4. A
``remove`` writes its plan (the rows' expression, each source's new row; by time, the tracks
whose paths go once no item of theirs is left) in the ``state`` row first, then carries it out:
a kill during it leaves the plan, which the next ``open`` finishes. One writer at a time (Milvus
has no locks; a second writer is not detected). Items without a time hold :data:`NO_TIME` in
``ts`` and a time condition also requires ``ts > NO_TIME``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cerberus.store.base import (
    NO_TRACK,
    STORE_FORMAT_VERSION,
    Filter,
    GalleryInfo,
    Hits,
    Items,
    SourceState,
    StoreError,
    TrackPath,
    check_nprobe,
    check_query_kind,
    check_search,
)
from cerberus.store.milvus_rows import (
    MAX_NAME,
    NO_TIME,
    compile_filter,
    decode_info,
    encode_info,
    hidden,
    item_rows,
    number,
    path_rows,
    quote,
    rows_to_items,
    rows_to_path,
    strings,
    visible,
)

MAX_K = 16384
"""Milvus answers at most this many results per query (its ``topk`` limit)."""

INDEXES = {
    "FLAT": ({}, {}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 64}),
    "HNSW": ({"M": 32, "efConstruction": 256}, {"ef": 256}),
}
"""Vector index types: build params, search params. FLAT is exact; the others are approximate
and not measured here (docs/galleries.md, "Milvus")."""

_CHUNK = 60_000  # characters of GalleryInfo JSON per meta row (a VARCHAR holds 65,535 bytes)
_LISTED_TRACKS = 2000  # tracks a removal by time lists in its plan (more: all its camera's checked)
_INSERT_BYTES = 16 << 20  # vector bytes per insert call (gRPC messages stay under 64 MiB)
_NOISY = ("pymilvus.decorators", "pymilvus.client", "milvus_lite.server_manager")


def _client_class():
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise StoreError(
            "Milvus galleries need pymilvus: pip install pymilvus milvus-lite"
        ) from None
    return MilvusClient


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pymilvus and milvus-lite log every failed call (a traceback for a Lite file that does not
    open); the store turns each failure into one :class:`StoreError` line instead."""
    loggers = [logging.getLogger(n) for n in _NOISY]
    levels = [x.level for x in loggers]
    for x in loggers:
        x.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for x, level in zip(loggers, levels):
            x.setLevel(level)


def _reason(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return " ".join(str(text).split())[:300]


def _lite(uri: str) -> bool:
    return uri.endswith(".db") and "://" not in uri


class MilvusStore:
    """A gallery in two Milvus collections; see the module's docstring for the write protocol.

    Build with :meth:`create` or :meth:`open`, never directly. ``search`` is exact on the
    default FLAT index (Milvus' own inner products, float32)."""

    _ITEM_FIELDS = (
        "id", "batch", "source", "camera", "ts", "frame", "track", "pid", "path",
        "box", "values", "predicted", "certainty",
    )  # fmt: skip

    def __init__(self, client: Any, uri: str, collection: str, info: GalleryInfo, index: str):
        self._client = client
        self._lite = _lite(uri)
        self.uri = uri
        self.collection = collection
        self.meta_collection = f"{collection}_meta"
        self.paths_collection = f"{collection}_paths"
        self._has_paths = False
        self.info = info
        self.index = index
        self.name = f"{uri} (collection {collection})"
        self._closed = False

    # ------------------------------------------------------------ opening

    @staticmethod
    def _connect(uri: str, token: str | None, timeout: float) -> Any:
        client_class = _client_class()
        uri = str(uri)
        if _lite(uri):
            Path(uri).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        try:
            with _quiet():
                return client_class(uri=uri, token=token or "", timeout=timeout)
        except Exception as e:  # pymilvus raises several kinds; all mean "no Milvus there"
            reason = _reason(e)
            if _lite(uri):
                if "milvus-lite is required" in reason or "milvus_lite" in reason:
                    raise StoreError(
                        f"{uri}: a Milvus Lite file needs milvus-lite: "
                        "pip install pymilvus milvus-lite"
                    ) from None
                raise StoreError(
                    f"{uri}: Milvus Lite could not open it (one process at a time: is another "
                    f"one using this gallery?) ({reason})"
                ) from None
            raise StoreError(f"{uri}: Milvus does not answer ({reason})") from None

    @staticmethod
    def _check_collection(collection: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", collection):
            raise StoreError(
                f"collection {collection!r}: letters, digits and underscores only, "
                "not starting with a digit"
            )

    @classmethod
    def create(
        cls,
        uri: str | Path,
        info: GalleryInfo,
        *,
        collection: str = "cerberus",
        token: str | None = None,
        index: str = "FLAT",
        timeout: float = 5.0,
    ) -> MilvusStore:
        """A new empty gallery in ``collection`` at ``uri`` (a ``.db`` path: Milvus Lite,
        created with its folder; else a server URI, with ``token`` ``"user:password"`` or an API
        key). ``index``: ``FLAT`` (exact, the default), ``IVF_FLAT`` or ``HNSW`` (approximate,
        for a server). ``timeout``: seconds to wait for a server that does not answer."""
        uri = str(uri)
        cls._check_collection(collection)
        if index not in INDEXES:
            raise StoreError(f"index {index}: not one of {', '.join(INDEXES)}")
        text = encode_info(info)  # refused (one line) before anything is created
        client = cls._connect(uri, token, timeout)
        store = cls(client, uri, collection, info, index)
        try:
            with store._calls("create"):
                existing = set(client.list_collections())
                if collection in existing or store.meta_collection in existing:
                    raise StoreError(
                        f"{store.name}: a gallery already exists there (open it, or pick another "
                        "collection)"
                    )
                store._create_collections()
                store._create_paths_collection()
                chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)]
                rows = [store._meta_row(f"info:{i}", "info", c) for i, c in enumerate(chunks)]
                rows.append(store._meta_row("state", "state", json.dumps(store._new_state())))
                client.insert(store.meta_collection, rows)
                # the format row last: a gallery without it is an unfinished create
                fmt = {"version": STORE_FORMAT_VERSION, "info_chunks": len(chunks), "index": index}
                client.insert(
                    store.meta_collection, [store._meta_row("format", "format", json.dumps(fmt))]
                )
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def open(
        cls,
        uri: str | Path,
        *,
        collection: str = "cerberus",
        token: str | None = None,
        timeout: float = 5.0,
    ) -> MilvusStore:
        """The gallery in ``collection`` at ``uri``; a gallery written by a newer format version
        is refused, and leftovers of an add that did not finish are cleaned up first."""
        uri = str(uri)
        cls._check_collection(collection)
        if _lite(uri) and not Path(uri).expanduser().exists():
            raise StoreError(f"{uri}: no such Milvus Lite file")
        client = cls._connect(uri, token, timeout)
        meta = f"{collection}_meta"
        try:
            with _quiet():
                existing = set(client.list_collections())
                if collection not in existing or meta not in existing:
                    raise StoreError(
                        f"{uri}: no gallery in collection {collection} "
                        f"(collections there: {', '.join(sorted(existing)) or 'none'})"
                    )
                client.load_collection(meta)
                fmt_rows = client.query(meta, filter='key == "format"', output_fields=["text"])
            if not fmt_rows:
                raise StoreError(
                    f"{uri} (collection {collection}): an unfinished gallery (no format row)"
                )
            fmt = json.loads(fmt_rows[0]["text"])
            if int(fmt["version"]) > STORE_FORMAT_VERSION:
                raise StoreError(
                    f"{uri} (collection {collection}): written by a newer Cerberus (gallery "
                    f"format {fmt['version']}, this one reads up to {STORE_FORMAT_VERSION}); "
                    "upgrade cerberus"
                )
            with _quiet():
                keys = strings([f"info:{i}" for i in range(int(fmt["info_chunks"]))])
                parts = client.query(meta, filter=f"key in {keys}", output_fields=["key", "text"])
                client.load_collection(collection)
            parts.sort(key=lambda r: int(r["key"].split(":")[1]))
            info = decode_info("".join(r["text"] for r in parts))
        except StoreError:
            client.close()
            raise
        except Exception as e:
            client.close()
            raise StoreError(
                f"{uri} (collection {collection}): cannot read it ({_reason(e)})"
            ) from None
        store = cls(client, uri, collection, info, fmt.get("index", "FLAT"))
        with store._calls("open"):
            if store.paths_collection in existing:
                client.load_collection(store.paths_collection)
                store._has_paths = True
            store._recover(store._state())
        return store

    def _create_collections(self) -> None:
        from pymilvus import DataType

        c = self._client
        s = c.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=int(self.info.dim))
        s.add_field("batch", DataType.INT64)
        s.add_field("source", DataType.VARCHAR, max_length=MAX_NAME)
        s.add_field("camera", DataType.VARCHAR, max_length=MAX_NAME)
        s.add_field("ts", DataType.DOUBLE)
        for name in ("frame", "track", "pid"):
            s.add_field(name, DataType.INT64)
        s.add_field("path", DataType.VARCHAR, max_length=MAX_NAME)
        for name in ("box", "values", "predicted", "certainty"):
            s.add_field(name, DataType.JSON)
        build, _ = INDEXES[self.index]
        ip = c.prepare_index_params()
        ip.add_index("vector", index_type=self.index, metric_type="IP", params=build)
        for name in ("batch", "source", "camera", "ts"):
            ip.add_index(name, index_type="INVERTED")
        # indexes without waiting (pymilvus polls every 0.5 s; empty collections index at once)
        c.create_collection(self.collection, schema=s, consistency_level="Strong")
        c.create_index(self.collection, ip, sync=False)

        m = c.create_schema(auto_id=False, enable_dynamic_field=False)
        # an INT64 key hashed from the name: pymilvus pages string keys with unescaped quotes
        m.add_field("pk", DataType.INT64, is_primary=True)
        m.add_field("key", DataType.VARCHAR, max_length=2 * MAX_NAME)
        m.add_field("kind", DataType.VARCHAR, max_length=16)
        m.add_field("text", DataType.VARCHAR, max_length=65535)
        m.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants one; never searched
        mp = c.prepare_index_params()
        mp.add_index("vector", index_type="FLAT", metric_type="L2")
        c.create_collection(self.meta_collection, schema=m, consistency_level="Strong")
        c.create_index(self.meta_collection, mp, sync=False)
        c.load_collection(self.collection)
        c.load_collection(self.meta_collection)

    def _create_paths_collection(self) -> None:
        from pymilvus import DataType

        c = self._client
        p = c.create_schema(auto_id=True, enable_dynamic_field=False)
        p.add_field("pk", DataType.INT64, is_primary=True)
        p.add_field("batch", DataType.INT64)
        p.add_field("seq", DataType.INT64)  # the piece's place in its batch (the join's order)
        p.add_field("source", DataType.VARCHAR, max_length=MAX_NAME)
        p.add_field("camera", DataType.VARCHAR, max_length=MAX_NAME)
        p.add_field("track", DataType.INT64)
        p.add_field("n", DataType.INT64)
        p.add_field("data", DataType.VARCHAR, max_length=65535)
        p.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants one; never searched
        pp = c.prepare_index_params()
        pp.add_index("vector", index_type="FLAT", metric_type="L2")
        c.create_collection(self.paths_collection, schema=p, consistency_level="Strong")
        c.create_index(self.paths_collection, pp, sync=False)
        c.load_collection(self.paths_collection)
        self._has_paths = True

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Milvus' errors as one :class:`StoreError` line naming the gallery."""
        if self._closed:
            raise StoreError(f"{self.name}: the gallery is closed")
        try:
            with _quiet():
                yield
        except StoreError:
            raise
        except Exception as e:
            if type(e).__module__.startswith(("pymilvus", "grpc", "milvus_lite")):
                raise StoreError(f"{self.name}: {what} failed in Milvus ({_reason(e)})") from None
            raise

    @staticmethod
    def _meta_row(key: str, kind: str, text: str) -> dict[str, Any]:
        pk = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
        row = {"pk": pk - (1 << 63), "key": key, "kind": kind, "text": text}
        return row | {"vector": [0.0, 0.0]}

    @staticmethod
    def _new_state() -> dict[str, Any]:
        return {"next_id": 0, "next_batch": 0, "committed": -1, "hide": [], "pending": None}

    def _state(self) -> dict[str, Any]:
        rows = self._client.query(
            self.meta_collection, filter='key == "state"', output_fields=["text"]
        )
        if not rows:
            raise StoreError(f"{self.name}: the gallery's state row is missing")
        return json.loads(rows[0]["text"])

    def _put(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._client.upsert(self.meta_collection, rows)

    def _put_state(self, state: dict[str, Any]) -> None:
        self._put([self._meta_row("state", "state", json.dumps(state))])

    def _meta(self, kind: str, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """The rows of ``kind`` (``source``), all or those of ``names``."""
        expr = f"kind == {quote(kind)}"
        if names is not None:
            if not names:
                return {}
            expr += f" and key in {strings([f'{kind}:{n}' for n in names])}"
        rows = self._scan(self.meta_collection, expr, ["text"])
        out = {}
        for r in rows:
            value = json.loads(r["text"])
            out[value["name"]] = value
        return out

    def _scan(
        self, collection: str, expr: str, fields: list[str], batch_size: int = 4096
    ) -> list[dict[str, Any]]:
        """Every row passing ``expr`` (paged: a plain query stops at 16,384 rows)."""
        it = self._client.query_iterator(
            collection, batch_size=batch_size, filter=expr, output_fields=fields
        )
        out: list[dict[str, Any]] = []
        try:
            while True:
                page = it.next()
                if not page:
                    break
                out.extend(page)
        finally:
            it.close()
        return out

    def _count(self, expr: str) -> int:
        rows = self._client.query(self.collection, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    # ------------------------------------------------------------ writing

    def _recover(self, state: dict[str, Any]) -> dict[str, Any]:
        """Finish or undo the write ``state['pending']`` describes (a crash or a failure left
        it): an add not committed loses its rows; a committed add or a remove is carried to its
        end (replaced rows deleted, the planned source rows written). Returns the clean state."""
        p = state.get("pending")
        if p is None and not state.get("hide"):
            return state
        c = self._client
        if p is not None and p["op"] == "add" and p["batch"] > state["committed"]:
            for name in self._data_collections():  # never committed
                c.delete(name, filter=f"batch == {int(p['batch'])}")
        else:
            for source, batch in state.get("hide", []):
                for name in self._data_collections():
                    c.delete(name, filter=f"source == {quote(source)} and batch < {int(batch)}")
            if p is not None and p["op"] == "remove":
                bare = p.get("bare_paths")  # by time: the items go, then their tracks' paths
                for name in [self.collection] if bare else self._data_collections():
                    c.delete(name, filter=p["expr"])
                if bare and self._has_paths:
                    self._drop_bare_paths(state, bare["camera"], bare["tracks"])
            if p is not None:
                plan = p["plan"]
                self._put([
                    self._meta_row(f"source:{name}", "source", json.dumps(value))
                    for name, value in plan.items()
                    if value is not None
                ])  # fmt: skip
                gone = [f"source:{name}" for name, value in plan.items() if value is None]
                if gone:
                    c.delete(self.meta_collection, filter=f"key in {strings(gone)}")
        state["pending"] = None
        state["hide"] = []
        self._put_state(state)
        if self._lite:
            # Milvus Lite searches rows still in its memory table row by row (seconds per
            # query at 10k items); flushed, they are in indexed segments
            c.flush(self.collection)
        return state

    def _data_collections(self) -> list[str]:
        """The collections whose rows carry a batch: the items and (if any) the paths."""
        return [self.collection] + ([self.paths_collection] if self._has_paths else [])

    def _check_items(self, items: Items) -> None:
        items.check()
        if items.vectors.shape[1] != self.info.dim:
            raise StoreError(
                f"{self.name}: vectors of dimension {items.vectors.shape[1]}, "
                f"the gallery holds {self.info.dim}"
            )
        for what, column in (
            ("source", items.source),
            ("camera", items.camera),
            ("path", items.path),
        ):
            for text in column:
                if len(text.encode("utf-8")) > MAX_NAME:
                    raise StoreError(
                        f"{self.name}: {what} {text[:60]!r}...: longer than {MAX_NAME} bytes"
                    )
        if not all(items.source):
            raise StoreError(f"{self.name}: items without a source name")

    def add(
        self,
        items: Items,
        *,
        replace: bool = False,
        complete: bool = True,
        paths: Sequence[TrackPath] = (),
    ) -> np.ndarray:
        """Add one batch and its track ``paths`` (all of it or none of it, see the module's
        docstring); returns the new ids. A complete source is refused unless ``replace``."""
        self._check_items(items)
        for p in paths:
            for text in (p.source, p.camera):
                if len(text.encode("utf-8")) > MAX_NAME:
                    raise StoreError(f"{self.name}: {text[:60]!r}...: longer than {MAX_NAME} bytes")
        if len(items) == 0 and not paths:
            return np.zeros(0, np.int64)
        with self._calls("add"):
            if paths and not self._has_paths:
                self._create_paths_collection()  # a gallery written before paths existed
            state = self._recover(self._state())
            self._check_attributes(state, items)
            batch_sources = sorted(set(items.source))
            path_sources = sorted({p.source for p in paths} - set(batch_sources))
            known = self._meta("source", batch_sources + path_sources)
            done = [s for s in batch_sources if known.get(s, {}).get("complete")]
            done_paths = [s for s in path_sources if known.get(s, {}).get("complete")]
            if (done or done_paths) and not replace:
                raise StoreError(
                    f"{self.name}: source {(done or done_paths)[0]} is already in the gallery "
                    "(remove it first, or replace it)"
                )
            b = int(state["next_batch"])
            ids = np.arange(state["next_id"], state["next_id"] + len(items), dtype=np.int64)
            state["next_batch"] = b + 1
            state["next_id"] = int(state["next_id"]) + len(items)
            added = Counter(items.source)
            seen_on = Counter((s, c) for s, c in zip(items.source, items.camera) if c)
            plan = {}
            for name in batch_sources:
                old = {} if name in done else known.get(name, {})
                cams = Counter(old.get("cameras", {}))
                cams.update({c: k for (s, c), k in seen_on.items() if s == name})
                plan[name] = {
                    "name": name,
                    "count": old.get("count", 0) + added[name],
                    "complete": bool(complete or known.get(name, {}).get("complete")),
                    "cameras": dict(sorted(cams.items())),
                }
            for name in done_paths:  # replaced by paths alone: its items go, as in a remove
                plan[name] = None
            state["pending"] = {"op": "add", "batch": b, "plan": plan}
            if len(json.dumps(state)) > _CHUNK:
                raise StoreError(
                    f"{self.name}: a batch of {len(batch_sources)} sources is too large for one "
                    "write's record; add them in smaller batches"
                )
            self._put_state(state)  # 1. reserved: a crash from here on is undone at reopen
            try:
                per_call = max(1, _INSERT_BYTES // (4 * self.info.dim))
                for rows in item_rows(items, ids, b, per_call):  # 2. invisible rows
                    self._insert(rows)
                for rows in path_rows(paths, b):
                    self._insert_paths(rows)
            except BaseException:
                with contextlib.suppress(Exception):
                    self._recover(state)
                raise
            state["committed"] = b
            state["hide"] = [[s, b] for s in done + done_paths]
            self._put_state(state)  # 3. the commit point
            self._recover(state)  # 4. replaced rows deleted, sources counted
        return ids

    def _check_attributes(self, state: dict[str, Any], items: Items) -> None:
        """Refuse items with another attribute count than the gallery's (kept in the state
        row from the first add; a gallery written before that reads it from one item), and
        record it in ``state`` for this add's commit."""
        have = state.get("num_attributes")
        if have is None:
            rows = self._client.query(
                self.collection, filter=visible(state), output_fields=["values"], limit=1
            )
            have = len(rows[0]["values"]) if rows else None
        given = int(items.values.shape[1])
        if len(items) and have is not None and int(have) != given:
            raise StoreError(
                f"{self.name}: items with {given} attributes, the gallery holds {have}"
            )
        if have is not None or len(items):
            state["num_attributes"] = int(have if have is not None else given)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        self._client.insert(self.collection, rows)

    def _insert_paths(self, rows: list[dict[str, Any]]) -> None:
        self._client.insert(self.paths_collection, rows)

    def finish(self, source: str) -> None:
        with self._calls("finish"):
            known = self._meta("source", [source])
            empty = {"name": source, "count": 0, "cameras": {}}  # a video with nobody in it
            value = dict(known.get(source, empty), complete=True)
            self._put([self._meta_row(f"source:{source}", "source", json.dumps(value))])

    def remove(
        self, *, source: str | None = None, camera: str | None = None, before: float | None = None
    ) -> int:
        """Delete every item of ``source`` or of ``camera``; returns how many. With ``before``
        (by camera only: a camera's retention), only the camera's items with a time before it
        (``NO_TIME < ts < before``: an item without a time stays), with the paths of the tracks
        left without items; the sources stay recorded (count less the removed, flag kept)."""
        if (source is None) == (camera is None):
            raise StoreError(f"{self.name}: remove by source or by camera (one of them)")
        if before is not None and camera is None:
            raise StoreError(f"{self.name}: remove before a time is by camera only")
        with self._calls("remove"):
            state = self._recover(self._state())
            tracks: dict[str, set[int]] = {}
            if source is not None:
                expr = f"source == {quote(source)}"
                known = self._meta("source", [source])
                removed = Counter({source: known[source]["count"]} if source in known else {})
            else:
                expr = f"camera == {quote(camera)}"
                if before is not None:
                    expr += f" and ts > {number(NO_TIME)} and ts < {number(before)}"
                fields = ["source"] if before is None else ["source", "track"]
                rows = self._scan(self.collection, f"{visible(state)} and {expr}", fields)
                if before is not None and not rows:
                    return 0  # nothing has expired: nothing written
                removed = Counter(r["source"] for r in rows)
                known = self._meta("source", sorted(removed))
                for r in rows if before is not None else ():
                    if int(r["track"]) != NO_TRACK:
                        tracks.setdefault(r["source"], set()).add(int(r["track"]))
            plan: dict[str, Any] = {}
            for name, k in removed.items():
                old = known.get(name, {"name": name, "count": k, "complete": False})
                left = old.get("count", 0) - k
                cams = {c: n for c, n in old.get("cameras", {}).items() if c != camera}
                if before is None:
                    plan[name] = dict(old, count=left, cameras=cams) if left > 0 else None
                    continue
                rest = old.get("cameras", {}).get(camera, 0) - k  # the camera's later items
                cams = dict(sorted((cams | ({camera: rest} if rest > 0 else {})).items()))
                plan[name] = dict(old, count=max(left, 0), cameras=cams)  # stays recorded
            state["pending"] = {"op": "remove", "expr": expr, "plan": plan}
            if before is not None:
                # the tracks whose paths go if none of their items is left (too many for one
                # record: every track of the camera's paths is checked instead)
                listed = {s: sorted(t) for s, t in sorted(tracks.items())}
                state["pending"]["bare_paths"] = {"camera": camera, "tracks": listed}
                many = sum(len(t) for t in listed.values()) > _LISTED_TRACKS
                if many or len(json.dumps(state)) > _CHUNK:
                    state["pending"]["bare_paths"]["tracks"] = None
                if len(json.dumps(state)) > _CHUNK:
                    raise StoreError(
                        f"{self.name}: removing camera {camera[:60]!r} before a time touches "
                        f"{len(plan)} sources, too many for one write's record; remove an "
                        "earlier time first"
                    )
            self._put_state(state)  # a crash from here on is carried to the end at reopen
            self._recover(state)
        return sum(removed.values())

    def _drop_bare_paths(
        self, state: dict[str, Any], camera: str, tracks: dict[str, list[int]] | None
    ) -> None:
        """Delete the paths of ``camera`` whose ``(source, track)`` (of ``tracks``; ``None``:
        every track of the camera's paths) has no item left. Idempotent: a reopen redoes it."""
        cam = f"camera == {quote(camera)}"
        if tracks is None:
            rows = self._scan(self.paths_collection, f"{visible(state)} and {cam}",
                              ["source", "track"])  # fmt: skip
            found: dict[str, set[int]] = {}
            for r in rows:
                found.setdefault(r["source"], set()).add(int(r["track"]))
            tracks = {s: sorted(t) for s, t in found.items()}
        for name, listed in sorted(tracks.items()):
            for start in range(0, len(listed), 1024):
                chunk = listed[start : start + 1024]
                which = f"source == {quote(name)} and track in {chunk}"
                rows = self._scan(self.collection, f"{visible(state)} and {which}", ["track"])
                kept = {int(r["track"]) for r in rows}
                bare = [t for t in chunk if t not in kept]
                if bare:
                    self._client.delete(
                        self.paths_collection,
                        filter=f"{cam} and source == {quote(name)} and track in {bare}",
                    )

    # ------------------------------------------------------------ reading

    def _search_params(self, exact: bool, nprobe: int | None) -> dict[str, Any]:
        """Milvus search params for ``exact`` / ``nprobe``: FLAT is exact (nprobe ignored);
        IVF_FLAT probes ``nprobe`` cells (exact: every one of its ``nlist``); HNSW has neither
        (refused with one line)."""
        build, params = INDEXES[self.index]
        if self.index == "IVF_FLAT":
            if exact:
                return {"nprobe": build["nlist"]}
            if nprobe is not None:
                return {"nprobe": min(nprobe, build["nlist"])}
        elif self.index == "HNSW" and (exact or nprobe is not None):
            what = "exact search" if exact else f"nprobe {nprobe}"
            raise StoreError(
                f"{self.name}: {what}: an HNSW collection has no cells to probe; create the "
                "gallery with index FLAT (exact) or IVF_FLAT"
            )
        return params

    def search(
        self,
        queries: np.ndarray,
        k: int,
        where: Filter | None = None,
        *,
        exact: bool = False,
        nprobe: int | None = None,
        kind: str = "photo",
    ) -> list[Hits]:
        """Per query ``(Q, D)``: the top-``k`` committed items passing ``where`` by inner
        product, best first (ties by the smaller id); ``exact`` / ``nprobe`` as
        :meth:`_search_params` maps them."""
        nprobe = check_nprobe(nprobe, self.name)
        check_query_kind(kind, self.name)
        params = self._search_params(bool(exact), nprobe)
        q, k = check_search(self.name, queries, k, self.info.dim)
        if not len(q):
            return []
        if k > MAX_K:
            raise StoreError(f"{self.name}: k={k}: Milvus answers at most {MAX_K} per query")
        empty = Hits(np.zeros(0, np.int64), np.zeros(0, np.float32))
        with self._calls("search"):
            expr = compile_filter(where, self._state())
            if expr is None or k <= 0 or len(q) == 0:
                return [Hits(empty.ids.copy(), empty.scores.copy()) for _ in q]
            out = []
            for start in range(0, len(q), 256):
                answers = self._client.search(
                    self.collection,
                    data=[v for v in q[start : start + 256]],
                    limit=int(k),
                    filter=expr,
                    output_fields=[],
                    anns_field="vector",
                    search_params={"metric_type": "IP", "params": params},
                )
                for hits in answers:
                    pairs = sorted((-float(h["distance"]), int(h["id"])) for h in hits)
                    out.append(
                        Hits(
                            np.array([i for _, i in pairs], dtype=np.int64),
                            np.array([-s for s, _ in pairs], dtype=np.float32),
                        )
                    )
        return out

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items:
        """The committed items ``ids`` in that order (``ids`` filled); an unknown id is an
        error. Without ``vectors`` the vectors are zeros of shape ``(n, 0)``."""
        ids = np.asarray(ids, dtype=np.int64)
        fields = list(self._ITEM_FIELDS) + (["vector"] if vectors else [])
        found: dict[int, dict[str, Any]] = {}
        with self._calls("get"):
            seen = visible(self._state())
            unique = sorted({int(i) for i in ids})
            for start in range(0, len(unique), 4096):
                chunk = unique[start : start + 4096]
                rows = self._client.query(
                    self.collection, filter=f"{seen} and id in {chunk}", output_fields=fields
                )
                found.update({int(r["id"]): r for r in rows})
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise StoreError(f"{self.name}: no item {missing[0]}")
        return rows_to_items([found[int(i)] for i in ids], ids, self.info.dim, vectors)

    def paths(self, source: str | None = None, track: int | None = None) -> list[TrackPath]:
        """The committed track paths, joined per ``(source, track)`` in source, track order."""
        if not self._has_paths:
            return []
        with self._calls("paths"):
            expr = visible(self._state())
            if source is not None:
                expr += f" and source == {quote(source)}"
            if track is not None:
                expr += f" and track == {int(track)}"
            rows = self._scan(
                self.paths_collection,
                expr,
                ["batch", "seq", "source", "camera", "track", "n", "data"],
                batch_size=256,  # a row's text is up to 64 kB: pages stay under 17 MB
            )
        parts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for r in rows:
            parts.setdefault((r["source"], int(r["track"])), []).append(r)
        joined = []
        for _, pieces in sorted(parts.items()):
            pieces.sort(key=lambda r: (r["batch"], r["seq"]))  # the order they were added in
            joined.append(TrackPath.join([rows_to_path(r) for r in pieces]))
        return joined

    def ids(self, where: Filter | None = None) -> np.ndarray:
        """``(m,)`` int64: the ids of the committed items passing ``where``, ascending."""
        with self._calls("ids"):
            expr = compile_filter(where, self._state())
            if expr is None:
                return np.zeros(0, np.int64)
            rows = self._scan(self.collection, expr, ["id"])
        return np.sort(np.array([r["id"] for r in rows], dtype=np.int64))

    def count(self, where: Filter | None = None) -> int:
        with self._calls("count"):
            state = self._state()
            if where is None or where.empty:
                # all rows less the uncommitted / replaced ones (usually none): Milvus counts
                # an unfiltered collection from its segments' sizes, a filtered one row by row
                return self._count("") - self._count(hidden(state))
            expr = compile_filter(where, state)
            return 0 if expr is None else self._count(expr)

    def cameras(self) -> list[str]:
        """Names of the cameras with at least one item, sorted (from the source rows, which
        count their items per camera)."""
        with self._calls("cameras"):
            rows = self._meta("source")
        return sorted({c for v in rows.values() for c, k in v.get("cameras", {}).items() if k > 0})

    def sources(self) -> list[SourceState]:
        with self._calls("sources"):
            rows = self._meta("source")
        return [
            SourceState(name, int(v["count"]), bool(v["complete"]))
            for name, v in sorted(rows.items())
        ]

    def close(self) -> None:
        """Let go of the connection (a Milvus Lite file stays served until the process ends)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception), _quiet():
                self._client.close()

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
