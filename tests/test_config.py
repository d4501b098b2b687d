"""Typed config from YAML + overrides; a bad value or a file that is not UTF-8 is one line naming
the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cerberus.config import Config, load_config, save_config
from cerberus.errors import CerberusError
from tests.conftest import assert_one_line, tiny_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_configs_are_the_defaults():
    paper = load_config(CONFIGS / "market1501.yaml")
    d = Config()
    assert paper.model == d.model and paper.loss == d.loss and paper.optim == d.optim
    assert (paper.loss.lambda_sem, paper.loss.lambda_id, paper.loss.lambda_reg) == (5, 1, 0.001)
    assert (paper.optim.iterations, paper.optim.warmup_iterations) == (24000, 2000)
    assert (paper.data.p, paper.data.k, paper.data.height, paper.data.width) == (16, 4, 384, 128)
    duke = load_config(CONFIGS / "dukemtmc.yaml")
    assert duke.data.dataset == "dukemtmc" and duke.model == paper.model
    assert paper.loss.semantic == duke.loss.semantic == "hinge"  # the paper's L_sem, method §3.1
    assert paper.data.pad == duke.data.pad == d.data.pad == 0  # method §4.2: flip + erasing only
    assert load_config(CONFIGS / "synthetic.yaml").data.pad == 4


@pytest.mark.parametrize("name", ["market1501", "dukemtmc", "synthetic"])
def test_shipped_configs_load_and_round_trip(name, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=1e-3", "optim.betas=[0.5, 0.9]", "loss.margin=0.6"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.betas == (0.5, 0.9) and cfg.loss.margin == "0.6"
    cfg = load_config(None, ["data.exclude_sids=[L:1, 3]", "data.attributes=", "data.flip=no"])
    assert cfg.data.exclude_sids == ("L:1", "3") and cfg.data.attributes is None
    assert cfg.data.flip is False and load_config(None, ["optim.lr=2"]).optim.lr == 2.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "unknown key 'lrr'"),
        ("optim.lr=abc", "optim.lr: Input should be a valid number.*, got 'abc'$"),
        ("data.height=1.5", "data.height: Input should be a valid integer, got 1.5$"),
        ("data.height=", "data.height: Input should be a valid integer, got None$"),
        (
            "optim.betas=[0.5, x]",
            r"optim.betas\[1\]: Input should be a valid number.*, got \[0.5, 'x'\]$",
        ),
        ("optim.betas=[0.5]", r"optim.betas\[1\]: Field required, got \[0.5\]$"),
        ("optim.betas=[0.5, 1]", r"optim.betas must be two numbers in \[0, 1\), got \[0.5, 1.0\]"),
        ("data.exclude_sids=L:1", "data.exclude_sids: Input should be a valid tuple, got 'L:1'$"),
        ("nosection.x=1", "unknown section 'nosection'"),
        ("train.amp=3", "train.amp: Input should be a valid boolean, got 3$"),
        ("loss.margin=big", "loss.margin must be 'adaptive' or a number"),
        ("loss.semantic=arcface", "loss.semantic must be 'hinge' or 'softmax'"),
        ("loss.semantic_scale=0", "loss.semantic_scale must be positive"),
        ("data.pad=-1", "data.pad must be >= 0"),
        ("loss.lambda_attr=1", "loss.lambda_attr > 0 needs model.attribute_heads=true"),
        ("lr=1", "expected section.key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(CerberusError, match=message):
        load_config(None, [override])


def test_bad_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: [1, 2\n")
    with pytest.raises(CerberusError, match=r"c.yaml: not valid YAML"):
        load_config(p)
    with pytest.raises(CerberusError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_a_bool_is_refused_where_the_field_is_a_number():
    with pytest.raises(CerberusError, match=r"loss.lambda_sem: expected a number, got True"):
        load_config(None, ["loss.lambda_sem=true"])


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


def test_warmup_beyond_iterations_names_each_value_and_its_origin(tmp_path, cli):
    """A command-line value is not blamed on the file; both numbers are given."""
    config = CONFIGS / "synthetic.yaml"
    in_file = load_config(config)
    code, _, err = cli("train", "-c", config, "optim.iterations=20")
    w = in_file.optim.warmup_iterations
    assert w > 20
    origin = str(config) if "warmup_iterations" in config.read_text() else "default"
    assert_one_line(
        code, err, f"optim.warmup_iterations={w} ({origin})", "optim.iterations=20 (command line)"
    )
    both = tmp_path / "c.yaml"
    both.write_text("optim:\n  iterations: 5\n  warmup_iterations: 7\n")
    with pytest.raises(CerberusError) as info:
        load_config(both)
    assert f"warmup_iterations=7 ({both})" in str(info.value)
    assert f"iterations=5 ({both})" in str(info.value)
    with pytest.raises(CerberusError, match=r"warmup_iterations=2000 \(default\)"):
        load_config(None, ["optim.iterations=3"])


def test_a_bare_name_loads_the_packaged_config_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_config("synthetic") == load_config(CONFIGS / "synthetic.yaml")
    assert load_config("synthetic", ["optim.lr=1e-3"]).optim.lr == 1e-3
    (tmp_path / "mine.yaml").write_text("optim:\n  lr: 0.002\n")
    assert load_config("mine.yaml").optim.lr == 0.002  # paths keep working
    with pytest.raises(CerberusError, match="packaged config: .*synthetic"):
        load_config("no_such_config")
    with pytest.raises(CerberusError, match="config file not found"):
        load_config("sub/synthetic")  # a path, not a name
