"""Property tests: on arbitrary file names and malformed attribute files, the readers either
parse or raise CerberusError, never anything else (issue: bad input gets a clear error)."""

from __future__ import annotations

import numpy as np
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerberus.attributes.mat import load_attribute_mat
from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.datasets import DUKEMTMC_FORMAT, MARKET1501_FORMAT, parse_filename
from cerberus.errors import CerberusError

names = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?\d{1,5}_c\d{1,2}s\d_\d{1,7}_\d{1,3}\.jpg", fullmatch=True),
    st.from_regex(r"\d{1,5}_c\d{1,2}_f\d{1,8}\.jpg", fullmatch=True),
)


@given(names)
def test_filename_parser_parses_or_raises_our_error(name):
    for fmt in (MARKET1501_FORMAT, DUKEMTMC_FORMAT):
        try:
            pid, cam = parse_filename(name, fmt)
        except CerberusError as exc:
            assert name in str(exc)
        else:
            assert pid >= -1 and 0 <= cam < fmt.num_cameras


def _valid_split(n: int, rng: np.random.Generator) -> dict:
    fields = {}
    for attr in MARKET1501.attributes:
        if attr.is_onehot:
            hot = rng.integers(0, attr.num_values, n)
            for i, f in enumerate(attr.fields):
                fields[f] = np.where(hot == i + 1, 2, 1).astype(np.uint8)[None]
        else:
            fields[attr.fields[0]] = rng.integers(1, attr.num_values + 1, n).astype(np.uint8)[None]
    ids = np.empty((1, n), dtype=object)
    for k in range(n):
        ids[0, k] = np.array([f"{k + 1:04d}"])
    fields["image_index"] = ids
    return fields


corruptions = st.sampled_from(
    ["drop_field", "short_field", "bad_code", "bad_id", "drop_split", "wrong_key", "none"]
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    corruptions, st.integers(1, 6), st.integers(0, 2**16), st.sampled_from(MARKET1501.attributes)
)
def test_malformed_mat_parses_or_raises_our_error(tmp_path, corruption, n, seed, attr):
    rng = np.random.default_rng(seed)
    splits = {"train": _valid_split(n, rng), "test": _valid_split(n, rng)}
    field = attr.fields[int(rng.integers(len(attr.fields)))]
    key = "market_attribute"
    if corruption == "drop_field":
        del splits["train"][field]
    elif corruption == "short_field":
        splits["test"][field] = splits["test"][field][:, :-1] if n > 1 else np.zeros((1, 3))
    elif corruption == "bad_code":
        splits["train"][field] = np.full((1, n), 7, dtype=np.uint8)
    elif corruption == "bad_id":
        splits["train"]["image_index"][0, 0] = np.array(["abc"])
    elif corruption == "drop_split":
        del splits["test"]
    elif corruption == "wrong_key":
        key = "other_attribute"
    path = tmp_path / f"a{seed}.mat"
    scipy.io.savemat(path, {key: splits})
    try:
        tables = load_attribute_mat(path)
    except CerberusError as exc:
        assert str(path) in str(exc)
        assert corruption != "none"
    else:
        assert corruption == "none"
        assert tables["train"].values.shape == (n, MARKET1501.num_attributes)
