"""Gallery search with faiss, method §5: one inner-product index serves reID and APS.

Gallery vectors are :func:`cerberus.inference.embed.embed_features` of the crops (the five parts,
each L2-normalised, concatenated, / sqrt(5)), so the inner product with

- a query image's vector is the mean over groups of the part cosines (reID);
- an attribute query's vector (the given groups' SID prototypes, normalised, zeros elsewhere,
  scaled by sqrt(5) / number of given groups) is the mean over the given groups of
  cos(p^G, f^G) (APS).

A group can also be given in part ("gender=female" without an age): its score is then the best
cosine over the group's SIDs that agree with the given attributes (the max over the full
combinations); with whole groups this is exactly method §5.2. The index searches every agreeing
combination and merges them, which keeps exact search exact. Approximate kinds (IVF, IVF-SQ8,
HNSW) measure and store their recall@10 against exact search when built.

This module is the vector store alone: it never runs the model (no PyTorch at import). Queries
by image, verdicts and result rows are the search layer's (:mod:`cerberus.search`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cerberus.attributes.schema import Schema
from cerberus.attributes.schema_files import schema_from_meta
from cerberus.errors import CerberusError
from cerberus.inference.features import FeatureSet, common_arrays, load_npz, read_common, save_npz
from cerberus.inference.scoring import AttributeQuery, attribute_query_vectors, embed_features

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "ivf-sq8", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise CerberusError("the gallery index needs faiss: pip install faiss-cpu") from None
    return faiss


@dataclass
class SearchResult:
    """Top-k of one query: ``indices`` into the gallery and ``scores`` (higher is better)."""

    indices: np.ndarray
    scores: np.ndarray


class GalleryIndex:
    """A faiss inner-product index over gallery retrieval vectors, with the gallery metadata.

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
    ) -> GalleryIndex:
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
        meta = {
            **features.meta,
            "index_kind": kind,
            "dim": int(index.d),
            "count": int(index.ntotal),
        }
        if kind.startswith("ivf"):
            ivf = _faiss().extract_index_ivf(index)
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
        faiss = _faiss()
        arrays = {
            "faiss_index": faiss.serialize_index(self.index),
            **common_arrays(self.paths, self.pids, self.camids, self.values, self.prototypes),
        }
        return save_npz(path, arrays, {**self.meta, "kind": "index"}, "index")

    @classmethod
    def load(cls, path: str | Path) -> GalleryIndex:
        faiss = _faiss()
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

    def check_model(self, fingerprint: str, where: str) -> None:
        """Refuse queries embedded by another model than the one the gallery was indexed with."""
        if fingerprint != self.fingerprint:
            raise CerberusError(
                f"{where}: model {fingerprint[:12]} is not the model this index was built "
                f"with ({self.fingerprint[:12]}, "
                f"{self.meta.get('checkpoint') or 'unknown checkpoint'}); "
                "rebuild the index with this model"
            )

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products: ``(scores (Q, k), indices (Q, k))``, -1 indices past the end."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != self.index.d:
            raise CerberusError(
                f"query vectors of shape {q.shape} do not fit an index of dimension {self.index.d}"
            )
        return self.index.search(q, min(k, len(self)))

    def search_features(self, features: np.ndarray, k: int = 10) -> list[SearchResult]:
        """reID: the top-k gallery items of each query's ``(5, d)`` representations."""
        scores, idx = self.search_vectors(embed_features(features), k)
        return [SearchResult(i[i >= 0], s[i >= 0]) for s, i in zip(scores, idx)]

    def search_attributes(self, query: AttributeQuery, k: int = 10) -> SearchResult:
        """APS: the top-k gallery items for an attribute query (partial groups allowed).

        Every agreeing SID combination is searched; an item's score is its best score over the
        combinations. The merge is exact: an item of the true top-k is in the top-k of the
        combination that gives its best score.
        """
        vectors = attribute_query_vectors(query, self.prototypes)
        scores, idx = self.search_vectors(vectors, k)
        best: dict[int, float] = {}
        for s_row, i_row in zip(scores, idx):
            for s, i in zip(s_row, i_row):
                if i >= 0 and s > best.get(int(i), -np.inf):
                    best[int(i)] = float(s)
        order = sorted(best, key=lambda i: (-best[i], i))[:k]
        return SearchResult(
            np.asarray(order, dtype=np.int64),
            np.asarray([best[i] for i in order], dtype=np.float32),
        )


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
    faiss = _faiss()
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
        # about sqrt(N) cells, k-means on at most 64 points per cell, 10 iterations: minutes
        # for 1M x 2560 on 2 cores, where 4 sqrt(N) cells and 256 points per cell take hours
        nlist = nlist or max(1, min(int(np.sqrt(n)), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        if kind == "ivf":
            ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        else:  # 8-bit codes scanned, the top k * k_factor re-ranked with the exact vectors
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        ivf.own_fields = True
        quantizer.this.disown()
        rng = np.random.default_rng(seed)
        sample = rows_of(
            slice(0, n) if n <= 64 * nlist else np.sort(rng.choice(n, 64 * nlist, replace=False))
        )
        ivf.cp.seed = seed
        ivf.cp.niter = 10
        ivf.train(sample)
        ivf.nprobe = min(nprobe, nlist)
        index = ivf
        if kind == "ivf-sq8":
            index = faiss.IndexRefineFlat(ivf)
            index.own_fields = True
            ivf.this.disown()
            index.k_factor = 4
    for start in range(0, n, chunk):
        index.add(rows_of(slice(start, start + chunk)))
    return index


def exact_top_k(
    gallery: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    chunk: int = 65536,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Indices ``(Q, k)`` of the k largest inner products, by chunked matrix products.

    Reads ``gallery`` in place, chunk by chunk (through ``transform`` if given): no second copy
    of a large gallery.
    """
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    best_s = torch.full((len(q), 0), -np.inf)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(gallery), chunk):
        part = gallery[start : start + chunk]
        part = transform(part) if transform is not None else part
        g = torch.from_numpy(np.ascontiguousarray(part, np.float32))
        s = q @ g.T
        top = s.topk(min(k, s.shape[1]), dim=1)
        best_s = torch.cat([best_s, top.values], 1)
        best_i = torch.cat([best_i, top.indices + start], 1)
        keep = best_s.topk(min(k, best_s.shape[1]), dim=1)
        best_s, best_i = keep.values, best_i.gather(1, keep.indices)
    return best_i.numpy()


def recall_at_k(
    index,
    vectors: np.ndarray,
    *,
    k: int = 10,
    num_queries: int = 1000,
    seed: int = 0,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> float:
    """Mean fraction of the exact top-k (inner product) that ``index`` returns.

    Queries are ``num_queries`` random rows of ``vectors`` (through ``transform`` if given, as in
    :func:`build_faiss_index`); each query's own row is left out of both lists.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(num_queries, n), replace=False))
    queries = vectors[rows]
    queries = np.ascontiguousarray(
        transform(queries) if transform is not None else queries, dtype=np.float32
    )
    kk = min(k + 1, n)
    truth = exact_top_k(vectors, queries, kk, transform=transform)
    _, found = index.search(queries, kk)
    hits = []
    for r, t, f in zip(rows, truth, found):
        t = [i for i in t if i != r][:k]
        f = {i for i in f if i != r and i >= 0}
        if t:
            hits.append(len(f.intersection(t)) / len(t))
    return float(np.mean(hits)) if hits else 1.0
