"""Who the synthetic identities are: rows of Market-1501 attribute values (method §1).

Train and test identities get value counts that follow :data:`PRIORS` exactly (shuffled
quotas); two SIDs (:data:`RESERVED_FOR_TEST`) are kept out of training so the benchmark has
unseen SIDs like the real one. Distractors are drawn independently. Everything is a pure
function of the seed.
"""

from __future__ import annotations

import numpy as np

from cerberus.attributes.schema_files import MARKET1501
from cerberus.errors import CerberusError

SCHEMA = MARKET1501
COL = {a.name: i for i, a in enumerate(SCHEMA.attributes)}

# Marginal frequencies (value order as in the schema): skewed like Market-1501, yet every value
# common enough among a few hundred identities to be learnable: binary minorities >= 20%, every
# colour (and "none") >= 4%, every age class >= 15%.
PRIORS = {
    "hat": [0.75, 0.25],
    "upper.color": [0.08, 0.20, 0.18, 0.12, 0.06, 0.06, 0.12, 0.12, 0.06],
    "upper.sleeve": [0.35, 0.65],
    "lower.color": [0.05, 0.30, 0.07, 0.05, 0.04, 0.04, 0.12, 0.23, 0.04, 0.06],
    "lower.length": [0.7, 0.3],
    "gender": [0.5, 0.5],
    "age": [0.15, 0.25, 0.45, 0.15],
    "backpack": [0.7, 0.3],
    "bag": [0.75, 0.25],
    "handbag": [0.8, 0.2],
}
# Attributes that follow gender (index = gender code): P(long hair), P(dress).
LONG_HAIR = (0.1, 0.75)
DRESS = (0.0, 0.4)

# SIDs kept out of training (they appear only among test identities), so the benchmark has
# unseen SIDs like the real one: head "hat + long hair", identity "male + young".
RESERVED_FOR_TEST = ({"hat": 1, "hair": 1}, {"gender": 0, "age": 0})


def sample_attributes(n: int, rng: np.random.Generator, *, allow_reserved: bool) -> np.ndarray:
    """``n`` independent rows of Market attribute values drawn from :data:`PRIORS`.

    Reserved (test-only) SIDs are redrawn unless ``allow_reserved``. Used for distractors; the
    train and test identities use :func:`balanced_attributes`.
    """
    rows = np.zeros((n, SCHEMA.num_attributes), dtype=np.int64)
    for i in range(n):
        while True:
            v = np.zeros(SCHEMA.num_attributes, dtype=np.int64)
            for name, p in PRIORS.items():
                v[COL[name]] = rng.choice(len(p), p=p)
            g = int(v[COL["gender"]])
            v[COL["hair"]] = int(rng.random() < LONG_HAIR[g])
            v[COL["lower.clothes"]] = int(not rng.random() < DRESS[g])
            if allow_reserved or not _is_reserved(v):
                break
        rows[i] = v
    return rows


def _quota_column(n: int, p: list[float], rng: np.random.Generator) -> np.ndarray:
    """``n`` values with counts as close to ``n * p`` as integers allow, in random order."""
    want = np.asarray(p, dtype=np.float64) * n
    counts = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - counts), kind="stable")  # largest remainders first
    counts[order[: n - int(counts.sum())]] += 1
    return rng.permutation(np.repeat(np.arange(len(p)), counts))


def balanced_attributes(n: int, rng: np.random.Generator, *, allow_reserved: bool) -> np.ndarray:
    """``n`` rows of Market attribute values whose value counts follow :data:`PRIORS` exactly.

    Each attribute is drawn as a shuffled column of quotas (hair length and dress within each
    gender), so every value reaches its share of the identities whatever the seed. Without
    ``allow_reserved``, a row showing a reserved SID swaps one attribute value with another row,
    which keeps every count and makes the reserved SIDs unseen.
    """
    rows = np.zeros((n, SCHEMA.num_attributes), dtype=np.int64)
    for name, p in PRIORS.items():
        rows[:, COL[name]] = _quota_column(n, p, rng)
    for g in (0, 1):
        members = np.flatnonzero(rows[:, COL["gender"]] == g)
        k = len(members)
        rows[members, COL["hair"]] = _quota_column(k, [1 - LONG_HAIR[g], LONG_HAIR[g]], rng)
        rows[members, COL["lower.clothes"]] = _quota_column(k, [DRESS[g], 1 - DRESS[g]], rng)
    if not allow_reserved:
        _check_reserved_fit(rows)
        _swap_out_reserved(rows, rng)
    return rows


def unavoidable_reserved_sids(rows: np.ndarray) -> list[str]:
    """The reserved SIDs that no swap can keep out of ``rows`` (n, A): value counts too high.

    Swaps keep the count of every value, and a row can hold at most ``k - 1`` of the ``k``
    values of a reserved SID, so the SID can be absent only if those values occur at most
    ``(k - 1) * n`` times in all. :func:`_swap_out_reserved` succeeds whenever they do. The
    counts of :func:`balanced_attributes` depend on ``n`` alone, not on the seed.
    """
    n = len(rows)
    return [
        "+".join(f"{k}={SCHEMA.attributes[COL[k]].values[x]}" for k, x in reserved.items())
        for reserved in RESERVED_FOR_TEST
        if sum(int((rows[:, COL[k]] == x).sum()) for k, x in reserved.items())
        > (len(reserved) - 1) * n
    ]


def _check_reserved_fit(rows: np.ndarray) -> None:
    if crowded := unavoidable_reserved_sids(rows):
        raise CerberusError(
            f"synthetic: {len(rows)} training identities cannot avoid the test-only SID "
            f"{', '.join(crowded)} (its values are too common at this size); choose another size"
        )


def _swap_out_reserved(rows: np.ndarray, rng: np.random.Generator) -> None:
    """Remove reserved SIDs in place by swapping single attribute values between rows.

    A row loses its reserved SIDs one at a time: a row can show two at once (a boy with a hat
    and long hair is in both), and no single swap clears both. For the SID at hand, each of its
    attributes in turn is swapped with the rows holding another value (in random order). The
    first swap after which row ``i`` shows none of the reserved SIDs it did not still have to
    lose, and the partner row none at all, is kept. Failing that, the first after which neither
    row shows a reserved SID it did not show before (a partner row that is itself still to be
    cleared). Swaps keep every value count; the second rule always finds a partner when the
    counts allow the reserved SIDs to be absent at all (:func:`unavoidable_reserved_sids`).
    """
    for i in range(len(rows)):
        for r, reserved in enumerate(RESERVED_FOR_TEST):
            if _matches(rows[i], reserved) and not _swap_one(rows, i, r, rng):
                raise CerberusError(
                    f"synthetic: cannot keep {reserved} out of {len(rows)} rows "
                    "(too few rows with other values to swap with)"
                )


def _shown(v: np.ndarray) -> set[int]:
    """Indices (in :data:`RESERVED_FOR_TEST`) of the reserved SIDs row ``v`` shows."""
    return {r for r, reserved in enumerate(RESERVED_FOR_TEST) if _matches(v, reserved)}


def _swap_one(rows: np.ndarray, i: int, r: int, rng: np.random.Generator) -> bool:
    """Clear reserved SID ``r`` from row ``i`` by one swap with another row (rules above)."""
    still = _shown(rows[i]) - {r}
    tried = []
    for name in RESERVED_FOR_TEST[r]:
        c = COL[name]
        order = rng.permutation(len(rows))
        tried.append((c, order))
        for j in order:
            if rows[j, c] == rows[i, c]:
                continue
            rows[[i, j], c] = rows[[j, i], c]
            if _shown(rows[i]) <= still and not _shown(rows[j]):
                return True
            rows[[i, j], c] = rows[[j, i], c]  # undo
    for c, order in tried:  # a partner that still has reserved SIDs of its own to lose
        for j in order:
            if rows[j, c] == rows[i, c]:
                continue
            before = _shown(rows[j])
            rows[[i, j], c] = rows[[j, i], c]
            if _shown(rows[i]) <= still and _shown(rows[j]) <= before:
                return True
            rows[[i, j], c] = rows[[j, i], c]
    return False


def _matches(v: np.ndarray, reserved: dict[str, int]) -> bool:
    return all(v[COL[k]] == x for k, x in reserved.items())


def _is_reserved(v: np.ndarray) -> bool:
    return any(_matches(v, r) for r in RESERVED_FOR_TEST)


def identity_rows(num_train: int, num_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Attribute values (Market schema order) of the train and test identities, (n, A) each.

    A pure function of its arguments. The training rows show no reserved SID; the test rows
    show each of them (given at least two test identities).
    """
    rng = np.random.default_rng([seed, 424_242])
    train = balanced_attributes(num_train, rng, allow_reserved=False)
    test = balanced_attributes(num_test, rng, allow_reserved=True)
    # Make sure each reserved SID really occurs in the test split (row j shows SID j if not).
    for j, reserved in enumerate(RESERVED_FOR_TEST):
        if num_test > j and not any(_matches(r, reserved) for r in test):
            for k, x in reserved.items():
                test[j, COL[k]] = x
    return train, test
