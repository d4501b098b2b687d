"""An ``.npz`` index file (``cerberus index --out X.npz``) as a read-only gallery store
(method §5, §9.1): building, saving and loading the file, and serving it like any backend.

Gallery vectors are :func:`cerberus.inference.scoring.embed_features` of the crops (the five
parts, each L2-normalised, concatenated, / sqrt(5)), so the inner product with an image query's
vector is the mean part cosine (reID) and with an attribute query's vectors the mean cosine with
the given groups' SID prototypes (APS; the search layer merges the SID combinations). The file
holds one faiss index: ``flat`` (exact), ``ivf``, ``ivf-sq8`` or ``hnsw`` (approximate, their
recall@10 against exact search measured and stored when built).

Unfiltered searches go through the file's own faiss index (approximate kinds stay as built);
filtered ones are exact inner products over the reconstructed vectors of the items that pass.
The file knows cameras by number (named as :func:`cerberus.inference.features.camera_label` shows
them), no times, sources, frames or tracks: each item's source is its crop's folder. Writes
are refused: ``cerberus gallery convert`` turns the file into a gallery that grows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.attributes.schema_files import schema_from_meta
from cerberus.errors import CerberusError
from cerberus.inference.features import (
    FeatureSet,
    camera_label,
    common_arrays,
    load_npz,
    read_common,
    save_npz,
)
from cerberus.inference.scoring import embed_features
from cerberus.store.ann import faiss_module, train_ivf
from cerberus.store.base import (
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
from cerberus.store.topk import exact_top_k, recall_at_k

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "ivf-sq8", "hnsw")


class NpzIndex:
    """An ``.npz`` index file's contents: a faiss inner-product index over the gallery's
    retrieval vectors, with the gallery metadata (what :class:`NpzStore` serves).

    Build it with :meth:`build`; :meth:`save` / :meth:`load` a single ``.npz`` file.
    ``kind``: ``"flat"`` (exact, default), ``"ivf"`` (inverted lists, ``nlist`` cells,
    ``nprobe`` searched), ``"ivf-sq8"`` (the same over 8-bit codes, the best 4 k re-ranked with
    the exact vectors: the fastest at a million crops) or ``"hnsw"`` (graph, ``M`` links,
    ``ef_search``).
    """

    def __init__(self, index, *, paths, pids, camids, values, prototypes, meta):
        self.index = index
        self.paths = list(paths)
        self.pids = np.asarray(pids)
        self.camids = np.asarray(camids)
        self.values = np.asarray(values)
        self.prototypes = {g: np.asarray(p, np.float32) for g, p in prototypes.items()}
        self.meta = dict(meta)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def schema(self) -> Schema:
        if getattr(self, "_schema", None) is None:
            self._schema = schema_from_meta(self.meta.get("schema"), "index")
        return self._schema

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))

    @classmethod
    def build(
        cls,
        features: FeatureSet,
        *,
        kind: str = "flat",
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
        recall_queries: int = 1000,
        seed: int = 0,
    ) -> NpzIndex:
        """Index a :class:`FeatureSet`. Approximate kinds also measure their recall@10.

        Recall@10 is measured against exact search with ``recall_queries`` gallery vectors as
        queries (each one's own entry excluded from both result lists); it is stored in
        ``meta["recall_at_10"]``.
        """
        raw = features.features  # (N, 5, d): turned into retrieval vectors chunk by chunk
        index = build_faiss_index(
            raw,
            kind=kind,
            nlist=nlist,
            nprobe=nprobe,
            hnsw_m=hnsw_m,
            ef_search=ef_search,
            seed=seed,
            transform=embed_features,
        )
        from cerberus.store.open import image_roots

        meta = {
            **features.meta,
            "roots": image_roots(features.paths),
            "index_kind": kind,
            "dim": int(index.d),
            "count": int(index.ntotal),
        }
        if kind.startswith("ivf"):
            ivf = faiss_module().extract_index_ivf(index)
            meta.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
        if kind == "hnsw":
            meta.update(hnsw_m=hnsw_m, ef_search=ef_search)
        if kind != "flat":
            meta["recall_at_10"] = recall_at_k(
                index, raw, k=10, num_queries=recall_queries, seed=seed, transform=embed_features
            )
        return cls(
            index,
            paths=features.paths,
            pids=features.pids,
            camids=features.camids,
            values=features.values,
            prototypes=features.prototypes,
            meta=meta,
        )

    def save(self, path: str | Path) -> Path:
        faiss = faiss_module()
        arrays = {
            "faiss_index": faiss.serialize_index(self.index),
            **common_arrays(self.paths, self.pids, self.camids, self.values, self.prototypes),
        }
        return save_npz(path, arrays, {**self.meta, "kind": "index"}, "index")

    @classmethod
    def load(cls, path: str | Path) -> NpzIndex:
        faiss = faiss_module()
        arrays, meta = load_npz(path, "index", "index")
        paths, pids, camids, values, prototypes = read_common(arrays, meta, path)
        try:
            index = faiss.deserialize_index(arrays["faiss_index"])
        except Exception as exc:
            raise CerberusError(f"{path}: damaged faiss index ({exc})") from None
        if index.ntotal != len(paths):
            raise CerberusError(f"{path}: {index.ntotal} vectors for {len(paths)} paths")
        return cls(
            index,
            paths=paths,
            pids=pids,
            camids=camids,
            values=values,
            prototypes=prototypes,
            meta=meta,
        )

    def search_vectors(
        self, queries: np.ndarray, k: int = 10, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: ``(scores (Q, k), indices (Q, k))``, -1 indices past the end;
        ``nprobe``: cells an ``ivf*`` index probes (else the one it was built with; ignored by
        the exact ``flat`` kind, refused by ``hnsw``, which has no cells)."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.index.d:
            raise CerberusError(
                f"query vectors of shape {q.shape} do not fit an index of dimension {self.index.d}"
            )
        kind = self.meta.get("index_kind", "flat")
        if nprobe is None or kind == "flat":  # a flat index is exact: nothing to probe
            return self.index.search(q, min(k, len(self)))
        faiss = faiss_module()
        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            raise CerberusError(
                f"nprobe {nprobe}: a {kind} index has no cells to probe (use exact search)"
            ) from None
        params = faiss.SearchParametersIVF(nprobe=min(int(nprobe), ivf.nlist))
        if isinstance(faiss.downcast_index(self.index), faiss.IndexRefine):
            # the re-ranking index: its own factor over the IVF's parameters
            refine = faiss.IndexRefineSearchParameters()
            refine.k_factor = faiss.downcast_index(self.index).k_factor
            refine.base_index_params = params
            params = refine
        return self.index.search(q, min(k, len(self)), params=params)


def _check_options(n: int, *, nlist, nprobe, hnsw_m, ef_search) -> None:
    """Refuse option values faiss would crash on, or silently turn into a useless index."""
    if nlist is not None and not 1 <= nlist <= n:
        raise CerberusError(f"--nlist {nlist}: must be between 1 and the gallery size ({n})")
    for option, value, least in (
        ("--nprobe", nprobe, 1),
        ("--hnsw-m", hnsw_m, 2),
        ("--ef-search", ef_search, 1),
    ):
        if value < least:
            raise CerberusError(f"{option} {value}: must be at least {least}")


def build_faiss_index(
    vectors: np.ndarray,
    *,
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    chunk: int = 65536,
):
    """A faiss inner-product index of ``kind`` holding ``vectors`` (``(N, D)``).

    With ``transform``, the index holds ``transform(vectors[rows])`` (e.g. the retrieval vectors
    of raw ``(N, 5, d)`` features), computed ``chunk`` rows at a time: no second full-size copy.
    """
    faiss = faiss_module()
    if kind not in INDEX_KINDS:
        raise CerberusError(f"unknown index kind {kind!r}; valid: {', '.join(INDEX_KINDS)}")
    n = len(vectors)
    if n == 0:
        raise CerberusError("cannot index an empty gallery")
    _check_options(n, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search)

    def rows_of(selection) -> np.ndarray:
        part = vectors[selection]
        part = transform(part) if transform is not None else part
        return np.ascontiguousarray(part, dtype=np.float32)

    d = rows_of(slice(0, 1)).shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(40, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    else:
        ivf = train_ivf(n, d, rows_of, nlist=nlist, sq8=kind == "ivf-sq8", seed=seed)
        ivf.nprobe = min(nprobe, ivf.nlist)
        index = ivf
        if kind == "ivf-sq8":
            index = faiss.IndexRefineFlat(ivf)
            index.own_fields = True
            ivf.this.disown()
            index.k_factor = 4
    for start in range(0, n, chunk):
        index.add(rows_of(slice(start, start + chunk)))
    return index


READ_ONLY = "read-only: convert it with `cerberus gallery convert`"


class NoVectors(StoreError):
    """The index keeps no vectors to read back (the caller embeds the crops again)."""


class NpzStore:
    """The reads of :class:`~cerberus.store.base.GalleryStore` over a
    :class:`NpzIndex`; item ids are the index's row numbers."""

    def __init__(self, index: NpzIndex, *, name: str = "index") -> None:
        self.index = index
        self.name = name
        schema = index.meta.get("schema")
        if not isinstance(schema, dict):
            schema = schema_from_meta(schema, name).to_dict()
        labels = index.meta.get("camera_labels", ())
        self.info = GalleryInfo(
            dim=int(index.index.d),
            fingerprint=index.fingerprint,
            schema=schema,
            prototypes=index.prototypes,
            checkpoint=str(index.meta.get("checkpoint") or ""),
            meta={
                k: v
                for k, v in index.meta.items()
                if k in ("camera_labels", "index_kind", "roots")
            },
        )
        n = len(index)
        cameras = [camera_label(int(c), labels) or "" for c in index.camids]
        pids = np.asarray(index.pids).astype(np.int64)
        self._meta = Items.make(
            np.zeros((n, 0), np.float32),
            source=[str(Path(p).parent) for p in index.paths],
            num_attributes=index.values.shape[1],
            camera=cameras,
            path=index.paths,
            pid=pids,
            values=index.values,
        ).with_ids(np.arange(n, dtype=np.int64))
        self._vectors: np.ndarray | None = None

    @classmethod
    def load(cls, path: str | Path) -> NpzStore:
        """The index file at ``path`` (old files open: the format is unchanged)."""
        return cls(NpzIndex.load(path), name=str(path))

    @classmethod
    def build(cls, features: FeatureSet, **options) -> NpzStore:
        """A new index of a features file (:meth:`NpzIndex.build`: ``kind``, ``nlist``,
        ``nprobe``, ``hnsw_m``, ``ef_search``), to :meth:`save`."""
        return cls(NpzIndex.build(features, **options))

    def save(self, path: str | Path) -> Path:
        """Write the index file (``cerberus index --out``)."""
        return self.index.save(path)

    # ---- writing: refused

    def add(
        self,
        items: Items,
        *,
        replace: bool = False,
        complete: bool = True,
        paths: Sequence[TrackPath] = (),
    ) -> np.ndarray:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    def finish(self, source: str) -> None:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    def remove(
        self, *, source: str | None = None, camera: str | None = None, before: float | None = None
    ) -> int:
        raise StoreError(f"{self.name}: {READ_ONLY}")

    # ---- reading

    def paths(self, source: str | None = None, track: int | None = None) -> list[TrackPath]:
        """An index file keeps no track paths: always ``[]``."""
        return []

    def vectors(self) -> np.ndarray:
        """``(N, D)`` every item's vector, read back from the faiss index once (an IVF index
        is given a direct map first); :class:`StoreError` for an index that keeps none."""
        if self._vectors is None:
            index = self.index.index
            try:
                self._vectors = index.reconstruct_n(0, index.ntotal)
            except RuntimeError:
                try:
                    faiss_module().extract_index_ivf(index).make_direct_map()
                    self._vectors = index.reconstruct_n(0, index.ntotal)
                except RuntimeError:
                    raise NoVectors(f"{self.name}: its index keeps no vectors") from None
        return self._vectors

    def _rows(self, where: Filter | None) -> np.ndarray:
        if where is None or where.empty:
            return np.arange(len(self._meta))
        return np.flatnonzero(where.matches(self._meta))

    def index_facts(self) -> dict | None:
        """The file's approximate index as ``gallery info`` shows it (``None``: flat, exact):
        its kind, cells and the recall@10 measured when it was built."""
        meta = self.index.meta
        kind = meta.get("index_kind", "flat")
        if kind == "flat":
            return None
        return {
            "kind": kind,
            "items": len(self.index),
            "nlist": meta.get("nlist"),
            "nprobe": meta.get("nprobe"),
            "recall_at_10": meta.get("recall_at_10"),
        }

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
        """Top-k per query: the file's index unfiltered (``nprobe`` cells for an ``ivf*``
        kind), exact inner products over its vectors when filtered or ``exact``."""
        nprobe = check_nprobe(nprobe, self.name)
        check_query_kind(kind, self.name)
        q, k = check_search(self.name, queries, k, self.info.dim)
        none = Hits(np.zeros(0, np.int64), np.zeros(0, np.float32))
        if len(self._meta) == 0 or len(q) == 0:
            return [none for _ in q]
        if (where is None or where.empty) and not exact:
            try:
                scores, idx = self.index.search_vectors(q, k, nprobe)
            except CerberusError as e:
                raise StoreError(f"{self.name}: {e}") from None
            return [Hits(i[i >= 0].astype(np.int64), s[i >= 0]) for s, i in zip(scores, idx)]
        rows = self._rows(where)
        if len(rows) == 0:
            return [none for _ in q]
        return exact_top_k(q, [(self.vectors()[rows], rows)], k)

    def get(self, ids: Sequence[int] | np.ndarray, *, vectors: bool = True) -> Items:
        ids = np.asarray(ids, dtype=np.int64)
        n = len(self._meta)
        bad = ids[(ids < 0) | (ids >= n)]
        if len(bad):
            raise StoreError(f"{self.name}: no item {int(bad[0])} (ids run from 0 to {n - 1})")
        items = self._meta.take(ids)
        if vectors:
            items.vectors = self.vectors()[ids]
        return items

    def ids(self, where: Filter | None = None) -> np.ndarray:
        return self._rows(where).astype(np.int64)

    def count(self, where: Filter | None = None) -> int:
        return len(self._rows(where))

    def cameras(self) -> list[str]:
        return sorted({c for c in self._meta.camera if c})

    def sources(self) -> list[SourceState]:
        names, counts = np.unique(np.asarray(self._meta.source, dtype=object), return_counts=True)
        return [SourceState(str(s), int(c), True) for s, c in zip(names, counts)]

    def close(self) -> None:
        pass
