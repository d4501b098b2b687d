"""The Milvus backend through Milvus Lite: how large a gallery it takes here, how fast a filtered
top-10 is and whether it agrees with exact search.

Gallery vectors are the reID-like 2560-d vectors of ``bench_search.py`` (16 views per identity,
clustered per group); each item gets one of 20 cameras and a time in one 24-hour day, uniformly.
The gallery grows in batches of 16,384 items (one source each, :meth:`MilvusStore.add`); at each
size in ``--sizes`` it measures single-query top-10 latency (p50 / p99 over ``--queries``
queries, one call each) for three filters: none, two cameras of 20 with a one-hour window of 24
(1/240 of the gallery passes) and two cameras alone, and the agreement of each top-10 with the
exact filtered top-10 (float64 NumPy over the benchmark's own copy): the share of the exact
top-10 ids found. Also the add rate, the folder's size on disk and the process's peak memory
(Milvus Lite runs in this process).

    python benchmarks/bench_milvus_lite.py                           # 16k, 65k, 131k
    python benchmarks/bench_milvus_lite.py --sizes 16384 --queries 50 # quick check
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, max_rss_mib, print_machine, run_script
from bench_search import DIM, ReidLikeData

from cerberus.store import Filter, GalleryInfo, Items
from cerberus.store.milvus import MilvusStore

BATCH = 16384
CAMERAS = [f"cam{i:02d}" for i in range(20)]
DAY = 24 * 3600.0
T0 = 1_790_000_000.0


def metadata(n0: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera index and time of items ``n0 .. n0 + n`` (a pure function of the seed)."""
    rng = np.random.default_rng([seed, 7, n0])
    return rng.integers(0, len(CAMERAS), n), T0 + rng.uniform(0, DAY, n)


def exact_top10(vectors: np.ndarray, keep: np.ndarray, q: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return rows
    scores = vectors[rows].astype(np.float64) @ q.astype(np.float64)
    order = np.lexsort((rows, -scores))[:10]
    return rows[order]


def measure(store, vectors, cams, times, queries, rng) -> list[tuple[str, float, float, float]]:
    out = []
    for name in ("none", "2 cameras + 1 h", "2 cameras"):
        lat, agree = [], []
        for q in queries:
            pick = rng.choice(len(CAMERAS), 2, replace=False)
            keep = np.ones(len(vectors), dtype=bool)
            where = None
            if name != "none":
                keep = np.isin(cams, pick)
                where = Filter(cameras=frozenset(CAMERAS[i] for i in pick))
            if name == "2 cameras + 1 h":
                start = T0 + float(rng.integers(0, 24)) * 3600
                keep &= (times >= start) & (times < start + 3600)
                where = Filter(cameras=where.cameras, after=start, before=start + 3600)
            t = time.perf_counter()
            hits = store.search(q[None], 10, where)[0]
            lat.append(time.perf_counter() - t)
            truth = exact_top10(vectors, keep, q)
            if len(truth):
                agree.append(len(set(hits.ids.tolist()) & set(truth.tolist())) / len(truth))
        out.append((name, *np.percentile(np.array(lat) * 1e3, [50, 99]), float(np.mean(agree))))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[16384, 65536, 131072])
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folder", type=Path, default=None, help="where the .db goes (default: temp)")
    args = p.parse_args()
    print_machine()
    top = max(args.sizes)
    data = ReidLikeData(top, seed=args.seed)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="bench_milvus_"))
    uri = str(folder / "bench.db")
    shutil.rmtree(uri, ignore_errors=True)
    info = GalleryInfo(dim=DIM, fingerprint="bench", schema={}, prototypes={})
    store = MilvusStore.create(uri, info, collection="bench")
    vectors = np.empty((top, DIM), dtype=np.float32)
    cams = np.empty(top, dtype=np.int64)
    times = np.empty(top, dtype=np.float64)
    queries, _ = data.queries(args.queries)
    rows, n, add_s, chunk = [], 0, 0.0, 0
    for size in sorted(args.sizes):
        while n < size:
            v = data.chunk(chunk)[: size - n] if n + BATCH > size else data.chunk(chunk)
            c, t = metadata(n, len(v), args.seed)
            vectors[n : n + len(v)], cams[n : n + len(v)], times[n : n + len(v)] = v, c, t
            items = Items.make(
                v, source=f"s{chunk}", num_attributes=0, camera=[CAMERAS[i] for i in c],
                timestamp=t,
            )  # fmt: skip
            start = time.perf_counter()
            store.add(items)
            add_s += time.perf_counter() - start
            n += len(v)
            chunk += 1
        assert store.count() == n
        disk = subprocess.run(["du", "-sm", uri], capture_output=True, text=True).stdout.split()[0]
        rng = np.random.default_rng([args.seed, 9, n])
        for name, p50, p99, agree in measure(store, vectors[:n], cams[:n], times[:n], queries, rng):
            rows.append([
                f"{n:,}", name, f"{p50:.1f}", f"{p99:.1f}", f"{agree:.3f}",
                f"{n / add_s:,.0f}", disk, f"{max_rss_mib():,.0f}",
            ])  # fmt: skip
        print(markdown_table(HEADERS, rows[-3:]), flush=True)
    store.close()
    print()
    print(markdown_table(HEADERS, rows))
    if args.folder is None:
        shutil.rmtree(folder, ignore_errors=True)


HEADERS = [
    "items", "filter", "p50 ms", "p99 ms", "top-10 agreement", "add items/s", "disk MiB",
    "peak RSS MiB",
]  # fmt: skip


if __name__ == "__main__":
    run_script(main)
