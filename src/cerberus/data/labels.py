"""Identity and camera labels every reader shares, without PyTorch (search and ingestion read them
too): :data:`UNKNOWN` and :func:`camera_label`."""

from __future__ import annotations

UNKNOWN = -1000
"""Identity / camera value of an image whose file name does not tell them."""


def camera_label(camid: int, labels: object = ()) -> str | None:
    """How camera number ``camid`` is shown: ``labels[camid]`` (a table dataset's own
    ``camera_id``, stored as ``meta["camera_labels"]``), else ``c<camid + 1>`` (the
    benchmarks' names); ``None`` for an unknown camera (:data:`UNKNOWN` or ``-1``)."""
    if camid in (UNKNOWN, -1):
        return None
    if isinstance(labels, list | tuple) and 0 <= camid < len(labels):
        return str(labels[camid])
    return f"c{camid + 1}"
