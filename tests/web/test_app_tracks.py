"""``GET /api/gallery/{id}/track``: the track of a crop with its path, for the page's frame
view; the source by its file name only; a crop without a track has none; an unknown id is a
one-line 404."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.inference.embed import InferenceModel
from cerberus.search import Gallery
from cerberus.store import NO_TRACK, TrackPath
from cerberus.web.app import create_app
from tests.conftest import tracked_store
from tests.web import local_client
from tests.web.test_app_gallery import one_line


@pytest.fixture(scope="module")
def net(tiny_index):
    return InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)


def test_the_track_of_a_crop_with_its_path(tiny_index, net, tmp_path):
    store = tracked_store(tiny_index["features"])
    ids = store.ids()
    video = str(tmp_path / "cam" / "north.mp4")
    crop = store.get(ids[:1], vectors=True)
    crop.source, crop.frame, crop.track = [video], np.array([12]), np.array([5])
    crop.box = np.array([[40.0, 30.0, 90.0, 120.0]], np.float32)
    frames = np.arange(10, 20)
    boxes = np.stack([40 + frames, 30 + 0 * frames, 90 + frames, 120 + 0 * frames], 1)
    detected = np.array([1, 1, 1, 0, 0, 1, 1, 1, 0, 1], bool)
    path = TrackPath(video, "north", 5, frames, boxes, detected)
    store.add(crop, paths=[path])
    footage_id = int(store.ids().max())
    lone = store.get(ids[:1], vectors=True)
    lone.source, lone.track = ["crops/"], np.array([NO_TRACK])
    store.add(lone)
    lone_id = int(store.ids().max())
    with local_client(create_app(Gallery(store, net)), raise_server_exceptions=False) as client:
        r = client.get(f"/api/gallery/{footage_id}/track")
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["id"], got["frame"], got["box"]) == (footage_id, 12, [40.0, 30.0, 90.0, 120.0])
        track = got["track"]
        assert track["source"] == "north.mp4"  # no server path
        assert (track["track"], track["camera"], track["first_frame"], track["last_frame"]) == (
            5, "north", 10, 19,
        )  # fmt: skip
        assert track["path"] == [[int(f), *map(float, b)] for f, b in zip(frames, boxes)]
        assert track["path_detected"] == detected.tolist()
        assert (track["boxes"], track["detected"], track["crops"]) == (10, 7, [footage_id])
        without = client.get(f"/api/gallery/{int(ids[3])}/track").json()["track"]
        assert without["path"] == [] and without["boxes"] == 0 and without["crops"]
        assert client.get(f"/api/gallery/{lone_id}/track").json()["track"] is None
        one_line(client.get("/api/gallery/99999/track"), 404, "no gallery item 99999")
