"""A filter's two index paths, one query at a time, alternated in one process: the broad path
(an unfiltered search of ``k rerank / share`` candidates, those passing re-ranked; the queries
it hands on answered by the id-bitmap path too) and the id-bitmap path (the index searched
through a bitmap of the passing ids). The index's own choice (``bitmap_below``, timed when it
was built) is set aside for the run. Runs on a gallery kept by ``bench_recall.py`` (its
queries and filters; a row ``~N%`` keeps about N % of the cameras), after reading its segments
twice, and prints p50 / p99 per row, path and round.

    python benchmarks/bench_recall.py --kind generator --sizes 1000000 --dim 2560 \
        --workdir W --keep --prepare      # then once with --reuse, which builds the index
    python benchmarks/bench_filter_paths.py W/generator-1000000-2560 --rows "~20%,~10%,~5%"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import bench_recall
import numpy as np
from _common import print_machine, run_script
from bench_recall import open_kept, where_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gallery", type=Path, help="a gallery folder kept by bench_recall.py "
                        "(KIND-N-DIM, its index built)")  # fmt: skip
    parser.add_argument("--rows", default="~50%,~20%,~10%,~5%", help="filters ~N%% "
                        "(comma-separated)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two paths")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = args.rows.split(",")
    for name in names:
        if not (name.startswith("~") and name.endswith("%")):
            raise SystemExit(f"--rows: {name!r} is not ~N%")
        bench_recall.SHARES.setdefault(name, float(name[1:-1]) / 100)
    print_machine()
    store, queries, rows = open_kept(args.gallery, args.queries, args.seed)
    store.search(queries[:1], 10)  # loads the index
    store._ann.recall["bitmap_below"] = None  # the broad path wherever it was measured
    broad = store._broad
    print("| filter | path | round | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    try:
        for name in names:
            wheres = [where_of(f) for f in rows[name][: len(queries)]]
            for i in range(5):  # untimed: lazy reads
                store.search(queries[i : i + 1], 10, wheres[i])
            for rnd in range(args.rounds):
                for path in ("broad", "bitmap"):
                    store._broad = broad if path == "broad" else (lambda *a, **k: None)
                    times = []
                    for q, where in zip(queries, wheres):
                        t0 = time.perf_counter()
                        store.search(q[None], 10, where)
                        times.append((time.perf_counter() - t0) * 1000)
                    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
                    print(f"| {name} | {path} | {rnd + 1} | {p50:.1f} | {p99:.1f} |", flush=True)
    finally:
        store._broad = broad
        store.close()


if __name__ == "__main__":
    run_script(main)
