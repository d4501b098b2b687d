"""The person-search page in headless Chromium: the system's ``chromium`` (Debian
package) driven by Playwright, no browser download. Run by ``make test-browser``, not by
``make test``: ``pytest -m browser``.

On a tiny synthetic index: the page loads its choices from the schema, an attribute search
and a photo search show ranked crops with score, camera and predicted attributes, a click on a
result searches with that crop, and a bad upload shows the server's one-line reason. On a
gallery with cameras, times and tracks: a search filtered by camera and time window, per
track, and the timeline of a result ("where else was this person?"). On a gallery ingested
from synthetic footage: a search by camera, per track, and the source frame of a result.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cerberus.attributes.schema import GROUP_NAMES
from cerberus.inference.embed import InferenceModel
from cerberus.search import DEFAULT_THRESHOLD, Gallery
from cerberus.store.npz import NpzStore
from cerberus.web.app import background_server, create_app
from tests.conftest import tracked_store

pytestmark = pytest.mark.browser

K = 5


def chromium_path() -> str:
    """The system Chromium: ``$CERBERUS_CHROMIUM``, else ``chromium`` on the PATH."""
    found = os.environ.get("CERBERUS_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no chromium on the PATH: apt-get install chromium (or set CERBERUS_CHROMIUM)")
    return found


@pytest.fixture(scope="module")
def page_url(tiny_index):
    gallery = NpzStore.load(tiny_index["index"])
    net = InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)
    with background_server(create_app(gallery, net)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, page_url):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.get_by_label("Results to show").fill(str(K))
    yield page
    assert not errors, errors  # no script error on the page
    context.close()


def cards(page):
    return page.locator("#result-list > li")


def wait_for_results(page, what: str) -> None:
    page.wait_for_function(
        "what => document.getElementById('status').textContent.includes(what)",
        arg=f"results for {what}",
        timeout=30_000,
    )


def check_cards(page) -> None:
    assert cards(page).count() == K
    first = cards(page).first
    text = first.inner_text()
    assert "#1" in text and "score" in text and "camera" in text
    assert first.locator(".attributes li").count() > 0  # predicted attributes
    alt = first.locator("img").get_attribute("alt")
    assert alt.startswith("Rank 1: gallery crop")
    # every thumbnail loaded (served by id)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#result-list img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )


def test_attribute_search_in_the_page(page):
    legends = page.locator("#attr-groups legend").all_inner_texts()
    assert [x.lower() for x in legends] == list(GROUP_NAMES.values())
    # every choice has a label and starts at "any"
    gender = page.get_by_label("gender", exact=True)
    assert gender.input_value() == ""
    gender.select_option("female")
    page.get_by_label("upper color").select_option("red")
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    check_cards(page)
    query = page.locator("#query").inner_text()
    assert "gender: female" in query and "upper.color: red" in query


def test_keyboard_only_search(page):
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.keyboard.press("Tab")  # the first stop skips to the results
    assert page.evaluate("document.activeElement.textContent") == "Skip to results"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "results"
    page.get_by_label("Results to show").fill(str(K))
    page.get_by_label("hat", exact=True).focus()
    page.keyboard.press("ArrowDown")  # "any" -> the first value
    assert page.get_by_label("hat", exact=True).input_value() != ""
    page.get_by_role("button", name="Search by description").focus()
    page.keyboard.press("Enter")
    wait_for_results(page, "the description")
    assert cards(page).count() == K


def test_photo_search_then_click_a_result(page, tiny_index, tmp_path):
    page.set_input_files("#photo-input", str(tiny_index["query"]))
    wait_for_results(page, "the photo")
    check_cards(page)
    assert page.locator("#query img").get_attribute("alt") == "Query photo"
    assert page.locator("#query li").count() > 0  # the photo's predicted attributes

    second = cards(page).nth(1)
    crop = second.locator("img").get_attribute("alt").split("gallery crop ")[1].split(",")[0]
    second.locator("button").press("Enter")  # a result is a button: keyboard or click
    wait_for_results(page, f"gallery crop {crop}")
    alts = [c.locator("img").get_attribute("alt") for c in cards(page).all()]
    assert alts and not any(f"gallery crop {crop}," in a for a in alts)  # left out
    assert "left out of its own results" in page.locator("#query").inner_text()

    shot = Path(os.environ.get("CERBERUS_SCREENSHOT") or tmp_path / "serve.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_bad_upload_shows_the_reason_and_the_page_goes_on(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.set_input_files("#photo-input", str(bad))
    page.wait_for_function(
        "() => document.getElementById('status').classList.contains('error')", timeout=30_000
    )
    assert "400: not an image" in page.locator("#status").inner_text()
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    assert cards(page).count() == K


@pytest.fixture(scope="module")
def tracked_url(tiny_index):
    net = InferenceModel.from_checkpoint(tiny_index["ckpt"], device="cpu", num_workers=0)
    gallery = Gallery(tracked_store(tiny_index["features"]), net)
    with background_server(create_app(gallery)) as url:
        yield url


def test_filtered_search_per_track_and_timeline(browser, tracked_url):
    """Cameras and a time window (UTC) filter a description search; per track gives one card
    per track; "Where else?" lays the person's sightings out by camera and time."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(tracked_url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.get_by_label("Results to show").fill("20")
    boxes = page.locator("#camera-list input")
    assert boxes.count() >= 3
    for camera in boxes.evaluate_all("bs => bs.map(b => b.value)"):
        if camera != "c2":
            page.get_by_label(camera, exact=True).uncheck()
    page.get_by_label("c2", exact=True).uncheck()  # no camera at all: said, not searched
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    assert page.locator("#status").inner_text() == "Tick at least one camera."
    page.get_by_label("c2", exact=True).check()
    page.get_by_label("From").fill("2026-09-21T14:14:20")  # T_GALLERY + 60 s, UTC
    page.get_by_label("Until").fill("2026-09-21T14:18:20")  # T_GALLERY + 300 s
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    n = cards(page).count()
    assert n > 0
    for card in cards(page).all():
        assert "camera c2" in card.inner_text()
        when = card.locator(".when").inner_text()
        assert "2026-09-21T14:14:20" <= when < "2026-09-21T14:18:20", when

    page.get_by_label("One result per track").check()
    page.get_by_role("button", name="Search by description").click()
    page.wait_for_function("() => document.querySelector('#result-list .track') !== null")
    tracks = cards(page).count()
    assert 0 < tracks <= n and "track of" in cards(page).first.inner_text()

    for camera in boxes.evaluate_all("bs => bs.map(b => b.value)"):  # every camera again
        page.get_by_label(camera, exact=True).check()
    page.get_by_label("From").fill("")
    page.get_by_label("Until").fill("")
    first = cards(page).first
    item = first.locator("img").get_attribute("alt").split("gallery crop ")[1].split(",")[0]
    first.get_by_role("link", name="Where else").click()
    page.wait_for_function(
        "() => document.getElementById('timeline-status').textContent.includes('sightings of')",
        timeout=30_000,
    )
    want = page.request.get(f"{tracked_url}/api/timeline/{item}").json()["sightings"]
    marks = page.locator("#timeline-lanes .mark")
    assert marks.count() == len(want) > 0
    lanes = page.locator("#timeline-lanes .lane-name").all_inner_texts()
    assert lanes == sorted({s["camera"] for s in want})
    assert page.locator("#timeline-lanes .mark.query").count() == 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('#timeline-lanes img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=10_000,
    )
    assert not errors, errors
    context.close()


@pytest.fixture(scope="module")
def footage_url(tiny_index, tmp_path_factory):
    """A gallery ingested from tiny synthetic footage (two cameras; the ground-truth boxes
    without their ids as detections), served."""

    from typer.testing import CliRunner

    from cerberus.cli import app

    root = tmp_path_factory.mktemp("footage")
    synth = ["synth", "footage", "--out", str(root / "f"), "--cameras", "2", "--seconds", "6",
             "--people", "4", "--size", "320x180"]  # fmt: skip
    result = CliRunner().invoke(app, synth)
    assert result.exit_code == 0, result.output
    manifest = json.loads((root / "f" / "footage.json").read_text())
    gallery = root / "gallery"
    for cam in manifest["cameras"]:
        rows = [
            ",".join([f[0], "-1", *f[2:]])
            for f in (x.split(",") for x in (root / "f" / cam["gt"]).read_text().splitlines())
        ]
        dets = root / f"{cam['name']}.txt"
        dets.write_text("\n".join(rows) + "\n")
        ingest = ["ingest", str(root / "f" / cam["video"]), "--camera", cam["name"],
                  "--gallery", str(gallery), "--start", cam["start"], "--detections", str(dets),
                  "--checkpoint", str(tiny_index["ckpt"]), "--device", "cpu"]  # fmt: skip
        result = CliRunner().invoke(app, ingest)
        assert result.exit_code == 0, result.output
    add_paths(gallery)
    with background_server(create_app(Gallery.open(gallery, device="cpu"))) as url:
        yield url, manifest


def add_paths(folder: Path) -> None:
    """Give every track of a gallery a path written through the store: its crops' boxes
    (detected) and on the frames between them boxes interpolated linearly (predicted); each
    source is replaced by the same crops with their paths."""
    import numpy as np

    from cerberus.store import Filter, TrackPath
    from cerberus.store.local import LocalStore

    with LocalStore.open(folder) as store:
        for source in store.sources():
            items = store.get(store.ids(Filter(sources=frozenset({source.name}))))
            paths = []
            for t in np.unique(items.track):
                rows = np.flatnonzero(items.track == t)
                f, keep = np.unique(items.frame[rows], return_index=True)
                box = items.box[rows[keep]]
                frames = np.arange(f[0], f[-1] + 1)
                boxes = np.stack([np.interp(frames, f, box[:, k]) for k in range(4)], axis=1)
                camera = items.camera[rows[0]]
                paths.append(
                    TrackPath(source.name, camera, int(t), frames, boxes, np.isin(frames, f))
                )
            store.add(items, replace=True, paths=paths)


def test_search_ingested_footage_by_camera_and_see_the_frame(browser, footage_url):
    """The page over ingested footage: one camera ticked, per track; every card is of that
    camera and links to its source frame (a JPEG the server decodes from the video)."""
    url, manifest = footage_url
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    names = [c["name"] for c in manifest["cameras"]]
    boxes = page.locator("#camera-list input")
    assert sorted(boxes.evaluate_all("bs => bs.map(b => b.value)")) == sorted(names)
    page.get_by_label(names[1], exact=True).uncheck()
    page.get_by_label("One result per track").check()
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    page.wait_for_function("() => document.querySelector('#result-list .track') !== null")
    assert cards(page).count() > 0
    for card in cards(page).all():
        assert f"camera {names[0]}" in card.inner_text()
    link = cards(page).first.locator("a.frame")
    response = page.request.get(url + link.get_attribute("href"))
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"

    # the frame opens below the results with its track's path drawn on it
    item = link.get_attribute("href").split("/")[-2]
    link.click()
    page.wait_for_selector("#frame-figure svg", timeout=20_000)
    track = page.request.get(f"{url}/api/gallery/{item}/track").json()["track"]
    path, detected = track["path"], track["path_detected"]
    assert len(path) > 2 and not all(detected)  # frames between crops: predicted
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('#frame-figure polyline')].map(p => ({
            points: p.getAttribute('points').trim().split(/\\s+/).length,
            dashed: p.classList.contains('predicted'),
            dash: getComputedStyle(p).strokeDasharray }))"""
    )
    kinds = detected[1:]  # a segment is of the kind of the box it ends at
    runs = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert [d["dashed"] for d in drawn] == [not k for k in runs]
    assert sum(d["points"] for d in drawn) == len(path) - 1 + len(runs)
    assert all((d["dash"] != "none") == d["dashed"] for d in drawn)
    assert page.locator("#frame-figure svg rect.track-box").count() == 1
    assert page.locator("#frame-figure svg").get_attribute("data-points") == str(len(path))
    status = page.locator("#frame-status").inner_text()
    assert f"Track {track['track']}: {len(path)} boxes" in status
    assert not errors, errors
    context.close()


def _fresh_page(browser, url: str, width: int, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def _overlapping(rects: list[dict]) -> list[tuple[int, int]]:
    """Pairs of boxes (``{x, y, w, h}`` in pixels) that share some area."""
    return [
        (i, j)
        for i, a in enumerate(rects)
        for j, b in enumerate(rects[:i])
        if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]
    ]  # fmt: skip


MARK_RECTS = """sel => [...document.querySelectorAll(sel)].map(m => {
    const r = m.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })"""

CAMERAS = ["gate 1", "gate-1", "é", "ü", "caméra"]


def test_camera_ids_filters_said_failures_cleared_and_timeline_spread(browser, page_url):
    """Camera boxes have one id each and their own label ("gate 1" / "gate-1", non-ASCII
    names of one length); the status says the filters a search ran with; a failed search and a
    new search clear the old results and timeline; close sightings and sightings without a
    time do not overlap on the timeline; From keeps its seconds at 1280 px."""
    context, page, errors = _fresh_page(browser, page_url, 1280)

    def gallery(route):
        route.fulfill(json={**route.fetch().json(), "cameras": CAMERAS})

    page.route("**/api/gallery", gallery)
    page.goto(page_url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.get_by_label("Results to show").fill(str(K))
    ids = page.locator("#camera-list input").evaluate_all("bs => bs.map(b => b.id)")
    assert len(ids) == len(CAMERAS) == len(set(ids))
    bound = page.locator("#camera-list label").evaluate_all(
        "ls => ls.map(l => [l.textContent, l.control && l.control.value])"
    )
    assert bound == [[c, c] for c in CAMERAS]
    page.get_by_label("gate 1", exact=True).uncheck()
    page.get_by_label("é", exact=True).uncheck()
    checked = page.locator("#camera-list input").evaluate_all("bs => bs.map(b => b.checked)")
    assert checked == [False, True, False, True, True]

    # the heading says which filters ran; From keeps its seconds and shows them whole
    page.get_by_label("From").fill("2000-01-02T03:04:05")
    assert page.get_by_label("From").input_value() == "2000-01-02T03:04:05"
    # room for the date and time with seconds (in the input's own font) and the picker icon
    room = page.get_by_label("From").evaluate(
        """i => { const s = document.createElement("span"); s.style.font = getComputedStyle(i).font;
        s.textContent = "01/02/2000, 03:04:05 AM"; document.body.append(s);
        const need = s.getBoundingClientRect().width + 32; s.remove();
        return [need, i.clientWidth]; }"""
    )
    assert room[0] <= room[1], room
    page.get_by_label("One result per track").check()
    page.get_by_label("gender", exact=True).select_option("male")
    sent = []

    def unfiltered(route):  # the made-up cameras are not in the gallery: searched without
        body = route.request.post_data_json
        sent.append(body)
        plain = {"attributes": body["attributes"], "k": body["k"]}
        route.fulfill(response=route.fetch(post_data=json.dumps(plain)))

    page.route("**/api/search/attributes", unfiltered)
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description (")
    page.unroute("**/api/search/attributes")
    assert sent[0]["cameras"] == ["gate-1", "ü", "caméra"] and sent[0]["per_track"] is True
    said = page.locator("#status").inner_text()
    assert "cameras gate-1, ü, caméra" in said, said
    assert "from 2000-01-02T03:04:05Z" in said and "one per track" in said, said

    # no filter: results; then a failed search clears them
    for camera in CAMERAS:
        page.get_by_label(camera, exact=True).check()
    page.get_by_label("From").fill("")
    page.get_by_label("One result per track").uncheck()
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description.")
    assert cards(page).count() == K
    first = cards(page).first.locator("img").get_attribute("alt")
    item = int(first.split("gallery crop ")[1].split(",")[0])

    t0 = "2026-09-21T14:14:20"
    sightings = [
        {"item": item + i, "camera": "gate 1", "start": f"{t0[:-2]}{20 + i:02d}+00:00",
         "end": f"{t0[:-2]}{20 + i:02d}+00:00", "score": 0.9, "count": 1, "thumbnail": None,
         "query": i == 0}
        for i in range(6)
    ] + [
        {"item": item + 10 + i, "camera": "gate 1", "start": None, "end": None, "score": 0.5,
         "count": 1, "thumbnail": None, "query": False}
        for i in range(3)
    ] + [
        {"item": item + 20, "camera": "gate-1", "start": "2026-09-21T15:14:20+00:00",
         "end": "2026-09-21T15:14:20+00:00", "score": 0.8, "count": 2, "thumbnail": None,
         "query": False}
    ]  # fmt: skip
    page.route(
        "**/api/timeline/**",
        lambda route: route.fulfill(json={"sightings": sightings, "rule": "test"}),
    )
    cards(page).first.get_by_role("link", name="Where else").click()
    page.wait_for_function(
        "() => document.getElementById('timeline-status').textContent.includes('sightings of')"
    )
    assert page.locator("#timeline-lanes .mark").count() == len(sightings)
    rects = page.evaluate(MARK_RECTS, "#timeline-lanes .mark")
    assert not _overlapping(rects), _overlapping(rects)

    # a new search clears the old timeline
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description.")
    assert page.locator("#timeline").is_hidden()
    assert page.locator("#timeline-lanes .mark").count() == 0

    page.route(
        "**/api/search/attributes",
        lambda route: route.fulfill(status=500, json={"detail": "the model broke"}),
    )
    page.get_by_role("button", name="Search by description").click()
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert "the model broke" in page.locator("#status").inner_text()
    assert cards(page).count() == 0
    assert page.locator("#query").is_hidden()
    assert not errors, errors
    context.close()


def test_results_come_into_view_on_a_narrow_window(browser, page_url):
    """On a 420 px window the queries sit above the results: a search brings them into view."""
    context, page, errors = _fresh_page(browser, page_url, 420, 800)
    page.goto(page_url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    top = page.evaluate("() => document.getElementById('results').getBoundingClientRect().top")
    assert 0 <= top < 800 / 2, top
    assert not errors, errors
    context.close()


def test_uncalibrated_timeline_shows_candidates_apart(browser, tracked_url):
    """Item 16: a model without a calibration. "Where else?" lays out only the person's own
    track and the crops above the default threshold as sightings; the rest of the top crops
    are under "Candidates, not sightings", apart and drawn differently (dashed, faded), and
    a new search clears them."""
    context, page, errors = _fresh_page(browser, tracked_url, 1366)
    page.goto(tracked_url)
    page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    page.get_by_label("Results to show").fill("5")
    page.get_by_label("gender", exact=True).select_option("male")
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    first = cards(page).first
    item = first.locator("img").get_attribute("alt").split("gallery crop ")[1].split(",")[0]
    first.get_by_role("link", name="Where else").click()
    page.wait_for_function(
        "() => document.getElementById('timeline-status').textContent.includes('sightings of')",
        timeout=30_000,
    )
    found = page.request.get(f"{tracked_url}/api/timeline/{item}").json()
    assert found["calibrated"] is False and found["threshold"] == DEFAULT_THRESHOLD
    sightings, candidates = found["sightings"], found["candidates"]
    assert sightings and candidates  # the tiny model scores most crops below the default
    assert all(s["query"] or s["score"] > DEFAULT_THRESHOLD for s in sightings)
    assert all(s["score"] <= DEFAULT_THRESHOLD for s in candidates)
    # the sightings' lanes hold the sightings only, the query's track among them
    lanes = page.locator("#timeline-lanes .mark")
    assert lanes.count() == len(sightings)
    assert page.locator("#timeline-lanes .mark.candidate").count() == 0
    assert page.locator("#timeline-lanes .mark.query").count() == 1
    shown = sorted(int(x) for x in lanes.evaluate_all("ms => ms.map(m => m.dataset.item)"))
    assert shown == sorted(s["item"] for s in sightings)
    # the candidates: their own box, said to be no sightings, every mark dashed and faded
    box = page.locator("#timeline-candidates")
    assert box.is_visible()
    assert page.get_by_role("heading", name="Candidates, not sightings").is_visible()
    note = page.locator("#candidates-note").inner_text()
    assert f"{len(candidates)} groups" in note and f"default {DEFAULT_THRESHOLD:g}" in note
    marks = page.locator("#candidate-lanes .mark.candidate")
    assert marks.count() == len(candidates) == page.locator("#candidate-lanes .mark").count()
    styles = page.evaluate(
        """() => ({
          candidate: [...document.querySelectorAll('#candidate-lanes .mark button')]
            .map(b => getComputedStyle(b).borderTopStyle),
          sighting: [...document.querySelectorAll('#timeline-lanes .mark button')]
            .map(b => getComputedStyle(b).borderTopStyle),
          faded: [...document.querySelectorAll('#candidate-lanes .mark img')]
            .map(i => Number(getComputedStyle(i).opacity)),
        })"""
    )
    assert set(styles["candidate"]) == {"dashed"} and set(styles["sighting"]) == {"solid"}
    assert all(x < 1 for x in styles["faded"])
    label = marks.first.locator("button").get_attribute("aria-label")
    assert label.startswith("Candidate, not a sighting")
    status = page.locator("#timeline-status").inner_text()
    assert f"{len(sightings)} sightings" in status and f"{len(candidates)} candidates" in status
    # a new search clears the timeline and its candidates
    page.get_by_role("button", name="Search by description").click()
    wait_for_results(page, "the description")
    assert box.is_hidden() and page.locator("#candidate-lanes .mark").count() == 0
    assert not errors, errors
    context.close()
