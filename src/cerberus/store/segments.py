"""Vector segments of the local gallery (method §9.1): immutable ``.npy`` files of float32 rows,
memory-mapped on read, and the blocks of rows gathered from them that the exact top-k
(:mod:`cerberus.store.topk`) scores.

A segment is written once (a new file, flushed and fsynced, then renamed into place) and never
changed; SQLite says which segments and rows are live. Gathering reads only the rows asked for.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cerberus.store.base import StoreError

GATHER_CHUNK = 32768
"""Rows gathered and scored at a time by :func:`segment_blocks` (at D = 2560: 320 MB of float32)."""


def _write_array(fh, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` to the open file ``fh`` (one place, so tests can fail it)."""
    np.lib.format.write_array(fh, array, allow_pickle=False)


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's quota) is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "disk is full" in str(error) or "database or disk is full" in str(error)


def write_segment(path: Path, vectors: np.ndarray) -> None:
    """Write ``vectors`` ``(n, D)`` float32 to ``path`` atomically: a temporary file in the same
    folder, flushed and fsynced, renamed into place, the folder fsynced. On any error the
    temporary file is removed and the error raised again."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            _write_array(fh, np.ascontiguousarray(vectors, dtype=np.float32))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = folder
        self.dim = dim
        self._maps: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def map(self, name: str) -> np.ndarray:
        """The ``(rows, D)`` float32 memory map of segment file ``name``."""
        mm = self._maps.get(name)
        if mm is None:
            with self._lock:
                mm = self._maps.get(name)
                if mm is None:
                    path = self.folder / name
                    try:
                        mm = np.load(path, mmap_mode="r", allow_pickle=False)
                    except FileNotFoundError:
                        raise
                    except (OSError, ValueError) as e:
                        raise StoreError(f"{path}: unreadable vector segment ({e})") from None
                    if mm.ndim != 2 or mm.shape[1] != self.dim or mm.dtype != np.float32:
                        raise StoreError(
                            f"{path}: vector segment of shape {mm.shape} {mm.dtype}, "
                            f"expected (n, {self.dim}) float32"
                        )
                    self._maps[name] = mm
        return mm

    def forget(self, keep: set[str]) -> None:
        """Drop the maps of segment files not in ``keep`` (after a compaction)."""
        with self._lock:
            for name in list(self._maps):
                if name not in keep:
                    del self._maps[name]

    def gather(self, files: list[str], seg: np.ndarray, row: np.ndarray) -> np.ndarray:
        """``(m, D)`` float32: row ``row[i]`` of segment ``files[seg[i]]`` for each ``i``.

        ``seg`` indexes ``files``; rows are read segment by segment in file order."""
        out = np.empty((len(seg), self.dim), dtype=np.float32)
        if not len(seg):
            return out
        order = np.lexsort((row, seg))
        s_sorted = seg[order]
        cuts = np.flatnonzero(np.diff(s_sorted)) + 1
        for part in np.split(order, cuts):
            mm = self.map(files[int(seg[part[0]])])
            out[part] = mm[row[part]]
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
            yield mm[row[lo:hi]], ids[lo:hi]
