"""The embedded gallery (method §9.1): a local folder, no server. The default backend.

Layout of a gallery folder::

    cerberus-gallery.json   {"format": "cerberus-gallery", "version": 1, "backend": "local"}
    items.sqlite            SQLite in WAL mode: items, sources, segments, the gallery's facts
    vectors/seg-*.npy       float32 vectors, append-only, memory-mapped on read
    ann/ann.faiss           approximate index (a cache, rebuilt from the segments when missing)

Why this design:

- **SQLite for metadata** is a real embedded database in the standard library: transactions,
  indexes on ``(camera, ts)``, ``(source, track)`` and ``ts`` that turn a camera / time filter
  into an index range scan, and WAL mode, in which readers keep reading the last committed
  state while one writer writes. Nothing to install or run.
- **Vectors in immutable segment files**, not in SQLite: an add writes one new ``.npy`` file
  (fsynced, then renamed into place) and then one SQLite transaction that records the segment
  and the items pointing into it (segment, row). Adding 10,000 items to a million is an append
  and one transaction, never a rebuild. A segment is never changed once referenced, so a reader
  holding an old snapshot reads consistent vectors. Removal deletes the rows from SQLite; their
  vectors stay in the segment as garbage until :meth:`LocalStore.compact` rewrites the segments
  that hold garbage (or are small) and switches them in one transaction.
- **float32 on disk** (4 bytes per dimension): the exact answers equal the reference's; float16
  would halve the disk and the page cache but change scores by about 1e-4.
- **Search**: the filter is compiled to SQL, which gives the candidates (id, segment, row) from
  an index range scan. Up to :attr:`LocalStore.exact_limit` candidates (2,000) are scored
  exactly: their vectors read from the memory maps segment by segment, ties to the smaller id
  (the answers of :class:`~cerberus.store.memory.MemoryStore`). Beyond it a faiss IVF-SQ8 index
  (:mod:`cerberus.store.ann`) restricted to the candidates by an id bitmap proposes ``rerank``
  x k items, which are re-scored exactly: reading 100 vectors instead of thousands is what keeps
  a filtered search fast when the 10 GB of a million vectors do not all sit in the page cache.
  A filter keeping a large share of the gallery skips the list of its items: an unfiltered
  search for more candidates, those passing kept (:meth:`LocalStore._broad`). How many cells
  are probed is chosen from recall@10 measured on the gallery's own vectors when the index is
  built (:func:`cerberus.store.ann.AnnIndex.measure`, shown by ``cerberus gallery info``);
  where no setting reaches 0.95 the search is exact. ``exact=True`` / ``nprobe`` override it.
  It is (re)trained by :meth:`LocalStore.build_index` (``cerberus gallery compact``) or the
  first large unfiltered search (minutes at 1M); until then, searches with up to
  :data:`EXACT_WITHOUT_INDEX` candidates stay exact; searches only extend it.
- **Faults**: a process killed during an add leaves either the gallery as it was (a segment file
  nobody references, deleted by the next writer) or the whole batch. A full disk is one line
  naming the file and nothing changed. A second writer (another process) waits for the first,
  up to :data:`BUSY_TIMEOUT_S` seconds, then is refused with one line; readers never wait.
  Each segment's CRC-32 is recorded (``gallery`` key ``crc:<file>``) when it is written and
  checked on its first read in a process; :meth:`LocalStore.check` verifies everything. A
  folder that cannot be written is opened read-only (SQLite ``mode=ro``, else
  ``immutable=1``) and refuses writes in one line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from cerberus.store.ann import (
    ANN_META,
    BROAD_FRACTIONS,
    DESCRIPTION_QUERIES,
    AnnIndex,
    description_queries,
    handed_on,
    id_bitmap,
)
from cerberus.store.base import (
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
from cerberus.store.columns import Columns, bump_reshaped, state
from cerberus.store.pathcodec import decode, encode
from cerberus.store.rows import (
    COLUMNS,
    PATHS_SCHEMA,
    SCHEMA,
    compile_filter,
    info_of,
    info_rows,
    item_rows,
    items_of_rows,
)
from cerberus.store.segments import (
    GATHER_CHUNK,
    SegmentMissing,
    Segments,
    is_disk_full,
    run_breaks,
    segment_blocks,
    write_segment,
)
from cerberus.store.topk import exact_top_k

MARKER = "cerberus-gallery.json"
DATABASE = "items.sqlite"
VECTORS = "vectors"
ANN = "ann"
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's write before it is refused."""

EXACT_LIMIT = 2_000
"""Searches with at most this many candidates are exact; beyond, the approximate index restricted
to the candidates is faster (docs/benchmarks.md §8, its crossover table), at the recall measured
when it was built."""
EXACT_WITHOUT_INDEX = 200_000
"""Until the approximate index is built, filtered searches with up to this many candidates are
exact (rather than waiting minutes for the index)."""

SMALL_SEGMENT = 4096
"""Segments with fewer rows are merged by :meth:`LocalStore.compact` (and automatically once
there are more than :data:`MAX_SMALL_SEGMENTS` of them: an ingest adds one track at a time)."""
MAX_SMALL_SEGMENTS = 64
SEGMENT_ROWS = 131_072
"""Rows per segment written by a compaction."""


class _Selection:
    """The items passing a filter: the filter over the filter columns (nothing per item is
    built until asked: a filter keeping 900,000 of a million costs its count, from the
    columns' counts per camera and source, and a check of the candidates drawn), or SQL's
    located items (ids in id order, seg positions, rows, files)."""

    def __init__(self, cols: Columns | None = None, where=None, files=None, located=None):
        self.cols, self.where, self.files, self._located = cols, where, files, located
        self._keep: np.ndarray | None = None
        timed = where is not None and (where.after is not None or where.before is not None)
        if located is not None:
            self.n = len(located[0])
        elif timed:  # counted from the mask, which is kept
            self._keep = cols.keep(where)
            self.n = int(self._keep.sum())
        else:
            self.n = cols.count(where)
        self._ids: np.ndarray | None = None

    @property
    def keep(self) -> np.ndarray:
        """``(n items,)`` bool over the columns: which pass (computed at the first need)."""
        if self._keep is None:
            self._keep = self.cols.keep(self.where)
        return self._keep

    def _kept(self, at: np.ndarray) -> np.ndarray:
        """Which of the column positions ``at`` pass (the mask where it is built, else the
        filter checked at those positions only)."""
        return self._keep[at] if self._keep is not None else self.cols.keep(self.where, at)

    def ids(self) -> np.ndarray:
        """The passing ids, in id order."""
        if self._ids is None:
            self._ids = self.cols.ids[self.keep] if self._located is None else self._located[0]
        return self._ids

    def located(self) -> tuple:
        """(ids, seg positions, rows, files) of every passing item."""
        if self._located is None:
            self._located = LocalStore._located(self.cols, np.flatnonzero(self.keep), self.files)
        return self._located

    def _positions(self, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions into the columns (or the located ids) of ``found`` and which are there."""
        ids = self.cols.ids if self.cols is not None else self._located[0]
        if len(ids) == 0:
            return np.zeros(found.shape, np.int64), np.zeros(found.shape, bool)
        at = np.clip(np.searchsorted(ids, found), 0, len(ids) - 1)
        return at, ids[at] == found

    def member(self, found: np.ndarray) -> np.ndarray:
        """Which of ``found`` (any shape) pass."""
        at, there = self._positions(found)
        if self.cols is None:
            return there
        out = np.zeros(found.shape, bool)
        out[there] = self._kept(at[there])
        return out

    def locate(self, found: np.ndarray) -> tuple:
        """(ids, seg positions, rows, files) of the passing items among ``found``."""
        wanted = np.unique(found[found >= 0])
        at, there = self._positions(wanted)
        if self.cols is None:
            ids, seg, row, files = self._located
            at = at[there]
            return ids[at], seg[at], row[at], files
        at = at[there]
        at = at[self._kept(at)]
        return LocalStore._located(self.cols, at, self.files)


class LocalStore:
    """A gallery in a local folder: SQLite metadata + memory-mapped vector segments + a faiss
    cache (see the module's text). Open with :meth:`create` or :meth:`open`; safe to use from
    several threads (one SQLite connection per thread) and several processes."""

    def __init__(
        self,
        folder: Path,
        *,
        exact_limit: int = EXACT_LIMIT,
        nprobe: int = 32,
        rerank: int = 10,
        verify: bool = True,
    ) -> None:
        """``verify``: check each segment's CRC-32 on its first read in this process (reads
        the whole segment once: about 3 GB/s); ``False`` skips it (a benchmark timing cold
        reads). :meth:`check` always verifies."""
        self.folder = Path(folder)
        self.name = str(self.folder)
        self.exact_limit = exact_limit
        self.rerank = rerank
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._closed = False
        db = self.folder / DATABASE
        self.read_only = self.folder.is_dir() and not (
            os.access(self.folder, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))
        )
        """Whether the folder (or its database) cannot be written: then it is opened for
        reading only (SQLite ``mode=ro``) and every write is refused with one line."""
        self.info = self._read_info()
        self._segments = Segments(
            self.folder / VECTORS,
            self.info.dim,
            self._checksum if verify else None,
            f"; `cerberus gallery check {self.name}` lists every damaged file",
        )
        self._ann = AnnIndex(
            self.folder / ANN, self.info.dim, nprobe=nprobe, prototypes=self.info.prototypes
        )
        self._columns: Columns | None = None
        """The filter columns in memory (:mod:`cerberus.store.columns`), read at first use."""
        self._columns_lock = threading.Lock()
        self._measuring: threading.Thread | None = None
        self.measure_error: str | None = None
        """Why the last background recall measurement failed (``None``: it did not)."""

    @property
    def nprobe(self) -> int:
        """Cells the approximate index probes where its recall has not been measured (an
        index built by an older version, until its first use measures it); otherwise the
        measured setting applies, and ``search(..., nprobe=)`` overrides both."""
        return self._ann.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if int(value) < 1:
            raise StoreError(f"{self.name}: nprobe {value} must be at least 1")
        self._ann.nprobe = int(value)

    # ---- opening

    @classmethod
    def create(cls, folder: str | Path, info: GalleryInfo, **options) -> LocalStore:
        """A new empty gallery in ``folder`` (which must not exist, or be empty). It is built in
        a hidden folder beside it and renamed into place, so another process never sees half a
        gallery; of two processes creating one gallery at once, the second is refused with
        "exists" (:func:`~cerberus.store.open.open_or_create` then opens the first's)."""
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise StoreError(f"{folder}: exists and is not an empty folder; not creating a gallery")
        if int(info.dim) <= 0:
            raise StoreError(f"{folder}: vector dimension {info.dim} must be positive")
        building = folder.with_name(f".{folder.name}.creating-{uuid.uuid4().hex[:12]}")
        try:
            (building / VECTORS).mkdir(parents=True)
            (building / ANN).mkdir()
            conn = sqlite3.connect(building / DATABASE, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN")
                for statement in (SCHEMA + PATHS_SCHEMA).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany("INSERT INTO gallery VALUES (?, ?)", info_rows(info))
                conn.execute("COMMIT")
            finally:
                conn.close()
            marker = {"format": "cerberus-gallery", "version": STORE_FORMAT_VERSION}
            (building / MARKER).write_text(json.dumps({**marker, "backend": "local"}))
            try:
                building.rename(folder)  # atomic; replaces an empty folder, not a full one
            except OSError as e:
                if folder.is_dir() and any(folder.iterdir()):
                    raise StoreError(
                        f"{folder}: exists and is not an empty folder; not creating a gallery"
                    ) from None
                raise e
        except OSError as e:
            why = "disk full" if is_disk_full(e) else e.strerror or str(e)
            raise StoreError(f"{folder}: cannot create the gallery ({why})") from None
        finally:
            if building.exists():
                shutil.rmtree(building, ignore_errors=True)
        return cls(folder, **options)

    @classmethod
    def open(cls, folder: str | Path, **options) -> LocalStore:
        """The gallery in ``folder``; a folder that is not a gallery, one written by a newer
        version and a corrupted database are refused with one line."""
        return cls(Path(folder), **options)

    def _read_info(self) -> GalleryInfo:
        folder = self.folder
        if not folder.is_dir():
            raise StoreError(f"{folder}: no such gallery folder")
        try:
            marker = json.loads((folder / MARKER).read_text())
            version = int(marker["version"])
            if marker.get("format") != "cerberus-gallery":
                raise ValueError
        except FileNotFoundError:
            raise StoreError(
                f"{folder}: not a gallery (no {MARKER}); create one with a new folder"
            ) from None
        except (OSError, ValueError, KeyError, TypeError):
            raise StoreError(f"{folder}/{MARKER}: unreadable gallery marker") from None
        if version > STORE_FORMAT_VERSION:
            raise StoreError(
                f"{folder}: gallery format version {version} was written by a newer Cerberus "
                f"(this one reads up to {STORE_FORMAT_VERSION}); upgrade Cerberus"
            )
        db = folder / DATABASE
        if not db.is_file():
            raise StoreError(f"{folder}: not a gallery (no {DATABASE})")
        try:
            rows = dict(self._conn().execute("SELECT key, value FROM gallery").fetchall())
        except sqlite3.Error as e:
            if "no such table" not in str(e):
                raise self._db_error(e, "opening") from None
            if db.stat().st_size == 0:
                raise StoreError(
                    f"{db}: the gallery's database is empty (0 bytes): truncated or damaged; "
                    "restore it from a backup"
                ) from None
            raise StoreError(
                f"{db}: the gallery's database is damaged ({e}); restore it from a backup"
            ) from None
        try:
            return info_of(rows)
        except (KeyError, ValueError, TypeError, OSError) as e:
            raise StoreError(f"{folder}/{DATABASE}: unreadable gallery facts ({e})") from None

    # ---- connections and transactions

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.name}: the gallery is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
                conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise self._db_error(e, "opening") from None
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    def _connect(self) -> sqlite3.Connection:
        """A new connection: read-write, or for a :attr:`read_only` folder read-only
        (``mode=ro``; where SQLite cannot make the WAL's shared-memory file there either,
        ``immutable=1``: the database as its last writer left it)."""
        options = {"isolation_level": None, "timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
        db = self.folder / DATABASE
        if not self.read_only:
            return sqlite3.connect(db, **options)
        uri = db.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, **options)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        return sqlite3.connect(uri + "&immutable=1", uri=True, **options)

    def _checksum(self, name: str) -> int | None:
        """The CRC-32 recorded for segment file ``name`` (``None``: written before checksums)."""
        with self._reading() as conn:
            value = self._fact(conn, f"crc:{name}")
        return None if value is None else int(value)

    def _db_error(self, e: sqlite3.Error, doing: str) -> StoreError:
        path = self.folder / DATABASE
        if is_disk_full(e):
            return StoreError(f"{self.name}: disk full while {doing}; the gallery is unchanged")
        if "locked" in str(e) or "busy" in str(e):
            return StoreError(
                f"{self.name}: another process is writing to this gallery (waited "
                f"{BUSY_TIMEOUT_S:.0f} s while {doing}); try again when it has finished"
            )
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            return StoreError(f"{path}: corrupted or not a gallery database ({e})")
        return StoreError(f"{path}: {e} while {doing}")

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; SQLite errors become one line."""
        try:
            yield self._conn()
        except sqlite3.Error as e:
            raise self._db_error(e, "reading") from None

    @contextlib.contextmanager
    def _writing(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock taken at once, a second
        writer waits); rolled back on any error."""
        if self.read_only:
            raise StoreError(
                f"{self.name}: the gallery folder is read-only (opened for reading); {doing} "
                "needs write permission on the folder and its files"
            )
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._db_error(e, doing) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise self._db_error(e, doing) from None
            raise

    def _fact(self, conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
        row = conn.execute("SELECT value FROM gallery WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @staticmethod
    def _add_to_count(conn: sqlite3.Connection, change: int) -> None:
        """Keep the item count as a fact (``count()`` without a filter reads it: no scan)."""
        conn.execute(
            "INSERT INTO gallery VALUES ('count', ?) ON CONFLICT (key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value",
            (int(change),),
        )

    def _segment_files(self, conn: sqlite3.Connection) -> dict[int, str]:
        return dict(conn.execute("SELECT seg, file FROM segments").fetchall())

    def _clean_orphans(self, conn: sqlite3.Connection) -> None:
        """Delete segment files no transaction references (left by a killed writer). Called with
        the write lock held, so no other writer is between its file and its commit."""
        known = set(self._segment_files(conn).values())
        for path in (self.folder / VECTORS).iterdir():
            if path.name not in known:
                path.unlink(missing_ok=True)

    @staticmethod
    def _has_paths(conn: sqlite3.Connection) -> bool:
        """Whether the gallery has its paths table (one written before paths existed has not)."""
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'paths'"
        ).fetchone()
        return row is not None

    def _delete_paths(self, conn: sqlite3.Connection, column: str, value: str) -> None:
        if self._has_paths(conn):
            conn.execute(f"DELETE FROM paths WHERE {column} = ?", (value,))

    # ---- writing

    def add(
        self,
        items: Items,
        *,
        replace: bool = False,
        complete: bool = True,
        paths: Sequence[TrackPath] = (),
    ) -> np.ndarray:
        items.check()
        n = len(items)
        if items.vectors.shape[1] != self.info.dim:
            raise StoreError(
                f"{self.name}: vectors of dimension {items.vectors.shape[1]}, "
                f"the gallery holds {self.info.dim}"
            )
        batch_sources = sorted(set(items.source))
        path_rows = [
            (p.source, p.camera, int(p.track), int(p.frames[0]) if len(p) else 0, len(p))
            + (encode(p),)
            for p in paths
        ]
        seg_file = self.folder / VECTORS / f"seg-{uuid.uuid4().hex[:16]}.npy"
        doing = f"adding {n} items"
        try:
            with self._writing(doing) as conn:
                self._clean_orphans(conn)
                attrs = self._fact(conn, "num_attributes")
                if n and attrs is not None and int(attrs) != items.values.shape[1]:
                    raise StoreError(
                        f"{self.name}: items with {items.values.shape[1]} attributes, the "
                        f"gallery holds {attrs}"
                    )
                done = [
                    s
                    for (s,) in conn.execute(
                        "SELECT name FROM sources WHERE complete AND name IN "
                        "(SELECT value FROM json_each(?)) ORDER BY name",
                        (json.dumps(sorted(set(batch_sources) | {p.source for p in paths})),),
                    )
                ]
                if done and not replace:
                    raise StoreError(
                        f"{self.name}: source {done[0]} is already in the gallery "
                        "(remove it first, or replace it)"
                    )
                replaced = 0
                if done:
                    bump_reshaped(conn)
                for s in done:
                    replaced += conn.execute("DELETE FROM items WHERE source = ?", (s,)).rowcount
                    conn.execute("DELETE FROM sources WHERE name = ?", (s,))
                    self._delete_paths(conn, "source", s)
                if path_rows:
                    # one statement at a time (executescript would commit the transaction)
                    for statement in PATHS_SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.executemany(
                        "INSERT INTO paths (source, camera, track, first, n, data) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        path_rows,
                    )
                self._add_to_count(conn, n - replaced)
                first = int(self._fact(conn, "next_id", "0"))
                ids = np.arange(first, first + n, dtype=np.int64)
                if n:
                    crc = write_segment(seg_file, items.vectors)
                    seg = conn.execute(
                        "INSERT INTO segments (file, rows) VALUES (?, ?)", (seg_file.name, n)
                    ).lastrowid
                    conn.execute(
                        "INSERT INTO gallery VALUES (?, ?)", (f"crc:{seg_file.name}", str(crc))
                    )
                    conn.executemany(
                        f"INSERT INTO items ({COLUMNS}, seg, row) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        item_rows(items, ids, seg),
                    )
                    conn.execute(
                        "INSERT OR REPLACE INTO gallery VALUES ('num_attributes', ?)",
                        (str(items.values.shape[1]),),
                    )
                conn.executemany(
                    "INSERT INTO sources (name, complete) VALUES (?, ?) ON CONFLICT (name) "
                    "DO UPDATE SET complete = max(complete, excluded.complete)",
                    [(s, int(complete)) for s in batch_sources],
                )
                conn.execute(
                    "UPDATE gallery SET value = ? WHERE key = 'next_id'", (str(first + n),)
                )
        except StoreError:
            seg_file.unlink(missing_ok=True)
            raise
        except OSError as e:
            seg_file.unlink(missing_ok=True)
            if is_disk_full(e):
                raise StoreError(
                    f"{self.name}: disk full while {doing}; the gallery is unchanged "
                    f"({e.filename or seg_file}: no space left; free some and add again)"
                ) from None
            raise StoreError(
                f"{self.name}: {e.strerror or e} while {doing}; the gallery is unchanged"
            ) from None
        except BaseException:
            seg_file.unlink(missing_ok=True)
            raise
        self._maybe_merge_small()
        return ids

    def finish(self, source: str) -> None:
        with self._writing(f"finishing {source}") as conn:
            conn.execute(  # a source with no items (a video with nobody in it) is recorded
                "INSERT INTO sources (name, complete) VALUES (?, 1) ON CONFLICT (name) "
                "DO UPDATE SET complete = 1",
                (source,),
            )

    def remove(
        self, *, source: str | None = None, camera: str | None = None, before: float | None = None
    ) -> int:
        if (source is None) == (camera is None):
            raise StoreError(f"{self.name}: remove by source or by camera (one of them)")
        if before is not None and camera is None:
            raise StoreError(f"{self.name}: remove before a time is by camera only")
        doing = f"removing {'source ' + source if source is not None else 'camera ' + camera}"
        with self._writing(doing) as conn:
            bump_reshaped(conn)
            if source is not None:
                gone = conn.execute("DELETE FROM items WHERE source = ?", (source,)).rowcount
                conn.execute("DELETE FROM sources WHERE name = ?", (source,))
                self._delete_paths(conn, "source", source)
            else:
                old = "camera = ?" + ("" if before is None else " AND ts < ?")
                params = (camera,) if before is None else (camera, float(before))
                q = f"SELECT DISTINCT source, source FROM items WHERE {old}"
                touched = conn.execute(q, params).fetchall()  # sources with items there
                gone = conn.execute(f"DELETE FROM items WHERE {old}", params).rowcount
                if before is None:
                    self._delete_paths(conn, "camera", camera)
                elif self._has_paths(conn):  # a track's path goes with its last item
                    conn.execute(
                        "DELETE FROM paths WHERE camera = ? AND NOT EXISTS (SELECT 1 FROM items "
                        "i WHERE i.source = paths.source AND i.track = paths.track)",
                        (camera,),
                    )
                if before is None:  # those left empty go; finished empty sources stay
                    conn.executemany(
                        "DELETE FROM sources WHERE name = ? AND NOT EXISTS "
                        "(SELECT 1 FROM items WHERE source = ?)",
                        touched,
                    )  # (after retention a source stays recorded, done or not)
            self._add_to_count(conn, -gone)
        return int(gone)

    def compact(self, *, small_only: bool = False) -> int:
        """Rewrite the segments holding removed items' vectors (and merge small segments) into
        new ones, switched in by one transaction; returns the number of rows dropped. With
        ``small_only``, only segments under :data:`SMALL_SEGMENT` rows are merged."""
        dropped = 0
        new_files: list[Path] = []
        old_files: list[str] = []
        try:
            with self._writing("compacting") as conn:
                self._clean_orphans(conn)
                files = self._segment_files(conn)
                sizes = dict(conn.execute("SELECT seg, rows FROM segments").fetchall())
                live = dict(conn.execute("SELECT seg, COUNT(*) FROM items GROUP BY seg").fetchall())
                redo = [
                    s
                    for s in sorted(files)
                    if sizes[s] < SMALL_SEGMENT or (not small_only and live.get(s, 0) < sizes[s])
                ]
                if len(redo) < 2 and all(live.get(s, 0) == sizes[s] for s in redo):
                    return 0
                ids, seg, row = self._locate(
                    conn, "seg IN (SELECT value FROM json_each(?))", [json.dumps(redo)]
                )
                order = np.argsort(ids)
                ids, seg, row = ids[order], seg[order], row[order]
                names = [files[s] for s in sorted(files)]
                index_of = {s: i for i, s in enumerate(sorted(files))}
                seg_pos = np.array([index_of[int(s)] for s in seg], dtype=np.int64)
                updates = []
                for start in range(0, len(ids), SEGMENT_ROWS):
                    sl = slice(start, start + SEGMENT_ROWS)
                    path = self.folder / VECTORS / f"seg-{uuid.uuid4().hex[:16]}.npy"
                    new_files.append(path)
                    crc = write_segment(path, self._segments.gather(names, seg_pos[sl], row[sl]))
                    new = conn.execute(
                        "INSERT INTO segments (file, rows) VALUES (?, ?)",
                        (path.name, len(ids[sl])),
                    ).lastrowid
                    conn.execute(
                        "INSERT INTO gallery VALUES (?, ?)", (f"crc:{path.name}", str(crc))
                    )
                    updates += [(new, r, int(i)) for r, i in enumerate(ids[sl])]
                conn.executemany("UPDATE items SET seg = ?, row = ? WHERE id = ?", updates)
                bump_reshaped(conn)
                conn.executemany("DELETE FROM segments WHERE seg = ?", [(s,) for s in redo])
                conn.executemany(
                    "DELETE FROM gallery WHERE key = ?", [(f"crc:{files[s]}",) for s in redo]
                )
                dropped = sum(sizes[s] for s in redo) - len(ids)
                old_files = [files[s] for s in redo]
        except BaseException as e:
            for path in new_files:
                path.unlink(missing_ok=True)
            if isinstance(e, OSError):
                why = "disk full" if is_disk_full(e) else e.strerror or str(e)
                where = f" ({e.filename})" if e.filename else ""
                raise StoreError(
                    f"{self.name}: {why} while compacting{where}; the gallery is unchanged"
                ) from None
            raise
        for name in old_files:
            (self.folder / VECTORS / name).unlink(missing_ok=True)
        self._segments.forget(set(self._files_now()))
        return dropped

    def _files_now(self) -> list[str]:
        with self._reading() as conn:
            return list(self._segment_files(conn).values())

    def _maybe_merge_small(self) -> None:
        with self._reading() as conn:
            small = conn.execute(
                "SELECT COUNT(*) FROM segments WHERE rows < ?", (SMALL_SEGMENT,)
            ).fetchone()[0]
        if small > MAX_SMALL_SEGMENTS:
            self.compact(small_only=True)

    # ---- reading

    def _locate(
        self, conn: sqlite3.Connection, condition: str, params: list
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, seg, row) of the items passing the SQL ``condition``: one text of numbers
        made by SQLite and parsed by NumPy (no Python object per item)."""
        text = conn.execute(
            f"SELECT group_concat(id || ',' || seg || ',' || row) FROM items WHERE {condition}",
            params,
        ).fetchone()[0]
        if not text:
            return (np.zeros(0, np.int64),) * 3
        a = np.fromstring(text, dtype=np.int64, sep=",").reshape(-1, 3)
        return a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy()

    def _snapshot(self, where: Filter | None):
        """Candidates (ids, seg positions, rows) passing ``where`` and the segment files: from
        the filter columns in memory (:meth:`_filter_columns`), or SQL for a tracks filter."""
        got = self._filter_columns() if Columns.supports(where) else None
        if got is None:
            return self._snapshot_where(*compile_filter(where))
        cols, files = got
        return self._located(cols, cols.positions(where), files)

    def _all_items(self):
        """(ids, seg positions, rows, files) of every item, for a build or a measurement: from
        the filter columns when this process holds them, else from SQL's ids and places only
        (a build needs no camera, source or time: reading them costs a second at a million)."""
        with self._columns_lock:
            held = self._columns is not None
        return self._snapshot(None) if held else self._snapshot_where("1", [])

    def _lookup(self, wanted: np.ndarray, where: Filter | None = None):
        """(ids, seg positions, rows, files) of the ids ``wanted`` that are held and pass
        ``where``."""
        got = self._filter_columns() if Columns.supports(where) else None
        if got is None:
            condition, params = compile_filter(where)
            return self._snapshot_where(
                f"id IN (SELECT value FROM json_each(?)) AND ({condition})",
                [json.dumps(np.unique(wanted).tolist()), *params],
            )
        cols, files = got
        return self._located(cols, cols.lookup(wanted, where), files)

    @staticmethod
    def _located(cols: Columns, at: np.ndarray, files: dict[int, str]):
        keys = np.array(sorted(files), np.int64)
        seg = np.searchsorted(keys, cols.seg[at])
        return cols.ids[at], seg, cols.row[at], [files[int(s)] for s in keys]

    def _filter_columns(self) -> tuple[Columns, dict[int, str]] | None:
        """The filter columns as of the gallery's committed state, with the segment files of
        that state (read again where a write came between; ``None`` if writes keep coming:
        the caller asks SQL)."""
        for _ in range(3):
            with self._reading() as conn:
                conn.execute("BEGIN")
                try:
                    now = state(conn)
                    files = self._segment_files(conn)
                finally:
                    conn.execute("COMMIT")
            with self._columns_lock:
                cols = self._columns
                if cols is None or cols.state != now:
                    since = cols if cols is not None and cols.appended(now) else None
                    with self._reading() as conn:
                        cols = Columns.read(conn, since)
                    self._columns = cols
            if cols.state == now:
                return cols, files
        return None

    def _snapshot_where(self, condition: str, params: list):
        """(ids, seg positions, rows) of the items passing the SQL ``condition`` and the segment
        files they index, read in one read transaction (a consistent snapshot)."""
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                files = self._segment_files(conn)
                ids, seg, row = self._locate(conn, condition, params)
            finally:
                conn.execute("COMMIT")
        keys = np.array(sorted(files), np.int64)
        order = np.argsort(ids, kind="stable")  # in id order, as the filter columns give them
        ids, seg, row = ids[order], seg[order], row[order]
        return ids, np.searchsorted(keys, seg), row, [files[int(s)] for s in keys]

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
        """Per query ``(Q, D)``, the top-k items passing ``where`` (module text). ``exact``:
        never the approximate index; ``nprobe``: the cells it probes (the measured setting by
        default, :mod:`cerberus.store.ann`); ``kind="description"``: the queries are attribute
        queries' SID vectors, answered from the SID columns (:mod:`cerberus.store.sidcolumns`;
        given ``nprobe``, through the index like a photo)."""
        nprobe = check_nprobe(nprobe, self.name)
        check_query_kind(kind, self.name)
        q, k = check_search(self.name, queries, k, self.info.dim)
        if not len(q):
            return []
        for attempt in range(3):
            try:
                return self._search(q, k, where, bool(exact), nprobe, kind)
            except SegmentMissing as e:
                if e.file in self._files_now():
                    raise  # still referenced: the file is gone (deleted), not switched
                # a compaction switched segments between our snapshot and our read: read again
                if attempt == 2:
                    raise StoreError(
                        f"{self.name}: segments keep changing under the search"
                    ) from None
        raise AssertionError("unreachable")

    def _search(
        self,
        q: np.ndarray,
        k: int,
        where: Filter | None,
        exact: bool,
        nprobe: int | None,
        kind: str = "photo",
        broad: bool = True,
    ) -> list[Hits]:
        empty = [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in q]
        if k <= 0:
            return empty
        unfiltered = where is None or where.empty
        total = self.count()
        indexed = (
            not exact
            and total > self.exact_limit
            and (total > EXACT_WITHOUT_INDEX or self._ann_exists())
        )
        described = kind == "description" and nprobe is None  # the SID columns answer it
        if indexed and unfiltered and not described:
            found = self._ann_candidates(q, k, None, total, total, nprobe)
            if found is not None:
                hits = self._rerank(q, k, found)
                if all(len(h) >= min(k, total) for h in hits):
                    return hits
                # removed items still in the index crowded the live ones out: restrict to these
        sel = self._select(where)
        if sel.n == 0:
            return empty
        if (
            not indexed
            or sel.n <= self.exact_limit
            or (sel.n <= EXACT_WITHOUT_INDEX and not self._ann_exists())
        ):
            ids, seg, row, files = sel.located()
            return exact_top_k(q, segment_blocks(self._segments, files, ids, seg, row), k)
        if described:
            hits = self._described(q, k, sel, total)
            if hits is None:  # no columns, or a query that is no description: exact
                ids, seg, row, files = sel.located()
                return exact_top_k(q, segment_blocks(self._segments, files, ids, seg, row), k)
            return hits
        if not unfiltered and broad:
            hits = self._broad(q, k, where, sel, total, nprobe)
            if hits is not None:
                return hits
        ids = sel.ids()
        found = self._ann_candidates(q, k, (id_bitmap(ids), ids), len(ids), total, nprobe)
        if found is None:  # measured: no probing reaches the target under a filter
            ids, seg, row, files = sel.located()
            return exact_top_k(q, segment_blocks(self._segments, files, ids, seg, row), k)
        return self._rerank(q, k, found, sel.locate(found))

    def _select(self, where: Filter | None) -> _Selection:
        """The items passing ``where``: from the filter columns, or SQL (a tracks filter)."""
        got = self._filter_columns() if Columns.supports(where) else None
        if got is None:
            return _Selection(located=self._snapshot_where(*compile_filter(where)))
        cols, files = got
        return _Selection(cols=cols, where=where, files=files)

    def _broad(
        self, q: np.ndarray, k: int, where: Filter, sel: _Selection, total: int, nprobe: int | None
    ) -> list[Hits] | None:
        """The broad-filter path (``None`` where it does not apply): for a filter keeping a
        share ``s`` of the index's items (the ``located`` passing items, from the filter
        columns) of at least :data:`~cerberus.store.ann.BROAD_FRACTIONS`' smallest, one
        unfiltered index search draws ``k rerank / s`` candidates with the nprobe measured for
        that share, and those passing are re-ranked exactly (the measured setting holds their
        top-10). A query for which fewer than k pass, or whose share of passing items among
        those drawn is under both 3/4 of ``s`` and the fraction whose setting was taken (a
        filter that keeps few items near it), is answered by the id-bitmap path.

        Why both: a setting measured at fraction ``f`` finds the top-10 of a filter keeping
        ``f`` of the items around a query; a filter keeping a share ``s >= f`` overall but
        ``s' >= f`` near the query is, near it, such a filter (its top-10 lie within the
        nearest ``10 / s'`` items, inside the ``k rerank / s`` drawn since fractions are about
        1.6x apart). Under 3/4 of ``s`` alone a query is merely unlikely for a random filter
        (the benchmark's generator, whose cameras shift the vectors a little, has such queries
        under every filter), and answering it twice, broad then id-bitmap, makes the slowest
        searches."""
        with self._ann.lock:
            ann = self._ann_ready(total)
            held = max(ann.index.ntotal, 1)
            share = sel.n / held
            setting = ann.broad_setting(share)
            if share < min(BROAD_FRACTIONS) or (setting is None and nprobe is None):
                return None
            measured, probes = setting if setting is not None else (share, 0)
            probes = nprobe or probes
            found = ann.search(q, min(held, math.ceil(k * self.rerank / share) + 1), probes)
        passing = np.where(sel.member(found), found, -1)
        got, drawn = (passing >= 0).sum(axis=1), (found >= 0).sum(axis=1)
        short = handed_on(got, drawn, k, share, measured)
        hits: list[Hits] = [None] * len(q)  # type: ignore[list-item]
        kept = np.flatnonzero(~short)  # the others are answered again: not re-ranked here
        if len(kept):
            ranked = self._rerank(q[kept], k, passing[kept], sel.locate(passing[kept]))
            for r, h in zip(kept, ranked):
                hits[r] = h
        if len(kept) < len(q):
            rest = self._search(q[short], k, where, False, nprobe, broad=False)
            for r, h in zip(np.flatnonzero(short), rest):
                hits[r] = h
        return hits

    def _described(self, q: np.ndarray, k: int, sel: _Selection, total: int) -> list[Hits] | None:
        """Description queries among the ``sel`` items from the SID columns: each query's
        ``k rerank`` best by the columns' sums (the same inner products, method §5.2),
        re-ranked exactly. ``None`` where the columns cannot answer (none, not trusted by the
        last measurement, or a query that is no description)."""
        with self._ann.lock:
            ann = self._ann_ready(total)
            if not ann.sids_trusted():
                return None
            start = ann.sid_missing()  # reads sid.npy at the first description query
            if start is not None:  # an index saved without them: fill them from the vectors
                got = self._snapshot_where("id >= ? AND id < ?", [start, ann.covered])
                ids, seg, row, files = got
                for a in range(0, len(ids), GATHER_CHUNK):
                    b = slice(a, a + GATHER_CHUNK)
                    ann.sids.add(ids[b], self._segments.gather(files, seg[b], row[b]))
                ann.sids.add(ids[:0], np.zeros((0, self.info.dim), np.float32), rows=ann.covered)
            passing = sel.ids()
            if int(passing.max()) >= ann.sids.rows:  # added after the index: not in the columns
                return None
            found = ann.sids.top(q, min(sel.n, k * self.rerank), passing)
        if found is None:
            return None
        return self._rerank(q, k, found, sel.locate(found))

    def _ann_exists(self) -> bool:
        """Whether the approximate index is loaded or its cache file can be read."""
        with self._ann.lock:
            return self._ann.index is not None or self._ann.load()

    def _ann_ready(self, total: int, retrain: bool = False) -> AnnIndex:
        """The approximate index, loaded (built when there is none) and extended to the
        committed items; retrained (``retrain``) when :meth:`AnnIndex.stale`; its recall
        measured when it never was or the gallery grew (or shrank) by a tenth since
        (:meth:`AnnIndex.measure`): at once when there are no settings yet or ``retrain`` is
        asked (:meth:`build_index`), otherwise in the background while searches go on with
        the settings measured before (:meth:`_measure_later`). A search never retrains: at
        1M x 2560 that takes minutes (:meth:`build_index` does)."""
        ann = self._ann
        if ann.index is None:
            ann.load()
        if ann.index is None or (retrain and ann.stale(total)):
            checking = self._check_ahead()  # the files' checksums read while SQL reads places
            items = self._all_items()
            checking.join()
            ids, seg, row, files = items
            ann.build(ids, self._reader(files, seg, row, view=False))
            written = ann.write_ahead()  # the index file written while its recall is measured
            try:
                self._measure(ann, items=items)
            except BaseException:
                written.discard()
                raise
            ann.save(written)
        else:
            ids, seg, row, files = self._snapshot_where("id >= ?", [ann.covered])
            if len(ids):
                ann.extend(ids, self._reader(files, seg, row, view=False))
            if ann.unmeasured(total) and (ann.recall is None or retrain):  # measure now
                self._measure(ann)
                ann.save()
            elif ann.unmeasured(total):
                self._measure_later()
            elif len(ids) > 0.1 * ann.trained_on:
                ann.save()
        return ann

    def _check_ahead(self) -> threading.Thread:
        """Map every segment file, and so check its CRC-32 (:meth:`Segments.map`), in a thread
        of its own: a build's SQL read of the items' places and the checksums' read of the
        files overlap (each about a second at 1M x 640). A fault is left to the read that
        meets it again (:meth:`Segments.gather`), which reports it."""
        names = self._files_now()

        def run() -> None:
            for name in names:
                try:
                    self._segments.map(name)
                except StoreError:
                    return

        thread = threading.Thread(target=run, name="cerberus-check-segments", daemon=True)
        thread.start()
        return thread

    def _measure_later(self) -> None:
        """Measure the index's recall again in a thread of its own (searches go on with the
        settings measured before; the index lock is taken only around each of its index
        searches), then save it; one at a time. :meth:`close` waits for it."""
        if self._measuring is not None and self._measuring.is_alive():
            return
        ann = self._ann

        def run() -> None:
            try:
                self._measure(ann, lock=ann.lock)
                with ann.lock:
                    ann.save()
            except (StoreError, OSError, RuntimeError, ValueError) as e:
                self.measure_error = f"{self.name}: recall not measured again ({e})"

        self._measuring = threading.Thread(target=run, name="cerberus-measure-recall")
        self._measuring.start()

    def wait_measured(self) -> None:
        """Wait for a recall measurement running in the background (:meth:`_measure_later`)."""
        if self._measuring is not None:
            self._measuring.join()

    def _reader(self, files: list[str], seg: np.ndarray, row: np.ndarray, view: bool = True):
        """Positions into the items at (``seg``, ``row``) -> their vectors: with ``view``, a
        read-only view of the segment's memory map where they are one run of it
        (:meth:`Segments.gather`; the exact answers' pass), else a copy (faiss's adds: faster
        from a copy, ``benchmarks/profile_build.py``)."""
        return lambda p: self._segments.gather(files, seg[p], row[p], view=view)

    def _measure(self, ann: AnnIndex, lock=None, items=None) -> None:
        """Measure the index's recall on the gallery's own items (``items``: as
        :meth:`_all_items` gives them, read again when not given) and description queries."""
        ids, seg, row, files = self._all_items() if items is None else items
        if len(ids) == 0:
            return
        descriptions = description_queries(
            self.info.prototypes, self.info.dim, DESCRIPTION_QUERIES, ann.seed
        )
        ann.measure(
            ids,
            self._reader(files, seg, row),
            breaks=run_breaks(seg, row),
            descriptions=descriptions,
            rerank=self.rerank,
            min_filtered=self.exact_limit,
            lock=lock,
        )

    def _ann_candidates(
        self,
        q: np.ndarray,
        k: int,
        within: tuple[np.ndarray, np.ndarray] | None,
        n: int,
        total: int,
        nprobe: int | None = None,
    ) -> np.ndarray | None:
        """``(Q, k * rerank)`` candidate ids (``-1`` padding) among the ``n`` items passing a
        filter, ``within`` = (their id bitmap, their ids) (``None``: any of the index, which
        may still hold removed items: then more candidates are drawn, in proportion).
        ``None`` where the measured recall says to search exactly (and no ``nprobe`` is
        given)."""
        with self._ann.lock:
            ann = self._ann_ready(total)
            held = ann.index.ntotal
            if within is None:
                if nprobe is None and ann.exact:
                    return None
                kk = min(held, math.ceil(k * self.rerank * held / max(total, 1)))
                found = ann.search(q, kk, nprobe)
                short = np.flatnonzero((found >= 0).sum(axis=1) < min(k, n))
                if len(short):  # the probed cells held too few candidates: probe them all
                    found[short] = ann.search(q[short], kk, ann.nlist)
                return found
            cover = ann.cover(n / max(held, 1))
            if nprobe is None and cover is None:
                return None
            bitmap, ids = within
            kk = min(n, k * self.rerank)
            found = ann.search_within(q, kk, bitmap, ids, cover=cover, nprobe=nprobe)
            short = np.flatnonzero((found >= 0).sum(axis=1) < min(k, n))
            if len(short):  # the probed cells held too few candidates: probe them all
                found[short] = ann.search_within(q[short], kk, bitmap, ids, cover=math.inf)
        return found

    def _rerank(self, q: np.ndarray, k: int, found: np.ndarray, located=None) -> list[Hits]:
        """Exact top-k of each query among its candidate ids ``found`` (``-1`` ignored), with
        their locations ``located`` = (ids in id order, seg positions, rows, files), or looked
        up."""
        if located is None:
            located = self._lookup(found[found >= 0])
        ids, seg, row, files = located  # in id order
        out = []
        for r, cand in enumerate(found):
            cand = cand[cand >= 0]
            at = np.clip(np.searchsorted(ids, cand), 0, max(len(ids) - 1, 0))
            pos = at[ids[at] == cand] if len(ids) else at[:0]
            blocks = segment_blocks(self._segments, files, ids[pos], seg[pos], row[pos])
            out.extend(exact_top_k(q[r : r + 1], blocks, k))
        return out

    def build_index(self) -> None:
        """Build the approximate index now (or retrain it when the gallery has grown
        :data:`~cerberus.store.ann.RETRAIN_GROWTH` times, or extend it to the new items) rather
        than at the first large unfiltered search; a no-op for galleries of at most
        ``exact_limit`` items. Until an index exists, filtered searches with up to
        :data:`EXACT_WITHOUT_INDEX` candidates are exact."""
        total = self.count()
        if total <= self.exact_limit:
            return
        self.wait_measured()
        with self._ann.lock:
            self._ann_ready(total, retrain=True)
            if self._ann.save_error:  # the index in memory answers; the next process rebuilds
                raise StoreError(
                    f"{self._ann.save_error}; the gallery's crops are unchanged: free some space "
                    "and compact again"
                )

    def check(self) -> tuple[list[str], dict[str, int]]:
        """Verify the whole gallery: the SQLite database (``PRAGMA integrity_check``), the item
        count, every item pointing into a segment, every segment file there, of the recorded
        shape, with the recorded CRC-32. Returns the faults, one line each naming the file, and
        what was checked (``segments``, ``items``, ``unchecked``: segments written before
        checksums, whose content cannot be verified)."""
        db = self.folder / DATABASE
        faults: list[str] = []
        with self._reading() as conn:
            verdict = [r[0] for r in conn.execute("PRAGMA integrity_check(5)").fetchall()]
            if verdict != ["ok"]:
                faults.append(f"{db}: database damaged ({'; '.join(verdict)[:200]})")
            conn.execute("BEGIN")
            try:
                segs = conn.execute("SELECT seg, file, rows FROM segments ORDER BY seg").fetchall()
                crcs = dict(conn.execute("SELECT key, value FROM gallery WHERE key LIKE 'crc:%'"))
                held = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
                counted = int(self._fact(conn, "count", "0"))
                outside = conn.execute(
                    "SELECT COUNT(*) FROM items i LEFT JOIN segments s ON s.seg = i.seg "
                    "WHERE s.seg IS NULL OR i.row < 0 OR i.row >= s.rows"
                ).fetchone()[0]
            finally:
                conn.execute("COMMIT")
        if held != counted:
            faults.append(f"{db}: {held} items held, {counted} recorded as the count")
        if outside:
            faults.append(f"{db}: {outside} items point outside their vector segments")
        plain = Segments(self.folder / VECTORS, self.info.dim, self._checksum)  # no hint
        for _, name, rows in segs:
            try:
                mm = plain.open(name)
            except StoreError as e:
                faults.append(str(e))
                continue
            if len(mm) != rows:
                path = self.folder / VECTORS / name
                faults.append(f"{path}: {len(mm)} vectors, the gallery recorded {rows}")
        unchecked = sum(f"crc:{name}" not in crcs for _, name, _ in segs)
        return faults, {"segments": len(segs), "items": int(held), "unchecked": unchecked}

    def index_facts(self) -> dict | None:
        """The approximate index as ``gallery info`` shows it (``None``: none built): items
        trained on, cells and the recall measured on this gallery (:meth:`AnnIndex.measure`);
        read from its small facts file, the index itself is not loaded."""
        try:
            meta = json.loads((self.folder / ANN / ANN_META).read_text())
        except (OSError, ValueError):
            return None
        recall = meta.get("recall")
        facts = {
            "items": int(meta.get("covered", 0)),
            "trained_on": int(meta.get("n", 0)),
            "nlist": None if recall is None else recall.get("nlist"),
            "recall": recall,
        }
        if recall is not None:
            probe = AnnIndex(self.folder / ANN, self.info.dim)
            probe.recall = recall
            if probe.unmeasured(self.count()):  # grew or shrank by a tenth since
                facts["due"] = True
        return facts

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._reading() as conn:
            conn.execute("BEGIN")
            try:
                files = self._segment_files(conn)
                rows = conn.execute(
                    f"SELECT {COLUMNS}, seg, row FROM items WHERE id IN "
                    "(SELECT value FROM json_each(?))",
                    (json.dumps([int(i) for i in ids]),),
                ).fetchall()
                attrs = int(self._fact(conn, "num_attributes", "0"))
            finally:
                conn.execute("COMMIT")
        by_id = {r[0]: r for r in rows}
        missing = [int(i) for i in ids if int(i) not in by_id]
        if missing:
            raise StoreError(f"{self.name}: no item {missing[0]}")
        ordered = [by_id[int(i)] for i in ids]
        keys = sorted(files)
        index_of = {s: i for i, s in enumerate(keys)}
        seg = np.array([index_of[r[12]] for r in ordered], np.int64)
        row = np.array([r[13] for r in ordered], np.int64)
        if vectors:
            vecs = self._segments.gather([files[s] for s in keys], seg, row)
        else:
            vecs = np.zeros((len(ordered), self.info.dim), np.float32)
        return items_of_rows(ordered, attrs, vecs)

    def paths(self, source: str | None = None, track: int | None = None) -> list[TrackPath]:
        clauses, params = [], []
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        if track is not None:
            clauses.append("track = ?")
            params.append(int(track))
        condition = " AND ".join(clauses) or "1"
        with self._reading() as conn:
            if not self._has_paths(conn):
                return []
            rows = conn.execute(
                f"SELECT source, camera, track, n, data FROM paths WHERE {condition} "
                "ORDER BY part",  # the order they were added in (join keeps the first of a frame)
                params,
            ).fetchall()
        parts: dict[tuple[str, int], list[TrackPath]] = {}
        for s, c, t, n, blob in rows:
            parts.setdefault((s, int(t)), []).append(decode(s, c, t, int(n), blob))
        return [TrackPath.join(p) for _, p in sorted(parts.items())]

    def ids(self, where: Filter | None = None) -> np.ndarray:
        condition, params = compile_filter(where)
        with self._reading() as conn:
            got = conn.execute(f"SELECT id FROM items WHERE {condition} ORDER BY id", params)
            return np.array([r[0] for r in got.fetchall()], dtype=np.int64)

    def count(self, where: Filter | None = None) -> int:
        condition, params = compile_filter(where)
        with self._reading() as conn:
            if condition == "1":
                return int(self._fact(conn, "count", "0"))
            return int(
                conn.execute(f"SELECT COUNT(*) FROM items WHERE {condition}", params).fetchone()[0]
            )

    def cameras(self) -> list[str]:
        with self._reading() as conn:
            got = conn.execute(  # one index seek per camera, not a pass over every item
                "WITH RECURSIVE c(x) AS (SELECT MIN(camera) FROM items WHERE camera > '' "
                "UNION ALL SELECT (SELECT MIN(camera) FROM items WHERE camera > x) FROM c "
                "WHERE x IS NOT NULL) SELECT x FROM c WHERE x IS NOT NULL"
            )
            return [r[0] for r in got.fetchall()]

    def sources(self) -> list[SourceState]:
        with self._reading() as conn:
            got = conn.execute(
                "SELECT s.name, COUNT(i.id), s.complete FROM sources s "
                "LEFT JOIN items i ON i.source = s.name GROUP BY s.name ORDER BY s.name"
            ).fetchall()
        return [SourceState(name, int(c), bool(done)) for name, c, done in got]

    def disk_bytes(self) -> int:
        """Bytes the gallery folder takes on disk (SQLite, segments, index cache)."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def close(self) -> None:
        self.wait_measured()
        with self._conn_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._segments.close()
        self._closed = True

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
