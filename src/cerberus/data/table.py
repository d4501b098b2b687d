"""A dataset as a table: a folder of crops, an image table and an attribute table.

Layout of a table dataset (``data.dataset: table``, ``data.root: DIR``)::

    DIR/images.csv        path, person_id, camera_id (optional), split
    DIR/attributes.csv    person_id, then one column per attribute of the schema
    DIR/schema.yaml       the attribute schema (or ``data.schema``: a shipped name or a path)
    DIR/...               the crops, at the paths images.csv gives (relative to DIR)

``images.parquet`` / ``attributes.parquet`` may replace the CSV files (needs pyarrow).

- ``path``: the crop, relative to DIR (or absolute); listed at most once per split (paths are
  compared as files: ``a/../a/x.png`` is ``a/x.png``).
- ``person_id``: an integer >= 1; in the gallery also ``0`` (a distractor, never a match) and
  ``-1`` (junk, removed from every ranking), as in Market-1501.
- ``camera_id``: any label (``c1``, ``3``), kept for display (:attr:`ImageSet.camera_labels`);
  camera numbers follow the labels' numeric order when all are integers, else natural order;
  leave the column out when cameras are unknown: reID evaluation then removes only the query
  image itself from the gallery (method §6.1 without cameras).
- ``split``: ``train``, ``query`` or ``gallery`` (any case). An identity is either a training
  identity (train images only) or a test identity (query / gallery images only).
- attribute cells: a value by name (case-insensitive), empty = unknown; a colour attribute may
  list further annotated colours after ``|`` (``red|white``), kept as alternatives.

:func:`check_table_dataset` collects every problem with its file and line (1-based, the header is
line 1); :func:`read_table_dataset` stops at the first; :func:`table_summary` describes a dataset
(what ``cerberus check-data`` prints); :func:`dataset_kind` tells a table dataset from a benchmark
tree. How the CSV files are read (separator, quotes, header case, extra columns, ``2.0`` ids):
:mod:`cerberus.data.table_reader`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.attributes.schema_files import get_schema
from cerberus.attributes.sids import occurring_sid_counts
from cerberus.attributes.table import AttributeTable
from cerberus.data.datasets import (
    FORMATS,
    ImageSet,
    ReIDDataset,
    camera_label,
    find_unreadable,
    read_dataset,
)
from cerberus.data.table_reader import (
    ALTERNATIVE_SEPARATOR,
    ATTRIBUTES,
    MAX_PROBLEMS,  # noqa: F401  (re-exported)
    SCHEMA_FILE,
    Collector,
    Problem,
    csv_bytes,
    integer,
    integral_label,
    match_header,
    read_rows,
    table_file,
    well_formed,
    write_attribute_table,
)
from cerberus.errors import CerberusError
from cerberus.files import atomic_write, same_file_key

IMAGES = "images"
IMAGE_COLUMNS = ("path", "person_id", "camera_id", "split")
SPLITS = ("train", "query", "gallery")
UNKNOWN_CAMERA = -1
"""``camids`` of every image of a dataset without cameras."""
logger = logging.getLogger(__name__)


@dataclass
class TableCheck:
    """What :func:`check_table_dataset` found: the problems, and the dataset when there are none.

    Attributes:
        problems: every problem found, in file and line order (at most :data:`MAX_PROBLEMS`
            per file).
        dataset: the dataset, ``None`` when there is a problem.
        camera_labels: the camera labels in camera-index order (empty: no cameras).
        extra_attribute_ids: identities with attributes but no image.
        warnings: what is accepted but worth saying (columns ignored), with file and line.
    """

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    dataset: ReIDDataset | None = None
    camera_labels: tuple[str, ...] = ()
    extra_attribute_ids: int = 0


def is_table_dataset(root: str | Path) -> bool:
    """Whether ``root`` holds an image table (``images.csv`` or ``images.parquet``)."""
    return table_file(Path(root), IMAGES).is_file()


@dataclass
class _ImageRows:
    lines: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)


def _read_images(
    root: Path, problems: list[Problem], warnings: list[Problem]
) -> tuple[_ImageRows, bool]:
    """Rows of the image table, each checked; returns the rows and whether it has cameras."""
    path = table_file(root, IMAGES)
    bad = Collector(path, problems)
    header, body = read_rows(path)
    out = _ImageRows()
    col = match_header(header, ("path", "person_id", "split"), ("camera_id",), bad, warnings)
    if col is None:
        return out, False
    has_cameras = "camera_id" in col
    first_of: dict[tuple[str, str], int] = {}
    for line, cells in well_formed(header, body, bad):
        text_path, text_pid = cells[col["path"]], cells[col["person_id"]]
        split = cells[col["split"]].lower()
        camera = integral_label(cells[col["camera_id"]]) if has_cameras else ""
        ok = True
        if split not in SPLITS:
            bad.add(line, f"split {cells[col['split']]!r} is not one of {', '.join(SPLITS)}")
            ok = False
        pid = integer(text_pid)
        least = -1 if split == "gallery" else 1
        if pid is None or pid < least:
            allowed = "an integer >= 1" + (" (0: distractor, -1: junk)" if least < 1 else "")
            bad.add(line, f"person_id {text_pid!r} is not {allowed}")
            ok = False
        if has_cameras and not camera:
            bad.add(line, "camera_id is empty (leave the column out when cameras are unknown)")
            ok = False
        if not text_path:
            bad.add(line, "path is empty")
            continue
        image = Path(os.path.normpath(root / text_path))
        key = (split, same_file_key(image))
        if key in first_of:
            bad.add(
                line, f"duplicate row: {text_path} is already in {split} at line {first_of[key]}"
            )
            continue
        first_of[key] = line
        if not image.is_file():
            hint = " (write paths with /, not \\)" if "\\" in text_path else ""
            bad.add(line, f"image {text_path} not found (looked for {image}){hint}")
            ok = False
        if ok:
            out.lines.append(line)
            out.paths.append(image)
            out.pids.append(int(pid))  # type: ignore[arg-type]
            out.cameras.append(camera)
            out.splits.append(split)
    return out, has_cameras


def _decode_all(root: Path, images: _ImageRows, path: Path, problems: list[Problem]) -> None:
    """Decode every image as training will; each one that fails is a problem at its line (and
    its row is dropped)."""
    bad = Collector(path, problems)
    lines = dict(zip(images.paths, images.lines))
    for image, reason in find_unreadable(images.paths):
        shown = os.path.relpath(image, root) if image.is_relative_to(root) else str(image)
        bad.add(lines[image], f"image {shown} is not readable: {reason.split(': ', 1)[-1]}")


def _parse_value(schema: Schema, j: int, text: str) -> tuple[int, list[int]]:
    """A cell's value code (``-1``: unknown) and its alternative colour codes."""
    attr = schema.attributes[j]
    if not text:
        return -1, []
    names = [t.strip() for t in text.split(ALTERNATIVE_SEPARATOR)]
    if len(names) > 1 and not attr.is_onehot:
        raise CerberusError(
            f"{attr.name}: {text!r} gives several values; only a color attribute may ('red|white')"
        )
    codes = [attr.value_index(n) for n in names]
    if len(codes) > 1 and attr.none_code in codes:
        raise CerberusError(f"{attr.name}: {text!r} lists {attr.none!r} with colours")
    return codes[0], codes[1:]


def _read_attributes(
    root: Path, schema: Schema, problems: list[Problem], warnings: list[Problem]
) -> tuple[dict[int, tuple[int, np.ndarray, list[list[int]]]], Path]:
    """``{person_id: (line, values, alternatives per attribute)}`` of the attribute table."""
    path = table_file(root, ATTRIBUTES)
    bad = Collector(path, problems)
    out: dict[int, tuple[int, np.ndarray, list[list[int]]]] = {}
    if not path.is_file():
        bad.add(0, "attribute table not found (person_id plus one column per attribute)")
        return out, path
    header, body = read_rows(path)
    names = tuple(a.name for a in schema.attributes)
    found = match_header(header, ("person_id", *names), (), bad, warnings)
    if found is None:
        known = {n.lower() for n in ("person_id", *names)}
        if any(h.strip().lower() not in known for h in header):
            bad.add(1, f"the {schema.name} schema's attributes: {', '.join(names)}")
        return out, path
    col = [found[n] for n in names]
    for line, cells in well_formed(header, body, bad):
        text_pid = cells[found["person_id"]]
        pid = integer(text_pid)
        if pid is None or pid < 1:
            bad.add(line, f"person_id {text_pid!r} is not an integer >= 1")
            continue
        if pid in out:
            bad.add(
                line, f"duplicate row: person_id {pid} already has attributes at line {out[pid][0]}"
            )
            continue
        values = np.full(schema.num_attributes, -1, dtype=np.int64)
        alternatives: list[list[int]] = [[] for _ in names]
        ok = True
        for j, c in enumerate(col):
            try:
                values[j], alternatives[j] = _parse_value(schema, j, cells[c])
            except CerberusError as exc:
                bad.add(line, f"person_id {pid}: {exc}")
                ok = False
        if ok:
            out[pid] = (line, values, alternatives)
    return out, path


def _attribute_table(
    schema: Schema, ids: list[int], rows: dict[int, tuple[int, np.ndarray, list[list[int]]]]
) -> AttributeTable:
    ids = sorted(ids)
    values = np.stack([rows[i][1] for i in ids]) if ids else np.zeros((0, schema.num_attributes))
    depth = max((len(a) for i in ids for a in rows[i][2]), default=0)
    alt = np.full((len(ids), depth, schema.num_attributes), -1, dtype=np.int64)
    for r, i in enumerate(ids):
        for j, codes in enumerate(rows[i][2]):
            alt[r, : len(codes), j] = codes
    return AttributeTable(
        schema, np.asarray(ids, dtype=np.int64), values.astype(np.int64), alt if depth else None
    )


def _natural_key(label: str) -> tuple:
    """Sort key of a label: digit runs compared as numbers (``cam7`` < ``cam12``), text
    case-insensitively."""
    parts = re.split(r"(\d+)", label)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.casefold()) for p in parts if p)


def _camera_order(labels: set[str]) -> list[str]:
    """Camera labels in index order: numerically when all are integers (``7, 12, 40``), else
    in natural order (``cam7, cam12, gate``)."""
    if all(integer(x) is not None for x in labels):
        return sorted(labels, key=lambda x: (integer(x), x))
    return sorted(labels, key=lambda x: (_natural_key(x), x))


def resolve_schema(root: str | Path, schema: str | Path | Schema | None) -> Schema:
    """The schema of a table dataset: ``schema`` (a shipped name, a YAML path or a schema),
    else ``root/schema.yaml``."""
    if isinstance(schema, Schema):
        return schema
    if schema:
        return get_schema(schema)
    path = Path(root) / SCHEMA_FILE
    if not path.is_file():
        raise CerberusError(
            f"{path}: schema file not found; put the attribute schema there or name one with "
            "data.schema (a shipped name such as market1501, or the path of a .yaml file)"
        )
    return get_schema(path)


def _cross_checks(images: _ImageRows, attr_rows: dict, images_path: Path, bad: Collector):
    """Identities without attributes and identities in both train and test."""
    first_train: dict[int, int] = {}
    for line, pid, split in zip(images.lines, images.pids, images.splits):
        if split == "train":
            first_train.setdefault(pid, line)
    missing: set[int] = set()
    mixed: set[int] = set()
    for line, pid, split in zip(images.lines, images.pids, images.splits):
        if pid > 0 and pid not in attr_rows and pid not in missing:
            missing.add(pid)
            bad.add(line, f"person_id {pid} has images but no row in the attribute table")
        if split != "train" and pid in first_train and pid not in mixed:
            mixed.add(pid)
            bad.add(
                line,
                f"person_id {pid} is in both train (line {first_train[pid]}) and {split}; "
                "an identity is either a training or a test identity",
            )
    for split in SPLITS:
        if split not in images.splits:
            bad.add(0, f"no {split} image (every split needs at least one)")


def check_table_dataset(
    root: str | Path, schema: str | Path | Schema | None = None, *, decode_images: bool = True
) -> TableCheck:
    """Read and check a table dataset; every problem is collected with its file and line.

    Args:
        root: the dataset folder (holding ``images.csv`` and ``attributes.csv``).
        schema: a shipped schema name, a schema YAML path or a :class:`Schema`; ``None``:
            ``root/schema.yaml``.
        decode_images: decode every image (what ``cerberus check-data`` does: an empty,
            truncated or non-image file is a problem at its line); ``False`` checks only that
            the files exist.

    Raises:
        CerberusError: for problems that stop the check at once (no folder, no image table,
            an unreadable schema).
    """
    root = Path(root)
    if not root.is_dir():
        raise CerberusError(f"{root}: dataset folder not found")
    if not is_table_dataset(root):
        raise CerberusError(
            f"{root}: no {IMAGES}.csv (columns {', '.join(IMAGE_COLUMNS)}; camera_id optional)"
        )
    the_schema = resolve_schema(root, schema)
    check = TableCheck()
    images, has_cameras = _read_images(root, check.problems, check.warnings)
    attr_rows, _ = _read_attributes(root, the_schema, check.problems, check.warnings)
    images_path = table_file(root, IMAGES)
    if decode_images:
        _decode_all(root, images, images_path, check.problems)
    if not check.problems:
        _cross_checks(images, attr_rows, images_path, Collector(images_path, check.problems))
    if check.problems:
        return check
    labels = _camera_order(set(images.cameras)) if has_cameras else []
    cam_index = {x: i for i, x in enumerate(labels)}
    pids = np.asarray(images.pids, dtype=np.int64)
    camids = np.asarray(
        [cam_index[c] if has_cameras else UNKNOWN_CAMERA for c in images.cameras], dtype=np.int64
    )
    split = np.asarray(images.splits)
    train_ids = sorted(set(pids[split == "train"].tolist()))
    test_ids = sorted(set(attr_rows) - set(train_ids))
    tables = {
        "train": _attribute_table(the_schema, train_ids, attr_rows),
        "test": _attribute_table(the_schema, test_ids, attr_rows),
    }
    sets = {}
    for name in SPLITS:
        idx = np.nonzero(split == name)[0]
        table = tables["train" if name == "train" else "test"]
        p = pids[idx]
        labels_ = np.searchsorted(np.asarray(train_ids), p) if name == "train" else p.copy()
        sets[name] = ImageSet(
            tuple(images.paths[i] for i in idx),
            p,
            camids[idx],
            labels_,
            table.lookup(p),
            the_schema,
            table.lookup_alternatives(p),
            tuple(labels),
        )
    check.dataset = ReIDDataset(
        name="table",
        root=root,
        schema=the_schema,
        train=sets["train"],
        query=sets["query"],
        gallery=sets["gallery"],
        train_attributes=tables["train"],
        test_attributes=tables["test"],
        cameras_known=has_cameras,
    )
    check.camera_labels = tuple(labels)
    with_images = set(pids.tolist())
    check.extra_attribute_ids = sum(1 for i in attr_rows if i not in with_images)
    return check


def read_table_dataset(root: str | Path, schema: str | Path | Schema | None = None) -> ReIDDataset:
    """:func:`check_table_dataset`, raising the first problem (``cerberus check-data`` lists
    them all)."""
    check = check_table_dataset(root, schema, decode_images=False)
    for warning in check.warnings:
        logger.warning("%s", warning)
    if check.problems:
        more = len(check.problems) - 1
        also = f" (and {more} more problems: run cerberus check-data {root})" if more else ""
        raise CerberusError(f"{check.problems[0]}{also}")
    assert check.dataset is not None
    return check.dataset


def dataset_kind(root: str | Path, default: str) -> str:
    """What a folder holds: ``"table"`` when it has an image table and no complete benchmark
    tree (``bounding_box_train`` and a Lin et al. attribute file), the benchmark's name for a
    complete tree without an image table (``default`` when it names a benchmark, else the
    one whose attribute file is there), ``default`` when it has both or neither."""
    root = Path(root)
    mats = [n for n, f in FORMATS.items() if Path(root, f.attribute_file).is_file()]
    tree = Path(root, "bounding_box_train").is_dir() and bool(mats)
    table = is_table_dataset(root)
    if table and not tree:
        return "table"
    if tree and not table:
        return default if default in FORMATS else mats[0]
    return default


def open_dataset(
    root: str | Path,
    name: str = "market1501",
    *,
    attributes: str | Path | None = None,
    schema: str | Path | Schema | None = None,
) -> ReIDDataset:
    """The dataset a :class:`~cerberus.config.DataConfig` describes: a table dataset for
    ``name="table"``, else a benchmark tree (:func:`~cerberus.data.datasets.read_dataset`)."""
    if name == "table":
        if attributes:
            raise CerberusError(
                "data.attributes is for the Lin .mat files of market1501 / dukemtmc; a table "
                f"dataset reads {ATTRIBUTES}.csv in its folder"
            )
        return read_table_dataset(root, schema)
    if schema and str(schema) != name:
        raise CerberusError(
            f"data.schema {schema!r}: the {name} benchmark has its own schema; data.schema is "
            "for data.dataset=table"
        )
    if not Path(root, "bounding_box_train").is_dir() and is_table_dataset(root):
        raise CerberusError(
            f"{root}: a table dataset ({IMAGES}.csv), not a {name} tree; set data.dataset=table"
        )
    return read_dataset(root, name, attributes=attributes)


# ----------------------------------------------------------------------------- summary


def _per_identity(pids: np.ndarray) -> str:
    if not len(pids):
        return "-"
    counts = np.unique(pids, return_counts=True)[1]
    return f"{counts.min()} / {np.median(counts):g} / {counts.max()}"


def table_summary(
    dataset: ReIDDataset, camera_labels: tuple[str, ...] = (), extra_attribute_ids: int = 0
) -> str:
    """A plain-text summary: identities and images per split, images per identity, cameras,
    SIDs per group seen in train / test, test SIDs unseen in training, attribute value counts."""
    lines = [f"{dataset.name} dataset at {dataset.root}, schema {dataset.schema.name}"]
    lines.append(
        f"{'split':8s} {'identities':>10s} {'images':>7s}  images per identity (min / median / max)"
    )
    for split in SPLITS:
        s: ImageSet = getattr(dataset, split)
        real = s.pids > 0
        ids = len(np.unique(s.pids[real]))
        lines.append(f"{split:8s} {ids:10d} {len(s):7d}  {_per_identity(s.pids[real])}")
    others = int((dataset.gallery.pids <= 0).sum())
    if others:
        lines.append(f"gallery distractor / junk images (person_id 0 / -1): {others}")
    query_ids = set(dataset.query.pids.tolist())
    unmatched = len(query_ids - set(dataset.gallery.pids.tolist()))
    if unmatched:
        lines.append(f"query identities with no gallery image (never a valid query): {unmatched}")
    if dataset.cameras_known:
        labels = camera_labels or dataset.gallery.camera_labels
        labels = labels or tuple(f"c{c + 1}" for c in np.unique(dataset.gallery.camids))
        lines.append(f"cameras: {len(labels)} ({', '.join(labels)})")
    else:
        lines.append(
            "cameras: unknown (no camera_id column): reID evaluation removes only the "
            "query image itself from the gallery"
        )
    if extra_attribute_ids:
        lines.append(f"attribute rows of identities without images: {extra_attribute_ids}")
    train = occurring_sid_counts(dataset.train_identity_table())
    test_table = dataset.test_attributes
    test_ids = np.unique(np.concatenate([dataset.query.pids, dataset.gallery.pids]))
    keep = np.isin(test_table.ids, test_ids)
    test_sids = test_table.sids[keep]
    train_sids = dataset.train_identity_table().sids
    lines.append(f"{'group':6s} {'SID space':>9s} {'train':>6s} {'test':>6s} {'test unseen':>11s}")
    totals = [0, 0, 0]
    for k, g in enumerate(GROUPS):
        seen_test = set(test_sids[test_sids[:, k] >= 0, k].tolist())
        unseen = len(seen_test - set(train_sids[:, k].tolist()))
        row = (train[g], len(seen_test), unseen)
        totals = [a + b for a, b in zip(totals, row)]
        space = dataset.schema.codecs[g].num_sids
        lines.append(f"{g:6s} {space:9d} {row[0]:6d} {row[1]:6d} {row[2]:11d}")
    lines.append(f"{'total':6s} {'':9s} {totals[0]:6d} {totals[1]:6d} {totals[2]:11d}")
    lines.append("attribute values (identities with images; train / test):")
    train_values = dataset.train_identity_table().values
    test_values = test_table.values[keep]
    for j, attr in enumerate(dataset.schema.attributes):
        parts = []
        for code, value in enumerate(attr.values):
            a, b = int((train_values[:, j] == code).sum()), int((test_values[:, j] == code).sum())
            parts.append(f"{value} {a}/{b}")
        unknown = int((train_values[:, j] < 0).sum()), int((test_values[:, j] < 0).sum())
        if any(unknown):
            parts.append(f"unknown {unknown[0]}/{unknown[1]}")
        lines.append(f"  {attr.name}: {', '.join(parts)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- writing


def write_table_dataset(
    dataset: ReIDDataset, out: str | Path, *, cameras: bool = True
) -> dict[str, Path]:
    """Write ``images.csv``, ``attributes.csv`` and ``schema.yaml`` describing ``dataset``'s
    images (paths relative to ``out`` where they lie under it). ``cameras=False`` leaves the
    camera column out."""
    out = Path(out)
    rows = []
    for split in SPLITS:
        s: ImageSet = getattr(dataset, split)
        for p, pid, cam in zip(s.paths, s.pids, s.camids):
            try:
                shown = Path(p).resolve().relative_to(out.resolve()).as_posix()
            except ValueError:
                shown = str(Path(p).resolve())
            label = camera_label(int(cam), s.camera_labels)
            row = [shown, int(pid)] + ([label] if cameras else []) + [split]
            rows.append(row)
    header = ["path", "person_id"] + (["camera_id"] if cameras else []) + ["split"]
    written = {IMAGES: out / f"{IMAGES}.csv"}
    atomic_write(written[IMAGES], lambda fh: fh.write(csv_bytes(header, rows)), "image table")

    written.update(
        write_attribute_table(
            out, dataset.schema, (dataset.train_attributes, dataset.test_attributes)
        )
    )
    return written
