"""Shared fixtures: tiny benchmark trees made on the fly (no real images needed)."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cerberus.attributes.mat import save_attribute_mat
from cerberus.attributes.schema import Schema
from cerberus.attributes.schema_files import DUKEMTMC, MARKET1501
from cerberus.attributes.table import AttributeTable
from cerberus.cli import main
from cerberus.config import load_config

SHARED_ATTRIBUTES = Path(__file__).resolve().parents[2] / "shared" / "data" / "attributes"

needs_real = pytest.mark.skipif(
    not (SHARED_ATTRIBUTES / "market_attribute.mat").is_file(),
    reason="real attribute files not beside the checkout",
)
"""Skips a test that reads the real Lin et al. attribute files when they are not there."""


def random_values(schema: Schema, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.integers(0, a.num_values, n) for a in schema.attributes], 1)


def make_tree(
    root: Path,
    schema: Schema,
    *,
    train_ids=(2, 4, 6, 8),
    test_ids=(1, 3, 5),
    cams=(1, 2, 3),
    size=(32, 16),
    seed: int = 0,
) -> Path:
    """A benchmark tree in the Market-1501 or DukeMTMC-reID layout with flat-colour images."""
    rng = np.random.default_rng(seed)
    market = schema is MARKET1501
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def name(pid: int, cam: int, k: int) -> str:
        if market:
            pid_s = "-1" if pid == -1 else f"{pid:04d}"
            return f"{pid_s}_c{cam}s1_{k * 25:06d}_0{k % 3}.jpg"
        return f"{pid:04d}_c{cam}_f{k:07d}.jpg"

    base = {}

    def save(path: Path) -> None:
        """An identity-coloured body (top / bottom) on a noisy background."""
        pid = int(path.name.split("_")[0])
        if pid not in base:
            base[pid] = rng.integers(0, 255, (2, 3))
        img = rng.integers(0, 255, (size[0], size[1], 3)).astype(np.uint8)
        h, w = size
        top, bottom = base[pid]
        img[h // 8 : h // 2, w // 4 : 3 * w // 4] = np.clip(top + rng.normal(0, 8, 3), 0, 255)
        img[h // 2 : 7 * h // 8, w // 4 : 3 * w // 4] = np.clip(
            bottom + rng.normal(0, 8, 3), 0, 255
        )
        Image.fromarray(img).save(path, quality=90)

    for pid in train_ids:
        for cam in cams:
            for k in range(2):
                save(root / "bounding_box_train" / name(pid, cam, k))
    for pid in test_ids:
        for i, cam in enumerate(cams):
            save(root / ("query" if i == 0 else "bounding_box_test") / name(pid, cam, 0))
            save(root / "bounding_box_test" / name(pid, cam, 1))
    if market:
        save(root / "bounding_box_test" / name(0, 1, 7))
        save(root / "bounding_box_test" / name(-1, 2, 8))
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")
    tables = {
        "train": AttributeTable(
            schema, np.array(train_ids), random_values(schema, len(train_ids), rng)
        ),
        "test": AttributeTable(
            schema, np.array(test_ids), random_values(schema, len(test_ids), rng)
        ),
    }
    save_attribute_mat(root / ("market_attribute.mat" if market else "duke_attribute.mat"), tables)
    return root


@pytest.fixture(params=[MARKET1501, DUKEMTMC], ids=["market1501", "dukemtmc"])
def schema(request) -> Schema:
    return request.param


def tiny_model(seed: int = 0, **kwargs):
    """A small Cerberus (ResNet-18, random weights, d = 16, Market schema) built under ``seed``."""
    import torch

    from cerberus.attributes.schema import GROUPS
    from cerberus.modeling.model import build_model

    kwargs.setdefault("dim", 16)
    kwargs.setdefault("backbone", "resnet18")
    torch.manual_seed(seed)
    return build_model(
        num_classes=3,
        num_sids=MARKET1501.num_sids,
        binary_vectors={g: MARKET1501.codecs[g].binary_vectors() for g in GROUPS},
        pretrained=False,
        **kwargs,
    )


TINY_TRAINING = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.dim=16",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
    "data.num_workers=0",
    "optim.iterations=2",
    "optim.warmup_iterations=1",
    "train.device=cpu",
    "train.progress=false",
    "train.checkpoint_every=2",
    "train.calibrate=false",
    "eval.num_workers=0",
]
"""Config overrides for a seconds-long CPU training run on a :func:`make_tree` dataset. The
model is left uncalibrated, as checkpoints written before training calibrated are (tests of
the calibration at the end of training turn it on)."""


@pytest.fixture(scope="session")
def tiny_index(tmp_path_factory) -> dict[str, Path]:
    """A tiny Market-layout dataset, a 2-iteration checkpoint and a flat index of its gallery.

    Keys: ``data`` (dataset root), ``ckpt`` (``last.pt``), ``features`` (the gallery's
    features file), ``index`` (``gallery.npz``), ``query`` (a query crop of a gallery identity).
    """
    from typer.testing import CliRunner

    from cerberus.cli import app

    root = tmp_path_factory.mktemp("tiny_index")
    data, run = root / "data", root / "run"
    make_tree(data, MARKET1501, size=(64, 32))
    config = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
    runner = CliRunner()
    for args in (
        ["train", "-c", config, "--no-resume", *TINY_TRAINING, f"data.root={data}",
         f"train.output_dir={run}"],
        ["extract", "--checkpoint", run / "last.pt", "--images", data / "bounding_box_test",
         "--out", root / "gallery_features.npz", "--attributes", data / "market_attribute.mat",
         "--workers", 0, "--device", "cpu"],
        ["index", "--features", root / "gallery_features.npz", "--out", root / "gallery.npz"],
    ):  # fmt: skip
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return {
        "data": data,
        "ckpt": run / "last.pt",
        "features": root / "gallery_features.npz",
        "index": root / "gallery.npz",
        "query": sorted((data / "query").glob("*.jpg"))[0],
    }


class FullDisk:
    """A file object that accepts ``limit`` bytes, then fails as a full disk does."""

    def __init__(self, fh, limit: int):
        self.fh, self.left = fh, limit

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.left:
            self.fh.write(data[: self.left])
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Every binary file opened for writing runs out of space after 1000 bytes."""
    real_open = open

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return FullDisk(fh, 1000) if "w" in mode and "b" in mode else fh

    monkeypatch.setattr("builtins.open", fake_open)


def invoke(*args) -> str:
    """Run the CLI in-process through Typer's test runner; it must exit 0. Returns its output."""
    from typer.testing import CliRunner

    from cerberus.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def written(tmp_path_factory) -> Path:
    """Data, a run, a features file and an index, all written from ``a/`` with relative paths;
    ``b/`` is another, empty working directory."""
    here = tmp_path_factory.mktemp("port")
    a = here / "a"
    config = Path(__file__).resolve().parents[1] / "configs" / "synthetic.yaml"
    tiny = [*TINY_TRAINING, "train.log_every=1"]
    make_tree(a / "data", MARKET1501, train_ids=(2, 4, 6, 8), size=(64, 32))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        invoke(
            "train", "-c", config, "--no-resume", *tiny, "data.root=data", "train.output_dir=run"
        )
        invoke(
            "extract", "--checkpoint", "run/last.pt", "--images", "data/bounding_box_test",
            "--out", "g.npz", "--workers", 0, "--device", "cpu",
        )  # fmt: skip
        invoke("index", "--features", "g.npz", "--out", "g.index.npz")
    (here / "b").mkdir()
    return here


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args) -> (exit code, stdout, stderr)`` through the real entry point."""

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["cerberus", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        out, err = capsys.readouterr()
        return code, out, err

    return run


T_GALLERY = 1_790_000_000.0
"""The time (seconds since the epoch, UTC) of the first crop of :func:`tracked_store`."""


def tracked_store(features_path: Path):
    """A memory gallery of a features file's crops as footage would give them: each camera a
    source (``c1.mp4``...), the crops of one identity in one camera a track, one crop every
    2 s, identity ``p`` first seen ``60 p`` s after :data:`T_GALLERY`."""
    from cerberus.inference.features import FeatureSet
    from cerberus.search import items_of_features
    from cerberus.store import Items, MemoryStore, info_of_features

    feats = FeatureSet.load(features_path)
    items = items_of_features(feats)
    store = MemoryStore(info_of_features(feats))
    parts = []
    for camera in sorted(set(items.camera)):
        rows = np.flatnonzero(np.array(items.camera) == camera)
        part = items.take(rows)
        part.source = [f"{camera}.mp4"] * len(rows)
        pids = part.pid.copy()
        _, track = np.unique(pids, return_inverse=True)
        part.track = track.astype(np.int64)
        order = np.zeros(len(rows))
        for t in np.unique(track):
            members = np.flatnonzero(track == t)
            order[members] = np.arange(len(members))
        part.timestamp = T_GALLERY + 60.0 * np.maximum(pids, 0) + 2.0 * order
        part.frame = (order * 50).astype(np.int64)
        parts.append(part)
    store.add(Items.concat(parts))
    return store


TINY_TRAIN = {
    "data": {"height": 64, "width": 32, "p": 4, "k": 2, "num_workers": 0},
    "model": {"backbone": "resnet18", "pretrained": False, "dim": 16},
    "optim": {"iterations": 2, "warmup_iterations": 1},
    "train": {"device": "cpu", "progress": False, "log_every": 1, "calibrate": False},
}
"""A config (as a dict) for a seconds-long CPU training run; see :func:`tiny_yaml`."""


def assert_one_line(code: int, err: str, *names: str) -> None:
    """Exit code 2 and the error as one line on stderr that names each of ``names``.

    The run's own log lines (``INFO ...``) may come before it; nothing else may.
    """
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert all(x.startswith(("INFO ", "WARNING ")) for x in lines[:-1]), err
    for name in names:
        assert str(name) in lines[-1], err


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A Market-layout tree of 64 x 32 crops (a test module may define its own ``tree``)."""
    return make_tree(tmp_path_factory.mktemp("bench") / "m", MARKET1501, size=(64, 32))


def tiny_yaml(tmp_path: Path, tree: Path, **sections) -> Path:
    """A config file of :data:`TINY_TRAIN` on ``tree``, writing to ``tmp_path/run``; ``sections``
    update its sections (``data={"num_workers": 1}``)."""
    raw = {k: dict(v) for k, v in TINY_TRAIN.items()}
    raw["data"]["root"] = str(tree)
    raw["train"]["output_dir"] = str(tmp_path / "run")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def fake_eval(monkeypatch):
    """``eval`` without a model: the metrics are fixed, the write is what is tested."""
    import cerberus.evaluation.evaluate as evaluation

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: {"reid": {"mAP": 1}})
    monkeypatch.setattr(evaluation, "format_report", lambda m: "report")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tree) -> Path:
    """An untrained checkpoint as train writes it (built, not trained)."""
    import torch

    from cerberus.training.checkpoints import CHECKPOINT_VERSION, model_from_config, save_checkpoint

    tmp = tmp_path_factory.mktemp("ckpt")
    cfg = load_config(tiny_yaml(tmp, tree))
    torch.manual_seed(0)
    model = model_from_config(cfg.model, MARKET1501, 4, load_weights=False)
    state = {
        "format": "cerberus",
        "version": CHECKPOINT_VERSION,
        "iteration": 0,
        "model": model.state_dict(),
        "optimizer": {},
        "rng": {"torch": torch.get_rng_state()},
        "config": cfg.to_dict(),
        "meta": {"schema": "market1501", "num_classes": 4, "dataset": "market1501"},
    }
    save_checkpoint(state, tmp / "last.pt")
    yield tmp / "last.pt"
    shutil.rmtree(tmp, ignore_errors=True)  # a model is ~250 MB: free it with the module


def features_file(tmp_path: Path, n: int = 20) -> Path:
    """A features file ``tmp_path/f.npz`` of ``n`` random Market-schema crops (d = 4 per part)."""
    import numpy as np

    from cerberus.attributes.schema import GROUPS
    from cerberus.inference.features import FeatureSet

    rng = np.random.default_rng(0)
    d = 4
    fs = FeatureSet(
        features=rng.normal(size=(n, 5, d)).astype(np.float32),
        paths=[f"{i}.jpg" for i in range(n)],
        pids=np.arange(n),
        camids=np.zeros(n, np.int64),
        values=np.zeros((n, MARKET1501.num_attributes), np.int64),
        prototypes={
            g: rng.normal(size=(MARKET1501.num_sids[g], d)).astype(np.float32) for g in GROUPS
        },
        meta={"schema": "market1501", "fingerprint": "f" * 12, "checkpoint": ""},
    )
    return fs.save(tmp_path / "f.npz")


@pytest.fixture
def index_file(tmp_path, cli) -> Path:
    """A flat index of :func:`features_file` written by ``cerberus index``."""
    index = tmp_path / "i.npz"
    assert cli("index", "--features", features_file(tmp_path), "--out", index)[0] == 0
    return index


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: ``folder`` (and all under it) cannot be written, as root too.

    The folder's mode is set to 0o500; where that does not bind (root ignores modes), writes
    under it are refused the way the kernel refuses them (``PermissionError``, EACCES): files
    opened for writing and folders made. The mode is restored at teardown.
    """
    folders: list[Path] = []

    def under(path) -> bool:
        try:
            target = Path(os.fsdecode(path)).resolve()
        except (TypeError, ValueError):
            return False
        return any(target == f or f in target.parents for f in folders)

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    real_open, real_mkdir = builtins.open, os.mkdir

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | bytes | os.PathLike) and set(mode) & set("wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if under(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def make(folder: Path) -> Path:
        folder.chmod(0o500)
        folders.append(folder.resolve())
        if os.access(folder, os.W_OK):  # root: the mode does not bind
            monkeypatch.setattr(builtins, "open", guarded_open)
            monkeypatch.setattr(io, "open", guarded_open)
            monkeypatch.setattr(os, "mkdir", guarded_mkdir)
        return folder

    yield make
    for folder in folders:
        folder.chmod(0o700)
