"""Result rows of a ranked list (method §5): what ``search`` prints, the page shows and
:func:`cerberus.visualize.rank_list_from_rows` draws."""

from __future__ import annotations

from typing import Any

from cerberus.features import UNKNOWN, camera_label
from cerberus.index import GalleryIndex, SearchResult
from cerberus.scoring import AttributeQuery


def result_rows(
    index: GalleryIndex,
    result: SearchResult,
    *,
    query_pid: int = UNKNOWN,
    query_camid: int = UNKNOWN,
    attribute_query: AttributeQuery | None = None,
) -> list[dict[str, Any]]:
    """A ranked list as rows: rank, score, path, identity, camera (index and the dataset's own
    label) and whether it is correct.

    ``correct`` is known for a reID query when both identities are known (same identity), and
    for an attribute query when the gallery item's attribute values are known (every given
    attribute equal); ``None`` otherwise.
    """
    schema = index.schema
    rows = []
    for rank, (i, s) in enumerate(zip(result.indices, result.scores), start=1):
        pid, cam = int(index.pids[i]), int(index.camids[i])
        camera = camera_label(cam, index.meta.get("camera_labels", ()))
        correct: bool | None = None
        if attribute_query is None:
            if query_pid != UNKNOWN and pid != UNKNOWN:
                correct = pid == query_pid
        elif (index.values[i] >= 0).all():
            correct = all(
                int(index.values[i][schema.index(n)]) == v for n, v in attribute_query.given.items()
            )
        rows.append(
            {
                "rank": rank,
                "score": float(s),
                "path": index.paths[i],
                "pid": None if pid == UNKNOWN else pid,
                "camid": None if cam == UNKNOWN else cam,
                "camera": camera,
                "correct": correct,
            }
        )
    return rows
