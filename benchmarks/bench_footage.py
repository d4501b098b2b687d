"""Footage ingestion (method §9.3): throughput per stage, the HOG detector's size limits, and
tracking / detection quality against MOTChallenge ground truth (a script, no test).

    python benchmarks/bench_footage.py throughput --video vtest.avi          # 2 threads
    python benchmarks/bench_footage.py hog --video vtest.avi                  # size limits
    python benchmarks/bench_footage.py tracking --video cam1.mp4 --gt gt.txt  # motmetrics
    python benchmarks/bench_footage.py crosscam --checkpoint runs/demo/last.pt  # reID / APS

``throughput``: the default pipeline (HOG with motion gate, stride 2, SORT, crop choice, the
model of ``--config`` with random weights (speed does not depend on them), an in-memory store)
on ``--frames`` frames; ms per decoded frame per stage and the whole as a multiple of real time
at the video's frame rate. ``hog``: synthetic pedestrians of known heights pasted on a frame,
recall per height and ``--upscale`` (the detector's limit), ms per frame per upscale, and on the
video the heights of what it finds. ``tracking``: from the ground-truth boxes without their ids,
and from HOG's detections: IDF1, MOTA and ID switches (``motmetrics``), and HOG's recall and
precision at IoU 0.5. ``crosscam``: synthetic footage (``cerberus synth footage``, the default
preset at held-out seeds 1, 2, 3, or ``--footage DIR``) ingested from its ground-truth boxes without
ids (SORT, the crop choice, the model of ``--checkpoint``); each track labelled with the person its
crops overlap most; reID mAP of tracks against the tracks of the other cameras (per track: the
pooled track vector; per crop: each crop against the other cameras' crops), APS mAP over tracks (a
query per person's full description), each beside chance.

vtest.avi: Debian's opencv-doc package (``apt-get download opencv-doc``, then ``dpkg -x``;
``usr/share/doc/opencv-doc/examples/data/vtest.avi``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import markdown_table, print_machine, run_script

from cerberus.footage.detect import Detections, HogDetector, MotDetections, iou_matrix
from cerberus.footage.ingest import STAGES, ModelEmbedder, ingest_source
from cerberus.footage.track import SortTracker
from cerberus.footage.video import open_source

ROOT = Path(__file__).resolve().parents[1]


def _threads(n: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def _random_model(config: Path, device: str = "cpu"):
    from cerberus.attributes.schema_files import get_schema
    from cerberus.config import load_config
    from cerberus.inference.embed import InferenceModel
    from cerberus.modeling.model import fuse_batchnorm
    from cerberus.training.checkpoints import model_from_config

    cfg = load_config(config)
    schema = get_schema(cfg.data.dataset)
    model = fuse_batchnorm(model_from_config(cfg.model, schema, 751, load_weights=False)).eval()
    return InferenceModel(
        model=model, schema=schema, height=cfg.data.height, width=cfg.data.width,
        checkpoint=f"random weights ({config.name})", device=device, batch_size=32,
    )  # fmt: skip


def throughput(args) -> None:
    from cerberus.store import MemoryStore, info_of_model

    _threads(args.threads)
    net = _random_model(args.config)
    store = MemoryStore(info_of_model(net))
    video = open_source(args.video, start="2026-11-30T10:00:00Z")
    t0 = time.perf_counter()
    report = ingest_source(
        video, store, ModelEmbedder(net), camera="cam", stride=args.stride,
        detector=HogDetector(upscale=args.upscale), max_frames=args.frames,
        thumbs=args.thumbs,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    fps = video.fps or 10.0
    n = report.frames
    rows = [[s, f"{report.seconds[s] / n * 1000:.1f}"] for s in STAGES]
    rows.append(["whole (wall clock)", f"{wall / n * 1000:.1f}"])
    print(f"# {args.video}: {n} frames at {fps:g} fps, stride {args.stride}, upscale "
          f"{args.upscale}, {args.threads} threads, model {net.checkpoint}")  # fmt: skip
    print(f"# {report.tracks} tracks, {report.items} crops, {report.dropped_tracks} tentative "
          f"tracks dropped")  # fmt: skip
    print(markdown_table(["stage", "ms per frame"], rows))
    print(f"\nreal-time multiple at {fps:g} fps: {n / fps / wall:.2f}x "
          f"({n / wall:.1f} frames/s)")  # fmt: skip


def _person_frame(height: int, rng, size=(768, 576)):
    """A textured frame with one synthetic pedestrian of ``height`` px; returns the frame and
    the pedestrian's box."""
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.data.synthetic.render import make_cameras, render_person, sample_details

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    frame = (100 + 30 * np.sin(xx / 23.0) * np.cos(yy / 31.0))[..., None].repeat(3, 2)
    frame = np.clip(frame + rng.normal(0, 5, frame.shape), 0, 255).astype(np.uint8)
    values = np.array([rng.integers(0, a.num_values) for a in MARKET1501.attributes])
    camera = make_cameras(1, int(rng.integers(1 << 30)))[0]
    crop = np.asarray(
        render_person(values, sample_details(rng, values), camera, rng, height=height,
                      width=max(height // 2, 8))  # fmt: skip
    )
    x, y = int(rng.integers(0, w - crop.shape[1])), int(rng.integers(0, h - crop.shape[0]))
    frame[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    # the figure fills about the middle 80% of the rendered crop's height
    box = np.array([x, y, x + crop.shape[1], y + crop.shape[0]], np.float32)
    return frame, box


def hog(args) -> None:
    from cerberus.footage.video import Frame

    _threads(args.threads)
    rng = np.random.default_rng(0)
    heights = [48, 64, 96, 128, 160, 200]
    upscales = [1.0, 1.5, 2.0]
    rows = []
    for up in upscales:
        found = []
        times = []
        for height in heights:
            hit = 0
            for _ in range(args.trials):
                image, box = _person_frame(height, rng)
                det = HogDetector(motion=False, upscale=up, min_score=0.0)
                t0 = time.perf_counter()
                out = det.detect(Frame(1, 0.0, 0.0, image))
                times.append(time.perf_counter() - t0)
                if len(out) and iou_matrix(out.boxes, box[None])[:, 0].max() >= 0.3:
                    hit += 1
            found.append(f"{hit / args.trials:.2f}")
        rows.append([f"{up:g}", *found, f"{np.median(times) * 1000:.0f}"])
    print("# synthetic pedestrians (cartoon figures: HOG finds them less than real people)")
    print(markdown_table(["upscale", *(f"recall h={h}" for h in heights), "ms/frame 768x576"],
                         rows))  # fmt: skip
    if args.video:
        video = open_source(args.video)
        frames = [f for f, _ in zip(video.frames(stride=8), range(args.frames))]
        rows = []
        for up in upscales:
            det = HogDetector(motion=False, upscale=up)
            t0 = time.perf_counter()
            outs = [det.detect(f) for f in frames]
            ms = (time.perf_counter() - t0) / len(frames) * 1000
            hs = np.concatenate([o.boxes[:, 3] - o.boxes[:, 1] for o in outs] + [np.zeros(0)])
            rows.append([f"{up:g}", f"{len(hs) / len(frames):.1f}",
                         f"{hs.min():.0f}" if len(hs) else "-",
                         f"{np.median(hs):.0f}" if len(hs) else "-", f"{ms:.0f}"])  # fmt: skip
        print(f"\n# {args.video}: {len(frames)} frames, whole frames (no motion gate)")
        print(markdown_table(["upscale", "boxes/frame", "smallest h", "median h", "ms/frame"],
                             rows))  # fmt: skip


def _motmetrics_summary(gt: MotDetections, hyp: dict[int, tuple[np.ndarray, np.ndarray]],
                        last: int) -> dict[str, float]:  # fmt: skip
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for n in range(1, last + 1):
        g = gt.rows.get(n, Detections.empty())
        ids, boxes = hyp.get(n, (np.zeros(0, np.int64), np.zeros((0, 4), np.float32)))
        dist = 1 - iou_matrix(g.boxes, boxes)
        dist[dist > 0.5] = np.nan
        acc.update(g.ids.tolist(), ids.tolist(), dist)
    mh = mm.metrics.create()
    s = mh.compute(acc, metrics=["idf1", "mota", "num_switches", "recall", "precision"])
    return {k: float(s[k].iloc[0]) for k in s.columns}


def _track(video_path, detector, stride: int):
    """Per frame, the confirmed tracks' ids and boxes (tentative tracks that died removed)."""
    video = open_source(video_path)
    tracker = SortTracker(max_age=max(2, round((video.fps or 10) / stride)))
    out: dict[int, list] = {}
    dropped: set[int] = set()
    dets_of = {}
    last = 0
    for frame in video.frames(stride):
        last = frame.number
        dets = detector.detect(frame)
        dets_of[frame.number] = dets
        update = tracker.update(dets)
        dropped.update(update.dropped)
        keep = update.tracks >= 0
        out[frame.number] = [update.tracks[keep], dets.boxes[keep]]
    dropped.update(tracker.close().dropped)
    for n, (ids, boxes) in out.items():
        ok = np.array([i not in dropped for i in ids], bool)
        out[n] = (ids[ok], boxes[ok])
    return out, dets_of, max(last, video.decoded)


def tracking(args) -> None:
    _threads(args.threads)
    video = open_source(args.video)
    gt = MotDetections.load(args.gt, size=video.size)
    blind = MotDetections.load(args.gt, size=video.size)
    blind.gives_ids = False  # the boxes without their ids
    rows = []
    hyp, _, last = _track(args.video, blind, 1)
    m = _motmetrics_summary(gt, hyp, last)
    rows.append(["ground-truth boxes, ids removed", "1", "-", "-",
                 f"{m['idf1']:.3f}", f"{m['mota']:.3f}", f"{m['num_switches']:.0f}"])  # fmt: skip
    for stride in (1, 2):
        hyp, dets, last = _track(args.video, HogDetector(upscale=args.upscale), stride)
        tp = fp = fn = 0
        for n, d in dets.items():
            g = gt.rows.get(n, Detections.empty())
            iou = iou_matrix(d.boxes, g.boxes)
            from scipy.optimize import linear_sum_assignment

            r, c = linear_sum_assignment(-iou) if iou.size else ([], [])
            match = int(sum(iou[i, j] >= 0.5 for i, j in zip(r, c)))
            tp += match
            fp += len(d) - match
            fn += len(g) - match
        m = _motmetrics_summary(gt, hyp, last) if stride == 1 else None
        rows.append([f"HOG (upscale {args.upscale:g}) + SORT", str(stride),
                     f"{tp / max(tp + fn, 1):.3f}", f"{tp / max(tp + fp, 1):.3f}",
                     f"{m['idf1']:.3f}" if m else "-", f"{m['mota']:.3f}" if m else "-",
                     f"{m['num_switches']:.0f}" if m else "-"])  # fmt: skip
    print(f"# {args.video} against {args.gt} ({last} frames); detection recall / precision at "
          "IoU 0.5 on the frames searched")  # fmt: skip
    print(markdown_table(["boxes", "stride", "det recall", "det precision", "IDF1", "MOTA",
                          "ID switches"], rows))  # fmt: skip


def _ingest_ground_truth(root: Path, manifest: dict, net, max_crops: int):
    """Every camera of a synthetic footage set into a memory store from its ground-truth boxes
    without ids; returns the store's items and, per item, its person (largest IoU with the
    ground truth in its frame)."""
    from cerberus.store import MemoryStore, info_of_model

    store = MemoryStore(info_of_model(net))
    embedder = ModelEmbedder(net)
    size = (manifest["width"], manifest["height"])
    truth = {}
    for cam in manifest["cameras"]:
        video = open_source(root / cam["video"], start=cam["start"])
        blind = MotDetections.load(root / cam["gt"], size=size, num_frames=video.num_frames)
        blind.gives_ids = False  # the boxes without their ids: SORT makes the tracks
        truth[cam["name"]] = MotDetections.load(root / cam["gt"], size=size)
        report = ingest_source(video, store, embedder, camera=cam["name"], detector=blind,
                               max_crops=max_crops)  # fmt: skip
        print(f"<!-- {report.line()} -->")
    items = store.get(store.ids())
    person = np.full(len(items), -1, np.int64)
    for i in range(len(items)):
        g = truth[items.camera[i]].rows.get(int(items.frame[i]), Detections.empty())
        if len(g):
            person[i] = g.ids[int(iou_matrix(items.box[i : i + 1], g.boxes)[0].argmax())]
    return items, person


def _other_cameras(scores, pids, cams, gallery_pids, gallery_cams):
    """reID mAP and its chance with the gallery limited to the other cameras' entries: the
    queries of each camera ranked separately, APs averaged over all valid queries."""
    from cerberus.evaluation.metrics.ranking import reid_chance, reid_metrics

    total = chance = valid = 0.0
    for cam in np.unique(cams):
        q, g = cams == cam, gallery_cams != cam
        if not (np.isin(pids[q], gallery_pids[g])).any():
            continue
        m = reid_metrics(scores[np.ix_(q, g)], pids[q], gallery_pids[g], None, None)
        c = reid_chance(pids[q], gallery_pids[g], None, None)
        n = m["num_valid_queries"]
        total, chance, valid = total + m["map_score"] * n, chance + c["map_score"] * n, valid + n
    return total / valid, chance / valid, int(valid)


def _crosscam_one(root: Path, manifest: dict, checkpoint: Path, max_crops: int) -> dict:
    """One model's cross-camera figures: ``{search: (queries, mAP, chance)}`` and facts."""
    import csv

    from cerberus.attributes.schema import GROUPS
    from cerberus.evaluation.metrics.ranking import aps_chance, aps_metrics
    from cerberus.inference.embed import InferenceModel
    from cerberus.inference.scoring import (
        attribute_query_vectors,
        parse_attribute_query,
        pool_vectors,
    )

    net = InferenceModel.from_checkpoint(checkpoint, device="cpu")
    items, person = _ingest_ground_truth(root, manifest, net, max_crops)
    cams = np.array([manifest["cameras"].index(next(c for c in manifest["cameras"]
                     if c["name"] == n)) for n in items.camera])  # fmt: skip
    keys = sorted(set(zip(cams.tolist(), items.track.tolist())))
    of_track = np.array([keys.index(k) for k in zip(cams.tolist(), items.track.tolist())])
    t_vec = np.stack([pool_vectors(items.vectors[of_track == t]) for t in range(len(keys))])
    t_cam = np.array([k[0] for k in keys])
    t_pid, purity = np.zeros(len(keys), np.int64), []
    for t in range(len(keys)):
        ids, counts = np.unique(person[of_track == t], return_counts=True)
        t_pid[t] = ids[counts.argmax()]
        purity.append(counts.max() / counts.sum())
    crop_pid = t_pid[of_track]  # a crop is labelled with its track's person
    out: dict = {}
    out["reID, per track (pooled vector)"] = _other_cameras(
        t_vec @ t_vec.T, t_pid, t_cam, t_pid, t_cam
    )
    v = items.vectors
    out["reID, per crop"] = _other_cameras(v @ v.T, crop_pid, cams, crop_pid, cams)
    # APS: one query per person's full description (attributes.csv); relevant: the tracks of
    # the persons with the same SIDs in all five groups
    with (root / "attributes.csv").open() as fh:
        described = {int(r.pop("person_id")): r for r in csv.DictReader(fh)}
    schema = net.schema
    sids_of, vectors_of = {}, {}
    for pid, row in described.items():
        query = parse_attribute_query(row, schema)
        assert query.groups == GROUPS and query.num_combinations == 1, pid
        sids_of[pid] = [c[0] for c in query.choices]
        vectors_of[tuple(sids_of[pid])] = attribute_query_vectors(query, net.prototypes)[0]
    present = sorted({tuple(sids_of[int(p)]) for p in t_pid})
    q_sids = np.array(present, np.int64)
    g_sids = np.array([sids_of[int(p)] for p in t_pid], np.int64)
    scores = np.stack([vectors_of[k] for k in present]) @ t_vec.T
    a = aps_metrics(scores, q_sids, g_sids)
    ac = aps_chance(q_sids, g_sids)
    out["APS, per track (full description)"] = (
        a["map_score"], ac["map_score"], int(a["num_valid_queries"])
    )
    facts = (f"{len(keys)} tracks, {len(items)} crops (up to {max_crops} per track), "
             f"{len(set(t_pid.tolist()))} persons; track purity {np.mean(purity):.3f}")  # fmt: skip
    return {"rows": out, "facts": facts}


def crosscam(args) -> None:
    """Cross-camera reID per track / per crop and APS per track, for each ``--checkpoint`` on
    each footage set (``--footage``, else the default preset drawn at each ``--footage-seed``);
    with several runs, mean ± sample sd over them (every model on every footage set)."""
    import json
    import tempfile

    from cerberus.data.synthetic.footage import generate_footage
    from cerberus.data.synthetic.scene import FootageSpec

    _threads(args.threads)
    if args.footage is not None:
        roots = [args.footage]
    else:
        roots = []
        for seed in args.footage_seed or [1, 2, 3]:
            root = Path(tempfile.mkdtemp(prefix=f"crosscam-{seed}-")) / "footage"
            print(f"<!-- seed {seed}: {generate_footage(root, FootageSpec(seed=seed))} -->")
            roots.append(root)
    runs = []
    for root in roots:
        manifest = json.loads((root / "footage.json").read_text())
        for checkpoint in args.checkpoint:
            run = _crosscam_one(root, manifest, checkpoint, args.max_crops)
            maps = ", ".join(f"{k.split(' (')[0]} {v[0]:.3f}" for k, v in run["rows"].items())
            print(f"# {root}: {len(manifest['cameras'])} cameras, {run['facts']}; "
                  f"model {checkpoint}: mAP {maps}")  # fmt: skip
            runs.append(run)

    def cell(values: list[float]) -> str:
        v = np.asarray(values)
        return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if len(v) > 1 else "")

    rows = []  # queries: the mean over the runs
    for search in runs[0]["rows"]:
        got = [r["rows"][search] for r in runs]
        queries = f"{np.mean([g[2] for g in got]):.0f}"
        rows.append([search, queries, cell([g[0] for g in got]), cell([g[1] for g in got])])
    print(f"\n{len(runs)} run(s): {len(roots)} footage set(s) x {len(args.checkpoint)} "
          "model(s)" + (" (mean ± sample sd)" if len(runs) > 1 else "") + "\n")  # fmt: skip
    print(markdown_table(["search", "queries", "mAP", "chance mAP"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--frames", type=int, default=None, help="stop after this many (all)")
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--upscale", type=float, default=1.0)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "market1501.yaml")
    p.add_argument("--thumbs", type=Path, default=None)
    p = sub.add_parser("hog")
    p.add_argument("--video", type=Path, default=None)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--trials", type=int, default=20)
    p = sub.add_parser("tracking")
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--gt", type=Path, required=True)
    p.add_argument("--upscale", type=float, default=1.0)
    p = sub.add_parser("crosscam")
    p.add_argument("--checkpoint", type=Path, action="append", required=True,
                   help="a trained model; repeat for several (mean ± sd)")  # fmt: skip
    p.add_argument("--footage", type=Path, default=None,
                   help="a footage folder (default: the default preset at each --footage-seed)")
    p.add_argument("--footage-seed", type=int, action="append", default=None,
                   help="seed of the default preset; repeat for several (default: 1, 2, 3)")
    p.add_argument("--max-crops", type=int, default=4)
    for p in sub.choices.values():
        p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print_machine()
    run = {"throughput": throughput, "hog": hog, "tracking": tracking, "crosscam": crosscam}
    run[args.what](args)


if __name__ == "__main__":
    run_script(main)
