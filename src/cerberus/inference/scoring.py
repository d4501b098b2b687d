"""The method §5 rules on arrays (NumPy only, no PyTorch): embeddings, prototype scores, PAR
decoding and attribute queries (APS).

:mod:`cerberus.inference.embed` re-exports these names; attribute search on an index uses them
without importing PyTorch.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cerberus.attributes.schema import GROUPS, Schema
from cerberus.errors import CerberusError


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows (last axis) scaled to unit L2 norm; zero rows stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def embed_features(features: np.ndarray) -> np.ndarray:
    """method §5.1 retrieval vectors: each of the 5 parts L2-normalised, concatenated, / sqrt(5).

    ``(N, 5, d) -> (N, 5 d)``; the inner product of two vectors is the mean cosine over groups.
    """
    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 3:
        raise CerberusError(f"embed_features: expected (N, groups, d), got {f.shape}")
    f = l2_normalize(f)
    return np.ascontiguousarray(f.reshape(len(f), -1) / np.sqrt(f.shape[1], dtype=np.float32))


def prototype_scores(
    features: np.ndarray, prototypes: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """Cosine of every prototype with every image, per group: ``[(S_G, N)]`` in GROUPS order."""
    f = l2_normalize(np.asarray(features, dtype=np.float32))
    return [
        l2_normalize(np.asarray(prototypes[g], np.float32)) @ f[:, k].T
        for k, g in enumerate(GROUPS)
    ]


def predict_sids(features: np.ndarray, prototypes: Mapping[str, np.ndarray]) -> np.ndarray:
    """PAR, method §5.3: the SID of the nearest prototype (cosine) per group, shape ``(N, 5)``."""
    return np.stack([s.argmax(0) for s in prototype_scores(features, prototypes)], axis=1)


SID_DECISIONS = ("cosine", "posterior")
"""How PAR and APS score SIDs: ``"cosine"`` is the paper's rule (method §5); ``"posterior"`` the
prior-aware decision of method §8.2 (:func:`posterior_scores`)."""


def sid_log_prior(counts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """log pi_j^G = log((N_j^G + 1) / (N + S_G)): Laplace-smoothed training frequency of each SID.

    Args:
        counts: ``{G: (S_G,) int}`` training identities per SID
            (:func:`cerberus.attributes.sids.sid_identity_counts`); unseen SIDs keep a small prior.

    Returns:
        ``{G: (S_G,) float32}`` log priors.
    """
    out = {}
    for g, c in counts.items():
        c = np.asarray(c, dtype=np.float64)
        out[g] = np.log((c + 1.0) / (c.sum() + len(c))).astype(np.float32)
    return out


def posterior_scores(
    per_group: Sequence[np.ndarray], log_prior: Mapping[str, np.ndarray], *, scale: float
) -> list[np.ndarray]:
    """Prior-aware SID scores, method §8.2: log p(j | x) = log softmax_j(s cos(f^G, p_j^G) + log
    pi_j^G).

    PAR then takes the SID of highest posterior (the nearest prototype, shifted towards frequent
    SIDs); APS ranks a gallery image by the mean over the given groups of the log posterior of
    the query's SID, which also compares it with the group's other prototypes.

    Args:
        per_group: :func:`prototype_scores`, ``[(S_G, N)]`` cosines in GROUPS order.
        log_prior: :func:`sid_log_prior`, ``{G: (S_G,)}``.
        scale: s > 0, the inverse temperature of the cosines.

    Returns:
        ``[(S_G, N)]`` float32 log posteriors.
    """
    if not scale > 0:
        raise CerberusError(f"posterior_scores: scale must be > 0, got {scale}")
    out = []
    for k, g in enumerate(GROUPS):
        cos = np.asarray(per_group[k], dtype=np.float64)
        prior = np.asarray(log_prior[g], dtype=np.float64)
        if prior.shape != (cos.shape[0],):
            raise CerberusError(
                f"posterior_scores: group {g} has {cos.shape[0]} SIDs but a prior of shape "
                f"{prior.shape}"
            )
        logits = scale * cos + prior[:, None]
        logits -= logits.max(0, keepdims=True)
        out.append((logits - np.log(np.exp(logits).sum(0, keepdims=True))).astype(np.float32))
    return out


def _phrase(attribute: Any, value: int) -> str:
    """ "red top" for colour attributes without phrases, else the schema's phrase.

    The none value (no colour field set) reads "no top colour": this describes a prediction,
    so it does not say "not annotated"."""
    if attribute.phrases or not attribute.name.endswith(".color"):
        return attribute.phrase(value)
    part = "top" if attribute.name.startswith("upper") else "bottom"
    if attribute.is_onehot and value == attribute.none_code:
        return f"no {part} colour"
    return f"{attribute.values[value]} {part}"


def value_phrases(schema: Schema, values: Sequence[int] | np.ndarray) -> list[str]:
    """The phrases of one item's attribute values ``(A,)`` in schema order (``["female", "red
    top", ...]``): what :func:`describe_features` says, and what a gallery item's stored
    prediction reads as."""
    return [_phrase(a, int(v)) for a, v in zip(schema.attributes, values)]


WEAK_CERTAINTY = 0.5
"""A predicted group whose :func:`describe_features` certainty is below this is marked weak:
the chosen SID is less likely than all the group's other SIDs together."""


def sid_certainty(
    per_group: Sequence[np.ndarray],
    *,
    scale: float,
    log_prior: Mapping[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """How sure PAR is, per group: the softmax over the group's SIDs of ``scale`` x cosine
    (plus the log prior under the method §8.2 decision), i.e. :func:`posterior_scores` with a flat
    prior when ``log_prior`` is ``None``. ``[(S_G, N)]`` probabilities; each column sums to 1.
    """
    flat = {g: np.zeros(len(per_group[k]), np.float32) for k, g in enumerate(GROUPS)}
    logp = posterior_scores(per_group, flat if log_prior is None else log_prior, scale=scale)
    return [np.exp(x) for x in logp]


def decide_sids(
    per_group: Sequence[np.ndarray],
    *,
    log_prior: Mapping[str, np.ndarray] | None = None,
    scale: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The PAR decision of method §5.3 (§8.2 with ``log_prior``) on :func:`prototype_scores`:
    ``sids (N, 5)`` the chosen SID per group and ``certainty (N, 5)`` its probability
    (:func:`sid_certainty` at ``scale``). :func:`describe_features` and ingestion both use it."""
    decide = per_group if log_prior is None else posterior_scores(per_group, log_prior, scale=scale)
    sure = sid_certainty(per_group, scale=scale, log_prior=log_prior)
    sids = np.stack([s.argmax(0) for s in decide], axis=1)  # (N, 5)
    rows = np.arange(len(sids))
    certainty = np.stack([sure[k][sids[:, k], rows] for k in range(sids.shape[1])], axis=1)
    return sids, certainty


def describe_features(
    features: np.ndarray,
    prototypes: Mapping[str, np.ndarray],
    schema: Schema,
    *,
    log_prior: Mapping[str, np.ndarray] | None = None,
    scale: float = 10.0,
    weak_below: float = WEAK_CERTAINTY,
) -> list[dict[str, Any]]:
    """PAR for display: the predicted attributes of each image, method §5.3.

    With ``log_prior`` (:func:`sid_log_prior`) the SID of highest prior-aware posterior is
    chosen (method §8.2, :func:`posterior_scores` at ``scale``), else the nearest prototype.

    Returns, per image, ``attributes`` (``{name: value}``), ``phrases`` (``["female", "red
    top", ...]`` in schema order), ``confidence`` (``{G: cosine to the chosen prototype}``),
    ``certainty`` (``{G: probability of the chosen SID}``, :func:`sid_certainty` at ``scale``)
    and ``weak`` (the groups, in GROUPS order, whose certainty is below ``weak_below``).
    """
    per_group = prototype_scores(features, prototypes)
    sids, sure = decide_sids(per_group, log_prior=log_prior, scale=scale)
    values = schema.from_sids(sids)
    out = []
    for i, row in enumerate(values):
        certainty = {g: float(sure[i, k]) for k, g in enumerate(GROUPS)}
        out.append(
            {
                "attributes": schema.describe(row),
                "phrases": value_phrases(schema, row),
                "confidence": {g: float(per_group[k][sids[i, k], i]) for k, g in enumerate(GROUPS)},
                "certainty": certainty,
                "weak": [g for g in GROUPS if certainty[g] < weak_below],
            }
        )
    return out


def attribute_query_scores(
    query_sids: np.ndarray, given: np.ndarray, per_group: Sequence[np.ndarray]
) -> np.ndarray:
    """APS similarity, method §5.2: mean over the given groups of cos(p^G_{s_G}, f^G).

    Args:
        query_sids: ``(Q, 5)`` SIDs (entries of groups not given are ignored).
        given: ``(5,)`` or ``(Q, 5)`` bool, which groups each query gives.
        per_group: :func:`prototype_scores` of the gallery, ``[(S_G, N)]``.

    Returns:
        ``(Q, N)`` scores.
    """
    query_sids = np.asarray(query_sids)
    given = np.broadcast_to(np.asarray(given, dtype=bool), query_sids.shape)
    n = per_group[0].shape[1]
    total = np.zeros((len(query_sids), n), dtype=np.float32)
    for k in range(len(GROUPS)):
        rows = np.nonzero(given[:, k])[0]
        if len(rows):
            total[rows] += per_group[k][query_sids[rows, k]]
    return total / np.maximum(given.sum(1, keepdims=True), 1)


# --------------------------------------------------------------------------- attribute queries


@dataclass(frozen=True)
class AttributeQuery:
    """An attribute query compiled against a schema.

    Attributes:
        given: ``{attribute name: value code}`` as the user gave it.
        groups: the groups with at least one given attribute, GROUPS order.
        choices: per group in ``groups``, the SIDs that agree with the given attributes (one
            SID when the whole group is given).
    """

    given: dict[str, int]
    groups: tuple[str, ...]
    choices: tuple[tuple[int, ...], ...]

    @property
    def num_combinations(self) -> int:
        return int(np.prod([len(c) for c in self.choices]))

    def describe(self, schema: Schema) -> list[str]:
        return [
            f"{n}: {schema.attributes[schema.index(n)].values[v]}" for n, v in self.given.items()
        ]


def parse_attribute_query(
    text: str | Mapping[str, str], schema: Schema, *, max_combinations: int = 4096
) -> AttributeQuery:
    """``"gender=female, upper.color=red, backpack=yes"`` -> :class:`AttributeQuery`.

    Unknown attribute names or values raise :class:`CerberusError` listing the valid ones.
    """
    given = schema.parse_query(text)
    groups, choices = [], []
    for g in GROUPS:
        codec = schema.codecs[g]
        cols = schema.group_columns(g)
        names = [schema.attributes[c].name for c in cols]
        if not any(n in given for n in names):
            continue
        values = codec.decode(np.arange(codec.num_sids))  # (S, n_attrs)
        ok = np.ones(codec.num_sids, dtype=bool)
        for j, n in enumerate(names):
            if n in given:
                ok &= values[:, j] == given[n]
        groups.append(g)
        choices.append(tuple(int(s) for s in np.nonzero(ok)[0]))
    query = AttributeQuery(given, tuple(groups), tuple(choices))
    if query.num_combinations > max_combinations:
        raise CerberusError(
            f"attribute query matches {query.num_combinations} SID combinations (more than "
            f"{max_combinations}); give more attributes of the partly given groups"
        )
    return query


def attribute_query_vectors(
    query: AttributeQuery, prototypes: Mapping[str, np.ndarray]
) -> np.ndarray:
    """One search vector per agreeing SID combination, ``(num_combinations, 5 d)``.

    Group G given with SID s: the slot of G holds p_s / ||p_s||; groups not given hold 0; the
    vector is scaled by sqrt(5) / |given groups|, so its inner product with a retrieval vector
    is the mean over the given groups of cos(p^G, f^G) (method §5.2).
    """
    d = next(iter(prototypes.values())).shape[1]
    unit = {g: l2_normalize(np.asarray(prototypes[g], np.float32)) for g in GROUPS}
    scale = np.sqrt(len(GROUPS), dtype=np.float32) / len(query.groups)
    combos = list(itertools.product(*query.choices))
    out = np.zeros((len(combos), len(GROUPS), d), dtype=np.float32)
    for i, combo in enumerate(combos):
        for g, s in zip(query.groups, combo):
            out[i, GROUPS.index(g)] = unit[g][s]
    return np.ascontiguousarray(out.reshape(len(combos), -1) * scale)


def pool_vectors(vectors: np.ndarray, parts: int = 5) -> np.ndarray:
    """A track's vector (method §9.3): the mean of its crops' retrieval vectors part by part,
    each part renormalised, concatenated, / sqrt(parts); ``(n, parts d) -> (parts d,)``, a
    vector of the :func:`embed_features` kind, so it is searched like a crop's."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) == 0 or v.shape[1] % parts:
        raise CerberusError(f"pool_vectors: expected (n >= 1, {parts} d) vectors, got {v.shape}")
    mean = l2_normalize(v.reshape(len(v), parts, -1)).mean(0)
    return np.ascontiguousarray(l2_normalize(mean).reshape(-1) / np.sqrt(parts, dtype=np.float32))
