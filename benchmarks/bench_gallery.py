"""Gallery store at scale (method §9.1): filtered and unfiltered top-10 through the GalleryStore
interface, on the embedded backend (``--backend local``) or Milvus (``--backend milvus``).

Synthetic reID-like items, made in seeded chunks and added to the store as they are made (no
full copy held: 1M x 2560 float32 is 10.2 GB). Vectors: per part (5 parts of ``dim / 5``) an
identity centre ``unit(0.6 common + 1.0 attribute prototype + unit noise)``, each item a noisy
view of it, parts L2-normalised and divided by sqrt 5 (as ``embed_features`` makes them).
Metadata: 16 items per identity in 2 tracks of 8 crops, each track on one of 20 cameras, crops
2 s apart; chunks arrive in time order (chunk c holds tracks starting in the c-th slice of the
day, as footage is ingested); one source per camera (added as incomplete sources).

Measured per size: time to fill the store; filtered top-10 (2 cameras of 20, a 1-hour window of
24) p50 / p99 latency of single queries and recall@10 against the exact filtered top-10 (the
semantics of ``MemoryStore``, computed by a chunked brute force over regenerated chunks);
unfiltered top-10 the same (after the backend's index is built, the build timed); process RSS;
disk per item; time to add 10,000 items to the filled gallery. ``--crossover`` (local only)
times exact and approximate search against the number of filtered candidates.

    python benchmarks/bench_gallery.py --sizes 100000 --dim 2560
    python benchmarks/bench_gallery.py --sizes 1000000 --dim 2560 --out gallery-1m.json
    python benchmarks/bench_gallery.py --sizes 100000 --backend milvus
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, print_machine, run_script

from cerberus.store import Filter, GalleryInfo, Items, create_store, open_store

PARTS = 5
SIDS = (4, 18, 40, 8, 8)  # SID counts per group (Market-1501)
VIEWS, TRACK = 16, 8  # items per identity, crops per track
CAMERAS = 20
DAY = 86_400.0
T0 = 1_795_000_000.0  # 2026-11-18 (UTC): the day the synthetic footage covers
CHUNK_IDS = 1024  # identities per chunk: 16,384 items


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


class Footage:
    """Seeded chunks of items: ``chunk(c)`` is a pure function of (seed, c)."""

    def __init__(self, n: int, dim: int, seed: int = 0) -> None:
        if dim % PARTS:
            raise SystemExit(f"--dim {dim}: must be a multiple of {PARTS}")
        self.n, self.dim, self.seed, self.part = n, dim, seed, dim // PARTS
        rng = np.random.default_rng([seed, 0])
        self.common = unit(rng.standard_normal((PARTS, self.part), dtype=np.float32))
        self.protos = [unit(rng.standard_normal((s, self.part), dtype=np.float32)) for s in SIDS]

    @property
    def chunks(self) -> int:
        return math.ceil(self.n / (CHUNK_IDS * VIEWS))

    def centres(self, c: int, count: int = CHUNK_IDS) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, c])
        out = unit(rng.standard_normal((count, PARTS, self.part), dtype=np.float32))
        for g, s in enumerate(SIDS):
            out[:, g] += 0.6 * self.common[g] + self.protos[g][rng.integers(0, s, count)]
        return unit(out)

    def views(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = rng.uniform(0.03, 0.08, (len(centres), 1, 1)).astype(np.float32)
        x = unit(centres + scale * rng.standard_normal(centres.shape, dtype=np.float32))
        return x.reshape(len(x), self.dim) / np.float32(math.sqrt(PARTS))

    def rows(self, c: int) -> range:
        start = c * CHUNK_IDS * VIEWS
        return range(start, min(self.n, start + CHUNK_IDS * VIEWS))

    def vectors(self, c: int) -> np.ndarray:
        rows = self.rows(c)
        centres = np.repeat(self.centres(c), VIEWS, axis=0)[: len(rows)]
        return self.views(centres, np.random.default_rng([self.seed, 2, c]))

    def metadata(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera index, UTC seconds and track id of each row of chunk ``c``."""
        rows = np.asarray(self.rows(c))
        tracks = rows // TRACK
        first = tracks[0]
        rng = np.random.default_rng([self.seed, 4, c])
        n_tracks = tracks[-1] - first + 1
        camera = rng.integers(0, CAMERAS, n_tracks)[tracks - first]
        # footage arrives in time order: chunk c covers the c-th slice of the day
        span = (DAY - 60) / self.chunks
        start = (c + rng.uniform(0, 1, n_tracks)[tracks - first]) * span
        return camera.astype(np.int8), T0 + start + 2.0 * (rows % TRACK), tracks

    def items(self, c: int) -> Items:
        camera, ts, tracks = self.metadata(c)
        names = [f"cam{i:02d}" for i in camera]
        return Items.make(
            self.vectors(c),
            source=names,
            camera=names,
            timestamp=ts,
            track=tracks,
            frame=(ts - T0) * 25,
            num_attributes=len(SIDS),
        )

    def queries(self, q: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3])
        ids = rng.integers(0, max(1, self.n // VIEWS), q)
        out = np.empty((q, self.dim), np.float32)
        for i, ident in enumerate(ids):
            c = int(ident) // CHUNK_IDS
            centre = self.centres(c)[int(ident) % CHUNK_IDS]
            out[i] = self.views(centre[None], rng)[0]
        return out


def make_filters(q: int, seed: int) -> list[tuple[frozenset[str], float, float]]:
    """Per query: two cameras of 20 and a 1-hour window of the day."""
    rng = np.random.default_rng([seed, 5])
    out = []
    for _ in range(q):
        cams = rng.choice(CAMERAS, 2, replace=False)
        hour = int(rng.integers(0, 24))
        out.append(
            (frozenset(f"cam{c:02d}" for c in cams), T0 + 3600 * hour, T0 + 3600 * (hour + 1))
        )
    return out


def merge(best_s, best_i, scores, ids, k):
    """Running top-k: ties go to the smaller id (as ``MemoryStore``)."""
    s = np.concatenate([best_s, scores], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
    wide = min(s.shape[1], 2 * k)
    top = np.argpartition(-s, wide - 1, axis=1)[:, :wide]
    s, i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def ground_truth(data: Footage, queries, filters, ids_of_row, k: int = 10, extra_ids=None):
    """Exact top-k ids ``(Q, k)`` unfiltered and filtered, by one pass over regenerated chunks
    (``extra_ids``: the ids of the added copies of chunk 0's first rows, when they are in)."""
    q = len(queries)
    un_s, un_i = np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)
    fi_s, fi_i = un_s.copy(), un_i.copy()
    cam_sets = [np.array([int(c[3:]) for c in f[0]]) for f in filters]
    for c in range(data.chunks):
        rows = data.rows(c)
        v = data.vectors(c)
        camera, ts, _ = data.metadata(c)
        ids = ids_of_row[rows.start : rows.stop]
        if c == 0 and extra_ids is not None and len(extra_ids):
            m = len(extra_ids)
            v, ids = np.concatenate([v, v[:m]]), np.concatenate([ids, extra_ids])
            camera, ts = np.concatenate([camera, camera[:m]]), np.concatenate([ts, ts[:m]])
        scores = queries @ v.T
        un_s, un_i = merge(un_s, un_i, scores, ids, k)
        masked = np.full_like(scores, -np.inf)
        for r, (_cams, after, before) in enumerate(filters):
            keep = np.isin(camera, cam_sets[r]) & (ts >= after) & (ts < before)
            masked[r, keep] = scores[r, keep]
        fi_s, fi_i = merge(fi_s, fi_i, masked, ids, k)
    fi_i[~np.isfinite(fi_s)] = -1
    return un_i, fi_i


def recall(hits, truth) -> float:
    out = []
    for h, t in zip(hits, truth):
        t = set(int(x) for x in t if x >= 0)
        if t:
            out.append(len(set(int(x) for x in h.ids) & t) / len(t))
    return float(np.mean(out))


def timed_queries(store, queries, wheres, k=10, **how):
    times, hits = [], []
    for q, where in zip(queries, wheres):
        t0 = time.perf_counter()
        hits.append(store.search(q[None], k, where, **how)[0])
        times.append((time.perf_counter() - t0) * 1000)
    return np.percentile(times, 50), np.percentile(times, 99), hits


def rss_mib() -> tuple[float, float]:
    """Resident MiB of this process: (anonymous, file-backed: the memory-mapped segments)."""
    got = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon", "RssFile")):
                got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got.get("RssAnon", float("nan")), got.get("RssFile", float("nan"))


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(n: int, args, workdir: Path) -> dict:
    data = Footage(n, args.dim, args.seed)
    rng = np.random.default_rng(0)
    info = GalleryInfo(
        dim=args.dim,
        fingerprint="bench",
        schema={"name": "synthetic"},
        prototypes={"H": rng.normal(size=(4, 2)).astype(np.float32)},
    )
    target = workdir / (f"local-{n}" if args.backend == "local" else f"milvus-{n}.db")
    extra_ids = None
    if args.reuse and target.exists():  # a gallery this script filled (ids in fill order)
        store = open_store(target)
        ids_of_row, fill_s = np.arange(n, dtype=np.int64), float("nan")
        extra_ids = np.arange(n, store.count(), dtype=np.int64)
        if store.count() not in (n, n + min(10_000, n)):
            raise SystemExit(f"{target}: {store.count()} items, not a gallery of this script")
    else:
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        store = create_store(target, info)
        print(f"[{args.backend} {n:,} x {args.dim}] filling ...", file=sys.stderr, flush=True)
        ids_of_row = np.empty(n, np.int64)
        t0 = time.perf_counter()
        for c in range(data.chunks):
            rows = data.rows(c)
            ids_of_row[rows.start : rows.stop] = store.add(data.items(c), complete=False)
        fill_s = time.perf_counter() - t0
    queries = data.queries(args.queries)
    filters = make_filters(args.queries, args.seed)
    wheres = [Filter(cameras=cams, after=a, before=b) for cams, a, b in filters]
    print("  ground truth ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    truth_all, truth_filtered = ground_truth(
        data, queries, filters, ids_of_row, extra_ids=extra_ids
    )
    truth_s = time.perf_counter() - t0
    candidates = float(np.median([store.count(w) for w in wheres[:20]]))
    build = getattr(store, "build_index", None)
    if args.nprobe and args.backend == "local":
        return sweep(store, queries, wheres, truth_all, truth_filtered, args, n)
    if build is not None:  # the local backend is exact until its index is built
        print("  filtered queries, exact ...", file=sys.stderr, flush=True)
        e50, e99, ehits = timed_queries(store, queries, wheres)
        print("  index ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if build is not None:
        build()
    build_s = time.perf_counter() - t0
    print("  filtered queries ...", file=sys.stderr, flush=True)
    f50, f99, fhits = timed_queries(store, queries, wheres)
    print("  unfiltered queries ...", file=sys.stderr, flush=True)
    u50, u99, uhits = timed_queries(store, queries, [None] * len(queries))
    row = {
        "backend": args.backend,
        "items": n,
        "dim": args.dim,
        "fill_s": round(fill_s, 1),
        "filtered_candidates_median": candidates,
        "filtered_p50_ms": round(f50, 2),
        "filtered_p99_ms": round(f99, 2),
        "filtered_recall10": round(recall(fhits, truth_filtered), 4),
        "filtered_no_index_p50_ms": round(e50, 2) if build is not None else None,
        "filtered_no_index_p99_ms": round(e99, 2) if build is not None else None,
        "filtered_no_index_recall10": (
            round(recall(ehits, truth_filtered), 4) if build is not None else None
        ),
        "index_build_s": round(build_s, 1),
        "unfiltered_p50_ms": round(u50, 2),
        "unfiltered_p99_ms": round(u99, 2),
        "unfiltered_recall10": round(recall(uhits, truth_all), 4),
        "rss_anon_mib": round(rss_mib()[0], 0),
        "rss_file_mib": round(rss_mib()[1], 0),
        "disk_bytes_per_item": round(disk_bytes(target) / n, 0),
        "ground_truth_s": round(truth_s, 1),
    }
    print("  adding 10,000 ...", file=sys.stderr, flush=True)
    extra = data.items(0).take(np.arange(min(10_000, n)))
    extra = Items.make(
        extra.vectors,
        source=[f"extra-{s}" for s in extra.source],
        camera=extra.camera,
        timestamp=extra.timestamp,
        track=extra.track,
        num_attributes=len(SIDS),
    )
    t0 = time.perf_counter()
    store.add(extra)
    row["add_10k_s"] = round(time.perf_counter() - t0, 2)
    p50, _, _ = timed_queries(store, queries[:20], wheres[:20])
    row["filtered_p50_ms_after_add"] = round(p50, 2)
    if args.crossover and args.backend == "local":
        row["crossover"] = crossover(store, queries[:10], args.seed)
    store.close()
    if not args.keep:
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return row


def sweep(store, queries, wheres, truth_all, truth_filtered, args, n: int) -> dict:
    """p50 / p99 and recall@10, filtered and unfiltered, for each ``--nprobe`` (local)."""
    store.build_index()
    out = []
    for nprobe in (int(x) for x in args.nprobe.split(",")):
        f50, f99, fhits = timed_queries(store, queries, wheres, nprobe=nprobe)
        u50, u99, uhits = timed_queries(store, queries, [None] * len(queries), nprobe=nprobe)
        out.append(
            [
                nprobe,
                f"{f50:.1f} / {f99:.1f}",
                round(recall(fhits, truth_filtered), 4),
                f"{u50:.1f} / {u99:.1f}",
                round(recall(uhits, truth_all), 4),
            ]
        )
    print(f"\nnprobe sweep at {n:,} x {args.dim} ({len(queries)} queries):\n")
    print(
        markdown_table(
            [
                "nprobe",
                "filtered p50 / p99 ms",
                "filtered R@10",
                "unfiltered p50 / p99 ms",
                "unfiltered R@10",
            ],
            out,
        )
    )
    store.close()
    return {"items": n, "dim": args.dim, "sweep": out}


def crossover(store, queries, seed: int) -> list[dict]:
    """Exact vs approximate p50 latency (ms) against the number of filtered candidates."""
    rng = np.random.default_rng([seed, 6])
    out = []
    for cams, hours in ((2, 1), (6, 1), (20, 1), (2, 12), (10, 12), (20, 24)):
        chosen = frozenset(f"cam{c:02d}" for c in rng.choice(CAMERAS, cams, replace=False))
        where = Filter(cameras=chosen, after=T0, before=T0 + 3600 * hours)
        n = store.count(where)
        if n > 200_000:  # exact over more reads gigabytes per query
            continue
        limit = store.exact_limit
        store.exact_limit = 1 << 62
        e50, _, exact = timed_queries(store, queries, [where] * len(queries))
        store.exact_limit = 0
        a50, _, approx = timed_queries(store, queries, [where] * len(queries))
        store.exact_limit = limit
        truth = [h.ids for h in exact]
        out.append(
            {
                "cameras": cams,
                "hours": hours,
                "candidates": n,
                "exact_p50_ms": round(e50, 1),
                "ann_p50_ms": round(a50, 1),
                "ann_recall10": round(recall(approx, truth), 3),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--backend", choices=("local", "milvus"), default="local")
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the galleries go")
    parser.add_argument("--keep", action="store_true", help="keep the galleries")
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument(
        "--reuse", action="store_true", help="open the gallery left in --workdir by --keep"
    )
    parser.add_argument(
        "--nprobe", default="", help="local: only time these nprobe values, e.g. 4,8,16,32"
    )
    args = parser.parse_args()
    print_machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [bench(int(s), args, workdir) for s in args.sizes.split(",")]
    if args.nprobe:
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
        return
    headers = [
        "backend",
        "items x dim",
        "fill s",
        "filtered cands",
        "filtered p50 / p99 ms",
        "filtered R@10",
        "index build s",
        "unfiltered p50 / p99 ms",
        "unfiltered R@10",
        "RSS MiB anon + file",
        "disk B/item",
        "add 10k s",
    ]
    table = [
        [
            r["backend"],
            f"{r['items']:,} x {r['dim']}",
            r["fill_s"],
            int(r["filtered_candidates_median"]),
            f"{r['filtered_p50_ms']} / {r['filtered_p99_ms']}",
            r["filtered_recall10"],
            r["index_build_s"],
            f"{r['unfiltered_p50_ms']} / {r['unfiltered_p99_ms']}",
            r["unfiltered_recall10"],
            f"{int(r['rss_anon_mib'])} + {int(r['rss_file_mib'])}",
            int(r["disk_bytes_per_item"]),
            r["add_10k_s"],
        ]
        for r in rows
    ]
    print(markdown_table(headers, table))
    for r in rows:
        if r.get("filtered_no_index_p50_ms") is not None:
            print(
                f"\n{r['items']:,} x {r['dim']}, filtered before the index is built (exact): "
                f"p50 / p99 {r['filtered_no_index_p50_ms']} / {r['filtered_no_index_p99_ms']} "
                f"ms, recall@10 {r['filtered_no_index_recall10']}"
            )
    for r in rows:
        if "crossover" in r:
            print(f"\ncrossover at {r['items']:,} x {r['dim']} (10 queries each):\n")
            print(
                markdown_table(
                    ["cameras", "hours", "candidates", "exact p50 ms", "ANN p50 ms", "ANN R@10"],
                    [list(c.values()) for c in r["crossover"]],
                )
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    run_script(main)
