"""Benchmark of :func:`cerberus.evaluation.metrics.reid_metrics` at Market-1501 scale (a script, no
test).

Random scores for 3368 queries against 15913 gallery entries (Market-1501 test split without
junk: 751 identities, 6 cameras, 2793 distractors) and against a 10x larger gallery. Prints our
time and the peak memory the call adds (the input matrix is not counted; see
``peak_memory_mib``). When torchreid is importable (optional benchmark extra), also times its
``evaluate_rank`` on the same distances, checks agreement to 1e-6 and prints the time ratio
(target: ours >= 20x faster).

torchreid 0.2.5 from PyPI ships without ``rank_cy.pyx``, so its Cython evaluator cannot be built
and ``evaluate_rank`` falls back to its Python loop (``IS_CYTHON_AVAI`` is False); the table says
which implementation was timed. With the Python fallback the 10x size takes minutes and about
13 GB (its argsort indices and match matrix are int64 / int32 copies of the score matrix).

    python benchmarks/bench_reid_metric.py                 # Market scale and 10x gallery
    python benchmarks/bench_reid_metric.py --sizes market  # Market scale only
    python benchmarks/bench_reid_metric.py --quick         # 400 x 2000, seconds
"""

from __future__ import annotations

import argparse
import ctypes
import re
import time
import tracemalloc

import numpy as np
from _common import markdown_table, max_rss_mib, print_machine, run_script, torchreid_evaluate_rank

from cerberus.evaluation.metrics import reid_metrics

NUM_CAMS = 6
# name: (queries, gallery, identities, distractors)
SIZES = {
    "quick": (400, 2000, 100, 350),
    "market": (3368, 15913, 751, 2793),
    "market10x": (3368, 159130, 751, 27930),
}


def make_case(size: str, dtype: str, seed: int = 0):
    """Identities, cameras and scores without ties (so that an unstable sort agrees).

    Each row is a random permutation of ``0, 1/G, ..., (G-1)/G`` (distinct in float32 too); true
    matches get ``0.3 + 0.5/G`` more (half a level: no tie), so they tend to rank high.
    """
    num_q, num_g, num_ids, num_distractors = SIZES[size]
    rng = np.random.default_rng(seed)
    qp = rng.integers(1, num_ids + 1, num_q)
    qc = rng.integers(1, NUM_CAMS + 1, num_q)
    gp = rng.integers(1, num_ids + 1, num_g)
    gp[rng.choice(num_g, num_distractors, replace=False)] = 0
    gc = rng.integers(1, NUM_CAMS + 1, num_g)
    levels = (np.arange(num_g) / num_g).astype(dtype)
    scores = np.empty((num_q, num_g), dtype=dtype)
    block_rows = 256
    for start in range(0, num_q, block_rows):  # in blocks: bounded temporaries
        stop = min(start + block_rows, num_q)
        block = scores[start:stop]
        block[:] = rng.permuted(np.broadcast_to(levels, block.shape), axis=1)
        block += (0.3 + 0.5 / num_g) * (qp[start:stop, None] == gp[None, :])
    return scores, qp, gp, qc, gc


def time_call(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{key}:\s+(\d+) kB", fh.read()).group(1)) / 1024


def peak_memory_mib(fn) -> tuple[float, str]:
    """Peak memory ``fn`` adds beyond what is already allocated (the input is not counted).

    Linux: growth of the resident high-water mark, after handing free heap pages back
    (``malloc_trim``) and resetting the mark (``/proc/self/clear_refs``); counts numpy and torch.
    Elsewhere: tracemalloc, which sees numpy's allocations but not torch's.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_mib("VmRSS")
        fn()
        return _status_mib("VmHWM") - base, "RSS"
    except OSError:
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak / 2**20, "tracemalloc"


def bench_one(size: str, dtype: str, repeats: int, evaluate_rank) -> list[str]:
    """One table row: our time and peak memory, and torchreid's time and agreement if given."""
    scores, qp, gp, qc, gc = make_case(size, dtype)
    shape = f"{scores.shape[0]} x {scores.shape[1]}"

    def ours():
        return reid_metrics(scores, qp, gp, qc, gc)

    seconds, m = time_call(ours, repeats if size != "market10x" else 1)
    peak, how = peak_memory_mib(ours)
    ref_cell, ratio_cell, agree_cell = "skipped", "-", "-"
    if evaluate_rank is not None:
        # Distances = -scores, negated in place (no second copy of a 10x matrix). torchreid's
        # Cython evaluator takes float32 distances; its Python one takes any dtype.
        distmat = np.negative(scores, out=scores)
        del scores
        ref_seconds, (cmc, mean_ap) = time_call(
            lambda: evaluate_rank(distmat, qp, gp, qc, gc, max_rank=50), 1
        )
        diff = max(abs(m["map_score"] - mean_ap), float(np.abs(m["cmc"] - cmc).max()))
        ref_cell = f"{ref_seconds:.2f}"
        ratio_cell = f"{ref_seconds / seconds:.1f}x"
        agree_cell = f"{'yes' if diff <= 1e-6 else 'NO'} ({diff:.1e})"
    return [
        size,
        shape,
        dtype,
        f"{seconds:.3f}",
        f"{peak:.0f} ({how})",
        f"{m['map_score']:.4f}",
        f"{m['rank1_score']:.4f}",
        ref_cell,
        ratio_cell,
        agree_cell,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["market", "market10x"], choices=list(SIZES))
    parser.add_argument("--quick", action="store_true", help="only the small 'quick' size")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3, help="best of (not at market10x)")
    parser.add_argument("--no-torchreid", action="store_true", help="time ours only")
    args = parser.parse_args()
    sizes = ["quick"] if args.quick else args.sizes
    print_machine()
    evaluate_rank, impl = (None, "skipped") if args.no_torchreid else torchreid_evaluate_rank()
    print(f"# torchreid evaluate_rank: {impl}")
    if impl == "python":
        print("#   (rank_cy not built: torchreid's pure-Python evaluator is timed, not its Cython)")
    headers = [
        "size",
        "queries x gallery",
        "dtype",
        "ours s",
        "peak MiB",
        "mAP",
        "R-1",
        f"torchreid ({impl}) s",
        "speed-up",
        "agree (1e-6)",
    ]
    rows = []
    for size in sizes:
        for dtype in args.dtypes:
            rows.append(bench_one(size, dtype, args.repeats, evaluate_rank))
            print("  ".join(rows[-1]), flush=True)
    print()
    print(markdown_table(headers, rows))
    print(f"\nprocess max RSS {max_rss_mib():.0f} MiB (inputs included); target speed-up >= 20x")


if __name__ == "__main__":
    run_script(main)
