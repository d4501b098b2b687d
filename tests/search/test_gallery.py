"""The search layer over a gallery store (method §9.2): filters, per-track results checked
against a slow obvious grouping of every item, timelines, the read-only ``.npz`` view."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError
from cerberus.inference.features import FeatureSet
from cerberus.inference.scoring import (
    attribute_query_vectors,
    embed_features,
    parse_attribute_query,
)
from cerberus.search import DEFAULT_THRESHOLD, Gallery, StoreError, make_filter
from cerberus.search.tracks import group_keys, track_score, track_vector
from cerberus.store import NO_TRACK, Filter, GalleryInfo, Items, MemoryStore
from cerberus.store.npz import NpzStore

D = 4  # per part
T0 = 1_790_000_000.0
CAMERAS = ("c1", "c2", "c3", "c4")


def prototypes(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {g: rng.normal(size=(MARKET1501.num_sids[g], D)).astype(np.float32) for g in GROUPS}


def make_gallery(seed: int, n: int = 400, *, tracks: int = 25) -> tuple[Gallery, Items]:
    """A memory gallery of ``n`` items in two sources, ``tracks`` tracks each (about a tenth of
    the items without a track, a tenth without a time), cameras per track."""
    rng = np.random.default_rng(seed)
    info = GalleryInfo(
        dim=5 * D,
        fingerprint="f" * 64,
        schema=MARKET1501.to_dict(),
        prototypes=prototypes(seed),
    )
    store = MemoryStore(info)
    parts = []
    for source in ("a.mp4", "b.mp4"):
        m = n // 2
        track = rng.integers(0, tracks, m)
        centre = rng.normal(size=(tracks, 5, D))
        feats = centre[track] + 0.7 * rng.normal(size=(m, 5, D))
        track[rng.random(m) < 0.1] = NO_TRACK
        t = T0 + rng.uniform(0, 7200, m)
        t[rng.random(m) < 0.1] = np.nan
        cams = [
            CAMERAS[(tr * 7 + len(source)) % 4] if tr >= 0 else CAMERAS[i % 4]
            for i, tr in enumerate(track)
        ]
        items = Items.make(
            embed_features(feats),
            source=source,
            num_attributes=MARKET1501.num_attributes,
            camera=cams,
            timestamp=t,
            frame=rng.integers(0, 10_000, m),
            track=track,
            path=[f"{source}/{i}.jpg" for i in range(m)],
        )
        store.add(items)
        parts.append(items)
    everything = store.get(store.ids())
    return Gallery(store), everything


def slow_tracks(items: Items, scores: np.ndarray, k: int, how: str, keep=None) -> list[tuple]:
    """The obvious grouping: every item scored, grouped by key, scored, sorted."""
    keep = np.ones(len(items), bool) if keep is None else keep
    groups: dict = {}
    for key, i, s, ok in zip(group_keys(items), items.ids, scores, keep):
        if ok:
            groups.setdefault(key, []).append((float(s), int(i)))
    ranked = []
    for key, crops in groups.items():
        crops.sort(key=lambda c: (-c[0], c[1]))
        ranked.append((track_score([c[0] for c in crops], how), crops[0][1], key, len(crops)))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    return ranked[:k]


WHERES = [
    None,
    Filter(cameras=frozenset({"c1", "c3"})),
    Filter(cameras=frozenset({"c2"}), after=T0 + 1800, before=T0 + 5400),
    Filter(sources=frozenset({"b.mp4"})),
]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("how", ["max", "top3"])
@pytest.mark.parametrize("w", range(len(WHERES)))
def test_per_track_results_are_the_obvious_grouping_of_every_item(seed, how, w):
    where = WHERES[w]
    gallery, items = make_gallery(seed)
    rng = np.random.default_rng(100 + seed)
    keep = where.matches(items) if where is not None else None
    for k in (1, 5, 40):
        q = embed_features(rng.normal(size=(1, 5, D)))[0]
        rows = gallery.ranked(
            gallery.vector_top(q), k, where=where, per_track=True, track_score=how
        )
        want = slow_tracks(items, items.vectors.astype(np.float64) @ q, k, how, keep)
        assert [r["id"] for r in rows] == [x[1] for x in want]
        np.testing.assert_allclose([r["score"] for r in rows], [x[0] for x in want], atol=1e-5)
        assert [r["count"] for r in rows] == [x[3] for x in want]
        for r in rows:  # one row per track: its source and track, its crops' span
            members = np.array([key == (r["source"], r["track"]) for key in group_keys(items)])
            members &= keep if keep is not None else True
            if r["track"] is None:
                assert r["count"] == 1
            else:
                t = items.timestamp[members]
                t = t[~np.isnan(t)]
                assert r["span"] is None if not len(t) else r["span"][0] <= r["span"][1]


def test_per_track_leaves_the_query_item_out_and_attributes_group_too():
    gallery, items = make_gallery(4)
    query = parse_attribute_query("gender=female, backpack=yes", MARKET1501)
    vectors = attribute_query_vectors(query, gallery.prototypes)
    scores = (items.vectors.astype(np.float64) @ vectors.T).max(axis=1)
    where = make_filter(cameras=["c1", "c4"], after=T0, before=T0 + 3600)
    for how in ("max", "top3"):
        rows = gallery.by_attributes(query, 7, where=where, per_track=True, track_score=how).rows
        want = slow_tracks(items, scores, 7, how, where.matches(items))
        assert [r["id"] for r in rows] == [x[1] for x in want]
    # per crop: the same filter is the top-k of the items that pass
    rows = gallery.by_attributes(query, 9, where=where).rows
    ok = np.flatnonzero(where.matches(items))
    order = ok[np.lexsort((items.ids[ok], -scores[ok]))][:9]
    assert [r["id"] for r in rows] == items.ids[order].tolist()
    assert all(r["camera"] in ("c1", "c4") and r["time"].endswith("+00:00") for r in rows)
    # a gallery item as query: itself never in its (per-track) results
    i = int(items.ids[7])
    top = gallery.vector_top(items.vectors[7])
    for per_track in (False, True):
        rows = gallery.ranked(top, 10, per_track=per_track, track_score="top3", exclude=i)
        assert i not in [r["id"] for r in rows] and len(rows) == 10



def test_a_description_searches_as_a_description_and_a_photo_as_a_photo():
    """The store is told what the queries are: it probes the cells measured for that kind."""
    gallery, items = make_gallery(6)
    seen = []
    search = gallery.store.search

    def spy(*args, **kwargs):
        seen.append(kwargs.get("kind", "photo"))
        return search(*args, **kwargs)

    gallery.store.search = spy
    gallery.by_attributes("gender=female", 5)
    assert seen and set(seen) == {"description"}
    seen.clear()
    gallery.ranked(gallery.vector_top(items.vectors[3]), 5)
    assert seen and set(seen) == {"photo"}

def test_filters_refuse_unknown_cameras_and_bad_windows():
    gallery, _ = make_gallery(5, n=40)
    with pytest.raises(StoreError, match=r"camera c9: not in this gallery \(it has: c1, c2"):
        gallery.where(cameras=["c9"])
    with pytest.raises(StoreError, match="--after must be earlier than --before"):
        gallery.where(after="2026-11-30T15:00:00Z", before="2026-11-30T14:00:00Z")
    with pytest.raises(StoreError, match="no time zone"):
        gallery.where(after="2026-11-30T15:00:00")
    with pytest.raises(StoreError, match="not an ISO-8601 time"):
        gallery.where(before="half past two")
    assert gallery.where() is None


def test_track_vector_is_the_per_part_mean_renormalised():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(6, 5, D))
    v = track_vector(embed_features(raw))
    parts = raw / np.linalg.norm(raw, axis=2, keepdims=True)
    mean = parts.mean(axis=0)
    want = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).reshape(-1) / np.sqrt(5)
    np.testing.assert_allclose(v, want, atol=1e-6)
    assert np.isclose(float(v @ v), 1.0, atol=1e-5)


def test_timeline_lists_sightings_above_the_threshold_by_time():
    gallery, items = make_gallery(6)
    j = int(np.flatnonzero(items.track >= 0)[0])
    i, key = int(items.ids[j]), (items.source[j], int(items.track[j]))
    found = gallery.timeline(i, min_score=0.3)
    members = np.array([g == key for g in group_keys(items)])
    q = track_vector(items.vectors[members])
    scores = items.vectors.astype(np.float64) @ q
    above = scores > 0.3
    assert sum(s["count"] for s in found["sightings"]) == int(above.sum())
    assert {s["item"] for s in found["sightings"]} <= set(items.ids[above].tolist())
    starts = [s["start"] for s in found["sightings"] if s["start"] is not None]
    assert starts == sorted(starts) and found["threshold"] == 0.3
    assert [s["query"] for s in found["sightings"]].count(True) == 1
    assert "mean of its track" in found["query"]["vector"]
    # no threshold (no model, no --min-score): sightings and candidates, a filter holds
    where = make_filter(cameras=["c2"])
    top = gallery.timeline(i, k=15, where=where)
    assert top["calibrated"] is False and top["threshold"] == DEFAULT_THRESHOLD
    shown = top["sightings"] + top["candidates"]
    assert 0 < sum(s["count"] for s in shown) and {s["camera"] for s in shown} == {"c2"}
    with pytest.raises(CerberusError, match="no gallery item 123456"):
        gallery.timeline(123456)


def _key_of(s: dict) -> tuple[str, int]:
    return (s["source"], s["track"]) if s["track"] is not None else ("", -1 - s["item"])


@pytest.mark.parametrize("where", [None, Filter(cameras=frozenset({"c1", "c2", "c3"}))])
def test_an_uncalibrated_timeline_keeps_its_own_track_and_the_default_threshold(where):
    """Without a calibration (here: no model) the sightings are the query's own track, crops
    whatever their scores, and the crops above :data:`DEFAULT_THRESHOLD`; the rest of the top
    k are candidates, in groups that are not already sightings, checked against every item
    scored by hand."""
    gallery, items = make_gallery(6)
    j = int(np.flatnonzero((items.track >= 0) & (np.array(items.camera) == "c1"))[0])
    i, key = int(items.ids[j]), (items.source[j], int(items.track[j]))
    members = np.array([g == key for g in group_keys(items)])
    q = track_vector(items.vectors[members])
    # another camera saw the same person: a track of crops at the query's vector and one crop
    # a quarter of the way to someone else (below the default: left out, its track is a
    # sighting), and one crop of someone else a little like them
    other = items.vectors[~members][0]
    twin = np.stack([q, q, 0.75 * q + 0.25 * other, 0.2 * q + 0.8 * other]).astype(np.float32)
    extra = Items.make(
        twin, source="c.mp4", num_attributes=MARKET1501.num_attributes, camera=["c3"] * 4,
        timestamp=T0 + np.arange(4.0), track=[0, 0, 0, 1],
        path=[f"c/{n}.jpg" for n in range(4)],
    )  # fmt: skip
    gallery.store.add(extra)
    items = gallery.store.get(gallery.store.ids())
    keys = group_keys(items)
    scores = items.vectors.astype(np.float64) @ q
    ok = np.ones(len(items), bool) if where is None else where.matches(items)
    own = np.array([g == key for g in keys]) & ok
    assert (scores[own] <= DEFAULT_THRESHOLD).any()  # own crops below the default stay
    matched = own | (ok & (scores > DEFAULT_THRESHOLD))
    assert (matched & ~own).sum() >= 2
    k = 20
    order = np.flatnonzero(ok)[np.argsort(-scores[ok], kind="stable")][:k]
    taken = {keys[r] for r in np.flatnonzero(matched)}
    rest = [r for r in order if not matched[r] and keys[r] not in taken]
    assert any(not matched[r] and keys[r] in taken for r in order)  # a group's crop left out

    def counts(rows) -> dict:
        out: dict = {}
        for r in rows:
            out[keys[r]] = out.get(keys[r], 0) + 1
        return out

    found = gallery.timeline(i, k=k, where=where)
    assert found["calibrated"] is False and found["threshold"] == DEFAULT_THRESHOLD
    assert "own track" in found["rule"] and "candidates" in found["rule"]
    assert {_key_of(s): s["count"] for s in found["sightings"]} == counts(np.flatnonzero(matched))
    assert {_key_of(s): s["count"] for s in found["candidates"]} == counts(rest) != {}
    assert [s["query"] for s in found["sightings"]].count(True) == 1
    assert not any(s["query"] for s in found["candidates"])
    # a given --min-score (or a calibration) has no candidates
    assert gallery.timeline(i, k=k, where=where, min_score=0.5)["candidates"] == []


def test_an_npz_index_is_a_read_only_store_that_filters_exactly(tmp_path):
    rng = np.random.default_rng(3)
    n = 60
    feats = FeatureSet(
        features=rng.normal(size=(n, 5, D)).astype(np.float32),
        paths=[f"/crops/{i:04d}_c{i % 3 + 1}s1_000000_00.jpg" for i in range(n)],
        pids=np.arange(n) % 7,
        camids=np.arange(n) % 3,
        values=np.full((n, MARKET1501.num_attributes), -1),
        prototypes=prototypes(),
        meta={"schema": MARKET1501.to_dict(), "fingerprint": "e" * 64},
    )
    for kind in ("flat", "ivf"):
        store = NpzStore.build(feats, kind=kind, nlist=2, recall_queries=10)
        assert store.cameras() == ["c1", "c2", "c3"] and store.count() == n
        where = Filter(cameras=frozenset({"c2"}))
        q = embed_features(rng.normal(size=(2, 5, D)))
        v = embed_features(feats.features)
        for hits, qq in zip(store.search(q, 5, where), q):
            ok = np.flatnonzero(np.arange(n) % 3 == 1)
            want = ok[np.argsort(-(v[ok] @ qq), kind="stable")][:5]
            assert hits.ids.tolist() == want.tolist()
        with pytest.raises(
            StoreError, match="read-only: convert it with `cerberus gallery convert`"
        ):
            store.add(store.get([0]))
        with pytest.raises(StoreError, match="read-only"):
            store.remove(camera="c1")


def test_convert_copies_an_npz_index_through_add(tiny_index, monkeypatch):
    """``cerberus gallery convert`` writes through GalleryStore.add (any backend): every item
    with its vector, identity, camera, path and values; searches answer the same."""
    import cerberus.search.adding as adding
    from cerberus.search import convert

    made = {}

    def memory(target, info):
        made["store"] = MemoryStore(info)
        return made["store"]

    monkeypatch.setattr(adding, "open_or_create", memory)
    old = NpzStore.load(tiny_index["index"])
    new = convert(tiny_index["index"], "unused")
    assert new is made["store"] and new.count() == old.count()
    assert new.cameras() == old.cameras() and all(s.complete for s in new.sources())
    a, b = old.get(old.ids()), new.get(new.ids())
    assert a.path == b.path and a.camera == b.camera and a.source == b.source
    np.testing.assert_array_equal(a.pid, b.pid)
    np.testing.assert_allclose(a.vectors, b.vectors)
    q = a.vectors[:3]
    for x, y in zip(old.search(q, 5), new.search(q, 5)):
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)


def test_adding_a_features_file_twice_is_refused_unless_replaced(tiny_index):
    from cerberus.search import add_features
    from cerberus.store import info_of_features

    feats = FeatureSet.load(tiny_index["features"])
    store = MemoryStore(info_of_features(feats))
    _, ids = add_features(store, feats, camera="door", start="2026-11-30T14:00:00+01:00")
    items = store.get(ids, vectors=False)
    assert set(items.camera) <= {"c1", "c2", "c3", "c4", "c5", "c6"}  # from the Market names
    assert np.all(items.timestamp == 1_796_043_600.0)  # 13:00 UTC
    with pytest.raises(StoreError, match="already in the gallery"):
        add_features(store, feats)
    add_features(store, feats, replace=True)
    assert store.count() == len(feats.paths)
    other = MemoryStore(info_of_features(feats))
    other.info.fingerprint = "0" * 64
    with pytest.raises(CerberusError, match="use a gallery of that model"):
        add_features(other, feats)
    with pytest.raises(StoreError, match="no time zone"):
        add_features(store, feats, start="2026-11-30T14:00:00", replace=True)


@pytest.fixture(scope="module")
def gallery(tiny_index) -> Gallery:
    return Gallery.open(tiny_index["index"], tiny_index["ckpt"], device="cpu")


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_gallery_item_is_left_out_of_its_own_results(gallery, tiny_index, kind):
    """Querying with item i once returned i itself at rank 1, score 1.0, "same person".
    The IVF index keeps no vectors: its item query embeds the crop again, same rule."""
    store = gallery.store
    if kind == "ivf":
        store = NpzStore.build(FeatureSet.load(tiny_index["features"]), kind="ivf", nlist=2)
    search = Gallery(store, gallery.net)
    index = store.index
    n = len(index)
    for item in (0, n // 2, n - 1):
        found = search.by_item(item, k=n)
        paths = [r["path"] for r in found.rows]
        assert index.paths[item] not in paths and len(paths) == n - 1
        assert [r["rank"] for r in found.rows] == list(range(1, n))
        assert found.excluded == item
        by_file = search.by_image(index.paths[item], k=n).rows
        assert [r["path"] for r in by_file if r["path"] != index.paths[item]] == paths
    assert len(search.by_item(1, k=3).rows) == 3
