"""Readers for Market-1501 and DukeMTMC-reID, and the torch dataset over their images.

Both benchmarks share one layout::

    root/bounding_box_train/  training images
    root/bounding_box_test/   gallery (Market also has junk ``-1_...`` and distractors ``0000_...``)
    root/query/               queries
    root/market_attribute.mat or root/duke_attribute.mat   (Lin et al. attributes)

File names: Market-1501 ``0002_c1s1_000451_03.jpg``, DukeMTMC-reID ``0001_c2_f0046182.jpg``
(identity, then camera). Every image gets its identity's attributes; training identities are
relabelled ``0..N-1`` in sorted identity order. Any other data comes as a table dataset
(:mod:`cerberus.data.table`), read into the same :class:`ReIDDataset`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cerberus.attributes.mat import load_attribute_mat
from cerberus.attributes.schema import Schema
from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501
from cerberus.attributes.sids import sid_identity_counts
from cerberus.attributes.table import AttributeTable, check_alt_values
from cerberus.data.images import open_image
from cerberus.data.labels import UNKNOWN, camera_label  # noqa: F401 (re-exported)
from cerberus.errors import CerberusError
from cerberus.files import same_file_key

logger = logging.getLogger(__name__)

JUNK_ID = -1
DISTRACTOR_ID = 0


@dataclass(frozen=True)
class DatasetFormat:
    """How one benchmark names its files: a regex with ``pid`` and ``cam`` groups."""

    name: str
    schema: Schema
    pattern: re.Pattern[str]
    attribute_file: str
    num_cameras: int
    example: str


MARKET1501_FORMAT = DatasetFormat(
    name="market1501",
    schema=MARKET1501,
    pattern=re.compile(r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s\d+_\d+_\d+\.jpg$"),
    attribute_file="market_attribute.mat",
    num_cameras=6,
    example="0002_c1s1_000451_03.jpg",
)
DUKEMTMC_FORMAT = DatasetFormat(
    name="dukemtmc",
    schema=DUKEMTMC,
    pattern=re.compile(r"^(?P<pid>\d{4})_c(?P<cam>\d)_f\d+\.jpg$"),
    attribute_file="duke_attribute.mat",
    num_cameras=8,
    example="0001_c2_f0046182.jpg",
)
FORMATS: dict[str, DatasetFormat] = {f.name: f for f in (MARKET1501_FORMAT, DUKEMTMC_FORMAT)}
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@dataclass(frozen=True)
class ImageSet:
    """The images of one split as parallel arrays.

    Attributes:
        paths: image files, length N.
        pids: original identity numbers, shape ``(N,)`` (-1 junk, 0 distractor on Market).
        camids: camera numbers (0-based), shape ``(N,)``.
        labels: training class ``0..C-1`` for the train split; the identity otherwise.
        values: attribute value codes of each image's identity, shape ``(N, num_attributes)``,
            ``-1`` where the identity has no attributes (junk, distractors) or a value is not
            annotated.
        schema: the attribute schema.
        alt_values: alternative colour codes of each image's identity, shape
            ``(N, K, num_attributes)``, ``-1`` where none (see
            :attr:`~cerberus.attributes.table.AttributeTable.alt_values`); ``None`` is stored as
            ``K = 0``.
        camera_labels: the name of each camera number (a table dataset's own ``camera_id``
            labels); empty: ``c1``, ``c2``, ... (the benchmarks' names).
    """

    paths: tuple[Path, ...]
    pids: np.ndarray
    camids: np.ndarray
    labels: np.ndarray
    values: np.ndarray
    schema: Schema
    alt_values: np.ndarray | None = None
    camera_labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        alt = check_alt_values(self.alt_values, self.schema, len(self.paths), "images")
        object.__setattr__(self, "alt_values", alt)

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def sids(self) -> np.ndarray:
        """SIDs of every image, shape ``(N, 5)``; ``-1`` for a group with an unknown value
        (every group of an identity without attributes: junk, distractors)."""
        return self.schema.to_sids(self.values.reshape(len(self), self.schema.num_attributes))

    @cached_property
    def alt_sids(self) -> np.ndarray:
        """SIDs of the alternative colours, shape ``(N, K, 5)``, ``-1`` where none."""
        return self.schema.alternative_sids(self.values, self.alt_values)

    def subset(self, mask: np.ndarray) -> ImageSet:
        """The images where ``mask`` (bool, shape ``(N,)``) is true."""
        idx = np.nonzero(mask)[0]
        return ImageSet(
            tuple(self.paths[i] for i in idx),
            self.pids[idx],
            self.camids[idx],
            self.labels[idx],
            self.values[idx],
            self.schema,
            self.alt_values[idx],
            self.camera_labels,
        )


@dataclass(frozen=True)
class ReIDDataset:
    """A benchmark: train / query / gallery image sets and the identity attribute tables."""

    name: str
    root: Path
    schema: Schema
    train: ImageSet
    query: ImageSet
    gallery: ImageSet
    train_attributes: AttributeTable
    test_attributes: AttributeTable
    cameras_known: bool = True
    """False for a table dataset without cameras (every ``camids`` is -1): reID evaluation then
    removes only the query image itself from the gallery (method §6.1 without cameras)."""

    def train_identity_table(self) -> AttributeTable:
        """The attribute rows of the identities that have training images: the N of method §3.1."""
        table = self.train_attributes
        keep = np.isin(table.ids, np.unique(self.train.pids))
        return AttributeTable(self.schema, table.ids[keep], table.values[keep])

    def train_sid_counts(self) -> dict[str, np.ndarray]:
        """N_g^G over :meth:`train_identity_table`: ``{G: (S_G,) int}`` (method §3.1).

        What the adaptive margins and the prior-aware decision (method §8.2) count.
        """
        return sid_identity_counts(self.train_identity_table())

    @property
    def num_train_ids(self) -> int:
        return int(self.train.labels.max()) + 1 if len(self.train) else 0

    def summary(self) -> str:
        rows = [f"{self.name} at {self.root}"]
        for split in ("train", "query", "gallery"):
            s: ImageSet = getattr(self, split)
            ids = len(np.unique(s.pids[s.pids > 0]))
            rows.append(f"  {split:8s} {ids:5d} identities {len(s):6d} images")
        return "\n".join(rows)


def parse_filename(name: str, fmt: DatasetFormat) -> tuple[int, int]:
    """``(identity, camera 0-based)`` from a benchmark file name, or raise naming the file."""
    m = fmt.pattern.match(name)
    if m is None:
        raise CerberusError(
            f"{name}: file name does not follow the {fmt.name} pattern (e.g. {fmt.example})"
        )
    cam = int(m.group("cam"))
    if not 1 <= cam <= fmt.num_cameras:
        raise CerberusError(f"{name}: camera {cam} outside 1..{fmt.num_cameras} for {fmt.name}")
    return int(m.group("pid")), cam - 1


def _scan(folder: Path, fmt: DatasetFormat) -> tuple[list[Path], np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise CerberusError(
            f"{folder}: folder not found; a {fmt.name} root holds "
            f"{', '.join(SPLIT_FOLDERS.values())}"
        )
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    if not paths:
        raise CerberusError(f"{folder}: no .jpg images")
    pids, cams = [], []
    for p in paths:
        try:
            pid, cam = parse_filename(p.name, fmt)
        except CerberusError as exc:
            raise CerberusError(f"{folder}/{exc}") from None
        pids.append(pid)
        cams.append(cam)
    return paths, np.asarray(pids, dtype=np.int64), np.asarray(cams, dtype=np.int64)


def read_dataset(
    root: str | Path, name: str = "market1501", *, attributes: str | Path | None = None
) -> ReIDDataset:
    """Read a Market-1501 or DukeMTMC-reID tree (also the synthetic benchmark, which is Market).

    Args:
        root: the folder holding ``bounding_box_train``, ``bounding_box_test`` and ``query``.
        name: ``"market1501"`` or ``"dukemtmc"``.
        attributes: the Lin et al. ``.mat`` file; defaults to ``root/<name>_attribute.mat``.

    Raises:
        CerberusError: wrong layout, a file name that does not parse, a training identity
            with no attributes, a missing or malformed attribute file.
    """
    if name not in FORMATS:
        raise CerberusError(f"unknown dataset {name!r}; valid: {', '.join(FORMATS)}")
    fmt = FORMATS[name]
    root = Path(root)
    if not root.is_dir():
        raise CerberusError(f"{root}: dataset folder not found")
    attr_path = Path(attributes) if attributes is not None else root / fmt.attribute_file
    tables = load_attribute_mat(attr_path, fmt.schema)

    sets: dict[str, ImageSet] = {}
    for split, folder in SPLIT_FOLDERS.items():
        paths, pids, cams = _scan(root / folder, fmt)
        if split == "train":
            keep = pids > 0
            paths = [p for p, k in zip(paths, keep) if k]
            pids, cams = pids[keep], cams[keep]
            table = tables["train"]
            missing = sorted(set(pids.tolist()) - set(table.ids.tolist()))
            if missing:
                raise CerberusError(
                    f"{attr_path}: training identity {missing[0]:04d} (from {root / folder}) "
                    f"has no attributes in the train split ({len(missing)} identities missing)"
                )
            classes = np.unique(pids)
            labels = np.searchsorted(classes, pids)
        else:
            if split == "query":
                keep = pids > 0
                paths = [p for p, k in zip(paths, keep) if k]
                pids, cams = pids[keep], cams[keep]
            table = tables["test"]
            labels = pids.copy()
        values = table.lookup(pids)
        alt = table.lookup_alternatives(pids)
        sets[split] = ImageSet(tuple(paths), pids, cams, labels, values, fmt.schema, alt)
    return ReIDDataset(
        name=name,
        root=root,
        schema=fmt.schema,
        train=sets["train"],
        query=sets["query"],
        gallery=sets["gallery"],
        train_attributes=tables["train"],
        test_attributes=tables["test"],
    )


def exclude_training_sids(dataset: ReIDDataset, sids: tuple[str, ...]) -> ReIDDataset:
    """Drop the training identities that have any of ``sids`` (``"G:index"``) and relabel.

    The SIDs then have no training image: their prototypes are placed only through the
    regularisation term (the unseen-SID experiment, Figure 7(b)).
    """
    if not sids:
        return dataset
    from cerberus.attributes.schema import GROUPS

    drop = np.zeros(len(dataset.train), dtype=bool)
    for item in sids:
        group, _, index = item.partition(":")
        if group not in GROUPS or not index.isdigit():
            raise CerberusError(f"data.exclude_sids: {item!r} is not of the form G:index")
        k, sid = GROUPS.index(group), int(index)
        if sid >= dataset.schema.codecs[group].num_sids:
            raise CerberusError(f"data.exclude_sids: {item!r} is out of range for {group}")
        drop |= dataset.train.sids[:, k] == sid
    train = dataset.train.subset(~drop)
    if not len(train):
        raise CerberusError("data.exclude_sids removes every training identity")
    classes, labels = np.unique(train.pids, return_inverse=True)
    train = ImageSet(
        train.paths, train.pids, train.camids, labels, train.values, train.schema,
        train.alt_values, train.camera_labels,
    )  # fmt: skip
    table = dataset.train_attributes
    keep = np.isin(table.ids, classes)
    return ReIDDataset(
        name=dataset.name,
        root=dataset.root,
        schema=dataset.schema,
        train=train,
        query=dataset.query,
        gallery=dataset.gallery,
        train_attributes=AttributeTable(
            table.schema, table.ids[keep], table.values[keep], table.alt_values[keep]
        ),
        test_attributes=dataset.test_attributes,
        cameras_known=dataset.cameras_known,
    )


def load_image(path: Path) -> Image.Image:
    """Open an image as upright 8-bit RGB (:func:`~cerberus.data.images.open_image`), or raise
    :class:`CerberusError` naming the file."""
    return open_image(path)


def find_unreadable(paths: tuple[Path, ...] | list[Path]) -> list[tuple[Path, str]]:
    """``(path, reason)`` for every file that cannot be decoded as an image."""
    bad = []
    for p in paths:
        try:
            load_image(p)
        except CerberusError as exc:
            bad.append((p, str(exc)))
    return bad


def drop_unreadable(images: ImageSet, what: str) -> ImageSet:
    """``images`` without the files that cannot be decoded; each one is logged by name."""
    bad = find_unreadable(images.paths)
    if not bad:
        return images
    for _, reason in bad:
        logger.warning("skipping %s", reason)
    logger.warning("%s: skipped %d unreadable images of %d", what, len(bad), len(images))
    bad_paths = {p for p, _ in bad}
    return images.subset(np.array([p not in bad_paths for p in images.paths], dtype=bool))


class ImageDataset(torch.utils.data.Dataset):
    """Torch dataset over an :class:`ImageSet`.

    Items are indexed either by ``i`` or by ``(i, seed)``; with a seed the random transform is
    run under that seed, so augmentation is a pure function of the sampler's output (what makes
    resumed training identical to uninterrupted training, whatever the number of workers).

    Each item is a dict: ``image`` (3, H, W) float, ``label``, ``camid``, ``sids`` (5,),
    ``values`` (num_attributes,) attribute codes (``-1`` unknown), ``index``.
    """

    def __init__(self, images: ImageSet, transform: Callable[[Image.Image], torch.Tensor]):
        self.images = images
        self.transform = transform
        self._sids = torch.as_tensor(images.sids)
        self._values = torch.as_tensor(images.values, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor | int]:
        if isinstance(item, tuple):
            index, seed = item
            img = load_image(self.images.paths[index])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                tensor = self.transform(img)
        else:
            index = item
            tensor = self.transform(load_image(self.images.paths[index]))
        return {"image": tensor, **self.labels_of(index)}

    def labels_of(self, index: int) -> dict[str, torch.Tensor | int]:
        """Everything an item carries but its image: label, camera, SIDs, values, index."""
        return {
            "label": int(self.images.labels[index]),
            "camid": int(self.images.camids[index]),
            "sids": self._sids[index],
            "values": self._values[index],
            "index": index,
        }


MARKET_VALIDATION = (751, 100, 160)
"""The paper's validation split of Market-1501 (method §4.3): of 751 training identities, 100 held
out for validation, 160 of their images as queries, the rest of their images the gallery."""


def _table_subset(table: AttributeTable, ids: np.ndarray) -> AttributeTable:
    keep = np.isin(table.ids, ids)
    return AttributeTable(table.schema, table.ids[keep], table.values[keep], table.alt_values[keep])


def _query_candidates(
    val: ImageSet, rows: np.ndarray, rng: np.random.Generator, cameras_known: bool
) -> list[int]:
    """The rows of one validation identity that may become queries, in random order.

    Every subset of them leaves each chosen query a true match in the gallery: an image of its
    identity from another camera (method §6.1), or, without cameras, any other image. So a few
    images
    are kept back for the gallery: without cameras one; with cameras, when one camera holds a
    single image of the identity, that image (every other image is from another camera: at most
    ``n - 1`` queries); otherwise one image from each of two cameras (``n - 2``). These are the
    most queries an identity can give. An identity seen by one camera gives none.
    """
    rows = rows[rng.permutation(len(rows))]
    if not cameras_known:
        return [int(r) for r in rows[1:]]
    cams = val.camids[rows]
    distinct, counts = np.unique(cams, return_counts=True)
    if len(distinct) < 2:
        return []
    single = np.isin(cams, distinct[counts == 1])
    if single.any():
        kept = {int(np.argmax(single))}
    else:
        kept = {0, int(np.argmax(cams != cams[0]))}
    return [int(r) for i, r in enumerate(rows) if i not in kept]


def unmatched_queries(dataset: ReIDDataset) -> int:
    """Queries without a true match in the gallery: no image of their identity from another
    camera (method §6.1), or, without cameras, no other image of their identity (another path).
    The reID metrics skip such queries; :func:`validation_split` makes none."""
    q, g = dataset.query, dataset.gallery
    if not dataset.cameras_known:  # files compared as files only where cameras are unknown
        gallery_keys = np.array([same_file_key(p) for p in g.paths], dtype=object)
    count = 0
    for pid, cam, path in zip(q.pids, q.camids, q.paths):
        same = g.pids == pid
        if dataset.cameras_known:
            same &= g.camids != cam
        else:
            same &= gallery_keys != same_file_key(path)
        count += not same.any()
    return count


def validation_split(
    dataset: ReIDDataset,
    *,
    num_val_ids: int | None = None,
    num_queries: int | None = None,
    seed: int = 0,
) -> ReIDDataset:
    """Split the training identities into train / validation, for choosing hyper-parameters.

    The validation identities become the test set: ``num_queries`` of their images are the
    queries, the rest of their images the gallery. Queries are drawn round-robin over the
    identities so that every query keeps a gallery image of its identity from another camera
    (without cameras: another image), however many queries an identity gives; an identity seen
    by one camera gives none. :func:`unmatched_queries` of the result is 0.
    Defaults follow the paper's Market-1501 split (:data:`MARKET_VALIDATION`: 651 / 100
    identities, 160 queries), scaled to the number of training identities N:
    ``round(100 N / 751)`` identities and ``round(1.6 x)`` queries. Same seed, same split.

    Args:
        dataset: any dataset; only its training images are used.
        num_val_ids: identities held out (``1 .. N-1``).
        num_queries: query images (at most what the identities can give while keeping their
            matches: per identity its images minus one or two, see :func:`_query_candidates`).
        seed: the random seed of the identity and query draws.

    Returns:
        A dataset with the remaining identities as ``train`` (relabelled ``0..N'-1``) and the
        validation identities as ``query`` / ``gallery`` (their attribute rows as
        ``test_attributes``).
    """
    total, val_ref, query_ref = MARKET_VALIDATION
    ids = np.unique(dataset.train.pids)
    n = len(ids)
    if num_val_ids is None:
        num_val_ids = max(1, round(val_ref * n / total))
    if not 1 <= num_val_ids < n:
        raise CerberusError(
            f"validation split: num_val_ids must be in 1..{n - 1} ({n} training identities), "
            f"got {num_val_ids}"
        )
    if num_queries is None:
        num_queries = round(query_ref * num_val_ids / val_ref)
    rng = np.random.default_rng(seed)
    val_ids = np.sort(rng.choice(ids, size=num_val_ids, replace=False))
    is_val = np.isin(dataset.train.pids, val_ids)
    val = dataset.train.subset(is_val)
    # Candidate queries per identity, in random order; any subset of them may become queries
    # and still leave each a true match in the gallery (see _query_candidates).
    order = rng.permutation(val_ids)
    pools = [
        _query_candidates(val, np.nonzero(val.pids == pid)[0], rng, dataset.cameras_known)
        for pid in order
    ]
    capacity = sum(len(p) for p in pools)
    if not 1 <= num_queries <= capacity:
        raise CerberusError(
            f"validation split: num_queries must be in 1..{capacity} ({len(val)} images of "
            f"{num_val_ids} validation identities, each query keeping a gallery image of its "
            f"identity{' from another camera' if dataset.cameras_known else ''}), "
            f"got {num_queries}"
        )
    chosen: list[int] = []
    while len(chosen) < num_queries:  # round-robin over the identities
        for pool in pools:
            if pool and len(chosen) < num_queries:
                chosen.append(pool.pop())
    is_query = np.zeros(len(val), dtype=bool)
    is_query[chosen] = True

    def as_test(images: ImageSet) -> ImageSet:
        return ImageSet(
            images.paths, images.pids, images.camids, images.pids.copy(), images.values,
            images.schema, images.alt_values, images.camera_labels,
        )  # fmt: skip

    train = dataset.train.subset(~is_val)
    classes, labels = np.unique(train.pids, return_inverse=True)
    train = ImageSet(
        train.paths, train.pids, train.camids, labels, train.values, train.schema,
        train.alt_values, train.camera_labels,
    )  # fmt: skip
    return ReIDDataset(
        name=dataset.name,
        root=dataset.root,
        schema=dataset.schema,
        train=train,
        query=as_test(val.subset(is_query)),
        gallery=as_test(val.subset(~is_query)),
        train_attributes=_table_subset(dataset.train_attributes, classes),
        test_attributes=_table_subset(dataset.train_attributes, val_ids),
        cameras_known=dataset.cameras_known,
    )
