"""Method §5 / method §8.2 decision rules on arrays: the prior-aware SID posterior, and how sure
each predicted group is."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from cerberus.attributes.schema import GROUPS
from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError
from cerberus.inference.embed import posterior_scores, sid_log_prior
from cerberus.inference.scoring import WEAK_CERTAINTY, describe_features, l2_normalize


def _cosines(rng, sizes, n):
    return [rng.uniform(-1, 1, size=(s, n)).astype(np.float32) for s in sizes]


def test_log_prior_is_laplace_smoothed_frequency():
    prior = sid_log_prior({"H": np.array([3, 1, 0])})
    np.testing.assert_allclose(np.exp(prior["H"]), [4 / 7, 2 / 7, 1 / 7], rtol=1e-6)


def test_posterior_matches_a_slow_loop():
    rng = np.random.default_rng(0)
    sizes = [3, 5, 4, 2, 6]
    cos = _cosines(rng, sizes, 7)
    prior = sid_log_prior({g: rng.integers(0, 9, size=s) for g, s in zip(GROUPS, sizes)})
    fast = posterior_scores(cos, prior, scale=10.0)
    for k, g in enumerate(GROUPS):
        for i in range(7):
            logits = [10.0 * float(cos[k][j, i]) + float(prior[g][j]) for j in range(sizes[k])]
            norm = math.log(sum(math.exp(x) for x in logits))
            for j in range(sizes[k]):
                assert fast[k][j, i] == pytest.approx(logits[j] - norm, abs=1e-5)


def test_prior_moves_a_near_tie_towards_the_frequent_sid():
    cos = [np.array([[0.50], [0.49]], np.float32)] * 5
    uniform = {g: np.log(np.array([0.5, 0.5], np.float32)) for g in GROUPS}
    skewed = sid_log_prior({g: np.array([1, 99]) for g in GROUPS})
    assert posterior_scores(cos, uniform, scale=10.0)[0].argmax(0)[0] == 0  # the nearest
    assert posterior_scores(cos, skewed, scale=10.0)[0].argmax(0)[0] == 1  # the frequent one


def test_posterior_checks_scale_and_prior_shape():
    cos = [np.zeros((2, 1), np.float32)] * 5
    prior = {g: np.zeros(2, np.float32) for g in GROUPS}
    with pytest.raises(CerberusError, match="scale must be > 0"):
        posterior_scores(cos, prior, scale=0.0)
    with pytest.raises(CerberusError, match="group H has 2 SIDs but a prior of shape"):
        posterior_scores(cos, {**prior, "H": np.zeros(3)}, scale=1.0)


def test_evaluation_decisions_and_attribute_predictor(tmp_path):
    """Posterior decision keeps perfect features perfect; a predictor replaces PAR only."""
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.data.datasets import read_dataset
    from cerberus.evaluation.evaluate import EvalFeatures, evaluate_features
    from tests.conftest import make_tree

    dataset = read_dataset(make_tree(tmp_path / "m", MARKET1501, test_ids=(1, 3, 5, 7, 9)))
    rng = np.random.default_rng(3)
    protos = {
        g: rng.normal(size=(MARKET1501.codecs[g].num_sids, 64)).astype(np.float32) for g in GROUPS
    }

    def parts(images):
        out = rng.normal(size=(len(images), 5, 64)).astype(np.float32)
        for i, sid in enumerate(images.sids):
            if (sid >= 0).all():
                out[i] = np.stack([protos[g][sid[k]] for k, g in enumerate(GROUPS)])
        return out

    feats = EvalFeatures(parts(dataset.query), parts(dataset.gallery), protos)
    m = evaluate_features(feats, dataset, decision="posterior", prior_scale=30.0)
    assert m["aps"]["full"]["map_score"] == pytest.approx(1.0)
    assert m["par"]["mean_accuracy_score"] == pytest.approx(1.0)

    def always_first_value(f):
        return np.zeros((len(f), MARKET1501.num_attributes), dtype=np.int64)

    heads = evaluate_features(feats, dataset, attribute_predictor=always_first_value)
    assert heads["aps"]["full"]["map_score"] == pytest.approx(1.0)  # APS untouched
    assert heads["par"]["mean_accuracy_score"] < 0.8
    with pytest.raises(CerberusError, match="decision must be one of"):
        evaluate_features(feats, dataset, decision="nearest")


def test_phrases_read_as_predictions():
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.inference.scoring import _phrase

    attrs = {a.name: a for a in MARKET1501.attributes}
    assert _phrase(attrs["lower.color"], 0) == "no bottom colour"
    assert _phrase(attrs["upper.color"], 0) == "no top colour"
    assert _phrase(attrs["upper.color"], 3) == "red top"
    assert "not annotated" not in _phrase(attrs["lower.color"], 0)
    assert _phrase(attrs["lower.length"], 1) == "short lower-body clothing"
    phrases = [p for a in MARKET1501.attributes for p in a.phrases]
    assert not any(p.endswith((" lower", " upper")) for p in phrases)


def test_posterior_decision_follows_the_prior_where_it_outweighs_the_cosines(tmp_path):
    """Every training identity has the same attributes (SID f per group: prior 5 / (4 + S_G),
    every other SID 1 / (4 + S_G), log ratio log 5 = 1.61). Each test image lies nearer its own
    SID t than f: f = p_t + 0.9 p_f with orthonormal prototypes, cosines 0.743 vs 0.669. At
    scale 10 the cosine gap (0.74) loses to the prior: PAR predicts f everywhere, exactly the
    majority answer; at scale 100 (gap 7.4) and with the cosine rule it predicts t."""
    from cerberus.attributes.mat import load_attribute_mat, save_attribute_mat
    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.attributes.table import AttributeTable
    from cerberus.data.datasets import read_dataset
    from cerberus.evaluation.evaluate import EvalFeatures, evaluate_features
    from tests.conftest import make_tree

    root = make_tree(tmp_path / "m", MARKET1501, test_ids=(1, 3, 5, 7, 9))
    tables = load_attribute_mat(root / "market_attribute.mat")
    frequent = np.array([[1, 0, 3, 1, 2, 0, 1, 1, 2, 0, 1, 0]])  # one value row for all
    ids = tables["train"].ids
    tables["train"] = AttributeTable(MARKET1501, ids, np.repeat(frequent, len(ids), 0))
    save_attribute_mat(root / "market_attribute.mat", tables)
    data = read_dataset(root)
    f_sids = MARKET1501.to_sids(frequent)[0]
    rng = np.random.default_rng(0)
    protos = {}
    for g in GROUPS:
        q, _ = np.linalg.qr(rng.normal(size=(64, MARKET1501.codecs[g].num_sids)))
        protos[g] = q.T.astype(np.float32)  # orthonormal rows

    def parts(images):
        out = rng.normal(size=(len(images), 5, 64)).astype(np.float32)
        for i, sid in enumerate(images.sids):
            if (sid >= 0).all():
                for k, g in enumerate(GROUPS):
                    near = protos[g][f_sids[k]] if sid[k] != f_sids[k] else 0
                    out[i, k] = protos[g][sid[k]] + 0.9 * near
        return out

    feats = EvalFeatures(parts(data.query), parts(data.gallery), protos)
    truth = data.gallery.values[data.gallery.pids > 0]
    assert (MARKET1501.to_sids(truth) != f_sids).any(0).all()  # every group has images to flip
    nearest = evaluate_features(feats, data)
    assert nearest["par"]["mean_accuracy_score"] == pytest.approx(1.0)
    sharp = evaluate_features(feats, data, decision="posterior", prior_scale=100.0)
    assert sharp["par"]["mean_accuracy_score"] == pytest.approx(1.0)
    flat = evaluate_features(feats, data, decision="posterior", prior_scale=10.0)
    majority = flat["chance"]["par"]
    assert majority["majority_value"] == dict(
        zip([a.name for a in MARKET1501.attributes], frequent[0].tolist())
    )
    assert flat["par"]["attribute_accuracy_score"] == majority["attribute_accuracy_score"]
    assert flat["par"]["mean_accuracy_score"] < 0.9


def test_certainty_marks_weak_groups():
    """Each predicted group says how sure it is (the probability of its SID among
    the group's SIDs at the model's scale) and groups under 0.5 are marked weak."""
    rng = np.random.default_rng(3)
    d = 8
    protos = {g: l2_normalize(rng.normal(size=(MARKET1501.codecs[g].num_sids, d))) for g in GROUPS}
    sure = np.stack([protos[g][1] for g in GROUPS])  # every part on a prototype
    torn = np.stack([protos[g][0] + protos[g][1] for g in GROUPS])  # halfway between two
    a, b = describe_features(np.stack([sure, torn]), protos, MARKET1501, scale=30.0)
    for g in GROUPS:
        assert a["certainty"][g] > 0.5 and b["certainty"][g] <= 0.5 + 1e-6
        assert 0 < b["certainty"][g] <= a["certainty"][g] <= 1
    assert a["weak"] == [] and b["weak"] == list(GROUPS)
    flat = describe_features(np.stack([sure]), protos, MARKET1501, scale=1e-3)[0]
    assert flat["weak"] == list(GROUPS)  # a softmax at a tiny scale is sure of nothing
    assert WEAK_CERTAINTY == 0.5


def test_prototypes_are_unit_normalised_in_par_and_aps():
    """Scores are cosines (method §5): a prototype's length changes neither the PAR arg-max
    nor the weight of its group in an APS query. The prototypes here have lengths from 0.05 to
    20, under which the raw inner products pick other SIDs than the cosines."""
    from cerberus.inference.scoring import (
        attribute_query_vectors,
        embed_features,
        parse_attribute_query,
        predict_sids,
        prototype_scores,
    )

    rng = np.random.default_rng(4)
    d, n = 6, 40
    features = rng.normal(size=(n, len(GROUPS), d)).astype(np.float32)
    protos = {}
    for g in GROUPS:
        p = rng.normal(size=(MARKET1501.num_sids[g], d))
        p *= rng.uniform(0.05, 20, size=(len(p), 1)) / np.linalg.norm(p, axis=1, keepdims=True)
        protos[g] = p.astype(np.float32)

    def cos(a, b):
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    slow = [
        np.array([[cos(p, features[i, k]) for i in range(n)] for p in protos[g]])
        for k, g in enumerate(GROUPS)
    ]
    for got, want in zip(prototype_scores(features, protos), slow):
        np.testing.assert_allclose(got, want, atol=1e-5)
    want_sids = np.stack([s.argmax(0) for s in slow], axis=1)
    np.testing.assert_array_equal(predict_sids(features, protos), want_sids)
    raw = np.stack([(protos[g] @ features[:, k].T).argmax(0) for k, g in enumerate(GROUPS)], 1)
    assert (raw != want_sids).any()  # the lengths matter here: the test can tell
    # APS: each combination's score is the mean over the given groups of the cosines
    query = parse_attribute_query("gender=female, backpack=yes, hat=no", MARKET1501)
    vectors = attribute_query_vectors(query, protos)
    scores = embed_features(features) @ vectors.T  # (n, combinations)
    for c, combo in enumerate(itertools.product(*query.choices)):
        groups = [GROUPS.index(g) for g in query.groups]
        want = np.mean([slow[k][s] for k, s in zip(groups, combo)], axis=0)
        np.testing.assert_allclose(scores[:, c], want, atol=1e-5)


def test_a_plain_attribute_reads_as_its_value():
    """Attributes that are neither colours nor phrased (gender, age) read as their value."""
    from cerberus.inference.scoring import _phrase

    attrs = {a.name: a for a in MARKET1501.attributes}
    assert _phrase(attrs["gender"], 1) == attrs["gender"].values[1]
    assert _phrase(attrs["age"], 0) == attrs["age"].values[0]


def _slow_decision(cos, prior, scale):
    """Per image and group: softmax of scale x cosine (+ log prior); the arg-max and its
    probability."""
    n = cos[0].shape[1]
    sids, sure = np.zeros((n, len(GROUPS)), int), np.zeros((n, len(GROUPS)))
    for k, g in enumerate(GROUPS):
        for i in range(n):
            logits = [scale * float(c) for c in cos[k][:, i]]
            if prior is not None:
                logits = [x + float(p) for x, p in zip(logits, prior[g])]
            z = [math.exp(x - max(logits)) for x in logits]
            j = int(np.argmax(logits))
            sids[i, k], sure[i, k] = j, z[j] / sum(z)
    return sids, sure


def test_describe_decides_and_says_how_sure_with_and_without_the_prior():
    """describe_features / decide_sids against a slow softmax: the SID and its certainty, by
    the nearest prototype or (with the prior) by the posterior, at the default scale 10 or a
    given one; every field of the description; "weak" strictly under ``weak_below``."""
    from cerberus.inference.scoring import (
        decide_sids,
        predict_sids,
        prototype_scores,
        value_phrases,
    )

    rng = np.random.default_rng(5)
    d, n = 8, 12
    protos = {g: rng.normal(size=(MARKET1501.num_sids[g], d)).astype(np.float32) for g in GROUPS}
    feats = rng.normal(size=(n, len(GROUPS), d)).astype(np.float32)
    cos = prototype_scores(feats, protos)
    counts = {g: rng.integers(0, 200, MARKET1501.num_sids[g]) for g in GROUPS}
    prior = sid_log_prior(counts)
    for log_prior, scale in ((None, None), (prior, None), (prior, 3.0), (None, 25.0)):
        kw = {} if scale is None else {"scale": scale}
        want_sids, want_sure = _slow_decision(cos, log_prior, 10.0 if scale is None else scale)
        sids, sure = decide_sids(cos, log_prior=log_prior, **kw)
        np.testing.assert_array_equal(sids, want_sids)
        np.testing.assert_allclose(sure, want_sure, atol=1e-5)
        said = describe_features(feats, protos, MARKET1501, log_prior=log_prior, **kw)
        values = MARKET1501.from_sids(want_sids)
        for i, row in enumerate(said):
            assert row["attributes"] == MARKET1501.describe(values[i])
            assert row["phrases"] == value_phrases(MARKET1501, values[i])
            for k, g in enumerate(GROUPS):
                assert row["certainty"][g] == pytest.approx(want_sure[i, k], abs=1e-5)
                assert row["confidence"][g] == pytest.approx(cos[k][want_sids[i, k], i], abs=1e-6)
            assert row["weak"] == [g for k, g in enumerate(GROUPS) if want_sure[i, k] < 0.5]
    # the prior changes some decisions here, so the two paths are told apart
    assert (decide_sids(cos, log_prior=prior)[0] != predict_sids(feats, protos)).any()
    # weak means strictly below weak_below: a certainty equal to it is not weak
    first = describe_features(feats[:1], protos, MARKET1501)[0]["certainty"]["H"]
    edge = describe_features(feats[:1], protos, MARKET1501, weak_below=first)[0]
    assert "H" not in edge["weak"]


def _slow_choices(given: dict, schema, g: str) -> tuple[int, ...]:
    """The SIDs of group ``g`` whose decoded values agree with every given attribute of it."""
    codec = schema.codecs[g]
    names = [schema.attributes[c].name for c in schema.group_columns(g)]
    out = []
    for s in range(codec.num_sids):
        values = codec.decode(np.array([s]))[0]
        if all(values[j] == given[n] for j, n in enumerate(names) if n in given):
            out.append(s)
    return tuple(out)


@pytest.mark.parametrize(
    "text",
    [
        "backpack=yes",  # a group after groups not given
        "upper.color=red, upper.sleeve=short",  # two attributes of one group
        "gender=female, lower.color=blue, lower.length=long, handbag=no",
        "hat=yes, hair=short, age=teenager",
    ],
)
def test_attribute_queries_choose_the_agreeing_sids(text):
    """Each given group's choices are the SIDs agreeing with all its given attributes (a slow
    decode of every SID); groups not given are absent; the query keeps what was given."""
    from cerberus.inference.scoring import parse_attribute_query

    q = parse_attribute_query(text, MARKET1501)
    given = MARKET1501.parse_query(text)
    assert q.given == given
    attrs = MARKET1501.attributes
    names = {g: {attrs[c].name for c in MARKET1501.group_columns(g)} for g in GROUPS}
    assert q.groups == tuple(g for g in GROUPS if names[g] & set(given))
    assert q.choices == tuple(_slow_choices(given, MARKET1501, g) for g in q.groups)
    assert all(len(c) >= 1 for c in q.choices)


def test_attribute_query_combination_limit_is_inclusive():
    """A query of exactly ``max_combinations`` combinations is accepted, one more refused."""
    from cerberus.inference.scoring import parse_attribute_query

    n = parse_attribute_query("hat=no, backpack=yes", MARKET1501).num_combinations
    assert n > 1
    assert parse_attribute_query("hat=no, backpack=yes", MARKET1501, max_combinations=n)
    with pytest.raises(CerberusError, match=f"matches {n} SID combinations"):
        parse_attribute_query("hat=no, backpack=yes", MARKET1501, max_combinations=n - 1)
    assert parse_attribute_query("gender=female", MARKET1501).num_combinations <= 4096


def test_attribute_query_vectors_are_float32_rows():
    from cerberus.inference.scoring import attribute_query_vectors, parse_attribute_query

    rng = np.random.default_rng(6)
    protos = {g: rng.normal(size=(MARKET1501.num_sids[g], 4)) for g in GROUPS}  # float64 in
    q = parse_attribute_query("gender=female, backpack=yes", MARKET1501)
    v = attribute_query_vectors(q, protos)
    assert v.dtype == np.float32 and v.shape == (q.num_combinations, len(GROUPS) * 4)
    assert v.flags["C_CONTIGUOUS"]


def test_posterior_is_stable_at_a_large_scale():
    """The log-softmax subtracts each column's max: at scale 1000 (logits of +-1000) it stays
    finite and equals the stable slow form; each column is a distribution."""
    cos = [np.array([[1.0, -1.0], [0.999, -0.5], [-1.0, -0.9]], np.float32)] * len(GROUPS)
    prior = {g: np.zeros(3, np.float32) for g in GROUPS}
    logp = posterior_scores(cos, prior, scale=1000.0)
    for k in range(len(GROUPS)):
        assert np.isfinite(logp[k]).all() and logp[k].shape == (3, 2)
        for i in range(2):
            logits = 1000.0 * cos[k][:, i].astype(np.float64)
            top = logits.max()
            want = logits - top - math.log(np.exp(logits - top).sum())
            np.testing.assert_allclose(logp[k][:, i], want, atol=1e-3)
        np.testing.assert_allclose(np.exp(logp[k]).sum(0), 1.0, atol=1e-5)


def test_attribute_query_scores_average_over_each_querys_given_groups():
    """APS (method §5.2): per query, the mean over its own given groups of the cosine of the
    query's SID prototype (queries giving different numbers of groups), against a loop."""
    from cerberus.inference.scoring import attribute_query_scores

    rng = np.random.default_rng(7)
    sizes = [MARKET1501.num_sids[g] for g in GROUPS]
    n = 9
    cos = _cosines(rng, sizes, n)
    sids = np.stack([rng.integers(0, s, 4) for s in sizes], axis=1)  # (4, 5)
    given = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    got = attribute_query_scores(sids, given, cos)
    assert got.shape == (4, n)
    for q in range(4):
        for i in range(n):
            ks = np.flatnonzero(given[q])
            want = sum(float(cos[k][sids[q, k], i]) for k in ks) / len(ks)
            assert got[q, i] == pytest.approx(want, abs=1e-6)
    one = attribute_query_scores(sids, given[1], cos)  # one mask for every query
    np.testing.assert_allclose(one[1], got[1], atol=1e-6)


def test_embed_features_refuses_other_shapes():
    from cerberus.inference.scoring import embed_features

    with pytest.raises(CerberusError, match=r"expected \(N, groups, d\), got \(3, 4\)"):
        embed_features(np.zeros((3, 4)))


def test_pool_vectors_is_the_renormalised_part_mean():
    """A track's vector (method §9.3): per part, the mean of the crops' unit parts, made unit
    again; concatenated / sqrt(parts): a loop over parts and crops."""
    from cerberus.inference.scoring import embed_features, pool_vectors

    rng = np.random.default_rng(8)
    crops = embed_features(rng.normal(size=(4, 5, 3)) * rng.uniform(0.1, 9, size=(4, 5, 1)))
    v = pool_vectors(crops.astype(np.float64))
    assert v.shape == (15,) and v.dtype == np.float32 and v.flags["C_CONTIGUOUS"]
    for p in range(5):
        parts = [c[3 * p : 3 * p + 3] / np.linalg.norm(c[3 * p : 3 * p + 3]) for c in crops]
        mean = np.mean(parts, axis=0)
        np.testing.assert_allclose(v[3 * p : 3 * p + 3], mean / np.linalg.norm(mean) / 5**0.5,
                                   atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(pool_vectors(crops[:1]), crops[0], atol=1e-6)  # one crop: itself
    assert float(v @ v) == pytest.approx(1.0, abs=1e-5)
    two = pool_vectors(crops[:, :6], parts=2)  # another part count
    np.testing.assert_allclose(np.linalg.norm(two[:3]), 2**-0.5, atol=1e-6)
    for bad in (np.zeros((0, 15)), np.zeros(15), np.zeros((2, 14))):
        with pytest.raises(CerberusError, match="pool_vectors: expected"):
            pool_vectors(bad)


def test_an_attribute_query_describes_itself():
    from cerberus.inference.scoring import parse_attribute_query

    q = parse_attribute_query("gender=female, backpack=yes", MARKET1501)
    assert q.describe(MARKET1501) == ["gender: female", "backpack: yes"]
