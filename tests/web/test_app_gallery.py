"""The page's API over a gallery that grows (method §9.2): camera / time filters, per-track
rows, the timeline of a crop, and new crops seen while serving; bad filters are one-line 400s."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from cerberus.inference.embed import InferenceModel
from cerberus.search import DEFAULT_THRESHOLD, Gallery, make_filter
from cerberus.web.app import create_app
from tests.conftest import T_GALLERY, tracked_store
from tests.web import local_client


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


@pytest.fixture(scope="module")
def net(tiny_index):
    return InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)


@pytest.fixture
def served(tiny_index, net):
    store = tracked_store(tiny_index["features"])
    gallery = Gallery(store, net)
    with local_client(create_app(gallery), raise_server_exceptions=False) as client:
        yield {"client": client, "gallery": gallery, "store": store}


def one_line(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert "\n" not in detail, detail
    for w in words:
        assert w in detail, detail


def test_filtered_attribute_search_is_the_search_layers(served):
    client, gallery = served["client"], served["gallery"]
    after, before = iso(T_GALLERY + 60), iso(T_GALLERY + 300)
    body = {
        "attributes": {"gender": "male"},
        "k": 50,
        "cameras": ["c1", "c3"],
        "after": after,
        "before": before,
    }
    r = client.post("/api/search/attributes", json=body)
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    where = make_filter(cameras=["c1", "c3"], after=after, before=before)
    want = gallery.by_attributes({"gender": "male"}, 50, where=where).rows
    assert rows and [x["id"] for x in rows] == [x["id"] for x in want]
    for x in rows:
        assert x["camera"] in ("c1", "c3") and after <= x["time"] < before
        assert x["source"] == f"{x['camera']}.mp4" and "path" not in x
    body = {"attributes": {"gender": "male"}, "k": 50, "per_track": True, "track_score": "top3"}
    rows = client.post("/api/search/attributes", json=body).json()["results"]
    keys = [(x["source"], x["track"]) for x in rows]
    assert len(keys) == len(set(keys)) and all(x["count"] >= 1 and x["span"] for x in rows)
    assert sum(x["count"] for x in rows) == len(gallery)  # k >= tracks: every crop once


def test_photo_search_filters_by_camera(served, tiny_index):
    client = served["client"]
    with open(tiny_index["query"], "rb") as fh:
        image = fh.read()
    r = client.post(
        "/api/search/image",
        files={"image": ("q.jpg", image, "image/jpeg")},
        data={"k": "20", "cameras": ["c2"], "per_track": "true"},
    )
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert rows and {x["camera"] for x in rows} == {"c2"} and all("count" in x for x in rows)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"cameras": ["c9"]}, ["camera c9: not in this gallery", "c1"]),
        ({"after": "2026-11-30T15:00:00"}, ["no time zone"]),
        (
            {"after": "2026-11-30T15:00:00Z", "before": "2026-11-30T14:00:00Z"},
            ["after must be earlier than before"],
        ),
        ({"before": "soon"}, ["not an ISO-8601 time"]),
    ],
)
def test_bad_filters_are_one_line_400s(served, body, words):
    r = served["client"].post(
        "/api/search/attributes", json={"attributes": {"gender": "male"}, **body}
    )
    one_line(r, 400, *words)
    assert "--" not in r.json()["detail"]  # the API's field names, not the CLI's options
    r = served["client"].get("/api/timeline/0", params={"camera": ["c9"]})
    one_line(r, 400, "camera c9")


def test_timeline_of_a_crop(served):
    client, store = served["client"], served["store"]
    items = store.get(store.ids(), vectors=False)
    i = int(items.ids[np.flatnonzero(items.pid > 0)[0]])
    r = client.get(f"/api/timeline/{i}")
    assert r.status_code == 200, r.text
    found = r.json()
    sightings = found["sightings"]
    assert sightings and found["query"]["id"] == i and "path" not in found["query"]
    starts = [s["start"] for s in sightings]
    assert starts == sorted(starts) and all(
        s["thumbnail"] == f"/api/gallery/{s['item']}/image" for s in sightings
    )
    assert [s["query"] for s in sightings].count(True) == 1
    # the same through the search layer, and filtered to one camera
    assert sightings == [
        {**s, "source": s["source"], "thumbnail": f"/api/gallery/{s['item']}/image"}
        for s in served["gallery"].timeline(i)["sightings"]
    ]
    # a model without a calibration: the rest of the top crops apart, as candidates
    assert found["calibrated"] is False and found["threshold"] == DEFAULT_THRESHOLD
    assert found["candidates"] == [
        {**s, "source": s["source"], "thumbnail": f"/api/gallery/{s['item']}/image"}
        for s in served["gallery"].timeline(i)["candidates"]
    ]
    assert all(s["score"] <= DEFAULT_THRESHOLD and not s["query"] for s in found["candidates"])
    only = client.get(f"/api/timeline/{i}", params={"camera": ["c2"]}).json()["sightings"]
    assert {s["camera"] for s in only} <= {"c2"}
    one_line(client.get("/api/timeline/999999"), 404, "no gallery item 999999")


def test_new_crops_appear_while_serving(served):
    client, store = served["client"], served["store"]
    before = client.get("/api/gallery").json()
    assert before["size"] == len(served["gallery"]) and "c9" not in before["cameras"]
    extra = store.get(store.ids()[:3])  # another camera's crops arrive (an ingest running)
    extra.source, extra.camera = ["c9.mp4"] * 3, ["c9"] * 3
    store.add(extra)
    after = client.get("/api/gallery").json()
    assert after["size"] == before["size"] + 3 and "c9" in after["cameras"]
    assert client.get("/api/health").json()["gallery_size"] == after["size"]
    body = {"attributes": {"gender": "male"}, "cameras": ["c9"], "k": 10}
    rows = client.post("/api/search/attributes", json=body).json()["results"]
    assert len(rows) == 3 and {x["camera"] for x in rows} == {"c9"}


def test_the_source_frame_of_a_crop_with_its_box(tiny_index, net, tmp_path):
    """``GET /api/gallery/{id}/frame``: the frame the crop was cut from (decoded from its
    video), its box drawn in red; a crop that is not from footage, or whose video is gone, is a
    one-line 404."""
    import io

    from PIL import Image

    from cerberus.footage.video import read_frame
    from tests.footage_helpers import write_video

    video = write_video(tmp_path / "cam.mp4", frames=12)
    store = tracked_store(tiny_index["features"])
    ids = store.ids()
    first = store.get(ids[:1], vectors=True)
    first.source, first.frame = [str(video)], np.array([7])
    first.box = np.array([[40.0, 30.0, 90.0, 120.0]], np.float32)
    store.add(first, complete=True)
    footage_id = int(store.ids().max())
    plain = store.get(ids[:1], vectors=True)
    plain.source, plain.frame = ["crops/"], np.array([-1])
    store.add(plain)
    crop_id = int(store.ids().max())
    gone = store.get(ids[:1], vectors=True)
    gone.source, gone.frame = [str(tmp_path / "deleted.mp4")], np.array([3])
    store.add(gone)
    gone_id = int(store.ids().max())
    with local_client(create_app(Gallery(store, net)), raise_server_exceptions=False) as client:
        r = client.get(f"/api/gallery/{footage_id}/frame")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        shown = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        frame = read_frame(str(video), 7).astype(int)
        assert shown.shape == frame.shape
        inside = shown[60:90, 55:75] - frame[60:90, 55:75]
        assert np.abs(inside).mean() < 12  # the frame itself (JPEG twice)
        edge = shown[30:120, 40]  # the box's left side: red
        assert (edge[:, 0] > 180).mean() > 0.8 and (edge[:, 1] < 90).mean() > 0.8
        one_line(client.get(f"/api/gallery/{crop_id}/frame"), 404, "no source frame")
        one_line(client.get(f"/api/gallery/{gone_id}/frame"), 404, "missing")


def test_rows_show_the_stored_predictions_and_describe_nothing(tiny_index, net, monkeypatch):
    """A result row says what ingestion stored (``Items.predicted``), not what the
    model would say of the crop now; the describer is not called."""
    from cerberus.inference.scoring import value_phrases
    from cerberus.store import MemoryStore

    tracked = tracked_store(tiny_index["features"])
    items = tracked.get(tracked.ids())
    gallery = Gallery(tracked, net)
    schema = gallery.schema
    model_says = gallery.describe_items(items.ids.tolist())
    choices = [np.zeros(schema.num_attributes, np.int16), np.ones(schema.num_attributes, np.int16)]
    stored = np.stack(  # for every item, a prediction the model does not make
        [next(c for c in choices if value_phrases(schema, c) != d["phrases"]) for d in model_says]
    )
    items.predicted = stored
    items.certainty = np.full((len(items), 5), 0.9, np.float32)
    store = MemoryStore(tracked.info)
    for source in sorted(set(items.source)):
        store.add(items.take(np.flatnonzero(np.array(items.source) == source)))
    kept = store.get(store.ids(), vectors=False)
    said = {int(i): value_phrases(schema, p) for i, p in zip(kept.ids, kept.predicted)}

    def never(self, ids):
        raise AssertionError(f"described {ids} again")

    monkeypatch.setattr(Gallery, "describe_items", never)
    with local_client(create_app(Gallery(store, net))) as client:
        aps = client.post("/api/search/attributes", json={"attributes": {"gender": "male"}})
        reid = client.post("/api/search/image", data={"gallery_id": 3, "k": 5})
    for r in (aps, reid):
        assert r.status_code == 200, r.text
        rows = r.json()["results"]
        assert rows and all(row["attributes"] == said[row["id"]] for row in rows)


def test_verdicts_are_marked_once_per_search(served, monkeypatch):
    from cerberus.search import Verdicts

    calls = []
    mark = Verdicts.mark

    def counted(self, rows, **options):
        calls.append(len(rows))
        return mark(self, rows, **options)

    monkeypatch.setattr(Verdicts, "mark", counted)
    r = served["client"].post("/api/search/image", data={"gallery_id": 3, "k": 4})
    assert r.status_code == 200, r.text
    assert calls == [4]
    assert all("same_person" in row and "calibrated_on" in row for row in r.json()["results"])


def test_exact_and_nprobe_reach_the_store_and_a_bad_nprobe_is_one_line(served, monkeypatch):
    """The page's API takes ``exact`` and ``nprobe`` on every search (issue 31)."""
    client, store = served["client"], served["store"]
    seen = []
    search = store.search

    def spy(queries, k, where=None, **how):
        seen.append(how)
        return search(queries, k, where, **how)

    monkeypatch.setattr(store, "search", spy)
    body = {"attributes": {"gender": "male"}, "k": 5}
    r = client.post("/api/search/attributes", json={**body, "exact": True, "nprobe": 4})
    assert r.status_code == 200, r.text
    assert seen[-1] == {"exact": True, "nprobe": 4, "kind": "description"}
    r = client.post("/api/search/image", data={"gallery_id": "2", "k": "5", "nprobe": "3"})
    assert r.status_code == 200, r.text
    assert seen[-1] == {"exact": False, "nprobe": 3, "kind": "photo"}
    r = client.get("/api/timeline/2", params={"exact": "true", "nprobe": "2"})
    assert r.status_code == 200 and seen[-1] == {"exact": True, "nprobe": 2}, r.text
    for bad in (0, -1, 1.5, "many"):
        one_line(client.post("/api/search/attributes", json={**body, "nprobe": bad}), 422, "nprobe")
        r = client.post("/api/search/image", data={"gallery_id": "2", "nprobe": str(bad)})
        one_line(r, 422, "nprobe")
        one_line(client.get("/api/timeline/2", params={"nprobe": bad}), 422, "nprobe")
    one_line(client.post("/api/search/attributes", json={**body, "exact": "yes"}), 422, "exact")


def test_a_removed_item_is_said_removed_with_the_id_range(served):
    """Ids keep gaps where crops were removed: the page says so (the CLI's message), not the
    gallery's size."""
    client, store = served["client"], served["store"]
    before = set(store.ids().tolist())
    store.remove(camera="c2")
    ids = store.ids()
    gone = [i for i in sorted(before - set(ids.tolist())) if ids[0] < i < ids[-1]]
    assert gone
    for route in (f"/api/timeline/{gone[0]}", f"/api/gallery/{gone[0]}/image"):
        one_line(client.get(route), 404, f"no gallery item {gone[0]}: it was removed",
                 f"ids {ids[0]} .. {ids[-1]}")  # fmt: skip
