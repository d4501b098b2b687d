"""Picking a description query's best candidates out of a million column sums: NumPy's
``argpartition`` over all of them against ``top_indices`` (a threshold read off a sample of
the sums first, :mod:`cerberus.store.topk`), the same positions; ms per call.

    python benchmarks/bench_top_indices.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import markdown_table, print_machine, run_script

from cerberus.store.topk import top_indices


def per_call_ms(run, repeat: int) -> float:
    run()
    t0 = time.perf_counter()
    for _ in range(repeat):
        run()
    return (time.perf_counter() - t0) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="scores (crops)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print_machine()
    rng = np.random.default_rng(0)
    s = rng.standard_normal(args.n).astype(np.float32)
    s[rng.random(args.n) < 0.01] = np.nan  # ids with no item
    out = []
    for take in (101, 1001, 2001):
        slow = per_call_ms(lambda take=take: np.argpartition(-s, take - 1)[:take], args.repeat)
        fast = per_call_ms(lambda take=take: top_indices(s, take), args.repeat)
        same = set(np.argpartition(-s, take - 1)[:take].tolist()) == set(
            top_indices(s, take).tolist()
        )
        out.append([f"{args.n:,}", take, f"{slow:.2f}", f"{fast:.2f}", same])
    print(markdown_table(["scores", "take", "argpartition ms", "top_indices ms", "same"], out))


if __name__ == "__main__":
    run_script(main)
