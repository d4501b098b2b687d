"""Training engine: schedule, checkpoints, exact resume after SIGKILL, non-finite stop, DDP, same
seed same weights."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cerberus.attributes.schema_files import MARKET1501
from cerberus.config import load_config, save_config
from cerberus.errors import CerberusError
from cerberus.inference.loading import load_model
from cerberus.training.checkpoints import (
    load_checkpoint,
    save_checkpoint,
)
from cerberus.training.engine import learning_rate, train
from tests.conftest import TINY_TRAINING, assert_one_line, make_tree, tiny_yaml

TINY = [
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.dim=32",
    "model.align_sigma=0.5",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
    "data.num_workers=0",
    "data.pad=2",
    "optim.lr=1e-3",
    "optim.warmup_start_lr=1e-4",
    "optim.warmup_iterations=2",
    "train.device=cpu",
    "train.progress=false",
    "train.log_every=1",
]


def tiny_config(root: Path, out: Path, *extra: str):
    return load_config(None, [*TINY, f"data.root={root}", f"train.output_dir={out}", *extra])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(
        tmp_path_factory.mktemp("bench") / "m",
        MARKET1501,
        train_ids=tuple(range(2, 18, 2)),
        size=(64, 32),
    )


def test_learning_rate_schedule():
    kw = dict(lr=3.5e-4, warmup_start_lr=3.5e-6, warmup_iterations=2000, iterations=24000)
    assert learning_rate(0, **kw) == pytest.approx(3.5e-6)
    assert learning_rate(1000, **kw) == pytest.approx((3.5e-6 + 3.5e-4) / 2)
    assert learning_rate(2000, **kw) == pytest.approx(3.5e-4)
    assert learning_rate(13000, **kw) == pytest.approx(3.5e-4 / 2)  # cosine half-way
    assert learning_rate(24000, **kw) == pytest.approx(0.0, abs=1e-12)
    lrs = [learning_rate(i, **kw) for i in range(0, 24001, 500)]
    peak = lrs.index(max(lrs))
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_after_sigkill_matches_uninterrupted_run(tree, tmp_path):
    iterations = 24
    extra = [f"optim.iterations={iterations}", "train.checkpoint_every=2"]
    full = tiny_config(tree, tmp_path / "full", *extra)
    train(full, resume=False)

    killed = tiny_config(tree, tmp_path / "killed", *extra)
    cfg_file = tmp_path / "killed.yaml"
    save_config(killed, cfg_file)
    cmd = [sys.executable, "-m", "cerberus.cli", "train", "-c", str(cfg_file)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            break
        time.sleep(0.005)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = load_checkpoint(ckpt)["iteration"]
    assert 0 < interrupted_at < iterations

    result = train(killed, resume=True)
    assert result.iterations == iterations
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(ckpt)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_short_training_lowers_every_loss_term(tmp_path):
    """On the synthetic benchmark (small), every loss term goes down in a short CPU training."""
    from cerberus.data.synthetic.benchmark import generate_synthetic

    root = generate_synthetic(
        tmp_path / "syn",
        num_train_ids=12,
        num_test_ids=4,
        num_distractors=2,
        num_junk=1,
        height=64,
        width=32,
        num_workers=1,
    ).root
    cfg = tiny_config(root, tmp_path / "run", "optim.iterations=60", "train.checkpoint_every=0")
    result = train(cfg, resume=False)
    import json

    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "total_loss" in r]
    first, last = rows[:5], rows[-5:]
    for term in ("sem_loss", "ce_loss", "triplet_loss", "reg_loss", "total_loss"):
        before = sum(r[term] for r in first) / len(first)
        after = sum(r[term] for r in last) / len(last)
        assert after < before, (term, before, after)
    assert result.checkpoint.is_file()
    # the time spent waiting for batches (the data-loader stall) is measured and logged
    assert 0 < result.data_wait_seconds < result.seconds
    elapsed = [r["elapsed_s"] for r in rows]
    assert elapsed == sorted(elapsed) and all(0 <= r["data_wait_s"] <= r["elapsed_s"] for r in rows)
    loaded = load_model(result.checkpoint)
    assert loaded.config == cfg and not loaded.model.training


def test_non_finite_loss_names_iteration_and_term(tree, tmp_path, monkeypatch):
    import cerberus.training.engine as engine

    real = engine.compute_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            out["ce_loss"] = out["ce_loss"] * float("nan")
        return out

    monkeypatch.setattr(engine, "compute_losses", poisoned)
    cfg = tiny_config(tree, tmp_path / "nan", "optim.iterations=6", "train.checkpoint_every=1")
    with pytest.raises(CerberusError, match=r"iteration 2: ce_loss is nan"):
        train(cfg, resume=False)
    assert load_checkpoint(tmp_path / "nan" / "last.pt")["iteration"] == 2  # work kept


def test_resume_refuses_a_different_model(tree, tmp_path):
    cfg = tiny_config(tree, tmp_path / "r", "optim.iterations=2")
    train(cfg, resume=False)
    other = tiny_config(tree, tmp_path / "r", "optim.iterations=4", "model.dim=16")
    with pytest.raises(CerberusError, match="cannot resume: its model config differs"):
        train(other, resume=True)


def test_resume_refuses_optimizer_state_of_other_parameter_groups(tree, tmp_path):
    """A checkpoint whose optimizer has other parameter groups: one line, not a ValueError."""
    from cerberus.training.checkpoints import load_checkpoint

    cfg = tiny_config(tree, tmp_path / "g", "optim.iterations=2")
    train(cfg, resume=False)
    path = tmp_path / "g" / "last.pt"
    state = load_checkpoint(path)
    groups = state["optimizer"]["param_groups"]
    merged = {**groups[0], "params": [i for g in groups for i in g["params"]]}
    state["optimizer"]["param_groups"] = [merged]  # as written before the groups were split
    save_checkpoint(state, path)
    more = tiny_config(tree, tmp_path / "g", "optim.iterations=4")
    with pytest.raises(CerberusError, match="cannot resume: its optimizer state does not fit"):
        train(more, resume=True)


def test_checkpoint_write_is_atomic_and_errors_are_clear(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"format": "cerberus", "version": 1, "x": torch.ones(2)}, path)
    # A folder that cannot be written: a read-only one; as root (which ignores modes) sysfs,
    # where no file can be made, so the refusal is checked under either user.
    root = os.geteuid() == 0 and Path("/sys").is_dir()
    target = Path("/sys") / "last.pt" if root else path
    if not root:
        path.parent.chmod(0o500)
    try:
        with pytest.raises(CerberusError, match="could not write checkpoint .*denied"):
            save_checkpoint({"format": "cerberus", "version": 1, "x": torch.zeros(2)}, target)
    finally:
        path.parent.chmod(0o700)
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))  # the old one is intact
    # a file where the folder should be: the write fails, cleanly
    blocker = tmp_path / "blocked"
    blocker.write_text("")
    with pytest.raises(CerberusError, match="could not write checkpoint"):
        save_checkpoint({"format": "cerberus"}, blocker / "last.pt")
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cerberus_pwned",))


def test_bad_checkpoints_are_refused_without_running_code(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"format": "cerberus", "version": 1, "w": torch.ones(3)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(CerberusError, match="truncated.pt: not a readable Cerberus checkpoint"):
        load_checkpoint(truncated)
    evil = tmp_path / "evil.pt"
    torch.save(
        {"format": "cerberus", "payload": _Exploit()}, evil, _use_new_zipfile_serialization=True
    )
    marker = Path("/tmp/cerberus_pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(CerberusError, match="evil.pt: not a readable Cerberus checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CerberusError, match="plain.pkl"):
        load_checkpoint(plain)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, other)
    with pytest.raises(CerberusError, match="other.pt: not a Cerberus checkpoint"):
        load_checkpoint(other)


def test_checkpoint_of_another_architecture_is_refused(tree, tmp_path):
    cfg = tiny_config(tree, tmp_path / "a", "optim.iterations=2")
    train(cfg, resume=False)
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    state["config"]["model"]["dim"] = 48  # the weights are for dim 32
    save_checkpoint(state, tmp_path / "b.pt")
    with pytest.raises(CerberusError, match="b.pt: weights do not fit the model"):
        load_model(tmp_path / "b.pt")


def test_distributed_two_cpu_processes_on_gloo(tree, tmp_path):
    cfg = tiny_config(tree, tmp_path / "ddp", "optim.iterations=4", "train.checkpoint_every=0")
    cfg_file = tmp_path / "ddp.yaml"
    save_config(cfg, cfg_file)
    script = tmp_path / "check_ddp.py"
    script.write_text(
        "import os, sys, torch, torch.distributed as dist\n"
        "from cerberus.config import load_config\n"
        "from cerberus.training.engine import TrainStep, train\n"
        "import cerberus.training.engine as e\n"
        "built = {}\n"
        "real = e.build_model_for\n"
        "def keep(cfg, ds):\n"
        "    built['m'] = real(cfg, ds)\n"
        "    return built['m']\n"
        "e.build_model_for = keep\n"
        "train(load_config(sys.argv[1]), resume=False)\n"
        "flat = torch.cat([p.detach().flatten() for p in built['m'].parameters()])\n"
        "both = [torch.zeros_like(flat) for _ in range(2)]\n"
        "dist.all_gather(both, flat)\n"
        "assert torch.equal(both[0], both[1]), 'ranks diverged'\n"
        # one write per rank: two ranks share the pipe, and under PYTHONUNBUFFERED (as in CI)
        # print writes each of its pieces apart ('RANKRANK 1 OK 2\n 0 OK 2')
        "os.write(1, f'RANK {dist.get_rank()} OK {dist.get_world_size()}\\n'.encode())\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        str(script),
        str(cfg_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RANK 0 OK 2" in out.stdout and "RANK 1 OK 2" in out.stdout
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["iteration"] == 4


def test_bad_training_images_stop_or_skip_with_names(tmp_path, caplog):
    root = make_tree(tmp_path / "m", MARKET1501, train_ids=tuple(range(2, 18, 2)), size=(64, 32))
    victim = sorted((root / "bounding_box_train").glob("*.jpg"))[0]
    victim.write_bytes(b"")  # zero-byte image
    stop = tiny_config(root, tmp_path / "stop", "optim.iterations=30")
    with pytest.raises(CerberusError, match=rf"{victim.name}: unreadable image"):
        train(stop, resume=False)
    skip = tiny_config(root, tmp_path / "skip", "optim.iterations=2", "data.on_bad_image=skip")
    with caplog.at_level("WARNING"):
        result = train(skip, resume=False)
    assert result.iterations == 2
    assert victim.name in caplog.text and "skipped 1 unreadable images" in caplog.text


def test_periodic_evaluation_is_logged(tree, tmp_path):
    import json

    from cerberus.data.datasets import read_dataset
    from cerberus.evaluation.evaluate import periodic_evaluation

    cfg = tiny_config(
        tree, tmp_path / "ev", "optim.iterations=2", "train.eval_every=2", "eval.num_workers=0"
    )
    dataset = read_dataset(cfg.data.root, cfg.data.dataset)
    train(cfg, resume=False, dataset=dataset, on_evaluate=periodic_evaluation(cfg, dataset))
    rows = [json.loads(x) for x in (tmp_path / "ev" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "reid_map_score" in r]
    assert len(evals) == 1 and evals[0]["iteration"] == 2
    assert 0 <= evals[0]["reid_map_score"] <= 1 and 0 <= evals[0]["par_mean_accuracy_score"] <= 1


def test_training_with_softmax_sem_and_attribute_heads(tree, tmp_path):
    """The options beyond the paper run through the engine, log attr_loss, and reload."""
    import json

    cfg = tiny_config(
        tree,
        tmp_path / "a",
        "optim.iterations=3",
        "loss.semantic=softmax",
        "model.attribute_heads=true",
        "loss.lambda_attr=1.0",
    )
    train(cfg, resume=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert all(r["attr_loss"] > 0 and r["sem_loss"] > 0 for r in rows)
    model = load_model(tmp_path / "a" / "last.pt").model
    assert model.has_attribute_heads
    feats = model(torch.randn(2, 3, 64, 32))["features"]
    assert model.predict_attributes(feats).shape == (2, MARKET1501.num_attributes)


TINY_SEEDED = [
    *TINY_TRAINING,
    "data.pad=2",
    "optim.iterations=3",
    "train.checkpoint_every=1000",
    "train.threads=1",  # fast on a loaded machine; the count is part of what must repeat
]


@pytest.fixture(autouse=True)
def _keep_thread_count():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _train(tree: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    cfg = load_config(None, [*TINY_SEEDED, f"data.root={tree}", f"train.output_dir={out}", *extra])
    train(cfg, resume=False)
    return load_checkpoint(out / "last.pt")["model"]


def test_same_seed_same_weights_whatever_the_workers(tree, tmp_path):
    a = _train(tree, tmp_path / "a", "train.seed=3", "data.num_workers=0")
    b = _train(tree, tmp_path / "b", "train.seed=3", "data.num_workers=2")
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    c = _train(tree, tmp_path / "c", "train.seed=4", "data.num_workers=0")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_the_thread_count_used_is_saved(tree, tmp_path):
    """``train.threads=0`` (torch's default): the count used is saved, so the run repeats."""
    torch.set_num_threads(1)
    _train(tree, tmp_path / "a", "train.threads=0", "optim.iterations=1")
    assert load_config(tmp_path / "a" / "config.yaml").train.threads == 0  # as given
    assert load_checkpoint(tmp_path / "a" / "last.pt")["meta"]["threads"] == 1


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


def test_training_logs_unknown_attribute_cells(tmp_path, caplog):
    """Empty table cells are unknown: the run says, per attribute, how many images it leaves out."""
    import logging

    from cerberus.data.datasets import read_dataset
    from cerberus.data.table import read_table_dataset, write_table_dataset
    from cerberus.training.engine import log_unknown_cells, unknown_cells

    root = make_tree(tmp_path / "t", MARKET1501, train_ids=(2, 4, 6))
    write_table_dataset(read_dataset(root, "market1501"), root)
    rows = (root / "attributes.csv").read_text().splitlines()
    header = rows[0].split(",")
    blank = {"2": "hat", "4": "gender", "6": "gender"}
    for i, row in enumerate(rows):
        cells = row.split(",")
        if cells[0] in blank:
            cells[header.index(blank[cells[0]])] = ""
            rows[i] = ",".join(cells)
    (root / "attributes.csv").write_text("\n".join(rows) + "\n")
    data = read_table_dataset(root)
    pids = data.train.pids
    hat, gender = int((pids == 2).sum()), int(((pids == 4) | (pids == 6)).sum())
    assert unknown_cells(data) == {"gender": gender, "hat": hat} or unknown_cells(data) == {
        "hat": hat,
        "gender": gender,
    }
    with caplog.at_level(logging.INFO, logger="cerberus.training.engine"):
        log_unknown_cells(data)
    lines = [r.getMessage() for r in caplog.records if "unknown attribute cells" in r.getMessage()]
    assert len(lines) == 1
    assert f"gender {gender}" in lines[0] and f"hat {hat}" in lines[0]
    assert f"of {len(data.train)} images" in lines[0] and "age " not in lines[0]


def test_cerberus_train_ends_calibrated_on_its_test_split(tree, tmp_path, caplog):
    """``cerberus train`` (train.calibrate, on by default) stores in last.pt the calibration
    ``cerberus calibrate`` would make: the test split of the training data, which it names,
    made with these weights; the loaded model and its verdicts use it."""
    from cerberus.data.datasets import read_dataset
    from cerberus.evaluation.calibration import calibrate
    from cerberus.inference.embed import InferenceModel
    from cerberus.search import Verdicts
    from tests.conftest import invoke

    config = tiny_yaml(tmp_path, tree, train={"calibrate": True}, eval={"num_workers": 0})
    invoke("train", "-c", config, "--no-resume")
    ckpt = tmp_path / "run" / "last.pt"
    stored = load_checkpoint(ckpt)["meta"]["calibration"]
    assert stored["split"] == "test" and stored["made_by"] == "train"
    assert stored["data"] == str(tree.resolve())
    net = InferenceModel.from_checkpoint(ckpt, device="cpu", num_workers=0)
    assert net.calibration == stored and stored["fingerprint"] == net.fingerprint
    again, _ = calibrate(net, read_dataset(tree), split="test")
    assert [p["threshold"] for p in again["points"]] == [p["threshold"] for p in stored["points"]]
    assert stored["chosen_fpr"] == 1e-3 and len(stored["points"]) == 3
    assert f"calibrated on the test split of {tree.resolve()}" in Verdicts.of(net).text
    # a resumed run with nothing left to train leaves the calibration as it was
    mtime = ckpt.stat().st_mtime_ns
    invoke("train", "-c", config)
    assert ckpt.stat().st_mtime_ns == mtime


def test_no_validation_data_no_calibration_and_a_warning(tmp_path, caplog):
    """A test split of one identity cannot be calibrated on: training says so and stores
    nothing (the model stays uncalibrated: timelines fall back to the default threshold)."""
    from cerberus.data.datasets import read_dataset
    from cerberus.evaluation.calibration import calibration_after_training

    root = make_tree(tmp_path / "one", MARKET1501, train_ids=(2, 4, 6, 8), test_ids=(1,),
                     size=(64, 32))  # fmt: skip
    cfg = load_config(tiny_yaml(tmp_path, root, eval={"num_workers": 0}))
    dataset = read_dataset(root)
    finish = calibration_after_training(cfg, dataset)
    with caplog.at_level("WARNING"):
        train(cfg, resume=False, dataset=dataset, on_finish=finish)
    assert "not calibrated: the test split" in caplog.text and "1 identities" in caplog.text
    assert "calibration" not in load_checkpoint(tmp_path / "run" / "last.pt")["meta"]


def test_batch_loader_gives_training_crops_the_configured_camera_look(tree, tmp_path):
    from cerberus.data.table import open_dataset
    from cerberus.data.transforms import CameraLook
    from cerberus.training.engine import RunContext, batch_loader

    cfg = tiny_config(tree, tmp_path / "out", "data.noise=5", "data.low_res=0.5")
    run = RunContext(0, 0, 1, False, torch.device("cpu"), tmp_path / "out", 1)
    loader = batch_loader(cfg, open_dataset(cfg.data.root, cfg.data.dataset), run, 0)
    look = loader.dataset.transform.transforms[0]
    assert isinstance(look, CameraLook) and (look.noise, look.low_res) == (5, 0.5)
    plain = batch_loader(tiny_config(tree, tmp_path / "out"), open_dataset(tree), run, 0)
    assert not any(isinstance(t, CameraLook) for t in plain.dataset.transform.transforms)
