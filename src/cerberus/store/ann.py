"""The approximate index of the local gallery (method §9.1): a faiss IVF index with 8-bit
scalar-quantised codes, keyed by item id, used only where a search would otherwise read too many
vectors (no filter, or a weak one, on a large gallery). The caller re-ranks its candidates with
the exact vectors of the segments.

It is a cache: a file beside the segments that can always be rebuilt from them. New items are
added to it (``add_with_ids``) without retraining; it is retrained when the gallery has grown
to :data:`RETRAIN_GROWTH` times the size it was trained on. Removed items stay in it until the
next rebuild; the caller drops them (they are no longer in SQLite).

Recall is measured, never assumed (:func:`measure`): when the index is built, and again when
the gallery has grown (or shrunk) by :data:`REMEASURE_GROWTH` (the local gallery does that in a
thread of its own), a sample of the gallery's own vectors (held
out: each query's own item is left out of both lists) and description queries (attribute
vectors made from the gallery's SID prototypes, as an APS query is) are answered exactly and
through the index. The smallest number of probed cells whose recall@10 reaches
:data:`TARGET` + :data:`MARGIN` is kept with the index and used by every photo search; the same
is measured under random filters of several selectivities (the two filtered paths below). Where
even probing every cell falls short, the searches it concerns are exact. Description queries
do not go through the cells (their neighbours are spread over most of them): the index keeps
per-SID score columns beside it (:mod:`cerberus.store.sidcolumns`) that answer them exactly.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cerberus.attributes.schema import GROUPS
from cerberus.errors import CerberusError
from cerberus.inference.scoring import AttributeQuery, attribute_query_vectors
from cerberus.store.sidcolumns import SidColumns
from cerberus.store.topk import top_k_merge

RETRAIN_GROWTH = 4.0
"""The index is retrained when the gallery holds this many times the items it was trained on."""
REMEASURE_GROWTH = 1.1
"""Its recall is measured again when the gallery holds this many times the items it was
measured on."""
TARGET = 0.95
"""Recall@10 every default search through the index reaches (measured, :func:`measure`)."""
MARGIN = 0.02
"""Measured on a sample of queries: a setting is kept only when its mean recall less this (or
less two standard errors of the mean, when larger) reaches TARGET (:func:`reaches`). Fresh
queries fared up to 0.014 worse than the held-out gallery vectors on low-rank data
(``benchmarks/bench_recall.py``), hence 0.02."""
RECALL_K = 10
PHOTO_QUERIES = 150
"""Gallery vectors held out as queries when recall is measured."""
DESCRIPTION_QUERIES = 50
"""Description (attribute) queries when recall is measured (where the gallery has prototypes)."""
BROAD_FRACTIONS = (0.8, 0.5, 0.32, 0.2, 0.13, 0.08, 0.05)
"""Filter selectivities the broad path is measured at: a filter keeping at least the smallest
of them searches the index unfiltered for ``k rerank / fraction`` candidates and keeps those
that pass (no list of the passing items is read: what makes a broad filter cheap), probing
the cells measured at the largest of them at or below its share. About 1.6x apart: a filter
between two takes the cells of the smaller (its need lies between theirs), so a coarser grid
probes more than a filter needs (the benchmark's generator at 1M x 640: a filter keeping
9.97 % took the 50 cells measured for 5 %, where 10 % needed 33, when the grid went 0.1,
0.05). 0.8: a filter keeping most of the gallery probes about what an unfiltered search does,
not what a half needs (the same generator: 2 of 1,000 cells unfiltered, 11 for a half)."""
FILTER_FRACTIONS = (0.5, 0.2, 0.05, 0.01, 0.002)
"""Filter selectivities the id-bitmap path is measured at (those leaving enough items)."""
VERIFY_QUERIES = 64
"""Of the measuring queries, those a real search checks each setting with (the others'
recall is the bound read off the cells less the loss these show: :meth:`AnnIndex.measure`)."""
FIRST_VERIFIED = 16
"""Of :data:`VERIFY_QUERIES`, those searched first: where the real search finds every true
neighbour the bound counts, the loss is taken as at most ``3 / m`` (``m``: those neighbours;
the rule of three, a 95 % bound when none of ``m`` is lost) and the rest are not searched."""
COVER_LADDER = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Coverage factors tried for the id-bitmap path (see :meth:`AnnIndex.search_within`)."""
TIMED_PATHS_FROM = 100_000
"""From this many items on, a measurement also times both filtered paths, one query at a time,
at the broad fractions from the smallest up (:data:`TIMED_QUERIES` queries each, as many again
where the two are within :data:`UNSURE` of :data:`FASTER`; the broad path with the id-bitmap
search of the queries it hands on, :func:`handed_on`): where the
id-bitmap path takes under :data:`FASTER` of the broad path's mean time, filters keeping that
share take it (both reach the target; only their cost differs, with the data and the
dimension: for a filter keeping a tenth of the benchmark's generator, p50 16.6-19.1 ms by the
id bitmap against 20.2-22.8 by the broad path at 1M x 2560, and 10.5-10.9 against 6.2-6.6 at
1M x 640: ``benchmarks/bench_filter_paths.py``). Smaller galleries answer either in a few
ms."""
TIMED_QUERIES = 8
FASTER = 0.9
UNSURE = 0.15

ANN_FILE = "ann.faiss"
ANN_META = "ann.json"


def faiss_module():
    """The ``faiss`` module (one line naming the package when it is missing)."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise CerberusError("the gallery index needs faiss: pip install faiss-cpu") from None
    return faiss


Gather = Callable[[np.ndarray], np.ndarray]
"""Positions ``(m,)`` into the caller's items -> their vectors ``(m, D)``."""

MIN_RUN = 1024
"""A block read for the exact answers ends at a break in the items' storage (see
:func:`spans`) when that leaves it at least this many rows."""


def id_bitmap(ids: np.ndarray) -> np.ndarray:
    """The bits of ``ids`` (non-negative), 8 to a byte, little-endian bit order: the bitmap
    faiss's ``IDSelectorBitmap`` reads (:meth:`AnnIndex.search_within`)."""
    bits = np.zeros(int(ids.max()) + 1 if len(ids) else 0, bool)
    bits[ids] = True
    return np.packbits(bits, bitorder="little")


def in_bitmap(bitmap: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Whether each of ``ids`` (any shape; ``-1`` and ids past the bitmap: no) has its bit
    set in ``bitmap`` (:func:`id_bitmap`)."""
    inside = (ids >= 0) & (ids < 8 * len(bitmap))
    at = np.where(inside, ids, 0)
    return inside & ((bitmap[at >> 3] >> (at & 7)) & 1).astype(bool)


def spans(n: int, chunk: int, breaks: np.ndarray | None = None) -> Iterator[tuple[int, int]]:
    """Blocks ``(start, stop)`` of at most ``chunk`` of ``n`` positions, in order. A block ends
    at the first of the sorted ``breaks`` (positions where the storage's run of rows breaks)
    inside it when that leaves it :data:`MIN_RUN` rows or more: so a gallery whose segments
    hold runs of items is read block by block without a copy (the gather gives a view of
    the memory map), and a fragmented one in whole chunks."""
    cut = np.zeros(0, np.int64) if breaks is None else np.asarray(breaks, np.int64)
    start = 0
    while start < n:
        stop = min(n, start + chunk)
        i = int(np.searchsorted(cut, start, side="right"))
        if i < len(cut) and cut[i] < stop and cut[i] - start >= min(MIN_RUN, chunk):
            stop = int(cut[i])
        yield start, stop
        start = stop


def _why(error: BaseException, folder: Path) -> str:
    """A failed write's reason in a few words: "disk full" for ENOSPC / EDQUOT (faiss says it
    only as a failed ``fwrite``, so a disk with under 1 MiB free counts as full too)."""
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and isinstance(error, RuntimeError):
        try:
            full = shutil.disk_usage(folder).free < 1 << 20
        except OSError:
            full = False
        full = full or "No space left" in str(error)
    if full:
        return "disk full"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = str(error).strip().splitlines()
    return text[-1][:200] if text else type(error).__name__


def default_nlist(n: int) -> int:
    """About sqrt(n) IVF cells, at least 39 items per cell: k-means on at most 64 points per
    cell, 10 iterations, takes minutes for 1M x 2560 on 2 cores, where 4 sqrt(N) cells and 256
    points per cell take hours."""
    return max(1, min(int(math.sqrt(n)), n // 39 or 1))


def train_ivf(
    n: int, dim: int, gather: Gather, *, nlist: int | None = None, sq8: bool = True, seed: int = 0
):
    """An empty faiss IVF inner-product index (``nlist`` cells, default :func:`default_nlist`;
    8-bit scalar-quantised codes with ``sq8``, else flat) trained on a sample of at most 64
    points per cell of the ``n`` items, read by ``gather(positions)`` -> ``(m, dim)``: the one
    IVF build of the local gallery's index and an ``.npz`` index's ``ivf`` kinds."""
    faiss = faiss_module()
    nlist = nlist or default_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    if sq8:
        ivf = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.own_fields = True
    quantizer.this.disown()
    rng = np.random.default_rng(seed)
    sample = np.arange(n) if n <= 64 * nlist else np.sort(rng.choice(n, 64 * nlist, False))
    ivf.cp.seed = seed
    ivf.cp.niter = 10
    ivf.train(np.ascontiguousarray(gather(sample), dtype=np.float32))
    return ivf


def description_queries(
    prototypes: Mapping[str, np.ndarray], dim: int, count: int, seed: int = 0
) -> np.ndarray:
    """``(count, dim)`` description queries made the way an APS query is
    (:func:`~cerberus.inference.scoring.attribute_query_vectors`): per query 1 to 3 random
    groups, each with one random SID of the gallery's prototypes. ``(0, dim)`` when the
    prototypes do not fit the vectors (no five groups of ``dim / 5``)."""
    if count <= 0 or any(g not in prototypes for g in GROUPS):
        return np.zeros((0, dim), np.float32)
    protos = {g: np.asarray(prototypes[g], np.float32) for g in GROUPS}
    if any(p.ndim != 2 or len(p) == 0 or p.shape[1] * len(GROUPS) != dim for p in protos.values()):
        return np.zeros((0, dim), np.float32)
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(count):
        groups = sorted(rng.choice(len(GROUPS), rng.integers(1, 4), replace=False))
        names = tuple(GROUPS[g] for g in groups)
        choices = tuple((int(rng.integers(0, len(protos[g]))),) for g in names)
        out.append(attribute_query_vectors(AttributeQuery({}, names, choices), protos)[0])
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def _recall(found: np.ndarray, truth: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Per query |found ∩ truth[:k]| / k, each query's ``own`` id (``-1``: none) left out of
    both lists (held out); ``truth`` ``(Q, >=k+1)`` (``-1`` padding)."""
    out = []
    for f, t, o in zip(found, truth, own):
        t = t[(t >= 0) & (t != o)][:k]
        if len(t):
            out.append(len(np.intersect1d(f[(f >= 0) & (f != o)], t)) / len(t))
    return np.asarray(out if out else [1.0])


def reaches(recalls: np.ndarray) -> bool:
    """Whether per-query recalls reach :data:`TARGET` with room for the sample: their mean
    less the larger of :data:`MARGIN` and two standard errors."""
    se = float(np.std(recalls)) / math.sqrt(len(recalls))
    return float(np.mean(recalls)) - max(MARGIN, 2 * se) >= TARGET


def _smallest(lo: int, hi: int, ok: Callable[[int], bool]) -> int | None:
    """The smallest integer in ``[lo, hi]`` where ``ok`` holds, assuming it holds from some
    point on: doubling from ``lo``, then bisecting (``None`` when not even ``hi``)."""
    p, last_bad = lo, lo - 1
    while not ok(p):
        if p >= hi:
            return None
        last_bad, p = p, min(hi, 2 * p)
    while p - last_bad > 1:
        mid = (p + last_bad) // 2
        if ok(mid):
            p = mid
        else:
            last_bad = mid
    return p


class _Written(NamedTuple):
    """An index file being written in a thread (:meth:`AnnIndex.write_ahead`): ``done`` holds
    the write's error, if any, and raises it at ``done.result()``."""

    index: Any
    token: str
    path: Path
    done: Future

    def discard(self) -> None:
        """Wait for the write and delete what it wrote."""
        futures_wait([self.done])
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class AnnIndex:
    """An IVF-SQ8 index of item ids in ``folder`` (``ann.faiss`` + ``ann.json``) and its
    measured recall (:attr:`recall`, see :meth:`measure`)."""

    def __init__(
        self,
        folder: Path,
        dim: int,
        *,
        nprobe: int = 32,
        seed: int = 0,
        prototypes: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.folder = folder
        self.dim = dim
        self.prototypes = prototypes
        self.sids = SidColumns.of(prototypes, dim)
        """The SID score columns description queries are answered from (``None``: the
        gallery has no prototypes that fit its vectors); read through :meth:`columns`."""
        self._sid_read = True
        """Whether :attr:`sids` holds what it should (built, or read from ``sid.npy``): a
        loaded index leaves the file unread until a description query needs it."""
        self._sid_on_disk: int | None = None
        """The ids ``sid.npy`` holds the columns of, for this index (``None``: no such file)."""
        self.nprobe = nprobe
        """Cells probed when no recall has been measured (an index built before it was)."""
        self.seed = seed
        self.index = None
        self.covered = 0
        """Every item with an id below this was added (when it was live)."""
        self.trained_on = 0
        self.recall: dict[str, Any] | None = None
        """What :meth:`measure` found (``None``: not measured yet)."""
        self._lists: np.ndarray | None = None
        self.save_error: str | None = None
        """Why the last :meth:`save` wrote nothing (``None``: it wrote the index)."""
        self.lock = threading.Lock()

    @property
    def nlist(self) -> int:
        return 0 if self.index is None else int(self.index.nlist)

    def load(self) -> bool:
        """Read the index file if there is one and it is readable (a broken cache is ignored)."""
        faiss = faiss_module()
        try:
            meta = json.loads((self.folder / ANN_META).read_text())
            index = faiss.read_index(str(self.folder / ANN_FILE))
        except (OSError, ValueError, RuntimeError):
            return False
        if index.d != self.dim or meta.get("dim") != self.dim:
            return False
        self.index, self.covered, self.trained_on = index, int(meta["covered"]), int(meta["n"])
        self.recall = meta.get("recall")
        self._lists = None
        self.sids = SidColumns.of(self.prototypes, self.dim)
        self._sid_read = False  # read at the first description query (columns())
        rows = meta.get("sid_rows")
        self._sid_on_disk = None if rows is None else int(rows)
        return True

    def columns(self) -> SidColumns | None:
        """:attr:`sids`, read from ``sid.npy`` the first time it is needed (a process that
        answers only photo queries never reads it); columns the file lacks (none, damaged,
        or items added since) are left for :meth:`sid_missing` to report."""
        if self.sids is not None and not self._sid_read:
            if self._sid_on_disk is not None and not self.sids.load(self.folder, self._sid_on_disk):
                self._sid_on_disk = None
            self._sid_read = True
        return self.sids

    def stale(self, live: int) -> bool:
        """Whether the index must be (re)built for a gallery of ``live`` items: none yet, the
        gallery grew :data:`RETRAIN_GROWTH` times, or most of what it holds was removed."""
        if self.index is None:
            return True
        return live > RETRAIN_GROWTH * max(self.trained_on, 1) or live < self.index.ntotal / 2

    def unmeasured(self, live: int) -> bool:
        """Whether recall must be measured (again) for a gallery of ``live`` items: never
        measured, or the gallery grew by a tenth (:data:`REMEASURE_GROWTH`) since, or shrank
        as much (removed items stay in the index and crowd the candidates)."""
        if self.recall is None:
            return True
        measured = max(int(self.recall["measured_on"]), 1)
        return live >= REMEASURE_GROWTH * measured or live * REMEASURE_GROWTH <= measured

    def build(self, ids: np.ndarray, gather: Gather, chunk: int = 32768) -> None:
        """Train on a sample of the items (:func:`train_ivf`, IVF-SQ8) and add them all, block
        by block (``gather`` should copy them: faiss added views of the segments' memory maps
        more slowly, ``benchmarks/profile_build.py``)."""
        n = len(ids)
        ivf = train_ivf(n, self.dim, gather, seed=self.seed)
        self.sids = SidColumns.of(self.prototypes, self.dim)
        self._sid_read, self._sid_on_disk = True, None
        if self.sids is not None and n:
            self.sids.make_room_for(ids)
        for start, stop in spans(n, chunk):
            block = np.ascontiguousarray(gather(np.arange(start, stop)), np.float32)
            ivf.add_with_ids(block, ids[start:stop])
            if self.sids is not None:
                self.sids.add(ids[start:stop], block)
        self.index = ivf
        self.trained_on = n
        self.covered = int(ids.max()) + 1 if n else 0
        if self.sids is not None:
            self.sids.add(ids[:0], np.zeros((0, self.dim), np.float32), rows=self.covered)
        self.recall = None
        self._lists = None

    def extend(self, ids: np.ndarray, gather: Gather, chunk: int = 32768) -> None:
        """Add items ``ids`` (all at or above :attr:`covered`) without retraining (blocks as in
        :meth:`build`)."""
        filled = self.sids is not None and self._sid_read and self.sids.rows >= self.covered
        for start, stop in spans(len(ids), chunk):
            block = np.ascontiguousarray(gather(np.arange(start, stop)), np.float32)
            self.index.add_with_ids(block, ids[start:stop])
            if filled:  # else the caller fills them from the vectors (sid_missing)
                self.sids.add(ids[start:stop], block)
        if len(ids):
            self.covered = max(self.covered, int(ids.max()) + 1)
            self._lists = None
        if filled:
            self.sids.add(ids[:0], np.zeros((0, self.dim), np.float32), rows=self.covered)

    def sid_missing(self) -> int | None:
        """The first id whose SID columns are missing (loaded without them, or an index of an
        older version, or items added before they were read), ``None`` when all are there or
        there are no columns to fill."""
        if self.columns() is None or self.sids.rows >= self.covered:
            return None
        return self.sids.rows

    def write_ahead(self) -> _Written:
        """Start writing the index file (to a temporary name) in a thread of its own, for a
        :meth:`save` after the recall is measured: the write (about 1.4 s for 1M x 640) and the
        measuring's searches overlap. The index must not change until that save."""
        token = uuid.uuid4().hex[:8]
        path = self.folder / f"{ANN_FILE}.{token}.tmp"
        pool = ThreadPoolExecutor(1, thread_name_prefix="cerberus-write-index")
        done = pool.submit(faiss_module().write_index, self.index, str(path))
        pool.shutdown(wait=False)  # the write goes on; its future is waited for at save
        return _Written(self.index, token, path, done)

    def save(self, written: _Written | None = None) -> bool:
        """Write the index and its facts (temporary files renamed into place: a reader never
        sees half a file; two processes saving at once leave one whole index); ``written``:
        the index file as :meth:`write_ahead` started it. Returns whether it was written; when
        not (a full disk: faiss raises ``RuntimeError``, Python ``OSError``; a read-only
        folder), no temporary file is left, the index in memory keeps answering and
        :attr:`save_error` says why in one line: it is a cache, and failing to write it costs
        a rebuild later, nothing else."""
        faiss = faiss_module()
        if written is not None and written.index is not self.index:  # rebuilt since: stale
            written.discard()
            written = None
        token = uuid.uuid4().hex[:8] if written is None else written.token
        tmp_index = self.folder / f"{ANN_FILE}.{token}.tmp"
        tmp_meta = self.folder / f"{ANN_META}.{token}.tmp"
        # sid.npy is written only when it would change: whole columns that differ from it
        fresh = (
            self.sids is not None and self._sid_read and self.sids.rows >= self.covered
            and self.sids.rows != self._sid_on_disk
        )  # fmt: skip
        sid_rows = self.sids.rows if fresh else self._sid_on_disk
        facts = {"dim": self.dim, "covered": self.covered, "n": self.trained_on}
        facts["sid_rows"] = sid_rows
        try:
            if written is None:
                faiss.write_index(self.index, str(tmp_index))
            else:
                written.done.result()  # the write's own error, as a write in place would raise
            tmp_meta.write_text(json.dumps({**facts, "recall": self.recall}))
            if fresh:
                self.sids.save(self.folder)
            os.replace(tmp_index, self.folder / ANN_FILE)
            os.replace(tmp_meta, self.folder / ANN_META)
        except (OSError, RuntimeError) as e:
            with contextlib.suppress(OSError):
                tmp_index.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                tmp_meta.unlink(missing_ok=True)
            self.save_error = f"{self.folder / ANN_FILE}: index not saved ({_why(e, self.folder)})"
            return False
        self.save_error = None
        self._sid_on_disk = sid_rows
        return True

    # ---- the measured settings

    @property
    def exact(self) -> bool:
        """Whether unfiltered photo searches must be exact (no nprobe reached the target)."""
        return self.recall is not None and self.recall["nprobe"] is None

    def default_nprobe(self) -> int:
        """Cells probed by an unfiltered search: the measured setting (all cells where even
        that fell short: the caller searches exactly then)."""
        if self.recall is None:
            return min(self.nlist, self.nprobe)
        return min(self.nlist, int(self.recall["nprobe"] or self.nlist))

    def broad_setting(self, fraction: float) -> tuple[float, int] | None:
        """``(measured fraction, cells)`` the broad path takes for a filter keeping
        ``fraction`` of the items: the setting measured at the largest measured fraction at
        or below it (more selective filters need more cells); ``None``: take the id-bitmap
        path (as every filter keeping under ``bitmap_below`` does: that path was timed
        faster there, :data:`TIMED_PATHS_FROM`)."""
        if self.recall is None or fraction < (self.recall.get("bitmap_below") or 0.0):
            return None
        fits = [(float(f), p) for f, p in self.recall["broad"].items() if float(f) <= fraction]
        fits = [(f, int(p)) for f, p in fits if p is not None]
        return max(fits) if fits else None

    def cover(self, share: float = 1.0) -> float | None:
        """The id-bitmap path's coverage factor for a filter keeping ``share`` of the items
        (:func:`_cover_at`; ``inf`` before any measurement)."""
        if self.recall is None:
            return math.inf
        return _cover_at(self.recall["cover"], share)

    def sids_trusted(self) -> bool:
        """Whether description queries may be answered from the SID columns: there are
        columns, and the last measurement (if any) found them reaching the target."""
        if self.sids is None:
            return False
        said = (self.recall or {}).get("description")
        return not said or bool(said.get("reached", True))

    # ---- searching

    def search(self, queries: np.ndarray, kk: int, nprobe: int | None = None) -> np.ndarray:
        """Candidate ids ``(Q, kk)`` (``-1`` padding) of an unfiltered search probing
        ``nprobe`` cells (default :meth:`default_nprobe`)."""
        faiss = faiss_module()
        nprobe = min(self.nlist, nprobe or self.default_nprobe())
        params = faiss.SearchParametersIVF(nprobe=max(1, nprobe))
        self._split_lists(len(queries))
        _, found = self.index.search(np.ascontiguousarray(queries), kk, params=params)
        return found

    def _split_lists(self, nq: int) -> None:
        """Fewer queries than threads (one query from the page or the CLI): the threads share
        each query's cells (faiss ``parallel_mode`` 1), else each thread takes whole queries
        (mode 0): a single query's latency falls about in proportion to the threads
        (``benchmarks/bench_parallel_mode.py``; the figures in docs/benchmarks.md)."""
        self.index.parallel_mode = 1 if nq < faiss_module().omp_get_max_threads() else 0

    def lists_of(self) -> np.ndarray:
        """``(covered,)`` int32: the cell each indexed id is in (``-1``: none), read from the
        inverted lists (kept until the index changes)."""
        if self._lists is None:
            faiss = faiss_module()
            inv = self.index.invlists
            out = np.full(max(self.covered, 1), -1, np.int32)
            for cell in range(self.nlist):
                size = inv.list_size(cell)
                if size:
                    ids = faiss.rev_swig_ptr(inv.get_ids(cell), size)
                    ids = ids[ids < len(out)]
                    out[ids] = cell
            self._lists = out
        return self._lists

    def search_within(
        self,
        queries: np.ndarray,
        kk: int,
        bitmap: np.ndarray,
        ids: np.ndarray,
        *,
        cover: float | None = None,
        nprobe: int | None = None,
        base: int | None = None,
    ) -> np.ndarray:
        """Candidate ids ``(Q, kk)`` among the ``ids`` passing a filter (``bitmap``: their
        bits by id, little-endian bit order).

        Per query the cells are walked nearest first, skipping those holding no passing
        item, until they hold ``cover x p N / nlist`` passing items (``p``: the unfiltered
        :meth:`default_nprobe`, ``N`` the items indexed: ``cover`` times as many passing items
        as an unfiltered search scans items, since a filter keeping a share ``f`` puts its
        top-10 about as far as the unfiltered top-``10 / f``; at least ``kk``) or, given
        ``nprobe``, for ``nprobe`` cells. Only those cells are scanned and, through the
        bitmap, only their passing items scored (probing more cells is cheap): a filter
        correlated with the vectors (one camera) probes the cells where its items are, not
        those where they are not."""
        faiss = faiss_module()
        nlist = self.nlist
        lists = self.lists_of()
        cells = lists[ids[ids < len(lists)]]
        counts = np.bincount(cells[cells >= 0], minlength=nlist)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        near, order = self.index.quantizer.search(q, nlist)  # cells, nearest first
        held = counts[order]  # (Q, nlist)
        if nprobe is not None:
            take = np.cumsum(held > 0, axis=1) <= nprobe
        else:
            c = math.inf if cover is None else cover
            scanned = (base or self.default_nprobe()) / nlist * self.index.ntotal
            target = max(kk, min(len(ids), c * scanned))
            before = np.cumsum(held, axis=1) - held  # passing items in the cells before
            take = before < target
        take &= held > 0
        width = max(1, int(take.sum(axis=1).max()))
        # per query its chosen cells first, nearest first (a stable sort of "not chosen")
        first = np.argsort(~take, axis=1, kind="stable")[:, :width]
        chosen = np.take_along_axis(take, first, axis=1)
        assign = np.where(chosen, np.take_along_axis(order, first, axis=1), -1).astype(np.int64)
        # IVF-SQ8 scores residuals: q.c + q.r, so faiss needs each cell's q.c
        coarse = np.where(chosen, np.take_along_axis(near, first, axis=1), 0).astype(np.float32)
        params = faiss.SearchParametersIVF(nprobe=width)
        selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        params.sel = selector  # faiss takes the size in bytes; ids past the end never pass
        self._split_lists(len(q))
        dist = np.zeros((len(q), kk), np.float32)
        found = np.full((len(q), kk), -1, np.int64)
        self.index.search_preassigned_c(
            len(q), faiss.swig_ptr(q), kk, faiss.swig_ptr(assign), faiss.swig_ptr(coarse),
            faiss.swig_ptr(dist), faiss.swig_ptr(found), False, params, None,
        )  # fmt: skip
        return found

    # ---- measuring

    def cell_ranks(self, queries: np.ndarray) -> np.ndarray:
        """``(Q, nlist)`` int: each cell's place in each query's cell order (0: the nearest),
        the order in which :meth:`search` probes them (one quantizer search)."""
        nlist = self.nlist
        q = np.ascontiguousarray(queries, dtype=np.float32)
        _, order = self.index.quantizer.search(q, nlist)
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.broadcast_to(np.arange(nlist), order.shape), axis=1)
        return ranks

    def _cells(self, found: np.ndarray, lists: np.ndarray | None = None) -> np.ndarray:
        """The cell of each id in ``found`` (any shape; ``-1``: none, or not indexed) by
        ``lists`` (default :meth:`lists_of`)."""
        lists = self.lists_of() if lists is None else lists
        safe = np.clip(found, 0, len(lists) - 1)
        return np.where((found >= 0) & (found < len(lists)), lists[safe], -1)

    def probes_needed(
        self, ranks: np.ndarray, truth: np.ndarray, lists: np.ndarray | None = None
    ) -> np.ndarray:
        """``(Q, k)``: per query and true neighbour (``truth`` ``(Q, k)`` ids, ``-1``: none)
        the nprobe from which a search probes that neighbour's cell, ``rank + 1`` (``0`` for
        none). With enough candidates drawn from the probed cells, recall@k at nprobe ``p``
        is the share of a query's neighbours with ``needed <= p`` (:func:`reach`)."""
        cell = self._cells(truth, lists)
        needed = np.take_along_axis(ranks, np.maximum(cell, 0), axis=1) + 1
        needed = np.where(cell >= 0, needed, ranks.shape[1] + 1)  # not indexed: never
        return np.where(truth >= 0, needed, 0)

    def items_before(
        self,
        ranks: np.ndarray,
        truth: np.ndarray,
        passing: np.ndarray,
        lists: np.ndarray | None = None,
    ) -> np.ndarray:
        """``(Q, k)``: per query and true neighbour (``truth`` ids among ``passing``, ``-1``:
        none) the passing items held by the cells nearer the query than the neighbour's: the
        id-bitmap path (:meth:`search_within`) reaches it when these are fewer than its target
        of passing items (``-1`` for none)."""
        lists = self.lists_of() if lists is None else lists
        cells = lists[passing[passing < len(lists)]]
        counts = np.bincount(cells[cells >= 0], minlength=self.nlist)
        order = np.argsort(ranks, axis=1)
        held = counts[order]
        before = np.cumsum(held, axis=1) - held  # by place in the query's order
        cell = self._cells(truth, lists)
        place = np.take_along_axis(ranks, np.maximum(cell, 0), axis=1)
        got = np.take_along_axis(before, place, axis=1)
        got = np.where(cell >= 0, got, np.iinfo(np.int64).max // 2)
        return np.where(truth >= 0, got, -1)

    def measure(
        self,
        ids: np.ndarray,
        gather: Gather,
        *,
        descriptions: np.ndarray | None = None,
        rerank: int = 10,
        min_filtered: int = 0,
        chunk: int | None = None,
        lock: Any = None,
        breaks: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Measure recall@10 on the gallery's own items ``ids`` (vectors by
        ``gather(positions)``) and keep the settings that reach :data:`TARGET` in
        :attr:`recall`.

        Queries: :data:`PHOTO_QUERIES` random items (each left out of its own lists: held
        out) and the ``descriptions`` vectors. Truth: their exact top-10 among all items, and
        among random subsets keeping :data:`BROAD_FRACTIONS` and :data:`FILTER_FRACTIONS` of
        them, and subsets keeping whole cells (a filter correlated with the vectors, as one
        camera's crops may be) at FILTER_FRACTIONS (those leaving more than ``min_filtered``
        items, the caller's exact limit).

        Chosen: the smallest nprobe (unfiltered, ``k rerank`` candidates), per broad fraction
        the smallest nprobe whose ``k rerank / fraction`` unfiltered candidates hold the
        filtered top-10, and per filter fraction the smallest :data:`COVER_LADDER` factor for
        the id-bitmap path (:meth:`search_within`) reaching TARGET on both filters at it,
        random and whole cells (each with room for the sample: :func:`reaches`). Each is first
        read off the cells of the true neighbours (:meth:`probes_needed`,
        :meth:`items_before`: what a search probing those cells could find at most), then
        checked by one real search at that setting and raised while that falls short (8-bit
        codes or too few candidates can lose a neighbour whose cell was probed): the setting
        kept is one a real search reached the target with.
        These settings are chosen on the photo queries: description queries are answered from
        the SID columns (:mod:`cerberus.store.sidcolumns`), whose top-10 is checked against
        the same exact answers (``description``: their recall@10, ``reached``: whether it
        reaches the target; where not, descriptions are searched exactly).
        """
        n, k = len(ids), RECALL_K
        lock = lock or contextlib.nullcontext()

        def search(queries: np.ndarray, kk: int, nprobe: int) -> np.ndarray:
            with lock:
                return self.search(queries, kk, nprobe)

        rng = np.random.default_rng([self.seed, 11, n])
        pos = np.sort(rng.choice(n, min(PHOTO_QUERIES, n), replace=False))
        photo = np.ascontiguousarray(gather(pos), dtype=np.float32)
        extra = np.zeros((0, self.dim), np.float32) if descriptions is None else descriptions
        q = np.ascontiguousarray(np.concatenate([photo, extra]), dtype=np.float32)
        own = np.concatenate([ids[pos], np.full(len(extra), -1, np.int64)])
        broad = [f for f in BROAD_FRACTIONS if f * n > max(min_filtered, 2 * k)]
        narrow = [f for f in FILTER_FRACTIONS if f * n > max(min_filtered, 2 * k)]
        masks: dict[Any, np.ndarray] = {("broad", f): rng.random(n) < f for f in broad}
        with lock:  # a search may extend the index meanwhile: these stay as they are now
            lists, ntotal, index = self.lists_of(), self.index.ntotal, self.index
        cells = lists[ids]
        for f in narrow:  # a random filter, and one keeping whole cells (as one camera may)
            masks[("random", f)] = rng.random(n) < f
            order = rng.permutation(self.nlist)
            sizes = np.bincount(cells[cells >= 0], minlength=self.nlist)[order]
            kept = order[: int(np.searchsorted(np.cumsum(sizes), f * n)) + 1]
            table = np.zeros(self.nlist + 1, bool)  # by cell; the last: none (-1)
            table[kept] = True
            masks[("cells", f)] = table[cells]  # np.isin sorts the million cells: 0.2 s
        chunk = chunk or max(4096, (1 << 26) // self.dim)  # 256 MB of vectors at a time
        truth = _truths(q, ids, gather, masks, k + 1, chunk, breaks=breaks)
        held_out = {key: _held_out(t, own, k) for key, t in truth.items()}
        nlist, nq = self.nlist, len(q)
        kk_all = min(n, k * rerank + 1)
        with lock:
            ranks = self.cell_ranks(q)

        def choose(rows: np.ndarray) -> dict[str, Any]:
            """The settings for the queries ``rows`` (one kind: photo or description)."""
            qk, rk = q[rows], ranks[rows]
            hk = {key: t[rows] for key, t in held_out.items()}
            sub = np.sort(rng.choice(len(rows), min(len(rows), VERIFY_QUERIES), replace=False))

            parts = (sub[:FIRST_VERIFIED], sub[FIRST_VERIFIED:])

            def found_share(found: np.ndarray, key, part: int) -> np.ndarray:
                """Per query of ``parts[part]``: the share of its true neighbours in ``found``."""
                t = hk[key][parts[part]]
                hit = (t[:, :, None] == found[:, None, :]).any(axis=2) & (t >= 0)
                return _shares(hit, t >= 0)

            def estimate(bound: np.ndarray, key, real_of: Callable[[int], np.ndarray]):
                """Per query the bound less the loss real searches show (``real_of(part)``:
                the shares found on ``parts[part]``): on the first part, where they lose none
                of the neighbours the bound counts, at most ``3 / m`` of those ``m``
                (:data:`FIRST_VERIFIED`); else the mean loss on both parts."""
                first = real_of(0)
                b, valid = bound[parts[0]], (hk[key][parts[0]] >= 0).sum(axis=1)
                m = float(np.nansum(b * valid))
                if m > 0 and np.allclose(np.nan_to_num(b), np.nan_to_num(first)):
                    quick = bound - 3.0 / m
                    if _ok(quick) or not len(parts[1]):
                        return quick
                real = np.concatenate([first, real_of(1)]) if len(parts[1]) else first
                loss = float(np.nanmean(bound[sub] - real)) if np.isfinite(real).any() else 0.0
                return bound - max(0.0, loss)

            def settle(start, steps, key, bound_of, real_of, got: dict):
                """The first setting from ``start`` along ``steps`` whose bound reaches the
                target and then whose estimate does (``None``: none); ``real_of(step, part)``."""
                i = next((j for j in range(start, len(steps)) if _ok(bound_of(steps[j]))), None)
                while i is not None and i < len(steps):
                    real = functools.partial(real_of, steps[i])
                    got[steps[i]] = estimate(bound_of(steps[i]), key, real)
                    if _ok(got[steps[i]]):
                        return steps[i]
                    i += 1
                return None

            kk = min(n, k * rerank + 1)
            probes = _ladder(nlist)
            widths = [kk] + [min(n, math.ceil(k * rerank / f) + 1) for f in broad]
            drawn: dict[tuple[int, int], np.ndarray] = {}

            def draw(pp: int, width: int, part: int) -> np.ndarray:
                """The ``width`` candidates a real search of ``parts[part]`` at nprobe ``pp``
                draws: one search per nprobe and part, of the most candidates any setting
                draws (the top ``width`` of the same cells' codes are its first ``width``)."""
                if (pp, part) not in drawn:
                    drawn[pp, part] = search(qk[parts[part]], max(widths), pp)
                return drawn[pp, part][:, :width]

            def probe_bound(key):
                needed, valid = self.probes_needed(rk, hk[key], lists), hk[key] >= 0
                return lambda p: _shares(needed <= p, valid)

            curve: dict[int, np.ndarray] = {}
            p = settle(
                0, probes, None, probe_bound(None),
                lambda pp, part: found_share(draw(pp, kk, part), None, part), curve,
            )  # fmt: skip
            base = p or nlist
            broad_p, broad_r, start = {}, {}, probes.index(base)
            for f in broad:
                kf = min(n, math.ceil(k * rerank / f) + 1)
                got: dict[int, np.ndarray] = {}
                key = ("broad", f)
                real = lambda pp, part, kf=kf, key=key: found_share(  # noqa: E731
                    draw(pp, kf, part), key, part
                )
                bp = settle(start, probes, key, probe_bound(key), real, got)
                start = probes.index(bp) if bp else len(probes) - 1  # a smaller share: more cells
                broad_p[str(f)] = bp
                broad_r[str(f)] = round(float(np.nanmean(got[max(got)])), 4) if got else None
            scanned = base / nlist * ntotal
            bitmaps, before = {}, {}
            for key, mask in masks.items():
                if key[0] != "broad":
                    bitmaps[key] = (id_bitmap(ids[mask]), ids[mask])
                    before[key] = self.items_before(rk, hk[key], ids[mask], lists)

            def cover_bound(key):
                npass, valid = len(bitmaps[key][1]), hk[key] >= 0
                return lambda c: _shares(before[key] < max(kk, min(npass, c * scanned)), valid)

            ladder = [c for c in COVER_LADDER if c * base < nlist] + [float(nlist)]
            covers: dict[str, float | None] = {}
            cover_r: dict[str, float] = {}
            for f in narrow:  # per fraction, every filter kind at it must reach the target
                keys = [key for key in bitmaps if key[1] == f]
                covers[str(f)] = None
                for c in ladder:
                    if not all(_ok(cover_bound(key)(c)) for key in keys):
                        continue
                    got = {}
                    for key in keys:
                        bitmap, passing = bitmaps[key]

                        def real(part: int, key=key, bitmap=bitmap, passing=passing, c=c):
                            with lock:
                                found = self.search_within(
                                    qk[parts[part]], kk, bitmap, passing, cover=c, base=base
                                )
                            return found_share(found, key, part)

                        got[f"{key[0]} {key[1]}"] = estimate(cover_bound(key)(c), key, real)
                    cover_r.update({a: round(float(np.nanmean(r)), 4) for a, r in got.items()})
                    if all(_ok(r) for r in got.values()):
                        covers[str(f)] = c
                        break
            bitmap_below = None
            if n >= TIMED_PATHS_FROM:  # from the smallest share up, while the bitmap is faster
                timed = qk[parts[0][: 2 * TIMED_QUERIES]]
                for f in sorted(f for f in broad if broad_p[str(f)] is not None):
                    c = _cover_at(covers, f)
                    if c is None:
                        break
                    passing = ids[masks[("broad", f)]]
                    bitmap = id_bitmap(passing)
                    kf, bp = min(n, math.ceil(k * rerank / f) + 1), broad_p[str(f)]

                    def within(one, bitmap=bitmap, passing=passing, c=c):
                        with lock:
                            return self.search_within(one, kk, bitmap, passing, cover=c, base=base)

                    def wide(one, kf=kf, bp=bp, f=f, bitmap=bitmap, within=within):
                        found = search(one, kf, bp)
                        got = in_bitmap(bitmap, found).sum(axis=1)
                        if handed_on(got, (found >= 0).sum(axis=1), k, f, f).any():
                            return within(one)
                        return found

                    paths = {"broad": wide, "bitmap": within}
                    costs = _timed_paths(f, paths, timed[:TIMED_QUERIES])
                    ratio = costs["bitmap"] / max(costs["broad"], 1e-9)
                    if abs(ratio - FASTER) < UNSURE and len(timed) > TIMED_QUERIES:  # 8 more
                        more = _timed_paths(f, paths, timed[TIMED_QUERIES:])
                        costs = {a: (costs[a] + more[a]) / 2 for a in costs}
                    if costs["bitmap"] >= FASTER * costs["broad"]:
                        break
                    bitmap_below = _next_up(broad, f)
            return {
                "nprobe": p,
                "recall_at_10": round(float(np.nanmean(curve[base])), 4) if curve else None,
                "curve": {str(a): round(float(np.nanmean(b)), 4) for a, b in sorted(curve.items())},
                "broad": broad_p,
                "broad_recall": broad_r,
                "cover": covers,  # none measured: every passing cell (AnnIndex.cover)
                "filtered_recall": cover_r,
                "bitmap_below": bitmap_below,  # filters keeping less: the id-bitmap path
            }

        described = np.arange(len(photo), nq)
        said = None  # description queries: read off the SID columns, checked on the sample
        if len(described) and self.columns() is not None:
            with lock:
                ready = self.sids.rows > int(ids.max())
                held = ids if (ids[1:] > ids[:-1]).all() else np.unique(ids)  # 0.9 s at 1M
                found = self.sids.top(q[described], kk_all, held) if ready else None
            if found is not None:
                t = held_out[None][described]
                hit = (t[:, :, None] == found[:, None, :]).any(axis=2) & (t >= 0)
                got = _shares(hit, t >= 0)
                said = {
                    "path": "sid columns",
                    "recall_at_10": round(float(np.nanmean(got)), 4),
                    "reached": _ok(got),
                }
        recall = {
            "k": k,
            "target": TARGET,
            "measured_on": n,
            "nlist": nlist,
            "queries": {"photo": len(photo), "description": len(extra)},
            **choose(np.arange(len(photo))),
            "description": said,
        }
        with lock:
            if self.index is index:  # not rebuilt meanwhile
                self.recall = recall
        return recall


def handed_on(
    got: np.ndarray, drawn: np.ndarray, k: int, share: float, measured: float
) -> np.ndarray:
    """``(Q,)`` bool: the queries the broad path hands on to the id-bitmap path, of which
    ``got`` of the ``drawn`` unfiltered candidates pass a filter keeping ``share`` of the
    items, answered with the setting measured at fraction ``measured``: fewer than ``k``
    pass, or fewer than both 3/4 of ``share`` and ``measured`` of those drawn (the filter is
    correlated with the vectors near the query; for a random filter that is many standard
    deviations below its share)."""
    return (got < k) | (got < min(0.75 * share, measured) * drawn)


def _cover_at(cover: Any, share: float) -> float | None:
    """The id-bitmap path's coverage factor for a filter keeping ``share`` of the items, from
    those measured per filter fraction (``cover``; ``inf``: every list holding a passing
    item; ``None``: measured short of the target, search exactly): the larger of those at the
    fractions nearest it on either side (a fraction's need lies between its neighbours'
    where it changes monotonically between them; a filter keeping a half and one keeping a
    hundredth need different factors: 16 and 4 for the benchmark's generator at 1M x 640)."""
    if not isinstance(cover, dict):  # one factor for every fraction (an older index)
        return None if cover is None else float(cover)
    if not cover:  # no filter fraction measured (a small gallery): every passing cell
        return math.inf
    by = {float(f): v for f, v in cover.items()}  # fractions are written as text
    below = [f for f in by if f <= share]
    above = [f for f in by if f >= share]
    near = {max(below) if below else min(by), min(above) if above else max(by)}
    got = [by[f] for f in near]
    return None if any(g is None for g in got) else float(max(got))


def _next_up(fractions: Sequence[float], f: float) -> float:
    """The smallest of ``fractions`` above ``f`` (``f``'s double past the largest)."""
    return min((x for x in fractions if x > f), default=2.0 * f)


def _timed_paths(
    fraction: float, paths: Mapping[str, Callable[[np.ndarray], np.ndarray]], queries: np.ndarray
) -> dict[str, float]:
    """Per filtered path its mean time (ms) over ``queries``, one query at a time, the paths
    taking turns (a host's slow moment falls on both; a mean, as the broad path's queries
    handed on cost it twice); ``fraction``: the share the filter keeps (for a test's
    stand-in)."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for q in queries:
        for name, run in paths.items():
            t0 = time.perf_counter()
            run(q[None])
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: float(np.mean(t)) if t else 0.0 for name, t in times.items()}


def _shares(found: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(Q,)``: per query the share of its true neighbours (``valid`` ``(Q, k)``) marked
    ``found`` (``nan`` for a query with none)."""
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (found & valid).sum(axis=1) / count, np.nan)


def _ok(recalls: np.ndarray) -> bool:
    """:func:`reaches` over the queries that have neighbours (all of none: reached)."""
    r = recalls[np.isfinite(recalls)]
    return reaches(r) if len(r) else True


def _ladder(nlist: int) -> list[int]:
    """nprobe settings tried, 1 to ``nlist``: every one up to 16, then steps of about 6 %."""
    out, p = [], 1
    while p < nlist:
        out.append(p)
        p = p + 1 if p < 16 else math.ceil(p * 1.06)
    return [*out, nlist]


def _held_out(truth: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """``(Q, k)``: each row of ``truth`` without its query's ``own`` id, the first ``k``
    (``-1`` padding), the lists :func:`_recall` scores against."""
    out = np.full((len(truth), k), -1, np.int64)
    for r, (t, o) in enumerate(zip(truth, own)):
        t = t[(t >= 0) & (t != o)][:k]
        out[r, : len(t)] = t
    return out


def _merge(best_s, best_i, q_of, s, i, k):
    """Merge candidates (query ``q_of``, score ``s``, id ``i``) into the running top-``k``
    ``(Q, k)`` (scores descending, ties to the smaller id; ``-inf`` / ``-1`` padding)."""
    nq = len(best_s)
    all_q = np.concatenate([np.repeat(np.arange(nq), k), q_of])
    all_s = np.concatenate([best_s.ravel(), s])
    all_i = np.concatenate([best_i.ravel(), i])
    o = np.lexsort((all_i, -all_s, all_q))
    all_q, all_s, all_i = all_q[o], all_s[o], all_i[o]
    start = np.searchsorted(all_q, np.arange(nq))
    take = (start[:, None] + np.arange(k)[None, :]).ravel()  # every query holds >= k entries
    return all_s[take].reshape(nq, k), all_i[take].reshape(nq, k)


ROUNDING = 1e-4
"""Slack of the exact answers' floor, times ``|q| max |v|``: far above the float32 rounding
(2**-24 per term) by which one pair's dot product differs between two matmuls."""


def _truths(
    q: np.ndarray,
    ids: np.ndarray,
    gather: Gather,
    masks: Mapping[Any, np.ndarray],
    k: int,
    chunk: int,
    seed: int = 0,
    breaks: np.ndarray | None = None,
) -> dict[Any, np.ndarray]:
    """Exact top-``k`` ids ``(Q, k)`` of ``q`` among all ``ids`` (key ``None``) and among those
    each mask keeps (ties to the smaller id; ``-1`` padding), by one pass over the vectors in
    blocks (``gather`` by positions; :func:`spans` of ``chunk`` and ``breaks``).

    Only scores at or above a query's running k-th best can enter its list, so after a
    random sample's scores set a floor (the k-th best passing item of the sample, which the
    true k-th best is at least, less :data:`ROUNDING`'s slack), few items per chunk are
    merged. Masks of which the sample holds fewer than ``4 k`` items (too few for a floor) are
    merged column by column (few columns)."""
    n, nq = len(ids), len(q)
    keys = [None, *masks]
    rng = np.random.default_rng([seed, 13])
    sample = np.sort(rng.choice(n, min(n, 32768), replace=False))
    dense = [key for key in keys if key is None or masks[key][sample].sum() >= 4 * k]
    sparse = [key for key in keys if key not in dense]
    floor = {key: np.full(nq, -np.inf, np.float32) for key in dense}
    drawn = np.ascontiguousarray(gather(sample), np.float32)
    s = q @ drawn.T
    # the floor holds up to rounding only: an item's score in its block (another matmul shape,
    # another kernel) can differ from its score here in the last bits
    slack = ROUNDING * np.linalg.norm(q, axis=1) * float(np.linalg.norm(drawn, axis=1).max())
    del drawn
    for key in dense:
        cols = slice(None) if key is None else masks[key][sample]
        got = s[:, cols]
        if got.shape[1] >= k:
            floor[key] = -np.partition(-got, k - 1, axis=1)[:, k - 1] - slack
    best = {
        key: (np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)) for key in keys
    }
    for start, stop in spans(n, chunk, breaks):
        sl = slice(start, stop)
        block = np.ascontiguousarray(gather(np.arange(start, stop)), np.float32)
        scores, block_ids = q @ block.T, ids[sl]
        del block
        bar = {key: np.maximum(floor[key], best[key][0][:, -1]) for key in dense}
        lowest = np.min(np.stack(list(bar.values())), axis=0)
        qi, ci = np.nonzero(scores >= lowest[:, None])
        sc = scores[qi, ci]
        for key in dense:
            keep = sc >= bar[key][qi]
            if key is not None:
                keep &= masks[key][sl][ci]
            if keep.any():
                best[key] = _merge(*best[key], qi[keep], sc[keep], block_ids[ci[keep]], k)
        for key in sparse:
            cols = np.flatnonzero(masks[key][sl])
            if len(cols):
                best[key] = top_k_merge(*best[key], scores[:, cols], block_ids[cols], k)
    return {key: np.where(np.isfinite(b[0]), b[1], -1) for key, b in best.items()}
