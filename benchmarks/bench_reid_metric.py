"""Benchmark of :func:`cerberus.evaluation.reid_metrics` at Market-1501 scale (a script, no test).

Random scores for 3368 queries against 15913 gallery entries (Market-1501 test split without
junk: 751 identities, 6 cameras, 2793 distractors) and against a 10x larger gallery. Prints our
time and the peak memory the call adds (the input matrix is not counted; see
``peak_memory_mib``). When torchreid is importable (optional benchmark extra), also times its
``evaluate_rank`` on the same distances, checks agreement to 1e-6 and prints the time ratio.

    python benchmarks/bench_reid_metric.py                 # Market scale and 10x gallery
    python benchmarks/bench_reid_metric.py --sizes market  # Market scale only
"""

from __future__ import annotations

import argparse
import ctypes
import re
import resource
import time
import tracemalloc

import numpy as np

from cerberus.evaluation import reid_metrics

NUM_QUERIES, NUM_GALLERY, NUM_IDS, NUM_CAMS, NUM_DISTRACTORS = 3368, 15913, 751, 6, 2793
SIZES = {"market": 1, "market10x": 10}


def make_case(gallery_factor: int, dtype: str, seed: int = 0):
    """Identities, cameras and scores without ties (so that an unstable sort agrees).

    Each row is a random permutation of ``0, 1/G, ..., (G-1)/G`` (distinct in float32 too); true
    matches get ``0.3 + 0.5/G`` more (half a level: no tie), so they tend to rank high.
    """
    rng = np.random.default_rng(seed)
    num_g = NUM_GALLERY * gallery_factor
    qp = rng.integers(1, NUM_IDS + 1, NUM_QUERIES)
    qc = rng.integers(1, NUM_CAMS + 1, NUM_QUERIES)
    gp = rng.integers(1, NUM_IDS + 1, num_g)
    gp[rng.choice(num_g, NUM_DISTRACTORS * gallery_factor, replace=False)] = 0
    gc = rng.integers(1, NUM_CAMS + 1, num_g)
    levels = (np.arange(num_g) / num_g).astype(dtype)
    scores = np.empty((NUM_QUERIES, num_g), dtype=dtype)
    block_rows = 256
    for start in range(0, NUM_QUERIES, block_rows):  # in blocks: bounded temporaries
        stop = min(start + block_rows, NUM_QUERIES)
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


def bench_one(size: str, dtype: str, repeats: int, evaluate_rank) -> str:
    """One table row: our time and peak memory, and torchreid's time and agreement if given."""
    scores, qp, gp, qc, gc = make_case(SIZES[size], dtype)

    def ours():
        return reid_metrics(scores, qp, gp, qc, gc)

    seconds, m = time_call(ours, repeats if SIZES[size] == 1 else 1)
    peak, how = peak_memory_mib(ours)
    ref_cell, ratio_cell, agree_cell = "skipped", "-", "-"
    if evaluate_rank is not None:
        distmat = -scores.astype(np.float64)
        ref_seconds, (cmc, mean_ap) = time_call(
            lambda: evaluate_rank(distmat, qp, gp, qc, gc, max_rank=50), 1
        )
        diff = max(abs(m["map_score"] - mean_ap), float(np.abs(m["cmc"] - cmc).max()))
        ref_cell = f"{ref_seconds:.2f}"
        ratio_cell = f"{ref_seconds / seconds:.1f}x"
        agree_cell = f"{'yes' if diff <= 1e-6 else 'NO'} ({diff:.1e})"
    shape = f"{scores.shape[0]} x {scores.shape[1]}"
    return (
        f"{size:10s} {shape:>18s} {dtype:8s} {seconds:8.2f} {peak:6.0f} {how[:3]} "
        f"{m['map_score']:8.4f} {m['rank1_score']:7.4f} {ref_cell:>12s} {ratio_cell:>6s} "
        f"{agree_cell}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3, help="best of, at Market scale")
    args = parser.parse_args()
    try:
        from torchreid.metrics import evaluate_rank
    except ImportError:
        evaluate_rank = None
        print("torchreid not importable: its timing and the agreement check are skipped")
    header = (
        f"{'size':10s} {'queries x gallery':>18s} {'dtype':8s} {'ours s':>8s} "
        f"{'peak MiB':>10s} {'mAP':>8s} {'R-1':>7s} {'torchreid s':>12s} {'ratio':>6s} agree"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for dtype in args.dtypes:
            print(bench_one(size, dtype, args.repeats, evaluate_rank), flush=True)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"process max RSS {maxrss:.0f} MiB (inputs included)")


if __name__ == "__main__":
    main()
