"""Opening the gallery for a model (method §9.1): :func:`open_or_create` is the one fingerprint
check; an ``.npz`` index opens read-only and is never created."""

from __future__ import annotations

import numpy as np
import pytest

from cerberus.errors import CerberusError
from cerberus.store import (
    GalleryInfo,
    Items,
    StoreError,
    existing_store,
    open_or_create,
    open_store,
)
from tests.store.test_contract import DIM, info


def other_model() -> GalleryInfo:
    return GalleryInfo(dim=DIM, fingerprint="0" * 64, schema={}, prototypes={}, checkpoint="b.pt")


def test_open_or_create_makes_then_reopens_the_gallery(tmp_path):
    folder = tmp_path / "g"
    assert existing_store(folder) is None
    store = open_or_create(folder, info())
    store.add(Items.make(np.eye(DIM, dtype=np.float32)[:3], source="s", num_attributes=2))
    store.close()
    again = open_or_create(folder, info())
    assert again.count() == 3 and again.info.fingerprint == info().fingerprint
    again.close()
    (tmp_path / "empty").mkdir()
    open_or_create(tmp_path / "empty", info()).close()  # an empty folder is made a gallery


def test_open_or_create_refuses_another_model_in_one_line_naming_the_gallery(tmp_path):
    folder = tmp_path / "g"
    open_or_create(folder, info()).close()
    with pytest.raises(StoreError) as e:
        open_or_create(folder, other_model())
    message = str(e.value)
    assert "\n" not in message and str(folder) in message
    assert "model 000000000000" in message and "use a gallery of that model" in message
    with pytest.raises(StoreError, match="--checkpoint b.pt: model 0000"):
        open_or_create(open_store(folder), other_model(), where="--checkpoint b.pt")
    with pytest.raises(StoreError, match="dim 16"):  # the same weights cannot change dimension
        open_or_create(folder, GalleryInfo(16, info().fingerprint, {}, {}))


def test_an_index_file_is_opened_never_created(tmp_path):
    with pytest.raises(StoreError, match="x.npz: an index file is written by `cerberus index"):
        open_or_create(tmp_path / "x.npz", info())
    with pytest.raises(CerberusError, match="x.npz: index not found"):
        open_store(tmp_path / "x.npz")
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="f: not a gallery"):
        open_store(tmp_path / "f")
    with pytest.raises(StoreError, match="nowhere: no gallery there"):
        open_store(tmp_path / "nowhere")
