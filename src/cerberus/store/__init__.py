"""The gallery store (method §9.1): items with vectors and metadata, filtered inner-product
search; backends in :mod:`.memory`, :mod:`.local`, :mod:`.milvus` and :mod:`.npz` (an ``.npz``
index file, read-only); :func:`open_or_create` opens the gallery for a model."""

from cerberus.data.labels import UNKNOWN
from cerberus.store.base import (
    NO_FRAME,
    NO_TRACK,
    QUERY_KINDS,
    STORE_FORMAT_VERSION,
    Filter,
    GalleryInfo,
    GalleryStore,
    Hits,
    Items,
    SourceState,
    StoreError,
    TrackPath,
    check_names,
    from_utc_seconds,
    make_filter,
    to_utc_seconds,
)
from cerberus.store.memory import MemoryStore
from cerberus.store.open import (
    backend_of,
    check_same_model,
    create_store,
    existing_store,
    info_of_features,
    info_of_model,
    open_or_create,
    open_store,
)

__all__ = [
    "QUERY_KINDS",
    "NO_FRAME",
    "NO_TRACK",
    "STORE_FORMAT_VERSION",
    "UNKNOWN",
    "Filter",
    "GalleryInfo",
    "GalleryStore",
    "Hits",
    "Items",
    "MemoryStore",
    "SourceState",
    "StoreError",
    "TrackPath",
    "backend_of",
    "check_names",
    "check_same_model",
    "create_store",
    "existing_store",
    "from_utc_seconds",
    "info_of_features",
    "info_of_model",
    "make_filter",
    "open_or_create",
    "open_store",
    "to_utc_seconds",
]
