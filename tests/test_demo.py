"""`cerberus demo` end to end on a tiny synthetic set: report, table and every figure."""

from __future__ import annotations

import json

from PIL import Image

from cerberus.config import load_config
from cerberus.data.synthetic import generate_synthetic
from cerberus.demo import run_demo


def test_demo_writes_the_report_and_figures(tmp_path):
    data = tmp_path / "data"
    generate_synthetic(data, num_train_ids=12, num_test_ids=8, num_cameras=3, num_workers=1)
    cfg = load_config(
        "configs/synthetic.yaml",
        [
            f"data.root={data}",
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
    report = run_demo(cfg, tmp_path / "demo")
    text = report.read_text()
    assert text.startswith("# Cerberus demo report")
    assert "| reID | mAP |" in text and "| PAR | mA |" in text
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert f"{100 * metrics['reid']['map_score']:.2f}" in text
    for name in ("reid_ranks", "aps_full", "aps_partial", "alignment", "synthetic_sheet"):
        assert f"({name}.png)" in text
        with Image.open(tmp_path / "demo" / f"{name}.png") as img:
            assert img.width > 300
    assert "| image | attribute | predicted | annotated |" in text
    assert (tmp_path / "demo" / "gallery_index.npz").is_file()
