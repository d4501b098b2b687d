"""The person-search server: its JSON API through FastAPI's test client on a tiny
index, every kind of bad input answered by a one-line 4xx, and the ``serve`` command's errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cerberus.attributes.schema import GROUPS
from cerberus.inference.embed import InferenceModel
from cerberus.inference.scoring import attribute_query_vectors, parse_attribute_query
from cerberus.search import search_images
from cerberus.store.npz import NpzIndex, NpzStore
from cerberus.web.app import MAX_K, Limits, check_host, create_app, schema_json
from tests.web import local_client


@pytest.fixture(scope="module")
def served(tiny_index):
    gallery = NpzIndex.load(tiny_index["index"])  # the file's facts, to check answers with
    store = NpzStore(gallery)
    net = InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)
    app = create_app(store, net)
    with local_client(app, raise_server_exceptions=False) as client:
        yield {"client": client, "gallery": gallery, "store": store, "net": net, "app": app,
               **tiny_index}  # fmt: skip


def png_bytes(size=(32, 64), colour=(200, 30, 30), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


def assert_one_line_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    for w in words:
        assert w in detail, detail
    return detail


def test_health_schema_and_openapi(served):
    client, gallery = served["client"], served["gallery"]
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["gallery_size"] == len(gallery)
    assert health["schema"] == "market1501" and health["max_k"] == MAX_K
    schema = client.get("/api/schema").json()
    assert [g["key"] for g in schema["groups"]] == list(GROUPS)
    names = [a["name"] for g in schema["groups"] for a in g["attributes"]]
    assert sorted(names) == sorted(a.name for a in gallery.schema.attributes)
    for page in ("/docs", "/redoc"):  # they load Swagger / ReDoc from a CDN: left out
        assert client.get(page).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/search/image",
        "/api/search/attributes",
        "/api/describe",
        "/api/schema",
        "/api/health",
        "/api/gallery/{item_id}/image",
    ):
        assert path in paths


def test_schema_json_follows_the_schema(schema):
    """The page's choices come from the schema object alone: Market and Duke alike."""
    found = schema_json(schema)
    assert found["name"] == schema.name
    flat = [(a["name"], tuple(a["values"])) for g in found["groups"] for a in g["attributes"]]
    assert sorted(flat) == sorted((a.name, a.values) for a in schema.attributes)
    for g in found["groups"]:
        assert all(
            schema.attributes[schema.index(a["name"])].group == g["key"] for a in g["attributes"]
        )


def test_attribute_search_matches_the_index(served):
    client, gallery = served["client"], served["gallery"]
    text = {"gender": "female", "upper.color": "red", "backpack": "yes"}
    r = client.post("/api/search/attributes", json={"attributes": text, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    query = parse_attribute_query(text, gallery.schema)
    # the slow obvious answer: every item's best score over the query's SID combinations
    combos = attribute_query_vectors(query, gallery.prototypes).astype(np.float64)
    flat = gallery.index.reconstruct_n(0, gallery.index.ntotal).astype(np.float64)
    best = (flat @ combos.T).max(axis=1)
    order = np.lexsort((np.arange(len(best)), -best))[:5]
    assert [gallery.paths[x["id"]] for x in body["results"]] == [gallery.paths[i] for i in order]
    np.testing.assert_allclose([x["score"] for x in body["results"]], best[order], atol=1e-5)
    assert [x["rank"] for x in body["results"]] == [1, 2, 3, 4, 5]
    assert body["query"]["kind"] == "attributes" and "gender: female" in body["query"]["text"]
    row = body["results"][0]
    assert row["thumbnail"] == f"/api/gallery/{row['id']}/image" and "path" not in row
    assert len(row["attributes"]) == gallery.schema.num_attributes
    # "any" (an empty value) is left out; a partial group is allowed
    r = client.post("/api/search/attributes", json={"attributes": {"age": "old", "hat": ""}})
    assert r.status_code == 200 and len(r.json()["results"]) == min(10, len(gallery))


def test_photo_search_matches_the_command_line_path(served):
    client, gallery, net, query = (
        served["client"],
        served["gallery"],
        served["net"],
        served["query"],
    )
    r = client.post(
        "/api/search/image", files={"image": ("q.jpg", query.read_bytes())}, data={"k": 4}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    ((expected, said),) = search_images(served["store"], net, [query], 4)
    assert [gallery.paths[x["id"]] for x in body["results"]] == [e["path"] for e in expected]
    np.testing.assert_allclose(
        [x["score"] for x in body["results"]], [e["score"] for e in expected], atol=1e-4
    )
    groups = body["query"].pop("groups")  # how sure each predicted group is
    assert body["query"] == {"kind": "image", "text": said}
    assert [g["key"] for g in groups] == list(GROUPS)
    assert all(0 < g["certainty"] <= 1 and g["weak"] == (g["certainty"] < 0.5) for g in groups)
    assert all(x["correct"] is None for x in body["results"])  # an upload has no identity


def test_clicking_a_result_searches_with_that_crop(served):
    """The clicked crop is left out of its own results (it was rank 1, score 1.0,
    "same person"); the other crops come in the order a search with its file gives."""
    client, gallery, net = served["client"], served["gallery"], served["net"]
    r = client.post("/api/search/image", data={"gallery_id": 3, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["rank"] for x in body["results"]] == [1, 2, 3]
    assert 3 not in [x["id"] for x in body["results"]]
    assert body["query"]["id"] == 3 and body["query"]["excluded"] == 3
    ((by_file, _),) = search_images(served["store"], net, [Path(gallery.paths[3])], 4)
    others = [e for e in by_file if e["path"] != gallery.paths[3]][:3]
    assert [gallery.paths[x["id"]] for x in body["results"]] == [e["path"] for e in others]
    pid = int(gallery.pids[3])  # the gallery file name gives the query's identity
    assert [x["correct"] for x in body["results"]] == [x["pid"] == pid for x in body["results"]]


def test_result_attributes_without_stored_vectors(served):
    """An IVF index keeps no vectors to read back: the crops are embedded again, same answer."""
    from cerberus.inference.features import FeatureSet

    ivf = NpzStore.build(FeatureSet.load(served["features"]), kind="ivf", nlist=2)
    body = {"attributes": {"gender": "male"}, "k": 6}
    with local_client(create_app(ivf, served["net"])) as client:
        again = client.post("/api/search/attributes", json=body).json()["results"]
    first = served["client"].post("/api/search/attributes", json=body).json()["results"]
    said = {r["id"]: r["attributes"] for r in first}
    assert all(said[r["id"]] == r["attributes"] for r in again if r["id"] in said)
    assert all(len(r["attributes"]) == served["gallery"].schema.num_attributes for r in again)


def test_describe_and_thumbnails(served):
    client, gallery, query = served["client"], served["gallery"], served["query"]
    r = client.post("/api/describe", files={"image": ("q.jpg", query.read_bytes())})
    assert r.status_code == 200, r.text
    said = r.json()
    assert set(said["attributes"]) == {a.name for a in gallery.schema.attributes}
    assert set(said["confidence"]) == set(GROUPS) and len(said["phrases"]) == len(
        said["attributes"]
    )
    r = client.get("/api/gallery/0/image")
    assert r.status_code == 200 and r.content == Path(gallery.paths[0]).read_bytes()
    assert r.headers["content-type"] == "image/jpeg"


def test_page_and_static_files(served):
    client = served["client"]
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Content-Type-Options"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def truncated_jpeg() -> bytes:
    """A noisy JPEG cut in the middle of its image data (the header is intact)."""
    pixels = np.random.default_rng(0).integers(0, 255, (128, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "files, data, status, words",
    [
        ({"image": ("x.jpg", b"hello, not an image")}, {}, 400, ["not an image"]),
        ({"image": ("x.jpg", truncated_jpeg())}, {}, 400, ["truncated"]),
        ({"image": ("x.jpg", b"")}, {}, 400, ["empty"]),
        ({}, {}, 400, ["exactly one"]),
        ({"image": ("x.png", png_bytes())}, {"gallery_id": 1}, 400, ["exactly one"]),
        ({"image": ("x.png", png_bytes())}, {"k": 0}, 422, ["k"]),
        ({"image": ("x.png", png_bytes())}, {"k": MAX_K + 1}, 422, ["k", str(MAX_K)]),
        ({"image": ("x.png", png_bytes())}, {"k": "ten"}, 422, ["k"]),
        ({}, {"gallery_id": 10**6}, 404, ["no gallery item"]),
        ({}, {"gallery_id": -1}, 404, ["no gallery item"]),
    ],
    ids=[
        "not-image",
        "truncated",
        "empty-file",
        "nothing",
        "both",
        "k-zero",
        "k-too-big",
        "k-not-int",
        "id-past-end",
        "id-negative",
    ],
)
def test_bad_photo_searches_are_one_line_4xx(served, files, data, status, words):
    r = served["client"].post("/api/search/image", files=files, data=data)
    assert_one_line_error(r, status, *words)
    assert served["client"].get("/api/health").status_code == 200


def test_describe_refuses_non_images(served):
    r = served["client"].post("/api/describe", files={"image": ("x.jpg", truncated_jpeg())})
    assert_one_line_error(r, 400, "truncated")
    r = served["client"].post("/api/describe")
    assert_one_line_error(r, 422, "image")


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"attributes": {"colour": "red"}}, 400, ["unknown attribute", "colour", "valid:"]),
        ({"attributes": {"gender": "robot"}}, 400, ["no value", "robot", "female"]),
        ({"attributes": {}}, 400, ["empty"]),
        ({"attributes": {"gender": "", "hat": " "}}, 400, ["empty"]),
        ({"attributes": {"gender": "male"}, "k": 0}, 422, ["k"]),
        ({"attributes": {"gender": "male"}, "k": MAX_K + 1}, 422, ["k"]),
        ({"k": 3}, 422, ["attributes"]),
        ({"attributes": ["gender", "male"]}, 422, ["attributes"]),
        ({"attributes": {"gender": "male"}, "k": True}, 422, ["k", "integer"]),
        ({"attributes": {"gender": "male"}, "k": "5"}, 422, ["k", "integer"]),
        ({"attributes": {"gender": "male"}, "k": 5.0}, 422, ["k", "integer"]),
        ({"attributes": {"gender": "male"}, "per_track": "yes"}, 422, ["per_track", "boolean"]),
        ({"attributes": {"gender": "male"}, "per_track": 1}, 422, ["per_track", "boolean"]),
    ],
    ids=[
        "unknown-attribute",
        "unknown-value",
        "empty",
        "all-any",
        "k-zero",
        "k-too-big",
        "no-attributes",
        "not-a-dict",
        "k-true",
        "k-string",
        "k-float",
        "per-track-yes",
        "per-track-one",
    ],
)
def test_bad_attribute_searches_are_one_line_4xx(served, body, status, words):
    r = served["client"].post("/api/search/attributes", json=body)
    assert_one_line_error(r, status, *words)


def test_malformed_json_is_a_one_line_422(served):
    r = served["client"].post(
        "/api/search/attributes",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert_one_line_error(r, 422, "not valid JSON", "line 1 column 2")
    r = served["client"].post(
        "/api/search/attributes",
        content=b'{\n  "attributes": {"gender": "male",}\n}',
        headers={"content-type": "application/json"},
    )
    detail = assert_one_line_error(r, 422, "request body is not valid JSON", "line 2 column")
    assert "decode error" not in detail


@pytest.mark.parametrize(
    "route, content, content_type, expected",
    [
        ("/api/search/attributes", b'{"attributes": {"gender": "male"}}', "text/plain", "json"),
        ("/api/search/attributes", b"gender=male", None, "json"),
        ("/api/describe", b'{"image": "x"}', "application/json", "multipart/form-data"),
    ],
    ids=["json-as-text", "json-untyped", "upload-as-json"],
)
def test_a_body_of_the_wrong_content_type_names_the_expected_one(
    served, route, content, content_type, expected
):
    headers = {"content-type": content_type} if content_type else {}
    r = served["client"].post(route, content=content, headers=headers)
    detail = assert_one_line_error(r, 415, expected, route)
    assert (content_type or "no Content-Type") in detail


def test_a_form_without_a_file_is_not_a_content_type_error(served):
    """A urlencoded form (a gallery id, no file) is a form too: a bad field in it is a 422
    naming the field, not a complaint about the content type."""
    r = served["client"].post("/api/search/image", data={"gallery_id": 1, "k": 0})
    assert_one_line_error(r, 422, "k")
    r = served["client"].post("/api/search/image", data={"gallery_id": 1, "k": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_unknown_json_fields_are_refused(served):
    body = {"attributes": {"gender": "male"}, "k": 3, "padding": "x" * 1000}
    detail = assert_one_line_error(
        served["client"].post("/api/search/attributes", json=body), 422, "padding"
    )
    assert "x" * 100 not in detail


@pytest.mark.parametrize("where", ["name", "value"])
def test_input_echoed_in_an_error_is_cut(served, where):
    long = "q" * 50_000
    attributes = {long: "male"} if where == "name" else {"gender": long}
    r = served["client"].post("/api/search/attributes", json={"attributes": attributes})
    detail = assert_one_line_error(r, 400, "qqqq", "…")
    assert len(detail) < 2000 and "q" * 100 not in detail


def test_head_is_answered_like_get_without_a_body(served):
    client = served["client"]
    for path in ("/api/health", "/api/schema", "/api/gallery/0/image", "/", "/static/app.js"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200 == got.status_code, path
        assert head.content == b"" and got.content, path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["X-Content-Type-Options"] == "nosniff", path
    assert client.head("/api/search/attributes").status_code == 405  # a POST route


def test_size_limits_in_bytes_and_pixels(served):
    app = create_app(
        served["store"], served["net"], limits=Limits(max_bytes=2000, max_pixels=5000)
    )
    with local_client(app) as client:
        small = png_bytes(size=(30, 60))  # 1800 pixels, a few hundred bytes
        assert client.post("/api/describe", files={"image": ("s.png", small)}).status_code == 200
        wide = png_bytes(size=(100, 100))  # 10000 pixels, small file
        r = client.post("/api/describe", files={"image": ("w.png", wide)})
        assert_one_line_error(r, 413, "pixels", "5000")
        noisy = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(
            noisy, format="PNG"
        )  # 1600 pixels but about 5 kB
        r = client.post("/api/describe", files={"image": ("n.png", noisy.getvalue())})
        assert_one_line_error(r, 413, "2000 bytes")
        huge = b"x" * 200_000  # refused from its Content-Length before it is parsed
        r = client.post("/api/search/image", files={"image": ("h.png", huge)})
        assert_one_line_error(r, 413, "body")
        assert client.get("/api/health").status_code == 200


def test_pillow_limit_is_ours_for_each_decode(served, monkeypatch):
    """Pillow's own decompression-bomb limit (about 89 megapixels by default) is set to the
    server's ``max_pixels`` for each decode: an image under our limit is decoded even when it is
    over Pillow's global one, and one over ours is refused quoting ours."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's limit far under ours
    app = create_app(served["store"], served["net"], limits=Limits(max_pixels=50_000))
    with local_client(app) as client:
        ok = client.post("/api/describe", files={"image": ("p.png", png_bytes(size=(100, 100)))})
        assert ok.status_code == 200, ok.text  # 10000 pixels: over Pillow's 2x1000, under ours
        big = png_bytes(size=(400, 300))  # 120000 pixels, over twice ours
        r = client.post("/api/describe", files={"image": ("b.png", big)})
        assert_one_line_error(r, 413, "pixels", "50000")
    assert Image.MAX_IMAGE_PIXELS == 1000  # put back after each decode


def test_thumbnails_only_by_id(served):
    client, gallery = served["client"], served["gallery"]
    assert_one_line_error(client.get(f"/api/gallery/{len(gallery)}/image"), 404, "no gallery item")
    assert_one_line_error(client.get("/api/gallery/abc/image"), 422, "item_id")
    for path in (
        "/api/gallery/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/api/gallery/../../etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/..%2F..%2Fserve.py",
    ):
        r = client.get(path)
        assert r.status_code in (404, 422), path
        assert b"root:" not in r.content and b"create_app" not in r.content


def test_an_unexpected_error_is_a_one_line_500_and_serving_goes_on(served, monkeypatch):
    client, store = served["client"], served["app"].state.service.search.store

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nwith a second line")

    monkeypatch.setattr(store, "search", broken)  # the gallery store the page searches
    r = client.post("/api/search/attributes", json={"attributes": {"gender": "male"}})
    assert_one_line_error(r, 500, "internal error", "RuntimeError")
    monkeypatch.undo()
    r = client.post("/api/search/attributes", json={"attributes": {"gender": "male"}})
    assert r.status_code == 200


def test_refuses_a_model_the_index_was_not_built_with(served, monkeypatch):
    from cerberus.errors import CerberusError

    monkeypatch.setattr(served["net"], "_fingerprint", "0" * 64)
    with pytest.raises(CerberusError, match="rebuild the index"):
        create_app(served["store"], served["net"])


def test_host_warning(caplog):
    check_host("127.0.0.1")
    check_host("localhost")
    assert not caplog.records
    check_host("0.0.0.0")
    assert "anyone who can reach this machine" in caplog.text


def cerberus(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}from cerberus.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_serve_command_errors_are_one_line(tmp_path, served):
    missing = cerberus("serve", "--index", tmp_path / "none.npz")
    assert missing.returncode == 2 and "none.npz" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    no_fastapi = cerberus(
        "serve", "--index", served["index"], prelude="import sys; sys.modules['fastapi'] = None; "
    )
    assert no_fastapi.returncode == 2, no_fastapi.stderr
    assert "pip install 'cerberus-reid[serve]'" in no_fastapi.stderr
    assert len(no_fastapi.stderr.strip().splitlines()) == 1
    bad_port = cerberus(
        "serve", "--index", served["index"], "--checkpoint", served["ckpt"], "--port", "70000",
        "--device", "cpu",
    )  # fmt: skip
    assert bad_port.returncode == 2 and "--port 70000" in bad_port.stderr


def test_the_page_runs_on_a_weights_pair_alone(served, tmp_path):
    """The web page needs nothing but the weights pair (and the gallery index)."""
    from cerberus.inference.export import export_weights

    weights, _ = export_weights(served["ckpt"], tmp_path / "model.safetensors")
    net = InferenceModel.from_checkpoint(weights, device="cpu", num_workers=0)
    query = served["query"].read_bytes()
    with local_client(create_app(served["store"], net)) as client:
        assert client.get("/api/health").json()["status"] == "ok"
        r = client.post("/api/search/image", files={"image": ("q.jpg", query)}, data={"k": 4})
        assert r.status_code == 200, r.text
    expected = served["client"].post(
        "/api/search/image", files={"image": ("q.jpg", query)}, data={"k": 4}
    )
    assert [x["id"] for x in r.json()["results"]] == [x["id"] for x in expected.json()["results"]]


def test_photo_search_says_same_person_at_the_calibrated_threshold(served):
    """With a calibrated model every photo-search result says "same person" exactly when its
    score is above the stored threshold, and the response names the operating point; without a
    calibration the verdict is absent (None), never guessed."""
    import dataclasses

    client, query = served["client"], served["query"].read_bytes()
    plain = client.post("/api/search/image", files={"image": ("q.jpg", query)}, data={"k": 6})
    assert plain.json()["operating_point"] is None
    assert all(r["same_person"] is None for r in plain.json()["results"])
    scores = sorted(r["score"] for r in plain.json()["results"])
    threshold = (scores[2] + scores[3]) / 2  # three results above, three below
    point = {"fpr_target": 1e-2, "threshold": threshold, "tpr": 0.9, "fpr": 0.01}
    cal = {"chosen_fpr": 1e-2, "points": [point], "split": "test", "num_different_pairs": 900}
    net = dataclasses.replace(served["net"], calibration=cal)
    with local_client(create_app(served["store"], net)) as calibrated:
        assert calibrated.get("/api/health").json()["calibrated"] is True
        r = calibrated.post("/api/search/image", files={"image": ("q.jpg", query)}, data={"k": 6})
        body = r.json()
        aps = calibrated.post("/api/search/attributes", json={"attributes": {"gender": "male"}})
    assert body["operating_point"]["threshold"] == threshold
    assert "FPR 1e-02" in body["operating_point"]["text"]
    said = [row["same_person"] for row in body["results"]]
    assert said == [row["score"] > threshold for row in body["results"]]
    assert said.count(True) == 3 and said.count(False) == 3
    assert "same_person" not in aps.json()["results"][0]  # a description is not a person


def counting(app):
    """``app`` wrapped in an ASGI layer that counts the request-body bytes the server hands
    to it (what it consumed); ``(wrapped, counter)``."""
    counter = {"bytes": 0}

    async def wrapped(scope, receive, send):
        async def counted():
            message = await receive()
            counter["bytes"] += len(message.get("body", b""))
            return message

        await app(scope, counted, send)

    return wrapped, counter


def stream_chunked(url: str, path: str, content_type: str, head: bytes, total: int):
    """POST ``head`` then ``b"x"`` up to ``total`` bytes with chunked transfer encoding (no
    Content-Length) from a generator of 64 KiB chunks, watching for an early answer after each
    chunk. Returns ``(status, bytes pulled from the generator before the answer)``."""
    import select
    import socket
    from urllib.parse import urlparse

    def body():
        yield head
        sent = len(head)
        while sent < total:
            yield b"x" * 65536
            sent += 65536

    where = urlparse(url)
    pulled = 0
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for chunk in body():
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the end of the body
                pulled += len(chunk)
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection after its answer
        answer = b""
        while b"\r\n" not in answer:
            part = sock.recv(4096)
            if not part:
                break
            answer += part
    return int(answer.split(b" ")[1]), pulled


@pytest.mark.parametrize("route", ["/api/describe", "/api/search/attributes"])
def test_a_chunked_body_over_the_limit_is_not_read(served, route):
    """A body without Content-Length (chunked) is counted as it is read; the server
    answers 413 once the route's limit is passed and reads no more of it, so neither a
    temporary file nor memory grows by the body's size."""
    from cerberus.web.app import MAX_JSON_BYTES, background_server, body_limit

    limits = Limits(max_bytes=2000)
    app, consumed = counting(create_app(served["store"], served["net"], limits=limits))
    total = 64 * 2**20
    if route == "/api/describe":
        content_type = "multipart/form-data; boundary=XyZ"
        head = b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
    else:
        content_type = "application/json"
        head = b'{"attributes": {"gender": "male"}, "k": 3, "note": "'
    limit = body_limit(route, limits)
    assert limit == (2000 + 64 * 1024 if route == "/api/describe" else MAX_JSON_BYTES)
    with background_server(app) as url:
        status, pulled = stream_chunked(url, route, content_type, head, total)
        assert status == 413
        assert consumed["bytes"] <= limit + 2**20, consumed  # not the 64 MiB sent
        assert pulled < total // 4, pulled  # the client was stopped early too
        with local_client(app) as client:  # and the server goes on serving
            assert client.get("/api/health").status_code == 200


def test_serve_checks_everything_before_saying_it_serves(tmp_path, served):
    """Bad numbers and a checkpoint the index was not built with fail in one line
    before the "serving ... on http://..." line is printed."""
    import torch

    common = ("serve", "--index", served["index"], "--device", "cpu")
    for option, value in (
        ("--port", "70000"),
        ("--port", "0"),
        ("--max-image-mb", "nan"),
        ("--max-image-mb", "inf"),
        ("--max-image-mb", "-1"),
        ("--max-pixels", "0"),
    ):
        found = cerberus(*common, option, value)
        assert found.returncode == 2, (option, value, found.stderr)
        assert f"{option} {value}" in found.stderr, found.stderr
        assert len(found.stderr.strip().splitlines()) == 1 and "bug" not in found.stderr
        assert "serving" not in found.stdout
    state = torch.load(served["ckpt"], map_location="cpu", weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 1.0
    other = tmp_path / "other.pt"
    torch.save(state, other)
    found = cerberus(*common, "--checkpoint", other, "--port", "8765")
    assert found.returncode == 2 and "rebuild the index" in found.stderr, found.stderr
    assert "serving" not in found.stdout


def test_page_says_the_clicked_crop_is_left_out_and_shows_certainty():
    from cerberus.web.app import web_folder

    script = (web_folder() / "app.js").read_text(encoding="utf-8")
    page = (web_folder() / "index.html").read_text(encoding="utf-8")
    assert "left out of its own results" in script and "left out of its own results" in page
    assert "query.groups" in script and "(weak)" in script and "row.calibrated_on" in script
