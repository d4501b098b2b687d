"""`cerberus demo` end to end on a tiny synthetic set: report, table and every figure."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from cerberus.config import load_config
from cerberus.data.synthetic.benchmark import generate_synthetic
from cerberus.experiments.demo import run_demo
from cerberus.store.npz import NpzIndex


def test_demo_writes_the_report_and_figures(tmp_path, monkeypatch):
    config = Path("configs/synthetic.yaml").resolve()
    monkeypatch.chdir(tmp_path)  # relative data and output folders, as `make demo` gives them
    data = tmp_path / "data"
    generate_synthetic(data, num_train_ids=12, num_test_ids=8, num_cameras=3, num_workers=1)
    cfg = load_config(
        config,
        [
            "data.root=data",
            "optim.iterations=3",
            "optim.warmup_iterations=1",
            "data.p=4",
            "data.k=2",
            "data.num_workers=0",
            "data.height=64",
            "data.width=32",
            "model.dim=16",
            "train.progress=false",
            "eval.num_workers=0",
        ],
    )
    report = run_demo(cfg, Path("demo"))
    text = report.read_text()
    assert text.startswith("# Cerberus demo report")
    assert "| reID | mAP |" in text and "| PAR | mA |" in text
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert f"{100 * metrics['reid']['map_score']:.2f}" in text
    for name in ("reid_ranks", "aps_full", "aps_partial", "alignment", "synthetic_sheet"):
        assert f"({name}.png)" in text
        with Image.open(tmp_path / "demo" / f"{name}.png") as img:
            assert img.width > 300
    with (
        Image.open(tmp_path / "demo" / "search.png") as both,
        Image.open(tmp_path / "demo" / "reid_ranks.png") as top,
        Image.open(tmp_path / "demo" / "aps_partial.png") as bottom,
    ):  # the docs/index.md picture: the reID rank list above the partial APS one
        assert both.size == (max(top.width, bottom.width), top.height + bottom.height)
        assert both.convert("RGB").crop((0, 0, top.width, top.height)).tobytes() == (
            top.convert("RGB").tobytes()
        )
    # PAR: one row per image, attributes as columns (was one row per attribute).
    assert "| image | right | hat | hair |" in text
    assert text.count("| `") >= 4  # at least one row per sampled query image
    assert "market1501 at" not in text  # no redundant dataset header
    assert "L2 norm" in text
    assert (tmp_path / "demo" / "gallery_index.npz").is_file()
    # the index names its crops and its model absolutely: it serves from any folder
    index = NpzIndex.load(tmp_path / "demo" / "gallery_index.npz")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in index.paths)
    assert Path(index.meta["checkpoint"]) == (tmp_path / "demo" / "last.pt").resolve()


def test_par_table_marks_wrong_values():
    from cerberus.experiments.demo import par_table

    lines = par_table(
        ["a.jpg", "b.jpg"],
        [{"hat": "no", "gender": "male"}, {"hat": "yes", "gender": "female"}],
        [{"hat": "no", "gender": "male"}, {"hat": "no", "gender": "female"}],
    )
    assert lines[0] == "| image | right | hat | gender |"
    assert lines[2] == "| `a.jpg` | 2/2 | no | male |"
    assert lines[3] == "| `b.jpg` | 1/2 | **yes** (annotated: no) | female |"


def test_aps_caption_explains_zero_hits():
    import numpy as np

    from cerberus.attributes.schema_files import MARKET1501
    from cerberus.experiments.demo import aps_caption
    from cerberus.inference.embed import parse_attribute_query

    aq = parse_attribute_query("gender=female, backpack=yes", MARKET1501)
    values = np.zeros((5, MARKET1501.num_attributes), dtype=np.int64)
    values[0, MARKET1501.index("gender")] = 1
    values[0, MARKET1501.index("backpack")] = 1
    zero = aps_caption("q", aq, 0, values, MARKET1501)
    assert "0 of the top 10" in zero and "1 gallery crop is" in zero
    assert "None of the 10 is right" in zero and "rare combination" in zero
    assert "None of the 10" not in aps_caption("q", aq, 1, values, MARKET1501)
    assert "(here none at all)" in aps_caption("q", aq, 0, values[1:], MARKET1501)
