"""Vector segments of the local gallery (method §9.1): immutable ``.npy`` files of float32 rows,
memory-mapped on read, and the blocks of rows gathered from them that the exact top-k
(:mod:`cerberus.store.topk`) scores.

A segment is written once (a new file, flushed and fsynced, then renamed into place) and never
changed; SQLite says which segments and rows are live. Gathering reads only the rows asked for.

Each segment's CRC-32 (of the whole ``.npy`` file) is computed while it is written and recorded in
SQLite; a process checks it the first time it maps the segment (about 3 GB/s: 4 s per 10 GB, once),
so a damaged segment is reported (:class:`SegmentDamaged`), never searched.
"""

from __future__ import annotations

import errno
import mmap
import os
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from cerberus.store.base import StoreError

GATHER_CHUNK = 32768
"""Rows gathered and scored at a time by :func:`segment_blocks` (at D = 2560: 320 MB of float32)."""


CRC_CHUNK = 1 << 24
"""Bytes read at a time when a segment's checksum is verified."""


class SegmentMissing(StoreError):
    """A segment file SQLite references is not there (``file``: its name)."""

    def __init__(self, message: str, file: str) -> None:
        super().__init__(message)
        self.file = file


class SegmentDamaged(StoreError):
    """A segment file's content is not what was written (checksum or shape)."""


def _write_array(fh, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` to the open file ``fh`` (one place, so tests can fail it)."""
    np.lib.format.write_array(fh, array, allow_pickle=False)


class _Crc32Writer:
    """A file-like writer passing bytes on to ``fh`` and keeping their CRC-32 (``crc``)."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.crc = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        return self.fh.write(view)


def file_crc32(path: Path, mapped: np.ndarray | None = None) -> int:
    """CRC-32 of the file at ``path``, over a read-only memory map of it (:data:`CRC_CHUNK`
    bytes at a time: no copy of the file into Python buffers). ``mapped``: the file's array as
    ``np.load(path, mmap_mode="r")`` gives it; its own map of the whole file is read then, so
    the pages this touches are mapped for the reads of its rows that follow (no page fault
    each)."""
    whole = getattr(mapped, "_mmap", None)  # np.memmap's map, from the file's first byte
    if whole is not None and len(whole) == os.path.getsize(path):
        return _crc32(whole)
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _crc32(mm)


def _crc32(mm: mmap.mmap) -> int:
    crc, view = 0, memoryview(mm)
    try:
        for start in range(0, len(mm), CRC_CHUNK):
            crc = zlib.crc32(view[start : start + CRC_CHUNK], crc)
    finally:
        view.release()
    return crc


def _free_bytes(folder: Path) -> int:
    """Bytes free for this user in ``folder``'s file system."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "disk is full" in str(error) or "database or disk is full" in str(error)


def write_segment(path: Path, vectors: np.ndarray) -> int:
    """Write ``vectors`` ``(n, D)`` float32 to ``path`` atomically: a temporary file in the same
    folder, flushed and fsynced, renamed into place, the folder fsynced. Returns the file's
    CRC-32. On any error the temporary file is removed and the error raised again; a short write
    with no error number (NumPy's "N requested and M written") on a disk with less room than the
    array is raised as ``ENOSPC``, naming the file."""
    tmp = path.with_name(path.name + ".tmp")
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        with open(tmp, "wb") as fh:
            writer = _Crc32Writer(fh)
            _write_array(writer, array)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is None and _free_bytes(path.parent) < array.nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return writer.crc


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Segments:
    """The memory maps of one gallery's segment files, opened on first use (thread-safe)."""

    def __init__(
        self,
        folder: Path,
        dim: int,
        checksum: Callable[[str], int | None] | None = None,
        hint: str = "",
    ) -> None:
        """``checksum(name)``: the CRC-32 recorded for segment ``name`` (``None``: none recorded,
        a segment written before checksums); ``hint``: the way out appended to a fault's line."""
        self.folder = folder
        self.dim = dim
        self.checksum = checksum
        self.hint = hint
        self._maps: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def open(self, name: str, *, verify: bool = True) -> np.ndarray:
        """The ``(rows, D)`` float32 memory map of segment file ``name``, its CRC-32 checked
        against the recorded one (``verify``); a fault is one line naming the file."""
        path = self.folder / name
        try:
            mm = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise SegmentMissing(
                f"{path}: vector segment file missing (the gallery references it){self.hint}",
                name,
            ) from None
        except (OSError, ValueError, EOFError) as e:
            raise SegmentDamaged(f"{path}: unreadable vector segment ({e}){self.hint}") from None
        if mm.ndim != 2 or mm.shape[1] != self.dim or mm.dtype != np.float32:
            raise SegmentDamaged(
                f"{path}: vector segment of shape {mm.shape} {mm.dtype}, "
                f"expected (n, {self.dim}) float32{self.hint}"
            )
        want = self.checksum(name) if verify and self.checksum is not None else None
        if want is not None:
            try:
                got = file_crc32(path, mm)
            except OSError as e:
                raise SegmentDamaged(
                    f"{path}: unreadable vector segment ({e}){self.hint}"
                ) from None
            if got != want:
                raise SegmentDamaged(
                    f"{path}: vector segment damaged (CRC-32 {got:08x}, {want:08x} when written)"
                    f"{self.hint}"
                )
        return mm

    def map(self, name: str) -> np.ndarray:
        """The ``(rows, D)`` float32 memory map of segment file ``name`` (:meth:`open`, the
        checksum verified the first time this process maps it)."""
        mm = self._maps.get(name)
        if mm is None:
            with self._lock:
                mm = self._maps.get(name)
                if mm is None:
                    mm = self.open(name)
                    self._maps[name] = mm
        return mm

    def forget(self, keep: set[str]) -> None:
        """Drop the maps of segment files not in ``keep`` (after a compaction)."""
        with self._lock:
            for name in list(self._maps):
                if name not in keep:
                    del self._maps[name]

    def gather(
        self, files: list[str], seg: np.ndarray, row: np.ndarray, *, view: bool = False
    ) -> np.ndarray:
        """``(m, D)`` float32: row ``row[i]`` of segment ``files[seg[i]]`` for each ``i``.

        ``seg`` indexes ``files``; rows are read segment by segment in file order. With
        ``view``, rows that are one run of one segment in order come as a read-only view of
        its memory map (no copy: faiss and BLAS read the page cache as they go)."""
        if view and _one_run(seg, row):
            a = int(row[0])
            return self.map(files[int(seg[0])])[a : a + len(row)]
        out = np.empty((len(seg), self.dim), dtype=np.float32)
        if not len(seg):
            return out
        order = np.lexsort((row, seg))
        s_sorted = seg[order]
        cuts = np.flatnonzero(np.diff(s_sorted)) + 1
        for part in np.split(order, cuts):
            mm = self.map(files[int(seg[part[0]])])
            rows = row[part]
            a, b = int(rows[0]), int(rows[-1]) + 1
            run = b - a == len(rows) and (np.diff(rows) == 1).all()  # consecutive: a slice
            src = mm[a:b] if run else mm[rows]
            if (np.diff(part) == 1).all():  # in place order (sorted input)
                out[int(part[0]) : int(part[-1]) + 1] = src
            else:
                out[part] = src
        return out

    def close(self) -> None:
        with self._lock:
            self._maps.clear()


def segment_blocks(
    segments: Segments,
    files: list[str],
    ids: np.ndarray,
    seg: np.ndarray,
    row: np.ndarray,
    chunk: int = GATHER_CHUNK,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks ``(vectors (m, D), ids (m,))`` of the items ``ids`` stored at (``seg``, ``row``),
    for :func:`cerberus.store.topk.exact_top_k`: read segment by segment in file order, at most
    ``chunk`` rows at a time (no copy of the candidates' vectors beyond one block)."""
    order = np.lexsort((row, seg))
    seg, row, ids = seg[order], row[order], ids[order]
    cuts = np.flatnonzero(np.diff(seg)) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [len(seg)]])
    for a, b in zip(starts, stops):
        if b <= a:
            continue
        mm = segments.map(files[int(seg[a])])
        for lo in range(a, b, chunk):
            hi = min(b, lo + chunk)
            rows = row[lo:hi]
            run = _one_run(seg[lo:hi], rows)  # a view of the map, not a copy
            yield mm[int(rows[0]) : int(rows[0]) + len(rows)] if run else mm[rows], ids[lo:hi]


def _one_run(seg: np.ndarray, row: np.ndarray) -> bool:
    """Whether rows ``row`` of segments ``seg`` are one run of consecutive rows of one segment."""
    if not len(row):
        return False
    a = int(row[0])
    return (
        int(row[-1]) - a + 1 == len(row)
        and bool((seg == seg[0]).all())
        and bool((np.diff(row) == 1).all())
    )


def run_breaks(seg: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Positions ``i`` where the items' storage breaks: item ``i`` is not the row after item
    ``i - 1``'s in the same segment (blocks between breaks can be read without a copy)."""
    return np.flatnonzero((seg[1:] != seg[:-1]) | (row[1:] != row[:-1] + 1)) + 1
