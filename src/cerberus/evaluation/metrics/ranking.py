"""reID and APS metrics: ranking a gallery per query, pure functions on arrays (method §6).

* :func:`reid_metrics`: mAP and CMC under the Market-1501 single-query protocol. Its numbers equal
  those of torchreid's ``evaluate_rank`` (Market mode) when scores have no ties.
* :func:`aps_queries` / :func:`aps_metrics`: attribute-based person search, full or partial queries.
* :func:`reid_chance`, :func:`aps_chance`: the exact expectation of a random ranking.

Every (query, gallery) pair gets a label, *relevant*, *negative* or *removed* (removed entries are
skipped as if absent from the gallery). Queries are processed in chunks of rows sized from a
memory budget; each chunk is sorted as a 2-D array and the metrics come from the sorted positions
of the (few) relevant and removed entries, without any Python loop over queries.

Ties: gallery entries with equal scores are ranked by gallery index (a stable sort; ``-0.0`` and
``0.0`` are equal). torchreid uses an unstable sort, so its numbers may differ when a relevant and
a non-relevant entry tie.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cerberus.attributes.schema import GROUPS
from cerberus.errors import CerberusError

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "aps_chance",
    "aps_metrics",
    "aps_queries",
    "reid_chance",
    "reid_metrics",
]

DEFAULT_MEMORY_BUDGET = 256 * 2**20
"""Bytes of temporary memory one chunk of queries may use when ``chunk_size`` is not given."""


_BYTES_PER_ENTRY = 40
"""Peak temporary bytes per (query, gallery) entry of a chunk, rounded up from measurements
(float32 path ~20, torch path ~32), used to turn the memory budget into query rows per chunk."""


_RELEVANT, _REMOVED = 1, 2
"""Label codes of a (query, gallery) pair; 0 is a negative."""


_PACKED_DTYPES = ("float32", "float16", "bool", "int8", "uint8", "int16", "uint16")
"""Score dtypes represented exactly in float32: ranked by one packed 64-bit key sort."""


_MAX_PACKED_GALLERY = 2**30


Labeler = Callable[[int, int], np.ndarray]
"""``labels(start, stop)`` -> uint8 array ``(stop - start, n_gallery)`` of label codes (0, 1 or
2) for the query rows ``start:stop``, gallery in input order."""


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_scores(scores: Any, *, chunk_rows: int | None = None) -> np.ndarray:
    arr = _to_numpy(scores)
    if arr.dtype.kind not in "biuf":
        raise CerberusError(f"scores: expected real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise CerberusError(f"scores: expected shape (n_queries, n_gallery), got {arr.shape}")
    if 0 in arr.shape:
        raise CerberusError(f"scores: empty score matrix of shape {arr.shape}")
    if arr.dtype.kind == "f":
        rows = chunk_rows or _auto_chunk_rows(arr.shape[1])
        for start in range(0, arr.shape[0], rows):
            block = arr[start : start + rows]
            if np.isnan(block).any():
                i, j = np.argwhere(np.isnan(block))[0]
                raise CerberusError(f"scores: NaN at query {start + i}, gallery {j}")
    return arr


def _check_ids(x: Any, name: str, length: int | None, what: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 1:
        raise CerberusError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise CerberusError(f"{name}: expected integers, got dtype {arr.dtype}")
    if length is not None and len(arr) != length:
        raise CerberusError(f"{name}: has {len(arr)} entries but {what}")
    return arr.astype(np.int64, copy=False)


def _check_options(
    ranks: Sequence[int], max_rank: int, chunk_size: int | None = None
) -> tuple[int, ...]:
    ranks = tuple(ranks)
    if not ranks or any(not isinstance(k, (int, np.integer)) or k < 1 for k in ranks):
        raise CerberusError(f"ranks: expected positive integers, got {ranks}")
    if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise CerberusError(f"max_rank: expected a positive integer, got {max_rank!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise CerberusError(f"chunk_size: expected a positive integer or None, got {chunk_size!r}")
    return tuple(int(k) for k in ranks)


def _check_sids(x: Any, name: str, rows: int | None = None) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 2 or arr.shape[1] != len(GROUPS):
        raise CerberusError(f"{name}: expected shape (n, {len(GROUPS)}), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise CerberusError(f"{name}: expected integer SIDs, got dtype {arr.dtype}")
    if rows is not None and arr.shape[0] != rows:
        raise CerberusError(f"{name}: has {arr.shape[0]} rows but scores has {rows}")
    return arr.astype(np.int64, copy=False)


def _auto_chunk_rows(num_gallery: int) -> int:
    return max(1, DEFAULT_MEMORY_BUDGET // (_BYTES_PER_ENTRY * num_gallery))


def _ranked_labels(scores: np.ndarray, labels: np.ndarray, *, higher_is_better: bool) -> np.ndarray:
    """Labels ``(C, G)`` permuted into each row's ranking (best first, ties by gallery index).

    Scores exact in float32 are ranked by sorting one uint64 key per entry: the score's order-
    preserving 32-bit image (high word), then ``gallery_index << 2 | label`` (low word). The
    index makes keys unique, so a plain (SIMD) value sort yields the stable ranking, and the label
    travels with its entry: no argsort, no gather. Other dtypes use torch's stable argsort.
    """
    num_gallery = scores.shape[1]
    if scores.dtype.name in _PACKED_DTYPES and num_gallery <= _MAX_PACKED_GALLERY:
        s = np.add(scores, np.float32(0.0), dtype=np.float32)  # a copy; -0.0 becomes +0.0
        # Ascending image of a float's bits: x >= 0 -> bits | 2**31, x < 0 -> ~bits. Descending
        # is its complement: x >= 0 -> bits ^ (2**31 - 1), x < 0 -> bits.
        mask = s.view(np.int32) >> 31  # -1 where x < 0, else 0
        if higher_is_better:
            np.invert(mask, out=mask)
            mask &= np.int32(0x7FFFFFFF)
        else:
            mask |= np.int32(-(2**31))
        bits = s.view(np.uint32)
        bits ^= mask.view(np.uint32)
        del mask
        key = np.left_shift(bits, np.uint64(32), dtype=np.uint64)
        del s, bits
        key |= np.arange(num_gallery, dtype=np.uint64) << np.uint64(2)
        key |= labels
        key.sort(axis=1)
        key &= np.uint64(3)
        return key
    values = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float64))
    order = torch.argsort(values, dim=1, descending=higher_is_better, stable=True)
    return torch.gather(torch.from_numpy(labels), 1, order).numpy()


def _chunk_ranking(ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query AP and first-hit rank from ranked labels ``(C, G)``; sparse in the hits.

    Returns ``valid (C,)`` (the query has a relevant entry), ``ap (V,)`` and ``first_rank (V,)``
    (1-based, among kept entries) of the valid queries.
    """
    num_rows, num_gallery = ranked.shape
    flat = ranked.reshape(-1)
    where = np.flatnonzero(flat)  # relevant or removed entries, row-major so sorted
    is_hit = flat[where] == _RELEVANT
    hit, removed = where[is_hit], where[~is_hit]
    hit_row, hit_col = np.divmod(hit, num_gallery)
    removed_before = np.searchsorted(removed, hit) - np.searchsorted(removed, hit - hit_col)
    rank = hit_col - removed_before + 1  # 1-based rank among kept gallery entries
    num_relevant = np.bincount(hit_row, minlength=num_rows)
    row_start = np.cumsum(num_relevant) - num_relevant
    hits_so_far = np.arange(len(hit)) - row_start[hit_row] + 1
    precision_sum = np.bincount(hit_row, weights=hits_so_far / rank, minlength=num_rows)
    valid = num_relevant > 0
    ap = precision_sum[valid] / num_relevant[valid]
    return valid, ap, rank[row_start[valid]]


def _rank_all(
    scores: np.ndarray,
    labeler: Labeler,
    *,
    higher_is_better: bool,
    chunk_size: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num_queries, num_gallery = scores.shape
    rows = chunk_size or _auto_chunk_rows(num_gallery)
    valid, ap, first = [], [], []
    for start in range(0, num_queries, rows):
        stop = min(start + rows, num_queries)
        ranked = _ranked_labels(
            scores[start:stop], labeler(start, stop), higher_is_better=higher_is_better
        )
        v, a, f = _chunk_ranking(ranked)
        del ranked
        valid.append(v)
        ap.append(a)
        first.append(f)
    return np.concatenate(valid), np.concatenate(ap), np.concatenate(first)


def _summary(
    valid: np.ndarray, ap: np.ndarray, first_rank: np.ndarray, ranks: tuple[int, ...], max_rank: int
) -> dict[str, Any]:
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise CerberusError("no query has a relevant gallery entry; metrics are undefined")
    counts = np.bincount(np.minimum(first_rank, max_rank + 1), minlength=max_rank + 2)
    out: dict[str, Any] = {"map_score": float(ap.mean())}
    for k in ranks:
        out[f"rank{k}_score"] = float(np.mean(first_rank <= k))
    out["cmc"] = np.cumsum(counts[1 : max_rank + 1]) / num_valid
    out["num_valid_queries"] = num_valid
    out["num_skipped_queries"] = int(len(valid) - num_valid)
    return out


def _chance_summary(
    num_kept: np.ndarray, num_relevant: np.ndarray, ranks: tuple[int, ...], max_rank: int
) -> dict[str, Any]:
    """Exact expected AP and CMC of a uniformly random ranking, per query, then averaged."""
    valid = num_relevant > 0
    if not valid.any():
        raise CerberusError("no query has a relevant gallery entry; metrics are undefined")
    n = num_kept[valid].astype(np.float64)
    r = num_relevant[valid].astype(np.float64)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, num_kept.max() + 1))])
    h_n = harmonic[num_kept[valid]]
    # E[AP] = (H_n + (r - 1) / (n - 1) * (n - H_n)) / n, from E[rel_i rel_j] = r(r-1)/(n(n-1)).
    ap = np.where(n > 1, (h_n + (r - 1) / np.maximum(n - 1, 1) * (n - h_n)) / n, 1.0)
    # P(first hit > k) = prod_{t<k} (n - r - t) / (n - t)  (hypergeometric: no hit in top k).
    depth = max(max_rank, *ranks)
    t = np.arange(depth, dtype=np.float64)
    factor = np.clip(n[:, None] - r[:, None] - t, 0, None) / np.maximum(n[:, None] - t, 1)
    cmc_all = 1.0 - np.cumprod(factor, axis=1)  # (V, depth): E[CMC(k)] at column k - 1
    out: dict[str, Any] = {"map_score": float(ap.mean())}
    for k in ranks:
        out[f"rank{k}_score"] = float(cmc_all[:, k - 1].mean())
    out["cmc"] = cmc_all[:, :max_rank].mean(0)
    out["num_valid_queries"] = int(valid.sum())
    out["num_skipped_queries"] = int((~valid).sum())
    return out


def _label_counts(labeler: Labeler, num_queries: int, num_gallery: int) -> tuple[np.ndarray, ...]:
    """Per query: gallery entries kept (not removed) and relevant entries among them."""
    rows = _auto_chunk_rows(num_gallery)
    kept, relevant = [], []
    for start in range(0, num_queries, rows):
        lab = labeler(start, min(start + rows, num_queries))
        kept.append(num_gallery - (lab == _REMOVED).sum(1))
        relevant.append((lab == _RELEVANT).sum(1))
    return np.concatenate(kept), np.concatenate(relevant)


def _reid_labeler(
    query_pids: np.ndarray,
    gallery_pids: np.ndarray,
    query_camids: np.ndarray | None,
    gallery_camids: np.ndarray | None,
    query_images: np.ndarray | None = None,
    gallery_images: np.ndarray | None = None,
) -> Labeler:
    junk = gallery_pids == -1

    def labels(start: int, stop: int) -> np.ndarray:
        same_id = query_pids[start:stop, None] == gallery_pids[None, :]
        if query_camids is not None and gallery_camids is not None:
            removed = same_id & (query_camids[start:stop, None] == gallery_camids[None, :])
        else:
            removed = np.zeros_like(same_id)
        if query_images is not None and gallery_images is not None:
            removed |= query_images[start:stop, None] == gallery_images[None, :]
        removed |= junk
        return np.where(removed, np.uint8(_REMOVED), same_id.view(np.uint8))

    return labels


def _check_reid_inputs(
    scores: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    chunk_size: int | None = None,
    query_images: Any = None,
    gallery_images: Any = None,
) -> tuple[Any, ...]:
    """Checked ``(scores or None, query_pids, gallery_pids, query_camids, gallery_camids,
    query_images, gallery_images)``; camera and image arrays may be None (in pairs)."""
    if scores is not None:
        scores = _check_scores(scores, chunk_rows=chunk_size)
        num_q, num_g = scores.shape
        q_what = f"scores has {num_q} queries (rows)"
        g_what = f"scores has {num_g} gallery entries (columns)"
    else:
        num_q = num_g = None
    qp = _check_ids(query_pids, "query_pids", num_q, "" if num_q is None else q_what)
    gp = _check_ids(gallery_pids, "gallery_pids", num_g, "" if num_g is None else g_what)
    if num_q is None:
        q_what = f"query_pids has {len(qp)}"
        g_what = f"gallery_pids has {len(gp)}"
    if (query_camids is None) != (gallery_camids is None):
        raise CerberusError("query_camids and gallery_camids: give both or neither")
    if (query_images is None) != (gallery_images is None):
        raise CerberusError("query_images and gallery_images: give both or neither")
    qc = gc = qi = gi = None
    if query_camids is not None:
        qc = _check_ids(query_camids, "query_camids", len(qp), q_what)
        gc = _check_ids(gallery_camids, "gallery_camids", len(gp), g_what)
    if query_images is not None:
        qi = _check_ids(query_images, "query_images", len(qp), q_what)
        gi = _check_ids(gallery_images, "gallery_images", len(gp), g_what)
    return scores, qp, gp, qc, gc, qi, gi


def reid_metrics(
    scores: Any,
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    *,
    query_images: Any = None,
    gallery_images: Any = None,
    higher_is_better: bool = True,
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """mAP and CMC under the Market-1501 single-query protocol (method §6.1).

    For query ``i``, the gallery entries with the query's identity *and* camera are removed, as
    are junk entries (identity ``-1``); distractors (identity ``0``) stay as negatives. Among the
    kept entries, ranked by score, let ``R_i`` be the 1-based ranks of the ``r_i`` true matches
    (same identity). Then::

        AP_i = (1 / r_i) * sum_{m=1..r_i} m / R_i[m]      (precision at each true match)
        CMC_i(k) = 1 if min(R_i) <= k else 0

    and ``map_score`` / ``rank{k}_score`` / ``cmc`` average these over the valid queries
    (``r_i > 0``); other queries are skipped. Equal to torchreid's ``evaluate_rank`` in Market
    mode (with junk images dropped from the gallery, as its loader does) when there are no ties.
    Ties are ranked by gallery index (stable sort).

    Without cameras (``query_camids = gallery_camids = None``) no same-camera entry can be
    removed: only the query image itself is, found by ``query_images`` / ``gallery_images``
    (equal numbers = the same image file, e.g. indices of the distinct paths), and junk.

    Queries are processed in chunks of ``chunk_size`` rows (by default sized so that temporaries
    stay within :data:`DEFAULT_MEMORY_BUDGET`); peak memory beyond the input does not grow with
    the number of queries.

    Args:
        scores: array of shape ``(n_queries, n_gallery)``; similarities, or distances when
            ``higher_is_better=False``. No NaN. float32 (or narrower) is fastest.
        query_pids: int array of shape ``(n_queries,)``.
        gallery_pids: int array of shape ``(n_gallery,)``; ``-1`` junk, ``0`` distractor.
        query_camids: int array of shape ``(n_queries,)``, or None when cameras are unknown.
        gallery_camids: int array of shape ``(n_gallery,)``, or None with ``query_camids``.
        query_images: optional int array of shape ``(n_queries,)``: an image key per query.
        gallery_images: optional int array of shape ``(n_gallery,)``: a gallery entry with its
            query's key is removed (the query image itself).
        higher_is_better: ``True`` for similarities, ``False`` for distances.
        ranks: the CMC ranks reported as ``rank{k}_score``.
        max_rank: length of the returned ``cmc`` curve.
        chunk_size: query rows per chunk; ``None`` sizes it from the memory budget.

    Returns:
        ``{"map_score": float, "rank1_score": float, ... (one per rank), "cmc": array of shape
        (max_rank,), "num_valid_queries": int, "num_skipped_queries": int}``.

    Raises:
        CerberusError: bad shapes, dtypes or lengths, NaN scores, bad options, or no valid query.

    Examples:
        Query 0 (identity 1, camera 0) finds its match at rank 3; query 1's only match is in
        its own camera, so it is skipped:

        >>> scores = [[0.3, 0.8, 0.9], [0.2, 0.7, 0.6]]
        >>> m = reid_metrics(scores, [1, 2], [1, 2, 0], [0, 0], [1, 0, 1])
        >>> round(m["map_score"], 4), m["rank1_score"], m["rank5_score"], m["num_valid_queries"]
        (0.3333, 0.0, 1.0, 1)

        Without cameras, query 0 is gallery image 0 itself (key 7): only that entry is removed.

        >>> m = reid_metrics(
        ...     [[0.9, 0.8, 0.1]], [1], [1, 1, 2], None, None,
        ...     query_images=[7], gallery_images=[7, 8, 9],
        ... )
        >>> m["map_score"], m["rank1_score"]
        (1.0, 1.0)
    """
    ranks = _check_options(ranks, max_rank, chunk_size)
    scores, *checked = _check_reid_inputs(
        scores,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        chunk_size,
        query_images,
        gallery_images,
    )
    valid, ap, first = _rank_all(
        scores,
        _reid_labeler(*checked),
        higher_is_better=higher_is_better,
        chunk_size=chunk_size,
    )
    return _summary(valid, ap, first, ranks, max_rank)


def reid_chance(
    query_pids: Any,
    gallery_pids: Any,
    query_camids: Any,
    gallery_camids: Any,
    *,
    query_images: Any = None,
    gallery_images: Any = None,
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
) -> dict[str, Any]:
    """Expected :func:`reid_metrics` under a uniformly random ranking (exact, no sampling).

    For a query with ``n`` kept gallery entries of which ``r`` are true matches::

        E[AP] = (H_n + (r - 1) / (n - 1) * (n - H_n)) / n,   H_n = sum_{j=1..n} 1 / j
        E[CMC(k)] = 1 - C(n - r, k) / C(n, k)

    averaged over the valid queries (the same queries :func:`reid_metrics` keeps).

    Args:
        query_pids, gallery_pids, query_camids, gallery_camids, query_images, gallery_images:
            as in :func:`reid_metrics`.
        ranks: the CMC ranks reported as ``rank{k}_score``.
        max_rank: length of the returned ``cmc`` curve.

    Returns:
        The same keys as :func:`reid_metrics`.
    """
    ranks = _check_options(ranks, max_rank)
    _, *checked = _check_reid_inputs(
        None,
        query_pids,
        gallery_pids,
        query_camids,
        gallery_camids,
        None,
        query_images,
        gallery_images,
    )
    qp, gp = checked[0], checked[1]
    kept, relevant = _label_counts(_reid_labeler(*checked), len(qp), len(gp))
    return _chance_summary(kept, relevant, ranks, max_rank)


def _group_columns(groups: Sequence[str]) -> list[int]:
    groups = tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if not groups or unknown or len(set(groups)) != len(groups):
        raise CerberusError(
            f"groups: expected distinct letters among {', '.join(GROUPS)}, got {groups}"
        )
    return sorted(GROUPS.index(g) for g in groups)


def aps_queries(sids: Any, *, groups: Sequence[str] = GROUPS) -> np.ndarray:
    """The APS queries of a split: its distinct SID combinations over ``groups`` (method §6.2).

    Unknown SIDs (``-1``, a group with an unannotated value) are left out: a row whose SID is
    unknown in a requested group gives its query *without that group* (``-1`` there, so the group
    is not given and relevance is judged on the row's known groups only), and a row with no known
    SID among ``groups`` gives no query. Rows that agree on their known groups and have the same
    unknown groups collapse into one query.

    Args:
        sids: int array of shape ``(n, 5)``, one row per test identity (rows of images work too:
            duplicates collapse), columns in :data:`~cerberus.attributes.schema.GROUPS` order;
            ``-1`` = unknown.
        groups: the given groups, e.g. ``("U", "L")`` for a partial query; all five by default.

    Returns:
        int array of shape ``(n_queries, 5)``: the distinct combinations, sorted, with ``-1`` in
        the columns of groups not given (which is how :func:`aps_metrics` reads them by default).

    Raises:
        CerberusError: bad shape or dtype, a SID below ``-1``, bad ``groups``, or no row with a
            known SID among ``groups``.

    Examples:
        Identity 2's lower-body SID is unknown: its full query gives the other four groups.

        >>> aps_queries([[0, 1, 2, 0, 3], [0, 1, -1, 0, 3]])
        array([[ 0,  1, -1,  0,  3],
               [ 0,  1,  2,  0,  3]])
    """
    sids = _check_sids(sids, "sids")
    if (sids < -1).any():
        raise CerberusError(f"sids: {sids[sids < -1][0]} is neither a SID nor -1 (unknown)")
    cols = _group_columns(groups)
    chosen = sids[:, cols]
    chosen = chosen[(chosen >= 0).any(1)]
    if not len(chosen):
        raise CerberusError(
            f"sids: no row has a known SID in the groups {', '.join(GROUPS[c] for c in cols)}; "
            "there is no APS query"
        )
    unique = np.unique(chosen, axis=0)
    out = np.full((len(unique), len(GROUPS)), -1, dtype=np.int64)
    out[:, cols] = unique
    return out


def _check_given(given_groups: Any, query_sids: np.ndarray) -> np.ndarray:
    if given_groups is None:
        given = query_sids >= 0
    else:
        given = _to_numpy(given_groups)
        if given.dtype != np.bool_:
            raise CerberusError(f"given_groups: expected a bool mask, got dtype {given.dtype}")
        if given.shape not in ((len(GROUPS),), query_sids.shape):
            raise CerberusError(
                f"given_groups: expected shape ({len(GROUPS)},) or {query_sids.shape}, "
                f"got {given.shape}"
            )
        given = np.broadcast_to(given, query_sids.shape)
        if (query_sids[given] < 0).any():
            raise CerberusError("query_sids: negative (unknown) SID in a given group")
    if not given.any(1).all():
        row = int(np.nonzero(~given.any(1))[0][0])
        raise CerberusError(f"given_groups: query {row} gives no group")
    return given


def _aps_labeler(
    query_sids: np.ndarray, gallery_sids: np.ndarray, given: np.ndarray, alt_sids: np.ndarray
) -> Labeler:
    unknown = gallery_sids < 0  # (G, 5): relevance cannot be judged on these groups

    def labels(start: int, stop: int) -> np.ndarray:
        relevant = np.ones((stop - start, len(gallery_sids)), dtype=bool)
        removed = np.zeros_like(relevant)
        for k in range(len(GROUPS)):
            g = given[start:stop, k]
            if g.any():
                q = query_sids[start:stop, k, None]
                match = q == gallery_sids[None, :, k]
                for slot in range(alt_sids.shape[1]):
                    match |= q == alt_sids[None, :, slot, k]
                match |= ~g[:, None]
                relevant &= match
                if unknown[:, k].any():
                    removed |= g[:, None] & unknown[None, :, k]
        return np.where(removed, np.uint8(_REMOVED), relevant.view(np.uint8))

    return labels


def _check_alt_sids(x: Any, num_gallery: int) -> np.ndarray:
    if x is None:
        return np.full((num_gallery, 0, len(GROUPS)), -1, dtype=np.int64)
    arr = _to_numpy(x)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[0] != num_gallery or arr.shape[2] != len(GROUPS):
        raise CerberusError(
            f"gallery_alt_sids: expected shape ({num_gallery}, K, {len(GROUPS)}) or "
            f"({num_gallery}, {len(GROUPS)}), got {arr.shape}"
        )
    if arr.dtype.kind not in "iu":
        raise CerberusError(f"gallery_alt_sids: expected integer SIDs, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if (arr < -1).any():
        raise CerberusError(
            f"gallery_alt_sids: {arr[arr < -1][0]} is neither a SID nor -1 (no alternative)"
        )
    return arr


def _check_aps_inputs(
    scores, query_sids, gallery_sids, given_groups, gallery_alt_sids, chunk_size=None
):
    scores = _check_scores(scores, chunk_rows=chunk_size) if scores is not None else None
    q = _check_sids(query_sids, "query_sids", None if scores is None else scores.shape[0])
    g = _check_sids(gallery_sids, "gallery_sids")
    if scores is not None and len(g) != scores.shape[1]:
        raise CerberusError(
            f"gallery_sids: has {len(g)} rows but scores has {scores.shape[1]} gallery columns"
        )
    if (g < -1).any():
        raise CerberusError(
            f"gallery_sids: {g[g < -1][0]} is neither a SID nor -1 (unknown); the APS gallery "
            "holds only identities with attributes (no distractors or junk)"
        )
    return scores, q, g, _check_given(given_groups, q), _check_alt_sids(gallery_alt_sids, len(g))


def aps_metrics(
    scores: Any,
    query_sids: Any,
    gallery_sids: Any,
    *,
    given_groups: Any = None,
    gallery_alt_sids: Any = None,
    higher_is_better: bool = True,
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """mAP and CMC of attribute-based person search (method §6.2).

    Gallery entry ``j`` is relevant to query ``i`` when ``gallery_sids[j, g] == query_sids[i, g]``
    for every given group ``g``. No camera filtering. A gallery entry whose SID is unknown
    (``-1``) in a group the query gives cannot be judged and is removed from that query's ranking
    (as if absent; it stays for queries that do not give the group). AP and CMC are as in
    :func:`reid_metrics`; queries with no relevant entry are skipped and counted. The gallery of
    method §6.2
    (test gallery without distractors and junk, plus the query images) is the caller's to build.

    An identity annotated with several colours (``AttributeTable.alt_values``) has alternative
    SIDs; with ``gallery_alt_sids`` a group also matches when
    ``gallery_alt_sids[j, k, g] == query_sids[i, g]`` for some slot ``k``, so any combination of
    the identity's annotated colours is relevant.

    Args:
        scores: array of shape ``(n_queries, n_gallery)``, e.g. mean cosine over given groups.
        query_sids: int array of shape ``(n_queries, 5)`` (see :func:`aps_queries`).
        gallery_sids: int array of shape ``(n_gallery, 5)``; ``-1`` = unknown (see above).
        given_groups: bool mask of shape ``(5,)`` (same groups for every query) or
            ``(n_queries, 5)``; ``None`` means the columns where ``query_sids >= 0``.
        gallery_alt_sids: optional int array of shape ``(n_gallery, K, 5)`` (or
            ``(n_gallery, 5)`` for ``K = 1``), ``-1`` where there is no alternative; see
            :meth:`~cerberus.attributes.schema.Schema.alternative_sids`.
        higher_is_better: ``True`` for similarities, ``False`` for distances.
        ranks: the CMC ranks reported as ``rank{k}_score``.
        max_rank: length of the returned ``cmc`` curve.
        chunk_size: query rows per chunk; ``None`` sizes it from the memory budget.

    Returns:
        The same keys as :func:`reid_metrics`.

    Raises:
        CerberusError: bad shapes or dtypes, NaN scores, a query with no given group, a negative
            SID in a given group, a gallery SID below ``-1``, or no valid query.
    """
    ranks = _check_options(ranks, max_rank, chunk_size)
    scores, q, g, given, alt = _check_aps_inputs(
        scores, query_sids, gallery_sids, given_groups, gallery_alt_sids, chunk_size
    )
    valid, ap, first = _rank_all(
        scores,
        _aps_labeler(q, g, given, alt),
        higher_is_better=higher_is_better,
        chunk_size=chunk_size,
    )
    return _summary(valid, ap, first, ranks, max_rank)


def aps_chance(
    query_sids: Any,
    gallery_sids: Any,
    *,
    given_groups: Any = None,
    gallery_alt_sids: Any = None,
    ranks: Sequence[int] = (1, 5, 10),
    max_rank: int = 50,
) -> dict[str, Any]:
    """Expected :func:`aps_metrics` under a uniformly random ranking (exact, no sampling).

    The formulas of :func:`reid_chance` with ``n`` the gallery entries kept for the query (those
    not removed for an unknown given group) and ``r`` the relevant entries among them.

    Args:
        query_sids, gallery_sids, given_groups, gallery_alt_sids: as in :func:`aps_metrics`.
        ranks: the CMC ranks reported as ``rank{k}_score``.
        max_rank: length of the returned ``cmc`` curve.

    Returns:
        The same keys as :func:`reid_metrics`.
    """
    ranks = _check_options(ranks, max_rank)
    _, q, g, given, alt = _check_aps_inputs(
        None, query_sids, gallery_sids, given_groups, gallery_alt_sids
    )
    kept, relevant = _label_counts(_aps_labeler(q, g, given, alt), len(q), len(g))
    return _chance_summary(kept, relevant, ranks, max_rank)
