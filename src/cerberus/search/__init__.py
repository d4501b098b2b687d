"""The search layer (method §5): the one way down from the command line, the page and Python
callers to the model (:mod:`cerberus.inference.embed`) and the gallery store
(:mod:`cerberus.store`: a gallery folder, a Milvus URI or an ``.npz`` index file, all seen as a
:class:`~cerberus.store.GalleryStore`).

- :class:`Gallery`: query by image, by a gallery item (left out of its own results) or by
  attributes, filtered by camera / time (:class:`Filter`), per crop or per track; PAR of
  gallery items; :meth:`Gallery.timeline` ("where else was this person?");
- :func:`open_store`, :func:`add_features`, :func:`convert`: open, grow and convert galleries
  (a folder, a Milvus URI, or an ``.npz`` index read-only);
- :class:`Verdicts`: same person or not at the calibrated threshold, with the data it was
  calibrated on (:data:`DEFAULT_THRESHOLD` where a timeline has none); :func:`verify` for two
  images;
- :func:`result_rows`: a ranked list as rows;
- :class:`Cerberus` / :func:`load`: the Python API (README: Python API).

Model-level helpers the commands use (:func:`load_model`, :func:`build_index`,
:func:`load_index`) are re-exported here so the command line never imports the store or the
model itself (an import-linter contract in pyproject.toml checks it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cerberus.inference.features import FeatureSet
from cerberus.search.adding import add_features, convert, items_of_features
from cerberus.search.api import Cerberus, load, verify
from cerberus.search.gallery import Answer, Gallery, index_model
from cerberus.search.rows import result_rows
from cerberus.search.tracks import TRACK_SCORES
from cerberus.search.verdicts import DEFAULT_THRESHOLD, Verdicts, calibration_source
from cerberus.store import (
    Filter,
    GalleryStore,
    StoreError,
    check_names,
    make_filter,
    open_store,
    to_utc_seconds,
)
from cerberus.store.npz import INDEX_KINDS, NpzStore

if TYPE_CHECKING:
    from cerberus.inference.embed import InferenceModel


def load_model(checkpoint, **options: Any) -> InferenceModel:
    """A checkpoint or weights pair as an :class:`~cerberus.inference.embed.InferenceModel`
    (``device``, ``batch_size``, ``num_workers``, ``fuse_bn``; imports PyTorch)."""
    from cerberus.inference.embed import InferenceModel

    return InferenceModel.from_checkpoint(checkpoint, **options)


def load_index(path) -> NpzStore:
    """An index file (``cerberus index``) as a read-only store, without a model."""
    return NpzStore.load(path)


def build_index(features: FeatureSet, **options) -> NpzStore:
    """A new index file's store (:meth:`~cerberus.store.npz.NpzStore.build`: ``kind``,
    ``nlist``, ``nprobe``, ``hnsw_m``, ``ef_search``), to ``save``."""
    return NpzStore.build(features, **options)


def search_images(
    store: GalleryStore, net: InferenceModel, images, k: int = 10
) -> list[tuple[list[dict], list[str]]]:
    """reID for images: per query, its ranked rows and its predicted attributes as phrases."""
    return [(a.rows, a.text) for a in Gallery(store, net).by_images(images, k)]


__all__ = [
    "DEFAULT_THRESHOLD",
    "INDEX_KINDS",
    "TRACK_SCORES",
    "Answer",
    "Cerberus",
    "Filter",
    "Gallery",
    "GalleryStore",
    "StoreError",
    "Verdicts",
    "add_features",
    "build_index",
    "calibration_source",
    "check_names",
    "convert",
    "index_model",
    "items_of_features",
    "make_filter",
    "open_store",
    "load",
    "load_index",
    "load_model",
    "result_rows",
    "search_images",
    "to_utc_seconds",
    "verify",
]
