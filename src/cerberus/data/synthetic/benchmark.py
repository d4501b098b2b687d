"""The built-in synthetic benchmark: procedurally rendered pedestrians in the Market-1501 layout.

Every identity gets a row of Market-1501 attribute values (skewed like the real data) and
details no attribute names (skin tone, logo, stripe, shoe shade, colour tint, proportions), so
persons sharing every attribute are still distinguishable. Cameras differ in background clutter,
lighting, scale and vertical placement (some boxes show the person shifted, with empty margin:
what the alignment module corrects). The output is exactly the Market-1501 folder layout plus a
Lin-style ``market_attribute.mat``, so :func:`cerberus.data.datasets.read_dataset` loads it.

Everything is a pure function of ``(seed, identity, image)``: the same seed gives byte-identical
files whatever the number of worker processes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
from cerberus.attributes.schema import GROUPS
from cerberus.attributes.table import AttributeTable
from cerberus.data.synthetic.attributes import COL, SCHEMA, identity_rows, sample_attributes
from cerberus.data.synthetic.render import make_cameras, render_junk, render_person, sample_details
from cerberus.errors import CerberusError

logger = logging.getLogger(__name__)


@dataclass
class SyntheticSummary:
    """What :func:`generate_synthetic` wrote."""

    root: Path
    train_ids: int
    test_ids: int
    images: dict[str, int] = field(default_factory=dict)
    unseen_test_sids: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.images.items())
        return (
            f"{self.train_ids} train / {self.test_ids} test identities; images: {parts}; "
            f"{self.unseen_test_sids} test SIDs unseen in training; {self.seconds:.1f}s"
        )


_KIND_CODE = {"person": 0, "distractor": 1, "junk": 2}


@dataclass(frozen=True)
class _Job:
    pid: int
    values: tuple[int, ...]
    split: str  # "train" or "test"
    kind: str = "person"  # "person", "distractor", "junk"


def _plan(job: _Job, seed: int, num_cameras: int) -> list[tuple[str, int, int]]:
    """``(folder, camera, frame)`` of every image of one identity."""
    rng = np.random.default_rng([seed, job.pid, 1, _KIND_CODE[job.kind]])
    if job.kind != "person":
        return [("bounding_box_test", int(rng.integers(num_cameras)), 0)]
    n_cams = int(rng.integers(2, min(4, num_cameras) + 1))
    cams = sorted(rng.choice(num_cameras, size=n_cams, replace=False).tolist())
    out = []
    for i, c in enumerate(cams):
        n = int(rng.integers(2, 6))
        for k in range(n):
            frame = 100 * i + k
            if job.split == "train":
                out.append(("bounding_box_train", c, frame))
            elif k == 0 and i < 2:
                out.append(("query", c, frame))
            else:
                out.append(("bounding_box_test", c, frame))
    return out


def _render_job(args: tuple[_Job, int, int, int, int, str]) -> list[str]:
    job, seed, num_cameras, height, width, out_dir = args
    cams = make_cameras(num_cameras, seed)
    root = Path(out_dir)
    values = np.asarray(job.values)
    det_rng = np.random.default_rng([seed, job.pid, 2, _KIND_CODE[job.kind]])
    details = sample_details(det_rng, values)
    written = []
    for n, (folder, cam, frame) in enumerate(_plan(job, seed, num_cameras)):
        rng = np.random.default_rng([seed, job.pid, 3, n, _KIND_CODE[job.kind]])
        if job.kind == "junk":
            img = render_junk(cams[cam], rng, height=height, width=width)
            pid_text = "-1"
        else:
            img = render_person(values, details, cams[cam], rng, height=height, width=width)
            pid_text = "0000" if job.kind == "distractor" else f"{job.pid:04d}"
        box = (job.pid % 90) + 1 if job.kind != "person" else 1
        frame_no = frame * 25 + (job.pid if job.kind != "person" else 0) * 1000
        name = f"{pid_text}_c{cam + 1}s1_{frame_no:06d}_{box:02d}.jpg"
        path = root / folder / name
        img.save(path, quality=92)
        written.append(folder)
    return written


MARKER = ".cerberus-synthetic"
"""Written into every generated benchmark: ``overwrite`` only ever replaces folders holding it."""

MAX_TRAIN_IDS, MAX_TEST_IDS = 4999, 5000
"""Train identities are numbered 2, 4, ..., test identities 1, 3, ...: 4 digits in Market names."""


def _check_arguments(
    *,
    num_train_ids: int,
    num_test_ids: int,
    num_cameras: int,
    num_distractors: int,
    num_junk: int,
    height: int,
    width: int,
    seed: int,
    data_format: str,
) -> None:
    """Refuse, before anything is written, every argument the benchmark cannot be made with."""
    if num_train_ids < 2 or num_test_ids < 2:
        raise CerberusError(
            f"synthetic: need at least 2 train and 2 test identities, got "
            f"{num_train_ids} / {num_test_ids}"
        )
    if num_train_ids > MAX_TRAIN_IDS or num_test_ids > MAX_TEST_IDS:
        raise CerberusError(
            f"synthetic: at most {MAX_TRAIN_IDS} train and {MAX_TEST_IDS} test identities "
            f"(4-digit Market identities), got {num_train_ids} / {num_test_ids}"
        )
    if num_train_ids + num_test_ids > 9000:
        raise CerberusError("synthetic: at most 9000 identities (4-digit Market identities)")
    if not 2 <= num_cameras <= 6:
        raise CerberusError(f"synthetic: num_cameras must be 2..6 (Market), got {num_cameras}")
    if not (0 <= num_distractors <= 999 and 0 <= num_junk <= 999):
        raise CerberusError(
            f"synthetic: distractors and junk images must be 0..999 each (Market frame "
            f"numbers), got {num_distractors} / {num_junk}"
        )
    if height < 32 or width < 16:
        raise CerberusError(f"synthetic: image size {height}x{width} is too small (min 32x16)")
    if seed < 0:
        raise CerberusError(f"synthetic: seed {seed}: must be at least 0")
    if data_format not in ("market", "table"):
        raise CerberusError(f"synthetic: format {data_format!r}: must be market or table")


def _check_output(out: Path, overwrite: bool, what: str = "synthetic benchmark") -> None:
    """Refuse an output folder that is neither absent, empty nor (with ``overwrite``) ours
    (``what``: the kind of output, for the messages)."""
    if out.exists() and not out.is_dir():
        raise CerberusError(f"{out}: exists and is not a folder")
    try:
        if not out.exists() or not any(out.iterdir()):
            return
    except OSError as exc:
        raise CerberusError(f"{out}: cannot read the folder ({exc.strerror or exc})") from None
    if not (out / MARKER).is_file():
        raise CerberusError(
            f"{out}: output folder exists and is not empty and holds no {what} "
            f"written by cerberus (no {MARKER} file); refusing to delete it, choose a new folder"
        )
    if not overwrite:
        raise CerberusError(
            f"{out}: output folder exists and is not empty (a {what}; "
            "add --overwrite to replace it)"
        )


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM handled like Ctrl-C inside the block: the main process gets a KeyboardInterrupt
    (so its clean-up runs: the hidden folder removed, pool workers terminated); a forked child
    that inherited the handler dies of the signal as before. Outside the main thread: no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked worker: the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove_stale_partials(full: Path) -> None:
    """Remove the hidden ``.NAME.PID.*.partial`` folders beside ``full`` whose writing process
    ``PID`` is gone (killed before it could clean up); a live writer's folder is left alone."""
    pattern = re.compile(re.escape(f".{full.name}.") + r"(\d+)\.[^/]*\.partial$")
    try:
        entries = list(full.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if m and entry.is_dir() and not _alive(int(m.group(1))):
            logger.info("removed %s, left by a run that was killed (pid %s)", entry, m.group(1))
            shutil.rmtree(entry, ignore_errors=True)


def _start_folder(out: Path) -> tuple[Path, Path | None]:
    """A new hidden folder beside ``out`` to write into (``.NAME.PID.XXXX.partial``, the
    writer's pid in its name), and the first parent folder made for it. Hidden folders of
    earlier writers that died are removed first.

    Returns ``(folder, made)``; ``made`` (or None) is removed again when generation fails.
    """
    full = Path(os.path.abspath(out))  # "." has no name and no parent of its own
    made = next((p for p in reversed([full, *full.parents]) if not p.exists()), None)
    if made is None or made == full:
        _remove_stale_partials(full)
    try:
        full.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{full.name}.{os.getpid()}."
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=full.parent))
    except OSError as exc:
        raise CerberusError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return tmp, (made if made != full else None)


def _publish(tmp: Path, out: Path, overwrite: bool, what: str = "synthetic benchmark") -> None:
    """Put the finished ``tmp`` at ``out``: one rename, or, into an existing (empty or, with
    ``overwrite``, old benchmark) folder, its entries moved in, the marker last, after the old
    entries moved out; the old ones are deleted only then (the folder itself stays: it may be
    the working directory)."""
    _check_output(out, overwrite, what)  # again: something may have appeared meanwhile
    moved: list[tuple[Path, Path]] = []
    old = None
    try:
        if not out.exists():
            tmp.rename(out)
            return
        old = Path(tempfile.mkdtemp(prefix=f"{tmp.name}.", suffix=".old", dir=tmp.parent))
        for entry in sorted(out.iterdir()):
            entry.rename(old / entry.name)
            moved.append((old / entry.name, entry))
        for entry in sorted(tmp.iterdir(), key=lambda e: (e.name == MARKER, e.name)):
            entry.rename(out / entry.name)
        tmp.rmdir()
    except OSError as exc:
        for now, before in moved:  # best effort: the old benchmark back in place
            if not before.exists():
                now.rename(before)
        if old is not None and not any(old.iterdir()):
            old.rmdir()
        reason = exc.strerror or exc
        raise CerberusError(f"{out}: cannot put the {what} there ({reason})") from None
    shutil.rmtree(old, ignore_errors=True)


def _to_table(root: Path, cameras: bool) -> None:
    """Turn the Market layout in ``root`` into a table dataset (docs/data.md)."""
    from cerberus.data.datasets import read_dataset
    from cerberus.data.table import write_table_dataset

    write_table_dataset(read_dataset(root, "market1501"), root, cameras=cameras)
    (root / "market_attribute.mat").unlink()


def generate_synthetic(
    out_dir: str | Path,
    *,
    num_train_ids: int = 200,
    num_test_ids: int = 200,
    num_cameras: int = 6,
    num_distractors: int = 60,
    num_junk: int = 30,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    num_workers: int = 2,
    overwrite: bool = False,
    data_format: str = "market",
    camera_column: bool = True,
) -> SyntheticSummary:
    """Write the synthetic benchmark (Market-1501 layout + ``market_attribute.mat``).

    Train identities are numbered 2, 4, 6, ..., test identities 1, 3, 5, ...; every test
    identity has queries in up to two of its cameras and gallery images in all of them.
    ``data_format="table"`` writes the same crops as a table dataset instead (images.csv,
    attributes.csv, schema.yaml; ``camera_column=False`` leaves the cameras out).

    Bad arguments are refused before anything is written. The files are written into a hidden
    folder beside ``out_dir`` and renamed to it when complete, so a failed or interrupted run
    leaves no output (and, with ``overwrite``, the previous benchmark in place).
    """
    out = Path(out_dir)
    _check_arguments(
        num_train_ids=num_train_ids,
        num_test_ids=num_test_ids,
        num_cameras=num_cameras,
        num_distractors=num_distractors,
        num_junk=num_junk,
        height=height,
        width=width,
        seed=seed,
        data_format=data_format,
    )
    _check_output(out, overwrite)
    train_rows, test_rows = identity_rows(num_train_ids, num_test_ids, seed)
    t0 = time.perf_counter()
    tmp, made = _start_folder(out)
    try:
        summary = _write_benchmark(
            tmp,
            train_rows,
            test_rows,
            num_cameras=num_cameras,
            num_distractors=num_distractors,
            num_junk=num_junk,
            size=(height, width),
            seed=seed,
            num_workers=num_workers,
        )
        if data_format == "table":
            _to_table(tmp, camera_column)
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)  # only empty folders made for the output
        raise
    summary.root = out
    summary.seconds = time.perf_counter() - t0
    return summary


def _write_benchmark(
    out: Path,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    num_cameras: int,
    num_distractors: int,
    num_junk: int,
    size: tuple[int, int],
    seed: int,
    num_workers: int,
) -> SyntheticSummary:
    """Render every image and write ``market_attribute.mat`` into the (new, empty) ``out``.

    ``train_rows`` / ``test_rows``: (n, A) attribute values; ``size``: (height, width).
    """
    height, width = size
    try:
        for folder in ("bounding_box_train", "bounding_box_test", "query"):
            (out / folder).mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("synthetic benchmark written by cerberus synth\n")
    except OSError as exc:
        raise CerberusError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    num_train_ids, num_test_ids = len(train_rows), len(test_rows)
    train_ids = np.arange(num_train_ids) * 2 + 2
    test_ids = np.arange(num_test_ids) * 2 + 1
    jobs = [_Job(int(p), tuple(int(x) for x in r), "train") for p, r in zip(train_ids, train_rows)]
    jobs += [_Job(int(p), tuple(int(x) for x in r), "test") for p, r in zip(test_ids, test_rows)]
    extra_rng = np.random.default_rng([seed, 31_337])
    extra = sample_attributes(num_distractors, extra_rng, allow_reserved=True)
    jobs += [_Job(i, tuple(int(x) for x in r), "test", "distractor") for i, r in enumerate(extra)]
    jobs += [_Job(i, tuple([0] * SCHEMA.num_attributes), "test", "junk") for i in range(num_junk)]
    args = [(j, seed, num_cameras, height, width, str(out)) for j in jobs]
    if num_workers > 1:
        pool = ProcessPoolExecutor(num_workers)
        try:
            results = list(pool.map(_render_job, args, chunksize=8))
        except BaseException:  # Ctrl-C, SIGTERM, a failed job: no worker outlives the run
            manager = pool._executor_manager_thread
            for process in list((pool._processes or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            if manager is not None:  # it closes its wake-up pipe as it ends: let it end now,
                manager.join(timeout=30)  # not race the exit's wake-up write (EBADF, 3.11)
            raise
        pool.shutdown()
    else:
        results = [_render_job(a) for a in args]
    counts: dict[str, int] = {}
    for folders in results:
        for f in folders:
            counts[f] = counts.get(f, 0) + 1
    tables = {
        "train": AttributeTable(SCHEMA, train_ids, train_rows),
        "test": AttributeTable(SCHEMA, test_ids, test_rows),
    }
    save_attribute_mat(out / "market_attribute.mat", tables)
    unseen = sum(
        len(set(tables["test"].sids[:, k]) - set(tables["train"].sids[:, k]))
        for k in range(len(GROUPS))
    )
    return SyntheticSummary(
        root=out,
        train_ids=num_train_ids,
        test_ids=num_test_ids,
        images={k: counts.get(k, 0) for k in ("bounding_box_train", "query", "bounding_box_test")},
        unseen_test_sids=unseen,
    )


def describe_values(values: np.ndarray) -> str:
    """A short caption: "female adult, red short-sleeve top, blue long pants, backpack"."""
    v = SCHEMA.describe(values)
    # Colour "none" (no colour field set) is drawn as a two-colour pattern (see UPPER_RGB).
    upper, lower_colour = (
        "patterned" if v[k] == SCHEMA.attributes[COL[k]].none else v[k]
        for k in ("upper.color", "lower.color")
    )
    carry = [k for k in ("backpack", "bag", "handbag") if v[k] == "yes"]
    lower = "dress" if v["lower.clothes"] == "dress" else "pants"
    text = (
        f"{v['gender']} {v['age']}{', hat' if v['hat'] == 'yes' else ''}, {v['hair']} hair; "
        f"{upper} {v['upper.sleeve']}-sleeve top; {lower_colour} {v['lower.length']} {lower}"
    )
    return text + (f"; {', '.join(carry)}" if carry else "")


def _train_attributes(root: Path) -> AttributeTable:
    """The training identities' attributes of a generated benchmark, in either format."""
    from cerberus.data.table import is_table_dataset, read_table_dataset

    if is_table_dataset(root):
        return read_table_dataset(root).train_attributes
    return load_attribute_mat(root / "market_attribute.mat")["train"]


def make_contact_sheet(
    root: str | Path, out_png: str | Path, *, num_ids: int = 10, per_id: int = 8
) -> Path:
    """A PNG grid: one row per training identity (its images across cameras) and a caption."""
    from cerberus.files import atomic_write

    root = Path(root)
    table = _train_attributes(root)
    files = sorted((root / "bounding_box_train").glob("*.jpg"))
    if not files:
        raise CerberusError(f"{root}: no training images for a contact sheet")
    first = Image.open(files[0])
    w, h = first.size
    cap = 14
    sheet = Image.new("RGB", (max(per_id * (w + 2), 420), num_ids * (h + cap + 4)), "white")
    d = ImageDraw.Draw(sheet)
    for row, (pid, values) in enumerate(zip(table.ids[:num_ids], table.values[:num_ids])):
        y = row * (h + cap + 4)
        d.text((2, y), f"{int(pid):04d}: {describe_values(values)}", fill=(0, 0, 0))
        mine = [f for f in files if f.name.startswith(f"{int(pid):04d}_")][:per_id]
        for col, f in enumerate(mine):
            sheet.paste(Image.open(f).convert("RGB"), (col * (w + 2), y + cap))
    return atomic_write(out_png, lambda fh: sheet.save(fh, format="PNG"), "contact sheet")


def make_value_sheet(
    root: str | Path,
    out_png: str | Path,
    *,
    per_value: int = 8,
    crop: tuple[int, int] | None = (96, 48),
) -> Path:
    """A PNG grid with one row per attribute value (``age=old``, ``upper.color=red``, ...).

    Each row shows one training image of each of up to ``per_value`` identities having that
    value, resized to ``crop`` (height, width; the CPU config's input size) so it shows what the
    model sees; ``None`` keeps the stored size. Written atomically.
    """
    from cerberus.files import atomic_write

    root = Path(root)
    table = _train_attributes(root)
    first: dict[int, Path] = {}
    for f in sorted((root / "bounding_box_train").glob("*.jpg")):
        first.setdefault(int(f.name[:4]), f)
    if not first:
        raise CerberusError(f"{root}: no training images for a value sheet")
    h, w = crop or Image.open(next(iter(first.values()))).size[::-1]
    label_w, gap = 150, 2
    rows = [(a, k) for a in SCHEMA.attributes for k in range(len(a.values))]
    sheet = Image.new("RGB", (label_w + per_value * (w + gap), len(rows) * (h + gap)), "white")
    d = ImageDraw.Draw(sheet)
    for r, (attr, k) in enumerate(rows):
        y = r * (h + gap)
        ids = table.ids[table.values[:, COL[attr.name]] == k]
        d.text((4, y + h // 2 - 6), f"{attr.name}={attr.values[k]} ({len(ids)})", fill=(0, 0, 0))
        files = [first[int(p)] for p in ids if int(p) in first][:per_value]
        for c, f in enumerate(files):
            img = Image.open(f).convert("RGB")
            if crop is not None:
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            sheet.paste(img, (label_w + c * (w + gap), y))
    return atomic_write(out_png, lambda fh: sheet.save(fh, format="PNG"), "value sheet")
