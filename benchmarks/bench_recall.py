"""Recall and latency of the local gallery's approximate index on data it was not tuned on
(issue 31): random, clustered and low-rank vectors, the reID-like generator of
``bench_gallery.py`` and real model embeddings, each unfiltered and under filters keeping about
90 %, 50 %, 10 % and a small share of the gallery.

Per kind and size: a gallery folder filled chunk by chunk (no full copy held), its index built
(``build_index``: train + add, then the recall measurement that chooses nprobe; both timed)
beside faiss's own IVF-SQ8 train + add on the same vectors (same cells, same training sample,
read from the same segment files); then single-query top-10 searches with held-out queries of
the same distribution (never gallery items), timed (p50 / p99) and scored against the exact
filtered top-10 (a chunked brute force over the regenerated vectors). ``cands``: median items
passing the row's filter; ``path``: how the store answered (exact below 2,000 candidates,
``broad``: unfiltered index search keeping the hits that pass, ``bitmap``: the index restricted
to the passing ids).

Kinds: ``random`` (Gaussian, no structure), ``clustered`` (1,024 centres, each item at cosine
about 0.7 to its centre), ``lowrank`` (64 latent directions plus 20 % noise), ``generator``
(bench_gallery's identities / views), ``model`` (``--features``: features files written by
``cerberus extract``, embedded by ``embed_features``; queries are 400 held-out rows). Recall is
measured at build with description queries too where the vectors have SID prototypes
(generator, model), and such vectors get a second set of rows: description queries made from the
prototypes as an APS query is (``queries: description``, searched as descriptions: the store
answers them from its SID columns, path ``sid``). Cameras:
tracks of 8 items on one of 20 cameras (model: the files' cameras), times over one day.

    python benchmarks/bench_recall.py --kind clustered --sizes 100000 --dim 2560
    python benchmarks/bench_recall.py --kind random --sizes 100000,300000 --dim 2560
    python benchmarks/bench_recall.py --kind model --features a.npz,b.npz
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, print_machine, run_script

from cerberus.store import Filter, GalleryInfo, Items, create_store, open_store
from cerberus.store import ann as ann_module
from cerberus.store import local as local_module

CHUNK = 16_384
CAMERAS = 20
TRACK = 8
DAY = 86_400.0
T0 = 1_795_000_000.0
CENTRES, RANK = 1024, 64
SHARES = {"all": None, "~90%": 0.9, "~50%": 0.5, "~10%": 0.1}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Source:
    """Seeded chunks of a kind of vectors with their cameras and times: ``chunk(c)`` is a pure
    function of (kind, seed, c); ``queries(q)`` held-out vectors of the same distribution."""

    def __init__(self, kind: str, n: int, dim: int, seed: int, features: str = "") -> None:
        self.kind, self.n, self.dim, self.seed = kind, n, dim, seed
        rng = np.random.default_rng([seed, 0])
        if kind == "clustered":
            self.centres = unit(rng.standard_normal((CENTRES, dim), dtype=np.float32))
        elif kind == "lowrank":
            self.basis = rng.standard_normal((RANK, dim), dtype=np.float32)
        elif kind == "generator":
            from bench_gallery import Footage

            self.footage = Footage(n, dim, seed)
        elif kind == "model":
            self._load_model(features, rng)
        self.cameras = CAMERAS if kind != "model" else int(self.model_cam.max()) + 1

    def _load_model(self, features: str, rng) -> None:
        from cerberus.inference.features import FeatureSet
        from cerberus.inference.scoring import embed_features

        vecs, cams = [], []
        for i, path in enumerate(p for p in features.split(",") if p):
            fs = FeatureSet.load(path)
            self.model_protos = fs.prototypes
            vecs.append(embed_features(fs.features).astype(np.float32))
            cams.append(np.asarray(fs.camids, np.int64) + 100 * i)  # each file its own cameras
        v, cam = np.concatenate(vecs), np.concatenate(cams)
        _, cam = np.unique(cam, return_inverse=True)
        order = rng.permutation(len(v))
        self.held_out = v[order[:400]]
        v, cam = v[order[400:]], cam[order[400:]]
        self.n = min(self.n, len(v)) if self.n else len(v)
        self.model_v, self.model_cam = v[: self.n], cam[: self.n]
        self.dim = v.shape[1]

    def prototypes(self) -> dict[str, np.ndarray]:
        """The SID prototypes description queries are made of (recall is measured with them):
        the generator's own and the model's; none for vectors without attributes."""
        if self.kind == "generator":
            return dict(zip(("H", "U", "L", "I", "C"), self.footage.protos))
        return getattr(self, "model_protos", {})

    @property
    def chunks(self) -> int:
        return math.ceil(self.n / CHUNK)

    def rows(self, c: int) -> range:
        return range(c * CHUNK, min(self.n, (c + 1) * CHUNK))

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        d = self.dim
        if self.kind == "random":
            return unit(rng.standard_normal((m, d), dtype=np.float32))
        if self.kind == "clustered":
            noise = rng.standard_normal((m, d), dtype=np.float32) / np.float32(math.sqrt(d))
            return unit(self.centres[rng.integers(0, CENTRES, m)] + noise)
        low = unit(rng.standard_normal((m, RANK), dtype=np.float32) @ self.basis)
        return unit(low + 0.2 * unit(rng.standard_normal((m, d), dtype=np.float32)))

    def vectors(self, c: int) -> np.ndarray:
        if self.kind == "generator":
            return self.footage.vectors(c)
        if self.kind == "model":
            return self.model_v[self.rows(c).start : self.rows(c).stop]
        return self.draw(len(self.rows(c)), np.random.default_rng([self.seed, 2, c]))

    def metadata(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera index and UTC seconds of each row of chunk ``c`` (tracks of 8 on one
        camera, 2 s apart, at a random time of the day)."""
        if self.kind == "generator":
            camera, ts, _ = self.footage.metadata(c)
            return camera.astype(np.int64), ts
        rows = np.asarray(self.rows(c))
        tracks = rows // TRACK
        rng = np.random.default_rng([self.seed, 4, c])
        start = rng.uniform(0, DAY - 60, tracks[-1] - tracks[0] + 1)[tracks - tracks[0]]
        ts = T0 + start + 2.0 * (rows % TRACK)
        if self.kind == "model":
            return self.model_cam[rows], ts
        return rng.integers(0, CAMERAS, tracks[-1] - tracks[0] + 1)[tracks - tracks[0]], ts

    def items(self, c: int) -> Items:
        camera, ts = self.metadata(c)
        names = [f"cam{i:02d}" for i in camera]
        track = np.asarray(self.rows(c)) // TRACK
        return Items.make(
            self.vectors(c), source=names, camera=names, timestamp=ts, track=track,
            num_attributes=5,
        )  # fmt: skip

    def descriptions(self, q: int) -> np.ndarray:
        """``(q, dim)`` description queries made as an APS query is, from the prototypes,
        with a seed of their own (not the ones the build measures with); ``(0, dim)`` for
        vectors without prototypes."""
        return ann_module.description_queries(self.prototypes(), self.dim, q, self.seed + 1000)

    def queries(self, q: int) -> np.ndarray:
        if self.kind == "generator":
            return self.footage.queries(q)
        if self.kind == "model":
            return self.held_out[:q]
        return self.draw(q, np.random.default_rng([self.seed, 3]))


def filters(source: Source, q: int, seed: int) -> dict[str, list]:
    """Per row, per query ``(camera bits, after, before)``: a random set of cameras keeping
    about the row's share (``all``: none), and ``narrow``: one or two cameras for one hour."""
    rng = np.random.default_rng([seed, 5])
    cams = source.cameras
    out: dict[str, list] = {"all": [None] * q}
    for name, share in SHARES.items():
        if share is not None:
            size = min(cams - 1, max(1, round(share * cams))) if share < 1 else cams
            out[name] = [
                (sum(1 << int(c) for c in rng.choice(cams, size, replace=False)), None, None)
                for _ in range(q)
            ]
    narrow = []
    for _ in range(q):
        hour = int(rng.integers(0, 24))
        pick = rng.choice(cams, min(2, cams), replace=False)
        narrow.append((sum(1 << int(c) for c in pick), T0 + 3600 * hour, T0 + 3600 * (hour + 1)))
    out["narrow"] = narrow
    return out


def where_of(f) -> Filter | None:
    if f is None:
        return None
    bits, after, before = f
    names = frozenset(f"cam{c:02d}" for c in range(64) if bits >> c & 1)
    return Filter(cameras=names, after=after, before=before)


def ground_truth(source: Source, queries: np.ndarray, rows: dict[str, list], k: int = 10):
    """Exact top-k ids ``(Q, k)`` per filter row, by one pass over the regenerated chunks
    (item ids are row numbers: the gallery is filled in order, starting at 0)."""
    q = len(queries)
    best = {r: (np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)) for r in rows}
    for c in range(source.chunks):
        v = source.vectors(c)
        camera, ts = source.metadata(c)
        ids = np.asarray(source.rows(c), np.int64)
        scores = queries @ v.T
        for name, fs in rows.items():
            s = scores
            if fs[0] is not None:
                bits = np.array([f[0] for f in fs], np.int64)
                keep = (bits[:, None] >> camera[None, :]) & 1 == 1
                after = np.array([-np.inf if f[1] is None else f[1] for f in fs])
                before = np.array([np.inf if f[2] is None else f[2] for f in fs])
                keep &= (ts[None, :] >= after[:, None]) & (ts[None, :] < before[:, None])
                s = np.where(keep, scores, -np.inf)
            bs, bi = best[name]
            s = np.concatenate([bs, s], axis=1)
            i = np.concatenate([bi, np.broadcast_to(ids, scores.shape)], axis=1)
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s, i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
            o = np.argsort(-s, axis=1, kind="stable")
            s, i = np.take_along_axis(s, o, axis=1), np.take_along_axis(i, o, axis=1)
            i[~np.isfinite(s)] = -1
            best[name] = (s, i)
    return {name: i for name, (_, i) in best.items()}


def recall(hits, truth) -> float:
    out = []
    for h, t in zip(hits, truth):
        t = {int(x) for x in t if x >= 0}
        if t:
            out.append(len({int(x) for x in h.ids} & t) / len(t))
    return float(np.mean(out)) if out else 1.0


def paths_taken(store) -> dict[str, int]:
    """Count how the store answers (patched onto its methods for the run)."""
    seen = {"broad": 0, "bitmap": 0, "sid": 0}
    broad, candidates, described = store._broad, store._ann_candidates, store._described

    def spy_described(*a, **kw):
        got = described(*a, **kw)
        seen["sid"] += got is not None
        return got

    def spy_broad(*a, **kw):
        got = broad(*a, **kw)
        seen["broad"] += got is not None
        return got

    def spy_candidates(q, k, within, *a, **kw):
        seen["bitmap"] += within is not None
        return candidates(q, k, within, *a, **kw)

    store._broad, store._ann_candidates = spy_broad, spy_candidates
    store._described = spy_described
    return seen


def timed(store, queries, wheres, exact: bool = False, kind: str = "photo"):
    times, hits = [], []
    for q, where in zip(queries, wheres):
        t0 = time.perf_counter()
        hits.append(store.search(q[None], 10, where, exact=exact, kind=kind)[0])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99)), hits


def warm(folder: Path) -> None:
    """Read every segment file of the gallery in ``folder`` once (into the page cache), so
    that the build and faiss's own train + add read them alike."""
    for seg in sorted((folder / "vectors").glob("seg-*.npy")):
        with open(seg, "rb") as f:
            while f.read(1 << 24):
                pass


def open_kept(folder: Path, queries: int, seed: int = 0):
    """A gallery kept by this script (``W/KIND-N-DIM``, its index built) for a script that
    times its searches: its segments read twice (the kernel keeps pages read twice before
    pages read once), and ``(store, queries, rows)``, the queries and per-row filters this
    script asks it (:func:`filters`)."""
    kind, n, dim = folder.name.rsplit("-", 2)
    warm(folder)
    warm(folder)
    source = Source(kind, int(n), int(dim), seed, None)
    asked = source.queries(queries)
    rows = filters(source, len(asked), seed)
    store = open_store(folder)
    if not store.index_facts().get("recall"):
        store.close()
        raise SystemExit(f"{folder}: no index built; run bench_recall.py --reuse first")
    return store, asked, rows


def faiss_baseline(folder: Path, nlist: int, dim: int, seed: int = 0) -> float:
    """Seconds for faiss's own IVF-SQ8 (inner product, ``nlist`` cells, 10 k-means
    iterations on 64 points per cell) train + add over the gallery's segment files."""
    import faiss

    segs = [np.load(p, mmap_mode="r") for p in sorted((folder / "vectors").glob("seg-*.npy"))]
    n = sum(len(s) for s in segs)
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit,
        faiss.METRIC_INNER_PRODUCT,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))
    starts = np.cumsum([0] + [len(s) for s in segs])
    sample = np.concatenate(
        [s[pick[(pick >= a) & (pick < b)] - a] for s, a, b in zip(segs, starts, starts[1:])]
    )
    ivf.cp.niter, ivf.cp.seed = 10, seed
    ivf.train(np.ascontiguousarray(sample, np.float32))
    for s in segs:
        for a in range(0, len(s), 32768):
            ivf.add(np.ascontiguousarray(s[a : a + 32768], np.float32))
    return time.perf_counter() - t0


def bench(kind: str, n: int, args, workdir: Path) -> dict:
    source = Source(kind, n, args.dim, args.seed, args.features)
    n, dim = source.n, source.dim
    info = GalleryInfo(
        dim=dim, fingerprint="bench", schema={"name": "synthetic"},
        prototypes=source.prototypes(),
    )  # fmt: skip
    target = workdir / f"{kind}-{n}-{dim}"
    cached = workdir / f"{kind}-{n}-{dim}-{args.seed}-{args.queries}.truth.npz"
    fill_s = None
    if args.reuse and (target / "cerberus-gallery.json").is_file():
        store = open_store(target)
        if store.count() != n:
            raise SystemExit(f"{target}: {store.count()} items, not {n}; run without --reuse")
        store.close()
        shutil.rmtree(target / "ann")  # the index is built (and timed) again
        (target / "ann").mkdir()
        store = open_store(target)
        print(f"[{kind} {n:,} x {dim}] reusing {target}", file=sys.stderr, flush=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        cached.unlink(missing_ok=True)
        store = create_store(target, info)
        print(f"[{kind} {n:,} x {dim}] filling ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        for c in range(source.chunks):
            store.add(source.items(c), complete=False)
        fill_s = round(time.perf_counter() - t0, 1)
    asked = {"photo": source.queries(args.queries)}
    asked["description"] = source.descriptions(args.queries)
    asked = {how: q for how, q in asked.items() if len(q)}
    rows = filters(source, len(asked["photo"]), args.seed)
    keys = [f"{how} {name}" for how in asked for name in rows]
    truth = {}
    if cached.is_file():
        with np.load(cached) as z:
            truth = {key: z[key] for key in keys if key in z.files}
            truth.update({f"photo {r}": z[r] for r in rows if r in z.files})  # an older file
    for how, q in asked.items():
        if any(f"{how} {name}" not in truth for name in rows):
            print(f"  ground truth ({how} queries) ...", file=sys.stderr, flush=True)
            got = ground_truth(source, q, {name: fs[: len(q)] for name, fs in rows.items()})
            truth.update({f"{how} {name}": t for name, t in got.items()})
            if args.keep:
                np.savez(cached, **truth)
    if args.prepare:
        store.close()
        return {}
    while args.quiet and os.getloadavg()[0] >= args.quiet:
        print(f"  load {os.getloadavg()[0]:.2f}: waiting ...", file=sys.stderr, flush=True)
        time.sleep(20)
    load0 = os.getloadavg()[0]
    print("  index ...", file=sys.stderr, flush=True)
    warm(target)  # both builds on a warm page cache
    measured = []
    measure = ann_module.AnnIndex.measure

    def timed_measure(self, *a, **kw):
        t = time.perf_counter()
        out = measure(self, *a, **kw)
        measured.append(time.perf_counter() - t)
        return out

    ann_module.AnnIndex.measure = timed_measure
    t0 = time.perf_counter()
    store.build_index()
    build_s = time.perf_counter() - t0
    ann_module.AnnIndex.measure = measure
    facts = store.index_facts()
    r = facts["recall"]
    print("  faiss's own train + add ...", file=sys.stderr, flush=True)
    faiss_s = faiss_baseline(target, r["nlist"], dim)
    warm(target)  # the searches too: the baseline's index may have pushed segments out
    for q in asked["photo"][:5]:  # and untimed first searches (lazy reads, threads started)
        store.search(q[None], 10)
    seen = paths_taken(store)
    out_rows = []
    for (how, queries), (name, fs) in ((a, b) for a in asked.items() for b in rows.items()):
        wheres = [where_of(f) for f in fs[: len(queries)]]
        cands = int(np.median([store.count(w) for w in wheres[:20]]))
        before = dict(seen)
        p50, p99, hits = timed(store, queries, wheres, kind=how)
        took = {k: seen[k] - before[k] for k in seen}
        path = (
            "exact" if (cands <= local_module.EXACT_LIMIT and name != "all")
            else "index" if name == "all" and how == "photo"
            else "/".join(f"{k} {v}" for k, v in took.items() if v) or "exact"
        )  # fmt: skip
        out_rows.append(
            {"queries": how, "filter": name, "candidates": cands, "p50_ms": round(p50, 1),
             "p99_ms": round(p99, 1), "recall10": round(recall(hits, truth[f"{how} {name}"]), 4),
             "path": path}
        )  # fmt: skip
        print(f"  {name}: {out_rows[-1]}", file=sys.stderr, flush=True)
    e50, _, ehits = timed(store, asked["photo"][:5], [None] * 5, exact=True)
    described = r.get("description") or {}
    row = {
        "kind": kind, "items": n, "dim": dim, "fill_s": fill_s,
        "build_s": round(build_s, 1), "measure_s": round(sum(measured), 1),
        "faiss_train_add_s": round(faiss_s, 1), "build_over_faiss": round(build_s / faiss_s, 2),
        "nlist": r["nlist"], "nprobe": r["nprobe"],
        "description_path": described.get("path", "-"),
        "description_recall10": described.get("recall_at_10", "-"),
        "measured_recall10": r["recall_at_10"], "broad": r["broad"], "cover": r["cover"],
        "bitmap_below": r.get("bitmap_below"),
        "exact_unfiltered_p50_ms": round(e50, 1), "rows": out_rows,
        "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
        "disk_bytes_per_item": round(store.disk_bytes() / n),
    }  # fmt: skip
    store.close()
    if not args.keep:
        shutil.rmtree(target, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", default="clustered", help="random, clustered, lowrank, "
                        "generator or model; several comma-separated")  # fmt: skip
    parser.add_argument("--sizes", default="100000", help="items; model: at most the files'")
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", default="", help="model: features files, comma-separated")
    parser.add_argument("--workdir", type=Path, default=None, help="where the galleries go")
    parser.add_argument("--keep", action="store_true", help="keep the galleries (and the "
                        "ground truth, beside them)")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept gallery of the same "
                        "kind and size (its index is built again) and its ground truth")
    parser.add_argument("--prepare", action="store_true", help="only fill the galleries and "
                        "compute the ground truth (with --keep: for a later --reuse run)")
    parser.add_argument("--quiet", type=float, default=0.0, help="before timing, wait until "
                        "the 1-minute load average is below this (0: do not wait)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    print_machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-recall-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = [
        bench(kind, int(size), args, workdir)
        for kind in args.kind.split(",")
        for size in args.sizes.split(",")
    ]
    results = [r for r in results if r]
    if not results:
        return
    print(
        markdown_table(
            ["kind", "items x dim", "queries", "filter", "cands", "p50 / p99 ms", "R@10", "path"],
            [
                [r["kind"], f"{r['items']:,} x {r['dim']}", x["queries"], x["filter"],
                 x["candidates"],
                 f"{x['p50_ms']} / {x['p99_ms']}", x["recall10"], x["path"]]
                for r in results for x in r["rows"]
            ],
        )
    )  # fmt: skip
    print()
    print(
        markdown_table(
            ["kind", "items x dim", "build s (measure s)", "faiss train+add s", "build / faiss",
             "nlist", "nprobe", "id bitmap below", "measured R@10: photo (descriptions)",
             "exact unfiltered p50 ms", "fill s", "load"],
            [
                [r["kind"], f"{r['items']:,} x {r['dim']}", f"{r['build_s']} ({r['measure_s']})",
                 r["faiss_train_add_s"], f"{r['build_over_faiss']}x", r["nlist"],
                 r["nprobe"] or "exact", r.get("bitmap_below") or "-",
                 f"{r['measured_recall10']} ({r['description_recall10']})",
                 r["exact_unfiltered_p50_ms"], r["fill_s"] or "reused",
                 f"{r['load_start']} -> {r['load_end']}"]
                for r in results
            ],
        )
    )  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    run_script(main)
