"""Where the time of an index build goes: ``build_index`` of a filled local gallery under
cProfile, beside faiss's own IVF-SQ8 train + add on the same segment files (as
``bench_recall.py`` times it), both after the segment files were read once.

    python benchmarks/bench_recall.py --kind generator --sizes 1000000 --dim 640 \
        --workdir W --keep --prepare
    python benchmarks/profile_build.py W/generator-1000000-640
    python benchmarks/profile_build.py W/generator-1000000-640 --repeat 3

``--repeat N`` times N builds (no profiler) each followed by faiss's train + add, and prints
each pair and the ratio's mean and spread: the host's noise (a second or two a build on a
shared machine) is larger than many a change, so one pair is an anecdote.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import time
from pathlib import Path

import numpy as np
from _common import print_machine, run_script
from bench_recall import faiss_baseline, warm

from cerberus.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gallery", type=Path, help="a local gallery folder (its index is rebuilt)")
    parser.add_argument("--lines", type=int, default=30, help="profile lines printed")
    parser.add_argument("--repeat", type=int, default=0, help="time N build / faiss pairs")
    args = parser.parse_args()
    print_machine()
    warm(args.gallery)
    if args.repeat:
        return repeat(args.gallery, args.repeat)
    shutil.rmtree(args.gallery / "ann", ignore_errors=True)
    (args.gallery / "ann").mkdir()
    store = open_store(args.gallery)
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.enable()
    store.build_index()
    profile.disable()
    build_s = time.perf_counter() - t0
    facts = store.index_facts()
    dim = store.info.dim
    store.close()
    faiss_s = faiss_baseline(args.gallery, facts["recall"]["nlist"], dim)
    print(f"build_index {build_s:.1f} s, faiss train + add {faiss_s:.1f} s "
          f"({build_s / faiss_s:.2f}x)")  # fmt: skip
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.lines)


def repeat(gallery: Path, times: int) -> None:
    """``times`` pairs of a timed build (a fresh process's view: the store opened anew) and
    faiss's train + add; a table and the ratio's mean and standard deviation."""
    ratios = []
    print("| run | build_index s | faiss train + add s | ratio |\n|---|---|---|---|")
    for run in range(1, times + 1):
        shutil.rmtree(gallery / "ann", ignore_errors=True)
        (gallery / "ann").mkdir()
        store = open_store(gallery)
        t0 = time.perf_counter()
        store.build_index()
        build_s = time.perf_counter() - t0
        nlist, dim = store.index_facts()["recall"]["nlist"], store.info.dim
        store.close()
        faiss_s = faiss_baseline(gallery, nlist, dim)
        ratios.append(build_s / faiss_s)
        print(f"| {run} | {build_s:.1f} | {faiss_s:.1f} | {ratios[-1]:.2f}x |", flush=True)
    r = np.array(ratios)
    sd = r.std(ddof=1) if times > 1 else 0.0
    print(f"ratio over {times} runs: mean {r.mean():.2f}x, sd {sd:.2f}, "
          f"range {r.min():.2f}-{r.max():.2f}x")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
