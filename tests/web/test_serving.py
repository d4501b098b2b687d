"""What the server sends and to whom (issue 32): gallery images only from the gallery's image
folders and only as JPEG / PNG, only to its own host names; ids past 2^63, server paths in
errors, bodies the JSON parser gives up on, concurrent decodes, missing thumbnails, a port in
use and connections that never send their headers."""

from __future__ import annotations

import io
import socket
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cerberus.inference.embed import InferenceModel
from cerberus.inference.features import FeatureSet
from cerberus.search import Gallery, add_features
from cerberus.store.npz import NpzStore
from cerberus.web.app import Limits, background_server, create_app
from tests.conftest import tracked_store
from tests.web import local_client


@pytest.fixture(scope="module")
def net(tiny_index):
    return InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)


def one_line(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    for w in words:
        assert w in detail, detail
    return detail


def image_bytes(fmt: str, size=(24, 40), mode="RGB", **options) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), np.uint8)
    image = Image.fromarray(pixels)
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


@pytest.fixture
def folder_gallery(tiny_index, tmp_path):
    """A gallery folder built from the tiny crops in place (``roots``: their folder), and a
    way to point one of its rows at another file (what editing ``items.sqlite`` does)."""
    store, ids = add_features(tmp_path / "gallery", FeatureSet.load(tiny_index["features"]))
    first = int(ids[0])

    def point_at(path: Path) -> int:
        with sqlite3.connect(tmp_path / "gallery" / "items.sqlite") as conn:
            conn.execute("UPDATE items SET path = ? WHERE id = ?", (str(path), first))
        return first

    return store, first, point_at


def test_a_gallery_built_in_place_records_its_image_folder(folder_gallery, tiny_index):
    store, _, _ = folder_gallery
    crops = Path(FeatureSet.load(tiny_index["features"]).paths[0]).parent
    assert store.info.meta["roots"] == [str(crops)]
    index = NpzStore.build(FeatureSet.load(tiny_index["features"]))
    assert index.info.meta["roots"] == [str(crops)]


def test_only_images_under_the_gallery_folders_are_served(folder_gallery, net, tmp_path, request):
    store, item, point_at = folder_gallery
    crops = Path(store.get([item], vectors=False).path[0]).parent
    # the crop folder is the session's tiny dataset: take out what this test puts in it (the
    # symlink would dangle once this test's folder is removed, and other tests copy the folder)
    for planted in (crops / "page.html", crops / "out.png"):
        request.addfinalizer(lambda planted=planted: planted.unlink(missing_ok=True))
    inside_gallery = tmp_path / "gallery" / "thumbs"
    inside_gallery.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_bytes(image_bytes("PNG"))
    (elsewhere / "page.html").write_text("<script>alert(1)</script>")
    (crops / "page.html").write_text("<script>alert(1)</script>")
    (crops / "out.png").symlink_to(elsewhere / "photo.png")
    (inside_gallery / "passwd").symlink_to("/etc/passwd")
    (inside_gallery / "ok.jpg").write_bytes(image_bytes("JPEG"))
    with local_client(create_app(Gallery(store, net)), raise_server_exceptions=False) as client:
        get = lambda: client.get(f"/api/gallery/{item}/image")  # noqa: E731
        ok = get()
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
        for path, words in (
            ("/etc/passwd", ["outside the gallery's image folders"]),
            (elsewhere / "photo.png", ["outside"]),  # an image, but not a gallery's
            (crops / "out.png", ["outside"]),  # a symlink in the crop folder pointing out
            (inside_gallery / "passwd", ["outside"]),  # one in the gallery folder
            (crops / "page.html", ["not an image"]),  # in the folder, not an image
            (Path(str(net.checkpoint)).resolve(), ["outside"]),  # the model file
        ):
            point_at(path)
            r = get()
            detail = one_line(r, 404, *words)
            assert b"root:" not in r.content and b"<script>" not in r.content
            assert str(tmp_path) not in detail and "/etc" not in detail, detail
        point_at(inside_gallery / "ok.jpg")  # the gallery's own folder is served
        r = get()
        assert r.status_code == 200 and r.content == (inside_gallery / "ok.jpg").read_bytes()


@pytest.mark.parametrize(
    ("fmt", "options", "mode", "media", "as_is"),
    [
        ("JPEG", {}, "RGB", "image/jpeg", True),
        ("PNG", {}, "RGB", "image/png", True),
        ("TIFF", {}, "RGB", "image/png", False),
        ("GIF", {}, "RGB", "image/png", False),
        ("PNG", {}, "I;16", "image/png", False),
        ("WEBP", {"lossless": True}, "RGB", "image/png", False),
    ],
    ids=["jpeg", "png", "tiff", "gif", "png16", "webp"],
)
def test_served_images_are_jpeg_or_png(folder_gallery, net, fmt, options, mode, media, as_is):
    """Never typed by the file's name: a plain 8-bit JPEG / PNG as stored, anything else
    decoded and sent as an 8-bit PNG (browsers show no TIFF, no 16-bit PNG)."""
    store, item, point_at = folder_gallery
    crops = Path(store.get([item], vectors=False).path[0]).parent
    data = image_bytes(fmt, mode=mode, **options)
    path = crops / f"odd.{fmt.lower()}.html"  # the name says html; the bytes decide
    path.write_bytes(data)
    point_at(path)
    with local_client(create_app(Gallery(store, net))) as client:
        r = client.get(f"/api/gallery/{item}/image")
    assert r.status_code == 200 and r.headers["content-type"] == media
    assert (r.content == data) == as_is
    shown = Image.open(io.BytesIO(r.content))
    assert shown.format == media.split("/")[1].upper() and shown.mode in ("RGB", "L", "P")
    want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    if mode == "I;16":
        want = np.asarray(Image.open(io.BytesIO(data))).astype(int)[..., None] // 257
    got = np.asarray(shown.convert("RGB")).astype(int)
    assert got.shape[:2] == want.shape[:2] and np.abs(got - want).mean() < 8


def test_a_gallery_without_roots_serves_only_images(tiny_index, net, tmp_path):
    """An index written before ``roots`` were recorded: any file that decodes as an image
    (anywhere), nothing else."""
    store = NpzStore.load(tiny_index["index"])
    store.info.meta.pop("roots", None)
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes("PNG"))
    with local_client(create_app(store, net), raise_server_exceptions=False) as client:
        for path, status in (("/etc/passwd", 404), (str(tiny_index["ckpt"]), 404), (photo, 200)):
            store._meta.path[0] = str(path)
            r = client.get("/api/gallery/0/image")
            assert r.status_code == status, (path, r.text)
            if status == 404:
                one_line(r, 404, "not served")
        assert r.headers["content-type"] == "image/png"


# --------------------------------------------------------------------------- hosts


def test_only_the_servers_own_host_names_are_answered(tiny_index, net):
    from cerberus.web.hosts import allowed_hosts

    store = NpzStore.load(tiny_index["index"])
    app = create_app(store, net)
    with local_client(app) as client:
        for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
            assert client.get("/api/health", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "localhost.evil.example", ""):
            r = client.get("/api/gallery/0/image", headers={"host": host})
            one_line(r, 400, "not served here" if host else "no Host header", "--allowed-host")
            assert r.headers["content-type"] == "application/json"
    hosts = allowed_hosts("0.0.0.0", ["cam.lan", "Gate.Example:8000"])
    assert {"cam.lan", "gate.example", "127.0.0.1", "localhost", "::1"} == hosts
    assert allowed_hosts("192.168.1.5") >= {"192.168.1.5", "localhost"}
    with local_client(create_app(store, net, hosts=hosts)) as client:
        assert client.get("/api/health", headers={"host": "cam.lan:8000"}).status_code == 200
        assert client.get("/api/health", headers={"host": "evil.example"}).status_code == 400


# --------------------------------------------------------------------------- ids, paths


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_ids_past_2_63_are_a_404_not_a_500(tiny_index, net, tmp_path, kind):
    if kind == "folder":
        store, _ = add_features(tmp_path / "g", FeatureSet.load(tiny_index["features"]))
    else:
        store = NpzStore.load(tiny_index["index"])
    app = create_app(store, net)
    with local_client(app, raise_server_exceptions=False) as client:
        for text in (str(2**63), str(2**64 + 5), str(-(2**63) - 1), "-1", str(10**30)):
            for route in ("image", "frame"):
                one_line(client.get(f"/api/gallery/{text}/{route}"), 404, "no gallery item")
            one_line(client.get(f"/api/timeline/{text}"), 404, "no gallery item")
            r = client.post("/api/search/image", data={"gallery_id": text})
            one_line(r, 404, "no gallery item")
        for text in ("abc", "1.5", "9" * 5000):
            detail = one_line(client.get(f"/api/gallery/{text}/image"), 422, "item_id")
            assert len(detail) < 300
            one_line(client.post("/api/search/image", data={"gallery_id": text}), 422)


def test_errors_name_no_server_paths(tiny_index, net, tmp_path, monkeypatch):
    """A frame that is gone from a MOTChallenge folder, a crop that is gone, a store error:
    each named by its base name, never the absolute path."""
    from tests.footage_helpers import default_walkers, write_mot_folder

    sequence = write_mot_folder(tmp_path / "deep" / "seq", default_walkers(), frames=4)
    (sequence / "img1" / "000003.jpg").unlink()
    store = tracked_store(tiny_index["features"])
    row = store.get(store.ids()[:1], vectors=True)
    row.source, row.frame = [str(sequence)], np.array([3])
    row.path = [str(tmp_path / "deep" / "gone.jpg")]
    store.add(row)
    item = int(store.ids().max())
    with local_client(create_app(Gallery(store, net)), raise_server_exceptions=False) as client:
        frame = one_line(client.get(f"/api/gallery/{item}/frame"), 404, "000003.jpg")
        image = one_line(client.get(f"/api/gallery/{item}/image"), 404, "missing")

        def broken(*args, **kwargs):
            from cerberus.store import StoreError

            raise StoreError(f"{tmp_path}/deep/items.sqlite: database is locked")

        monkeypatch.setattr(store, "search", broken)
        r = client.post("/api/search/attributes", json={"attributes": {"gender": "male"}})
        locked = one_line(r, 400, "items.sqlite: database is locked")
    for detail in (frame, image, locked):
        assert str(tmp_path) not in detail and "/deep/" not in detail, detail


@pytest.mark.parametrize(
    "field", ["cameras", "after", "before"],
)
def test_camera_and_time_errors_cut_the_echoed_input(tiny_index, net, field):
    long = "7" * 50_000
    store = tracked_store(tiny_index["features"])
    body = {"attributes": {"gender": "male"}, field: [long] if field == "cameras" else long}
    with local_client(create_app(Gallery(store, net))) as client:
        r = client.post("/api/search/attributes", json=body)
        detail = one_line(r, 400, "777", "…")
        assert len(detail) < 300 and "7" * 100 not in detail
        query = {"camera" if field == "cameras" else field: long}
        detail = one_line(client.get("/api/timeline/0", params=query), 400, "…")
        assert len(detail) < 300


# --------------------------------------------------------------------------- bodies


def test_bodies_the_parser_gives_up_on_get_a_line_and_column(tiny_index, net):
    store = NpzStore.load(tiny_index["index"])
    json_type = {"content-type": "application/json"}
    with local_client(create_app(store, net)) as client:
        post = lambda body: client.post(  # noqa: E731
            "/api/search/attributes", content=body, headers=json_type
        )
        r = post(b'{"attributes":\n  {"gender": "\xff\xfe"}}')
        detail = one_line(r, 422, "request body is not valid JSON", "UTF-8", "line 2 column 15")
        assert "error parsing the body" not in detail
        deep = b'{"attributes": ' + b"[" * 20000 + b"]" * 20000 + b"}"
        r = post(deep)
        one_line(r, 422, "request body is not valid JSON", "nested", "line 1 column")


# --------------------------------------------------------------------------- decodes


def test_concurrent_decodes_hold_at_most_the_pixel_budget(tiny_index, net, monkeypatch):
    """Uploads decode only while their pixels fit the server's budget (twice the pixel
    limit): with 12 uploads at once of 200 x 200 pixels and a limit of 200 x 200, at most 2
    are decoded (or held decoded) at any moment, and every one is answered."""
    import httpx

    import cerberus.web.uploads as uploads

    real = uploads.to_rgb8
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def counted(image):
        with lock:
            state["now"] += image.width * image.height
            state["peak"] = max(state["peak"], state["now"])
        try:
            time.sleep(0.05)  # decodes that could overlap do
            return real(image)
        finally:
            with lock:
                state["now"] -= image.width * image.height

    monkeypatch.setattr(uploads, "to_rgb8", counted)
    store = NpzStore.load(tiny_index["index"])
    app = create_app(store, net, limits=Limits(max_pixels=200 * 200))
    png = image_bytes("PNG", size=(200, 200))
    answers: list[int] = []
    with background_server(app) as url:

        def one() -> None:
            r = httpx.post(f"{url}/api/describe", files={"image": ("a.png", png)}, timeout=120)
            answers.append(r.status_code)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert answers == [200] * 12
    assert 0 < state["peak"] <= 2 * 200 * 200, state
    assert app.state.service.budget.peak <= 2 * 200 * 200


# --------------------------------------------------------------------------- thumbnails


def test_missing_thumbnails_are_said_once(tiny_index, net, tmp_path, caplog):
    """A gallery whose crop files are gone: rows carry no thumbnail URL (no 404 per card),
    the answer counts them, and the server log says so once."""
    import shutil

    crops = tmp_path / "crops"
    shutil.copytree(Path(tiny_index["data"]) / "bounding_box_test", crops)
    feats = FeatureSet.load(tiny_index["features"])
    feats.paths = [str(crops / Path(p).name) for p in feats.paths]
    store, _ = add_features(tmp_path / "g", feats)
    shutil.rmtree(crops)
    body = {"attributes": {"gender": "male"}, "k": 5}
    with local_client(create_app(Gallery(store, net))) as client, caplog.at_level("WARNING"):
        for _ in range(3):
            r = client.post("/api/search/attributes", json=body)
            assert r.status_code == 200, r.text
            found = r.json()
            assert found["thumbnails_missing"] == 5
            assert all(row["thumbnail"] is None for row in found["results"])
        timeline = client.get(f"/api/timeline/{found['results'][0]['id']}").json()
        assert timeline["thumbnails_missing"] >= 1
        assert all(s["thumbnail"] is None for s in timeline["sightings"])
    said = [r for r in caplog.records if "thumbnails are missing" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path) not in said[0].getMessage()
    script = (Path(__file__).parents[2] / "src/cerberus/web/static/app.js").read_text()
    assert "thumbnails_missing" in script


# --------------------------------------------------------------------------- the server


def test_a_connection_that_sends_no_headers_is_closed(tiny_index, net):
    from cerberus.web.app import background_server as serve

    store = NpzStore.load(tiny_index["index"])
    with serve(create_app(store, net), header_timeout=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = socket.create_connection((host, int(port)), timeout=10)
        trickle = socket.create_connection((host, int(port)), timeout=10)
        trickle.sendall(b"GET /api/health HTTP/1.1\r\n")  # headers never finished
        start = time.monotonic()
        assert idle.recv(1) == b"" and trickle.recv(4096) == b""  # closed by the server
        assert time.monotonic() - start < 8
        idle.close()
        trickle.close()
        with socket.create_connection((host, int(port)), timeout=10) as ok:  # a real request
            ok.sendall(f"GET /api/health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert ok.recv(4096).startswith(b"HTTP/1.1 200")


def test_serve_on_a_port_in_use_is_one_line_and_says_nothing_else(tiny_index):
    from tests.web.test_app import cerberus

    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        found = cerberus(
            "serve", "--index", tiny_index["index"], "--checkpoint", tiny_index["ckpt"],
            "--device", "cpu", "--port", str(port),
        )  # fmt: skip
    finally:
        taken.close()
    assert found.returncode == 2, (found.stdout, found.stderr)
    assert "serving" not in found.stdout and found.stdout.strip() == ""
    lines = found.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--port {port}" in lines[0] and "in use" in lines[0]


def test_image_folders_cover_later_adds_and_other_thumbnail_folders(tmp_path):
    """Crops added later from another folder are served through their source (that folder);
    an ingest into an existing gallery with another ``--thumbs`` writes into a folder named
    after the source and camera, which is served; a row pointing elsewhere is not."""
    from cerberus.footage.ingest import thumbs_folder
    from cerberus.web.images import image_folders

    first, later, other = tmp_path / "first", tmp_path / "later", tmp_path / "other"
    for folder in (first, later, other):
        folder.mkdir()
    meta = {"roots": [str(first)]}
    crop = {"source": str(later), "frame": None, "path": str(later / "a.jpg"), "camera": None}
    assert image_folders(None, meta, crop) == [first, later]
    thumbs = thumbs_folder(other, "/videos/door.mp4", "door")
    thumbs.mkdir(parents=True)
    frame = {"source": "/videos/door.mp4", "frame": 4, "camera": "door",
             "path": str(thumbs / "t1_f4.jpg")}  # fmt: skip
    assert image_folders(None, meta, frame) == [first, thumbs]
    elsewhere = {**frame, "path": str(other / "x.jpg")}
    assert image_folders(None, meta, elsewhere) == [first]
    assert image_folders(None, {}, crop) is None  # a gallery from before roots
