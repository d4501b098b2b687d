"""The gallery store (method §9.1): items with vectors and metadata, filtered inner-product
search; backends in :mod:`.memory`, :mod:`.local` and :mod:`.milvus`."""

from cerberus.store.base import (
    NO_FRAME,
    NO_TRACK,
    STORE_FORMAT_VERSION,
    UNKNOWN_ID,
    Filter,
    GalleryInfo,
    GalleryStore,
    Hits,
    Items,
    SourceState,
    StoreError,
    from_utc_seconds,
    make_filter,
    to_utc_seconds,
)
from cerberus.store.memory import MemoryStore
from cerberus.store.open import backend_of, create_store, open_store

__all__ = [
    "NO_FRAME",
    "NO_TRACK",
    "STORE_FORMAT_VERSION",
    "UNKNOWN_ID",
    "Filter",
    "GalleryInfo",
    "GalleryStore",
    "Hits",
    "Items",
    "MemoryStore",
    "SourceState",
    "StoreError",
    "backend_of",
    "create_store",
    "from_utc_seconds",
    "make_filter",
    "open_store",
    "to_utc_seconds",
]
