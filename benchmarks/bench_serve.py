"""Load check of ``cerberus serve``: mixed good and bad requests from a local client.

Starts ``cerberus serve`` as its own process on 127.0.0.1 (a free port), sends ``--requests``
requests (default 1000) from ``--concurrency`` client threads over one keep-alive pool, about
60 % good (health, schema, description search, photo search, search by a gallery crop, describe,
thumbnails) and 40 % bad (not an image, truncated, over the byte and pixel limits, unknown
attribute or value, empty description, k out of range, unknown gallery id, path traversal),
shuffled with a fixed seed. Every request must be answered with the status its kind expects;
the server must still answer /api/health afterwards and its process must still run.

Prints the machine, per-kind and overall latency (median, p99) and the verdict. Not a test:
timings depend on the machine (2 cores: the model runs on CPU, one forward pass at a time).

    make demo   # runs/demo: a trained CPU model and its gallery index
    python benchmarks/bench_serve.py --index runs/demo/gallery_index.npz
    python benchmarks/bench_serve.py --quick         # 100 requests
    python benchmarks/bench_serve.py --memory        # 40 uploads at once of 4096 x 4096 PNGs

``--memory``: the server's resident memory (``VmRSS``) before, at its peak during and 2 s after
``--uploads`` (default 40) concurrent descriptions of small PNG files that declare 4096 x 4096
pixels (a uniform colour: about 50 kB each, 16.8 M pixels decoded); decodes are bounded by the
server's pixel budget (twice ``--max-pixels``), so the peak must stay under the baseline
+ 500 MB.
"""

from __future__ import annotations

import argparse
import io
import random
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from _common import markdown_table, print_machine, run_script
from PIL import Image

from cerberus.store.npz import NpzIndex
from cerberus.web.app import MAX_K, Limits, schema_json


@dataclass(frozen=True)
class Kind:
    """One kind of request: how to send it and the status it must get."""

    name: str
    good: bool
    expected: int
    weight: int
    send: Callable[[httpx.Client], httpx.Response]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_bytes(size: tuple[int, int], *, noisy: bool, fmt: str = "PNG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = (
        rng.integers(0, 255, (h, w, 3), np.uint8) if noisy else np.full((h, w, 3), 90, np.uint8)
    )
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def request_kinds(gallery: NpzIndex, rng: random.Random) -> list[Kind]:
    """The good and bad requests, with their expected statuses and mix weights."""
    n = len(gallery)
    crops = [Path(gallery.paths[i]).read_bytes() for i in rng.sample(range(n), min(20, n))]
    groups = schema_json(gallery.schema)["groups"]
    attributes = [a for g in groups for a in g["attributes"]]
    limits = Limits()
    jpeg = image_bytes((64, 128), noisy=True, fmt="JPEG")
    truncated = jpeg[: len(jpeg) // 2]
    too_many_pixels = image_bytes((5000, 4000), noisy=False)  # 20 M pixels, a small file
    too_many_bytes = image_bytes((1800, 1800), noisy=True)  # about 9.7 MB of noise

    def description() -> dict[str, str]:
        chosen = rng.sample(attributes, rng.randint(1, 3))
        return {a["name"]: rng.choice(a["values"]) for a in chosen}

    def upload(path: str, data: bytes, **form) -> Callable[[httpx.Client], httpx.Response]:
        return lambda c: c.post(path, files={"image": ("q.png", data)}, data=form)

    def photo(c: httpx.Client) -> httpx.Response:
        return c.post("/api/search/image", files={"image": ("q.jpg", rng.choice(crops))})

    def describe(c: httpx.Client) -> httpx.Response:
        return c.post("/api/describe", files={"image": ("q.jpg", rng.choice(crops))})

    def aps(body: dict | None = None) -> Callable[[httpx.Client], httpx.Response]:
        return lambda c: c.post(
            "/api/search/attributes", json=body or {"attributes": description(), "k": 10}
        )

    assert len(too_many_bytes) > limits.max_bytes and len(too_many_pixels) < limits.max_bytes
    return [
        Kind("health", True, 200, 6, lambda c: c.get("/api/health")),
        Kind("schema", True, 200, 4, lambda c: c.get("/api/schema")),
        Kind("search by description", True, 200, 16, aps()),
        Kind("search by photo", True, 200, 10, photo),
        Kind(
            "search by gallery crop",
            True,
            200,
            8,
            lambda c: c.post("/api/search/image", data={"gallery_id": rng.randrange(n)}),
        ),
        Kind("describe", True, 200, 6, describe),
        Kind("thumbnail", True, 200, 10, lambda c: c.get(f"/api/gallery/{rng.randrange(n)}/image")),
        Kind("bad: not an image", False, 400, 5, upload("/api/search/image", b"plain text")),
        Kind("bad: truncated image", False, 400, 5, upload("/api/describe", truncated)),
        Kind(
            "bad: over the byte limit", False, 413, 2, upload("/api/search/image", too_many_bytes)
        ),
        Kind("bad: over the pixel limit", False, 413, 3, upload("/api/describe", too_many_pixels)),
        Kind("bad: unknown attribute", False, 400, 4, aps({"attributes": {"colour": "red"}})),
        Kind(
            "bad: unknown value",
            False,
            400,
            4,
            aps({"attributes": {attributes[0]["name"]: "no-such-value"}}),
        ),
        Kind("bad: empty description", False, 400, 4, aps({"attributes": {}})),
        Kind(
            "bad: k out of range",
            False,
            422,
            5,
            aps({"attributes": description(), "k": rng.choice([0, MAX_K + 1])}),
        ),
        Kind("bad: unknown gallery id", False, 404, 4, lambda c: c.get(f"/api/gallery/{n}/image")),
        Kind(
            "bad: path traversal",
            False,
            404,
            4,
            lambda c: c.get("/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
        ),
    ]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "cerberus.cli", "serve", "--index", str(args.index)]
    command += ["--port", str(port), "--device", args.device]
    if args.checkpoint:
        command += ["--checkpoint", str(args.checkpoint)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server stopped: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    sys.exit("the server did not answer /api/health in 180 s")


def resident_mb(pid: int) -> float:
    """A process's resident memory (``VmRSS``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_check(args: argparse.Namespace) -> None:
    """``--memory``: resident memory of the server under concurrent large-pixel uploads."""
    import threading

    print_machine()
    port = free_port()
    server = start_server(args, port)
    png = image_bytes((4096, 4096), noisy=False)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=600) as client:  # warm up: the model's first call
        small = image_bytes((64, 128), noisy=True)
        client.post("/api/describe", files={"image": ("w.png", small)}).raise_for_status()
        client.post("/api/describe", files={"image": ("w.png", png)}).raise_for_status()
    time.sleep(2)
    baseline = resident_mb(server.pid)
    peak = {"mb": baseline}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak["mb"] = max(peak["mb"], resident_mb(server.pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def one(_: int) -> int | str:
        try:
            with httpx.Client(base_url=url, timeout=600) as c:
                return c.post("/api/describe", files={"image": ("b.png", png)}).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.uploads) as pool:
        statuses = list(pool.map(one, range(args.uploads)))
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    time.sleep(2)
    after = resident_mb(server.pid)
    server.terminate()
    server.wait(30)
    print(f"# {args.uploads} concurrent POST /api/describe of a {len(png)} byte PNG declaring "
          f"4096 x 4096 pixels; {seconds:.1f} s; statuses {sorted(set(map(str, statuses)))}")
    print()
    print(markdown_table(
        ["resident MB", "baseline", "peak", "2 s after", "peak - baseline"],
        [["server", f"{baseline:.0f}", f"{peak['mb']:.0f}", f"{after:.0f}",
          f"{peak['mb'] - baseline:.0f}"]],
    ))  # fmt: skip
    if any(st != 200 for st in statuses) or peak["mb"] - baseline > 500:
        sys.exit(1)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/demo/gallery_index.npz"))
    parser.add_argument("--checkpoint", type=Path, help="default: the index's checkpoint")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 requests")
    parser.add_argument(
        "--memory", action="store_true", help="resident memory under concurrent large uploads"
    )
    parser.add_argument("--uploads", type=int, default=40, help="--memory: uploads at once")
    args = parser.parse_args()
    if args.memory:
        memory_check(args)
        return
    total = 100 if args.quick else args.requests

    print_machine()
    rng = random.Random(args.seed)
    kinds = request_kinds(NpzIndex.load(args.index), rng)
    plan = rng.choices(kinds, weights=[k.weight for k in kinds], k=total)
    port = free_port()
    server = start_server(args, port)
    print(f"# server: cerberus serve --index {args.index} on 127.0.0.1:{port}, pid {server.pid}")
    print(f"# {total} requests, {args.concurrency} client threads, seed {args.seed}")

    def send(kind: Kind) -> tuple[Kind, int | str, float]:
        t0 = time.perf_counter()
        try:
            status: int | str = kind.send(client).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        return kind, status, time.perf_counter() - t0

    t0 = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        with ThreadPoolExecutor(args.concurrency) as pool:
            done = list(pool.map(send, plan))
        seconds = time.perf_counter() - t0
        alive = server.poll() is None
        health = client.get("/api/health").status_code if alive else "no answer"
    server.terminate()
    server.wait(30)

    by_kind: dict[str, list[tuple[int | str, float]]] = defaultdict(list)
    for kind, status, s in done:
        by_kind[kind.name].append((status, s))
    rows = []
    for kind in kinds:
        got = by_kind.get(kind.name, [])
        ms = [s * 1e3 for _, s in got]
        statuses = sorted({str(st) for st, _ in got})
        ok = sum(st == kind.expected for st, _ in got)
        rows.append(
            [kind.name, len(got), kind.expected, ", ".join(statuses), f"{ok}/{len(got)}",
             f"{percentile(ms, 50):.1f}", f"{percentile(ms, 99):.1f}"]
        )  # fmt: skip
    ms = [s * 1e3 for _, _, s in done]
    answered = sum(isinstance(st, int) for _, st, _ in done)
    expected = sum(st == k.expected for k, st, _ in done)
    good = [s * 1e3 for k, _, s in done if k.good]
    bad = [s * 1e3 for k, _, s in done if not k.good]
    for name, values, count in (
        ("all", ms, len(done)),
        ("good", good, len(good)),
        ("bad", bad, len(bad)),
    ):
        rows.append([f"**{name}**", count, "", "", "", f"{percentile(values, 50):.1f}",
                     f"{percentile(values, 99):.1f}"])  # fmt: skip
    print()
    print(
        markdown_table(
            ["request", "count", "expected", "got", "as expected", "median ms", "p99 ms"], rows
        )
    )
    print()
    print(
        f"answered {answered}/{len(done)}, {expected} with the expected status; "
        f"{len(done) / seconds:.1f} requests/s over {seconds:.1f} s; server process "
        f"{'still running' if alive else 'GONE'}, /api/health afterwards: {health}"
    )
    if answered != len(done) or expected != len(done) or not alive or health != 200:
        sys.exit(1)


if __name__ == "__main__":
    run_script(main)
