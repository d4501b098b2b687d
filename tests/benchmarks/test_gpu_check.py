"""benchmarks/gpu_check.py: the GPU script's dry run on CPU (``--smoke``) and its arithmetic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def test_smoke_run_writes_every_step_and_a_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke", "--out"]
    proc = subprocess.run(
        [*cmd, str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = data["steps"]
    expected = [
        "synth",
        "train",
        "fp32",
        "precision",
        "bench_train_step",
        "bench_extraction",
        "utilisation",
        "ddp",
    ]
    assert list(steps) == expected
    assert all(steps[name]["ok"] for name in expected), {
        k: v.get("error") for k, v in steps.items()
    }
    train = steps["train"]
    assert train["iterations"] == 6
    assert 0 <= train["data_loader_stall_fraction"] <= 1
    assert train["projected_paper_hours"] == pytest.approx(
        train["seconds_per_iteration"] * 24_000 / 3600
    )
    assert set(train["metrics"]) == {"reID mAP", "reID rank-1", "APS mAP", "PAR mA"}
    assert steps["precision"]["feature_images"] == 8
    assert steps["ddp"]["iterations"] == 2 and steps["ddp"]["processes"] == 1
    assert steps["utilisation"]["train"]["ours"]["gmacs_per_image"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "data-loader stall" in table and "projected 24000 iterations" in table
    assert "torchrun x1 (gloo)" in table


def test_a_failing_step_is_recorded_and_the_next_runs(tmp_path):
    report = gpu_check.Report(tmp_path / "r.json", {"device": "cpu"})

    def broken():
        raise RuntimeError("no such thing\nsecond line")

    assert report.step("a", broken) is None
    second = report.step("b", lambda: {"x": 1})
    assert second is not None and second["ok"] and second["x"] == 1
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["steps"]["a"]["ok"] is False
    assert saved["steps"]["a"]["error"] == "RuntimeError: no such thing"
    rows = gpu_check.summary_rows(saved)
    assert ["a", "FAILED", "RuntimeError: no such thing", ""] in rows


def test_steady_state_skips_the_first_fifth_and_projects_24k():
    rows = [
        {"iteration": i, "elapsed_s": 10.0 + 0.5 * i, "data_wait_s": 1.0 + 0.05 * i}
        for i in range(1, 101)
    ]
    rows[0]["elapsed_s"] = 30.0  # a slow first iteration (allocation, cudnn search)
    s = gpu_check.steady_state(rows)
    assert s["seconds_per_iteration"] == pytest.approx(0.5)
    assert s["data_loader_stall_fraction"] == pytest.approx(0.1)
    assert s["projected_paper_hours"] == pytest.approx(0.5 * 24_000 / 3600)


def test_utilisation_per_mac_ratio_and_mfu():
    results = {
        "bench_train_step": {
            "models": {"ours": {"images_per_s": 100.0}, "torchreid": {"images_per_s": 200.0}}
        },
        "bench_extraction": {
            "models": {
                "ours": {"images_per_s": 1000.0, "gmacs": 10.0},
                "torchreid": {"images_per_s": 2000.0, "gmacs": 4.0},
            }
        },
    }
    u = gpu_check.utilisation(results, {"ours": 10.0}, peak=1000.0)
    # training: 3 passes x 2 FLOPs per MAC
    assert u["train"]["ours"]["achieved_tflops"] == pytest.approx(100 * 10e9 * 6 / 1e12)
    assert u["train"]["ours"]["mfu"] == pytest.approx(6.0 / 1000)
    assert u["train"]["ours_per_mac_vs_torchreid"] == pytest.approx((100 * 10) / (200 * 4))
    assert u["extraction"]["ours_per_mac_vs_torchreid"] == pytest.approx((1000 * 10) / (2000 * 4))


def test_peak_lookup_by_card_name():
    assert gpu_check.peak_tflops("NVIDIA H200", None) == pytest.approx(989.4)
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe", None) == pytest.approx(756.0)
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB", None) == pytest.approx(312.0)
    assert gpu_check.peak_tflops("Some Card", None) is None
    assert gpu_check.peak_tflops("Some Card", 123.0) == 123.0
