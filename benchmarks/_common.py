"""Helpers shared by the benchmark scripts: machine description, torchreid import, tables.

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

TORCHREID_INSTALL = (
    "pip install --no-deps torchreid==0.2.5 && pip install opencv-python-headless gdown tensorboard"
)
TORCHREID_HINT = f"torchreid not installed: {TORCHREID_INSTALL} (running ours alone)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines() -> list[str]:
    """One line each: CPU, cores, library versions, GPU (if any)."""
    import numpy as np

    lines = [f"CPU: {cpu_model()}"]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines.append(f"cores: {os.cpu_count()} logical, {usable} usable by this process")
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch

        versions.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    try:
        import faiss

        versions.append(f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)")
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        versions.append(f"torchreid {version('torchreid')}")
    except Exception:  # not installed
        pass
    lines.append(", ".join(versions))
    return lines


def print_machine() -> None:
    for line in machine_lines():
        print(f"# {line}")
    sys.stdout.flush()


def import_torchreid() -> Any | None:
    """The torchreid module, or ``None`` (and a hint printed) when it cannot be imported.

    torchreid 0.2.5 on PyPI (the ``torchreid-pip`` repackaging) keeps the library under
    ``torchreid.reid`` and re-exports ``models``, ``losses`` and ``metrics`` as attributes of
    ``torchreid``; its import needs cv2, gdown and tensorboard.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Cython evaluation ... unavailable"
            import torchreid
    except ImportError as exc:
        print(f"{TORCHREID_HINT}\n  (import failed: {exc})")
        return None
    return torchreid


def torchreid_evaluate_rank() -> tuple[Callable | None, str]:
    """torchreid's ``evaluate_rank`` and which implementation it will run.

    Returns ``(evaluate_rank, "cython" | "python")``, or ``(None, reason)``.
    """
    if import_torchreid() is None:
        return None, "not installed"
    for name in ("torchreid.reid.metrics.rank", "torchreid.metrics.rank"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = __import__(name, fromlist=["evaluate_rank"])
        except ImportError:
            continue
        kind = "cython" if getattr(module, "IS_CYTHON_AVAI", False) else "python"
        return module.evaluate_rank, kind
    return None, "no evaluate_rank module"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = "| " + " | ".join(f"{{:{w}s}}" for w in widths) + " |"
    out = [fmt.format(*cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt.format(*r) for r in cells[1:]]
    return "\n".join(out)


def timed(fn: Callable[[], Any], *, warmup: int, iters: int, sync: Callable = lambda: None):
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls; returns the list of seconds."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def max_rss_mib() -> float:
    """Resident high-water mark of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_script(main: Callable[[], Any]) -> None:
    """Run a script's ``main``: a :class:`cerberus.errors.CerberusError` (a missing file, a bad
    option) is one ``error:`` line on stderr and exit code 2, as in the ``cerberus`` command."""
    from cerberus.errors import CerberusError

    try:
        code = main()
    except CerberusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
