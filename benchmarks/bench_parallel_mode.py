"""One query at a time, with faiss's two ways of sharing a search among threads, alternated in
one process: ``parallel_mode`` 0 (each thread takes whole queries, so a single query runs on
one) and 1 (the threads share each query's cells), which the gallery index uses for fewer
queries than threads (``AnnIndex._split_lists``). Runs on a gallery kept by
``bench_recall.py`` (its queries and filters, 200 per row), after reading its segments twice
(into the page cache), and prints p50 / p99 per mode and round.

    python benchmarks/bench_recall.py --kind generator --sizes 1000000 --dim 2560 \
        --workdir W --keep --prepare      # then once with --reuse, which builds the index
    python benchmarks/bench_parallel_mode.py W/generator-1000000-2560 --rows "~50%,~10%"
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import print_machine, run_script
from bench_recall import open_kept, where_of

from cerberus.store import ann as ann_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gallery", type=Path, help="a gallery folder kept by bench_recall.py "
                        "(KIND-N-DIM, its index built)")  # fmt: skip
    parser.add_argument("--rows", default="all,~50%,~10%", help="filters: all, ~90%%, ~50%%, "
                        "~10%%, narrow (comma-separated)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two modes")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print_machine()
    store, queries, rows = open_kept(args.gallery, args.queries, args.seed)
    chosen = ann_module.AnnIndex._split_lists
    print("| filter | mode | round | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    try:
        for name in args.rows.split(","):
            wheres = [where_of(f) for f in rows[name][: len(queries)]]
            for i in range(5):  # untimed: lazy reads
                store.search(queries[i : i + 1], 10, wheres[i])
            for rnd in range(args.rounds):
                for mode in (0, 1):

                    def split(self, nq: int, mode: int = mode) -> None:
                        self.index.parallel_mode = mode if nq == 1 else 0

                    ann_module.AnnIndex._split_lists = split
                    times = []
                    for q, where in zip(queries, wheres):
                        t0 = time.perf_counter()
                        store.search(q[None], 10, where)
                        times.append((time.perf_counter() - t0) * 1000)
                    p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
                    print(f"| {name} | {mode} | {rnd + 1} | {p50:.1f} | {p99:.1f} |", flush=True)
    finally:
        ann_module.AnnIndex._split_lists = chosen
        store.close()


if __name__ == "__main__":
    run_script(main)
