"""Bad input and faults through the command line (issue 12): exit code 2, one line on stderr
naming the file or option, no traceback, and good files left byte-identical.

Everything runs in-process through :func:`cerberus.cli.main` and nothing trains.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import load_config
from tests.conftest import make_tree

TINY_TRAIN = {
    "data": {"height": 64, "width": 32, "p": 4, "k": 2, "num_workers": 0},
    "model": {"backbone": "resnet18", "pretrained": False, "dim": 16},
    "optim": {"iterations": 2, "warmup_iterations": 1},
    "train": {"device": "cpu", "progress": False, "log_every": 1},
}


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
    return make_tree(tmp_path_factory.mktemp("bench") / "m", MARKET1501, size=(64, 32))


def tiny_yaml(tmp_path: Path, tree: Path, **sections) -> Path:
    raw = {k: dict(v) for k, v in TINY_TRAIN.items()}
    raw["data"]["root"] = str(tree)
    raw["train"]["output_dir"] = str(tmp_path / "run")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def full_disk(monkeypatch):
    """Flushing any file to disk fails as on a full disk."""

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


# --------------------------------------------------------------------------- data loss


@pytest.fixture
def fake_eval(monkeypatch):
    """``eval`` without a model: the metrics are fixed, the write is what is tested."""
    import cerberus.evaluation.evaluate as evaluation

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", lambda *a, **k: {"reid": {"mAP": 1}})
    monkeypatch.setattr(evaluation, "format_report", lambda m: "report")


@pytest.mark.parametrize("target", ["metrics.json", "sub/metrics.json"])
def test_eval_out_on_a_full_disk_keeps_the_good_file(tmp_path, cli, fake_eval, full_disk, target):
    out = tmp_path / target
    out.parent.mkdir(exist_ok=True)
    out.write_text('{"good": true}')
    code, _, err = cli("eval", "--checkpoint", tmp_path / "x.pt", "--out", out)
    assert_one_line(code, err, out, "No space left")
    assert out.read_text() == '{"good": true}'
    assert sorted(p.name for p in out.parent.iterdir() if p.name != "sub") == ["metrics.json"]


def test_train_config_yaml_on_a_full_disk_keeps_the_good_file(tmp_path, tree, cli, full_disk):
    config = tiny_yaml(tmp_path, tree)
    good = tmp_path / "run" / "config.yaml"
    good.parent.mkdir()
    good.write_bytes(b"good: true\n")
    code, _, err = cli("train", "-c", config, "--no-resume")
    assert_one_line(code, err, good)
    assert good.read_bytes() == b"good: true\n"


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_synth_never_deletes_a_folder_it_did_not_write(tmp_path, cli, overwrite):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_bytes(b"years of work")
    args = ["synth", "--out", home, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    code, _, err = cli(*args, *(["--overwrite"] if overwrite else []))
    assert_one_line(code, err, home, ".cerberus-synthetic")
    assert (home / "thesis.tex").read_bytes() == b"years of work"


def test_synth_overwrite_replaces_its_own_benchmark(tmp_path, cli):
    out = tmp_path / "syn"
    args = ["synth", "--out", out, "--train-ids", 2, "--test-ids", 2, "--workers", 1]
    assert cli(*args)[0] == 0
    assert (out / ".cerberus-synthetic").is_file()
    (out / "stale.txt").write_text("old")
    code, _, err = cli(*args)
    assert_one_line(code, err, out, "--overwrite")
    assert cli(*args, "--overwrite")[0] == 0
    assert not (out / "stale.txt").exists()


def test_stale_checkpoint_temporaries_are_removed_on_start(tmp_path):
    from cerberus.training.engine import _remove_stale_temporaries

    dead = tmp_path / ".last.pt.tmp999999999"  # beyond pid_max: no such process
    alive = tmp_path / f".last.pt.tmp{os.getppid()}"  # a running writer's
    foreign = tmp_path / ".notes.tmpfile"
    for p in (dead, alive, foreign):
        p.write_bytes(b"x")
    _remove_stale_temporaries(tmp_path)
    assert not dead.exists() and alive.exists() and foreign.exists()


def test_log_is_trimmed_back_to_the_resumed_iteration(tmp_path):
    from cerberus.training.engine import _trim_log

    log = tmp_path / "log.jsonl"
    rows = [json.dumps({"iteration": i, "total_loss": 1.0}) for i in range(1, 9)]
    log.write_text("\n".join(rows) + '\n{"iteration": 9, "tot')  # cut by the kill
    _trim_log(log, 5)
    assert [json.loads(x)["iteration"] for x in log.read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_resume_refuses_a_changed_seed(tmp_path, tree, cli):
    import torch

    from cerberus.training.checkpoints import CHECKPOINT_VERSION, save_checkpoint

    config = tiny_yaml(tmp_path, tree)
    saved = load_config(config, ["train.seed=1"])
    state = {
        "format": "cerberus",
        "version": CHECKPOINT_VERSION,
        "iteration": 1,
        "model": {},
        "optimizer": {},
        "rng": {"torch": torch.get_rng_state()},
        "config": saved.to_dict(),
        "meta": {},
    }
    ckpt = tmp_path / "run" / "last.pt"
    save_checkpoint(state, ckpt)
    before = ckpt.read_bytes()
    code, _, err = cli("train", "-c", config)
    assert_one_line(code, err, ckpt, "train.seed")
    assert ckpt.read_bytes() == before


# --------------------------------------------------------------------------- one line


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
    return tmp / "last.pt"


@pytest.mark.parametrize(
    "override, names",
    [
        ("train.log_every=0", ["train.log_every"]),
        ("optim.betas=[0.9]", ["optim.betas"]),
        ("optim.betas=[0.9, 1.5]", ["optim.betas"]),
        ("optim.iterations=-5", ["optim.iterations"]),
        ("optim.lr=-1", ["optim.lr"]),
        ("optim.lr=.nan", ["optim.lr"]),
        ("train.device=tpu", ["train.device", "tpu"]),
        ("data.p=0", ["data.p"]),
        ("data.num_workers=-1", ["data.num_workers"]),
        ("data.random_erasing=2", ["data.random_erasing"]),
        ("model.last_stride=3", ["model.last_stride"]),
        ("eval.batch_size=0", ["eval.batch_size"]),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, tree, cli, override, names):
    config = tiny_yaml(tmp_path, tree)
    code, _, err = cli("train", "-c", config, override)
    assert_one_line(code, err, config, *names)


def test_non_utf8_yaml_is_one_line(tmp_path, cli):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("data:\n  root: /données\n".encode("latin-1"))
    code, _, err = cli("train", "-c", config)
    assert_one_line(code, err, config, "UTF-8")


NO_GPU = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="needs a machine without CUDA"
)


@pytest.mark.parametrize(
    "args, names",
    [
        (["eval", "--device", "foo"], ["--device", "foo"]),
        pytest.param(["eval", "--device", "cuda"], ["--device", "CUDA"], marks=NO_GPU),
        pytest.param(["describe", "IMG", "--device", "cuda:0"], ["--device"], marks=NO_GPU),
        (["eval", "--workers", "-1"], ["--workers", "-1"]),
        (["eval", "--batch-size", "-1"], ["--batch-size", "-1"]),
        (["extract", "--images", ".", "--out", "f.npz", "--workers", "-1"], ["--workers"]),
        (["extract", "--images", ".", "--out", "f.npz", "--batch-size", "0"], ["--batch-size"]),
    ],
)
def test_bad_device_and_loader_options_are_one_line(tmp_path, ckpt, cli, args, names):
    args = [str(tmp_path / "img.jpg") if a == "IMG" else a for a in args]
    code, _, err = cli(*args[:1], "--checkpoint", ckpt, *args[1:])
    assert_one_line(code, err, *names)


def test_synth_workers_below_one_is_one_line(tmp_path, cli):
    code, _, err = cli("synth", "--out", tmp_path / "s", "--workers", "-1")
    assert_one_line(code, err, "--workers")


def _features(tmp_path: Path, n: int = 20) -> Path:
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


@pytest.mark.parametrize(
    "args, option",
    [
        (["--kind", "ivf", "--nlist", "1000"], "--nlist"),
        (["--kind", "ivf", "--nlist", "0"], "--nlist"),
        (["--kind", "ivf", "--nprobe", "0"], "--nprobe"),
        (["--kind", "ivf-sq8", "--nprobe", "-3"], "--nprobe"),
        (["--kind", "hnsw", "--hnsw-m", "0"], "--hnsw-m"),
        (["--kind", "hnsw", "--ef-search", "-1"], "--ef-search"),
    ],
)
def test_bad_index_options_are_one_line(tmp_path, cli, args, option):
    feats = _features(tmp_path)
    code, _, err = cli("index", "--features", feats, "--out", tmp_path / "i.npz", *args)
    assert_one_line(code, err, option)
    assert not (tmp_path / "i.npz").exists()


@pytest.mark.parametrize("k", ["0", "-5"])
def test_search_and_rank_figures_refuse_k_below_one(tmp_path, cli, k):
    feats = _features(tmp_path)
    index = tmp_path / "i.npz"
    assert cli("index", "--features", feats, "--out", index)[0] == 0
    code, _, err = cli("search", "--index", index, "--attrs", "gender=female", "-k", k)
    assert_one_line(code, err, "-k", k)
    code, _, err = cli("visualize", "ranks", "--index", index, "q.jpg", "--out", tmp_path, "-k", k)
    assert_one_line(code, err, "-k", k)


def _damage_index(index: Path, out: Path, how: str) -> Path:
    import numpy as np

    from cerberus.inference.features import load_npz, save_npz

    arrays, meta = load_npz(index, "index", "index")
    if how == "no schema":
        del meta["schema"]
    elif how == "prototype shape":
        arrays["prototype_U"] = arrays["prototype_U"][:-1]
    elif how == "short values":
        arrays["values"] = arrays["values"][:-2]
    elif how == "short pids":
        arrays["pids"] = arrays["pids"][:3]
    elif how == "no paths":
        del arrays["paths"]
    elif how == "ragged prototypes":
        arrays["prototype_H"] = np.zeros((arrays["prototype_H"].shape[0], 7), np.float32)
    save_npz(out, arrays, meta, "index")
    return out


@pytest.mark.parametrize(
    "how, names",
    [
        ("no schema", ["schema"]),
        ("prototype shape", ["prototype_U"]),
        ("short values", ["values"]),
        ("short pids", ["pids"]),
        ("no paths", ["paths"]),
        ("ragged prototypes", ["prototype"]),
    ],
)
def test_damaged_index_files_are_one_line(tmp_path, cli, how, names):
    index = tmp_path / "i.npz"
    assert cli("index", "--features", _features(tmp_path), "--out", index)[0] == 0
    bad = _damage_index(index, tmp_path / "bad.npz", how)
    code, _, err = cli("search", "--index", bad, "--attrs", "gender=female")
    assert_one_line(code, err, bad, *names)


@pytest.mark.parametrize(
    "change, names",
    [
        ({"config": None}, ["'config'"]),
        ({"meta": None}, ["'meta'"]),
        ({"meta": {"schema": "x", "num_classes": 4}}, ["schema"]),
        ({"meta": {"schema": "market1501"}}, ["num_classes"]),
        ({"model": None}, ["model"]),
        ({"drop": "trunk.4.0.conv1.weight"}, ["trunk.4.0.conv1.weight"]),
    ],
)
def test_incomplete_checkpoints_are_one_line(tmp_path, ckpt, cli, change, names):
    from cerberus.training.checkpoints import load_checkpoint, save_checkpoint

    state = load_checkpoint(ckpt)
    for key, value in change.items():
        if key == "drop":
            state["model"] = {k: v for k, v in state["model"].items() if not k.endswith(value)}
        elif value is None:
            del state[key]
        else:
            state[key] = value
    bad = tmp_path / "bad.pt"
    save_checkpoint(state, bad)
    code, _, err = cli("describe", "--checkpoint", bad, tmp_path / "x.jpg")
    assert_one_line(code, err, bad, *names)


@pytest.mark.parametrize("where", ["synth", "synth-sheet", "train", "eval"])
def test_unwritable_output_is_one_line(tmp_path, tree, cli, fake_eval, where):
    """A file where the output folder should be (root ignores read-only permissions)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    target = blocker / "sub"
    small = ["--train-ids", 2, "--test-ids", 2, "--workers", 1]
    if where == "synth":
        args = ["synth", "--out", target, *small]
    elif where == "synth-sheet":
        args = ["synth", "--out", tmp_path / "s", *small, "--sheet", target / "sheet.png"]
    elif where == "train":
        args = ["train", "-c", tiny_yaml(tmp_path, tree, train={"output_dir": str(target)})]
    else:
        args = ["eval", "--checkpoint", tmp_path / "x.pt", "--out", target / "m.json"]
    code, _, err = cli(*args)
    assert_one_line(code, err, target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores read-only permissions")
def test_read_only_output_folder_is_one_line(tmp_path, cli, fake_eval):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        code, _, err = cli("eval", "--checkpoint", tmp_path / "x.pt", "--out", folder / "m.json")
        assert_one_line(code, err, folder)
        code, _, err = cli("synth", "--out", folder / "s", "--train-ids", 2, "--test-ids", 2)
        assert_one_line(code, err, folder)
    finally:
        folder.chmod(0o700)


def test_unreadable_training_image_in_a_worker_is_one_line(tmp_path_factory, tmp_path, cli):
    bench = make_tree(tmp_path_factory.mktemp("bad") / "m", MARKET1501, size=(64, 32))
    broken = sorted((bench / "bounding_box_train").glob("*.jpg"))[0]
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    config = tiny_yaml(tmp_path, bench, data={"num_workers": 1})
    code, _, err = cli("train", "-c", config)
    assert_one_line(code, err, broken.name, "unreadable image")


def test_unexpected_errors_are_one_line_unless_debugging(tmp_path, cli, monkeypatch):
    import cerberus.evaluation.evaluate as evaluation

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(evaluation, "evaluate_checkpoint", broken)
    args = ["eval", "--checkpoint", tmp_path / "x.pt"]
    code, _, err = cli(*args)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "unexpected ZeroDivisionError: division by zero second line" in err
    assert "--debug" in err
    with pytest.raises(ZeroDivisionError):
        cli("--debug", *args)
    monkeypatch.setenv("CERBERUS_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli(*args)


# --------------------------------------------------------------------------- honest messages


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def test_unsafe_checkpoint_names_the_refusal_not_the_unsafe_load(tmp_path, cli):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cerberus", "payload": _Exploit()}, evil)
    code, _, err = cli("describe", "--checkpoint", evil, tmp_path / "x.jpg")
    assert_one_line(code, err, evil, "refusing to load objects other than tensors", "untrusted")
    assert "weights_only" not in err


@pytest.mark.parametrize("command", ["search", "index"])
def test_text_file_given_as_npz_is_refused_as_untrusted(tmp_path, cli, command):
    text = tmp_path / "notes.npz"
    text.write_text("just some text, not arrays\n")
    if command == "search":
        code, _, err = cli("search", "--index", text, "--attrs", "gender=female")
    else:
        code, _, err = cli("index", "--features", text, "--out", tmp_path / "i.npz")
    assert_one_line(code, err, text, "refusing to load objects other than arrays")
    assert "allow_pickle" not in err


@pytest.mark.parametrize("command", ["describe", "eval"])
def test_no_skip_bad_hint_where_the_command_has_no_such_option(tmp_path, ckpt, cli, command):
    bad = tmp_path / "0002_c1s1_000000_00.jpg"
    bad.write_bytes(b"not an image")
    if command == "describe":
        code, _, err = cli("describe", "--checkpoint", ckpt, bad)
        assert_one_line(code, err, bad)
    else:  # a test set with an unreadable gallery image
        data = make_tree(tmp_path / "m", MARKET1501, size=(64, 32))
        broken = sorted((data / "bounding_box_test").glob("*.jpg"))[0]
        broken.write_bytes(b"not an image")
        code, _, err = cli("eval", "--checkpoint", ckpt, "--data", data, "--workers", 0)
        assert code == 2 and broken.name in err.strip().splitlines()[-1]
    assert "--skip-bad" not in err


def test_cli_configures_only_the_cerberus_logger(tmp_path, cli):
    import logging

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    cli("search", "--index", tmp_path / "none.npz", "--attrs", "gender=female")
    assert (list(root.handlers), root.level) == before
    assert logging.getLogger("cerberus").level == logging.INFO


# --------------------------------------------------------------------------- small things


@pytest.fixture
def index_file(tmp_path, cli) -> Path:
    index = tmp_path / "i.npz"
    assert cli("index", "--features", _features(tmp_path), "--out", index)[0] == 0
    return index


@pytest.mark.parametrize("option", ["-k", "--top-k"])
def test_top_k_has_a_long_form(index_file, cli, option):
    code, out, err = cli(
        "search", "--index", index_file, "--attrs", "gender=female", option, 3, "--json"
    )
    assert code == 0, err
    assert len(json.loads(out)["results"]) == 3


@pytest.mark.parametrize(
    "query", ["gender=female, backpack=yes", "Gender=Female, BACKPACK=Yes", "GENDER = female"]
)
def test_attribute_queries_are_case_insensitive(index_file, cli, query):
    code, out, err = cli("search", "--index", index_file, "--attrs", query, "--json")
    assert code == 0, err
    assert json.loads(out)["query"]["attributes"]["gender"] == "gender: female"


@pytest.mark.parametrize(
    "query, name",
    [("gender=male, gender=female", "gender"), ("backpack=yes, Backpack=no", "backpack")],
)
def test_a_repeated_attribute_is_refused(index_file, cli, query, name):
    code, _, err = cli("search", "--index", index_file, "--attrs", query)
    assert_one_line(code, err, repr(name), "more than once")


# --------------------------------------------------------------------------- garbage in


def _garbage_file(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


numbers = st.one_of(st.integers(-5, 40), st.sampled_from(["0", "-1", "1e3", "x", ""]))
words = st.text(max_size=30)
blobs = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"PK\x03\x04", b"\x80\x04K\x01.", b"data: {root: 1}\n", b"{]"]),
)


@st.composite
def commands(draw, index: Path, feats: Path, folder: Path) -> list:
    """A command line of a cheap command (nothing trains) with garbage or good arguments."""
    kind = draw(st.sampled_from(["search", "index", "describe", "eval", "train", "synth"]))
    garbage = _garbage_file(folder, draw(st.sampled_from(["g.npz", "g.pt", "g.yaml"])), draw(blobs))
    if kind == "search":
        args = ["search", "--index", draw(st.sampled_from([index, garbage]))]
        args += ["--attrs", draw(st.one_of(words, st.sampled_from(["gender=female", "hat=yes"])))]
        args += ["-k", draw(numbers)]
    elif kind == "index":
        args = ["index", "--features", draw(st.sampled_from([feats, garbage]))]
        args += ["--out", folder / "out.npz", "--kind", draw(st.sampled_from(["flat", "ivf",
                 "hnsw", "ivf-sq8", "kd-tree"]))]  # fmt: skip
        for option in ("--nlist", "--nprobe", "--hnsw-m", "--ef-search"):
            if draw(st.booleans()):
                args += [option, draw(numbers)]
    elif kind == "describe":
        args = ["describe", "--checkpoint", garbage, garbage, "--device", draw(words)]
    elif kind == "eval":
        args = ["eval", "--checkpoint", garbage, "--workers", draw(numbers)]
    elif kind == "train":
        args = ["train", "-c", garbage, draw(words)]
    else:  # a folder that is not a benchmark: refused whatever the numbers
        args = ["synth", "--out", folder, "--train-ids", draw(numbers), "--cameras", draw(numbers)]
        args += ["--overwrite"] if draw(st.booleans()) else []
    return args


@pytest.mark.slow
def test_garbage_arguments_and_files_exit_0_or_2_without_traceback(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a config without data.root looks for data/ here: not found
    feats = _features(tmp_path)
    index = tmp_path / "i.npz"
    assert cli("index", "--features", feats, "--out", index)[0] == 0
    folder = tmp_path / "garbage"
    folder.mkdir()

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(commands(index, feats, folder))
    def run(args):
        code, _, err = cli(*args)
        assert code in (0, 2), (args, err)
        assert "Traceback" not in err, (args, err)

    run()


def test_extract_does_not_count_junk_and_distractors_as_identities(tmp_path, tree, ckpt, cli):
    gallery = tree / "bounding_box_test"
    names = [p.name for p in gallery.glob("*.jpg")]
    others = sum(n.startswith(("0000_", "-1_")) for n in names)
    code, out, err = cli(
        "extract", "--checkpoint", ckpt, "--images", gallery, "--out", tmp_path / "g.npz",
        "--workers", 0, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(names) - others} with identities from their names" in out
    assert f"{others} distractor / junk crops" in out
