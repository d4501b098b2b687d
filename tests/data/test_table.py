"""Table datasets (images.csv + attributes.csv + a schema): reading, every kind of bad row and
unreadable image, duplicates written two ways, camera labels, check-data, and the round trip
synth --format table -> train -> eval -> extract -> index -> search."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501, get_schema
from cerberus.cli import app
from cerberus.data.datasets import read_dataset
from cerberus.data.table import (
    UNKNOWN_CAMERA,
    check_table_dataset,
    open_dataset,
    read_table_dataset,
    table_summary,
    write_table_dataset,
)
from cerberus.errors import CerberusError
from cerberus.evaluation.evaluate import reid_camera_arguments
from cerberus.inference.embed import InferenceModel
from cerberus.inference.features import UNKNOWN, FeatureSet
from cerberus.store.npz import NpzIndex
from cerberus.training.checkpoints import load_checkpoint, save_checkpoint
from tests.conftest import make_tree, random_values

runner = CliRunner()

TINY = (
    "optim.iterations=2", "optim.warmup_iterations=1", "data.p=4", "data.k=2",
    "data.num_workers=0", "data.height=64", "data.width=32", "model.dim=16",
    "train.progress=false", "eval.num_workers=0", "train.checkpoint_every=2", "train.threads=1",
)  # fmt: skip


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cerberus(*args) -> subprocess.CompletedProcess:
    """The entry point as a user runs it (errors: one line on stderr, exit code 2)."""
    code = "from cerberus.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )


def table_tree(root: Path, schema=MARKET1501, *, cameras: bool = True) -> Path:
    """A benchmark tree (conftest) described as a table dataset; the .mat file removed."""
    make_tree(root, schema)
    write_table_dataset(read_dataset(root, schema.name), root, cameras=cameras)
    for mat in root.glob("*.mat"):
        mat.unlink()
    return root


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join(rows) + "\n")


def test_a_table_reads_as_the_benchmark_it_describes(tmp_path, schema):
    tree = make_tree(tmp_path / "tree", schema)
    bench = read_dataset(tree, schema.name)
    table = write_table_dataset(bench, tree)
    assert table["images"].read_text().startswith("path,person_id,camera_id,split\n")
    data = read_table_dataset(tree)
    assert data.name == "table" and data.cameras_known and data.schema == schema
    for split in ("train", "query", "gallery"):
        a, b = getattr(bench, split), getattr(data, split)
        assert [p.resolve() for p in a.paths] == [p.resolve() for p in b.paths]
        for field in ("pids", "camids", "labels", "values", "sids", "alt_sids"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (split, field)
    assert data.num_train_ids == bench.num_train_ids
    for k in bench.train_sid_counts():
        assert np.array_equal(bench.train_sid_counts()[k], data.train_sid_counts()[k])


def test_without_a_camera_column_cameras_are_unknown(tmp_path):
    data = read_table_dataset(table_tree(tmp_path / "t", cameras=False))
    assert not data.cameras_known
    assert (data.gallery.camids == UNKNOWN_CAMERA).all()
    assert "cameras: unknown" in table_summary(data)


def test_colour_alternatives_and_unknown_cells(tmp_path):
    root = table_tree(tmp_path / "t")
    rows = lines(root / "attributes.csv")
    header = rows[0].split(",")
    cells = rows[2].split(",")  # person_id 2
    cells[header.index("lower.color")] = "black|White"
    cells[header.index("hat")] = ""
    rows[2] = ",".join(cells)
    write_lines(root / "attributes.csv", rows)
    data = read_table_dataset(root)
    row = list(data.train_attributes.ids).index(2)
    j = MARKET1501.index("lower.color")
    assert data.train_attributes.values[row, j] == 1  # black
    assert data.train_attributes.alt_values[row, 0, j] == 2  # white
    assert data.train_attributes.values[row, MARKET1501.index("hat")] == -1
    assert (data.train.sids[data.train.pids == 2, 0] == -1).all()  # head group unknown


def _replace_line(path: Path, number: int, text: str) -> None:
    rows = lines(path)
    rows[number - 1] = text
    write_lines(path, rows)


def _append(path: Path, text: str) -> None:
    write_lines(path, lines(path) + [text])


def _cell(path: Path, number: int, column: str, value: str) -> None:
    rows = lines(path)
    header = rows[0].split(",")
    cells = rows[number - 1].split(",")
    cells[header.index(column)] = value
    rows[number - 1] = ",".join(cells)
    write_lines(path, rows)


def _drop_line(path: Path, number: int) -> None:
    rows = lines(path)
    del rows[number - 1]
    write_lines(path, rows)


IMAGES, ATTRS = "images.csv", "attributes.csv"
FIRST_TRAIN = "bounding_box_train/0002_c1s1_000000_00.jpg"  # line 2 of images.csv

BAD_ROWS = {
    "missing image": (
        lambda r: _cell(r / IMAGES, 3, "path", "bounding_box_train/nope.jpg"),
        f"{IMAGES}:3: image bounding_box_train/nope.jpg not found",
    ),
    "windows path": (
        lambda r: _cell(r / IMAGES, 3, "path", "bounding_box_train\\x.jpg"),
        "(write paths with /, not \\)",
    ),
    "unknown value": (
        lambda r: _cell(r / ATTRS, 2, "upper.color", "pruple"),
        f"{ATTRS}:2: person_id 1: attribute 'upper.color' has no value 'pruple'; valid: none, "
        "black",
    ),
    "id with images but no attributes": (
        lambda r: _drop_line(r / ATTRS, 3),  # person_id 2, first image at line 2
        f"{IMAGES}:2: person_id 2 has images but no row in the attribute table",
    ),
    "duplicate image row": (
        lambda r: _append(r / IMAGES, f"{FIRST_TRAIN},2,c1,train"),
        f"duplicate row: {FIRST_TRAIN} is already in train at line 2",
    ),
    "duplicate attribute row": (
        lambda r: _append(r / ATTRS, lines(r / ATTRS)[1]),
        "duplicate row: person_id 1 already has attributes at line 2",
    ),
    "identity in train and test": (
        lambda r: _append(r / IMAGES, f"{FIRST_TRAIN},2,c1,query"),
        "person_id 2 is in both train (line 2) and query",
    ),
    "bad split": (
        lambda r: _cell(r / IMAGES, 4, "split", "test"),
        f"{IMAGES}:4: split 'test' is not one of train, query, gallery",
    ),
    "bad person_id": (
        lambda r: _cell(r / IMAGES, 2, "person_id", "x7"),
        f"{IMAGES}:2: person_id 'x7' is not an integer >= 1",
    ),
    "distractor outside the gallery": (
        lambda r: _cell(r / IMAGES, 2, "person_id", "0"),
        f"{IMAGES}:2: person_id '0' is not an integer >= 1",
    ),
    "wrong number of fields": (
        lambda r: _replace_line(r / IMAGES, 5, f"{FIRST_TRAIN},2"),
        f"{IMAGES}:5: 2 fields, the header has 4",
    ),
    "empty camera": (
        lambda r: _cell(r / IMAGES, 6, "camera_id", ""),
        f"{IMAGES}:6: camera_id is empty (leave the column out when cameras are unknown)",
    ),
    "missing column": (
        lambda r: _replace_line(r / IMAGES, 1, "path,person_id,camera_id,splt"),
        f"{IMAGES}:1: missing column 'split'",
    ),
    "unknown attribute column": (
        lambda r: _replace_line(r / ATTRS, 1, lines(r / ATTRS)[0].replace("hat", "cap")),
        f"{ATTRS}:1: unknown column 'cap'; valid: person_id, hat",
    ),
    "several values of a binary attribute": (
        lambda r: _cell(r / ATTRS, 2, "gender", "male|female"),
        f"{ATTRS}:2: person_id 1: gender: 'male|female' gives several values",
    ),
    "empty split": (
        lambda r: write_lines(r / IMAGES, [x for x in lines(r / IMAGES) if ",query" not in x]),
        f"{IMAGES}: no query image (every split needs at least one)",
    ),
}


@pytest.mark.parametrize("kind", BAD_ROWS)
def test_every_kind_of_bad_row_has_its_own_message(tmp_path, kind):
    root = table_tree(tmp_path / "t")
    spoil, message = BAD_ROWS[kind]
    spoil(root)
    found = check_table_dataset(root)
    assert found.dataset is None
    texts = [str(p) for p in found.problems]
    assert any(message in t for t in texts), texts
    assert all(t.startswith(str(root)) for t in texts)  # each names its file
    with pytest.raises(CerberusError, match="^" + str(root)):
        read_table_dataset(root)


def test_check_data_lists_problems_one_per_line_and_exits_2(tmp_path):
    root = table_tree(tmp_path / "t")
    _cell(root / IMAGES, 3, "path", "bounding_box_train/nope.jpg")
    _cell(root / ATTRS, 2, "upper.color", "pruple")
    done = cerberus("check-data", root)
    assert done.returncode == 2
    out = done.stdout.splitlines()
    assert out[0].startswith(f"{root / IMAGES}:3: image") and out[1].startswith(f"{root / ATTRS}:2")
    assert done.stderr.strip() == f"error: {root}: 2 problems (listed above)"
    assert "Traceback" not in done.stderr


def test_schema_and_folder_errors(tmp_path):
    root = table_tree(tmp_path / "t")
    (root / "schema.yaml").unlink()
    with pytest.raises(CerberusError, match="schema.yaml: schema file not found; put"):
        check_table_dataset(root)
    assert check_table_dataset(root, "market1501").dataset is not None
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / IMAGES).write_text("path,person_id,split\n")
    with pytest.raises(CerberusError, match="a table dataset .images.csv.+set data.dataset=table"):
        open_dataset(bare, "market1501")
    with pytest.raises(CerberusError, match="data.attributes is for the Lin .mat files"):
        open_dataset(root, "table", attributes="x.mat", schema="market1501")
    with pytest.raises(CerberusError, match="no images.csv"):
        check_table_dataset(tmp_path)


def test_parquet_tables_read_like_csv(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from pyarrow import csv as pa_csv

    root = table_tree(tmp_path / "t")
    expected = read_table_dataset(root)
    for stem in ("images", "attributes"):
        options = pa_csv.ConvertOptions(strings_can_be_null=False)
        table = pa_csv.read_csv(root / f"{stem}.csv", convert_options=options)
        pq.write_table(table, root / f"{stem}.parquet")
        (root / f"{stem}.csv").unlink()
    data = read_table_dataset(root)
    assert np.array_equal(data.gallery.sids, expected.gallery.sids)
    assert np.array_equal(data.train.labels, expected.train.labels)
    assert isinstance(pa.__version__, str)


def test_synth_table_round_trips_through_check_data_train_eval_index_search(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    invoke("synth", "--out", data, "--format", "table", "--train-ids", 8, "--test-ids", 6,
           "--cameras", 3, "--workers", 1)  # fmt: skip
    assert not (data / "market_attribute.mat").exists()
    summary = invoke("check-data", data)
    assert "train" in summary and "cameras: 3 (c1, c2, c3)" in summary
    assert "test unseen" in summary and summary.strip().endswith("ok")
    # An empty cell (unknown) for a test identity: eval leaves it out of APS and PAR.
    test_id = str(read_table_dataset(data).test_attributes.ids[0])
    row = [r.split(",")[0] for r in lines(data / "attributes.csv")].index(test_id) + 1
    _cell(data / "attributes.csv", row, "hat", "")
    invoke("train", "-c", "configs/synthetic.yaml", "--no-resume", "data.dataset=table",
           f"data.root={data}", f"train.output_dir={run}", *TINY)  # fmt: skip
    state = load_checkpoint(run / "last.pt")
    assert state["meta"]["schema"] == MARKET1501.to_dict()  # the full schema, not a name
    report = invoke("eval", "--checkpoint", run / "last.pt", "--device", "cpu", "--workers", 0)
    assert "reID" in report and "reID protocol" not in report
    assert "APS: 1 of " in report and "full queries leave out groups unknown" in report
    out = invoke("extract", "--checkpoint", run / "last.pt", "--data", data, "--split", "gallery",
                 "--out", tmp_path / "g.npz", "--workers", 0, "--device", "cpu")  # fmt: skip
    assert "with identities from the table" in out
    feats = FeatureSet.load(tmp_path / "g.npz")
    dataset = read_table_dataset(data)
    assert np.array_equal(feats.pids, dataset.gallery.pids)
    assert np.array_equal(feats.values, dataset.gallery.values)
    invoke("index", "--features", tmp_path / "g.npz", "--out", tmp_path / "g.index.npz")
    found = json.loads(invoke("search", "--index", tmp_path / "g.index.npz", "--attrs",
                              "gender=female, backpack=yes", "--json", "-k", 3))  # fmt: skip
    assert len(found["results"]) == 3
    query = dataset.query.paths[0]
    found = json.loads(invoke("search", "--index", tmp_path / "g.index.npz", "--image", query,
                              "--json", "-k", 3, "--device", "cpu"))  # fmt: skip
    assert [r["rank"] for r in found["results"]] == [1, 2, 3]
    assert NpzIndex.load(tmp_path / "g.index.npz").meta["schema"] == MARKET1501.to_dict()
    out = invoke("info", "-c", "configs/synthetic.yaml", "data.dataset=table", f"data.root={data}")
    assert "ID classifiers for 8 identities (the training set of" in out
    # A checkpoint written before schemas were data names its schema: it still loads.
    state["meta"]["schema"] = "market1501"
    save_checkpoint(state, tmp_path / "old.pt")
    net = InferenceModel.from_checkpoint(tmp_path / "old.pt", device="cpu", num_workers=0)
    assert net.schema is MARKET1501


def test_own_schema_trains_and_its_checkpoint_loads_without_the_schema_file(tmp_path):
    from cerberus.config import load_config
    from cerberus.evaluation.evaluate import evaluate_checkpoint
    from cerberus.training.engine import train

    retail = get_schema("retail_example")
    root = table_tree(tmp_path / "t", cameras=False)
    ids = [int(x.split(",")[0]) for x in lines(root / ATTRS)[1:]]
    values = random_values(retail, len(ids), np.random.default_rng(0))
    rows = [",".join(["person_id", *(a.name for a in retail.attributes)])]
    for pid, row in zip(ids, values):
        rows.append(",".join([str(pid), *(a.values[v] for a, v in zip(retail.attributes, row))]))
    write_lines(root / ATTRS, rows)
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({**retail.to_dict(), "name": "own"}))
    (root / "schema.yaml").unlink()
    cfg = load_config(
        "configs/synthetic.yaml",
        ["data.dataset=table", f"data.root={root}", f"data.schema={own}",
         f"train.output_dir={tmp_path / 'run'}", "model.backbone=resnet18", *TINY],
    )  # fmt: skip
    result = train(cfg, resume=False)
    own.unlink()  # the checkpoint carries the schema
    net = InferenceModel.from_checkpoint(result.checkpoint, device="cpu", num_workers=0)
    assert net.schema.name == "own" and net.schema.num_sids == retail.num_sids
    described = net.describe(net.features([read_table_dataset(root, retail).query.paths[0]]))
    assert set(described[0]["attributes"]) == {a.name for a in retail.attributes}
    metrics = evaluate_checkpoint(result.checkpoint, data_root=root, device="cpu", num_workers=0)
    assert metrics["reid"]["protocol"].startswith("cameras unknown")
    assert len(metrics["par"]["attribute_accuracy_score"]) == len(retail.attributes)


def test_camera_less_features_store_unknown_cameras(tmp_path):
    from cerberus.inference.embed import extract_image_set
    from tests.conftest import tiny_model

    data = read_table_dataset(table_tree(tmp_path / "t", DUKEMTMC, cameras=False))
    model = tiny_model()
    # tiny_model has the Market schema's prototypes; the metadata follows the images.
    feats = extract_image_set(model, data.query, height=32, width=16, num_workers=0)
    assert (feats.camids == UNKNOWN).all() and feats.meta["schema"] == DUKEMTMC.to_dict()


def test_synth_table_without_cameras_and_option_errors(tmp_path):
    out = tmp_path / "s"
    invoke("synth", "--out", out, "--format", "table", "--no-camera-column", "--train-ids", 2,
           "--test-ids", 2, "--cameras", 2, "--workers", 1)  # fmt: skip
    assert lines(out / IMAGES)[0] == "path,person_id,split"
    assert not read_table_dataset(out).cameras_known
    with pytest.raises(CerberusError, match="--no-camera-column needs --format table"):
        runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--no-camera-column"],
                      catch_exceptions=False)  # fmt: skip
    with pytest.raises(CerberusError, match="--format 'csv': must be market or table"):
        runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--format", "csv"],
                      catch_exceptions=False)  # fmt: skip
    with pytest.raises(CerberusError, match="give exactly one of --images .a folder. or --data"):
        runner.invoke(app, ["extract", "--checkpoint", "x.pt", "--out", "f.npz"],
                      catch_exceptions=False)  # fmt: skip
    with pytest.raises(CerberusError, match="--split 'test': must be train, query or gallery"):
        runner.invoke(app, ["extract", "--checkpoint", "x.pt", "--out", "f.npz", "--data",
                            str(out), "--split", "test"], catch_exceptions=False)  # fmt: skip


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
