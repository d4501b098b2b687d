"""Table datasets as spreadsheets and people write them: bad image files, stray quotes, other
separators, ``2.0`` ids, header / value case, extra columns, paths written two ways."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from cerberus.attributes.schema_files import MARKET1501
from cerberus.data.table import check_table_dataset, read_table_dataset
from cerberus.errors import CerberusError
from cerberus.evaluation.evaluate import reid_camera_arguments
from tests.data.test_table import ATTRS, IMAGES, cerberus, lines, table_tree, write_lines


def image_row(root, number: int) -> dict[str, str]:
    """Line ``number`` of images.csv as ``{column: cell}``."""
    rows = list(csv.reader(lines(root / IMAGES)))
    return dict(zip(rows[0], rows[number - 1]))


def test_check_data_decodes_every_image_and_names_each_bad_file(tmp_path):
    root = table_tree(tmp_path / "t")
    spoiled = {3: b"", 5: b"just some text, not an image\n"}
    for number, data in spoiled.items():
        (root / image_row(root, number)["path"]).write_bytes(data)
    truncated = root / image_row(root, 7)["path"]
    truncated.write_bytes(truncated.read_bytes()[:300])
    found = check_table_dataset(root)
    texts = [str(p) for p in found.problems]
    assert found.dataset is None
    for number in (3, 5, 7):
        shown = image_row(root, number)["path"]
        start = f"{root / IMAGES}:{number}: image {shown} is not readable"
        assert any(t.startswith(start) for t in texts), texts
    assert len(texts) == 3
    done = cerberus("check-data", root)
    assert done.returncode == 2 and done.stdout.count("is not readable") == 3
    assert done.stderr.strip() == f"error: {root}: 3 problems (listed above)"
    # Reading for training only checks that files exist (decoding is the training's own check).
    assert read_table_dataset(root).name == "table"


def test_a_stray_quote_is_named_where_the_quoted_field_opens(tmp_path):
    root = table_tree(tmp_path / "t")
    rows = lines(root / IMAGES)
    rows[4] = '"' + rows[4]  # line 5
    write_lines(root / IMAGES, rows)
    found = check_table_dataset(root)
    texts = [str(p) for p in found.problems]
    assert texts == [
        f'{root / IMAGES}:5: a quoted field opens on this line (a stray ")? and runs to line '
        f"{len(rows)}: lines 5-{len(rows)} would be read as one value"
    ]
    with pytest.raises(CerberusError, match=f"{IMAGES}:5: a quoted field opens on this line"):
        read_table_dataset(root)


def test_a_quote_in_an_attribute_cell_names_its_line(tmp_path):
    root = table_tree(tmp_path / "t")
    rows = lines(root / ATTRS)
    rows[2] = rows[2].replace(",", ',"', 1)  # line 3: the second field opens a quote
    write_lines(root / ATTRS, rows)
    texts = [str(p) for p in check_table_dataset(root).problems]
    assert len(texts) == 1 and texts[0].startswith(f"{root / ATTRS}:3: a quoted field opens")


def _same_dataset(a, b) -> None:
    for split in ("train", "query", "gallery"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.paths == y.paths
        for name in ("pids", "camids", "labels", "values"):
            assert np.array_equal(getattr(x, name), getattr(y, name)), (split, name)


@pytest.mark.parametrize("sep", [";", "\t"])
def test_other_separators_are_detected(tmp_path, sep):
    root = table_tree(tmp_path / "t")
    want = read_table_dataset(root)
    for name in (IMAGES, ATTRS):
        rows = list(csv.reader(lines(root / name)))
        with open(root / name, "w", newline="") as fh:
            csv.writer(fh, delimiter=sep).writerows(rows)
    found = check_table_dataset(root)
    assert found.problems == [] and found.warnings == []
    _same_dataset(found.dataset, want)


def test_ids_written_as_integral_floats_are_accepted(tmp_path):
    root = table_tree(tmp_path / "t")
    want = read_table_dataset(root)
    for name in (IMAGES, ATTRS):
        rows = list(csv.reader(lines(root / name)))
        j = rows[0].index("person_id")
        for r in rows[1:]:
            r[j] = f"{int(r[j])}.0"
        write_lines(root / name, [",".join(r) for r in rows])
    _same_dataset(read_table_dataset(root), want)
    rows = lines(root / ATTRS)
    rows[1] = rows[1].replace("1.0,", "1.5,", 1)
    write_lines(root / ATTRS, rows)
    texts = [str(p) for p in check_table_dataset(root).problems]
    assert f"{root / ATTRS}:2: person_id '1.5' is not an integer >= 1" in texts


def test_header_and_value_case_are_ignored_and_extra_columns_warned_once(tmp_path):
    root = table_tree(tmp_path / "t")
    want = read_table_dataset(root)
    rows = list(csv.reader(lines(root / IMAGES)))
    rows[0] = ["Path", "PERSON_ID", "Camera_Id", "Split"]
    rows = [r + (["notes"] if i == 0 else ["looks fine"]) for i, r in enumerate(rows)]
    for r in rows[1:]:
        r[3] = r[3].capitalize()  # Train, Query, Gallery
    write_lines(root / IMAGES, [",".join(r) for r in rows])
    attrs = lines(root / ATTRS)
    attrs[0] = attrs[0].replace("person_id", "Person_Id").upper().replace("PERSON_ID", "person_id")
    attrs = [a + (",annotator" if i == 0 else ",me") for i, a in enumerate(attrs)]
    write_lines(root / ATTRS, attrs)
    found = check_table_dataset(root)
    assert found.problems == []
    _same_dataset(found.dataset, want)
    assert [str(w) for w in found.warnings] == [
        f"{root / IMAGES}:1: columns not used (ignored): 'notes'",
        f"{root / ATTRS}:1: columns not used (ignored): 'annotator'",
    ]
    done = cerberus("check-data", root)
    assert done.returncode == 0, done.stderr
    assert f"warning: {root / IMAGES}:1: columns not used (ignored): 'notes'" in done.stdout
    assert done.stdout.strip().endswith("ok")


def test_a_duplicate_row_written_another_way_is_caught(tmp_path):
    root = table_tree(tmp_path / "t")
    first = image_row(root, 2)
    folder, name = first["path"].split("/")
    again = f"{folder}/../{folder}/./{name}"
    write_lines(root / IMAGES, lines(root / IMAGES) + [f"{again},{first['person_id']},c1,train"])
    n = len(lines(root / IMAGES))
    texts = [str(p) for p in check_table_dataset(root).problems]
    assert f"{root / IMAGES}:{n}: duplicate row: {again} is already in train at line 2" in texts


def test_camera_less_evaluation_removes_the_query_image_whichever_way_it_is_written(tmp_path):
    data = read_table_dataset(table_tree(tmp_path / "t", cameras=False))
    g = data.gallery
    # The first query written as a gallery file, through "..": the same image.
    twisted = g.paths[0].parent / ".." / g.paths[0].parent.name / g.paths[0].name
    query = dataclasses.replace(
        data.query, paths=(twisted, *data.query.paths[1:]), pids=data.query.pids.copy()
    )
    args = reid_camera_arguments(dataclasses.replace(data, query=query))
    assert args["query_images"][0] == args["gallery_images"][0]
    assert len(set(args["query_images"][1:]) & set(args["gallery_images"])) == 0
    assert MARKET1501.name == data.schema.name


def test_eval_data_detects_a_table_dataset_and_a_benchmark_tree(tmp_path, tiny_index, cli):
    from cerberus.config import Config, DataConfig
    from cerberus.evaluation.evaluate import checkpoint_dataset
    from tests.conftest import make_tree

    table = table_tree(tmp_path / "t")
    market = make_tree(tmp_path / "m", MARKET1501)
    # A model trained on a benchmark tree (tiny_index), evaluated on a table dataset.
    code, out, err = cli("eval", "--checkpoint", tiny_index["ckpt"], "--data", table,
                         "--device", "cpu", "--workers", 0)  # fmt: skip
    assert code == 0, err
    assert "cameras" not in err and "reID" in out
    bench = Config(data=DataConfig(dataset="market1501", root=str(market)))
    assert checkpoint_dataset(bench, MARKET1501, "x.pt", table).name == "table"
    # A model trained on a table dataset (its config names data.schema), on a benchmark tree.
    own = Config(data=DataConfig(dataset="table", root=str(table), schema="market1501"))
    assert checkpoint_dataset(own, MARKET1501, "x.pt", market).name == "market1501"
    assert checkpoint_dataset(own, MARKET1501, "x.pt", table).name == "table"
    assert checkpoint_dataset(own, MARKET1501, "x.pt").name == "table"


def _relabel_cameras(root, mapping: dict[str, str]) -> dict[str, str]:
    """Rewrite images.csv's camera_id cells through ``mapping``; ``{path: new label}``."""
    rows = list(csv.reader(lines(root / IMAGES)))
    j = rows[0].index("camera_id")
    for r in rows[1:]:
        r[j] = mapping[r[j]]
    write_lines(root / IMAGES, [",".join(r) for r in rows])
    return {r[0]: r[j] for r in rows[1:]}


def test_own_camera_labels_are_shown_everywhere_and_sorted_as_numbers(tmp_path):
    from cerberus.data.table import table_summary, write_table_dataset
    from cerberus.inference.embed import extract_image_set
    from cerberus.inference.scoring import embed_features
    from cerberus.search import result_rows
    from cerberus.store.npz import NpzStore
    from tests.conftest import tiny_model

    root = table_tree(tmp_path / "t")
    label_of = _relabel_cameras(root, {"c1": "40", "c2": "7.0", "c3": "12"})
    label_of = {p: x.removesuffix(".0") for p, x in label_of.items()}  # a spreadsheet's 7.0
    found = check_table_dataset(root)
    assert found.camera_labels == ("7", "12", "40")
    for summary in (
        table_summary(found.dataset, found.camera_labels),
        table_summary(found.dataset),
    ):
        assert "cameras: 3 (7, 12, 40)" in summary
    data = found.dataset
    feats = extract_image_set(tiny_model(), data.gallery, height=32, width=16, num_workers=0)
    assert feats.meta["camera_labels"] == ["7", "12", "40"]
    feats.save(tmp_path / "f.npz")
    NpzStore.build(type(feats).load(tmp_path / "f.npz")).save(tmp_path / "g.npz")
    index = NpzStore.load(tmp_path / "g.npz")
    query = embed_features(feats.features[:1])
    rows = result_rows(index, index.search(query, 8)[0])
    assert len(rows) == 8
    for r in rows:
        shown = str(next(p for p in label_of if (root / p).resolve() == type(root)(r["path"])))
        assert r["camera"] == label_of[shown]
    # Written back as a table, the labels stay the user's.
    out = tmp_path / "again"
    out.mkdir()
    write_table_dataset(data, out)
    assert {c.split(",")[2] for c in lines(out / IMAGES)[1:]} == {"7", "12", "40"}
    # An index file from before camera labels were stored shows the benchmark names.
    index.index.meta.pop("camera_labels")
    index = NpzStore(index.index)
    rows = result_rows(index, index.search(query, 3)[0])
    assert [r["camera"] for r in rows] == [f"c{r['camid'] + 1}" for r in rows]


def test_camera_labels_that_are_not_all_numbers_sort_naturally(tmp_path):
    root = table_tree(tmp_path / "t")
    _relabel_cameras(root, {"c1": "cam12", "c2": "cam7", "c3": "Gate"})
    assert check_table_dataset(root).camera_labels == ("cam7", "cam12", "Gate")


def test_an_unknown_separator_is_one_problem_naming_it(tmp_path):
    root = table_tree(tmp_path / "t")
    write_lines(root / IMAGES, [r.replace(",", "|") for r in lines(root / IMAGES)])
    texts = [str(p) for p in check_table_dataset(root).problems]
    assert texts == [
        f"{root / IMAGES}:1: the header is one column ('path|person_id|camera_id|split'): "
        "separate the columns with a comma, a semicolon or a tab"
    ]
