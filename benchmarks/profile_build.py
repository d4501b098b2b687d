"""Where the time of an index build goes: ``build_index`` of a filled local gallery under
cProfile, beside faiss's own IVF-SQ8 train + add on the same segment files (as
``bench_recall.py`` times it), both after the segment files were read once.

    python benchmarks/bench_recall.py --kind generator --sizes 1000000 --dim 640 \
        --workdir W --keep --prepare
    python benchmarks/profile_build.py W/generator-1000000-640
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import time
from pathlib import Path

from _common import print_machine, run_script
from bench_recall import faiss_baseline, warm

from cerberus.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gallery", type=Path, help="a local gallery folder (its index is rebuilt)")
    parser.add_argument("--lines", type=int, default=30, help="profile lines printed")
    args = parser.parse_args()
    print_machine()
    warm(args.gallery)
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


if __name__ == "__main__":
    run_script(main)
