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


def main() -> None:
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
