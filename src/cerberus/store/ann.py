"""The approximate index of the local gallery (method §9.1): a faiss IVF index with 8-bit
scalar-quantised codes, keyed by item id, used only where a search would otherwise read too many
vectors (no filter, or a weak one, on a large gallery). The caller re-ranks its candidates with
the exact vectors of the segments.

It is a cache: a file beside the segments that can always be rebuilt from them. New items are
added to it (``add_with_ids``) without retraining; it is retrained when the gallery has grown
to :data:`RETRAIN_GROWTH` times the size it was trained on. Removed items stay in it until the
next rebuild; the caller drops them (they are no longer in SQLite).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cerberus.errors import CerberusError

RETRAIN_GROWTH = 4.0
"""The index is retrained when the gallery holds this many times the items it was trained on."""

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


class AnnIndex:
    """An IVF-SQ8 index of item ids in ``folder`` (``ann.faiss`` + ``ann.json``)."""

    def __init__(self, folder: Path, dim: int, *, nprobe: int = 32, seed: int = 0) -> None:
        self.folder = folder
        self.dim = dim
        self.nprobe = nprobe
        self.seed = seed
        self.index = None
        self.covered = 0
        """Every item with an id below this was added (when it was live)."""
        self.trained_on = 0
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
        return True

    def stale(self, live: int) -> bool:
        """Whether the index must be (re)built for a gallery of ``live`` items: none yet, the
        gallery grew :data:`RETRAIN_GROWTH` times, or most of what it holds was removed."""
        if self.index is None:
            return True
        return live > RETRAIN_GROWTH * max(self.trained_on, 1) or live < self.index.ntotal / 2

    def build(self, ids: np.ndarray, gather: Gather, chunk: int = 32768) -> None:
        """Train on a sample of the items (:func:`train_ivf`, IVF-SQ8) and add them all."""
        n = len(ids)
        ivf = train_ivf(n, self.dim, gather, seed=self.seed)
        for start in range(0, n, chunk):
            pos = np.arange(start, min(n, start + chunk))
            ivf.add_with_ids(np.ascontiguousarray(gather(pos)), ids[pos])
        self.index = ivf
        self.trained_on = n
        self.covered = int(ids.max()) + 1 if n else 0

    def extend(self, ids: np.ndarray, gather: Gather, chunk: int = 32768) -> None:
        """Add items ``ids`` (all at or above :attr:`covered`) without retraining."""
        for start in range(0, len(ids), chunk):
            pos = np.arange(start, min(len(ids), start + chunk))
            self.index.add_with_ids(np.ascontiguousarray(gather(pos)), ids[pos])
        if len(ids):
            self.covered = max(self.covered, int(ids.max()) + 1)

    def save(self) -> bool:
        """Write the index and its facts (temporary files renamed into place: a reader never
        sees half a file; two processes saving at once leave one whole index). Returns whether
        it was written; when not (a full disk: faiss raises ``RuntimeError``, Python
        ``OSError``; a read-only folder), no temporary file is left, the index in memory keeps
        answering and :attr:`save_error` says why in one line: it is a cache, and failing to
        write it costs a rebuild later, nothing else."""
        faiss = faiss_module()
        token = uuid.uuid4().hex[:8]
        tmp_index = self.folder / f"{ANN_FILE}.{token}.tmp"
        tmp_meta = self.folder / f"{ANN_META}.{token}.tmp"
        try:
            faiss.write_index(self.index, str(tmp_index))
            tmp_meta.write_text(
                json.dumps({"dim": self.dim, "covered": self.covered, "n": self.trained_on})
            )
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
        return True

    def search(
        self,
        queries: np.ndarray,
        kk: int,
        bitmap: np.ndarray | None,
        fraction: float,
        nprobe: int | None = None,
    ) -> np.ndarray:
        """Candidate ids ``(Q, kk)`` (``-1`` padding) of the items whose bit is set in
        ``bitmap`` (by id, little-endian bit order; ``None``: all). A filter keeping a
        ``fraction`` of the items probes ``1 / sqrt(fraction)`` times more cells (or
        ``nprobe`` cells when given)."""
        faiss = faiss_module()
        if nprobe is None:
            nprobe = math.ceil(self.nprobe / math.sqrt(max(fraction, 1e-6)))
        nprobe = min(self.nlist, nprobe)
        params = faiss.SearchParametersIVF(nprobe=max(1, nprobe))
        if bitmap is not None:
            # faiss takes the size in bytes; ids past the end are not selected
            selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params.sel = selector
        _, found = self.index.search(np.ascontiguousarray(queries), kk, params=params)
        return found
