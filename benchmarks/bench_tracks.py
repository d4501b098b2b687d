"""Per-track vs per-crop results (method §9.2) on the synthetic benchmark.

The gallery crops of one identity seen by one camera are taken as one track (what a tracker
would give on footage). Each query is ranked twice: against every crop (today's per-crop list)
and against the tracks, a track scored from its crops' scores by ``max`` or by the mean of its
best three (``top3``, fewer crops: the mean of those). reID mAP / rank-1 follow the Market
protocol (method §6.1: the query's own identity and camera removed, a track keeps its crops'
identity and camera); APS mAP the full-description queries of method §6.2, gallery = test
gallery without junk and distractors plus the query images, a track relevant when its identity
is. Both with the project's metric functions (:mod:`cerberus.evaluation.metrics`) on the score
matrices.

    python benchmarks/bench_tracks.py --checkpoint runs/demo/last.pt --data data/synthetic
    python benchmarks/bench_tracks.py --checkpoint a.pt --checkpoint b.pt --checkpoint c.pt

With several checkpoints (e.g. ``cerberus demo`` with other seeds) the table gives the mean ± the
sample standard deviation over them.

``tracking``: the footage tracker (method §9.3) on synthetic footage (``cerberus synth
footage`` at held-out footage seeds, default 1 2 3: three cameras x 40 s, 30 people each) from
the ground-truth boxes without their ids, thinned as a detector misses people (``--thin``):

- ``bursts`` (default): each person-visit alternates seen runs (exponential, mean 5.25 s) and
  missed runs (uniform 1-2.5 s), so about a quarter of the boxes fall in missed runs; of each
  missed run a part (uniform 20-60% of its frames, at its start and end, as a score fades
  around an occlusion) is kept as low-score boxes (0.1-0.4), the rest dropped; seen boxes
  score 0.5-1;
- ``drop``: each box dropped independently (``--drop``, default 0.2);
- ``none``: every box.

Kept boxes are jittered (centre and size, sd 4% of the box's size), with ``--thin-seed`` and
the footage seed seeding the draws. Each setting runs the whole ingest (``ingest_source``
into a memory store: tracker, path, crops, parts) and is scored on the stored track paths
(boxes predicted across a gap count) against all ground-truth boxes at IoU >= 0.5 with
``motmetrics``: IDF1, ID switches, MOTA, and tracks per person-visit. A **person-visit** is a
maximal run of consecutive frames in which one person has a ground-truth box in one camera
(the box at least partly in the frame, however hidden); its tracks are the distinct track ids
motmetrics matched to that person in those frames, and the figure is their number averaged
over the visits with at least one match (visits with none are counted beside it). Settings:
``today`` (SortTracker: one stage, a track ends after 1 s without a match), ``bytetrack``
(the default tracker) and, with ``--checkpoint``, ``bytetrack + appearance`` (fragments linked
by the model's crop vectors and attributes). Mean ± sample sd over the footage seeds.

    python benchmarks/bench_tracks.py tracking --workdir runs/trackbench --footage-seeds 1 2 3 \
        --thin bursts --thin-seed 0 --checkpoint runs/demo/last.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, print_machine, run_script  # noqa: E402

from cerberus.evaluation.metrics import aps_metrics, aps_queries, reid_metrics  # noqa: E402
from cerberus.inference.scoring import attribute_query_scores, embed_features, prototype_scores  # noqa: E402


def track_columns(keys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group the gallery by ``keys`` ``(N, 2)`` (identity, camera): the first row of each
    group and the rows of each group."""
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    return first, [np.flatnonzero(inverse == t) for t in range(len(first))]


def track_scores(scores: np.ndarray, members: list[np.ndarray], how: str) -> np.ndarray:
    """``(Q, T)`` track scores from ``(Q, N)`` crop scores: max, or mean of the best three."""
    out = np.empty((len(scores), len(members)), np.float64)
    for t, rows in enumerate(members):
        s = scores[:, rows]
        if how == "max":
            out[:, t] = s.max(axis=1)
        else:
            out[:, t] = -np.sort(-s, axis=1)[:, :3].mean(axis=1)
    return out


def measure(checkpoint: Path, data: Path | None, device: str) -> dict[str, dict[str, float]]:
    from cerberus.evaluation.evaluate import checkpoint_dataset, extract_with_config
    from cerberus.inference.loading import load_model

    loaded = load_model(checkpoint, device=device)
    model, cfg = loaded.model, loaded.config
    dataset = checkpoint_dataset(cfg, loaded.schema, checkpoint, data)
    feats = extract_with_config(model, dataset, cfg, device=device, num_workers=0)
    q, g = dataset.query, dataset.gallery
    scores = embed_features(feats.query).astype(np.float64) @ embed_features(feats.gallery).T
    first, members = track_columns(np.stack([g.pids, g.camids], axis=1))
    out: dict[str, dict[str, float]] = {}

    def reid(s, pids, cams) -> dict[str, float]:
        m = reid_metrics(s, q.pids, pids, q.camids, cams)
        return {"reid_map": m["map_score"], "reid_rank1": m["rank1_score"]}

    out["crop"] = reid(scores, g.pids, g.camids)
    for how in ("max", "top3"):
        out[how] = reid(track_scores(scores, members, how), g.pids[first], g.camids[first])
        out[how]["tracks"] = len(members)
    out["crop"]["tracks"] = len(g.pids)

    # APS: full-description queries; gallery = test gallery without junk / distractors + queries
    keep = g.pids > 0
    a_feats = np.concatenate([feats.gallery[keep], feats.query])
    a_sids = np.concatenate([g.sids[keep], q.sids])
    a_alt = np.concatenate([g.alt_sids[keep], q.alt_sids])
    a_keys = np.stack([np.concatenate([g.pids[keep], q.pids]),
                       np.concatenate([g.camids[keep], q.camids])], axis=1)  # fmt: skip
    known = (a_sids >= 0).any(1)
    a_feats, a_sids, a_alt, a_keys = a_feats[known], a_sids[known], a_alt[known], a_keys[known]
    test_ids = np.unique(a_keys[:, 0])
    id_sids = dataset.test_attributes.sids[np.isin(dataset.test_attributes.ids, test_ids)]
    queries = aps_queries(id_sids)
    given = queries >= 0
    s = attribute_query_scores(
        np.maximum(queries, 0), given, prototype_scores(a_feats, feats.prototypes)
    )
    m = aps_metrics(s, queries, a_sids, given_groups=given, gallery_alt_sids=a_alt)
    out["crop"]["aps_map"] = m["map_score"]
    a_first, a_members = track_columns(a_keys)
    for how in ("max", "top3"):
        ts = track_scores(np.asarray(s, np.float64), a_members, how)
        m = aps_metrics(
            ts, queries, a_sids[a_first], given_groups=given, gallery_alt_sids=a_alt[a_first]
        )
        out[how]["aps_map"] = m["map_score"]
    return out


# --------------------------------------------------------------------------- tracking


class Thinned:
    """A detector answering a ground-truth file's boxes without their ids, thinned and jittered
    (see the module doc); ``visibility`` kept."""

    gives_ids = False

    def __init__(self, gt, fps: float, mode: str, rng: np.random.Generator, drop: float) -> None:
        from cerberus.footage.detect import Detections

        per_person: dict[int, list[tuple[int, int]]] = {}
        for f, d in gt.rows.items():
            for i, pid in enumerate(d.ids.tolist()):
                per_person.setdefault(pid, []).append((f, i))
        keep: dict[int, list[tuple[int, float]]] = {}  # frame -> (row, score)
        for pid in sorted(per_person):
            rows = sorted(per_person[pid])
            for visit in _runs([f for f, _ in rows]):
                scores = _visit_scores(len(visit), fps, mode, rng, drop)
                for (f, i), sc in zip([r for r in rows if visit[0] <= r[0] <= visit[-1]], scores):
                    if sc > 0:
                        keep.setdefault(f, []).append((i, sc))
        self.rows = {}
        self.kept = self.low = self.total = 0
        for f, d in gt.rows.items():
            self.total += len(d)
            chosen = keep.get(f, [])
            if not chosen:
                continue
            idx = np.array([i for i, _ in chosen])
            sc = np.array([s for _, s in chosen], np.float32)
            boxes = _jitter(d.boxes[idx], rng)
            vis = None if d.visibility is None else d.visibility[idx]
            self.rows[f] = Detections(boxes, sc, np.full(len(idx), -1, np.int64), vis)
            self.kept += int((sc >= 0.5).sum())
            self.low += int((sc < 0.5).sum())
        self.empty = Detections.empty()

    def detect(self, frame):
        return self.rows.get(frame.number, self.empty)


def _runs(frames: list[int]) -> list[list[int]]:
    """Maximal runs of consecutive frame numbers of a sorted list."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][-1] + 1:
            out[-1].append(f)
        else:
            out.append([f])
    return out


def _visit_scores(n: int, fps: float, mode: str, rng, drop: float) -> np.ndarray:
    """Scores of a visit's ``n`` boxes: 0 dropped, 0.1-0.4 weak, 0.5-1 seen (module doc)."""
    seen = rng.uniform(0.5, 1.0, n)
    if mode == "none":
        return seen
    if mode == "drop":
        return np.where(rng.random(n) < drop, 0.0, seen)
    out = seen.copy()
    # a visit starts at a random moment of the alternation: in a missed run a quarter of the time
    midrun = rng.random() < 0.25
    k = 0 if midrun else int(round(rng.exponential(5.25 * fps)))
    while k < n:
        miss = int(round(rng.uniform(1.0, 2.5) * fps))
        weak = int(round(rng.uniform(0.2, 0.6) * miss))
        before = int(round(rng.random() * weak))
        run = np.zeros(miss)
        run[:before] = rng.uniform(0.1, 0.4, before)
        if weak - before:
            run[miss - (weak - before):] = rng.uniform(0.1, 0.4, weak - before)
        if midrun:  # the rest of a run already under way
            run = run[int(rng.random() * miss) :]
            miss, midrun = len(run), False
        out[k : k + miss] = run[: max(0, min(miss, n - k))]
        k += miss + max(1, int(round(rng.exponential(5.25 * fps))))
    return out


def _jitter(boxes: np.ndarray, rng, sd: float = 0.04) -> np.ndarray:
    """Boxes moved and resized by normal noise of ``sd`` times their width / height."""
    b = boxes.astype(np.float64)
    wh = b[:, 2:] - b[:, :2]
    c = (b[:, :2] + b[:, 2:]) / 2 + rng.normal(0, sd, wh.shape) * wh
    wh = wh * np.clip(1 + rng.normal(0, sd, wh.shape), 0.5, 1.5)
    return np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)


class _Blank:
    """A stand-in model for runs without appearance: zero vectors, no attributes."""

    num_attributes = 1

    def embed(self, crops):
        from cerberus.footage.ingest import Embedded

        n = len(crops)
        return Embedded(np.zeros((n, 5), np.float32), np.zeros((n, 1), np.int16),
                        np.ones((n, 5), np.float32))  # fmt: skip


def _footage(workdir: Path, seed: int, seconds: float) -> Path:
    from cerberus.data.synthetic.footage import generate_footage
    from cerberus.data.synthetic.scene import FootageSpec

    root = workdir / f"footage-seed{seed}"
    if not (root / "footage.json").is_file():
        generate_footage(root, FootageSpec(seed=seed, seconds=seconds))
    return root


def _score(gt, paths, last: int):
    """motmetrics accumulator of ``paths`` (the stored TrackPaths of one source) against ``gt``
    (all its boxes, with ids), and the tracks of each person-visit."""
    import motmetrics as mm

    from cerberus.footage.detect import iou_matrix

    hyp: dict[int, tuple[list[int], list[np.ndarray]]] = {}
    for p in paths:
        for f, b in zip(p.frames.tolist(), p.boxes):
            ids, boxes = hyp.setdefault(f, ([], []))
            ids.append(int(p.track))
            boxes.append(b)
    acc = mm.MOTAccumulator(auto_id=False)
    for n in range(1, last + 1):
        g = gt.rows.get(n)
        g_ids = [] if g is None else g.ids.tolist()
        g_boxes = np.zeros((0, 4)) if g is None else g.boxes
        h_ids, h_boxes = hyp.get(n, ([], []))
        h_boxes = np.array(h_boxes).reshape(-1, 4)
        dist = 1 - iou_matrix(g_boxes, h_boxes)
        dist[dist > 0.5] = np.nan
        acc.update(g_ids, h_ids, dist, frameid=n)
    events = acc.mot_events
    matched = events[events.Type.isin(["MATCH", "SWITCH"])]
    tracks_of: dict[tuple[int, int], set[int]] = {}
    frames_of: dict[int, list[int]] = {}
    for f, d in gt.rows.items():
        for pid in d.ids.tolist():
            frames_of.setdefault(pid, []).append(f)
    visit_of: dict[tuple[int, int], int] = {}
    for pid, fs in frames_of.items():
        for v, run in enumerate(_runs(sorted(fs))):
            tracks_of[(pid, v)] = set()
            for f in run:
                visit_of[(pid, f)] = v
    for (frame, _), row in matched.iterrows():
        pid = int(row.OId)
        tracks_of[(pid, visit_of[(pid, int(frame))])].add(int(row.HId))
    counts = [len(t) for t in tracks_of.values()]
    return acc, counts


def _one_setting(root: Path, manifest: dict, setting: str, args, net) -> dict:
    import motmetrics as mm

    from cerberus.footage.detect import MotDetections
    from cerberus.footage.ingest import Linking, ingest_source
    from cerberus.footage.track import SortTracker
    from cerberus.footage.video import open_source
    from cerberus.store import GalleryInfo, MemoryStore

    accs, names, counts, links = [], [], [], []
    boxes = np.zeros(3, np.int64)  # strong, weak, all
    for c, cam in enumerate(manifest["cameras"]):
        video = open_source(root / cam["video"])
        fps = video.fps or 10.0
        gt = MotDetections.load(root / cam["gt"], size=video.size)
        rng = np.random.default_rng([args.thin_seed, manifest["seed"], c])
        det = Thinned(gt, fps, args.thin, rng, args.drop)
        boxes += [det.kept, det.low, det.total]
        if net is not None:
            from cerberus.footage.ingest import ModelEmbedder
            from cerberus.store import info_of_model

            embedder, info = ModelEmbedder(net), info_of_model(net)
        else:
            embedder = _Blank()
            info = GalleryInfo(dim=5, fingerprint="blank", schema={}, prototypes={})
        store = MemoryStore(info)
        tracker = SortTracker(max_age=max(2, round(fps))) if setting == "today" else None
        linking = (Linking(min_cosine=args.min_cosine, min_agreement=args.min_agreement)
                   if setting == "appearance" else None)  # fmt: skip
        report = ingest_source(video, store, embedder, camera=cam["name"], detector=det,
                               tracker=tracker, stride=1, linking=linking)  # fmt: skip
        paths = store.paths(video.name)
        acc, visit_counts = _score(gt, paths, report.frames)
        accs.append(acc)
        names.append(cam["name"])
        counts += visit_counts
        if setting == "appearance":
            links += _label_links(report.links, paths, gt)
    mh = mm.metrics.create()
    summary = mh.compute_many(accs, names=names, metrics=["idf1", "num_switches", "mota"],
                              generate_overall=True)  # fmt: skip
    overall = summary.loc["OVERALL"]
    found = [k for k in counts if k > 0]
    return {"idf1": float(overall.idf1), "switches": float(overall.num_switches),
            "mota": float(overall.mota), "per_visit": float(np.mean(found)),
            "visits": len(counts), "unmatched": len(counts) - len(found),
            "kept": int(boxes[0]), "low": int(boxes[1]), "total": int(boxes[2]),
            "links": links}  # fmt: skip


def _person_of(path, gt) -> int:
    """The person whose ground-truth boxes a track's detected boxes overlap most often."""
    from cerberus.footage.detect import iou_matrix

    votes: dict[int, int] = {}
    for f, b, det in zip(path.frames.tolist(), path.boxes, path.detected):
        g = gt.rows.get(f)
        if det and g is not None and len(g):
            iou = iou_matrix(b[None], g.boxes)[0]
            if iou.max() >= 0.5:
                pid = int(g.ids[int(np.argmax(iou))])
                votes[pid] = votes.get(pid, 0) + 1
    return max(votes, key=votes.get) if votes else -1


def _label_links(links: list[dict], paths, gt) -> list[dict]:
    """The pairs weighed for linking, each with ``same``: whether both tracks hold the same
    person (by their paths against the ground truth; a linked pair's tracks share one path, so
    measure with linking that never links: ``--link-stats``)."""
    person = {int(p.track): _person_of(p, gt) for p in paths}
    out = []
    for e in links:
        a, b = person.get(int(e["new"]), -1), person.get(int(e["old"]), -1)
        out.append({**e, "same": a == b and a >= 0})
    return out


def _link_table(links: list[dict]) -> None:
    """Precision and recall of linking the near pairs at thresholds of cosine and agreement."""
    near = [e for e in links if e["near"]]
    same = np.array([e["same"] for e in near], bool)
    cos = np.array([e["cosine"] for e in near])
    agree = np.array([e["agreement"] for e in near])
    print(f"\n# link candidates (earlier track ended <= window before, near): {len(near)} pairs, "
          f"{int(same.sum())} of the same person")  # fmt: skip
    for name, v in (("cosine", cos), ("agreement", agree)):
        for label, m in (("same", same), ("other", ~same)):
            q = np.quantile(v[m], [0, 0.1, 0.5, 0.9, 1]) if m.any() else []
            print(f"#   {name} {label}: min/10%/median/90%/max " +
                  " ".join(f"{x:.3f}" for x in q))  # fmt: skip
    rows = []
    for c in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        for a in (0.0, 0.7, 0.8, 0.9):
            linked = (cos >= c) & (agree >= a)
            tp = int((linked & same).sum())
            rows.append([f"{c:.2f}", f"{a:.1f}", str(int(linked.sum())), str(tp),
                         f"{tp / max(int(same.sum()), 1):.2f}"])  # fmt: skip
    print(markdown_table(["min cosine", "min agreement", "pairs linked", "same person",
                          "recall of same-person pairs"], rows))  # fmt: skip


def tracking(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="the footage tracker on synthetic footage")
    parser.add_argument("--workdir", type=Path, default=Path("runs/trackbench"))
    parser.add_argument("--footage-seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--thin", choices=["bursts", "drop", "none"], default="bursts")
    parser.add_argument("--thin-seed", type=int, default=0)
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the model for appearance linking (else that row is left out)")
    parser.add_argument("--min-cosine", type=float, default=None)
    parser.add_argument("--min-agreement", type=float, default=None)
    parser.add_argument("--link-stats", action="store_true",
                        help="weigh every pair without linking; print how the thresholds sort them")
    parser.add_argument("--settings", nargs="+", default=["today", "bytetrack", "appearance"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from cerberus.data.synthetic.footage import read_footage_manifest
    from cerberus.footage.ingest import Linking

    torch.set_num_threads(args.threads)
    default = Linking()
    if args.link_stats:
        args.min_cosine, args.settings = 2.0, ["appearance"]  # weigh every pair, link none
    args.min_cosine = default.min_cosine if args.min_cosine is None else args.min_cosine
    args.min_agreement = (default.min_agreement if args.min_agreement is None
                          else args.min_agreement)  # fmt: skip
    print_machine()
    net = None
    settings = list(args.settings)
    if "appearance" in settings:
        if args.checkpoint is None:
            settings.remove("appearance")
        else:
            from cerberus.inference.embed import InferenceModel

            net = InferenceModel.from_checkpoint(args.checkpoint, device="cpu")
    args.workdir.mkdir(parents=True, exist_ok=True)
    roots = [_footage(args.workdir, s, args.seconds) for s in args.footage_seeds]
    results: dict[str, list[dict]] = {s: [] for s in settings}
    for root in roots:
        manifest = read_footage_manifest(root)
        for setting in settings:
            results[setting].append(_one_setting(root, manifest, setting, args,
                                                 net if setting == "appearance" else None))
    labels = {"today": "today (SORT, 1 s memory)", "bytetrack": "two-stage, 3 s memory",
              "appearance": "two-stage, 3 s memory + appearance links"}  # fmt: skip
    rows = []
    for setting in settings:
        runs = results[setting]
        cells = [labels[setting]]
        for key, fmt in (("per_visit", "{:.2f}"), ("idf1", "{:.3f}"), ("switches", "{:.1f}"),
                         ("mota", "{:.3f}")):  # fmt: skip
            v = np.array([r[key] for r in runs])
            sd = f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else ""
            cells.append(fmt.format(v.mean()) + sd)
        unmatched, visits = (sum(r[k] for r in runs) for k in ("unmatched", "visits"))
        cells.append(f"{unmatched} / {visits}")
        rows.append(cells)
    r0 = results[settings[0]]
    total = sum(r["total"] for r in r0)
    strong, weak = sum(r["kept"] for r in r0), sum(r["low"] for r in r0)
    print(f"\n# footage seeds {args.footage_seeds} ({args.seconds:g} s x 3 cameras each), "
          f"thinning {args.thin} (seed {args.thin_seed}): of {total} ground-truth boxes "
          f"{strong} kept as strong, {weak} as weak, {total - strong - weak} dropped")  # fmt: skip
    print(markdown_table(["tracker", "tracks per person-visit", "IDF1", "ID switches",
                          "MOTA", "visits unmatched"], rows))  # fmt: skip
    if args.link_stats:
        _link_table([e for r in results["appearance"] for e in r["links"]])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "tracking":
        tracking(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, default=None, help="default: the checkpoint's")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    print_machine()
    runs = [measure(c, args.data, args.device) for c in args.checkpoint]
    rows = []
    for name, label in (("crop", "per crop"), ("max", "per track, max"),
                        ("top3", "per track, mean of top 3")):  # fmt: skip
        cells = [label, str(runs[0][name]["tracks"])]
        for metric in ("reid_map", "reid_rank1", "aps_map"):
            v = 100 * np.array([r[name][metric] for r in runs])
            spread = f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""  # sample sd over models
            cells.append(f"{v.mean():.2f}{spread}")
        rows.append(cells)
    print(f"\n{len(runs)} checkpoint(s): {', '.join(map(str, args.checkpoint))}\n")
    print(
        markdown_table(["ranking", "gallery entries", "reID mAP", "reID rank-1", "APS mAP"], rows)
    )
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    run_script(main)
