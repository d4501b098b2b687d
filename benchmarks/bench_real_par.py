"""PAR on real people: hand-labelled vtest.avi crops (benchmarks/data/vtest_attributes.csv).

Each labelled box is cropped from the video and its attributes predicted the way
``cerberus describe`` does (:class:`cerberus.inference.embed.InferenceModel`: nearest SID
prototype per group, or the checkpoint's decision rule). Per attribute, on the crops labelled
(``unsure`` left out of that attribute):

- accuracy, and the majority answer's accuracy (the most common label, always answered);
- mA, the mean over the label's classes of the recall of each class,
  mA = (1 / K) sum_k #(pred = k and label = k) / #(label = k); a constant answer scores 1 / K;
- a bootstrap 95% interval of mA: people (not crops) drawn with replacement, all crops of a
  drawn person kept, 2.5 / 97.5 percentiles over the ``--draws`` draws (fixed ``--seed``) that
  keep every class (a draw without the only labelled woman has no gender mA); the table says
  how many draws were kept where some were not. A class held by one or two people is in every
  kept draw, so the interval understates the doubt about its recall: the table also gives the
  crops right per class.

    python benchmarks/bench_real_par.py --model demo=runs/demo/last.pt
    python benchmarks/bench_real_par.py --model wheel=a/last.pt,b/last.pt,c/last.pt --model ...

A model given several checkpoints (seeds) gets one row per checkpoint and a row with the mean
+- the sample standard deviation over them.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, print_machine, run_script  # noqa: E402

from cerberus.errors import CerberusError  # noqa: E402

HERE = Path(__file__).resolve().parent
LABELS = HERE / "data" / "vtest_attributes.csv"
VIDEO = Path("runs/vtest/vtest.avi")
"""Where ``make footage-example`` puts the clip (Debian opencv-doc's examples/data/vtest.avi)."""
UNSURE = "unsure"
ATTRIBUTES = {  # label column -> schema attribute (market1501 / dukemtmc names)
    "gender": "gender",
    "upper": "upper.color",
    "lower": "lower.color",
    "backpack": "backpack",
    "bag": "bag",
    "handbag": "handbag",
}
COLUMNS = ("person", "frame", "left", "top", "right", "bottom", *ATTRIBUTES)


def read_labels(path: Path) -> list[dict[str, str]]:
    """The labelled crops, one dict per row; a bad file is one CerberusError line."""
    if not path.is_file():
        raise CerberusError(f"{path}: labels file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CerberusError(f"{path}: missing columns {', '.join(missing)}")
        rows = list(reader)
    for n, r in enumerate(rows, start=2):
        try:
            left, top, right, bottom, frame = (
                int(r[k]) for k in ("left", "top", "right", "bottom", "frame")
            )
        except ValueError:
            raise CerberusError(f"{path}, line {n}: frame and box must be integers") from None
        if right <= left or bottom <= top or frame < 0:
            raise CerberusError(f"{path}, line {n}: empty box or negative frame")
    if not rows:
        raise CerberusError(f"{path}: no labelled crops")
    return rows


def crop_frames(video: Path, rows: Sequence[dict[str, str]]) -> list[np.ndarray]:
    """RGB crops ``(h, w, 3)`` uint8 of every row's box, read from the video in one pass
    (frame numbers 0-based, as OpenCV reads them)."""
    import cv2

    if not video.is_file():
        raise CerberusError(
            f"{video}: video not found (`make footage-example` fetches vtest.avi; or --video)"
        )
    wanted = {int(r["frame"]) for r in rows}
    cap = cv2.VideoCapture(str(video))
    frames: dict[int, np.ndarray] = {}
    index = 0
    while len(frames) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            frames[index] = frame
        index += 1
    cap.release()
    lost = sorted(wanted - frames.keys())
    if lost:
        raise CerberusError(f"{video}: frames {lost[:5]} not in the video (read {index})")
    crops = []
    for r in rows:
        f = frames[int(r["frame"])]
        h, w = f.shape[:2]
        box = [int(r[k]) for k in ("left", "top", "right", "bottom")]
        left, top, right, bottom = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
        if right - left < 2 or bottom - top < 2:
            raise CerberusError(f"box {box} of frame {r['frame']} is outside the {w}x{h} video")
        crops.append(np.ascontiguousarray(f[top:bottom, left:right, ::-1]))
    return crops


def mean_recall(labels: np.ndarray, predicted: np.ndarray) -> float:
    """mA: the mean over the classes in ``labels`` of the recall of each (1 / K for a constant)."""
    classes = np.unique(labels)
    return float(np.mean([np.mean(predicted[labels == k] == k) for k in classes]))


def bootstrap_interval(
    labels: np.ndarray,
    predicted: np.ndarray,
    people: np.ndarray,
    *,
    draws: int = 1000,
    seed: int = 0,
) -> tuple[float, float, int]:
    """95% interval of :func:`mean_recall`, people drawn with replacement (all their crops),
    over the draws that keep every class of ``labels``; returns (low, high, draws kept)."""
    rng = np.random.default_rng(seed)
    names = np.unique(people)
    rows = [np.flatnonzero(people == p) for p in names]
    classes = len(np.unique(labels))
    values = []
    for _ in range(draws):
        pick = np.concatenate([rows[i] for i in rng.integers(0, len(names), len(names))])
        if len(np.unique(labels[pick])) == classes:  # a draw that lost a class is not an mA of K
            values.append(mean_recall(labels[pick], predicted[pick]))
    if not values:
        return float("nan"), float("nan"), 0
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high), len(values)


def score(
    rows: Sequence[dict[str, str]],
    predictions: Sequence[dict[str, str]],
    *,
    draws: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Per label column: crops, people, classes, accuracy, majority, mA and its interval."""
    out = {}
    for column, name in ATTRIBUTES.items():
        keep = [i for i, r in enumerate(rows) if r[column] != UNSURE]
        if not keep:
            continue
        labels = np.array([rows[i][column] for i in keep])
        predicted = np.array([predictions[i].get(name, "?") for i in keep])
        people = np.array([rows[i]["person"] for i in keep])
        values, counts = np.unique(labels, return_counts=True)
        result = {
            "crops": len(keep),
            "people": len(np.unique(people)),
            "classes": len(values),
            "accuracy": float(np.mean(labels == predicted)),
            "majority": float(counts.max() / counts.sum()),
            "majority_answer": str(values[counts.argmax()]),
            "hits": {str(v): int(np.sum((labels == v) & (predicted == v))) for v in values},
            "counts": {str(v): int(c) for v, c in zip(values, counts)},
        }
        if len(values) > 1:
            result["mA"] = mean_recall(labels, predicted)
            result["mA_low"], result["mA_high"], result["draws_kept"] = bootstrap_interval(
                labels, predicted, people, draws=draws, seed=seed
            )
        out[column] = result
    return out


def predict(checkpoint: str, crops: Sequence[np.ndarray]) -> list[dict[str, str]]:
    """``{attribute: value}`` per crop, as ``cerberus describe`` predicts them."""
    from cerberus.inference.embed import InferenceModel

    net = InferenceModel.from_checkpoint(checkpoint, device="cpu")
    for column, name in ATTRIBUTES.items():
        if name not in [a.name for a in net.schema.attributes]:
            raise CerberusError(f"{checkpoint}: its schema has no attribute {name!r} ({column})")
    return [d["attributes"] for d in net.describe(net.features_of_images(list(crops)))]


def parse_model(text: str) -> tuple[str, list[str]]:
    name, sep, paths = text.partition("=")
    if not sep or not name or not paths:
        raise CerberusError(f"--model {text!r}: expected NAME=CHECKPOINT[,CHECKPOINT...]")
    return name, paths.split(",")


def fmt(result: dict[str, float], key: str) -> str:
    return f"{result[key]:.2f}" if key in result else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=CKPT[,CKPT...]")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    models = [parse_model(m) for m in args.model]
    rows = read_labels(args.labels)
    crops = crop_frames(args.video, rows)
    print_machine()
    print(
        f"{len(rows)} labelled crops of {len({r['person'] for r in rows})} people "
        f"({args.labels.name}); bootstrap over people, {args.draws} draws, seed {args.seed}\n"
    )
    table, record = [], {}
    for name, paths in models:
        per_seed = []
        for path in paths:
            result = score(rows, predict(path, crops), draws=args.draws, seed=args.seed)
            per_seed.append(result)
            record.setdefault(name, []).append({"checkpoint": path, "attributes": result})
            for column, r in result.items():
                interval = "-"
                if "mA" in r:
                    interval = f"[{r['mA_low']:.2f}, {r['mA_high']:.2f}]"
                    if r["draws_kept"] < args.draws:
                        interval += f" ({r['draws_kept']} draws)"
                hits = ", ".join(f"{v} {r['hits'][v]}/{n}" for v, n in r["counts"].items())
                table.append(
                    [name, path, column, f"{r['crops']}/{r['people']}", hits,
                     fmt(r, "accuracy"), f"{r['majority']:.2f} ({r['majority_answer']})",
                     fmt(r, "mA"), interval]
                )  # fmt: skip
        if len(per_seed) > 1:
            for column in per_seed[0]:
                acc = [s[column]["accuracy"] for s in per_seed]
                ma = [s[column]["mA"] for s in per_seed if "mA" in s[column]]
                r = per_seed[0][column]
                table.append(
                    [name, f"mean +- sd of {len(per_seed)}", column,
                     f"{r['crops']}/{r['people']}", "",
                     f"{statistics.mean(acc):.2f} +- {statistics.stdev(acc):.2f}",
                     f"{r['majority']:.2f} ({r['majority_answer']})",
                     f"{statistics.mean(ma):.2f} +- {statistics.stdev(ma):.2f}" if ma else "-",
                     "-"]
                )  # fmt: skip
    headers = ["model", "checkpoint", "attribute", "crops/people", "right per class", "accuracy",
               "majority", "mA", "mA 95% (people)"]  # fmt: skip
    print(markdown_table(headers, table))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    run_script(main)
