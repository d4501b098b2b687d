"""Gallery search: top-10 latency and recall@10 of faiss indexes vs brute-force PyTorch.

Retrieval vectors of dimension 2560 (5 groups x d = 512, each group L2-normalised, concatenated
and divided by sqrt 5, as :func:`cerberus.inference.embed.embed_features` makes them; inner product
= mean cosine over groups). Galleries of 100k and 1M vectors; for each index kind: build seconds,
memory, milliseconds per query for a batch of queries and for single queries, recall@10 against
the exact top-10 of a brute-force PyTorch search (chunked matmul + topk over the flat index's own
storage, no copy).

Synthetic but reID-like data. Uniform random vectors would be the wrong test: in 2560
dimensions all their pairwise similarities concentrate near 0, so a query has no neighbourhood
(its "top-10" is a near-tie among a million equidistant points), IVF and HNSW recall collapses
and no setting transfers to real galleries. Real reID embeddings are clustered: several views per
identity close together, identities sharing attributes closer than others, and a component that
all person crops share. So per group G each identity centre is ``unit(0.6 common_G + 1.0
prototype_G[sid] + unit identity noise)`` (SID drawn among Market-1501's SID counts 4 / 18 / 40 /
8 / 8); every gallery entry is one of 16 views ``unit(centre + noise)`` of its identity (N / 16
identities, noise level drawn per view). Query-to-gallery similarity (mean cosine over groups):
0.41 on average between views of one identity (5-95%: 0.27-0.58), 0.08 between identities, 0.26
for the closest other identity of a query. Queries are fresh views of random gallery identities.
Data come in seeded chunks (a chunk is a pure function of the seed and its number) and are added
to the indexes as they are made, so no second full copy is held: 1M x 2560 float32 is 10.2 GB.

Index kinds (``--kinds``):
  flat           faiss IndexFlatIP, exact (holds the only full-precision copy)
  torch          brute-force PyTorch over the flat index's storage (the ground truth)
  ivf-sq8        IndexIVFScalarQuantizer (8-bit codes, 1/4 of the memory) + exact re-ranking of
                 the top k * k_factor against the flat storage (IndexRefine, storage shared)
  hnsw-sq8       IndexHNSWSQ (8-bit) + the same exact re-ranking; slow to build at 1M on 2 cores:
                 left out at N > --hnsw-max unless --hnsw-max is raised (build time is printed)
  cerberus-ivf / cerberus-ivf-sq8 / cerberus-hnsw
                 the project's own ``build_faiss_index`` (IVFFlat / IVF-SQ8 + IndexRefineFlat /
                 HNSWFlat, a second
                 full-precision copy): only at N <= --in-memory-max
For IVF kinds every nprobe of ``--nprobe`` is measured (one row each) and the smallest one that
reaches the recall target is reported. Target: 1M, top-10 under 50 ms per single query on 2
cores with recall@10 >= 0.95.

    python benchmarks/bench_search.py                       # 100k and 1M
    python benchmarks/bench_search.py --sizes 10000         # quick check
    python benchmarks/bench_search.py --sizes 1000000 --nlist 1024 --nprobe 8 16 32
"""

from __future__ import annotations

import argparse
import math
import time

import faiss
import numpy as np
import torch
from _common import markdown_table, max_rss_mib, print_machine, run_script

GROUP_SIDS = (4, 18, 40, 8, 8)  # Market-1501 SID space sizes (H, U, L, I, C)
GROUP_DIM = 512
DIM = GROUP_DIM * len(GROUP_SIDS)
VIEWS = 16  # gallery views per identity
IDS_PER_CHUNK = 1024  # a chunk: 1024 identities x 16 views = 16384 vectors
W_COMMON, W_SID = 0.6, 1.0
VIEW_NOISE = (0.03, 0.08)  # per-view noise std per dimension, uniform


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


class ReidLikeData:
    """Seeded, chunked generator of reID-like retrieval vectors (see the module docstring)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed
        self.num_ids = math.ceil(n / VIEWS)
        rng = np.random.default_rng([seed, 0])
        self.common = _unit(rng.standard_normal((len(GROUP_SIDS), GROUP_DIM), dtype=np.float32))
        self.protos = [
            _unit(rng.standard_normal((s, GROUP_DIM), dtype=np.float32)) for s in GROUP_SIDS
        ]

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_ids / IDS_PER_CHUNK)

    def centres(self, chunk: int) -> np.ndarray:
        """``(IDS_PER_CHUNK, 5, 512)`` unit identity centres of a chunk."""
        rng = np.random.default_rng([self.seed, 1, chunk])
        out = rng.standard_normal((IDS_PER_CHUNK, len(GROUP_SIDS), GROUP_DIM), dtype=np.float32)
        _unit(out)
        for g, s in enumerate(GROUP_SIDS):
            sids = rng.integers(0, s, IDS_PER_CHUNK)
            out[:, g] += W_COMMON * self.common[g] + W_SID * self.protos[g][sids]
        return _unit(out)

    @staticmethod
    def _views(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = rng.uniform(*VIEW_NOISE, (len(centres), 1, 1)).astype(np.float32)
        x = centres + scale * rng.standard_normal(centres.shape, dtype=np.float32)
        _unit(x)
        return (x.reshape(len(x), DIM) / np.float32(math.sqrt(len(GROUP_SIDS)))).astype(np.float32)

    def chunk(self, chunk: int) -> np.ndarray:
        """Gallery rows ``[chunk * 16384, ...)``: 16 consecutive rows per identity."""
        start = chunk * IDS_PER_CHUNK * VIEWS
        stop = min(self.n, start + IDS_PER_CHUNK * VIEWS)
        c = np.repeat(self.centres(chunk), VIEWS, axis=0)[: stop - start]
        return self._views(c, np.random.default_rng([self.seed, 2, chunk]))

    def queries(self, num: int) -> tuple[np.ndarray, np.ndarray]:
        """``num`` fresh views of random gallery identities, and those identities."""
        rng = np.random.default_rng([self.seed, 3])
        ids = np.sort(rng.integers(0, self.n // VIEWS or 1, num))
        out = np.empty((num, DIM), dtype=np.float32)
        for chunk in np.unique(ids // IDS_PER_CHUNK):
            rows = np.flatnonzero(ids // IDS_PER_CHUNK == chunk)
            c = self.centres(int(chunk))[ids[rows] % IDS_PER_CHUNK]
            out[rows] = self._views(c, rng)
        perm = rng.permutation(num)
        return out[perm], ids[perm]


def flat_storage(index) -> np.ndarray:
    """The ``(ntotal, d)`` float32 storage of an IndexFlat, as a numpy view (no copy)."""
    n, d = index.ntotal, index.d
    return faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)


def torch_topk(gallery: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 65536):
    """Exact top-k by inner product: chunked matmul + topk, merged across chunks."""
    best_s = torch.full((len(queries), k), -torch.inf)
    best_i = torch.zeros((len(queries), k), dtype=torch.long)
    for start in range(0, len(gallery), chunk):
        s = queries @ gallery[start : start + chunk].T
        s, i = s.topk(min(k, s.shape[1]), dim=1)
        s = torch.cat([best_s, s], dim=1)
        i = torch.cat([best_i, i + start], dim=1)
        best_s, pos = s.topk(k, dim=1)
        best_i = i.gather(1, pos)
    return best_s, best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / k for f, t in zip(found, truth)]))


def time_search(search, queries: np.ndarray, k: int, single: int):
    """(ms/query over one batch call, median ms of single-query calls, batch result ids)."""
    search(queries[:2], k)  # warm-up (allocations, thread pool)
    t0 = time.perf_counter()
    _, ids = search(queries, k)
    batch_ms = (time.perf_counter() - t0) * 1000 / len(queries)
    times = []
    for q in queries[:single]:
        t0 = time.perf_counter()
        search(q[None], k)
        times.append((time.perf_counter() - t0) * 1000)
    return batch_ms, float(np.median(times)), np.asarray(ids)


def ivf_sq8_refine(flat, nlist: int, k_factor: int, train_points: int, niter: int, seed: int):
    """IVF with 8-bit codes, trained on a sample of the flat storage, + exact re-ranking."""
    xb = flat_storage(flat)
    quantizer = faiss.IndexFlatIP(DIM)
    ivf = faiss.IndexIVFScalarQuantizer(
        quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.cp.niter, ivf.cp.seed = niter, seed
    rng = np.random.default_rng(seed)
    n_train = min(len(xb), max(train_points, 39 * nlist))
    ivf.train(xb[np.sort(rng.choice(len(xb), n_train, replace=False))])
    for start in range(0, len(xb), 65536):
        ivf.add(xb[start : start + 65536])
    index = faiss.IndexRefine(ivf, flat)  # re-ranks against the flat storage (shared)
    index.k_factor = k_factor
    memory = len(xb) * (DIM + 8) + nlist * DIM * 4  # codes + ids + centroids
    return index, (ivf, quantizer), memory  # keep the parts alive: SWIG does not own them


def hnsw_sq8_refine(flat, m: int, ef_construction: int, k_factor: int):
    xb = flat_storage(flat)
    hnsw = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.train(xb[: min(len(xb), 65536)])
    for start in range(0, len(xb), 65536):
        hnsw.add(xb[start : start + 65536])
    index = faiss.IndexRefine(hnsw, flat)
    index.k_factor = k_factor
    memory = len(xb) * DIM + hnsw.hnsw.neighbors.size() * 4 + len(xb) * 8
    return index, (hnsw,), memory


def bench_size(n: int, args, rows: list[list[str]]) -> None:
    k = args.k
    print(f"\n## N = {n:,}  (dimension {DIM}, {math.ceil(n / VIEWS):,} identities)", flush=True)
    data = ReidLikeData(n, seed=args.seed)
    queries, _ = data.queries(args.queries)
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    gen_s = 0.0
    for c in range(data.num_chunks):
        g0 = time.perf_counter()
        x = data.chunk(c)
        gen_s += time.perf_counter() - g0
        flat.add(x)
    flat_build = time.perf_counter() - t0 - gen_s
    print(f"# data generated in {gen_s:.1f} s, flat index filled in {flat_build:.1f} s")
    xb = flat_storage(flat)
    gallery = torch.from_numpy(xb)  # shares memory with the flat index

    def row(kind, build_s, mem_bytes, batch_ms, single_ms, rec, settings=""):
        rows.append(
            [
                kind,
                f"{n:,}",
                settings,
                f"{build_s:.1f}",
                mem_bytes if isinstance(mem_bytes, str) else f"{mem_bytes / 1e9:.2f}",
                f"{batch_ms:.2f}",
                f"{single_ms:.2f}",
                f"{rec:.4f}",
            ]
        )
        print("  ".join(rows[-1]), flush=True)

    # Ground truth (and the brute-force PyTorch timing).
    def torch_search(q, kk):
        with torch.inference_mode():
            return torch_topk(gallery, torch.from_numpy(np.ascontiguousarray(q)), kk)

    batch_ms, single_ms, truth = time_search(torch_search, queries, k, args.single_queries)
    if "torch" in args.kinds:
        row("torch brute force", 0.0, "(flat's)", batch_ms, single_ms, 1.0, "chunk 65536")
    if "flat" in args.kinds:
        batch_ms, single_ms, ids = time_search(flat.search, queries, k, args.single_queries)
        row("faiss IndexFlatIP", flat_build, n * DIM * 4, batch_ms, single_ms, recall(ids, truth))

    nlist = args.nlist or 2 ** round(math.log2(max(1.0, math.sqrt(n))))
    nlist = max(1, min(nlist, n // 39))
    if "ivf-sq8" in args.kinds:
        t0 = time.perf_counter()
        index, parts, mem = ivf_sq8_refine(
            flat, nlist, args.k_factor, args.train_points, args.niter, args.seed
        )
        build = time.perf_counter() - t0
        ivf = parts[0]
        chosen = None
        for nprobe in args.nprobe:
            if nprobe > nlist:
                continue
            ivf.nprobe = nprobe
            batch_ms, single_ms, ids = time_search(index.search, queries, k, args.single_queries)
            rec = recall(ids, truth)
            settings = f"nlist {nlist}, nprobe {nprobe}, k_factor {args.k_factor}"
            row("IVF-SQ8 + exact re-rank", build, mem, batch_ms, single_ms, rec, settings)
            if chosen is None and rec >= args.target_recall:
                chosen = (settings, single_ms, rec)
        if chosen:
            print(
                f"# IVF-SQ8: smallest nprobe with recall >= {args.target_recall}: {chosen[0]}"
                f" -> {chosen[1]:.2f} ms/single query, recall {chosen[2]:.4f}"
            )
        else:
            print(f"# IVF-SQ8: no nprobe in {args.nprobe} reaches recall {args.target_recall}")
        del index, ivf, parts

    if "hnsw-sq8" in args.kinds and n <= args.hnsw_max:
        t0 = time.perf_counter()
        index, parts, mem = hnsw_sq8_refine(flat, args.hnsw_m, args.ef_construction, args.k_factor)
        build = time.perf_counter() - t0
        hnsw = parts[0]
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            batch_ms, single_ms, ids = time_search(index.search, queries, k, args.single_queries)
            settings = f"M {args.hnsw_m}, efC {args.ef_construction}, efS {ef}"
            row(
                "HNSW-SQ8 + exact re-rank",
                build,
                mem,
                batch_ms,
                single_ms,
                recall(ids, truth),
                settings,
            )
        del index, hnsw, parts
    elif "hnsw-sq8" in args.kinds:
        print(f"# HNSW-SQ8 skipped at N = {n:,} > --hnsw-max {args.hnsw_max:,}")

    if n <= args.in_memory_max:
        from cerberus.store.npz import build_faiss_index

        for kind in ("ivf", "ivf-sq8", "hnsw"):
            if f"cerberus-{kind}" not in args.kinds:
                continue
            t0 = time.perf_counter()
            index = build_faiss_index(xb, kind=kind)  # project defaults
            build = time.perf_counter() - t0
            if kind == "ivf":
                mem = n * (DIM * 4 + 8) + index.nlist * DIM * 4
                settings = f"nlist {index.nlist}, nprobe {index.nprobe} (defaults)"
            elif kind == "ivf-sq8":
                ivf = faiss.extract_index_ivf(index)
                mem = n * (DIM * 4 + DIM + 8) + ivf.nlist * DIM * 4
                settings = f"nlist {ivf.nlist}, nprobe {ivf.nprobe}, k_factor 4 (defaults)"
            else:
                mem = n * DIM * 4 + index.hnsw.neighbors.size() * 4 + n * 8
                settings = f"M 32, efC {index.hnsw.efConstruction}, efS {index.hnsw.efSearch}"
            batch_ms, single_ms, ids = time_search(index.search, queries, k, args.single_queries)
            row(
                f"cerberus build_faiss_index {kind}",
                build,
                mem,
                batch_ms,
                single_ms,
                recall(ids, truth),
                settings,
            )
            del index


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["torch", "flat", "ivf-sq8", "hnsw-sq8", "cerberus-ivf", "cerberus-hnsw"],
        choices=[
            "torch",
            "flat",
            "ivf-sq8",
            "hnsw-sq8",
            "cerberus-ivf",
            "cerberus-ivf-sq8",
            "cerberus-hnsw",
        ],
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=500, help="batch of queries (recall)")
    parser.add_argument("--single-queries", type=int, default=20, help="timed one by one")
    parser.add_argument("--nlist", type=int, default=None, help="default: power of 2 near sqrt N")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--k-factor", type=int, default=4, help="re-rank k * k_factor exactly")
    parser.add_argument("--train-points", type=int, default=65536, help="IVF k-means sample")
    parser.add_argument("--niter", type=int, default=10, help="IVF k-means iterations")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--hnsw-max", type=int, default=200_000, help="largest N for HNSW-SQ8")
    parser.add_argument(
        "--in-memory-max",
        type=int,
        default=200_000,
        help="largest N for cerberus-* (they hold a second float32 copy)",
    )
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=None, help="faiss and torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    print_machine()
    print(f"# {args.queries} queries per batch call, {args.single_queries} single-query calls")
    rows: list[list[str]] = []
    for n in args.sizes:
        bench_size(n, args, rows)
    headers = [
        "index",
        "N",
        "settings",
        "build s",
        "memory GB",
        "ms/query (batch)",
        "ms/query (single)",
        f"recall@{args.k}",
    ]
    print()
    print(markdown_table(headers, rows))
    print(
        f"\nprocess max RSS {max_rss_mib() / 1024:.1f} GiB. Target: 1M, < 50 ms per query, "
        f"recall@10 >= {args.target_recall}. IVF/HNSW-SQ8 memory excludes the shared flat storage."
    )


if __name__ == "__main__":
    run_script(main)
