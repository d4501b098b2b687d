"""The CSV / Parquet row reader as people write files: stray quotes, other separators, ``2.0`` ids,
header / value case and extra columns."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cerberus.data.table import check_table_dataset, read_table_dataset
from cerberus.errors import CerberusError
from tests.data.test_table import ATTRS, IMAGES, cerberus, lines, table_tree, write_lines


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


def test_an_unknown_separator_is_one_problem_naming_it(tmp_path):
    root = table_tree(tmp_path / "t")
    write_lines(root / IMAGES, [r.replace(",", "|") for r in lines(root / IMAGES)])
    texts = [str(p) for p in check_table_dataset(root).problems]
    assert texts == [
        f"{root / IMAGES}:1: the header is one column ('path|person_id|camera_id|split'): "
        "separate the columns with a comma, a semicolon or a tab"
    ]
