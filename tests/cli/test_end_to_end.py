"""End to end through the command line on a tiny synthetic set: synth -> train -> extract ->
index -> search (image, partial attributes) -> describe -> visualize -> export."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cerberus.cli import app
from cerberus.inference.embed import InferenceModel
from cerberus.inference.features import FeatureSet
from cerberus.store.npz import NpzIndex

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def cerberus(*args: str) -> subprocess.CompletedProcess:
    """The installed entry point, as a user runs it (errors are one line, exit code 2)."""
    code = "from cerberus.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    data, run = tmp / "data", tmp / "run"
    invoke(
        "synth", "--out", data, "--train-ids", 12, "--test-ids", 8, "--cameras", 3, "--workers", 1
    )
    invoke(
        "train", "-c", "configs/synthetic.yaml", "--no-resume",
        f"data.root={data}", f"train.output_dir={run}", "optim.iterations=4",
        "optim.warmup_iterations=1", "data.p=4", "data.k=2", "data.num_workers=0",
        "data.height=64", "data.width=32", "model.dim=16", "train.progress=false",
        "eval.num_workers=0", "train.checkpoint_every=4",
    )  # fmt: skip
    yield {"data": data, "ckpt": run / "last.pt", "tmp": tmp}
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def test_extract_index_search_describe_visualize_export(trained):
    data, ckpt, tmp = trained["data"], trained["ckpt"], trained["tmp"]
    gallery = data / "bounding_box_test"
    out = invoke(
        "extract",
        "--checkpoint",
        ckpt,
        "--images",
        gallery,
        "--out",
        tmp / "g.npz",
        "--attributes",
        data / "market_attribute.mat",
        "--workers",
        0,
    )
    n = len(list(gallery.glob("*.jpg")))
    assert f"{n} images" in out
    feats = FeatureSet.load(tmp / "g.npz")
    assert feats.features.shape == (n, 5, 16)
    known = feats.pids > 0
    assert known.any() and (feats.values[known] >= 0).all()  # attributes attached as truth

    out = invoke("index", "--features", tmp / "g.npz", "--out", tmp / "g.index.npz")
    assert f"flat index of {n} vectors (dim 80)" in out
    out = invoke("index", "--features", tmp / "g.npz", "--out", tmp / "hnsw.npz", "--kind", "hnsw")
    assert "recall@10 vs exact search" in out

    # reID by image: JSON ranking equals brute force over the extracted features
    query = sorted((data / "query").glob("*.jpg"))[0]
    out = invoke("search", "--index", tmp / "g.index.npz", "--image", query, "--json", "-k", 5)
    found = json.loads(out)
    net = InferenceModel.from_checkpoint(ckpt, device="cpu", num_workers=0)
    q = torch.nn.functional.normalize(torch.from_numpy(net.features([query])), dim=-1)
    g = torch.nn.functional.normalize(torch.from_numpy(feats.features), dim=-1)
    sim = torch.einsum("qgd,ngd->qn", q, g)[0] / 5
    expected = [feats.paths[i] for i in sim.topk(5).indices.tolist()]
    assert [r["path"] for r in found["results"]] == expected
    qpid = int(query.name.split("_")[0])
    assert [r["correct"] for r in found["results"]] == [r["pid"] == qpid for r in found["results"]]

    # APS by a partial description: table output and a figure
    out = invoke(
        "search",
        "--index",
        tmp / "g.index.npz",
        "--attrs",
        "gender=female, upper.color=red, backpack=yes",
        "--figure",
        tmp / "aps.png",
    )
    lines = out.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "item", "person", "cam", "ok", "path"]
    assert len(lines) == 1 + 10 + 1 and lines[1].split()[0] == "1"
    assert Image.open(tmp / "aps.png").size[0] > 600
    found = json.loads(
        invoke(
            "search",
            "--index",
            tmp / "g.index.npz",
            "--attrs",
            "gender=female, upper.color=red, backpack=yes",
            "--json",
        )
    )
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True)
    index = NpzIndex.load(tmp / "g.index.npz")
    for r in found["results"]:
        v = index.values[index.paths.index(r["path"])]
        s = index.schema
        match = (
            v[s.index("gender")] == 1
            and v[s.index("upper.color")] == 3
            and v[s.index("backpack")] == 1
        )
        assert r["correct"] == (bool(match) if (v >= 0).all() else None)

    # PAR
    out = json.loads(invoke("describe", "--checkpoint", ckpt, query, "--json"))
    assert out[0]["image"] == str(query)
    assert set(out[0]["attributes"]) == {a.name for a in index.schema.attributes}
    assert set(out[0]["confidence"]) == set("HULIC")
    text = invoke("describe", "--checkpoint", ckpt, query)
    assert text.startswith(f"{query}: ") and "hair" in text

    # figures
    invoke("visualize", "ranks", "--index", tmp / "g.index.npz", query, "--out", tmp / "figs")
    assert (tmp / "figs" / f"ranks_{query.stem}.png").is_file()
    invoke("visualize", "alignment", "--checkpoint", ckpt, query, "--out", tmp / "align.png")
    assert (tmp / "align.png").is_file()

    # ONNX export, verified with onnxruntime
    out = invoke("export", "--checkpoint", ckpt, "--out", tmp / "m.onnx")
    assert "onnxruntime matches PyTorch" in out
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp / "m.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 64, 32)
    emb = sess.run(["embedding"], {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = net.model.embed(x).numpy()
    np.testing.assert_allclose(emb, ref, atol=1e-4)


@pytest.fixture(scope="module")
def flat_index(trained) -> Path:
    """A flat index of the gallery, built here (no test relies on another having run)."""
    folder = trained["tmp"] / "flat_index"
    folder.mkdir()
    invoke("extract", "--checkpoint", trained["ckpt"], "--images",
           trained["data"] / "bounding_box_test", "--out", folder / "g.npz", "--attributes",
           trained["data"] / "market_attribute.mat", "--workers", 0)  # fmt: skip
    invoke("index", "--features", folder / "g.npz", "--out", folder / "g.index.npz")
    return folder / "g.index.npz"


def test_cli_errors_are_one_line(trained, flat_index, tmp_path):
    index = flat_index
    r = cerberus("search", "--index", index, "--attrs", "colour=red")
    assert r.returncode == 2
    assert (
        r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]]
        and "unknown attribute 'colour'; valid: hat, hair, upper.color" in r.stderr
    )
    r = cerberus("search", "--index", index, "--attrs", "upper.color=teal")
    assert r.returncode == 2 and "valid: none, black, white, red" in r.stderr
    r = cerberus("search", "--index", tmp_path / "none.npz", "--attrs", "hat=yes")
    assert r.returncode == 2 and "none.npz: index not found" in r.stderr
    # an index built by another model is refused
    other = tmp_path / "other.pt"
    state = torch.load(trained["ckpt"], weights_only=True)
    state["model"]["prototypes.H"] = state["model"]["prototypes.H"] + 1
    torch.save(state, other)
    query = sorted((trained["data"] / "query").glob("*.jpg"))[0]
    r = cerberus("search", "--index", index, "--image", query, "--checkpoint", other)
    assert r.returncode == 2 and "is not the model this gallery was built with" in r.stderr
    assert "Traceback" not in r.stderr


def test_visualize_attention_and_tsne(trained):
    pytest.importorskip("sklearn")
    ckpt, tmp, data = trained["ckpt"], trained["tmp"], trained["data"]
    queries = sorted((data / "query").glob("*.jpg"))[:2]
    out = invoke("visualize", "attention", "--checkpoint", ckpt, *queries, "--out", tmp / "att.png")
    assert "figure:" in out and Image.open(tmp / "att.png").size[1] > 2 * 128
    out = invoke(
        "visualize", "tsne", "--checkpoint", ckpt, "--compare", ckpt, "--group", "I",
        "--ids", 4, "--out", tmp / "tsne.png",
    )  # fmt: skip
    assert "identity silhouette" in out and (tmp / "tsne.png").is_file()


def test_ablate_rejects_unknown_experiments_and_grids(trained, tmp_path):
    r = cerberus("ablate", "table9", "-c", "configs/synthetic.yaml", "--out", tmp_path)
    assert r.returncode == 2 and "table7" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cerberus(
        "ablate", "sensitivity", "-c", "configs/synthetic.yaml", "--out", tmp_path,
        "--grid", tmp_path / "missing.yaml",
    )  # fmt: skip
    assert r.returncode == 2 and "missing.yaml: grid file not found" in r.stderr
